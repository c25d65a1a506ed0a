"""rvar: all-in-one image restoration with visual autoregressive models (RestoreVAR) on PyTorch Lightning.

Importing rvar has no side effects: no backend flags, no downloads, no plugin loading
(plugins load on first use of a registry, see :mod:`rvar.registry`).
"""

__version__ = "0.1.0"
