"""MLflow tracking for every rvar run: a local SQLite store by default, a remote server by URI alone.

* :class:`RVARMLFlowLogger` (the default ``trainer.logger`` of ``lightning_config.yaml``) writes to
  ``$MLFLOW_TRACKING_URI`` or, when unset, ``sqlite:///mlflow.db`` in the working directory with artifacts under
  ``mlruns/`` next to the database (MLflow 3 refuses the plain file store); ``rvar fit`` names each run after
  its config and the time (:func:`default_run_name`). When its run is first created it tags it with the
  rvar git commit and the rvar / torch / lightning / mlflow versions. Parameters that already exist with another
  value (a resumed run with a longer ``max_steps``) are skipped with one warning instead of failing.
* :class:`MLflowSaveConfigCallback` (LightningCLI's ``save_config_callback`` in :class:`rvar.cli.RVARCLI`) logs
  the resolved config as the ``config.yaml`` artifact and its flattened values as parameters, from rank 0, and
  never asserts on ``trainer.log_dir`` (an MLflow-only logger has none).
* :func:`mlflow_run_id_from_checkpoint` reads (weights-only: no arbitrary unpickling) the run id that
  :class:`rvar.lit.callbacks.ArtifactCheckpoints` stores in every checkpoint, so ``rvar fit ... --ckpt_path last``
  continues the same MLflow run.

Only rank 0 writes: Lightning hands the other ranks a dummy experiment, and rvar's logger opens no MLflow store
on them at all (Lightning's would: a ``sqlite:///`` URI left an empty ``mlflow.db`` in every node's folder).
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
import warnings
from argparse import Namespace
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional

import lightning.pytorch as pl
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from rvar.lit.lightning_compat import (ensure_mlflow_client, last_checkpoints, mlflow_logger_without_client,
                                      mlflow_pending_run_id, mlflow_run_started, set_mlflow_run_id)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
RUN_ID_KEY = "mlflow_run_id"  # where checkpoints keep the MLflow run id


# 1. where runs go ---------------------------------------------------------------------------------------------
def resolve_tracking_uri(uri: Optional[str] = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``; relative SQLite paths and plain
    folders become absolute against the working directory (DDP ranks and later resumes then agree)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).expanduser().resolve())
    if "://" not in uri and not uri.startswith("databricks"):
        raise ValueError(f"MLflow tracking URI {uri!r}: a plain folder is MLflow's file store, which MLflow 3 "
                         f"refuses; use sqlite:///{uri.rstrip('/')}/mlflow.db or a server URL (http://...)")
    return uri


def default_artifact_location(tracking_uri: str) -> Optional[str]:
    """``mlruns/`` (as a file URI) in the folder of a local SQLite store; None (the server decides) otherwise.
    Training and ``rvar compare`` both use it, so one store has one artifact root."""
    if tracking_uri.startswith("sqlite:///"):
        database = resolve_tracking_uri(tracking_uri)[len("sqlite:///"):]
        return (Path(database).parent / "mlruns").resolve().as_uri()
    return None


# MLflow 3's UI opens an experiment without this tag in its GenAI view (traces); rvar's are training runs
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def ensure_experiment(client: Any, name: str) -> str:
    """The id of experiment ``name`` in ``client``'s store, created with :func:`default_artifact_location`."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=default_artifact_location(client.tracking_uri),
                                    tags=EXPERIMENT_KIND)


def mark_training_experiment(client: Any, experiment_id: str) -> None:
    """Tag an experiment that has no kind yet as model training (its runs, not traces, open in the UI)."""
    key, value = next(iter(EXPERIMENT_KIND.items()))
    try:
        if key not in client.get_experiment(experiment_id).tags:
            client.set_experiment_tag(experiment_id, key, value)
    except Exception:  # noqa: BLE001 - cosmetic: an older server without tags must not stop training
        pass


def default_run_name(config: Optional[str | os.PathLike] = None, command: str = "fit",
                     model: Optional[str] = None, now: Optional[datetime] = None) -> str:
    """A run name that says what ran, e.g. ``prior-tiny-20261127-041203`` for ``rvar fit --config
    experiments/tiny/prior.yaml``: the command unless it is ``fit``, the config's stem and folder (not the
    uninformative ``experiments``), else the model class, then the local time to the second. Drawn from the
    clock, not from ``random`` (which ``seed_everything`` resets, giving every run MLflow's same name)."""
    parts = [] if command == "fit" else [command]
    if config is not None:
        path = Path(config)
        parts += [path.stem] + ([path.parent.name] if path.parent.name not in ("", ".", "experiments") else [])
    elif model:
        parts.append(model.rsplit(".", 1)[-1].removesuffix("Module").lower())
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    unique = [p for i, p in enumerate(parts) if p and p not in parts[:i]]
    return "-".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", p) for p in unique + [stamp])


