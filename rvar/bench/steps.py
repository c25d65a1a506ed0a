"""Every full-size stage takes real optimizer steps: ``python -m rvar.bench.steps``.

Each stage's own config in ``experiments/`` runs under ``rvar fit`` in a fresh process for a few optimizer steps
on synthetic data of the real size (clean random-texture photos, degraded on the fly by the usual pipeline),
and a :class:`StepTimer` callback records seconds per optimizer step and the process's peak resident memory.
The stages run in their training order inside one work folder, so each reads what the previous one exported,
exactly as the README's recipe chains them:

* ``tokenizer``: ``experiments/tokenizer.yaml`` from scratch (256 px);
* ``restorevar``: ``experiments/restorevar.yaml`` (d16 prior at 512 px) from ``checkpoints/restorevar_init.ckpt``,
  which ``rvar import-checkpoint`` writes from random files with the published shapes of
  ``vae_ch160v4096z32.pth`` and ``var_d16.pth`` (``tests/fixtures/*.keys.json``); once more with
  ``gradient_checkpointing`` on;
* ``refiner``: ``experiments/refiner.yaml`` on the prior just exported (and once with checkpointing);
* ``decoder``: ``experiments/decoder.yaml`` on the restorer the refiner exported;
* ``ldm`` and ``nafnet``: the baselines' configs (the LDM reads the random-valued tokenizer file).

What differs from the configs (printed in the report): CPU, ``--batch-size`` per step (default 1: the configs'
8-16 do not fit this machine's time), bf16 autocast where a config asks for 16-bit (Lightning's CPU mixed
precision is bf16 only), no validation, no logger, no Lightning checkpoints (only each stage's export).
Speed and memory do not depend on the weights' values.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import lightning as L

from rvar import configs
from rvar.bench.sampling import peak_rss_mib
from rvar.files import atomic_write
from rvar.nn import count_parameters

KEY_MANIFESTS = Path(__file__).resolve().parents[2] / "tests" / "fixtures"  # a checkout's (benchmarks run there)


# 1. the callback that measures ---------------------------------------------------------------------------
class StepTimer(L.Callback):
    """Seconds per training batch (forward, backward and optimizer step) and peak memory, written as JSON.

    Args:
        path: the JSON file written when fit ends.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.seconds: List[float] = []
        self.cpu_seconds: List[float] = []  # this process's CPU time per step: less distorted by other load
        self._start = self._cpu_start = 0.0
        self.rss_at_start = 0.0

    def _sync(self, trainer: L.Trainer) -> None:
        import torch

        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_start(self, trainer, pl_module) -> None:
        self.rss_at_start = peak_rss_mib()
        self.trainable, self.total = count_parameters(pl_module, trainable_only=True), count_parameters(pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync(trainer)
        self._start, self._cpu_start = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync(trainer)
        self.seconds.append(time.perf_counter() - self._start)
        self.cpu_seconds.append(time.process_time() - self._cpu_start)

    def on_fit_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({
            "step_seconds": self.seconds, "step_cpu_seconds": self.cpu_seconds, "global_step": int(trainer.global_step),
            "peak_rss_mib": peak_rss_mib(), "peak_rss_mib_before_first_step": self.rss_at_start,
            "trainable_parameters": self.trainable, "parameters": self.total,
            "precision": str(trainer.precision), "threads": __import__("torch").get_num_threads()}, indent=2))


# 2. the stages -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    name: str
    config: str
    export: Optional[str]  # the file the stage's ExportCheckpoint writes (read by the next stage)
    extra: Sequence[str] = ()


# the refiner trains on a frozen prior of the published shape: the imported init file is one (kind "prior"), so the
# refiner's measurement does not wait for the prior stage's export
PRIOR_FOR_REFINER = "--model.init_args.prior_ckpt=checkpoints/restorevar_init.ckpt"
STAGES: List[Stage] = [
    Stage("tokenizer", "tokenizer.yaml", "checkpoints/tokenizer.ckpt"),
    Stage("restorevar", "restorevar.yaml", "checkpoints/restorevar_prior.ckpt"),
    Stage("restorevar+ckpt", "restorevar.yaml", "checkpoints/restorevar_prior_gc.ckpt",
          ("--model.init_args.gradient_checkpointing=true",)),
    Stage("refiner", "refiner.yaml", "checkpoints/restorevar.ckpt", (PRIOR_FOR_REFINER,)),
    Stage("refiner+ckpt", "refiner.yaml", "checkpoints/restorevar_gc.ckpt",
          (PRIOR_FOR_REFINER, "--model.init_args.gradient_checkpointing=true")),
    Stage("decoder", "decoder.yaml", "checkpoints/restorevar_finetuned.ckpt"),
    Stage("ldm", "ldm.yaml", None),
    Stage("nafnet", "nafnet.yaml", None),
]
STAGE_NAMES = [s.name for s in STAGES]


