"""Capability-gap curves (Engels, Baek, Kantamneni, Tegmark 2025, "Scaling Laws for Scalable
Oversight"), read from a sweep of cross-play jobs that differ only in the judge:

    oversight -m +experiment=capability_gap          # runs the sweep; this module runs at its end
    python -m oversight.app.gap runs/capability_gap  # the same tables and plot from finished jobs

Every job of the sweep is one judge on the same stored transcripts (the arguers' calls come from
the call cache after the first job, so a new judge costs only its own calls): the judge x transcript
grid (`grid.csv`, `grid.md`: judges x arguer pairs x matches).

Ratings on one scale:
- the overseen (Houdini): each arguer's Bradley-Terry rating from its cross-play games
  (oversight.ratings, the true side's edge as the advantage term), pooled over every judge's verdicts;
- the overseer (Guard): each judge's rating G_J, fitted jointly with a curve per protocol p,

      P(judge J reaches the truth against arguer A under p) = sigmoid(a_p - b_p * (H_A - G_J)),

  H and G in logits (reported on the Elo scale: 400 points = 10:1 odds, centred on 1000). The
  judges' ratings are centred on the arguers' mean (the scale's one free constant: judges and arguers
  are never in the same game, as in Engels et al.'s rectangular fit), so H_A - G_J is the rating gap:
  positive when the arguer is stronger. a_p is the protocol's log-odds of success at zero gap; b_p how
  fast success falls as the arguer outgrows the judge (b_p = 1 with a_p = 0 is Elo itself; b_p near 0:
  arguer strength does not matter to the judge under p).
- 95% intervals: a question-clustered bootstrap (questions resampled with replacement; the arguers'
  cross-play ratings and the judges' fit both refitted in every resample, so the arguers'
  uncertainty reaches the judges' ratings and the curves).

Nested scalable oversight (Engels et al. section 5): to bridge a total gap D with n steps, each
overseer oversees a system D/n stronger than itself; it succeeds when every step does,

    P_n(D) = P_p(D / n) ** n,   n* = argmax_n P_n(D),

here with the fitted curve of protocol p standing in for Engels et al.'s domain Elo per general Elo
(the arguers' cross-play rating is the only capability scale this sweep has, so guard and Houdini
slopes on it are the same b_p): a protocol with a_p > 0 gains from several steps, one with a_p <= 0
never does. `gap.md` reports P_1 and P_n* at D = 400 Elo, with bootstrap intervals.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize

from oversight.errors import ConfigError
from oversight.metrics import accuracy_ci
from oversight.ratings import ELO_CENTRE, ELO_PER_LOGIT, Game, strengths
from oversight.records import job_dirs, read_records, read_summary

PROTOCOLS = ("debate", "consultancy")
NSO_GAP = 400.0  # Elo: Engels et al.'s headline gap
MAX_STEPS = 20


@dataclass
class GapData:
    """What a sweep's cross-play jobs hold, per question: cross-play games (every judge's) and, per
    judge, protocol and arguer, whether the judge reached the truth."""

    games: dict[str, list[Game]] = field(default_factory=lambda: defaultdict(list))  # question -> games
    # question -> [(judge, protocol, arguer, correct)]
    outcomes: dict[str, list[tuple[str, str, str, float]]] = field(default_factory=lambda: defaultdict(list))
    grid: list[dict[str, Any]] = field(default_factory=list)
    judges: list[str] = field(default_factory=list)
    arguers: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)


def collect(sweep_dir: str | Path) -> GapData:
    """Read every finished cross-play job of the sweep (one judge each)."""
    sweep_dir = Path(sweep_dir)
    data = GapData()
    cells: dict[tuple[str, str, str], list[tuple[float, float | None]]] = defaultdict(list)
    for job in job_dirs(sweep_dir):
        if not (job / "summary.json").exists():
            continue
        summary = read_summary(job)
        if summary.get("protocol") != "crossplay" and (summary.get("config") or {}).get("protocol", {}).get(
                "name") != "crossplay":
            continue
        judge = str(summary.get("judge"))
        if judge in data.judges:
            raise ConfigError(f"{job}: judge {judge!r} appears in two jobs of {sweep_dir}; each job of a "
                              "capability-gap sweep must be a different judge (give each judge its own name)")
        data.judges.append(judge)
        data.jobs.append(job.name)
        for record in read_records(job):
            transcripts = {t.episode: t for t in record.transcripts}
            for j in record.judgments:
                t = transcripts.get(j.episode)
                if t is None or j.p is None or j.pending or j.correct is None:
                    continue
                match, names = t.info.get("match"), list(t.info.get("players") or [])
                for name in names:
                    if name not in data.arguers:
                        data.arguers.append(name)
                qid = record.question_id
                if match == "crossplay":
                    data.games[qid].append(Game(first=names[0], second=names[1], outcome=min(1.0, max(0.0, j.p[0])),
                                                advantage=1.0 if record.correct_index == 0 else -1.0, group=qid))
                    cells[(judge, f"crossplay:{names[0]}|{names[1]}", qid)].append((j.correct, j.p[0]))
                elif match in PROTOCOLS:
                    data.outcomes[qid].append((judge, match, names[0], float(j.correct)))
                    cells[(judge, f"{match}:{names[0]}", qid)].append((j.correct, None))
    if not data.judges:
        raise ConfigError(f"{sweep_dir}: no finished cross-play job (protocol=crossplay) to read")
    # the grid: per judge and transcript kind, accuracy over questions (consultancy: both sides averaged)
    per_cell: dict[tuple[str, str], list[float]] = defaultdict(list)
    first_p: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (judge, kind, _), values in cells.items():
        per_cell[(judge, kind)].append(sum(v for v, _ in values) / len(values))
        first_p[(judge, kind)] += [p for _, p in values if p is not None]
    for (judge, kind), scores in sorted(per_cell.items()):
        match, players = kind.split(":", 1)
        low, high = accuracy_ci(scores)
        data.grid.append({"judge": judge, "match": match, "players": players, "n": len(scores),
                          "accuracy": sum(scores) / len(scores), "low": low, "high": high,
                          "first_side_p": (sum(first_p[(judge, kind)]) / len(first_p[(judge, kind)])
                                           if first_p[(judge, kind)] else None)})
    return data


# ---- the fit ------------------------------------------------------------------------------------


def fit_gap(data: GapData, questions: list[str] | None = None) -> dict[str, Any]:
    """Arguer ratings from cross-play, then judge ratings and one curve per protocol (logits)."""
    questions = sorted(set(data.games) | set(data.outcomes)) if questions is None else questions
    games = [g.model_copy(update={"group": (g.group, copy)}) for copy, q in enumerate(questions)
             for g in data.games.get(q, ())]
    arguers = sorted({g.first for g in games} | {g.second for g in games})
    if len(arguers) < 2:
        raise ConfigError("capability gap: needs cross-play games between at least 2 arguers")
    theta = strengths(games)
    h = {a: theta[a] for a in arguers}
    rows = [(j, p, a, y) for q in questions for (j, p, a, y) in data.outcomes.get(q, ()) if a in h]
    judges = sorted({r[0] for r in rows})
    protocols = [p for p in PROTOCOLS if any(r[1] == p for r in rows)]
    if len(judges) < 2 or not protocols:
        raise ConfigError(f"capability gap: needs at least 2 judges with debate or consultancy outcomes, got "
                          f"{judges}")
    ji = {j: i for i, j in enumerate(judges)}
    pi = {p: i for i, p in enumerate(protocols)}
    jx = np.array([ji[r[0]] for r in rows])
    px = np.array([pi[r[1]] for r in rows])
    hx = np.array([h[r[2]] for r in rows])
    y = np.array([r[3] for r in rows])
    nj, npr = len(judges), len(protocols)
    mean_h = float(np.mean(list(h.values())))

    def unpack(params):
        g = params[:nj]
        g = g - g.mean() + mean_h  # judges centred on the arguers' mean: the scale's one constant
        return g, params[nj:nj + npr], params[nj + npr:]

    def nll(params):
        g, a, b = unpack(params)
        z = a[px] - b[px] * (hx - g[jx])
        value = np.sum(np.logaddexp(0.0, -z) * y + np.logaddexp(0.0, z) * (1 - y))
        return float(value + 1e-4 * float(params @ params))  # a whisper of ridge: finite when a cell is all-0/1

    start = np.concatenate([np.zeros(nj), np.zeros(npr), np.ones(npr)])
    result = optimize.minimize(nll, start, method="L-BFGS-B")
    g, a, b = unpack(result.x)
    return {"arguers": h, "judges": dict(zip(judges, map(float, g))),
            "a": dict(zip(protocols, map(float, a))), "b": dict(zip(protocols, map(float, b)))}


def success(fit: dict[str, Any], protocol: str, gap_elo: float) -> float:
    """P(the judge reaches the truth) under `protocol` at a rating gap (arguer minus judge, Elo)."""
    z = fit["a"][protocol] - fit["b"][protocol] * gap_elo / ELO_PER_LOGIT
    return 1.0 / (1.0 + math.exp(-z))


def nested(fit: dict[str, Any], protocol: str, total_gap: float = NSO_GAP) -> tuple[int, float, float]:
    """Nested oversight over `total_gap` Elo: (best number of steps, its success, one step's success)."""
    options = [(success(fit, protocol, total_gap / n) ** n, n) for n in range(1, MAX_STEPS + 1)]
    best, n = max(options)
    return n, best, options[0][0]


def bootstrap(data: GapData, resamples: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """Question-clustered bootstrap fits (questions drawn with replacement; both stages refitted)."""
    questions = sorted(set(data.games) | set(data.outcomes))
    rng = random.Random(seed)
    fits = []
    for _ in range(resamples):
        sample = rng.choices(questions, k=len(questions))
        try:
            fits.append(fit_gap(data, sample))
        except (ConfigError, ValueError):
            continue  # a resample that lost an arguer or a judge rates nothing
    if len(fits) < resamples // 2:
        raise ConfigError(f"capability gap: only {len(fits)} of {resamples} bootstrap resamples could be fitted; "
                          "too few questions")
    return fits


def _interval(values: list[float]) -> tuple[float, float]:
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


# ---- outputs ------------------------------------------------------------------------------------


def analyse(sweep_dir: str | Path, resamples: int = 200, seed: int = 0) -> dict[str, Any]:
    """Collect, fit, bootstrap; write gap.json, gap.md, gap.csv, grid.csv, grid.md and gap.png."""
    sweep_dir = Path(sweep_dir)
    data = collect(sweep_dir)
    point = fit_gap(data)
    boots = bootstrap(data, resamples, seed)
    elo = lambda x: ELO_CENTRE + ELO_PER_LOGIT * x  # noqa: E731
    ratings = []
    for role, key in (("arguer", "arguers"), ("judge", "judges")):
        for name, value in sorted(point[key].items(), key=lambda kv: kv[1]):
            low, high = _interval([f[key][name] for f in boots if name in f[key]])
            ratings.append({"role": role, "player": name, "elo": elo(value), "low": elo(low), "high": elo(high)})
    curves = []
    for p in point["a"]:
        kept = [f for f in boots if p in f["a"]]
        n_star, best, one = nested(point, p)
        nest = [nested(f, p) for f in kept]
        curves.append({
            "protocol": p, "a": point["a"][p], "a_ci": _interval([f["a"][p] for f in kept]),
            "b": point["b"][p], "b_ci": _interval([f["b"][p] for f in kept]),
            "success_at_0": success(point, p, 0.0), "success_at_0_ci": _interval([success(f, p, 0.0) for f in kept]),
            "nso_gap": NSO_GAP, "nso_one_step": one, "nso_one_step_ci": _interval([x[2] for x in nest]),
            "nso_steps": n_star, "nso_best": best, "nso_best_ci": _interval([x[1] for x in nest]),
        })
    cells = _cells(data, point, boots)
    result = {"ratings": ratings, "curves": curves, "cells": cells, "grid": data.grid, "judges": data.judges,
              "arguers": sorted(point["arguers"]), "questions": len(set(data.games) | set(data.outcomes)),
              "resamples": len(boots), "jobs": data.jobs}
    (sweep_dir / "gap.json").write_text(json.dumps(result, indent=2))
    (sweep_dir / "gap.md").write_text(markdown(result))
    _csv(sweep_dir / "gap.csv", cells)
    _csv(sweep_dir / "grid.csv", data.grid)
    (sweep_dir / "grid.md").write_text(grid_markdown(data.grid))
    plot(result, point, boots, sweep_dir / "gap.png")
    return result


def _cells(data: GapData, point: dict[str, Any], boots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per judge, protocol and arguer: observed success over questions (95% CI) at its rating gap."""
    scores: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for q, rows in data.outcomes.items():
        for judge, p, arguer, y in rows:
            scores[(judge, p, arguer)][q].append(y)
    cells = []
    for (judge, p, arguer), by_q in sorted(scores.items()):
        if arguer not in point["arguers"] or judge not in point["judges"]:
            continue
        per_q = [sum(v) / len(v) for v in by_q.values()]
        low, high = accuracy_ci(per_q)
        gap = ELO_PER_LOGIT * (point["arguers"][arguer] - point["judges"][judge])
        gaps = [ELO_PER_LOGIT * (f["arguers"][arguer] - f["judges"][judge]) for f in boots
                if arguer in f["arguers"] and judge in f["judges"]]
        glow, ghigh = _interval(gaps)
        cells.append({"protocol": p, "judge": judge, "arguer": arguer, "n": len(per_q),
                      "success": sum(per_q) / len(per_q), "low": low, "high": high, "gap": gap,
                      "gap_low": glow, "gap_high": ghigh, "fitted": success(point, p, gap)})
    return cells


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Capability gap: {len(result['judges'])} judges x {len(result['arguers'])} arguers on "
             f"{result['questions']} questions; 95% intervals from {result['resamples']} question-clustered "
             "bootstrap resamples (both stages refitted).", "",
             "| role | player | rating (Elo) | 95% CI |", "|---|---|---|---|"]
    for r in result["ratings"]:
        lines.append(f"| {r['role']} | {r['player']} | {r['elo']:.0f} | [{r['low']:.0f}, {r['high']:.0f}] |")
    lines += ["", "P(success) = sigmoid(a - b x gap / (400 / ln 10)), gap = arguer - judge (Elo); nested oversight "
              f"over a total gap of {NSO_GAP:.0f} Elo:", "",
              "| protocol | a [95% CI] | b [95% CI] | success at gap 0 | one step | best steps | nested success |",
              "|---|---|---|---|---|---|---|"]
    for c in result["curves"]:
        lines.append(
            f"| {c['protocol']} | {c['a']:+.2f} [{c['a_ci'][0]:+.2f}, {c['a_ci'][1]:+.2f}] | {c['b']:+.2f} "
            f"[{c['b_ci'][0]:+.2f}, {c['b_ci'][1]:+.2f}] | {c['success_at_0']:.3f} [{c['success_at_0_ci'][0]:.3f}, "
            f"{c['success_at_0_ci'][1]:.3f}] | {c['nso_one_step']:.3f} [{c['nso_one_step_ci'][0]:.3f}, "
            f"{c['nso_one_step_ci'][1]:.3f}] | {c['nso_steps']} | {c['nso_best']:.3f} [{c['nso_best_ci'][0]:.3f}, "
            f"{c['nso_best_ci'][1]:.3f}] |")
    lines += ["", "| protocol | judge | arguer | n | success [95% CI] | gap (Elo) [95% CI] | fitted |", "|---|---|---|---|---|---|---|"]
    for c in result["cells"]:
        lines.append(f"| {c['protocol']} | {c['judge']} | {c['arguer']} | {c['n']} | {c['success']:.3f} "
                     f"[{c['low']:.3f}, {c['high']:.3f}] | {c['gap']:+.0f} [{c['gap_low']:+.0f}, {c['gap_high']:+.0f}] | "
                     f"{c['fitted']:.3f} |")
    return "\n".join(lines) + "\n"


def grid_markdown(grid: list[dict[str, Any]]) -> str:
    lines = ["| judge | match | players | n | accuracy [95% CI] | judge's p of the first side |", "|---|---|---|---|---|---|"]
    for g in grid:
        p = f"{g['first_side_p']:.3f}" if g["first_side_p"] is not None else "-"
        lines.append(f"| {g['judge']} | {g['match']} | {g['players']} | {g['n']} | {g['accuracy']:.3f} "
                     f"[{g['low']:.3f}, {g['high']:.3f}] | {p} |")
    return "\n".join(lines) + "\n"


def _csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("")
        return
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(result: dict[str, Any], point: dict[str, Any], boots: list[dict[str, Any]], path: Path) -> Path:
    """Judge success against the rating gap, one panel per protocol: cells with their 95% CIs over
    questions, the fitted curve and its bootstrap band (the gaps' intervals are in gap.md)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = [c["protocol"] for c in result["curves"]]
    fig, axes = plt.subplots(1, len(protocols), figsize=(5.2 * len(protocols), 4), squeeze=False)
    gaps = [c["gap"] for c in result["cells"]] or [0.0]
    span = max(200.0, max(abs(x) for x in gaps) * 1.3)
    xs = np.linspace(-span, span, 121)
    markers = dict(zip(result["judges"], "osD^vP*X"))
    for ax, p in zip(axes[0], protocols):
        kept = [f for f in boots if p in f["a"]]
        band = np.array([[success(f, p, x) for x in xs] for f in kept])
        ax.fill_between(xs, np.percentile(band, 2.5, axis=0), np.percentile(band, 97.5, axis=0), alpha=0.2,
                        color="C0", label="fit, 95% band")
        ax.plot(xs, [success(point, p, x) for x in xs], color="C0", label="fit")
        for c in (c for c in result["cells"] if c["protocol"] == p):
            # the gap's own interval is in gap.md: with a flat curve (b near 0) the judges' ratings are
            # barely identified, and bars thousands of Elo wide would hide every cell
            ax.errorbar(c["gap"], c["success"], yerr=[[c["success"] - c["low"]], [c["high"] - c["success"]]],
                        fmt=markers.get(c["judge"], "o"),
                        color=f"C{1 + sorted(result['arguers']).index(c['arguer']) % 8}", ms=5, capsize=2, alpha=0.8)
        ax.axhline(0.5, color="grey", lw=0.6, ls=":")
        ax.set_title(p)
        ax.set_xlim(-span, span)
        ax.set_xlabel("rating gap: arguer - judge (Elo)")
        ax.set_ylabel("judge reaches the truth")
        ax.set_ylim(0, 1)
    handles = [plt.Line2D([], [], marker=m, ls="", color="k", label=j) for j, m in markers.items()]
    handles += [plt.Line2D([], [], marker="s", ls="", color=f"C{1 + i % 8}", label=a)
                for i, a in enumerate(sorted(result["arguers"]))]
    fig.legend(handles=handles, loc="lower center", ncol=min(8, len(handles)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def is_gap_sweep(sweep_dir: str | Path) -> bool:
    """Two or more finished cross-play jobs with different judges: a capability-gap sweep."""
    judges = set()
    for job in job_dirs(sweep_dir):
        if (job / "summary.json").exists():
            summary = read_summary(job)
            if summary.get("protocol") == "crossplay":
                judges.add(summary.get("judge"))
    return len(judges) >= 2


def main(argv: list[str] | None = None) -> int:
    from oversight.app import exit_code

    parser = argparse.ArgumentParser(prog="python -m oversight.app.gap", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="a sweep of cross-play jobs, one judge each")
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples (default 200)")
    args = parser.parse_args(argv)

    def work() -> None:
        result = analyse(args.sweep_dir, args.resamples)
        print(markdown(result))
        print(f"wrote gap.md, gap.csv, gap.json, gap.png, grid.md, grid.csv in {args.sweep_dir}")

    return exit_code("oversight.app.gap", work)


if __name__ == "__main__":
    raise SystemExit(main())
