"""Interactive judging (protocols/interactive.py): `protocol.interactive=true` on debate and
consultancy, on the scripted test double (no model). Between rounds the judge's question is a
`generate` node of role judge; the next round's turns (any strategy) see it and depend on it; the
verdict reads it. Off, no judge turn and no judge-question call exists."""

from __future__ import annotations

import networkx as nx
import pytest

from oversight.backends.scripted import ScriptedBackend
from oversight.engine import Engine
from oversight.tasks.hidden_passage import generate as hidden_passage
from tests.helpers import build_judge, build_protocol

ASKED = "Which sentence names the pet?"


def run(protocol_cfg, n=3, replies=None):
    backend = ScriptedBackend(replies=replies or (lambda call: ASKED if "Ask the" in call.messages[-1]["content"]
                                                  else "<quote>nobody said this</quote> an argument"))
    protocol = build_protocol(protocol_cfg)
    judge = build_judge({"name": "likelihood"})

    async def episode(q, ctx):
        transcripts = await protocol.run(q, ctx)
        return transcripts, [await judge.judge(q, t, ctx) for t in transcripts]

    return Engine({"default": backend}).run(hidden_passage(n=n, seed=3), episode), backend


def question_nodes(outcome):
    return [(i, a) for i, a in outcome.graph.nodes("call") if a["label"] == "judge-question"]


@pytest.mark.parametrize("cfg", [
    {"name": "debate", "rounds": 2},
    {"name": "debate", "rounds": 3, "turns": "sequential", "first": "both"},
    {"name": "consultancy", "rounds": 2},
])
@pytest.mark.parametrize("strategy", ["free", "quotes", "critique_refine"])
def test_the_judge_asks_between_rounds_and_the_next_round_answers(cfg, strategy):
    argument = {"format": strategy}
    if strategy == "critique_refine":
        argument["inner"] = {"_target_": "protocols.strategies.free.Free"}
    outcomes, backend = run({**cfg, "interactive": True, "argument": argument})
    for o in outcomes:
        transcripts, judgments = o.value
        asked = question_nodes(o)
        # one question before every round but the first, per episode, each a generate call of role judge
        assert len(asked) == len(transcripts) * (cfg["rounds"] - 1)
        assert all(a["role"] == "judge" and a["call"]["kind"] == "generate" for _, a in asked)
        for t in transcripts:
            questions = [turn for turn in t.turns if turn.side is None]
            assert [q.round for q in questions] == list(range(1, cfg["rounds"]))
            assert all(q.role == "judge" and q.label == "Judge" and q.text == ASKED for q in questions)
            for q in questions:
                later = [turn for turn in t.turns if turn.side is not None and turn.round == q.round]
                assert later, "a round after the question has turns"
                for turn in later:  # each answering turn's calls read the question's node
                    assert q.node in nx.ancestors(o.graph.g, turn.node), (strategy, turn.node)
        # the speakers' calls of later rounds were shown the judge's question
        shown = [c for c in backend.calls if "The judge asks: " + ASKED in c.messages[-1]["content"]]
        assert shown, strategy
        # the verdict reads the whole exchange, the question included, and depends on it
        for j, t in zip(judgments, transcripts):
            for order in j.orders:
                node = o.graph.g.nodes[order.node]
                assert f"Judge: {ASKED}" in node["call"]["messages"][-1]["content"]
                assert all(q.node in o.graph.g.predecessors(order.node) for q in t.turns if q.side is None)


@pytest.mark.parametrize("cfg", [{"name": "debate", "rounds": 2}, {"name": "consultancy", "rounds": 2},
                                 {"name": "debate", "rounds": 2, "turns": "sequential"}])
@pytest.mark.parametrize("strategy", ["free", "quotes"])
def test_off_no_judge_turn_no_question_call_and_prompts_as_before(cfg, strategy):
    outcomes, backend = run({**cfg, "argument": {"format": strategy}})
    for o in outcomes:
        transcripts, _ = o.value
        assert not question_nodes(o)
        assert all(turn.side is not None for t in transcripts for turn in t.turns)
    assert not any("judge asks" in c.messages[-1]["content"].lower() for c in backend.calls)
    assert not any("Ask the" in c.messages[-1]["content"] for c in backend.calls)


def test_the_question_is_cut_to_its_word_limit_and_an_empty_one_is_named():
    outcomes, _ = run({"name": "consultancy", "rounds": 2, "interactive": True, "judge_questions": {"words": 4},
                       "argument": {"format": "free"}},
                      replies=lambda call: "one two three four five six" if "Ask the" in call.messages[-1]["content"]
                      else "an argument")
    questions = [turn for o in outcomes for t in o.value[0] for turn in t.turns if turn.side is None]
    assert questions and all(q.text == "one two three four" for q in questions)
    outcomes, _ = run({"name": "debate", "rounds": 2, "interactive": True, "argument": {"format": "free"}},
                      replies=lambda call: "   " if "Ask the" in call.messages[-1]["content"] else "an argument")
    assert all(turn.text == "(no question)" for o in outcomes for t in o.value[0] for turn in t.turns
               if turn.side is None)


def test_a_bad_option_names_its_key():
    from oversight.errors import ConfigError
    with pytest.raises(ConfigError, match=r"protocol\.judge_questions\.words"):
        build_protocol({"name": "debate", "interactive": True, "judge_questions": {"words": 0}})


def test_the_report_marks_the_judges_questions_in_transcripts():
    from oversight.app.report import _turn
    outcomes, _ = run({"name": "debate", "rounds": 2, "interactive": True, "argument": {"format": "free"}}, n=1)
    (transcript,), _ = outcomes[0].value
    shown = [_turn(turn, outcomes[0].question.options) for turn in transcript.turns]
    assert [s["judge_question"] for s in shown] == [False, False, True, False, False]
    asked = shown[2]
    assert asked["label"] == "Judge" and asked["side_text"] is None and asked["round"] == 1
    assert "".join(seg["text"] for seg in asked["segments"]) == ASKED
