"""The YAML configs that ship with rvar: ``lightning_config.yaml`` (defaults of every ``rvar fit``) and ``experiments/``.

In the repository both stay at the top level and this package holds links to them; a wheel carries copies
(package data in ``pyproject.toml``). Code finds them here, through :mod:`importlib.resources`, in a checkout,
an editable install or a plain ``pip install`` alike.
"""
from importlib.resources import files
from pathlib import Path


def root() -> Path:
    """The folder holding ``lightning_config.yaml`` and ``experiments/``."""
    return Path(str(files(__name__)))
