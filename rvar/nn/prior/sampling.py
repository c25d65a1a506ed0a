"""Token selection from logits: greedy, or top-k / top-p / temperature with an explicit generator; and the
expected codeword, the probability-weighted mean of the codebook (``PriorConfig.decoding = "expected"``)."""
from __future__ import annotations

from typing import Optional

import torch

DECODINGS = ("greedy", "expected")


def filtered_logits(logits_BlV: torch.Tensor, top_k: int = 0, top_p: float = 0.0,
                    temperature: float = 1.0) -> torch.Tensor:
    """Logits (fp32) divided by ``temperature``, with the tokens outside the top-k / top-p set at -inf."""
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
    return logits


def sample_tokens(logits_BlV: torch.Tensor, top_k: int = 0, top_p: float = 0.0, temperature: float = 1.0,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Pick one token per position (B, l).

    Greedy (argmax, RestoreVAR's choice) when ``top_k <= 0``, ``top_p <= 0`` and ``temperature == 1`` and no
    generator is given; otherwise samples from the filtered, tempered distribution with ``generator``.
    """
    if top_k <= 0 and top_p <= 0 and temperature == 1.0 and generator is None:
        return logits_BlV.argmax(dim=-1)
    logits = filtered_logits(logits_BlV, top_k, top_p, temperature)
    probs = logits.softmax(-1).view(-1, logits.shape[-1])
    return torch.multinomial(probs, 1, generator=generator).view(logits.shape[:-1])


def expected_codewords(logits_BlV: torch.Tensor, codebook_VC: torch.Tensor, top_k: int = 0, top_p: float = 0.0,
                       temperature: float = 1.0) -> torch.Tensor:
    """(B, l, C): each position's codeword averaged over the predicted distribution (filtered and tempered as in
    :func:`sample_tokens`). Under a squared error this is the best single guess of the scale's residual that the
    prior's probabilities allow; the argmax is the best guess only when the prior is sure."""
    probs = filtered_logits(logits_BlV, top_k, top_p, temperature).softmax(-1)
    return probs @ codebook_VC.float()
