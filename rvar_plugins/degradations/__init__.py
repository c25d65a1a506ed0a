"""Built-in degradation plugins. Importing this package registers them (see :mod:`rvar.registry`).

Batched Kornia/torch ops (``device_op = True``) live in :mod:`.kornia_ops`, per-image Albumentations ops
(``device_op = False``) in :mod:`.albumentations_ops`, and the ``mixed`` chain in :mod:`.mixed`.
"""
from rvar_plugins.degradations import albumentations_ops, kornia_ops, mixed  # noqa: F401
