"""LightningModules, one per RestoreVAR training stage, plus their shared helpers.

* :class:`TokenizerModule` (``rvar/lit/tokenizer.py``): tokenizer training, or decoder fine-tuning.
* :class:`PriorModule` (``rvar/lit/prior.py``): the prior, teacher-forced on clean tokens given the degraded latent.
* :class:`RefinerModule` (``rvar/lit/refiner.py``): the latent refiner on the frozen prior's samples.
* :class:`FidelityModule` (``rvar/lit/fidelity.py``): a learned fidelity path on a finished restorer's outputs.
* :class:`RestorerModule` (``rvar/lit/restorer.py``): a finished checkpoint under ``rvar test | predict``.
* :class:`ExportCheckpoint` (``rvar/lit/export.py``): writes a stage's rvar checkpoint to a fixed path.

Every stage's Lightning checkpoint is also an rvar checkpoint (``rvar.nn.checkpoints.load_checkpoint``).
"""
from rvar.lit.base import RVARModule, restorevar_adamw
from rvar.lit.export import ExportCheckpoint
from rvar.lit.fidelity import FidelityModule
from rvar.lit.prior import PriorModule
from rvar.lit.refiner import RefinerModule
from rvar.lit.restorer import RestoredImageWriter, RestorerModule
from rvar.lit.tokenizer import TokenizerModule

__all__ = ["RVARModule", "TokenizerModule", "PriorModule", "RefinerModule", "FidelityModule", "ExportCheckpoint", "restorevar_adamw",
           "RestorerModule", "RestoredImageWriter"]