def git_commit(folder: Path) -> Optional[str]:
    """The commit checked out in ``folder`` (``+dirty`` with uncommitted changes), or None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit or None


def run_tags() -> Dict[str, str]:
    """Tags of a new run: the rvar source commit and package versions (computed at fit time, not import)."""
    import lightning
    import mlflow
    import torch

    import rvar

    tags = {"rvar.version": rvar.__version__, "torch.version": torch.__version__,
            "lightning.version": lightning.__version__, "mlflow.version": mlflow.__version__}
    commit = git_commit(Path(rvar.__file__).resolve().parents[1])
    if commit:
        tags["rvar.git_commit"] = commit
    return tags


# 2. the logger ------------------------------------------------------------------------------------------------
def is_global_rank_zero() -> bool:
    """Whether this process is global rank 0 as far as is known before the Trainer starts: the rank that
    torchrun / SLURM put in the environment (Lightning's ``rank_zero_only.rank``) and, for Lightning's own
    multi-node launch, which sets only ``NODE_RANK`` on the first process of each node, node 0."""
    return rank_zero_only.rank == 0 and os.environ.get("NODE_RANK", "0").strip() in ("", "0")


class RVARMLFlowLogger(MLFlowLogger):
    """Lightning's ``MLFlowLogger`` with rvar's defaults.

    Args:
        experiment_name: MLflow experiment (created when missing).
        run_name: display name of the run; None: ``rvar fit`` fills in :func:`default_run_name` (config and time),
            elsewhere ``run-<time>`` (MLflow's own generator draws from the seeded ``random``: every run alike).
        tracking_uri: None: ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db`` in the working directory.
        tags: extra run tags (the git commit and versions are added).
        artifact_location: where a *new* experiment keeps artifacts; None: ``mlruns/`` next to a SQLite store.
        run_id: continue this run instead of creating one (``--ckpt_path`` sets it from the checkpoint).
        log_model: Lightning's checkpoint logging; rvar leaves it off and logs the best and last checkpoints
            through :class:`rvar.lit.callbacks.ArtifactCheckpoints`.
        prefix: prefix of every metric name.
    """

    def __init__(self, experiment_name: str = "rvar", run_name: Optional[str] = None,
                 tracking_uri: Optional[str] = None, tags: Optional[Dict[str, Any]] = None,
                 artifact_location: Optional[str] = None, run_id: Optional[str] = None,
                 log_model: bool = False, prefix: str = "") -> None:
        tracking_uri = resolve_tracking_uri(tracking_uri)
        run_name = run_name or default_run_name(command="run")
        with nullcontext() if is_global_rank_zero() else mlflow_logger_without_client():
            super().__init__(experiment_name=experiment_name, run_name=run_name, tracking_uri=tracking_uri,
                             tags=dict(tags or {}), save_dir=None, log_model=log_model, prefix=prefix,
                             artifact_location=artifact_location or default_artifact_location(tracking_uri),
                             run_id=run_id)
        self.resumed = run_id is not None

    def resume_run(self, run_id: str) -> None:
        """Continue ``run_id`` (an existing run) instead of creating a new one; call before the first log."""
        if mlflow_run_started(self) and mlflow_pending_run_id(self) != run_id:
            raise RuntimeError(f"MLflow run {mlflow_pending_run_id(self)} is already open; cannot switch to {run_id}")
        set_mlflow_run_id(self, run_id)
        self.resumed = True

    @property
    def experiment(self):
        """The MLflow client; creates (or reopens) the run on first use, on rank 0 only."""
        if not mlflow_run_started(self) and rank_zero_only.rank == 0:
            ensure_mlflow_client(self)  # built while the environment named another rank (see __init__)
            if mlflow_pending_run_id(self) is None:
                self.tags = {**run_tags(), **(self.tags or {})}
                client = super().experiment
                mark_training_experiment(client, self.experiment_id)
                return client
            client = super().experiment
            client.update_run(self.run_id, status="RUNNING")  # a killed run was left RUNNING or FAILED
            return client
        return super().experiment

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        """Log parameters, skipping (one warning) those that already exist with another value."""
        params = vars(params) if isinstance(params, Namespace) else dict(params or {})
        flat = {key: value[:250] for key, value in flatten_config(params, "/").items()
                if not key.startswith("_")}  # LightningCLI's private entries (_instantiator, ...)
        existing = self.experiment.get_run(self.run_id).data.params
        changed = sorted(k for k, v in flat.items() if k in existing and existing[k] != v)
        if changed:
            warnings.warn(f"MLflow run {self.run_id}: keeping the first value of changed parameter(s) "
                          f"{', '.join(changed[:8])}{' ...' if len(changed) > 8 else ''}", stacklevel=2)
        fresh = {k: v for k, v in flat.items() if k not in existing}
        if fresh:
            super().log_hyperparams(fresh)


def mlflow_loggers(trainer: "pl.Trainer") -> list:
    """The trainer's MLflow loggers (any ``MLFlowLogger``, rvar's or Lightning's)."""
    return [logger for logger in trainer.loggers if isinstance(logger, MLFlowLogger)]


# 3. the resolved config ---------------------------------------------------------------------------------------
def flatten_config(config: Mapping[str, Any], delimiter: str = ".", prefix: str = "") -> Dict[str, str]:
    """``{"trainer.max_steps": "4", "model.init_args.optimizer.init_args.lr": "0.0001", ...}`` (values as str)."""
    flat: Dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        value = vars(value) if isinstance(value, Namespace) else value
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, delimiter, f"{name}{delimiter}"))
        else:
            flat[name] = str(value)
    return flat


