"""A person in a role (judges/live.py): the `human` model answers a role's generate calls from a
durable store, on the scripted test double for the model roles (the person is a thread answering
the store, as oversight-play does; the real terminal is tests/test_play_terminal.py)."""

from __future__ import annotations

import threading
import time

import pytest

from judges.live import HumanBackend, TurnStore
from oversight.backends.scripted import ScriptedBackend
from oversight.cache import CallCache
from oversight.engine import Engine
from oversight.errors import ConfigError
from oversight.tasks.hidden_passage import generate as hidden_passage
from tests.helpers import build_judge, build_protocol

HUMAN_SIDE = {"sides": [
    {"_target_": "protocols.strategies.as_role.AsRole", "role": "human_debater",
     "inner": {"_target_": "protocols.strategies.free.Free", "word_limit": 40}},
    {"_target_": "protocols.strategies.quotes.Quotes"}]}
TYPED = "[bold]not bold[/bold] \\x1b[31m"


class Person(threading.Thread):
    """Test double for the person at oversight-play: answers every waiting ask of the store with
    one real sentence of the story shown, one made-up quote and some markup."""

    def __init__(self, path, stop_after: int | None = None):
        super().__init__(daemon=True)
        self.path, self.stop_after, self.answered, self.halt = path, stop_after, 0, threading.Event()

    def run(self):
        with TurnStore(self.path) as store:
            while not self.halt.is_set():
                for ask in store.pending():
                    if self.stop_after is not None and self.answered >= self.stop_after:
                        return
                    prompt = ask.call.messages[-1]["content"]
                    story = prompt.split("Story:\n", 1)[1].split("\n\n", 1)[0]
                    sentence = story.split(". ")[0].rstrip(".") + "."
                    store.answer(ask.key, f"<quote>{sentence}</quote> <quote>nobody wrote this</quote> {TYPED}", 1.0)
                    self.answered += 1
                time.sleep(0.02)


def engine(tmp_path, cache=None):
    human = HumanBackend({"name": "alice", "store": str(tmp_path / "turns.sqlite"), "poll_seconds": 0.02,
                          "backend": {"_target_": "judges.live.HumanBackend"}}, {})
    return Engine({"default": ScriptedBackend(), "human": human}, roles={"human_debater": "human"}, cache=cache)


def run(eng, n=2):
    protocol = build_protocol({"name": "debate", "rounds": 2, "interactive": True,
                               "argument": {"format": "by_side", "sides": HUMAN_SIDE["sides"]}})
    judge = build_judge({"name": "likelihood"})

    async def episode(q, ctx):
        transcripts = await protocol.run(q, ctx)
        return transcripts, [await judge.judge(q, t, ctx) for t in transcripts]

    return eng.run(hidden_passage(n=n, seed=3), episode)


def test_a_person_debates_a_model_their_quotes_verified_like_a_models(tmp_path):
    person = Person(tmp_path / "turns.sqlite")
    person.start()
    outcomes = run(engine(tmp_path))
    person.halt.set()
    assert person.answered == 4  # 2 questions x 2 rounds of side 0
    for o in outcomes:
        assert o.error is None
        (transcript,), (judgment,) = o.value
        human = [t for t in transcript.turns if t.side == 0]
        assert [t.role for t in human] == ["human_debater"] * 2 and all(t.label == "Debater" for t in human)
        for turn in human:
            assert turn.text.endswith(TYPED)  # exactly as typed, markup and all
            assert [q.verified for q in turn.quotes] == [True, False]
            assert o.graph.g.nodes[turn.node]["model"] == "human"
        # the model side kept quoting, the judge asked between the rounds and gave the verdict
        assert all(t.role == "debater" and t.quotes[0].verified for t in transcript.turns if t.side == 1)
        assert [t.round for t in transcript.turns if t.side is None] == [1]
        assert judgment.p is not None
        # the person's round-2 prompt showed the judge's question
        second = o.graph.g.nodes[human[1].node]["call"]["messages"][-1]["content"]
        assert "The judge asks: " in second


def test_answers_are_durable_and_a_rerun_asks_nobody(tmp_path):
    cache = CallCache(tmp_path / "calls.sqlite")
    person = Person(tmp_path / "turns.sqlite")
    person.start()
    first = run(engine(tmp_path, cache))
    person.halt.set()
    person.join(5)
    # no person now: every human call is answered from the cache, like a model's
    second = run(engine(tmp_path, CallCache(tmp_path / "calls.sqlite")))
    assert [o.value[0][0].model_dump() for o in second] == [o.value[0][0].model_dump() for o in first]
    # and without the call cache, from the store itself
    third = run(engine(tmp_path))
    assert [o.value[0][0].model_dump() for o in third] == [o.value[0][0].model_dump() for o in first]
    with TurnStore(tmp_path / "turns.sqlite") as store:
        assert not store.pending() and len(store.answered()) == 4


