"""The results files of an evaluation: a CSV per table (``rvar compare``'s ``results.csv``, the ladder's
``ladder.csv``), written by the evaluation and read back by the demo's report."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Sequence


def read_results(csv_path: Path) -> List[Dict[str, str]]:
    with open(csv_path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_results(csv_path: Path, rows: Sequence[Dict[str, object]], fields: Sequence[str]) -> None:
    """The CSV :func:`read_results` reads (``rvar compare``'s results.csv, ladder.csv); None is written empty."""
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
