"""Built-in baselines (registry kind ``baselines``): LightningModules chosen from YAML by ``class_path``.

* ``ldm``: :class:`~rvar_plugins.baselines.ldm.LatentDiffusionRestorer`, a DiT denoiser in the tokenizer's
  latent, sampled with DDIM or DPM-Solver++;
* ``nafnet``: :class:`~rvar_plugins.baselines.regression.RegressionRestorer`, NAFNet in pixel space, L1 loss.

:func:`rvar.inference.load_baseline` rebuilds either from a checkpoint.
"""
from rvar_plugins.baselines.ldm import LatentDiffusionRestorer
from rvar_plugins.baselines.regression import RegressionRestorer

__all__ = ["LatentDiffusionRestorer", "RegressionRestorer"]