def test_a_person_answers_generate_calls_only_and_the_error_says_what_to_do(tmp_path):
    eng = engine(tmp_path)
    eng.roles["debater"] = "human"  # the quotes strategy scores sentences: not something a person does
    outcomes = run(eng, n=1)
    assert "a person answers generate calls only, not loglikelihood" in outcomes[0].error


def test_a_script_asks_a_person_and_blocks_until_answered(tmp_path):
    """The blocking path (Backend.run_sync, outside any engine): the calls wait in the store, the
    person answers them, the texts come back in order; a scoring call gets the error result."""
    from oversight.types import Call

    human = HumanBackend({"name": "alice", "store": str(tmp_path / "turns.sqlite"), "poll_seconds": 0.02}, {})
    person = Person(tmp_path / "turns.sqlite")
    person.start()
    try:
        story = "Story:\nAlice lives in Paris. Bob lives in Rome.\n\nWhere does Alice live?"
        calls = [Call(kind="generate", messages=[{"role": "user", "content": story + tag}]) for tag in ("", " (again)")]
        calls.append(Call(kind="loglikelihood", messages=[{"role": "user", "content": story}], candidates=(" Paris",)))
        results = human.run_sync(calls)
        assert [r.text.split("</quote>")[0] for r in results[:2]] == ["<quote>Alice lives in Paris."] * 2
        assert results[2].error and "generate calls only, not loglikelihood" in results[2].error
        assert human.generate(calls[:1])[0].text == results[0].text  # answered once, found again
        with TurnStore(tmp_path / "turns.sqlite") as store:
            assert len(store.answered()) == 2 and not store.pending()
    finally:
        person.halt.set()
        human.close()


def test_the_human_model_names_a_missing_store():
    with pytest.raises(ConfigError, match="store"):
        HumanBackend({"name": "alice"}, {})


def test_a_person_judges_live_asks_between_rounds_and_gives_the_verdict(tmp_path):
    """roles.judge=human with a generative judge: the person's question opens round 2 of a model
    consultancy, and their 'Answer: A' is the verdict."""
    path = tmp_path / "turns.sqlite"
    replies = {"ask": "Quote the sentence about the pet, please?", "verdict": "I think so. Answer: A"}
    seen: list[str] = []

    def person():
        with TurnStore(path) as store:
            while not done.is_set():
                for ask in store.pending():
                    prompt = ask.call.messages[-1]["content"]
                    seen.append(prompt)
                    store.answer(ask.key, replies["ask"] if "Ask the consultant" in prompt else replies["verdict"], 1.0)
                time.sleep(0.02)

    done = threading.Event()
    thread = threading.Thread(target=person, daemon=True)
    thread.start()
    eng = engine(tmp_path)
    eng.roles["judge"] = "human"
    protocol = build_protocol({"name": "consultancy", "rounds": 2, "interactive": True, "argument": {"format": "free"}})
    judge = build_judge({"name": "generative", "both_orders": False})

    async def episode(q, ctx):
        transcripts = await protocol.run(q, ctx)
        return transcripts, [await judge.judge(q, t, ctx) for t in transcripts]

    outcomes = eng.run(hidden_passage(n=1, seed=3), episode)
    done.set()
    transcripts, judgments = outcomes[0].value
    for t, j in zip(transcripts, judgments):
        (asked,) = [turn for turn in t.turns if turn.side is None]
        assert asked.text == replies["ask"] and asked.role == "judge"
        assert outcomes[0].graph.g.nodes[asked.node]["model"] == "human"
        # the consultant's second turn was asked the person's question
        (second,) = [turn for turn in t.turns if turn.side is not None and turn.round == 1]
        assert replies["ask"] in outcomes[0].graph.g.nodes[second.node]["call"]["messages"][-1]["content"]
        assert j.chosen == j.orders[0].order[0] and not j.orders[0].parse_failed  # 'A' as the person saw it
    verdicts = [p for p in seen if "Answer: X" in p]
    assert len(verdicts) == 2 and all(f"Judge: {replies['ask']}" in p for p in verdicts)
