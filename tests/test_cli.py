"""The `oversight` Hydra app and `oversight-compare`, run as a researcher would: real processes."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys

import pytest

from oversight.records import read_records


def oversight(args, cwd, env_extra=None, check=True):
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "oversight.app.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"oversight {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def names(group):
    """The shipped configs of a group, as an unknown-name error lists them."""
    from oversight.app import CONF_DIR

    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def tiny(model_dir):
    return [f"model.path={model_dir}", "model.package=null", "model.gguf_file=null", "model.name=tiny-llama",
            "progress=false"]


def test_sweep_writes_records_summaries_and_comparison_and_reruns_for_free(tiny_model_dir, tmp_path):
    cache = {"OVERSIGHT_CALL_CACHE": str(tmp_path / "calls.sqlite")}
    args = ["-m", "protocol=direct,direct_passage,consultancy,debate", "task.n=6",
            f"hydra.sweep.dir={tmp_path}/sweep", *tiny(tiny_model_dir)]
    oversight(args, tmp_path, cache)
    sweep = tmp_path / "sweep"
    jobs = sorted(p.parent for p in sweep.rglob("summary.json"))
    # job directories are named from the overrides, so a rerun finds them again
    digest = hashlib.sha256(str(tiny_model_dir).encode()).hexdigest()[:8]  # a path appears as a digest
    assert [j.name for j in jobs] == [
        f"model.gguf_file=null,model.name=tiny-llama,model.package=null,model.path@{digest},protocol={p},task.n=6"
        for p in ("consultancy", "debate", "direct", "direct_passage")]
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        records = read_records(job)
        assert summary["n"] == len(records) == 6
        # accuracy recomputed by hand from records.jsonl equals summary.json
        per_question = [sum(j.correct for j in r.judgments) / len(r.judgments) for r in records]
        assert summary["accuracy"] == pytest.approx(sum(per_question) / len(per_question))
        lo, hi = summary["accuracy_ci"]
        assert lo <= summary["accuracy"] <= hi
        for r in records:
            assert r.graph["nodes"] and all(j.p is None or len(j.p) == 2 for j in r.judgments)
    rows = list(csv.DictReader((sweep / "comparison.csv").open()))
    assert {r["protocol"] for r in rows} == {"direct", "direct+passage", "consultancy", "debate"}
    assert (sweep / "comparison.md").read_text().count("\n") == 6 and (sweep / "comparison.png").stat().st_size > 0
    first_calls = {r["protocol"]: int(r["model_calls"]) for r in rows}
    assert all(first_calls.values())

    oversight(args, tmp_path, cache)  # the same command again: everything comes from the cache
    rerun = {r["protocol"]: r for r in csv.DictReader((sweep / "comparison.csv").open())}
    assert all(int(r["model_calls"]) == 0 and int(r["cache_hits"]) > 0 for r in rerun.values())
    assert {p: r["accuracy"] for p, r in rerun.items()} == {r["protocol"]: r["accuracy"] for r in rows}

    compare = subprocess.run([sys.executable, "-m", "oversight.app.compare", str(sweep), "--baseline", "direct"],
                             capture_output=True, text=True, timeout=120)
    assert compare.returncode == 0 and "debate" in compare.stdout
    # a baseline may be named by one of its job's overrides; ambiguous or unknown names are errors
    by_override = subprocess.run([sys.executable, "-m", "oversight.app.compare", str(sweep), "--baseline",
                                  "protocol=debate"], capture_output=True, text=True, timeout=120)
    assert by_override.returncode == 0 and "Δ vs debate" in (sweep / "comparison.md").read_text()
    for wanted, message in (("task.n=6", "matches 4 jobs"), ("protocol=oracle", "matches no job")):
        bad = subprocess.run([sys.executable, "-m", "oversight.app.compare", str(sweep), "--baseline", wanted],
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and message in bad.stderr


def test_single_run_with_experiment_preset_and_overrides(tiny_model_dir, tmp_path):
    proc = oversight(["protocol=debate", "protocol.rounds=2", "protocol.turns=sequential", "task.n=3",
                      f"hydra.run.dir={tmp_path}/one", *tiny(tiny_model_dir)], tmp_path)
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["protocol"] == "debate" and summary["config"]["protocol"]["rounds"] == 2
    assert "accuracy" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["protocol=debat"], "error: protocol: unknown name 'debat'; valid: " + ", ".join(names("protocol"))),
    (["-m", "judge=likelihood,oracle"], "error: judge: unknown name 'oracle'; valid: approval,"),
    (["protocol=debate", "protocol.rounds=0"], "error: protocol.rounds: Input should be greater than or equal to 1"),
    (["task.n=0"], "error: task.n: Input should be greater than or equal to 1"),
    (["task.distractor=nearby"], "error: task.distractor: Input should be 'in_story' or 'out_of_story'"),
    (["backend=tpu"], "error: backend: unknown name 'tpu'; valid: " + ", ".join(names("backend"))),
])
def test_bad_input_names_the_key(tiny_model_dir, tmp_path, args, message):
    proc = oversight([*args, f"hydra.run.dir={tmp_path}/bad", *tiny(tiny_model_dir)], tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message) and "Traceback" not in proc.stderr


def test_a_sweep_killed_at_random_points_repeats_at_most_one_batch_per_kill(tiny_model_dir, tmp_path):
    """SIGKILL a sweep three times at random points (tests/kill_resume.py), rerun it to the end: the
    calls made over all attempts exceed an uninterrupted run's by at most one backend batch per kill
    (every finished batch was already in the call cache), and every job's results are identical."""
    from tests.kill_resume import measure

    args = ["-m", "protocol=direct_passage,debate", "task.n=8", "backend.batch_size=4", *tiny(tiny_model_dir)]
    # every batch is held 0.5 s before it runs, so a kill lands mid-batch (the tiny model is too fast)
    report = measure(args, tmp_path / "work", kills=3, batch=4, seed=1, timeout=600, pause=0.0, chunk_delay=0.5)
    assert report["kills"] == 3 and report["calls_uninterrupted"] > 3 * 4
    assert report["calls_all_attempts"] - report["calls_uninterrupted"] <= 3 * 4, report
    assert report["results_identical"], report


def test_jobs_sharing_a_protocol_label_are_told_apart_by_their_overrides():
    from oversight.app.compare import disambiguate_labels

    rows = [{"job": "protocol.first=0,protocol.turns=sequential", "protocol": "debate", "judge": "likelihood"},
            {"job": "protocol.first=both,protocol.turns=sequential", "protocol": "debate", "judge": "likelihood"},
            {"job": "protocol=direct", "protocol": "direct", "judge": "likelihood"}]
    disambiguate_labels(rows)
    assert [r["protocol"] for r in rows] == ["debate (protocol.first=0)", "debate (protocol.first=both)", "direct"]
