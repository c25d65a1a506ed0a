"""``rvar app``: a local web page (Gradio) that restores photos with one or several checkpoints side by side."""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

from rvar.errors import UserError
from rvar.inference import PRECISIONS, SIZE_POLICIES

HELP = "a web page (Gradio) to restore your photos with checkpoints side by side"
DESCRIPTION = """Serve a page where a photo is uploaded (or dropped), optionally degraded first with one of rvar's
registered degradations and its options, then restored by each checkpoint, shown with a before/after slider,
with the seconds it took and the restored PNG to download. Any checkpoint `rvar restore` takes (RestoreVAR,
LDM, NAFNet); any size, through the same tile path. The server listens on 127.0.0.1 only unless --host says
otherwise. Needs Gradio: pip install 'rvar[app]'.

examples:
  rvar app --ckpt outputs/demo/restorevar.ckpt
  rvar app --ckpt outputs/demo/restorevar.ckpt --ckpt outputs/demo/ldm.ckpt --port 7861
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", action="append", required=True,
                        help="rvar checkpoint (.ckpt); repeat for several models side by side")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--size-policy", choices=SIZE_POLICIES, default="tile",
                        help="photos not at the model's native size: tiles (default) or resize")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default 4)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="fp32 (default), bf16 or auto")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps of diffusion baselines")


def require_gradio() -> None:
    if importlib.util.find_spec("gradio") is None:
        raise UserError("rvar app needs Gradio: pip install 'rvar[app]'")


def start(args: argparse.Namespace, results_dir: Path, block: bool = True):
    """Load the checkpoints, build the page and start serving it; returns the Gradio app (and waits for
    Ctrl-C / SIGTERM when ``block``)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home (and no network is needed)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(results_dir / "uploads"))  # removed with results_dir
    from rvar.app.page import build_page
    from rvar.app.restoration import Restoration, model_names
    from rvar.inference import load_restoration_model, resolve_device, resolve_precision

    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port}: choose a port between 1 and 65535")
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    models = {name: load_restoration_model(path, device, precision, steps=args.steps)
              for name, path in zip(model_names(args.ckpt), args.ckpt)}
    restoration = Restoration(models, results_dir, args.size_policy, args.batch_size)
    page = build_page(restoration, {name: model.description for name, model in models.items()})
    page.queue(default_concurrency_limit=1)  # one restoration at a time: the models are not shared safely
    try:
        page.launch(server_name=args.host, server_port=args.port, prevent_thread_lock=True, show_error=False,
                    quiet=True, allowed_paths=[str(results_dir)])
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port} ({exc}); choose another --port") from None
    print(f"rvar app: serving {', '.join(models)} on {page.local_url} (Ctrl-C to stop)", file=sys.stderr)
    if not block:
        return page
    try:
        while True:
            time.sleep(0.5)
    finally:  # Ctrl-C (exit 130) or SIGTERM (143): close the server, then let rvar.cli report it
        page.close()


def run(args: argparse.Namespace) -> int:
    require_gradio()
    with tempfile.TemporaryDirectory(prefix="rvar-app-") as folder:
        start(args, Path(folder))
    return 0