def fake_official_file(manifest: str, path: Path, seed: int = 0) -> Path:
    """A ``.pth`` with every tensor name and shape of a published file (key manifest), random values."""
    import torch

    if path.exists():
        return path
    gen = torch.Generator().manual_seed(seed)
    dtypes = {"int64": torch.int64, "complex64": torch.complex64}
    sd = {key: torch.empty(spec["shape"]).normal_(0, 0.02, generator=gen) if spec["dtype"] == "float32"
          else torch.zeros(spec["shape"], dtype=dtypes[spec["dtype"]])
          for key, spec in json.loads((KEY_MANIFESTS / manifest).read_text()).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return path


def synthetic_photos(folder: Path, count: int = 4, side: int = 640) -> Path:
    """``count`` clean RGB photos of ``side`` px: smooth random colour fields with some texture."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for number in range(count):
        path = folder / f"synthetic_{number}.png"
        if path.exists():
            continue
        coarse = rng.random((side // 32, side // 32, 3))
        base = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((side, side), Image.BICUBIC))
        image = np.clip(base.astype(np.float32) + rng.normal(0, 12, (side, side, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(path)
    return folder


def bench_config(stage: Stage, steps: int, batch_size: int, result: Path, photos: Path, accelerator: str,
                 precision: str) -> str:
    """The YAML laid over the stage's config: device, steps, data, and callbacks (timer + the export)."""
    callbacks = [f"    - class_path: rvar.bench.steps.StepTimer\n      init_args: {{path: {json.dumps(str(result))}}}"]
    if stage.export:
        callbacks.append(f"    - class_path: rvar.lit.export.ExportCheckpoint\n"
                         f"      init_args: {{path: {stage.export}}}")
    return "\n".join([
        "trainer:", f"  accelerator: {accelerator}", "  devices: 1", "  strategy: auto", "  max_epochs: -1", f"  max_steps: {steps}",
        f"  precision: {precision}", "  logger: false", "  enable_checkpointing: false",
        "  limit_val_batches: 0", "  num_sanity_val_steps: 0", "  enable_progress_bar: false",
        "  callbacks:", *callbacks,
        "data:", "  init_args:", f"    train_dirs: [{json.dumps(str(photos))}]", "    val_dirs: []",
        f"    batch_size: {batch_size}", "    num_workers: 0", f"    samples_per_epoch: {steps * batch_size}",
        # synthetic clean photos: rvar's crops and key sampler (the published path needs paired data)
        "    train_transform: crop", "    val_transform: crop", "    sampler: keys", ""])


def prepare_inputs(work: Path, log) -> None:
    """The official-shaped random files the chain starts from, and their rvar import."""
    vae = fake_official_file("vae_ch160v4096z32.keys.json", work / "checkpoints" / "vae_ch160v4096z32.pth")
    init = work / "checkpoints" / "restorevar_init.ckpt"
    if not init.exists():
        var = fake_official_file("var_d16.keys.json", work / "official" / "var_d16.pth", seed=1)
        log("[bench-steps] rvar import-checkpoint (random values, published shapes) -> checkpoints/restorevar_init.ckpt")
        done = subprocess.run([sys.executable, "-m", "rvar", "import-checkpoint", "--vae", str(vae), "--var", str(var),
                               "-o", str(init)], cwd=work, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"import-checkpoint failed: {done.stderr[-1500:]}")


def run_stage(stage: Stage, work: Path, steps: int, batch_size: int, accelerator: str, log,
              timeout: float = 3600) -> Dict[str, Any]:
    result = work / "results" / f"{stage.name}.json"
    result.unlink(missing_ok=True)
    config_text = (configs.root() / "experiments" / stage.config).read_text()
    precision = "bf16-mixed" if accelerator == "cpu" and "16-mixed" in config_text else \
        ("16-mixed" if "precision: 16-mixed" in config_text else "bf16-mixed" if "bf16" in config_text else "32-true")
    overlay = work / f"bench_{stage.name}.yaml"
    overlay.write_text(bench_config(stage, steps, batch_size, result, work / "photos", accelerator, precision))
    command = [sys.executable, "-m", "rvar", "fit", "--config", str(configs.root() / "experiments" / stage.config),
               "--config", str(overlay), *stage.extra]
    log(f"[bench-steps] {stage.name}: {steps} steps, batch {batch_size}, {precision} ...")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "NO_ALBUMENTATIONS_UPDATE": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env, timeout=timeout)
    wall = time.perf_counter() - start
    (work / "results" / f"{stage.name}.log").write_text(done.stdout + "\n" + done.stderr)
    if done.returncode != 0 or not result.exists():
        tail = done.stderr.strip().splitlines()[-3:]
        killed = f"killed by signal {-done.returncode} (9: e.g. out of memory); " if done.returncode < 0 else ""
        return {"stage": stage.name, "config": f"experiments/{stage.config}", "ok": False, "returncode": done.returncode,
                "error": killed + " | ".join(tail), "wall_seconds": wall}
    measured = json.loads(result.read_text())
    later = measured["step_seconds"][1:] or measured["step_seconds"]
    return {"stage": stage.name, "config": f"experiments/{stage.config}", "ok": True, "batch_size": batch_size,
            "steps": measured["global_step"], "first_step_seconds": measured["step_seconds"][0],
            "seconds_per_step": statistics.median(later), "wall_seconds": wall, **measured}


