"""rvar's networks: plain torch modules (tokenizer, prior, refiner, restorer) and their checkpoint keys.

Depends on torch and einops only: nothing here imports Lightning, Kornia, diffusers or the plugin registry.
"""
import torch


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (only those that require gradients with ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
