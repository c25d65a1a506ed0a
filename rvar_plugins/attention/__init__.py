"""Attention variants (registry kind ``attention``): lists the built-ins, which live in the network itself.

``l2norm`` and ``sdpa`` are part of :mod:`rvar.nn.prior.attention` (the published weights need ``l2norm``), so a
prior never loads plugins to build them; they are registered here only so ``rvar plugins`` lists them.
A third-party variant subclasses :class:`rvar.nn.prior.attention.AttentionVariant` and registers itself with
``@rvar.registry.register_attention("name")``; choose it in YAML with ``attention: name`` in the prior config.
"""
from rvar.nn.prior.attention import BUILTIN_VARIANTS
from rvar.registry import ATTENTION

for _name, _variant in BUILTIN_VARIANTS.items():
    ATTENTION.register(_name, obj=_variant)
