"""``rvar demo``: train every tiny stage, compare the results with the baselines, and write a report.

* :mod:`rvar.demo.runner`: the stages, each a real ``rvar fit`` run of a config derived from
  ``experiments/tiny``, then ``rvar compare`` and the report (:func:`~rvar.demo.runner.run_demo`);
* :mod:`rvar.demo.tracking`: one MLflow parent run per demo, and its progress lines;
* :mod:`rvar.demo.report` and :mod:`rvar.demo.viewer`: ``report.md`` and the self-contained ``report.html`` with
  its before/after sliders, read from the files the comparison wrote;
* :mod:`rvar.demo.asset`: rebuilds the tiny tokenizer, pre-trained prior and pre-trained LDM denoiser that ship in
  ``rvar/assets`` (``make assets``, ``python -m rvar.demo.asset``).

The demo sits on top of the library: it may import anything in ``rvar`` except ``rvar.commands``, and nothing in
the library imports it.
"""
