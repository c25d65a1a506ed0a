"""Training-step parity: ``PriorModule`` and ``RefinerModule``, configured by ``experiments/restorevar.yaml`` and
``experiments/refiner.yaml``, take the two optimizer steps the published trainer took.

``tests/fixtures/tiny_train_parity.pt`` holds two steps of each stage, taken by sudraj2002/RestoreVAR @d452d5a's own
trainer on the tiny parity model (``tiny_restorevar.pth`` + ``tiny_vae.pth``), B = 2, CPU, float32: losses, raw
gradients, gradient norms before clipping, parameter groups, learning rate and weight decay per step, the weights after
each step, plus the same steps with stochastic depth live (``droppath_keepall``, a seed where nothing was dropped).

Each run here is a real ``lightning.Trainer`` (``max_steps=2``) driving the module's ``configure_optimizers``, its
scheduler and Lightning's gradient clipping, with the optimizer, optimization recipe, stochastic-depth rate and
clipping read from the published YAML. The reference computed its rate for the published global batch 48 (2 x 24)
while stepping on B = 2 (DDP averages, so the same mean), hence ``global_batch_size: 48`` here; the rule itself is
checked against the YAML's devices x batch in ``test_published_lr_rule``. The dataloader has 1000 batches (the
reference assumed 1000 iterations per epoch), so the schedule's horizon is the reference's 50 epochs.

Tolerances (fixture README): losses 1e-5 abs, gradient norm 1e-5 rel, raw gradients 1e-6 abs, weights 2.5e-7 abs on
entries whose clipped gradient is exactly 0 or >= 1e-6 at both steps, elsewhere 2 * lr per step (Adam's first step is
sign-like there). The negative tests perturb one rule each and check that the parity check then fails.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import warnings
from pathlib import Path
from typing import Any, Dict, List

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, Dataset

from rvar.io import read_image
from rvar.lit.optim import OptimizationConfig, lin0_factor, scaled_lr
from tests.tiny_reference import FIXTURES, parity_data, save_tiny_restorer
from tests.tiny_reference import tiny_restorer as _tiny_restorer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
GROUP_NAMES = {"D": "decay", "ND": "no_decay"}
REFERENCE_PREFIX = {"prior": "", "refiner": "vae_refiner."}  # rvar's module names: prior.*, refiner.*


# ---- the reference data and the published configs -------------------------------------------------------------
@pytest.fixture(scope="module")
def ref() -> Dict[str, Any]:
    return torch.load(FIXTURES / "tiny_train_parity.pt", weights_only=True)


@pytest.fixture(scope="module")
def restorer_ckpt(tmp_path_factory) -> Path:
    return save_tiny_restorer(tmp_path_factory.mktemp("train_parity") / "tiny_restorer.ckpt")


@functools.lru_cache(maxsize=1)
def tiny_restorer():
    return _tiny_restorer()


def published(name: str) -> Dict[str, Any]:
    return yaml.safe_load((ROOT / "experiments" / name).read_text())


def optimizer_factory(spec: Dict[str, Any]):
    """The YAML's ``optimizer: {class_path, init_args}`` as the callable LightningCLI would inject."""
    module, _, cls = spec["class_path"].rpartition(".")
    optimizer_cls = getattr(importlib.import_module(module), cls)
    return lambda params: optimizer_cls(params, **spec.get("init_args", {}))


class TwoPairs(Dataset):
    """The fixture's two pairs (PNG / 255, as the reference's transform reads them), alternating: batch i = both."""

    def __init__(self, length: int) -> None:
        load = lambda kind, i: read_image(FIXTURES / f"tiny_{kind}_{i}.png").rgb  # noqa: E731
        self.items = [{"degraded": load("degraded", i), "clean": load("clean", i), "degradation": "Haze"}
                      for i in range(2)]
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Dict[str, Any]:
        return {**self.items[index % 2], "index": index}