def format_steps(results: List[Dict[str, Any]]) -> str:
    lines = ["| stage | config | parameters (trainable) | batch | steps | first step s | s / step (median of the rest) "
             "| peak RSS MiB | RSS before step 1 MiB |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if not r["ok"]:
            lines.append(f"| {r['stage']} | `{r['config']}` | failed: {r['error'][:120]} | | | | | | |")
            continue
        lines.append(f"| {r['stage']} | `{r['config']}` | {r['parameters'] / 1e6:.1f} M ({r['trainable_parameters'] / 1e6:.1f} M) "
                     f"| {r['batch_size']} | {r['steps']} | {r['first_step_seconds']:.1f} | {r['seconds_per_step']:.1f} "
                     f"| {r['peak_rss_mib']:.0f} | {r['peak_rss_mib_before_first_step']:.0f} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rvar.bench.steps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", default=",".join(STAGE_NAMES), help=f"comma-separated, in order; known: {', '.join(STAGE_NAMES)}")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per stage (default 3; the first is warm-up)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per step (default 1 on CPU)")
    parser.add_argument("--accelerator", default="cpu", help="cpu (default) or gpu")
    parser.add_argument("--work", default="outputs/bench_steps", help="work folder (checkpoints, photos, logs)")
    parser.add_argument("--json", dest="json_path", default="benchmarks/steps.json", help="write the results here")
    args = parser.parse_args(argv)
    from rvar.errors import UserError

    names = [n.strip() for n in args.stages.split(",") if n.strip()]
    unknown = [n for n in names if n not in STAGE_NAMES]
    if unknown or not names:
        raise UserError(f"--stages: unknown {', '.join(unknown) or '(none)'}; known: {', '.join(STAGE_NAMES)}")
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    work = Path(args.work).resolve()
    synthetic_photos(work / "photos")
    prepare_inputs(work, log)
    results = []
    for stage in (s for s in STAGES if s.name in names):
        results.append(run_stage(stage, work, args.steps, args.batch_size, args.accelerator, log))
        log(format_steps(results[-1:]).splitlines()[-1])
    report = {"command": "python -m rvar.bench.steps " + " ".join(argv if argv is not None else sys.argv[1:]),
              "results": results}
    print(format_steps(results))
    if args.json_path:
        text = json.dumps(report, indent=2) + "\n"
        log(f"wrote {atomic_write(args.json_path, lambda handle: handle.write(text.encode()))}")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
