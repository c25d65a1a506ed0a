"""The package layout stays readable: few top-level modules, subpackages that say what they hold, docstrings that
name no issue, and imports that point one way (the order the README's Architecture section gives)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RVAR = ROOT / "rvar"
CORE = {"rvar", "errors", "files", "io", "pixels", "registry", "configs"}
# lower imports nothing higher; bench, demo, sweep and app share a level and must not import each other
LEVELS = {"core": 0, "nn": 1, "inference": 2, "data": 3, "eval": 4, "lit": 5, "bench": 6, "demo": 6, "sweep": 6, "app": 6,
          "commands": 7, "cli": 8}


def _group(module: str) -> str:
    """``rvar.eval.protocol`` -> ``eval``; the core modules and the package itself -> ``core``."""
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else "rvar"
    return "core" if name in CORE else "cli" if name == "__main__" else name


def _imports(path: Path):
    """Every ``rvar``/``rvar_plugins`` module a file imports, at the top or inside a function."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "rvar":  # from rvar import configs
                yield from (f"rvar.{alias.name}" for alias in node.names)
            else:
                yield node.module


def _modules():
    for path in sorted(RVAR.rglob("*.py")):
        yield ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"), path


def test_few_top_level_modules_and_every_subpackage_says_what_it_holds():
    flat = [p.name for p in RVAR.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(flat) <= 8, sorted(flat)
    for init in RVAR.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 5, f"{init.relative_to(ROOT)} needs a docstring saying what it holds"


def test_no_module_names_an_issue():
    pattern = re.compile(r"\bissue\s*#?\s*\d", re.IGNORECASE)
    named = [f"{p.relative_to(ROOT)}:{n}" for folder in (RVAR, ROOT / "rvar_plugins") for p in folder.rglob("*.py")
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not named


@pytest.mark.parametrize("module,path", list(_modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_point_one_way(module, path):
    source = _group(module)
    for imported in _imports(path):
        top = imported.split(".")[0]
        assert top != "rvar_plugins", f"{module} imports {imported}: rvar reaches plugins through the registry"
        if top != "rvar":
            continue
        target = _group(imported)
        if target == source or target == "core":
            continue
        assert LEVELS[target] < LEVELS[source], f"{module} ({source}) imports {imported} ({target}) from above"
