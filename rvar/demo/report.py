"""The demo's report: ``report.md`` and a self-contained ``report.html`` (images embedded).

Everything in it is read from files the demo just wrote (``compare/results.csv``, the grids and the plot, the
stage timings); nothing is typed in by hand.
"""
from __future__ import annotations

import html
import json
import platform
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from rvar.demo.viewer import add_viewer, data_uri
from rvar.eval.results import read_results


def _float(value: Optional[str]) -> Optional[float]:
    try:
        return float(value) if value not in (None, "", "None") else None
    except ValueError:
        return None


def _find(models: Sequence[str], *needles: str) -> Optional[str]:
    for model in models:
        if any(n in model.lower() for n in needles):
            return model
    return None


def summarise(rows: List[Dict[str, str]]) -> Dict[str, object]:
    """Overall numbers per model and the demo's two targets, from compare's CSV."""
    overall = {r["model"]: r for r in rows if r["degradation"] == "overall"}
    models = list(overall)
    ours = _find(models, "restorevar")
    ldm = _find(models, "ldm", "diffusion")
    inputs = _find(models, "input", "identity")
    noprior = _find(models, "without_prior")
    out: Dict[str, object] = {"models": models, "ours": ours, "ldm": ldm, "inputs": inputs, "overall": overall,
                              "noprior": noprior}
    psnr = {m: _float(overall[m]["psnr"]) for m in models}
    sec = {m: _float(overall[m]["seconds_per_image"]) for m in models}
    if ours and inputs:
        out["gain_over_inputs_db"] = psnr[ours] - psnr[inputs]
    if ldm and inputs:
        out["ldm_gain_db"] = psnr[ldm] - psnr[inputs]
    if ours and ldm:
        out["psnr_vs_ldm_db"] = psnr[ours] - psnr[ldm]
        if sec[ours]:
            out["speedup_vs_ldm"] = sec[ldm] / sec[ours]
        out["ldm_steps"] = overall[ldm].get("sampling_steps")
    return out


def _table(rows: List[Dict[str, str]], degradation: Optional[str] = None) -> str:
    pick = [r for r in rows if degradation is None or r["degradation"] == degradation]
    head = "| model | degradation | PSNR (dB) | SSIM | LPIPS | CIEDE2000 | s / image | parameters | steps |\n"
    head += "|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    lines = []
    for r in pick:
        lp, de = _float(r.get("lpips")), _float(r.get("ciede2000"))
        lines.append(f"| {r['model']} | {r['degradation']} | {float(r['psnr']):.2f} | {float(r['ssim']):.3f} | "
                     f"{'n/a' if lp is None else f'{lp:.3f}'} | {'n/a' if de is None else f'{de:.2f}'} | "
                     f"{float(r['seconds_per_image']):.3f} | "
                     f"{int(float(r['parameters'] or 0)):,} | {r.get('sampling_steps') or '-'} |")
    return head + "\n".join(lines) + "\n"


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


COLOUR_DEGRADATIONS = ("gaussian_noise", "motion_blur", "jpeg", "rain", "snow")


def targets(rows: List[Dict[str, str]], ladder: List[Dict[str, str]]) -> List[tuple]:
    """The demo's targets as (target, measured, met) rows, from compare's results and ladder CSVs: RestoreVAR's
    gain and its lead over the baselines and over the same refiner without the prior, the prior's own share
    (the ladder's prior-only rung and the rung with another photo's prior), no degradation made worse, and
    colours (CIEDE2000) closer to the clean image than the input's."""
    s = summarise(rows)
    ours, inputs = s["ours"], s["inputs"]
    if not ours or not inputs:
        return []
    psnr = {(r["model"], r["degradation"]): _float(r["psnr"]) for r in rows}
    colour = {(r["model"], r["degradation"]): _float(r.get("ciede2000")) for r in rows}
    base = psnr[(inputs, "overall")]
    out = [("RestoreVAR gain over the inputs >= +3 dB", f"{psnr[(ours, 'overall')] - base:+.2f} dB",
            psnr[(ours, "overall")] - base >= 3)]
    for other in [m for m in s["models"] if m not in (ours, inputs)]:
        lead = psnr[(ours, "overall")] - psnr[(other, "overall")]
        need = 1.0 if other == s["noprior"] else 0.0
        out.append((f"ahead of {other}" + (" by >= 1 dB (what the prior adds)" if need else ""), f"{lead:+.2f} dB",
                    lead >= need if need else lead > 0))
    rung = {(r["stage"], r["degradation"]): _float(r["psnr"]) for r in ladder if r["label"] == ours}
    if ("prior only", "overall") in rung:  # against the inputs of the ladder's own photos
        gain = rung[("prior only", "overall")] - rung.get(("degraded input", "overall"), base)
        n = next((r.get("images") for r in ladder if r["label"] == ours and r["stage"] == "prior only"
                  and r["degradation"] == "overall"), None)
        where = f" (on the ladder's {n} images)" if n else " (on the ladder's images)"
        out.append(("prior alone over the inputs >= +1 dB", f"{gain:+.2f} dB{where}", gain >= 1))
    full = rung.get(("+ refiner + fine-tuned decoder", "overall"), rung.get(("+ refiner", "overall")))
    if ("full, another photo's prior", "overall") in rung and full is not None:
        cost = full - rung[("full, another photo's prior", "overall")]
        out.append(("another photo's prior outputs cost >= 1 dB", f"{cost:+.2f} dB", cost >= 1))
    degradations = [d for (m, d) in psnr if m == ours and d != "overall"]
    worst = min(degradations, key=lambda d: psnr[(ours, d)] - psnr[(inputs, d)], default=None)
    if worst is not None:
        loss = psnr[(ours, worst)] - psnr[(inputs, worst)]
        out.append(("no degradation loses more than 0.5 dB", f"worst {worst}: {loss:+.2f} dB", loss >= -0.5))
    checked = [d for d in degradations if d.split(":")[0] in COLOUR_DEGRADATIONS
               and colour.get((ours, d)) is not None and colour.get((inputs, d)) is not None]
    if checked:
        worse = [d for d in checked if colour[(ours, d)] >= colour[(inputs, d)]]
        text = ", ".join(f"{d.split(':')[0]} {colour[(inputs, d)]:.1f}->{colour[(ours, d)]:.1f}" for d in checked)
        out.append(("colour error (CIEDE2000) below the input's on noise, blur, JPEG, rain, snow", text, not worse))
    return out


