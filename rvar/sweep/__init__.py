"""Hyper-parameter sweeps over ``rvar fit`` configs with Optuna, tracked in MLflow (``rvar sweep``).

:mod:`.space` reads the sweep file, :mod:`.runner` runs the study (one ``rvar fit`` subprocess per trial),
:mod:`.trial` is the callback inside each trial, :mod:`.report` writes the sweep run's summary artifacts.
Optuna is an optional dependency (``pip install 'rvar[sweep]'``); nothing here imports it at module level.
"""
