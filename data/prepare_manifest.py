#!/usr/bin/env python
"""Write a RestoreVAR-style JSON manifest from paired folders (``<folder>/input`` + ``<folder>/target``).

Each folder is one dataset; its degradation label is given as ``folder=label`` (default: the folder name).
Paths in the manifest are relative to the manifest's folder, so the tree can move as a whole.

Example:
    python data/prepare_manifest.py -o data/train.json data/Rain13K=rain data/SOTS-outdoor=haze data/LOLv1=low_light
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rvar.data.datasets import pairs_from_folder
from rvar.errors import UserError


def build(entries_spec: list[str], output: Path) -> list[dict]:
    """Manifest entries for ``folder[=label]`` specs, relative to ``output``'s folder."""
    entries = []
    for spec in entries_spec:
        folder, _, label = spec.partition("=")
        for pair in pairs_from_folder(folder):
            entries.append({
                "image_path": os.path.relpath(pair.input_path.resolve(), output.parent.resolve()),
                "target_path": os.path.relpath(pair.target_path.resolve(), output.parent.resolve()),
                "degradation": label or pair.degradation,
                "dataset": Path(folder).name,
            })
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="paired folders, each optionally as FOLDER=DEGRADATION")
    parser.add_argument("-o", "--output", required=True, help="manifest file to write (.json)")
    args = parser.parse_args(argv)
    output = Path(args.output)
    try:
        entries = build(args.folders, output)
    except UserError as exc:
        print(f"prepare_manifest: error: {exc}", file=sys.stderr)
        return 2
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(entries, indent=1))
    os.replace(tmp, output)
    print(f"wrote {len(entries)} pairs to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