class Recorder(L.Callback):
    """Raw gradients and optimizer groups before clipping, loss and weights after each step."""

    def __init__(self) -> None:
        self.grads: List[Dict[str, torch.Tensor]] = []
        self.groups: List[List[Dict[str, Any]]] = []
        self.losses: List[float] = []
        self.states: List[Dict[str, torch.Tensor]] = []
        self.factors: Dict[int, float] = {}

    @staticmethod
    def trainable(module) -> Dict[str, torch.nn.Parameter]:
        return {n: p for n, p in module.named_parameters() if p.requires_grad}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.grads.append({n: p.grad.detach().clone() for n, p in self.trainable(pl_module).items()})
        names = {id(p): n for n, p in pl_module.named_parameters()}
        self.groups.append([{"name": g.get("name", "decay"), "lr": g["lr"], "weight_decay": g["weight_decay"],
                             "params": [names[id(p)] for p in g["params"]], "betas": g["betas"], "eps": g["eps"]}
                            for g in optimizer.param_groups])
        scheduler = trainer.lr_scheduler_configs[0].scheduler if trainer.lr_scheduler_configs else None
        if scheduler is not None and not self.factors:
            self.factors = {step: scheduler.lr_lambdas[0](step) for step in (0, 1, 2, 999, 1000, 1001, 3449, 3450,
                                                                             3451, 10000, 25000, 49998, 49999)}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
        self.states.append({n: p.detach().clone() for n, p in self.trainable(pl_module).items()})


def fit_two_steps(module, config: Dict[str, Any], clip: Any = "yaml", seed: int = 0,
                  steps: int = 2) -> Recorder:
    """Two (or ``steps``) optimizer steps of ``module`` with a real Trainer, clipping as the published ``config``
    says."""
    recorder = Recorder()
    trainer_cfg = config["trainer"]
    clip_val = trainer_cfg.get("gradient_clip_val") if clip == "yaml" else clip
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=trainer_cfg["max_epochs"], max_steps=steps,
                        gradient_clip_val=clip_val,
                        gradient_clip_algorithm=trainer_cfg.get("gradient_clip_algorithm", "norm"),
                        precision="32-true", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                        callbacks=[recorder])
    torch.manual_seed(seed)
    loader = DataLoader(TwoPairs(2000), batch_size=2, shuffle=False)  # 1000 batches: the reference's epoch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == steps
    return recorder


def optimization(config: Dict[str, Any], **changes: Any) -> OptimizationConfig:
    changes = {"global_batch_size": 48, **changes}
    return dataclasses.replace(OptimizationConfig(**config["model"]["init_args"]["optimization"]), **changes)


def build_prior(restorer_ckpt: Path, drop_path: bool = False, **changes: Any):
    from rvar.lit import PriorModule

    config = published("restorevar.yaml")
    args = config["model"]["init_args"]
    sizes = tiny_restorer().prior.config.to_dict()
    sizes["drop_path_rate"] = args["prior"]["drop_path_rate"] * sizes["depth"] / args["prior"]["depth"] \
        if drop_path else 0.0  # the reference rule 0.1 * depth / 24, at the tiny depth
    module = PriorModule(init_from=str(restorer_ckpt), prior=sizes, optimizer=optimizer_factory(args["optimizer"]),
                         optimization=optimization(config, **changes), label_smoothing=args["label_smoothing"],
                         grid_images=0)
    return module, config


def build_refiner(restorer_ckpt: Path, drop_path: bool = False, **changes: Any):
    from rvar.lit import RefinerModule

    config = published("refiner.yaml")
    args = config["model"]["init_args"]
    tiny = tiny_restorer()
    depth = tiny.prior.config.depth
    rate = args["prior_drop_path_rate"] * depth / 16 if drop_path else None  # 0.1 * depth / 24 at the tiny depth
    module = RefinerModule(prior_ckpt=str(restorer_ckpt), refiner_dim=tiny.refiner.config.dim,
                           refiner_depth=tiny.refiner.config.depth, refiner_heads=tiny.refiner.config.heads,
                           refiner_mlp_dim=tiny.refiner.config.mlp_dim, optimizer=optimizer_factory(args["optimizer"]),
                           optimization=optimization(config, **changes), prior_drop_path_rate=rate, grid_images=0)
    module.refiner.load_state_dict(tiny.refiner.state_dict())  # the reference stepped from the fixture's refiner
    return module, config


