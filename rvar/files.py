"""Atomic file writes shared by images, contact sheets and checkpoints, and the one-line-error YAML reader of
config and sweep files."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

from rvar.errors import UserError


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` through ``write(handle)`` into a hidden temp file in the same folder, then rename it.

    A crash or ``kill -9`` never leaves a partial file under ``path``; the result gets the permissions a plain
    ``open(path, "wb")`` would give (``mkstemp`` alone would make it private, 0600). Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_yaml(path: Path, what: str = "config file") -> Any:
    """The YAML document in ``path``, read with the safe loader (no tags that run code). A missing file or
    invalid YAML is a :class:`~rvar.errors.UserError` of one line that names the file and, for YAML, the line and
    column of the problem."""
    import yaml

    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: invalid YAML{at}: {problem}") from None
