"""The notebook API: oversight.load reads any job or sweep back as one row per judgment."""

from __future__ import annotations

import time

import pandas as pd
import pytest

import oversight
from oversight.records import read_records, read_summary


def test_load_a_sweep_one_row_per_judgment_with_people_and_parquet(tiny_model_dir, tmp_path):
    from oversight.app.report._compat import HumanJudgment, HumanStore
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
