"""The main job on the embedded default: train every tiny stage, compare, and write a report.

Each training stage is a real ``rvar fit`` run (a subprocess) of a config derived from ``experiments/tiny``:
the demo rewrites only output paths, the checkpoints a stage reads, and a wall-time budget
(``trainer.max_time``), and keeps the derived YAML under ``OUT/configs`` so every run can be repeated by hand.
Runs are tracked in MLflow (``OUT/mlflow.db``, experiment ``OUT``'s name): each demo is one parent run with the
stages and the comparison nested under it (:mod:`rvar.demo.tracking`). A stage whose exported checkpoint exists
and whose derived config is unchanged is reused, and so is the comparison when it would score the same
checkpoints the same way; an interrupted stage resumes from its ``last.ckpt``; ``--fresh`` starts over.
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
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

import yaml

from rvar import configs
from rvar.errors import UserError
from rvar.files import atomic_write

if TYPE_CHECKING:
    from rvar.demo.tracking import DemoTracking

CONFIGS = configs.root()
TINY = CONFIGS / "experiments" / "tiny"
# The demo's tokenizer and prior ship with rvar, as RestoreVAR starts from VAR's released tokenizer and prior: both
# trained on the clean embedded training images only (no degradation, nothing held out), by `make assets` (the
# command and its numbers are in the .json beside each); the LDM baseline's denoiser ships pre-trained the same way
# for the same CPU time. `rvar demo --train-tokenizer` trains a tokenizer inside the budget instead, and then the
# prior and the denoiser start from scratch (the shipped ones fit only the shipped tokenizer).
ASSETS = Path(__file__).resolve().parents[1] / "assets"
SHIPPED_TOKENIZER = ASSETS / "tokenizer_cpu_f8.ckpt"
SHIPPED_PRETRAINED = {"prior_pretrained.ckpt": ASSETS / "prior_cpu_f8.ckpt",  # file under OUT -> shipped file
                      "ldm_pretrained.ckpt": ASSETS / "ldm_cpu_f8.ckpt"}


@dataclass
class Stage:
    """One ``rvar fit`` run of the demo."""

    name: str  # also the experiments/tiny/<config>.yaml stem unless ``config`` says otherwise
    share: float  # fraction of the training budget
    output: str  # exported checkpoint file name under OUT
    reads: Dict[str, str] = field(default_factory=dict)  # model init_args key -> checkpoint file name under OUT
    config: Optional[str] = None
    min_seconds: int = 5
    overrides: Dict[str, object] = field(default_factory=dict)  # model init_args set on top of the config

    @property
    def config_path(self) -> Path:
        return TINY / f"{self.config or self.name}.yaml"


# Shares of the training budget (renormalised over the stages that run: the tokenizer's only with
# --train-tokenizer). Every contender gets the same training budget: RestoreVAR's four stages together
# (prior + refiner + decoder + its learned fidelity path), the no-prior ablation (the same refiner without the prior's
# outputs, then its own fidelity path: it shows what the prior adds), the LDM and NAFNet. The LDM reads the
# fine-tuned restorer's tokenizer: the same latent space and the same decoder as RestoreVAR's final output, so the
# comparison is between the two latent restorers alone.
# The fidelity stage's share buys it 80 to 90 restored images (25 s on a slow 2-core machine): its gate, a hidden
# layer of 4, gave +2.4..+2.6 dB on the validation photos when fitted on that many and +1.1..+1.2 on the 36-40 of
# the 0.08 share (BENCHMARKS.md, seventh round); the prior gained little from 48 s to 80 s (fifth round)
RESTOREVAR_SHARES = {"prior": 0.38, "refiner": 0.38, "decoder": 0.06, "fidelity": 0.18}
# the ablation's stages and the RestoreVAR stages whose budgets each takes, to the second
ABLATION = {"noprior": ("prior", "refiner", "decoder"), "noprior_fidelity": ("fidelity",)}
STAGES: List[Stage] = [
    Stage("tokenizer", 1.0, "tokenizer.ckpt"),
    Stage("prior", RESTOREVAR_SHARES["prior"], "prior.ckpt",
          {"tokenizer_ckpt": "tokenizer.ckpt", "init_from": "prior_pretrained.ckpt"}),
    Stage("refiner", RESTOREVAR_SHARES["refiner"], "restorer_refined.ckpt", {"prior_ckpt": "prior.ckpt"}),
    Stage("decoder", RESTOREVAR_SHARES["decoder"], "restorer_decoded.ckpt", {"init_from": "restorer_refined.ckpt"}),
    Stage("fidelity", RESTOREVAR_SHARES["fidelity"], "restorevar.ckpt", {"init_from": "restorer_decoded.ckpt"}),
    Stage("noprior", 1.0, "noprior_refined.ckpt", {"prior_ckpt": "prior_pretrained.ckpt"}, config="refiner",
          overrides={"prior_inputs": False, "residual_from_degraded": True}),
    Stage("noprior_fidelity", 1.0, "refiner_without_prior.ckpt", {"init_from": "noprior_refined.ckpt"},
          config="fidelity"),
    Stage("ldm", 1.0, "ldm.ckpt", {"tokenizer_ckpt": "restorer_decoded.ckpt", "init_from": "ldm_pretrained.ckpt"}),
    Stage("nafnet", 1.0, "nafnet.ckpt"),
]
COMPARE_SHARE = 0.30  # of the whole budget, kept back for `rvar compare` and the report (bf16, EVAL_PRECISION)
# ... and where the CPU has no native bf16 (the comparison runs in fp32): on a 2-core AMD EPYC without it, the
# comparison took 353 s of a 15-minute demo with 0.30 kept back, and the demo 16.6 min in all; with 0.42 and the
# tokenizer's channels-last inference it took 358 s of the 378 s kept back, the demo 14.4 min (BENCHMARKS.md)
COMPARE_SHARE_FP32 = 0.42
LADDER_IMAGES = 4  # test photos the quality ladder scores (each under every degradation): the costly part
# the demo's evaluation: the paper's five degradation types plus noise and JPEG, on photos no stage trains on
EVAL_DEGRADATIONS = "haze,rain,snow,low_light,motion_blur,gaussian_noise:sigma=25,jpeg:quality=12"
EVAL_SIZE = 256
# The weight of RestoreVAR's (and the ablation's) learned fidelity path (`rvar restore --fidelity`): 1, the weight
# the whole-image gate is fitted at. On the validation photos (BENCHMARKS.md) it keeps JPEG and blur within 0.2 dB
# of their inputs where half the gate's correction loses 1.1-1.5 dB. The baselines have no such path.
EVAL_FIDELITY = 1.0
# Every contender and the ladder restore in bf16 where the CPU has it natively: the comparison took 356 s of a
# 15-minute demo in fp32 on a slower machine (16.0 min in all); bf16 scores within 0.02 dB of fp32 per model in
# 1.5x less time (BENCHMARKS.md, seventh round)
EVAL_PRECISION = "auto"
STAGE_OVERHEAD = 20.0  # seconds a stage spends outside training (start-up, final validation, export)


def comparison_reserve(total: float, bf16: bool) -> float:
    """Seconds of a ``total``-second demo kept back for `rvar compare` and the report: a larger share where the
    CPU has no native bf16 and the comparison runs in fp32 (EVAL_PRECISION auto), at least 45 s."""
    return max(45.0, (COMPARE_SHARE if bf16 else COMPARE_SHARE_FP32) * total)


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
    init.update(stage.overrides)
    if stage.name == "ldm":
        init.pop("tokenizer_preset", None)
    if stage.reads.get("init_from") == "prior_pretrained.ckpt":
        init.pop("prior", None)  # the sizes (and switches) are the pre-trained prior's
    return cfg


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def config_digest(cfg: dict, inputs: Sequence[Path] = ()) -> str:
    """Digest of a derived config, its time budget included, and of the checkpoints the stage reads: a stage is
    reused only for the same budget and the same inputs, so ``--minutes 60`` over a 15-minute demo folder
    retrains (more budget is meant to buy more quality), and so does everything after a stage that changed."""
    files = {str(p): file_digest(p) for p in inputs if p.exists()}
    return hashlib.sha256(json.dumps([cfg, files], sort_keys=True).encode()).hexdigest()[:16]


def demo_stages(train_tokenizer: bool) -> List[Stage]:
    """The stages ``rvar demo`` trains: all of :data:`STAGES`, or all but the tokenizer when it is shipped. With a
    tokenizer of its own, the prior and the LDM start from scratch, and the ablation reads the prior stage's
    tokenizer (the shipped pre-trained networks fit only the shipped tokenizer)."""
    if not train_tokenizer:
        return [s for s in STAGES if s.name != "tokenizer"]
    scratch = []
    for stage in STAGES:
        reads = {k: v for k, v in stage.reads.items() if v not in SHIPPED_PRETRAINED}
        if stage.name == "noprior":
            reads["prior_ckpt"] = "prior.ckpt"
        scratch.append(Stage(stage.name, stage.share, stage.output, reads, stage.config, stage.min_seconds,
                             stage.overrides))
    return scratch


def stage_seconds(stages: List[Stage], available: float, spent: float = 0.0) -> Dict[str, float]:
    """Each stage's share of ``available`` seconds: RestoreVAR's stages split one contender's budget, of which its
    finished stages already took ``spent``; the ablation's stages (:data:`ABLATION`) split one budget as RestoreVAR's
    do (``run_demo`` then gives them RestoreVAR's actual seconds); every other stage gets a whole one (the tokenizer,
    when trained here, one too)."""
    restorevar = [s for s in stages if s.name in RESTOREVAR_SHARES]
    ablation = [s for s in stages if s.name in ABLATION]
    budgets = len(stages) - len(restorevar) - len(ablation) + (1 if restorevar else 0) + (1 if ablation else 0)
    unit = (available + (spent if restorevar else 0.0)) / budgets
    left = max(unit - spent, 0.0)
    total_share = sum(RESTOREVAR_SHARES.values())

    def seconds(s: Stage) -> float:
        if s in restorevar:
            return left * s.share / sum(r.share for r in restorevar)
        if s in ablation:
            return unit * sum(RESTOREVAR_SHARES[n] for n in ABLATION[s.name]) / total_share
        return unit

    return {s.name: seconds(s) for s in stages}


def install_shipped(source: Path, target: Path, kinds: Sequence[str], missing: str) -> Tuple[bool, str]:
    """Copy a shipped network to ``target`` (checked first: an rvar checkpoint of one of ``kinds``; never a
    half-copied file under the name) unless the same file is there. Returns (copied, how it was made, from the
    ``.json`` beside it)."""
    from rvar.nn.checkpoints import load_checkpoint

    if not source.exists():
        raise UserError(f"{source}: {missing}")
    load_checkpoint(source, kinds=kinds)
    copied = not target.exists() or file_digest(target) != file_digest(source)
    if copied:
        with open(source, "rb") as handle:
            atomic_write(target, lambda copy: shutil.copyfileobj(handle, copy))
    info = source.with_suffix(".json")
    about = json.loads(info.read_text()) if info.exists() else {}
    return copied, f" ({about['steps']} steps, {about['minutes']:.0f} min of wall time)" if "steps" in about else ""


def install_shipped_pretrained(out: Path, stages: List[Stage], log: Callable[[str], None]) -> None:
    """Copy the shipped pre-trained prior and denoiser that ``stages`` read to ``OUT`` (checked first)."""
    for name, source in SHIPPED_PRETRAINED.items():
        if not any(name in s.reads.values() for s in stages):
            continue
        _, made = install_shipped(source, out / name, ("prior", "baseline"),
                                  "a shipped pre-trained network is missing; rebuild it with `make assets` or run "
                                  "`rvar demo --train-tokenizer` (then every network starts from scratch)")
        log(f"[0] {name.split('_')[0]}: starts from the shipped pre-trained one{made}, trained on clean images only")


def install_shipped_tokenizer(out: Path, log: Callable[[str], None]) -> StageResult:
    """Copy the shipped tokenizer to ``OUT/tokenizer.ckpt`` (checked first: an rvar tokenizer checkpoint)."""
    target = out / "tokenizer.ckpt"
    copied, made = install_shipped(SHIPPED_TOKENIZER, target, ("tokenizer",),
                                   "the shipped demo tokenizer is missing; rebuild it with `make tokenizer-asset` "
                                   "or run `rvar demo --train-tokenizer`")
    if copied:
        (out / "stages" / "tokenizer.json").unlink(missing_ok=True)  # a later --train-tokenizer must not reuse it
    log(f"[0] tokenizer: the shipped one{made}, trained on the clean embedded training images only "
        "(--train-tokenizer trains it within the budget)")
    return StageResult("tokenizer", "shipped", 0.0, target)


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
    seconds: float  # wall time of its training (for a reused stage: recorded when it was trained)
    checkpoint: Path


def run_stage(stage: Stage, out: Path, seconds: int, env: Dict[str, str], position: int, total: int,
              log: Callable[[str], None], tracking: Optional["DemoTracking"] = None) -> StageResult:
    """Run one stage's ``rvar fit`` (or reuse its checkpoint). Outside a terminal it logs one line when the stage
    starts and one when it ends; in a terminal a bar with the stage's latest validation metrics replaces the first."""
    from rvar.demo.tracking import follow_stage, stage_summary
    from rvar.lit.tracking import default_run_name, mlflow_run_id_from_checkpoint

    cfg = derive_config(stage, out, seconds)
    digest = config_digest(cfg, [out / name for name in stage.reads.values()])
    marker = out / "stages" / f"{stage.name}.json"
    ckpt = out / stage.output
    finished = json.loads(marker.read_text()) if marker.exists() else {}
    if ckpt.exists() and finished.get("digest") == digest:
        log(f"[{position}/{total}] {stage.name}: reusing {ckpt} (finished earlier; --fresh retrains)")
        # the seconds it took when it was trained, so the report can say what the whole demo costs
        return StageResult(stage.name, "reused", float(finished.get("seconds", 0.0)), ckpt)
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
    run_name = default_run_name(stage.config_path)  # named after experiments/tiny/<stage>.yaml, not the copy
    run_id = mlflow_run_id_from_checkpoint(last) if resume else None  # a resumed stage continues its run
    if tracking is not None:
        cmd += tracking.stage_arguments(stage.name, run_name)
    if resume:
        cmd += ["--ckpt_path", str(last)]
    started.parent.mkdir(parents=True, exist_ok=True)
    started.write_text(digest)
    log_path = out / "logs" / f"{stage.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    verb = "resuming" if resume else "training"
    label = f"[{position}/{total}] {stage.name}"
    interactive = sys.stderr.isatty()
    if not interactive:
        log(f"{label}: {verb} for about {seconds} s (log: {log_path})")

    def latest_metrics() -> Dict[str, float]:
        nonlocal run_id
        if tracking is None:
            return {}
        run_id = run_id or tracking.find_run(run_name)
        return tracking.metrics(run_id)

    start = time.perf_counter()
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, cwd=out, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        follow_stage(proc, f"{label} {verb}", seconds, latest_metrics, interactive)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or not ckpt.exists():
        log(f"{label}: failed after {elapsed:.0f} s")
        raise UserError(f"stage {stage.name} failed (exit {proc.returncode}): {last_error(log_path)} (log: {log_path})")
    marker.write_text(json.dumps({"digest": digest, "seconds": elapsed}))
    log(f"{label}: {elapsed:.0f} s, {stage_summary(latest_metrics())}")
    return StageResult(stage.name, "resumed" if resume else "trained", elapsed, ckpt)