# ---- the parity check ---------------------------------------------------------------------------------------------
def parity_failures(run: Recorder, want: Dict[str, Any], stage: str) -> List[str]:
    """Every mismatch between a recorded run and the reference's steps, as readable lines (empty: parity)."""
    failures = []
    ref_name = lambda name: REFERENCE_PREFIX[stage] + name.removeprefix(f"{stage}.")  # noqa: E731
    steps = range(len(run.losses))
    for step in steps:
        if abs(run.losses[step] - want["loss"][step]) > 1e-5:
            failures.append(f"loss step {step + 1}: {run.losses[step]:.7f} vs {want['loss'][step]:.7f}")
        grads = run.grads[step]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads.values()])).item()
        if abs(norm - want["grad_norm"][step]) > 1e-5 * want["grad_norm"][step]:
            failures.append(f"grad norm step {step + 1}: {norm:.7f} vs {want['grad_norm'][step]:.7f}")
        ref_grads = want[f"grads_step{step + 1}"]
        worst = max((grads[n] - ref_grads[ref_name(n)]).abs().max().item() for n in grads)
        if set(map(ref_name, grads)) != set(ref_grads) or worst > 1e-6:
            failures.append(f"raw gradients step {step + 1}: max diff {worst:.2e}")
        groups = run.groups[step]
        ref_groups = want["param_groups"]
        if [g["name"] for g in groups] != [GROUP_NAMES[g["name"]] for g in ref_groups] or \
                [set(map(ref_name, g["params"])) for g in groups] != [set(g["params"]) for g in ref_groups]:
            failures.append(f"param groups step {step + 1}: {[(g['name'], len(g['params'])) for g in groups]} vs "
                            f"{[(GROUP_NAMES[g['name']], len(g['params'])) for g in ref_groups]}")
        else:
            for group, lr, wd in zip(groups, want["group_lr"][step], want["group_wd"][step]):
                if abs(group["lr"] - lr) > 1e-12 * lr or group["weight_decay"] != wd:
                    failures.append(f"group {group['name']} step {step + 1}: lr {group['lr']!r} wd "
                                    f"{group['weight_decay']!r} vs lr {lr!r} wd {wd!r}")
                if tuple(group["betas"]) != (0.9, 0.95) or group["eps"] != 1e-8:
                    failures.append(f"group {group['name']}: betas {group['betas']} eps {group['eps']}")
    # weights: tight where Adam's update does not follow gradient rounding, else the 2 * lr per step bound
    lr = max(want["lr"])
    clip = want["clip_coef"]
    for step in steps:
        worst_tight, worst_loose = 0.0, 0.0
        for name, value in run.states[step].items():
            target = want[f"state_step{step + 1}"][ref_name(name)]
            g1, g2 = (want[f"grads_step{s}"][ref_name(name)] * clip[s - 1] for s in (1, 2))
            robust = ((g1 == 0) | (g1.abs() >= 1e-6)) & ((g2 == 0) | (g2.abs() >= 1e-6))
            diff = (value - target).abs()
            worst_tight = max(worst_tight, diff[robust].max().item() if robust.any() else 0.0)
            worst_loose = max(worst_loose, diff.max().item())
        if worst_tight > 2.5e-7 or worst_loose > 2 * lr * (step + 1):
            failures.append(f"weights after step {step + 1}: max diff {worst_tight:.2e} (robust entries), "
                            f"{worst_loose:.2e} (all)")
    return failures


# ---- parity ---------------------------------------------------------------------------------------------------------
def test_fixture_inputs_are_the_png_pairs(ref):
    inputs = parity_data()["inputs"]
    batch = TwoPairs(2)
    for i in range(2):
        assert torch.equal(batch[i]["clean"] * 2 - 1, inputs["clean"][i])
        assert torch.equal(batch[i]["degraded"] * 2 - 1, inputs["degraded"][i])


