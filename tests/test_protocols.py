"""Every protocol end to end on the tiny model: transcript shapes, quotes, episodes, graph edges."""

from __future__ import annotations

import pytest

from oversight.backends.hf import HFBackend
from oversight.engine import Engine
from oversight.errors import ConfigError
from oversight.quotes import extract, normalise, sentences, verify
from oversight.tasks.hidden_passage import generate as hidden_passage
from oversight.plugins import Protocol, build
from tests.helpers import build_protocol
from tests.helpers import CountingBackend


@pytest.fixture(scope="module")
def hf(tiny_model_cfg):
    return HFBackend(tiny_model_cfg, {"name": "hf", "batch_size": 64})


def run(hf, protocol_cfg, n=4):
    protocol = build_protocol(protocol_cfg)
    backend = CountingBackend(hf)
    engine = Engine({"default": backend})
    return engine.run(hidden_passage(n=n), lambda q, ctx: protocol.run(q, ctx)), backend


def test_direct_shows_the_passage_only_in_the_ceiling(hf):
    floor, _ = run(hf, {"name": "direct", "passage": False})
    ceiling, _ = run(hf, {"name": "direct", "passage": True})
    assert all(o.value[0].passage is None and not o.value[0].turns for o in floor)
    assert all(o.value[0].passage == o.question.context for o in ceiling)


def test_consultancy_argues_each_side_once_per_question(hf):
    outcomes, _ = run(hf, {"name": "consultancy", "rounds": 2})
    for o in outcomes:
        sides = [t.assigned_side for t in o.value]
        assert sides == [0, 1]
        assert {t.episode for t in o.value} == {"correct", f"incorrect-{1 - o.question.correct}"}
        for transcript in o.value:
            assert [turn.round for turn in transcript.turns] == [0, 1]
            assert all(turn.side == transcript.assigned_side for turn in transcript.turns)
            # quotes-only arguments quote real story sentences, and never the same one twice
            quoted = [q.text for turn in transcript.turns for q in turn.quotes]
            assert all(q.verified and q.text in sentences(o.question.context) for turn in transcript.turns
                       for q in turn.quotes)
            assert len(set(quoted)) == len(quoted) == 2


@pytest.mark.parametrize("turns", ["simultaneous", "sequential"])
def test_debate_rounds_and_turn_order(hf, turns):
    outcomes, backend = run(hf, {"name": "debate", "rounds": 2, "turns": turns,
                                 "argument": {"format": "free", "word_limit": 8}})
    for o in outcomes:
        (transcript,) = o.value
        assert [(t.round, t.side) for t in transcript.turns] == [(0, 0), (0, 1), (1, 0), (1, 1)]
        g = o.graph.g
        first, second = transcript.turns[0].node, transcript.turns[1].node
        # sequential: the second debater saw the first's argument this round; simultaneous: it did not
        assert g.has_edge(first, second) == (turns == "sequential")
        # round 2 sees all of round 1
        assert g.has_edge(first, transcript.turns[2].node) and g.has_edge(second, transcript.turns[3].node)
    # simultaneous debaters of all questions are batched together
    if turns == "simultaneous":
        assert backend.batches == [8, 8]
    else:
        assert backend.batches == [4, 4, 4, 4]


@pytest.mark.parametrize("first", [1, "alternate", "both"])
def test_sequential_debate_opening_side(hf, first):
    from judges.view import ordered_turns
    from protocols.debate import opening_side

    outcomes, _ = run(hf, {"name": "debate", "rounds": 2, "turns": "sequential", "first": first,
                           "argument": {"format": "free", "word_limit": 8}}, n=8)
    openers = []
    for o in outcomes:
        expected = [0, 1] if first == "both" else [opening_side(o.question.id) if first == "alternate" else 1]
        assert [t.info["first_speaker"] for t in o.value] == expected
        assert len({t.episode for t in o.value}) == len(o.value)  # one judged episode per opening order
        for transcript, opener in zip(o.value, expected):
            assert [t.side for t in transcript.turns] == [opener, 1 - opener] * 2
            # the judge reads a sequential debate as spoken, in either presentation order
            assert transcript.sequential
            assert ordered_turns(transcript, [0, 1]) == ordered_turns(transcript, [1, 0]) == transcript.turns
            # the round's second speaker saw the opener's argument
            assert o.graph.g.has_edge(transcript.turns[0].node, transcript.turns[1].node)
        openers.append(expected[0])
    if first == "alternate":
        assert set(openers) == {0, 1}  # 8 question ids: both openings occur, fixed per id
        assert [opening_side(o.question.id) for o in outcomes] == openers


def test_first_speaker_metrics_on_known_judgments():
    from oversight.types import Judgment, Record, Transcript
    from protocols.debate import Debate, extra_metrics
    from protocols.strategies.quotes import Quotes

    def record(first_speakers, chosen):
        transcripts = [Transcript(protocol="debate", episode=f"first-{f}", info={"first_speaker": f})
                       for f in first_speakers]
        judgments = [Judgment(judge="likelihood", episode=f"first-{f}", chosen=c, p=[0.8, 0.2] if c == 0 else [0.2, 0.8])
                     for f, c in zip(first_speakers, chosen)]
        return Record(question_id="q", question="?", options=["a", "b"], correct_index=0, protocol="debate",
                      transcripts=transcripts, judgments=judgments)

    # the judge always picks option 0: it sides with the opener exactly when side 0 opened
    m = extra_metrics([record([0, 1], [0, 0]), record([0, 1], [0, 0])], Debate(turns="sequential", first="both", strategy=Quotes()))
    assert m["first_speaker_win_rate"] == 0.5 and m["first_speaker_p"] == pytest.approx(0.5)
    # the judge always picks the opener
    m = extra_metrics([record([0, 1], [0, 1])], Debate(turns="sequential", first="both", strategy=Quotes()))
    assert m["first_speaker_win_rate"] == 1.0 and m["first_speaker_p"] == pytest.approx(0.8)
    assert m["debates_judged"] == 2
    assert extra_metrics([record([0], [0])], Debate(turns="simultaneous", strategy=Quotes())) == {}


def test_free_arguments_mark_fabricated_quotes_unverified():
    story = "Alice lives in Paris. Bob lives in Berlin."
    quotes = extract("As the story says, <quote>Alice lives in Paris</quote> and <quote>Alice lives in Rome</quote>", story)
    assert [(q.text, q.verified) for q in quotes] == [("Alice lives in Paris", True), ("Alice lives in Rome", False)]
    assert verify("  alice   LIVES in “Paris”. ", story)
    assert normalise("Don't  stop!") == "dont stop"


def test_bad_protocol_values_name_the_key():
    with pytest.raises(ConfigError, match=r"protocol\.rounds: Input should be greater than or equal to 1"):
        build_protocol({"name": "debate", "rounds": 0})
    with pytest.raises(ConfigError, match=r"protocol\.turns"):
        build_protocol({"name": "debate", "turns": "whenever"})
    with pytest.raises(ConfigError, match=r"protocol\.first"):
        build_protocol({"name": "debate", "turns": "sequential", "first": 2})
    with pytest.raises(ConfigError, match=r"protocol\._target_='protocols\.nope\.Nope': cannot import module"):
        build({"_target_": "protocols.nope.Nope"}, "protocol", Protocol)
    with pytest.raises(ConfigError, match=r"protocol\.strategy\.word_limit: Input should be greater than or equal to 5"):
        build_protocol({"name": "debate", "argument": {"format": "free", "word_limit": 1}})
