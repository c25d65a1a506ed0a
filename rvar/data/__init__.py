"""Data for rvar: the degradation pipeline, datasets, the embedded photos and the DataModule."""
from rvar.data.datamodule import DegradationDataModule
from rvar.data.degrade import DegradationPipeline, make_degradation, sample_seed
from rvar.data.embedded import ensure_embedded

__all__ = ["DegradationDataModule", "DegradationPipeline", "make_degradation", "sample_seed", "ensure_embedded"]
