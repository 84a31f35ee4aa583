"""Until the kernel layout lands: the same names from where they live today."""
# TODO(report): delete after merging the `kernel` tag; import from oversight.app.compare / judges.store /
# oversight.app.run directly.
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from rich.console import Console

from oversight.humans import HumanJudgment, HumanStore, read_human_judgments  # noqa: F401
from oversight.run import load_task  # noqa: F401


def comparison(directory: Path, baseline: str | None = None):
    from oversight.compare import compare

    directory = Path(directory)
    if baseline or not (directory / "comparison.csv").exists():
        compare(directory, baseline, console=Console(file=io.StringIO()))
    rows = list(csv.DictReader((directory / "comparison.csv").open()))
    md = (directory / "comparison.md").read_text()
    found = re.search(r"Δ vs (.*?) \[95% CI\]", md)
    base = found.group(1) if found and found.group(1) != "none" else None
    return rows, base
