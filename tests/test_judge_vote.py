"""The compute-matched baseline: the judge alone voting over readings of the passage in pieces."""

from __future__ import annotations

import math

import pytest

from oversight.app.run import run_job
from oversight.quotes import sentences
from oversight.records import read_records
from oversight.types import Judgment, OrderJudgment, Question, Transcript
from protocols.judge_vote import JudgeVote
from tests.helpers import job_config

QUESTION = Question(id="q", question="?", options=["a", "b"], correct=0,
                    context="One. Two. Three. Four. Five. Six. Seven.")


def test_readings_are_distinct_shares_of_the_passage_drawn_per_question():
    vote = JudgeVote(readings=8, share=0.5)
    pieces = vote.pieces("q1", 7)
    assert len(pieces) == len(set(pieces)) == 8 and all(len(p) == 4 for p in pieces)
    assert pieces == JudgeVote(readings=8, share=0.5).pieces("q1", 7)  # the same draw on every run
    assert pieces != vote.pieces("q2", 7)
    # fewer possible pieces than readings: every piece there is, once
    assert JudgeVote(readings=8, share=0.5).pieces("q", 3) == [(0, 1), (0, 2), (1, 2)]


def _judgment(p, orders=None):
    return Judgment(judge="j", p=p, chosen=0 if p[0] > p[1] else 1, correct=float(p[0] > p[1]),
                    orders=orders or [OrderJudgment(order=[0, 1], p=p), OrderJudgment(order=[1, 0], p=p)])


def _transcripts(k):
    return [Transcript(protocol="judge_vote", episode=f"reading-{i}") for i in range(k)]


def test_the_vote_is_the_majority_of_the_readings_and_keeps_them():
    # five readings for the right option, three (each very confident) for the wrong one
    judgments = [_judgment([0.6, 0.4])] * 5 + [_judgment([0.01, 0.99])] * 3
    transcripts = _transcripts(8)
    (vote,) = JudgeVote().combine(QUESTION, transcripts, judgments)
    assert vote.episode == "vote" and vote.p == [0.625, 0.375] and vote.chosen == 0 and vote.correct == 1.0
    assert len(vote.orders) == 16 and vote.position_flip is False
    assert [t.info["verdict"]["chosen"] for t in transcripts] == [0] * 5 + [1] * 3
    # a 4-4 vote is a tie: no choice, half right
    (tie,) = JudgeVote().combine(QUESTION, _transcripts(8), [_judgment([0.6, 0.4])] * 4 + [_judgment([0.4, 0.6])] * 4)
    assert tie.chosen is None and tie.correct == 0.5


def test_a_vote_that_changes_with_the_option_order_is_a_position_flip():
    # in order [0, 1] every reading prefers a, in order [1, 0] every reading prefers b
    flipping = _judgment([0.5, 0.5], orders=[OrderJudgment(order=[0, 1], p=[0.7, 0.3]),
                                             OrderJudgment(order=[1, 0], p=[0.2, 0.8])])
    (vote,) = JudgeVote().combine(QUESTION, _transcripts(3), [flipping] * 3)
    assert vote.position_flip is True and vote.correct == 0.5


def test_readings_waiting_for_a_person_are_not_voted_on():
    pending = Judgment(judge="human", source="human", pending=True)
    judgments = [_judgment([0.6, 0.4]), pending]
    assert JudgeVote().combine(QUESTION, _transcripts(2), judgments) == judgments


def test_a_judge_vote_job_records_one_vote_per_question_with_debates_call_budget(tmp_path):
    cfg = job_config({"name": "scripted"}, {"name": "judge_vote"}, n=3)
    cfg["backend"] = {"_target_": "oversight.backends.scripted.ScriptedBackend"}  # test double
    summary = run_job(cfg, tmp_path / "job")
    assert summary["calls_per_question"] == 16.0  # 8 readings x 2 option orders, all the judge's
    for record in read_records(tmp_path / "job"):
        (vote,) = record.judgments
        assert vote.episode == "vote" and len(vote.orders) == 16 and len(record.transcripts) == 8
        parts = sentences(record.context)
        for t in record.transcripts:  # each reading: half the sentences, in the passage's order
            assert len(t.info["sentences"]) == math.ceil(len(parts) / 2)
            assert t.passage == " ".join(parts[i] for i in t.info["sentences"])
        votes = [t.info["verdict"]["chosen"] for t in record.transcripts]
        assert vote.p[0] == pytest.approx(sum(1.0 if c == 0 else 0.5 if c is None else 0.0 for c in votes) / 8)
    assert summary["n"] == 3


def test_a_question_without_a_passage_is_an_error_naming_it():
    import asyncio

    with pytest.raises(ValueError, match="question q0: judge_vote reads the hidden passage"):
        asyncio.run(JudgeVote().run(Question(id="q0", question="?", options=["a", "b"], correct=0), None))
