"""VAR's multi-scale residual VQ tokenizer (plain torch)."""
from rvar.nn.tokenizer.config import RESTOREVAR_512_PATCH_NUMS, VAR_256_PATCH_NUMS, TokenizerConfig
from rvar.nn.tokenizer.quantizer import MultiScaleQuantizer, QuantizerOutput
from rvar.nn.tokenizer.vqvae import VQVAE, TokenizerOutput

__all__ = ["TokenizerConfig", "VQVAE", "TokenizerOutput", "MultiScaleQuantizer", "QuantizerOutput",
           "VAR_256_PATCH_NUMS", "RESTOREVAR_512_PATCH_NUMS"]