EVAL_NOTE = "256 px centre crops restored tile by tile as `rvar restore` does, under haze, rain, snow, low light, " \
            "motion blur, Gaussian noise sigma 25 and JPEG quality 12"


def _gains(rows: List[Dict[str, str]]) -> str:
    """Per degradation: each model's PSNR minus the degraded input's."""
    inputs = _find([r["model"] for r in rows], "input", "identity")
    if inputs is None:
        return "(no degraded-input row)\n"
    base = {r["degradation"]: _float(r["psnr"]) for r in rows if r["model"] == inputs}
    models = [m for m in dict.fromkeys(r["model"] for r in rows) if m != inputs]
    degradations = [d for d in dict.fromkeys(r["degradation"] for r in rows) if d != "overall"] + ["overall"]
    psnr = {(r["model"], r["degradation"]): _float(r["psnr"]) for r in rows}
    lines = ["| degradation | input PSNR | " + " | ".join(models) + " |", "|---|---:|" + "---:|" * len(models)]
    for d in degradations:
        cells = [f"{psnr[(m, d)] - base[d]:+.2f}" if psnr.get((m, d)) is not None and base.get(d) is not None
                 else "-" for m in models]
        lines.append(f"| {d} | {base.get(d, float('nan')):.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _ladder_table(rows: List[Dict[str, str]]) -> str:
    degradations = [d for d in dict.fromkeys(r["degradation"] for r in rows) if d not in ("clean", "overall")]
    degradations.append("overall")
    lines = ["| checkpoint | stage | " + " | ".join(degradations) + " |", "|---|---|" + "---:|" * len(degradations)]
    keys = dict.fromkeys((r["label"], r["stage"]) for r in rows)
    for label, stage in keys:
        got = {r["degradation"]: r for r in rows if r["label"] == label and r["stage"] == stage}
        if "clean" in got:
            cells = [f"{float(got['clean']['psnr']):.2f} (clean)"] + [""] * (len(degradations) - 1)
        else:
            cells = [f"{float(got[d]['psnr']):.2f}" if d in got else "-" for d in degradations]
        lines.append(f"| {label} | {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def budget_history(out: Path, tokenizer: str = "trained") -> List[Dict[str, object]]:
    """``demo.json`` of this demo folder and its siblings whose tokenizer came the same way (shipped or trained
    within the budget): [{minutes, folder, psnr: {model: dB}}], by budget."""
    found = []
    for path in sorted(out.parent.glob("*/demo.json")):
        try:
            data = json.loads(path.read_text())
            if data.get("tokenizer", "trained") != tokenizer:
                continue  # budgets that bought different things do not share a curve
            found.append({"minutes": float(data["minutes"]), "folder": path.parent.name,
                          "psnr": {k: float(v) for k, v in data["psnr"].items()}})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not a demo folder of this rvar
    return sorted(found, key=lambda d: d["minutes"])


def write_demo_summary(out: Path, minutes: float, rows: List[Dict[str, str]], tokenizer: str = "trained") -> None:
    overall = {r["model"]: _float(r["psnr"]) for r in rows if r["degradation"] == "overall"}
    (out / "demo.json").write_text(json.dumps({"minutes": minutes, "tokenizer": tokenizer, "psnr": overall},
                                              indent=1))


def write_budget_plot(path: Path, history: List[Dict[str, object]]) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(m for h in history for m in h["psnr"]))
    if not models:
        return False
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for model in models:  # every run as a dot, the line through each budget's mean (repeats spread)
        pts = [(h["minutes"], h["psnr"][model]) for h in history if model in h["psnr"]]
        budgets = sorted({m for m, _ in pts})
        means = [sum(v for m, v in pts if m == b) / sum(m == b for m, _ in pts) for b in budgets]
        style = dict(color="grey", linestyle="--") if "input" in model else {}
        line, = ax.plot(budgets, means, label=model, **style)
        ax.scatter([m for m, _ in pts], [v for _, v in pts], color=line.get_color(), s=18, zorder=3)
    ax.set_xlabel("demo budget (minutes, 2 CPU cores)")
    ax.set_ylabel("PSNR (dB), all degradations")
    ax.set_title("quality versus training budget (dots: runs, lines: means)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _compare_precision(compare_dir: Path) -> Optional[str]:
    """The precision `rvar compare` ran its models in, as the header of its ``results.md`` states (None if absent)."""
    path = compare_dir / "results.md"
    found = re.search(r"; CPU, (fp32|bf16), ", path.read_text()) if path.exists() else None
    return found.group(1) if found else None


def wall_time_sentence(total_seconds: float, stages, compare_seconds: float, compare_reused: bool) -> str:
    """This run's wall time and, when it reused finished work, what the demo costs when trained from scratch
    (this run plus the recorded seconds of what it reused)."""
    reused = [st for st in stages if st.status == "reused"]
    if not reused and not compare_reused:
        return f"Wall time: {total_seconds / 60:.1f} min in all."
    parts = [f"{len(reused)} finished stage{'s' if len(reused) != 1 else ''}"] if reused else []
    if compare_reused:
        parts.append("the comparison")
    earlier = sum(st.seconds for st in reused) + (compare_seconds if compare_reused else 0.0)
    return (f"Wall time: {total_seconds / 60:.1f} min this run, which reused {' and '.join(parts)} from an earlier run "
            f"of this folder ({earlier / 60:.1f} min when they ran); about {(total_seconds + earlier) / 60:.1f} min "
            "from scratch.")


def write_report(out: Path, compare_dir: Path, stages, minutes: float, total_seconds: float,
                 compare_seconds: float, data_root: Path, compare_reused: bool = False) -> Path:
    rows = read_results(compare_dir / "results.csv")
    shipped = any(st.name == "tokenizer" and st.status == "shipped" for st in stages)
    tokenizer = "shipped" if shipped else "trained"
    write_demo_summary(out, minutes, rows, tokenizer)
    s = summarise(rows)
    lines = ["# rvar demo report", ""]
    # 1. what was measured
    n_train = len(list((data_root / "train").glob("*.png")))
    n_test = len(list((data_root / "test").glob("*.png")))
    ran_in = _compare_precision(compare_dir)
    precision = f", every model in {ran_in}" if ran_in else ""
    trained = ("started from the tiny tokenizer that ships with rvar (trained on the clean training images only, "
               "outside this budget, as RestoreVAR starts from VAR's released tokenizer) and trained the RestoreVAR "
               "prior, refiner and decoder" if shipped else
               "trained the tiny tokenizer, RestoreVAR prior, refiner and decoder")
    para = [f"On {platform.machine()} with {torch.get_num_threads()} CPU threads, `rvar demo --minutes {minutes:g}` "
            f"{trained}, the same refiner without the prior (the ablation), and the tiny LDM and NAFNet "
            f"baselines, each contender with the same training budget, on the {n_train} embedded training images "
            f"(natural photos vendored with rvar, photos shipped by installed packages and dead-leaves images), "
            f"then restored {n_test} natural test photos that no stage trained on and no recipe was chosen on "
            f"({EVAL_NOTE}) with `rvar compare`{precision}. "
            f"{wall_time_sentence(total_seconds, stages, compare_seconds, compare_reused)}"]
    from rvar.demo.runner import EVAL_FIDELITY

    if EVAL_FIDELITY:
        para.append(f"RestoreVAR and its ablation restore with `--fidelity {EVAL_FIDELITY:g}`: each has a learned "
                    "fidelity path (its last stage, within its budget, fitted on training photos its restoration "
                    "stages leave out, so it learns how far to trust the restorer on photos the restorer never saw) "
                    "that passes input detail where it finds the input trustworthy, here at that weight (chosen on "
                    "the validation photos).")
    if "gain_over_inputs_db" in s:
        para.append(f"RestoreVAR's mean PSNR is {s['gain_over_inputs_db']:+.2f} dB over the degraded inputs'.")
    if "ldm_gain_db" in s:
        para.append(f"The LDM baseline gains {s['ldm_gain_db']:+.2f} dB.")
    if "speedup_vs_ldm" in s:
        sp = s["speedup_vs_ldm"]
        pace = f"{sp:.1f}x faster than" if sp >= 1 else f"{1 / sp:.1f}x slower than"
        para.append(f"It restores {pace} the LDM at {s.get('ldm_steps')} steps per image (the paper's setting, "
                    f"512 px on a GPU with LDMs at their published step counts, reports >10x faster).")
    para.append("These are tiny models trained for minutes: the numbers show the method working end to end on "
                "this machine, not the paper's quality.")
    lines += [" ".join(para), ""]
    # 2. targets and tables
    ladder_path = compare_dir / "ladder.csv"
    goals = targets(rows, read_results(ladder_path) if ladder_path.exists() else [])
    if goals:
        lines += ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
        lines += [f"| {goal} | {value} | {_verdict(ok)} |" for goal, value, ok in goals] + [""]
    lines += ["## Overall", "", _table(rows, "overall"), "## Gain over the degraded input (dB)", "",
              _gains(rows), "## Per degradation", "", _table([r for r in rows if r["degradation"] != "overall"]), ""]
    ladder = compare_dir / "ladder.csv"
    if ladder.exists():
        lines += ["## Quality ladder: where the dB go", "",
                  "Each RestoreVAR stage on the same test images (PSNR dB / SSIM): the tokenizer's round trips "
                  "of the clean image are the ceilings the prior's tokens and the refiner's continuous latent "
                  "can reach.", "", _ladder_table(read_results(ladder)), ""]
    history = budget_history(out, tokenizer)
    if len({h["minutes"] for h in history}) >= 2 and write_budget_plot(out / "quality_vs_budget.png", history):
        lines += ["## Quality versus training budget", "",
                  "Demos in sibling folders of this one (`rvar demo --minutes N --out ...`), scored the same way.",
                  "", "![quality versus budget](quality_vs_budget.png)", ""]
    # 3. images
    lines += ["## Quality versus time", "", "![quality versus time](compare/quality_vs_time.png)", ""]
    lines += ["## Image grids (degraded | each model | clean)", ""]
    for grid in sorted(compare_dir.glob("grid_*.png")):
        lines += [f"### {grid.stem[len('grid_'):]}", "", f"![{grid.stem}](compare/{grid.name})", ""]
    # 4. how it was made
    lines += ["## Stages", "", "| stage | status | seconds | checkpoint |", "|---|---|---:|---|"]
    for st in stages:
        lines.append(f"| {st.name} | {st.status} | {st.seconds:.0f} | `{st.checkpoint.name}` |")
    reused_note = (" A reused stage's seconds are those of the run that trained it." if
                   any(st.status == "reused" for st in stages) else "")
    compare_note = " (in an earlier run; reused)" if compare_reused else ""
    lines += ["", f"`rvar compare` took {compare_seconds:.0f} s{compare_note}.{reused_note} Derived stage configs are "
              "in `configs/`, logs in "
              "`logs/`.", "", "## Next", "",
              f"- Restore your own photos: `rvar restore photo.jpg --ckpt {out / 'restorevar.ckpt'} -o restored/`",
              f"- Browse the runs: `mlflow ui --backend-store-uri sqlite:///{out / 'mlflow.db'}`", ""]
    md = "\n".join(lines)
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(add_viewer(markdown_to_html(md, out), compare_dir))  # + before/after slider
    return out / "report.md"


def markdown_to_html(md: str, base: Path) -> str:
    """The small Markdown subset the report uses (headings, paragraphs, tables, images, lists), images inlined."""
    body: List[str] = []
    table: List[List[str]] = []

    def flush_table() -> None:
        if not table:
            return
        body.append("<table>")
        for i, cells in enumerate(table):
            tag = "th" if i == 0 else "td"
            body.append("<tr>" + "".join(f"<{tag}>{_inline(c)}</{tag}>" for c in cells) + "</tr>")
        body.append("</table>")
        table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not all(set(c) <= set("-:") for c in cells):
                table.append(cells)
            continue
        flush_table()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.startswith("![") and "](" in line:
            alt, src = line[2:].split("](", 1)
            body.append(f'<p><img alt="{html.escape(alt)}" src="{data_uri(base / src.rstrip(")"))}"></p>')
        elif line.startswith("- "):
            body.append(f"<ul><li>{_inline(line[2:])}</li></ul>")
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
    flush_table()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>rvar demo report</title><style>{style}</style>" \
           f"</head><body>{''.join(body)}</body></html>"


def _inline(text: str) -> str:
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
