"""Tabulate the protocol-specific metrics (summary.json["extra"]) of every job under a directory.

    python -m oversight.app.extras runs/amplification
    python -m oversight.app.extras runs/rrm --keys level,reward_accuracy,auroc,ece,brier

One row per job (protocol label, judge accuracy with its 95% CI, then the chosen extras, or every
scalar extra), as a Markdown table on stdout. Works from finished files alone, like
oversight-compare.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from oversight.app import exit_code
from oversight.app.compare import disambiguate_labels
from oversight.records import job_dirs, read_summary


def extras_table(directory: str | Path, keys: list[str] | None = None) -> str:
    directory = Path(directory)
    jobs = job_dirs(directory, required=True)
    summaries = [read_summary(job) for job in jobs]
    labels = [{"job": str(job.relative_to(directory)), "protocol": s["protocol"], "judge": s["judge"]}
              for job, s in zip(jobs, summaries)]
    disambiguate_labels(labels)  # jobs sharing a label are told apart by their overrides, as in comparisons
    summaries = [{**s, "protocol": label["protocol"]} for s, label in zip(summaries, labels)]
    if keys is None:
        keys = []
        for s in summaries:
            keys += [k for k, v in (s.get("extra") or {}).items() if _scalar(v) and k not in keys]
    header = ["protocol", "n", "accuracy [95% CI]", *keys]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in sorted(summaries, key=lambda s: str(s["protocol"])):
        low, high = s["accuracy_ci"]
        extra = s.get("extra") or {}
        cells = [str(s["protocol"]), str(s["n"]), f"{_fmt(s['accuracy'])} [{_fmt(low)}, {_fmt(high)}]",
                 *(_fmt(extra.get(k)) for k in keys)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (int, float, str, bool))


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oversight.app.extras", description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="a sweep directory under runs/ (or any directory of finished jobs)")
    parser.add_argument("--keys", help="comma-separated extra metrics to show (default: every scalar one)")
    args = parser.parse_args(argv)
    keys = args.keys.split(",") if args.keys else None
    return exit_code("oversight.app.extras", lambda: print(extras_table(args.directory, keys), end=""))


if __name__ == "__main__":
    sys.exit(main())