class MLflowSaveConfigCallback(SaveConfigCallback):
    """Writes ``config.yaml`` into the log folder when there is one, and logs it to every MLflow run.

    With an MLflow-only logger (no log folder) the file is skipped instead of failing LightningCLI's
    ``assert log_dir is not None``. On rank 0 :meth:`save_config` uploads the YAML as the ``config.yaml``
    artifact (``config.resumed.yaml`` for a continued run) and logs the flattened values as parameters
    (``ckpt_path`` and the like are left out: they change between a run and its resumption).
    """

    SKIPPED_KEYS: Iterable[str] = ("ckpt_path", "config", "__path__")

    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if self.save_to_log_dir and trainer.log_dir is None:
            self.save_to_log_dir = False
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        loggers = mlflow_loggers(trainer)
        if not loggers:
            return
        text = self.parser.dump(self.config, skip_none=False)
        values = {k: v for k, v in self.config.as_dict().items() if k not in self.SKIPPED_KEYS}
        params = {k: v for k, v in flatten_config(values).items() if not k.startswith("trainer.callbacks")}
        with tempfile.TemporaryDirectory() as folder:
            for logger in loggers:
                name = "config.resumed.yaml" if getattr(logger, "resumed", False) else "config.yaml"
                path = Path(folder) / name
                path.write_text(text)
                logger.experiment.log_artifact(logger.run_id, str(path))
                logger.log_hyperparams(params)


# 4. resuming the same run -------------------------------------------------------------------------------------
def mlflow_run_id_from_checkpoint(path: str | os.PathLike) -> Optional[str]:
    """The MLflow run id stored in a Lightning checkpoint, read with ``weights_only=True`` (a checkpoint is
    untrusted input: unpickling arbitrary objects could run code) and memory-mapped (big files load lazily).

    Raises:
        CheckpointError: the file is not a checkpoint that loads weights-only (Lightning, which rvar also asks
            for a weights-only load, could not resume from it either).
    """
    from rvar.nn.checkpoints import read_torch_file

    run_id = read_torch_file(path, mmap=True).get(RUN_ID_KEY)
    if not run_id:
        warnings.warn(f"{path}: holds no MLflow run id ({RUN_ID_KEY}); the resumed training logs to a new "
                      f"MLflow run", stacklevel=2)
        return None
    return str(run_id)


def continue_run_from_checkpoint(trainer: "pl.Trainer", ckpt_path: Optional[str]) -> Optional[str]:
    """Point the trainer's rvar MLflow loggers at the run recorded in ``ckpt_path`` (``"last"`` is resolved
    like Lightning does: the newest ``last*.ckpt`` of the checkpoint callbacks). Returns the run id or None."""
    if not ckpt_path or ckpt_path in ("best", "hpc", "registry"):
        return None
    if ckpt_path == "last":
        from lightning.pytorch.callbacks import ModelCheckpoint

        candidates = set()
        for callback in trainer.checkpoint_callbacks:
            if hasattr(callback, "resolve_dirpath"):
                callback.resolve_dirpath(trainer)  # rvar's: checkpoints/ under default_root_dir
            # a ModelCheckpoint without a dirpath would ask the logger for its run (creating one): skip it
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is not None:
                candidates |= last_checkpoints(callback, trainer)
        existing = [Path(p) for p in candidates if Path(p).is_file()]
        if not existing:
            return None
        ckpt_path = str(max(existing, key=lambda p: p.stat().st_mtime))
    if not Path(ckpt_path).is_file():
        return None
    run_id = mlflow_run_id_from_checkpoint(ckpt_path)
    if run_id:
        for logger in trainer.loggers:
            if isinstance(logger, RVARMLFlowLogger):
                logger.resume_run(run_id)
    return run_id
