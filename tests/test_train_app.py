"""The training presets end to end, as a researcher runs them (real processes, the tiny real llama):
`oversight -m +experiment=debate_train` and `oversight-train train=rrm`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oversight.records import read_records

pytest.importorskip("trl")
ROOT = Path(__file__).resolve().parents[1]


def run(module, args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"{module} {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def tiny(model_dir):
    return [f"model.path={model_dir}", "model.package=null", "model.gguf_file=null", "model.name=tiny-llama",
            "progress=false"]


def test_debate_train_preset_trains_an_adapter_and_evaluates_it_against_the_base(tiny_model_dir, tmp_path):
    args = ["-m", "+experiment=debate_train", "task.n=7", "train.n_train=3", "protocol.strategy.n=2",
            "protocol.strategy.inner.word_limit=12",
            "train.dpo.max_steps=2", "train.dpo.batch_size=2", "train.dpo.save_steps=1", "train.dpo.max_length=256",
            f"hydra.sweep.dir={tmp_path}/sweep", *tiny(tiny_model_dir)]
    proc = run("oversight.app.cli", args, tmp_path)
    job = next(p.parent for p in (tmp_path / "sweep").glob("*/summary.json"))
    summary = json.loads((job / "summary.json").read_text())
    # preference pairs come from the best_of_n nodes of the training debates
    data = read_records(job / "data")
    assert len(data) == 3 and summary["pairs"] >= 1
    bon = [n for r in data for n in r.graph["nodes"] if n.get("label") == "best_of_n"]
    assert len(bon) == 3 * 2 and all(len(n["candidates"]) == 2 for n in bon)
    # the adapter moved, with its provenance and loss curve beside it
    dpo = summary["dpo"]
    assert dpo["steps"] == 2 and dpo["adapter_delta_norm"] > 0
    assert (job / "dpo" / "adapter" / "provenance.json").exists() and (job / "dpo" / "loss.png").exists()
    # evaluation on the 4 held-out questions: both arguers, the trained one spoken by the adapter's model
    evaluation = read_records(job / "eval")
    assert len(evaluation) == 4 and not {r.question_id for r in evaluation} & {r.question_id for r in data}
    players = {row["player"]: row for row in summary["tournament"]}
    assert set(players) == {"base", "dpo"} and all(r["debate_n"] == 4 for r in players.values())
    models = {n.get("model") for r in evaluation for n in r.graph["nodes"] if n.get("role") == "trained_arguer"}
    assert models == {"trained"}
    assert "cross-play rating" in proc.stdout + proc.stderr
    for name, row in players.items():  # how often the judge took each consultant's side, from the records
        sided = [float(j.chosen == t.assigned_side) for r in evaluation for t in r.transcripts for j in r.judgments
                 if j.episode == t.episode and t.info["match"] == "consultancy" and t.info["players"] == [name]]
        assert len(sided) == 4 * 2 and row["consultant_persuasion"] == pytest.approx(sum(sided) / len(sided))
    assert "dpo - base, paired over held-out questions" in (job / "table.md").read_text()
    # running it again resumes: every stage is read back, nothing retrained
    again = run("oversight.app.cli", args, tmp_path)
    assert json.loads((job / "summary.json").read_text())["dpo"]["seconds"] == dpo["seconds"]
    assert "cross-play rating" in again.stdout + again.stderr


def test_oversight_train_rrm_prints_the_per_level_table_and_resumes(tiny_model_dir, tmp_path):
    args = ["train=rrm", "task.n=10", "train.n_train=6", "train.candidates=[1,2]",
            f"train.features_cache={tmp_path}/features.sqlite", f"hydra.run.dir={tmp_path}/rrm", *tiny(tiny_model_dir)]
    proc = run("oversight.app.train", args, tmp_path)
    out = proc.stdout + proc.stderr
    assert "| level | items | label acc" in out and "workings" in out
    summary = json.loads((tmp_path / "rrm" / "summary.json").read_text())
    assert [r["level"] for r in summary["levels"]] == [0, 1, 2]
    heads = sorted((tmp_path / "rrm").glob("level*/*/head.pkl"))
    written = {p: p.stat().st_mtime_ns for p in heads}
    again = run("oversight.app.train", args, tmp_path)
    assert "| level | items | label acc" in again.stdout + again.stderr  # the resumed run prints the table
    assert len(heads) == 3 * 3 and {p: p.stat().st_mtime_ns for p in heads} == written  # no head retrained
    assert json.loads((tmp_path / "rrm" / "summary.json").read_text())["levels"] == summary["levels"]
    assert json.loads((tmp_path / "rrm" / "summary.json").read_text())["features_extracted"] == 0
