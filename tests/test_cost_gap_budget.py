"""Cost before you spend (--dry-run, oversight/app/cost.py), a job's budget (oversight/engine.py),
and capability-gap curves (oversight/app/gap.py, judges/partial_passage.py)."""

from __future__ import annotations

import json
import math
import random
import re

import pytest

from oversight.app import cost, gap
from oversight.records import read_records
from oversight.types import Question
from tests.test_cli import oversight, tiny


def _table(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[0].startswith(("protocol=", "model.")):
            rows[re.sub(r".*protocol=(\w+).*", r"\1", cells[0])] = cells
    return rows


def test_dry_run_estimate_matches_the_real_sweep_and_runs_nothing(tiny_model_dir, tmp_path):
    args = ["-m", "protocol=direct,consultancy,debate", "task.n=4", f"hydra.sweep.dir={tmp_path}/sweep",
            *tiny(tiny_model_dir)]
    cache = {"OVERSIGHT_CALL_CACHE": str(tmp_path / "calls.sqlite")}
    dry = oversight([*args, "--dry-run"], tmp_path, cache)
    assert "ready in" not in dry.stderr  # no backend was built: no model loaded
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "calls.sqlite").exists()
    estimate = _table(dry.stdout)
    assert sorted(estimate) == ["consultancy", "debate", "direct"]
    oversight(args, tmp_path, cache)
    for protocol, row in estimate.items():
        job = next((tmp_path / "sweep").glob(f"*protocol={protocol},*"))
        summary = json.loads((job / "summary.json").read_text())
        # the graph's shape is walked, not guessed: calls and cache hits are exact on an empty cache
        assert int(row[2]) == summary["model_calls"] and int(row[3]) == summary["cache_hits"]
        # prompt tokens by the model's own tokenizer; only prompts quoting model choices may differ
        assert int(row[5]) == pytest.approx(summary["prompt_tokens"], rel=0.10)


def test_counting_backend_counts_by_characters_without_a_tokenizer():
    from oversight.types import Call

    backend = cost.CountingBackend({"name": "m"}, None, chars_per_token=4.0, output_fill=0.5)
    from oversight.types import SamplingParams

    call = Call(kind="generate", messages=({"role": "user", "content": "x" * 40},),
                params=SamplingParams(max_new_tokens=10))
    (result,) = backend.generate([call])
    assert result.output_tokens == 5 and result.prompt_tokens == math.ceil(len(backend.render(call)) / 4)
    assert backend.tally.calls == 1 and backend.tally.by_kind == {"generate": 1}


def test_a_budget_stops_cleanly_and_a_rerun_continues_to_the_same_result(tiny_model_dir, tmp_path):
    base = ["protocol=direct", "task.n=6", f"hydra.run.dir={tmp_path}/job", *tiny(tiny_model_dir)]
    cache = {"OVERSIGHT_CALL_CACHE": str(tmp_path / "calls.sqlite")}
    first = oversight([*base, "budget.calls=5"], tmp_path, cache)
    assert "budget reached" in first.stderr
    records = read_records(tmp_path / "job")
    summary = json.loads((tmp_path / "job" / "summary.json").read_text())
    assert len(records) == 6 and summary["model_calls"] == 5  # every question recorded, none lost
    not_run = [r for r in records if r.error]
    assert not_run and all("not run: the job's budget was reached" in r.error for r in not_run)
    assert summary["not_run"] == len(not_run) and all(r.judgments for r in records if not r.error)
    second = oversight([*base, "budget.calls=5"], tmp_path, cache)  # at most 5 more fresh calls; the rest cached
    after = json.loads((tmp_path / "job" / "summary.json").read_text())
    assert after["model_calls"] <= 5 and after["cache_hits"] >= 5 and after["not_run"] < summary["not_run"]
    oversight(base, tmp_path, cache)  # no budget: finishes, making only the calls not yet made
    final = json.loads((tmp_path / "job" / "summary.json").read_text())
    clean = oversight(["protocol=direct", "task.n=6", f"hydra.run.dir={tmp_path}/clean", *tiny(tiny_model_dir)],
                      tmp_path, {"OVERSIGHT_CALL_CACHE": str(tmp_path / "other.sqlite")})
    reference = json.loads((tmp_path / "clean" / "summary.json").read_text())
    assert final["not_run"] == 0 and second.returncode == 0 and clean.returncode == 0
    # no call was made twice: the three budgeted runs together made exactly the calls of one clean run
    assert summary["model_calls"] + after["model_calls"] + final["model_calls"] == reference["model_calls"]
    assert final["accuracy"] == reference["accuracy"] and len(read_records(tmp_path / "job")) == 6


