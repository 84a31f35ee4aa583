"""Judges on the tiny model: probabilities, both orders, parse failures, position bias."""

from __future__ import annotations

import pytest

from tests.helpers import build_judge
from judges.model import parse_letter
from oversight.backends.hf import HFBackend
from oversight.engine import Engine
from oversight.errors import ConfigError
from oversight.tasks.hidden_passage import generate as hidden_passage
from oversight.types import OrderJudgment, Question, Transcript
from judges.verdicts import combine_orders
from tests.helpers import build_protocol


@pytest.fixture(scope="module")
def hf(tiny_model_cfg):
    return HFBackend(tiny_model_cfg, {"name": "hf", "batch_size": 64})


def judge_debates(hf, judge_cfg, n=6):
    protocol = build_protocol({"name": "debate"})
    judge = build_judge(judge_cfg)

    async def episode(q, ctx):
        (t,) = await protocol.run(q, ctx)
        return await judge.judge(q, t, ctx)

    return Engine({"default": hf}).run(hidden_passage(n=n), episode)


@pytest.mark.parametrize("kind", ["likelihood", "logprob"])
def test_scoring_judges_give_probabilities_in_original_order(hf, kind):
    outcomes = judge_debates(hf, {"name": kind, "kind": kind})
    for o in outcomes:
        j = o.value
        assert j.p is not None and sum(j.p) == pytest.approx(1.0) and len(j.orders) == 2
        assert [v.order for v in j.orders] == [[0, 1], [1, 0]]
        assert j.p == pytest.approx([(a + b) / 2 for a, b in zip(j.orders[0].p, j.orders[1].p)])
        assert j.correct == (1.0 if j.chosen == o.question.correct else 0.0)
        flip = (j.orders[0].p[0] > 0.5) != (j.orders[1].p[0] > 0.5)
        assert j.position_flip == flip


def test_logprob_judge_shows_options_in_each_order(hf):
    outcome = judge_debates(hf, {"name": "lp", "kind": "logprob"}, n=1)[0]
    prompts = [d["call"]["messages"][-1]["content"] for _, d in outcome.graph.nodes("call") if d["label"] == "judge"]
    a, b = outcome.question.options
    assert f"A) {a}\nB) {b}" in prompts[0] and f"A) {b}\nB) {a}" in prompts[1]


def test_one_order_can_be_turned_off(hf):
    outcome = judge_debates(hf, {"name": "lh", "kind": "likelihood", "both_orders": False}, n=1)[0]
    assert len(outcome.value.orders) == 1 and outcome.value.position_flip is None


def test_generative_parse_failures_are_counted_and_never_correct(hf):
    # the tiny random model cannot write "Answer: X", so every order is a parse failure
    outcomes = judge_debates(hf, {"name": "gen", "kind": "generative", "max_new_tokens": 6}, n=4)
    for o in outcomes:
        assert o.value.parse_failed and o.value.p is None and o.value.chosen is None and o.value.correct == 0.0


def test_parse_letter():
    assert parse_letter("I think... Answer: B", 2) == 1
    assert parse_letter("answer is (a). Final answer: B", 2) == 1
    assert parse_letter("Answer: C", 2) is None
    assert parse_letter("no idea", 2) is None


def test_combining_orders_handles_ties_and_partial_failures():
    q = Question(id="q", question="?", options=["x", "y"], correct=0)
    t = Transcript(protocol="debate")
    tie = combine_orders("j", "model", q, t, [OrderJudgment(order=[0, 1], p=[0.5, 0.5])])
    assert tie.chosen is None and tie.correct == 0.5
    partial = combine_orders("j", "model", q, t, [OrderJudgment(order=[0, 1], p=[0.8, 0.2]),
                                                  OrderJudgment(order=[1, 0], p=[], parse_failed=True)])
    assert partial.parse_failed and partial.p == [0.8, 0.2] and partial.correct == 1.0


def test_judge_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"judge.kind: Input should be 'logprob', 'likelihood' or 'generative'"):
        build_judge({"name": "x", "kind": "oracle"})
    with pytest.raises(ConfigError, match=r"judge.temprature: Extra inputs are not permitted"):
        build_judge({"name": "x", "kind": "likelihood", "temprature": 2})
    with pytest.raises(ConfigError, match=r"judge.temperature: Input should be greater than 0"):
        build_judge({"name": "likelihood", "temperature": -1})
    with pytest.raises(ValueError, match=r"probabilities must lie in \[0, 1\]"):
        from oversight.types import Judgment
        Judgment(judge="x", p=[1.2, -0.2])


def test_judge_never_sees_the_hidden_passage(hf):
    outcome = judge_debates(hf, {"name": "lh", "kind": "likelihood"}, n=1)[0]
    story = outcome.question.context
    for _, d in outcome.graph.nodes("call"):
        if d["label"] == "judge":
            assert story not in d["call"]["messages"][-1]["content"]
