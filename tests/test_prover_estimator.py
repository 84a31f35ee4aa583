"""Prover-estimator debate (protocols/prover_estimator.py) on the scripted TEST DOUBLE
(oversight/backends/scripted.py): the game's logic and metrics, not a model's behaviour.

The scripts: `oracle` scores each candidate sum by whether it is the true value of the cloze it
continues ("27 + 45 =" -> 72), so estimator and judge are perfect; `flat` scores every candidate
the same, so every estimate is 0.5 (an estimator that cannot tell)."""

from __future__ import annotations

import math

import pytest

from oversight.backends.scripted import ScriptedBackend
from oversight.engine import Engine
from oversight.errors import ConfigError
from oversight.tasks.arithmetic import generate as arithmetic
from oversight.tasks.hidden_passage import generate as hidden_passage
from oversight.types import Call, Record
from protocols.prover_estimator import ProverEstimator
from tests.helpers import build_judge, build_protocol

SURE = 1 / (1 + math.exp(-5))  # the oracle prefers the true value to any other by 5 nats
P_TRUE = round(SURE, 4)  # its estimate of a true claim (beats all four rivals), as info records it
P_FALSE = round((1 - SURE + 3 * 0.5) / 4, 4)  # a false claim loses to the true value, ties the other three


def oracle(call: Call) -> list[float]:
    true = sum(int(t) for t in call.prefix.removesuffix("=").split("+"))
    return [0.0 if int(c) == true else -5.0 for c in call.candidates]


def flat(call: Call) -> list[float]:
    return [0.0 for _ in call.candidates]


def play(cfg: dict, scores, questions=None) -> tuple[ProverEstimator, list]:
    protocol = build_protocol({"name": "prover_estimator", **cfg})
    judge = build_judge({"name": "likelihood"})

    async def episode(q, ctx):
        transcripts = await protocol.run(q, ctx)
        return transcripts, [await judge.judge(q, t, ctx) for t in transcripts]

    questions = questions or arithmetic(n=6, seed=1, terms=8)
    outcomes = Engine({"default": ScriptedBackend(scores=scores)}).run(questions, episode)
    assert all(o.error is None for o in outcomes)
    return protocol, outcomes


def records(outcomes) -> list[Record]:
    return [Record.of(o.question, "prover_estimator", transcripts=o.value[0], judgments=o.value[1],
                      graph=o.graph.to_json()) for o in outcomes]


def games(outcomes) -> list[dict]:
    return [g for o in outcomes for g in o.value[0][0].info["games"]]


@pytest.mark.parametrize("max_depth,leaf_terms", [(1, 4), (2, 2), (3, 1)])
def test_the_recursion_reaches_a_leaf_at_max_depth(max_depth, leaf_terms):
    _, outcomes = play({"max_depth": max_depth, "leaf_units": 1}, oracle)
    for g in games(outcomes):
        assert [lv["depth"] for lv in g["levels"]] == list(range(max_depth))
        assert len(g["leaf"]["text"].split("=")[0].split("+")) == leaf_terms
    for o in outcomes:  # one split, one press and one estimate per part at every level of both games
        labels = [d["label"] for _, d in o.graph.nodes()]
        assert labels.count("split") == labels.count("press") == 2 * max_depth
        assert labels.count("leaf_check") == 2 and labels.count("verdict") == 1


def test_leaf_units_stop_the_recursion_early():
    _, outcomes = play({"max_depth": 5, "leaf_units": 2}, oracle)
    assert all(len(g["levels"]) == 2 for g in games(outcomes))  # 8 -> 4 -> 2 terms, a leaf


def test_a_wrong_subclaim_is_detected_when_pressed():
    _, outcomes = play({"dishonest": "bluff", "max_depth": 2}, oracle)
    for o in outcomes:
        (transcript,), _ = o.value
        honest, dishonest = sorted(transcript.info["games"], key=lambda g: not g["claim_true"])
        # the bluffing prover presses its flawed part at every level: the leaf it reaches is false,
        # and the judge's check fails it
        assert all(not lv["pressed_true"] for lv in dishonest["levels"])
        assert not dishonest["leaf"]["true"] and not dishonest["leaf"]["ok"] and not dishonest["stands"]
        assert honest["leaf"]["ok"] and honest["stands"]
        assert transcript.info["verdict"] == o.question.correct
        assert transcript.turns[-1].text == f"Verdict: {o.question.prefix} {o.question.options[o.question.correct]}."


