"""``rvar app``: a Gradio page that restores an uploaded photo with one or several checkpoints, side by side.

:mod:`.restoration` does the work (read, degrade, restore through the tile path of ``rvar restore``) and knows
nothing of Gradio; :mod:`.page` lays out the page. Gradio is an optional dependency (``pip install 'rvar[app]'``)
imported only by :mod:`.page`.
"""
