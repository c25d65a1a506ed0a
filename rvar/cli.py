"""The ``rvar`` command: LightningCLI for fit/validate/test/predict, plus the extra subcommands.

Extra subcommands live one per module in :mod:`rvar.commands` (see ``COMMANDS`` there). Every user error
(:class:`~rvar.errors.UserError`, a bad or missing YAML config, a bad argument) ends as one line
``rvar: error: ...`` on stderr and exit status 2; set ``RVAR_DEBUG=1`` to see the traceback instead. Lightning's
own configuration errors (``MisconfigurationException``, e.g. ``--trainer.max_steps=-5``) count as user errors.

Ctrl-C ends with status 130 and SIGTERM with 143 (128 + the signal). The extra commands turn SIGTERM into
:class:`~rvar.errors.Terminated` (a KeyboardInterrupt), so the file being written is removed as for Ctrl-C;
under ``fit`` Lightning's handler finishes the current batch, then stops (resume with ``--ckpt_path last``).
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import rvar
from rvar import configs
from rvar.commands import COMMANDS
from rvar.errors import Terminated, UserError

LIGHTNING_COMMANDS: Dict[str, str] = {
    "fit": "train a model (LightningCLI; config: lightning_config.yaml + --config FILE ...)",
    "validate": "run one validation epoch on a model (LightningCLI)",
    "test": "evaluate a model on the test sets (LightningCLI)",
    "predict": "run a model's predict step over the test sources (LightningCLI)",
}
DEFAULT_CONFIG = configs.root() / "lightning_config.yaml"
EXAMPLES = """examples:
  rvar demo                                    # the whole method on the embedded photos (~15 min, 2 CPU cores)
  rvar restore photo.jpg --ckpt outputs/demo/restorevar.ckpt -o restored/
  rvar import-checkpoint --vae vae_ch160v4096z32.pth --var restorevar.pth -o restorevar.ckpt
  rvar fit --config experiments/tiny/tokenizer.yaml
  rvar degrade photos/ --degradations rain,haze -o outputs/degraded
  rvar plugins --kind degradations"""


def _lightning_cli_class():
    """Build :class:`RVARCLI` lazily: importing Lightning costs seconds, the extra commands need not pay it."""
    from lightning.pytorch import LightningModule
    from lightning.pytorch.cli import LightningCLI

    from rvar.lit.tracking import MLflowSaveConfigCallback, continue_run_from_checkpoint

    class RVARCLI(LightningCLI):
        """LightningCLI with rvar's defaults: any LightningModule / LightningDataModule by ``class_path``,
        ``lightning_config.yaml`` as the default config file, ``seed_everything: 0``, tolerant config saving."""

        def __init__(self, args: Optional[List[str]] = None, run: bool = True, **kwargs: Any) -> None:
            defaults = [str(DEFAULT_CONFIG)] if DEFAULT_CONFIG.is_file() else []
            parser_kwargs: Dict[str, Any] = {"exit_on_error": False}
            parser_kwargs.update({name: {"default_config_files": defaults, "exit_on_error": False}
                                  for name in LIGHTNING_COMMANDS})
            options: Dict[str, Any] = dict(
                model_class=LightningModule, subclass_mode_model=True, subclass_mode_data=True,
                save_config_callback=MLflowSaveConfigCallback, save_config_kwargs={"overwrite": True},
                seed_everything_default=0, parser_kwargs=parser_kwargs,
            )
            options.update(kwargs)
            super().__init__(args=args, run=run, **options)

        def before_instantiate_classes(self) -> None:
            """Name unnamed MLflow runs after the config and the time (:func:`rvar.lit.tracking.default_run_name`)."""
            name_mlflow_runs(self.config[self.subcommand], self.subcommand)

        def weights_only(self) -> None:
            """Lightning loads ``--ckpt_path`` weights-only: a checkpoint must not be able to run code."""
            config = self.config_init[self.subcommand]  # what the subcommand receives; the logged config is unchanged
            if "weights_only" in config:
                if config["weights_only"] is False:
                    raise UserError(f"rvar {self.subcommand}: --weights_only=false is refused: rvar never unpickles "
                                    f"arbitrary objects from a checkpoint (they could run code)")
                config["weights_only"] = True

        before_validate = before_test = before_predict = weights_only

        def instantiate_trainer(self, **kwargs: Any):
            """Outside a terminal (a log file, CI, SLURM) progress is one line per interval, not tqdm's bar."""
            from rvar.lit.progress import LineProgressBar, wants_line_progress

            init = self.config_init[self.subcommand] if self.subcommand else self.config_init
            config = {**init.get("trainer", {}), **kwargs}
            if wants_line_progress(config, []):
                given = config.get("callbacks") or []
                kwargs["callbacks"] = [*(given if isinstance(given, list) else [given]), LineProgressBar()]
            return super().instantiate_trainer(**kwargs)

        def parse_arguments(self, parser: Any, args: Any) -> None:
            """An explicit ``--ckpt_path FILE`` is checked first, so a bad file is one line (Lightning then
            reads its hyper-parameters, weights-only too)."""
            from rvar.nn.checkpoints import read_torch_file

            super().parse_arguments(parser, args)
            subcommand = self.config.get("subcommand")
            ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
            if ckpt_path and Path(ckpt_path).is_file():
                read_torch_file(ckpt_path, mmap=True)

        def before_fit(self) -> None:
            """``--ckpt_path``: continue the MLflow run recorded in the checkpoint instead of opening one."""
            self.weights_only()
            continue_run_from_checkpoint(self.trainer, self.config_init[self.subcommand].get("ckpt_path"))

    return RVARCLI


