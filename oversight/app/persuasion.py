"""The persuasiveness experiment's report: ratings.csv, persuasion.md and persuasion.png from a
finished cross-play job (protocols/crossplay.py), Khan et al.'s Figure 1 in miniature: judge
accuracy under debate and under consultancy against each arguer configuration's cross-play rating,
with CIs on both axes.

    oversight -m +experiment=persuasion          # runs the tournament; this report runs at the end
    python -m oversight.app.persuasion runs/persuasion   # the report again, from the files alone

It reads every job under the directory whose records carry cross-play transcripts, and writes next
to the sweep: `ratings.csv` (one row per player and job), `persuasion.md` (the same as a table)
and `persuasion.png` (the plot).

    python -m oversight.app.persuasion --best-of-n runs/bon_sweep

prints, for every job whose arguers used best-of-N turns (e.g. a sweep over
`protocol.strategy.n`), the mean preference score of the chosen turn against the mean over all
candidates: whether the optimisation works (`best_of_n.md`).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from oversight.app import exit_code
from oversight.errors import OversightError
from oversight.plugins import TARGET, locate
from oversight.records import job_dirs, read_records, read_summary

COLUMNS = ["job", "player", "rating", "rating_low", "rating_high", "crossplay_games", "crossplay_mean_outcome",
           "debate_accuracy", "debate_low", "debate_high", "debate_n", "consultancy_accuracy", "consultancy_low",
           "consultancy_high", "consultancy_n", "consultant_persuasion", "consultant_persuasion_low",
           "consultant_persuasion_high", "preference_debate", "preference_consultancy"]


def report(directory: str | Path, console: Console | None = None) -> list[dict[str, Any]]:
    from protocols.crossplay import tournament

    directory = Path(directory)
    rows: list[dict[str, Any]] = []
    for job in crossplay_jobs(directory):
        records = read_records(job)
        if not any(t.info.get("match") == "crossplay" for r in records for t in r.transcripts):
            continue
        label = str(job.relative_to(directory)) or "."
        rows += [{"job": label, **row} for row in tournament(records)]
        read_summary(job)  # a job without its summary is unfinished: read_summary names it
    if not rows:
        raise OversightError(f"{directory}: no finished cross-play job (protocol=crossplay) found")
    with open(directory / "ratings.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    table = markdown(rows)
    (directory / "persuasion.md").write_text(table)
    plot(rows, directory / "persuasion.png")
    (console or Console(width=200)).print(table)
    return rows


def crossplay_jobs(directory: str | Path) -> list[Path]:
    """The job directories under `directory` whose protocol is a cross-play tournament (by the
    config saved in each summary; a job without a summary is listed too, for `report` to name)."""
    from protocols.crossplay import CrossPlay

    jobs = []
    for job in job_dirs(directory):
        target = ((read_summary(job).get("config") or {}).get("protocol") or {}).get(TARGET)
        try:
            cls = locate(target, "protocol") if target else None
        except OversightError:
            cls = None
        if isinstance(cls, type) and issubclass(cls, CrossPlay):
            jobs.append(job)
    return jobs


def best_of_n_table(directory: str | Path) -> str:
    """Per job with best_of_n steps: N, the mean preference score of the kept candidate and of all
    candidates, and judge accuracy with its CI."""
    directory = Path(directory)
    lines = ["| job | protocol | N | turns | preference of chosen turn | mean over candidates | accuracy [95% CI] |",
             "|---|---|---|---|---|---|---|"]
    found, rows = False, []
    for job in job_dirs(directory):
        summary = read_summary(job)
        chosen, every, sizes = [], [], set()
        for record in read_records(job):
            for node in record.graph.get("nodes", ()):
                if node.get("label") == "best_of_n" and node.get("scores"):
                    chosen.append(node["scores"][node["chosen"]])
                    every += node["scores"]
                    sizes.add(len(node["scores"]))
        if not chosen:
            continue
        found = True
        low, high = summary["accuracy_ci"]
        rows.append(((summary["protocol"], sorted(sizes)), (
            f"| {job.relative_to(directory)} | {summary['protocol']} | "
            f"{'/'.join(map(str, sorted(sizes)))} | {len(chosen)} | {sum(chosen) / len(chosen):.3f} | "
            f"{sum(every) / len(every):.3f} | {summary['accuracy']:.3f} [{low:.3f}, {high:.3f}] |")))
    lines += [line for _, line in sorted(rows, key=lambda row: row[0])]
    if not found:
        raise OversightError(f"{directory}: no job with best_of_n turns found")
    table = "\n".join(lines) + "\n"
    (directory / "best_of_n.md").write_text(table)
    return table


def markdown(rows: list[dict[str, Any]]) -> str:
    def ci(row: dict[str, Any], key: str, low: str, high: str, fmt: str) -> str:
        if row.get(key) is None:
            return "-"
        return f"{row[key]:{fmt}} [{row[low]:{fmt}}, {row[high]:{fmt}}]"

    def num(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = ["| job | arguer | rating (Elo) [95% CI] | cross-play games | mean outcome | "
             "debate accuracy [95% CI] | consultancy accuracy [95% CI] | preference of chosen turn (debate) | "
             "(consultancy) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['job']} | {row['player']} | {ci(row, 'rating', 'rating_low', 'rating_high', '.0f')} | "
            f"{row['crossplay_games']} | {num(row['crossplay_mean_outcome'])} | "
            f"{ci(row, 'debate_accuracy', 'debate_low', 'debate_high', '.3f')} | "
            f"{ci(row, 'consultancy_accuracy', 'consultancy_low', 'consultancy_high', '.3f')} | "
            f"{num(row['preference_debate'])} | {num(row['preference_consultancy'])} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for protocol, colour in (("debate", "tab:blue"), ("consultancy", "tab:orange")):
        points = sorted((r for r in rows if r.get("rating") is not None and r.get(f"{protocol}_accuracy") is not None),
                        key=lambda r: r["rating"])
        if not points:
            continue
        x = [r["rating"] for r in points]
        y = [r[f"{protocol}_accuracy"] for r in points]
        ax.errorbar(x, y, xerr=[[r["rating"] - r["rating_low"] for r in points],
                                [r["rating_high"] - r["rating"] for r in points]],
                    yerr=[[r[f"{protocol}_accuracy"] - r[f"{protocol}_low"] for r in points],
                          [r[f"{protocol}_high"] - r[f"{protocol}_accuracy"] for r in points]],
                    marker="o", capsize=3, color=colour, label=protocol)
        for r in points:
            ax.annotate(r["player"], (r["rating"], r[f"{protocol}_accuracy"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8, color=colour)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("arguer rating (Bradley-Terry, Elo scale; cross-play, 95% CI)")
    ax.set_ylabel("judge accuracy (95% CI)")
    ax.set_title("Judge accuracy against arguer strength")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oversight.app.persuasion", description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="a sweep or job directory with a finished cross-play job")
    parser.add_argument("--best-of-n", action="store_true",
                        help="instead: the preference of chosen turns in every job with best-of-N turns")
    args = parser.parse_args(argv)
    if args.best_of_n:
        return exit_code("persuasion", lambda: print(best_of_n_table(args.directory)))
    return exit_code("persuasion", lambda: report(args.directory))


if __name__ == "__main__":
    sys.exit(main())
