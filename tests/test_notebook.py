"""The notebook API: oversight.load reads any job or sweep back as one row per judgment."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

import oversight
from oversight.records import read_records, read_summary


def test_load_a_sweep_one_row_per_judgment_with_people_and_parquet(tiny_model_dir, tmp_path):
    from judges.store import HumanJudgment, HumanStore
    from tests.test_report import run_sweep

    run_sweep(tiny_model_dir, tmp_path, n=5, protocols=("direct", "consultancy"))
    sweep = tmp_path / "sweep"
    jobs = sorted(p.parent for p in sweep.rglob("summary.json"))
    consultancy = next(j for j in jobs if "consultancy" in j.name)
    first = read_records(consultancy)[0]
    with HumanStore(consultancy) as store:  # a person judged one consultancy episode
        now = time.time()
        store.add(HumanJudgment(judge_id="ann", question_id=first.question_id, episode=first.transcripts[1].episode,
                                status="judged", chosen=first.correct_index, confidence=0.9,
                                p=[0.9 if k == first.correct_index else 0.1 for k in range(len(first.options))],
                                explanation="the quote is about someone else", display_order=[1, 0],
                                started_at=now - 12, ended_at=now, seconds=12.0))

    df = oversight.load(sweep)
    model = df[~df.human]
    for job in jobs:
        records = read_records(job)
        rows = model[model.job == job.name]
        assert len(rows) == sum(len(r.judgments) for r in records)
        # the summary's accuracy, recomputed from the frame: mean over questions of their episodes' mean
        assert rows.groupby("question_id").correct.mean().mean() == pytest.approx(read_summary(job)["accuracy"])
        assert (rows.calls == rows.question_id.map({r.question_id: sum(n["kind"] == "call" for n in r.graph["nodes"])
                                                    for r in records})).all()
        assert rows.orders.map(len).eq(2).all() and rows.p_by_order.map(len).eq(2).all()
    person = df[df.human]
    assert len(person) == 1
    assert person.iloc[0][["judge", "judge_id", "correct", "confidence", "explanation"]].tolist() == \
           ["human:ann", "ann", 1.0, 0.9, "the quote is about someone else"]

    path = tmp_path / "judgments.parquet"
    df.to_parquet(path)
    back = pd.read_parquet(path)
    assert back.shape == df.shape and back.correct.tolist() == df.correct.tolist()
    assert [list(map(list, o)) for o in back.orders] == df.orders.tolist()


def test_run_a_job_from_inside_a_running_event_loop_and_load_it(tiny_model_dir, tmp_path, monkeypatch):
    import asyncio

    monkeypatch.chdir(tmp_path)  # jobs land under ./runs/<name>/<overrides>, as with the command
    overrides = ["task.n=3", f"model.path={tiny_model_dir}", "model.package=null", "model.gguf_file=null",
                 "model.name=tiny-llama", "name=nb", "progress=false"]

    async def notebook_cell():
        assert asyncio.get_running_loop().is_running()
        other = asyncio.create_task(asyncio.sleep(0.05, result="the notebook's own task"))
        summary = await oversight.run_async(overrides=["protocol=debate", *overrides])
        blocking = oversight.run(overrides=["protocol=direct", *overrides])  # the blocking call, loop running
        return summary, blocking, await other

    summary, direct, other = asyncio.run(notebook_cell())
    assert other == "the notebook's own task"
    from oversight.app.jobdirs import job_name

    # named as the command names it: sorted overrides, a path as key@digest
    job = tmp_path / "runs" / "nb" / job_name(["protocol=debate", *overrides])
    assert job.name.startswith("model.gguf_file=null,model.name=tiny-llama,model.package=null,model.path@")
    assert Path(summary["dir"]).resolve() == job.resolve() and summary["n"] == 3
    assert summary["config"]["protocol"]["rounds"] == 1  # composed from conf/protocol/debate.yaml
    assert Path(direct["dir"]).name == job_name(["protocol=direct", *overrides])

    df = oversight.load(tmp_path / "runs" / "nb")
    debate = df[df.job == job.name]
    assert len(debate) == sum(len(r.judgments) for r in read_records(job))
    assert debate.correct.mean() == pytest.approx(summary["accuracy"])
    assert set(df.protocol) == {"debate", "direct"}


def test_importing_oversight_loads_no_application_code():
    import subprocess
    import sys

    probe = "import sys, oversight; print(sorted(m for m in sys.modules if m.startswith(('oversight.app', 'judges', 'protocols'))))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_bad_overrides_are_one_config_error():
    from oversight.errors import ConfigError

    with pytest.raises(ConfigError, match="protocol") as bad:
        oversight.run(overrides=["protocol=debat"])
    assert "debat" in str(bad.value) and "debate" in str(bad.value)  # names the bad choice and the valid ones
    with pytest.raises(ConfigError, match="task.nn"):
        oversight.run(overrides=["task.nn=3"])
