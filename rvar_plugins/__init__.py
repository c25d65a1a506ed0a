"""Built-in rvar plugins. Importing this package registers them (see :mod:`rvar.registry`)."""
from rvar_plugins import attention, baselines, degradations  # noqa: F401