def test_published_lr_rule(ref):
    """The YAMLs' base_lr and devices x batch_size give the reference's rate; lin0 its schedule."""
    for name, stage in (("restorevar.yaml", "prior"), ("refiner.yaml", "refiner")):
        config = published(name)
        hp = ref["hparams"][stage]
        global_batch = config["trainer"]["devices"] * config["data"]["init_args"]["batch_size"]
        assert global_batch == hp["as_in_script"]["glb_batch_size"] == 48
        assert config["trainer"]["max_epochs"] == hp["ep"]
        assert config["trainer"]["gradient_clip_val"] == hp["tclip"]
        recipe = config["model"]["init_args"]["optimization"]
        assert recipe["base_lr"] == hp["tblr"]
        assert scaled_lr(recipe["base_lr"], global_batch) == hp["as_in_script"]["tlr"]
        assert sorted(recipe["no_weight_decay"]) == sorted(hp["nowd_keys"])
        assert config["model"]["init_args"]["optimizer"]["init_args"]["weight_decay"] == hp["twd"]
    schedule = ref["schedule"]
    for it, lr in zip(schedule["g_it"], schedule["lr"]):
        factor = lin0_factor(it, schedule["max_it"], schedule["wp_it"], warmup_start=1.0, flat_fraction=0.05,
                             final_lr_fraction=0.01)
        assert factor * ref["hparams"]["prior"]["tlr"] == pytest.approx(lr, rel=1e-12, abs=0)
    assert set(schedule["wd"]) == {0.05}


def test_prior_two_steps_match_reference(ref, restorer_ckpt):
    module, config = build_prior(restorer_ckpt)
    run = fit_two_steps(module, config)
    assert parity_failures(run, ref["prior"], "prior") == []
    # the scheduler Lightning stepped is the reference's lin0 at the recorded iterations (1000 it/epoch, 50 epochs)
    schedule = ref["schedule"]
    for it, lr in zip(schedule["g_it"], schedule["lr"]):
        assert run.factors[it] * run.groups[0][0]["lr"] == pytest.approx(lr, rel=1e-12, abs=0)


def test_refiner_two_steps_match_reference(ref, restorer_ckpt):
    module, config = build_refiner(restorer_ckpt)
    inputs = []
    module.refiner.register_forward_hook(lambda m, args, out: inputs.append((args[0], args[1], out.detach())))
    run = fit_two_steps(module, config)
    assert parity_failures(run, ref["refiner"], "refiner") == []
    want = ref["refiner"]
    for step, (f_hat, last_block, refined) in enumerate(inputs):
        torch.testing.assert_close(f_hat, want["f_hat_pre_refine_BLC"], atol=1e-6, rtol=0)
        torch.testing.assert_close(last_block, want["last_block"], atol=1e-5, rtol=0)
        torch.testing.assert_close(refined, want[f"refined_BLC_step{step + 1}"], atol=1e-5, rtol=0)
    assert not any(p.requires_grad for p in [*module.prior.parameters(), *module.tokenizer.parameters()])


# ---- stochastic depth: the reference's steps with drop path live, at a seed where no branch was dropped ----------
def count_drop_path(module) -> Dict[str, int]:
    """Hooks counting DropPath calls and dropped samples (a dropped branch is all zeros)."""
    from rvar.nn.prior.model import DropPath

    counts = {"calls": 0, "dropped": 0}

    def hook(m, args, out):
        if m.training:
            counts["calls"] += 1
            counts["dropped"] += int((out.flatten(1) == 0).all(1).sum())

    for m in module.modules():
        if isinstance(m, DropPath):
            m.register_forward_hook(hook)
    return counts


KEEPALL_SEED = 2  # torch.manual_seed before fit; the counting hooks assert that nothing was dropped


@pytest.mark.parametrize("stage", ["prior", "refiner"])
def test_stochastic_depth_matches_reference_keepall(ref, restorer_ckpt, stage):
    module, config = (build_prior if stage == "prior" else build_refiner)(restorer_ckpt, drop_path=True)
    want = ref["droppath_keepall"][stage]
    assert module.prior.config.drop_path_rate == pytest.approx(0.1 * 2 / 24)
    assert [getattr(b.drop_path, "p", 0.0) for b in module.prior.blocks] == pytest.approx(want["drop_path_rates"])
    counts = count_drop_path(module)
    run = fit_two_steps(module, config, seed=KEEPALL_SEED)
    assert counts == {"calls": want["drop_path_calls"], "dropped": 0}, "pick a KEEPALL_SEED where nothing drops"
    for step in range(2):
        assert run.losses[step] == pytest.approx(want["loss"][step], abs=1e-5)
        norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in run.grads[step].values()])).item()
        assert norm == pytest.approx(want["grad_norm"][step], rel=1e-5)
        # without stochastic depth the norm is measurably different: the keep-all scaling 1/(1-p) is live
        assert abs(norm - ref[stage]["grad_norm"][step]) > 10 * 1e-5 * norm
    if stage == "refiner":
        worst = max((v - want["state_step2"][n.replace("refiner.", "vae_refiner.", 1)]).abs().max().item()
                    for n, v in run.states[1].items())
        assert worst <= 2 * 2 * max(ref[stage]["lr"])


