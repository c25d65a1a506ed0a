"""The extra ``rvar`` subcommands, one module each.

Adding a command is one line here: ``"name": "module.path"``. The module exposes ``HELP`` (one line),
``DESCRIPTION`` (a paragraph with an example), ``add_arguments(parser)`` and ``run(args) -> int``.
``fit``, ``validate``, ``test`` and ``predict`` are not here: they go to LightningCLI (:mod:`rvar.cli`).
"""
from typing import Dict

COMMANDS: Dict[str, str] = {
    "plugins": "rvar.commands.plugins",
    "degrade": "rvar.commands.degrade",
    "import-checkpoint": "rvar.commands.import_checkpoint",
    "reconstruct": "rvar.commands.reconstruct",
    "restore": "rvar.commands.restore",
    "demo": "rvar.commands.demo",
    "compare": "rvar.commands.compare",
    "bench": "rvar.commands.bench",
    "sweep": "rvar.commands.sweep",
    "app": "rvar.commands.app",
}
