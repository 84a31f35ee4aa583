"""Fast unit tests of protocols and strategies on the scripted test double (no model at all)."""

from __future__ import annotations

from oversight.backends.scripted import ScriptedBackend
from oversight.engine import Engine
from oversight.tasks.hidden_passage import generate as hidden_passage
from tests.helpers import build_judge, build_protocol


def run(protocol_cfg, backend, n=5):
    protocol = build_protocol(protocol_cfg)
    judge = build_judge({"name": "likelihood"})

    async def episode(q, ctx):
        transcripts = await protocol.run(q, ctx)
        return transcripts, [await judge.judge(q, t, ctx) for t in transcripts]

    return Engine({"default": backend}).run(hidden_passage(n=n, seed=3), episode)


def test_quotes_strategy_quotes_the_sentence_naming_its_side_and_batches_across_questions():
    backend = ScriptedBackend()  # test double: prefers candidates that appear in the prompt
    outcomes = run({"name": "debate"}, backend)
    for o in outcomes:
        (transcript,), (judgment,) = o.value
        for turn in transcript.turns:
            assert turn.label == "Debater" and turn.role == "debater"
            (quote,) = turn.quotes
            assert quote.verified and o.question.options[turn.side] in quote.text
        # with both sides' evidence the scripted judge is ambiguous, but never fails to answer
        assert judgment.p is not None and len(judgment.orders) == 2
    # every question's sentence readings went out together in one batch
    assert backend.batches[0] == sum(len(o.question.context.split(". ")) for o in outcomes)


def test_free_strategy_sends_its_prompt_and_verifies_the_quotes_it_wrote():
    backend = ScriptedBackend(replies=lambda call: "<quote>nobody said this</quote> trust me")
    outcomes = run({"name": "consultancy", "argument": {"format": "free", "word_limit": 10}}, backend)
    prompts = [c for c in backend.calls if c.kind == "generate"]
    assert len(prompts) == 2 * len(outcomes)
    assert all("Write at most 10 words" in c.messages[1]["content"] for c in prompts)
    for o in outcomes:
        transcripts, _ = o.value
        assert [t.assigned_side for t in transcripts] == [0, 1]
        assert all(not q.verified for t in transcripts for turn in t.turns for q in turn.quotes)
