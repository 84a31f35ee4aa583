"""The notebook API: run jobs from Python with the CLI's configs, load results as a DataFrame.

    import oversight
    summary = oversight.run(overrides=["protocol=debate", "task.n=20"])
    df = oversight.load(summary["dir"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from oversight import frame


def load(directory: str | Path):
    """Every judgment under `directory` (a job or a sweep) as a pandas DataFrame, one row per
    judgment, people's decisions from each job's human_judgments.sqlite included (`human` column)."""
    return frame.load(directory, humans=_human_rows)


def _human_rows(job_dir: Path) -> Iterable[dict[str, Any]]:
    from oversight.app.report._compat import read_human_judgments

    for decisions in read_human_judgments(job_dir).values():
        for row in decisions.values():
            if row.status == "judged":
                yield row.model_dump()