def test_an_evading_prover_passes_its_leaf_but_the_estimators_doubt_stands():
    _, outcomes = play({"dishonest": "evade"}, oracle)
    for o in outcomes:
        (transcript,), _ = o.value
        dishonest = next(g for g in transcript.info["games"] if not g["claim_true"])
        assert dishonest["leaf"]["true"] and dishonest["leaf"]["ok"]  # it pressed a correct part
        assert not dishonest["exposed"] and dishonest["doubt"] == pytest.approx(P_FALSE, abs=1e-4) and not dishonest["stands"]
        assert transcript.info["verdict"] == o.question.correct


def test_obfuscation_adds_correct_looking_parts_around_one_flawed_part():
    _, outcomes = play({"obfuscate": 2, "max_depth": 1}, oracle)
    for g in games(outcomes):
        (level,) = g["levels"]
        assert len(level["parts"]) == 4  # branching 2 + 2
        assert sum(not p["true"] for p in level["parts"]) == (0 if g["claim_true"] else 1)


def test_metrics_on_an_oracle_script():
    protocol, outcomes = play({"dishonest": "bluff"}, oracle)
    m = protocol.extra_metrics(records(outcomes))
    assert m["estimates"] == 6 * 2 * 2 * 2  # questions x games x levels x parts
    parts = [p for g in games(outcomes) for lv in g["levels"] for p in lv["parts"]]
    share_true = sum(p["true"] for p in parts) / len(parts)
    assert {p["estimate"] for p in parts} == {P_TRUE, P_FALSE}
    assert m["estimator_brier"] == pytest.approx(share_true * (1 - P_TRUE) ** 2 + (1 - share_true) * P_FALSE ** 2)
    assert m["estimator_ece"] == pytest.approx(share_true * (1 - P_TRUE) + (1 - share_true) * P_FALSE)
    assert m["press_correct_rate"] == 1.0 and m["lowest_estimate_is_wrong_rate"] == 1.0
    assert m["leaf_check_accuracy"] == 1.0 and m["verdict_accuracy"] == 1.0
    assert m["true_claim_stands_rate"] == 1.0 and m["false_claim_stands_rate"] == 0.0
    evade, outcomes = play({"dishonest": "evade"}, oracle)
    assert evade.extra_metrics(records(outcomes))["press_correct_rate"] == 0.0


def test_metrics_on_an_estimator_that_cannot_tell():
    protocol, outcomes = play({"dishonest": "bluff"}, flat)
    m = protocol.extra_metrics(records(outcomes))
    parts = [p for g in games(outcomes) for lv in g["levels"] for p in lv["parts"]]
    share_true = sum(p["true"] for p in parts) / len(parts)
    assert all(p["estimate"] == 0.5 for p in parts)
    assert m["estimator_brier"] == pytest.approx(0.25)
    assert m["estimator_ece"] == pytest.approx(abs(share_true - 0.5))
    # the judge cannot tell either: every leaf "holds" at p = 0.5, so the false leaves are misjudged
    assert m["leaf_check_accuracy"] == pytest.approx(0.5)


@pytest.mark.parametrize("key,value", [("max_depth", 0), ("branching", 1), ("obfuscate", -1), ("dishonest", "lie"),
                                       ("tolerance", 1.5), ("leaf_units", 0), ("mode", "arguments")])
def test_bad_config_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"protocol\.{key}:"):
        build_protocol({"name": "prover_estimator", key: value})


def test_a_question_without_sub_sums_is_a_config_error():
    protocol = build_protocol({"name": "prover_estimator"})
    (question,) = hidden_passage(n=1, seed=0)

    async def episode(q, ctx):
        return await protocol.run(q, ctx)

    with pytest.raises(ConfigError, match="use task=arithmetic"):
        Engine({"default": ScriptedBackend(scores=oracle)}).run([question], episode)