def test_bad_budget_is_a_config_error_naming_the_key(tiny_model_dir, tmp_path):
    proc = oversight(["protocol=direct", "task.n=2", "budget.calls=-1", f"hydra.run.dir={tmp_path}/job",
                      *tiny(tiny_model_dir)], tmp_path, check=False)
    assert proc.returncode == 2 and "error: budget.calls=-1" in proc.stderr


def test_gap_fit_recovers_a_known_curve():
    """Outcomes drawn from the model itself: the fit finds its slopes and the judges' order."""
    rng = random.Random(0)
    h = {"weak": -0.8, "mid": 0.0, "strong": 0.8}
    g = {"j0": -1.0, "j1": 0.0, "j2": 1.0}
    truth = {"debate": (0.8, 0.2), "consultancy": (0.0, 1.2)}
    data = gap.GapData()
    from oversight.ratings import Game

    for q in range(400):
        qid = f"q{q}"
        for a in h:
            for b in h:
                if a != b:
                    p = 1 / (1 + math.exp(-(h[a] - h[b])))
                    data.games[qid].append(Game(first=a, second=b, outcome=float(rng.random() < p), group=qid))
        for j, gj in g.items():
            for proto, (a0, b0) in truth.items():
                for arguer, ha in h.items():
                    p = 1 / (1 + math.exp(-(a0 - b0 * (ha - gj))))
                    data.outcomes[qid].append((j, proto, arguer, float(rng.random() < p)))
    fit = gap.fit_gap(data)
    for proto, (a0, b0) in truth.items():
        assert fit["b"][proto] == pytest.approx(b0, abs=0.2)
    assert fit["judges"]["j0"] < fit["judges"]["j1"] < fit["judges"]["j2"]
    assert fit["arguers"]["weak"] < fit["arguers"]["mid"] < fit["arguers"]["strong"]
    # nested oversight: a protocol favouring the judge at zero gap gains from several steps; a pure
    # Elo-like one (a = 0) never does
    steps, best, one = gap.nested({"a": {"p": 2.0}, "b": {"p": 1.0}}, "p", 800.0)
    assert steps > 1 and best > one
    assert gap.nested({"a": {"p": 0.0}, "b": {"p": 1.0}}, "p", 400.0)[0] == 1


def test_partial_passage_judge_sees_a_fixed_growing_sample():
    from judges.partial_passage import visible_sentences

    q = Question(id="q1", question="?", options=["a", "b"], correct=0,
                 context="One is here. Two is there. Three is far. Four is near. Five is gone.")
    one, three = visible_sentences(q, 1), visible_sentences(q, 3)
    assert len(one) == 1 and len(three) == 3 and set(one) <= set(three)
    assert visible_sentences(q, 3) == three and len(visible_sentences(q, 99)) == 5


def test_gap_analysis_of_a_two_judge_sweep_writes_its_tables_plot_and_report_section(tmp_path):
    """The capability_gap preset's jobs (two of its judges) on the scripted test double, then the analysis."""
    from oversight.app.api import compose
    from oversight.app.report.gap import gap_section
    from oversight.app.run import run_job

    for judge in ("likelihood", "likelihood_k1"):
        cfg, _ = compose(["+experiment=capability_gap", f"judge={judge}", "progress=false"])
        cfg["backend"] = {"_target_": "oversight.backends.scripted.ScriptedBackend"}
        cfg["task"]["n"] = 6
        run_job(cfg, tmp_path / f"judge={judge}")
    assert gap.is_gap_sweep(tmp_path)
    result = gap.analyse(tmp_path, resamples=30)
    for name in ("gap.md", "gap.csv", "gap.json", "gap.png", "grid.md", "grid.csv"):
        assert (tmp_path / name).stat().st_size > 0
    assert sorted(r["player"] for r in result["ratings"] if r["role"] == "judge") == ["likelihood", "likelihood_k1"]
    assert len([r for r in result["ratings"] if r["role"] == "arguer"]) == 4
    assert all(r["low"] <= r["elo"] <= r["high"] for r in result["ratings"])
    # the grid: every judge on every transcript kind: 12 cross-play pairs, 4 self-play debates, 4 consultants
    assert len(result["grid"]) == 2 * (12 + 4 + 4) and all(g["n"] == 6 for g in result["grid"])
    assert {c["protocol"] for c in result["curves"]} == {"debate", "consultancy"}
    html = gap_section(tmp_path)
    assert "Capability gap" in html and "data:image/png;base64," in html
    assert gap_section(tmp_path / "judge=likelihood") == ""  # no analysis there: no section
