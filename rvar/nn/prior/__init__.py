"""The RestoreVAR prior (plain torch): VAR transformer with cross-attention to the degraded latent."""
from rvar.nn.prior.config import PriorConfig
from rvar.nn.prior.model import RestoreVARPrior, SampleOutput

__all__ = ["PriorConfig", "RestoreVARPrior", "SampleOutput"]
