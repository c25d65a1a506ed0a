"""The main job on the embedded default: train every tiny stage, compare, and write a report.

Each training stage is a real ``rvar fit`` run (a subprocess) of a config derived from ``experiments/tiny``:
the demo rewrites only output paths, the checkpoints a stage reads, and a wall-time budget
(``trainer.max_time``), and keeps the derived YAML under ``OUT/configs`` so every run can be repeated by hand.
Runs are tracked in MLflow (``OUT/mlflow.db``). A stage whose exported checkpoint exists and whose derived config
is unchanged is reused; an interrupted stage resumes from its ``last.ckpt``; ``--fresh`` starts over.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import yaml
from tqdm import tqdm

from rvar import configs
from rvar.errors import UserError

CONFIGS = configs.root()
TINY = CONFIGS / "experiments" / "tiny"


@dataclass
class Stage:
    """One ``rvar fit`` run of the demo."""

    name: str  # also the experiments/tiny/<config>.yaml stem unless ``config`` says otherwise
    share: float  # fraction of the training budget
    output: str  # exported checkpoint file name under OUT
    reads: Dict[str, str] = field(default_factory=dict)  # model init_args key -> checkpoint file name under OUT
    config: Optional[str] = None
    min_seconds: int = 5

    @property
    def config_path(self) -> Path:
        return TINY / f"{self.config or self.name}.yaml"


STAGES: List[Stage] = [
    Stage("tokenizer", 0.30, "tokenizer.ckpt"),
    Stage("prior", 0.25, "prior.ckpt", {"tokenizer_ckpt": "tokenizer.ckpt"}),
    Stage("refiner", 0.10, "restorer_refined.ckpt", {"prior_ckpt": "prior.ckpt"}),
    Stage("decoder", 0.08, "restorevar.ckpt", {"init_from": "restorer_refined.ckpt"}),
    Stage("ldm", 0.17, "ldm.ckpt", {"tokenizer_ckpt": "tokenizer.ckpt"}),
    Stage("nafnet", 0.10, "nafnet.ckpt"),
]
COMPARE_SHARE = 0.08  # of the whole budget, kept back for `rvar compare` and the report
STAGE_OVERHEAD = 20.0  # seconds a stage spends outside training (start-up, final validation, export)


def _seconds_to_max_time(seconds: int) -> str:
    s = max(int(seconds), 1)
    return f"00:{s // 3600:02d}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def derive_config(stage: Stage, out: Path, seconds: int) -> dict:
    """The stage's tiny config with the demo's paths and time budget."""
    try:
        cfg = yaml.safe_load(stage.config_path.read_text())
    except FileNotFoundError:
        raise UserError(f"{stage.config_path}: missing; the demo needs the tiny configs of the repository") from None
    trainer = cfg.setdefault("trainer", {})
    trainer["default_root_dir"] = str(out / "runs" / stage.name)
    trainer["max_time"] = _seconds_to_max_time(seconds)
    trainer["max_steps"], trainer["max_epochs"] = -1, -1  # the time budget decides when each stage ends
    callbacks = [c for c in trainer.get("callbacks+", []) or [] if not str(c.get("class_path", "")).endswith("ExportCheckpoint")]
    callbacks.append({"class_path": "rvar.lit.export.ExportCheckpoint", "init_args": {"path": str(out / stage.output)}})
    trainer["callbacks+"] = callbacks
    init = cfg.setdefault("model", {}).setdefault("init_args", {})
    for key, name in stage.reads.items():
        init[key] = str(out / name)
    if stage.name == "ldm":
        init.pop("tokenizer_preset", None)
    return cfg


def config_digest(cfg: dict) -> str:
    """Digest of a derived config without its time budget (a new budget alone reuses a finished stage)."""
    c = json.loads(json.dumps(cfg))
    c.get("trainer", {}).pop("max_time", None)
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:16]


def last_error(log_path: Path) -> str:
    """The most telling line of a failed run's log: its last exception or error line."""
    lines = [l.strip() for l in log_path.read_text(errors="replace").splitlines() if l.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line or line.startswith("rvar: error"):
            return line[:300]
    return lines[-1][:300] if lines else "no output"


@dataclass
class StageResult:
    name: str
    status: str  # "trained", "resumed", "reused"
    seconds: float
    checkpoint: Path


def run_stage(stage: Stage, out: Path, seconds: int, env: Dict[str, str], position: int, total: int,
              log: Callable[[str], None]) -> StageResult:
    cfg = derive_config(stage, out, seconds)
    digest = config_digest(cfg)
    marker = out / "stages" / f"{stage.name}.json"
    ckpt = out / stage.output
    if marker.exists() and ckpt.exists() and json.loads(marker.read_text()).get("digest") == digest:
        log(f"[{position}/{total}] {stage.name}: reusing {ckpt} (finished earlier; --fresh retrains)")
        return StageResult(stage.name, "reused", 0.0, ckpt)
    cfg_path = out / "configs" / f"{stage.name}.yaml"
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(f"# derived by `rvar demo` from {stage.config_path.relative_to(CONFIGS)}\n" + yaml.safe_dump(cfg))
    run_dir = out / "runs" / stage.name
    last = run_dir / "checkpoints" / "last.ckpt"
    started = out / "stages" / f"{stage.name}.started"
    # an interrupted run of the same config continues; anything else under runs/<stage> is stale
    resume = last.exists() and started.exists() and started.read_text() == digest
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    cmd = [sys.executable, "-m", "rvar", "fit", "--config", str(cfg_path)]
    if resume:
        cmd += ["--ckpt_path", str(last)]
    started.parent.mkdir(parents=True, exist_ok=True)
    started.write_text(digest)
    log_path = out / "logs" / f"{stage.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    verb = "resuming" if resume else "training"
    start = time.perf_counter()
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, cwd=out, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        bar = tqdm(total=seconds, desc=f"[{position}/{total}] {verb} {stage.name}", unit="s", file=sys.stderr,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s", disable=None)
        while proc.poll() is None:
            time.sleep(1.0)
            bar.n = min(time.perf_counter() - start, seconds)
            bar.refresh()
        bar.n = min(time.perf_counter() - start, seconds)
        bar.close()
    if proc.returncode != 0 or not ckpt.exists():
        raise UserError(f"stage {stage.name} failed (exit {proc.returncode}): {last_error(log_path)} (log: {log_path})")
    marker.write_text(json.dumps({"digest": digest, "seconds": time.perf_counter() - start}))
    return StageResult(stage.name, "resumed" if resume else "trained", time.perf_counter() - start, ckpt)


def run_demo(out: Path, minutes: float, fresh: bool, log: Callable[[str], None] = print) -> Path:
    """Train every stage within ``minutes``, compare, and write ``out/report.md`` (+ html). Returns the report."""
    from rvar.report import write_report

    if minutes <= 0:
        raise UserError("--minutes must be positive")
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    t0 = time.perf_counter()
    env = dict(os.environ)
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{out / 'mlflow.db'}")
    env.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    env["PYTHONUNBUFFERED"] = "1"

    from rvar.data.embedded import ensure_embedded

    log("[0] preparing the embedded photos (scikit-image) ...")
    data_root = ensure_embedded()
    # the budget is wall time: each stage gets its share of what is left after start-up costs and the comparison
    total = minutes * 60
    compare_reserve = max(45.0, COMPARE_SHARE * total)
    results = []
    for i, stage in enumerate(STAGES, 1):
        left = STAGES[i - 1:]
        available = total - (time.perf_counter() - t0) - compare_reserve - STAGE_OVERHEAD * len(left)
        seconds = max(stage.min_seconds, int(available * stage.share / sum(s.share for s in left)))
        results.append(run_stage(stage, out, seconds, env, i, len(STAGES), log))
    log(f"[{len(STAGES) + 1}] comparing RestoreVAR with the baselines on the embedded val photos ...")
    compare_dir = out / "compare"
    ckpts = [out / "restorevar.ckpt", out / "ldm.ckpt", out / "nafnet.ckpt"]
    cmd = [sys.executable, "-m", "rvar", "compare", *map(str, ckpts), "--data", "embedded-val",
           "--degradations", "all", "--seed", "0", "--steps", "50", "-o", str(compare_dir)]  # the LDM at 50 steps
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)
    (out / "logs").mkdir(exist_ok=True)
    (out / "logs" / "compare.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise UserError(f"rvar compare failed (exit {proc.returncode}); see {out / 'logs' / 'compare.log'}")
    report = write_report(out, compare_dir, results, minutes=minutes, total_seconds=time.perf_counter() - t0,
                          compare_seconds=time.perf_counter() - start, data_root=data_root)
    return report