def name_mlflow_runs(config: Any, command: str) -> None:
    """Fill ``run_name`` of every rvar MLflow logger in a parsed LightningCLI ``config`` that has none."""
    from rvar.lit.tracking import default_run_name

    loggers = config.get("trainer", {}).get("logger")
    loggers = loggers if isinstance(loggers, list) else [loggers]
    given = [Path(str(p)) for p in (config.get("config") or [])]
    stage_config = next((p for p in given if p.resolve() != DEFAULT_CONFIG), None)
    model = config.get("model")
    model_class = model.get("class_path") if hasattr(model, "get") else None
    for logger in loggers:
        if not hasattr(logger, "get") or not str(logger.get("class_path", "")).endswith("RVARMLFlowLogger"):
            continue
        init = logger.get("init_args")
        if init is not None and init.get("run_name") is None:
            init["run_name"] = default_run_name(stage_config, command, model_class)


def __getattr__(name: str):  # `from rvar.cli import RVARCLI` works without importing Lightning up front
    if name == "RVARCLI":
        return _lightning_cli_class()
    raise AttributeError(name)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is a one-line UserError."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message}")


def usage() -> str:
    """The text of ``rvar --help``: every subcommand with one line, then examples."""
    lines = ["usage: rvar COMMAND [options]   (rvar COMMAND --help for details)", "", "commands:"]
    lines += [f"  {name:<18} {text}" for name, text in LIGHTNING_COMMANDS.items()]
    for name, module_path in COMMANDS.items():
        try:
            text = importlib.import_module(module_path).HELP
        except Exception as exc:  # noqa: BLE001 - one broken command must not hide the others
            text = f"(unavailable: {type(exc).__name__}: {exc})"
        lines.append(f"  {name:<18} {text}")
    lines += ["", EXAMPLES, "", "Errors are one line; set RVAR_DEBUG=1 for a traceback."]
    return "\n".join(lines)


def _config_paths(args: Sequence[str]) -> List[str]:
    paths, items = [], list(args)
    for position, item in enumerate(items):
        if item in ("--config", "-c") and position + 1 < len(items):
            paths.append(items[position + 1])
        elif item.startswith("--config="):
            paths.append(item.split("=", 1)[1])
    return paths


def check_config_files(args: Sequence[str]) -> None:
    """Fail early, on one line, for a ``--config`` file that is missing, not YAML, or not a mapping."""
    from rvar.files import read_yaml

    for value in _config_paths(args):
        if "\n" in value or value.lstrip().startswith("{"):
            continue  # an inline YAML string, which jsonargparse also accepts
        path = Path(value)
        content = read_yaml(path)
        if content is not None and not isinstance(content, dict):
            raise UserError(f"{path}: a config file must be a YAML mapping (key: value), got {type(content).__name__}")


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _run_extra(name: str, argv: List[str]) -> int:
    import threading

    module = importlib.import_module(COMMANDS[name])
    parser = _Parser(prog=f"rvar {name}", description=module.DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    if threading.current_thread() is not threading.main_thread():  # only the main thread may handle signals
        return int(module.run(args) or 0)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return int(module.run(args) or 0)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_lightning(argv: List[str], from_sys_argv: bool) -> int:
    from jsonargparse import ArgumentError
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    check_config_files(argv[1:])
    cli_class = _lightning_cli_class()
    try:
        cli_class(args=None if from_sys_argv else argv)  # None: LightningCLI reads sys.argv itself
    except (ArgumentError, MisconfigurationException) as exc:
        text = " ".join(str(exc).split()) or "invalid arguments"
        raise UserError(f"rvar {argv[0]}: {text[:400]}") from exc
    except SIGTERMException:  # a SystemExit without a code: it would read as success
        print(f"rvar: terminated (SIGTERM); continue with `rvar {argv[0]} ... --ckpt_path last`", file=sys.stderr)
        return 128 + signal.SIGTERM
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``rvar``; returns the exit status (0 fine, 1 some inputs failed, 2 user error)."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from_sys_argv = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if not argv or argv[0] in ("-h", "--help", "help"):
            print(usage())
            return 0
        if argv[0] == "--version":
            print(f"rvar {rvar.__version__}")
            return 0
        if argv[0] in COMMANDS:
            return _run_extra(argv[0], argv[1:])
        if argv[0] in LIGHTNING_COMMANDS:
            return _run_lightning(argv, from_sys_argv)
        raise UserError(f"unknown command {argv[0]!r}; commands: "
                        + ", ".join([*LIGHTNING_COMMANDS, *COMMANDS]) + " (see rvar --help)")
    except UserError as exc:
        if os.environ.get("RVAR_DEBUG"):
            traceback.print_exc()
        message = " ".join(str(exc).split())  # always one line
        print(f"rvar: error: {message}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help of a subcommand, or a library that exits by itself
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except Terminated:
        print("rvar: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("rvar: interrupted", file=sys.stderr)
        return 130
