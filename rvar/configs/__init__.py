"""The YAML configs that ship with rvar: ``lightning_config.yaml`` (defaults of every ``rvar fit``) and ``experiments/``.

In the repository both stay at the top level; this package holds links to them, and a wheel carries copies
(package data, see ``pyproject.toml``), so code finds them here through :mod:`importlib.resources` in a
checkout, an editable install or a plain ``pip install`` alike.
"""
from importlib.resources import files
from pathlib import Path
from typing import List


def root() -> Path:
    """The folder holding ``lightning_config.yaml`` and ``experiments/``."""
    return Path(str(files(__name__)))


def default_config() -> Path:
    return root() / "lightning_config.yaml"


def experiments() -> Path:
    return root() / "experiments"


def tiny_configs() -> List[Path]:
    """The CPU-sized stage configs (``experiments/tiny/*.yaml``) that ``rvar demo`` derives its runs from."""
    return sorted((experiments() / "tiny").glob("*.yaml"))
