"""The Gradio page of ``rvar app``.

One row of controls (the photo, a degradation from the registry with its options and seed, the models to run)
and one column per checkpoint: a before/after slider (Gradio's ``ImageSlider``; two plain images on a Gradio
without it), the restored PNG to download and the seconds it took. The function behind the button is
``/restore`` in Gradio's API (what ``gradio_client`` calls); every error reaches the page as a message in the
status line, never as a traceback.
"""
from __future__ import annotations

import traceback
from typing import Any, List, Optional

from rvar.app.restoration import NO_DEGRADATION, Restoration, degradation_help
from rvar.errors import UserError

TITLE = "rvar: all-in-one image restoration"


def build_page(restoration: Restoration, descriptions: dict):
    """The ``gr.Blocks`` app for ``restoration`` (its models are labelled by ``descriptions``: name -> text)."""
    import gradio as gr

    from rvar.io import to_uint8_hwc
    from rvar.registry import DEGRADATIONS

    slider_class = getattr(gr, "ImageSlider", None)
    names = list(restoration.models)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as page:
        gr.Markdown(f"## {TITLE}\nUpload or drop a photo, optionally degrade it first, and compare the restorations "
                    f"(drag the slider: left the input, right the result). Models: "
                    + "; ".join(f"**{n}** ({descriptions[n]})" for n in names))
        outputs: List[Any] = []
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                photo = gr.File(label="photo (PNG, JPEG, WebP, TIFF, BMP ...)", file_count="single", type="filepath")
                degradation = gr.Dropdown([NO_DEGRADATION, *DEGRADATIONS.list()], value=NO_DEGRADATION,
                                          label="degrade the photo first (rvar's registered degradations)")
                options = gr.Textbox(label="degradation options (YAML)", placeholder="e.g. sigma: 30", lines=1)
                seed = gr.Number(value=0, precision=0, label="seed")
                which = gr.CheckboxGroup(names, value=names, label="models", visible=len(names) > 1)
                button = gr.Button("Restore", variant="primary")
                status = gr.Markdown("", elem_id="status")
                with gr.Accordion("the degradation's options", open=False):
                    info = gr.Markdown(degradation_help(NO_DEGRADATION))
            with gr.Column(scale=max(2, len(names))):
                with gr.Row():
                    for name in names:
                        with gr.Column(min_width=240):
                            timing = gr.Markdown(f"**{name}**")
                            if slider_class is not None:
                                views = [slider_class(label=f"{name}: input | restored", type="numpy", format="png")]
                            else:
                                views = [gr.Image(label=f"{name}: input", type="numpy", format="png"),
                                         gr.Image(label=f"{name}: restored", type="numpy", format="png")]
                            download = gr.File(label=f"{name}: restored PNG")
                            outputs += [timing, *views, download]
        outputs.insert(0, status)

        def restore(path: Optional[str], degradation_name: str, option_text: str, seed_value: Any,
                    chosen: Optional[List[str]] = None):
            values: List[Any] = []
            try:
                result = restoration.run(path, degradation_name, option_text, int(seed_value or 0), chosen)
            except UserError as exc:
                return [f"**Could not restore:** {exc}", *_empty(names, slider_class)]
            except Exception as exc:  # noqa: BLE001 - the page shows a message, the terminal the traceback
                traceback.print_exc()
                return [f"**Could not restore:** {type(exc).__name__}: {exc}", *_empty(names, slider_class)]
            before = to_uint8_hwc(result.input_3HW)
            done = {r.name: r for r in result.restored}
            height, width = result.input_3HW.shape[-2:]
            for name in names:
                item = done.get(name)
                if item is None:
                    values += [f"**{name}**: not selected", *([None] * (2 if slider_class is None else 1)), None]
                    continue
                after = to_uint8_hwc(item.image_3HW)
                view = [(before, after)] if slider_class is not None else [before, after]
                values += [f"**{name}**: {item.seconds:.2f} s", *view, str(item.path)]
            what = "" if degradation_name in (None, NO_DEGRADATION) else f", degraded with {degradation_name}"
            return [f"Restored {width} x {height} px{what}.", *values]

        button.click(restore, [photo, degradation, options, seed, which], outputs, api_name="restore")
        degradation.change(_safe_help, degradation, info, api_name="degradation_help")
    return page


def _safe_help(name: str) -> str:
    try:
        return degradation_help(name)
    except UserError as exc:
        return str(exc)


def _empty(names: List[str], slider_class: Any) -> List[Any]:
    per_model = [None] * (3 if slider_class is not None else 4)
    values: List[Any] = []
    for name in names:
        values += [f"**{name}**", *per_model[1:]]
    return values