# ---- each rule matters: perturb it and the parity check fails ------------------------------------------------------
# (one step each, on the prior stage: clipping, groups and the rate are the same code in both stages)
def test_prior_parity_fails_without_clipping(ref, restorer_ckpt):
    module, config = build_prior(restorer_ckpt)
    failures = parity_failures(fit_two_steps(module, config, clip=None, steps=1), ref["prior"], "prior")
    assert any(f.startswith("weights after step 1") for f in failures), failures


def test_prior_parity_fails_when_every_parameter_is_decayed(ref, restorer_ckpt):
    module, config = build_prior(restorer_ckpt, no_weight_decay=None)
    failures = parity_failures(fit_two_steps(module, config, steps=1), ref["prior"], "prior")
    assert any(f.startswith("param groups") for f in failures), failures
    assert any(f.startswith("weights after step 1") for f in failures), failures


def test_prior_parity_fails_when_gains_are_not_decayed(ref, restorer_ckpt):
    keys = published("restorevar.yaml")["model"]["init_args"]["optimization"]["no_weight_decay"]
    module, config = build_prior(restorer_ckpt, no_weight_decay=[*keys, "gain"])
    failures = parity_failures(fit_two_steps(module, config, steps=1), ref["prior"], "prior")
    assert any(f.startswith("param groups") for f in failures), failures
    assert any(f.startswith("weights after step 1") for f in failures), failures


def test_prior_parity_fails_with_another_lr_rule(ref, restorer_ckpt):
    """The rate from the per-device batch (24) instead of the global one (48): caught at the recorded lr."""
    module, config = build_prior(restorer_ckpt, global_batch_size=24)
    failures = parity_failures(fit_two_steps(module, config, steps=1), ref["prior"], "prior")
    assert any(" lr " in f for f in failures), failures
    assert any(f.startswith("weights after step 1") for f in failures), failures


def test_global_batch_comes_from_the_trainer():
    """Without ``global_batch_size``: per-device batch x devices x accumulation, read from the running trainer;
    the lin0 horizon is max_epochs x steps per epoch (ceil(batches / accumulation))."""
    from rvar.lit.optim import build_optimization

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)
            self.seen = {}

        def training_step(self, batch, batch_idx):
            return self.layer(batch).pow(2).mean()

        def configure_optimizers(self):
            out = build_optimization(self, lambda p: torch.optim.AdamW(p, lr=1.0, weight_decay=0.05),
                                     OptimizationConfig(base_lr=0.000533333, no_weight_decay=[], schedule="lin0",
                                                        warmup_epochs=1.0, warmup_start=0.5))
            scheduler = out["lr_scheduler"]["scheduler"]
            self.seen = {"lr": out["optimizer"].param_groups[0]["initial_lr"], "factors": scheduler.lr_lambdas[0],
                         "groups": [(g["name"], g["weight_decay"]) for g in out["optimizer"].param_groups]}
            return out

    module = Tiny()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=4, max_steps=1, accumulate_grad_batches=3,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train_dataloaders=DataLoader(torch.randn(40, 2), batch_size=4))  # 10 batches
    assert module.seen["lr"] == scaled_lr(0.000533333, 4 * 1 * 3)
    assert module.seen["groups"] == [("decay", 0.05), ("no_decay", 0.0)]  # weight, then bias: order of appearance
    steps_per_epoch, total = 4, 16  # ceil(10 / 3) optimizer steps per epoch, 4 epochs
    factor = module.seen["factors"]
    assert factor(0) == 0.5 and factor(2) == pytest.approx(0.5 + 0.5 * 2 / steps_per_epoch)
    assert factor(steps_per_epoch) == 1.0 and factor(total - 1) == pytest.approx(0.01)
