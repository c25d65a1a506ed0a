"""Evaluation: how restored images are scored and how the scores are laid out.

* :mod:`rvar.eval.metrics`: PSNR, SSIM and LPIPS per image, shared by the training stages, ``rvar compare`` and
  the demo;
* :mod:`rvar.eval.protocol`: the ``native`` and ``restorevar`` evaluation protocols (RestoreVAR's uint8 metrics and
  its Table 1 layout); the test images each protocol prepares are :mod:`rvar.data.evaluation`'s;
* :mod:`rvar.eval.ladder`: the quality ladder, a RestoreVAR restorer scored stage by stage;
* :mod:`rvar.eval.compare`: ``rvar compare``'s scoring: contenders, test images, restoring, timing, averages;
* :mod:`rvar.eval.results`: the files an evaluation writes and the demo's report reads (CSV and markdown tables,
  grids, sample images, the quality-vs-time plot).

Modules here import the core (``rvar.errors``, ``rvar.io``, ``rvar.inference`` ...), ``rvar.nn`` and ``rvar.data``,
never ``rvar.lit``, ``rvar.bench``, ``rvar.demo`` or ``rvar.commands``: the LightningModules score with them.
"""
