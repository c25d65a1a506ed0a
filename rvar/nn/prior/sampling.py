"""Token selection from logits: greedy, or top-k / top-p / temperature with an explicit generator."""
from __future__ import annotations

from typing import Optional

import torch


def sample_tokens(logits_BlV: torch.Tensor, top_k: int = 0, top_p: float = 0.0, temperature: float = 1.0,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Pick one token per position (B, l).

    Greedy (argmax, RestoreVAR's choice) when ``top_k <= 0``, ``top_p <= 0`` and ``temperature == 1`` and no
    generator is given; otherwise samples from the filtered, tempered distribution with ``generator``.
    """
    if top_k <= 0 and top_p <= 0 and temperature == 1.0 and generator is None:
        return logits_BlV.argmax(dim=-1)
    logits = logits_BlV.float() / max(temperature, 1e-5)
    V = logits.shape[-1]
    if 0 < top_k < V:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if 0 < top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cum - sorted_logits.softmax(-1) > top_p  # keep the smallest set reaching top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, -torch.inf)
    probs = logits.softmax(-1).view(-1, V)
    return torch.multinomial(probs, 1, generator=generator).view(logits.shape[:-1])
