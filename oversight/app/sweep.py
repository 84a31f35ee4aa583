"""The one Hydra callback of every sweep (conf/config.yaml `hydra.callbacks.sweep`): when a multirun
ends it writes what the sweep's jobs call for, read from their finished files:

- training jobs (the sweep's config has `train:`): each job's table.md, printed;
- protocol jobs: the comparison (oversight.app.compare: comparison.csv/.md/.png and a table) and
  the browser report (oversight.app.report); and when a job ran a cross-play tournament, the
  persuasion report (oversight.app.persuasion: ratings.csv, persuasion.md, persuasion.png); and when
  cross-play jobs differ in the judge, the capability-gap curves (oversight.app.gap: gap.md, gap.png,
  grid.md). With `--dry-run` (oversight.app.cost) it prints the sweep's estimated cost instead.

It also records which jobs failed on every question (`oversight` then exits non-zero).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich.console import Console

from oversight.app import compare, cost, gap, persuasion
from oversight.app.report import build_report
from oversight.errors import OversightError


class SweepCallback(Callback):
    failed_jobs: list[str] = []  # set at the end of a sweep, read by oversight.app.cli.main

    def __init__(self, **_: Any):
        pass

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if cost.dry_run_dir() is not None:  # --dry-run: the estimates, nothing else
            if not config.get("train"):
                print(f"estimated cost of the sweep {config.get('name')} (dry run: no model loaded, nothing run; "
                      f"an empty call cache assumed):\n{cost.sweep_table(sweep_dir)}")
            return
        if config.get("train"):
            training_tables(sweep_dir)
            return
        try:
            compare.compare(sweep_dir, config.get("baseline"), strict=False)
        except OversightError as exc:
            Console(stderr=True).print(f"[red]comparison skipped:[/red] {exc}")
            compared = False
        else:
            compared = True
        SweepCallback.failed_jobs = compare.all_failed(sweep_dir)
        if SweepCallback.failed_jobs:
            print(f"error: {len(SweepCallback.failed_jobs)} job(s) of the sweep failed on every question: "
                  f"{', '.join(SweepCallback.failed_jobs)}", file=sys.stderr)
        if persuasion.crossplay_jobs(sweep_dir):
            try:
                persuasion.report(sweep_dir)
            except OversightError as exc:
                Console(stderr=True).print(f"[red]persuasion report skipped:[/red] {exc}")
        if gap.is_gap_sweep(sweep_dir):  # cross-play jobs with different judges: capability-gap curves
            try:
                gap.analyse(sweep_dir)
                print(f"capability gap: {sweep_dir / 'gap.md'}\n{(sweep_dir / 'gap.md').read_text()}")
            except OversightError as exc:
                Console(stderr=True).print(f"[red]capability-gap analysis skipped:[/red] {exc}")
        if not compared:
            return
        started = time.perf_counter()
        try:
            index = build_report(sweep_dir)  # paired with the baseline saved in the sweep's multirun.yaml
        except OversightError as exc:
            Console(stderr=True).print(f"[red]report skipped:[/red] {exc}")
            return
        print(f"report: {index} (open it in a browser; built in {time.perf_counter() - started:.1f} s)")


def training_tables(sweep_dir: Path) -> None:
    """A training job's directory holds a table, not a protocol comparison: print each job's."""
    console = Console()
    for table in sorted(sweep_dir.glob("*/table.md")):
        console.print(f"[bold]{table.parent}[/bold]")
        console.print(table.read_text())