def run_demo(out: Path, minutes: float, fresh: bool, log: Callable[[str], None] = print,
             eval_images: Optional[int] = None, train_tokenizer: bool = False) -> Path:
    """Train every stage within ``minutes``, compare, and write ``out/report.md`` (+ html). Returns the report."""
    from rvar.demo.report import write_report

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
    from rvar.demo.tracking import DemoTracking

    tracking = DemoTracking(out, env["MLFLOW_TRACKING_URI"])  # one parent run; the stages nest under it

    from rvar.data.embedded import ensure_embedded

    log("[0] preparing the embedded photos (scikit-image) ...")
    data_root = ensure_embedded()
    # the budget is wall time: each stage gets its share of what is left after start-up costs and the comparison
    total = minutes * 60
    from rvar.inference import native_bf16

    compare_reserve = comparison_reserve(total, native_bf16())
    stages = demo_stages(train_tokenizer)
    results = [] if train_tokenizer else [install_shipped_tokenizer(out, log)]
    install_shipped_pretrained(out, stages, log)
    budgets: Dict[str, int] = {}
    # a stage's budget is decided once per demo folder and --minutes: a rerun takes the recorded budgets, so its
    # finished stages match their digests (and are reused) and an interrupted one resumes, however long the
    # reused stages took this time
    planned = out / "stages" / "budgets.json"
    plan_key = {"minutes": minutes, "train_tokenizer": bool(train_tokenizer)}
    record = json.loads(planned.read_text()) if planned.exists() else {}
    recorded: Dict[str, int] = record.get("budgets", {}) if record.get("key") == plan_key else {}
    for i, stage in enumerate(stages, 1):
        left = stages[i - 1:]
        available = total - (time.perf_counter() - t0) - compare_reserve - STAGE_OVERHEAD * len(left)
        spent = sum(budgets.get(name, 0) for name in RESTOREVAR_SHARES)
        seconds = max(stage.min_seconds, int(stage_seconds(left, available, spent)[stage.name]))
        if stage.name in ABLATION:  # the ablation trains for exactly the budgets of RestoreVAR's matching stages
            seconds = sum(budgets.get(name, 0) for name in ABLATION[stage.name]) or seconds
        elif stage.name not in RESTOREVAR_SHARES and stage.name != "tokenizer" and spent:
            # a baseline gets RestoreVAR's budget, never more: stages that end sooner than STAGE_OVERHEAD assumes
            # leave time over, which goes to the comparison rather than to the last contenders
            seconds = min(seconds, spent)
        budgets[stage.name] = seconds = int(recorded.get(stage.name, seconds))
        planned.parent.mkdir(parents=True, exist_ok=True)
        planned.write_text(json.dumps({"key": plan_key, "budgets": {**recorded, **budgets}}))
        results.append(run_stage(stage, out, seconds, env, i, len(stages), log, tracking))
    compare_dir = out / "compare"
    ckpts = [out / "restorevar.ckpt", out / "refiner_without_prior.ckpt", out / "ldm.ckpt", out / "nafnet.ckpt"]
    scoring = [*map(str, ckpts), "--data", "embedded-test",
           "--degradations", EVAL_DEGRADATIONS, "--size", str(EVAL_SIZE), "--size-policy", "tile",
           "--seed", "0", "--fidelity", str(EVAL_FIDELITY),  # the LDM at its config's sampling_steps
           "--precision", EVAL_PRECISION,
           "--ladder-from", str(out / "restorer_refined.ckpt"), "--ladder-images", str(LADDER_IMAGES),
           "-o", str(compare_dir)]
    if eval_images:
        scoring += ["--max-images", str(eval_images)]
    cmd = [sys.executable, "-m", "rvar", "compare", *scoring, *tracking.compare_arguments()]
    # the comparison is reused, as a stage is, when it would score the same checkpoints the same way again (the
    # tracking arguments name this run's MLflow parent, so they are left out of the digest)
    marker = out / "stages" / "compare.json"
    digest = config_digest(scoring, [*ckpts, out / "restorer_refined.ckpt"])
    done = json.loads(marker.read_text()) if marker.exists() else {}
    compare_reused = done.get("digest") == digest and (compare_dir / "results.csv").exists()
    if compare_reused:
        log(f"[{len(stages) + 1}] comparison: reusing {compare_dir} (the same checkpoints and settings; --fresh "
            "reruns it)")
        compare_seconds = float(done.get("seconds", 0.0))
    else:
        log(f"[{len(stages) + 1}] comparing RestoreVAR with the baselines on the held-out test photos ...")
        marker.unlink(missing_ok=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)
        (out / "logs").mkdir(exist_ok=True)
        (out / "logs" / "compare.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise UserError(f"rvar compare failed (exit {proc.returncode}); see {out / 'logs' / 'compare.log'}")
        compare_seconds = time.perf_counter() - start
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"digest": digest, "seconds": compare_seconds}))
    report = write_report(out, compare_dir, results, minutes=minutes, total_seconds=time.perf_counter() - t0,
                          compare_seconds=compare_seconds, data_root=data_root, compare_reused=compare_reused)
    tracking.finish({r.name: r.seconds for r in results}, [out / "report.md", out / "report.html"])
    return report
