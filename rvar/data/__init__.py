"""Data for rvar: the degradation pipeline, datasets, the embedded photos and the DataModule.

Names are imported on first use, so ``rvar.data.degrade`` or ``rvar.data.datasets`` load without Lightning.
"""
import importlib

_EXPORTS = {
    "DegradationDataModule": "rvar.data.datamodule",
    "DegradationPipeline": "rvar.data.degrade",
    "make_degradation": "rvar.data.degrade",
    "sample_seed": "rvar.data.degrade",
    "ensure_embedded": "rvar.data.embedded",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rvar.data' has no attribute {name!r}")
