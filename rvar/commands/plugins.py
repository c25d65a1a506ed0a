"""``rvar plugins``: list the registered plugins by kind, with where each came from."""
from __future__ import annotations

import argparse
from importlib import metadata
from typing import Dict, List

from rvar.registry import REGISTRIES

HELP = "list registered plugins (degradations, attention, baselines) and where they come from"
DESCRIPTION = """List every registered plugin, built-in or installed by another package through the
`rvar.plugins` entry point, with its origin and the first line of its docstring.

example:
  rvar plugins --kind degradations '*blur*'
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern on plugin names (default: *)")
    parser.add_argument("--kind", choices=sorted(REGISTRIES), help="only this kind of plugin")


def origin_label(module: str, owners: Dict[str, List[str]]) -> str:
    """``built-in`` for rvar's own plugins, else the distribution that provides the module."""
    top = module.split(".")[0]
    if top in ("rvar", "rvar_plugins"):
        return "built-in"
    dists = owners.get(top)
    return dists[0] if dists else module


def summary(obj: object) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def run(args: argparse.Namespace) -> int:
    owners = metadata.packages_distributions()
    kinds = [args.kind] if args.kind else sorted(REGISTRIES)
    for kind in kinds:
        registry = REGISTRIES[kind]
        names = registry.list(args.pattern)
        print(f"{kind} ({len(names)}):")
        for name in names:
            print(f"  {name:<18} {origin_label(registry.origin(name), owners):<14} {summary(registry.get(name))}")
    return 0
