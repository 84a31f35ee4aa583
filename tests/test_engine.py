"""Engine: cross-question batching, the persistent call cache, failures, graph data flow."""

from __future__ import annotations


import pytest

from oversight.backends.hf import HFBackend
from oversight.cache import CallCache
from oversight.engine import Engine
from oversight.graph import CallGraph, draw
from oversight.tasks.hidden_passage import generate as hidden_passage
from oversight.types import SamplingParams
from tests.helpers import CountingBackend, FailingBackend


@pytest.fixture(scope="module")
def hf(tiny_model_cfg):
    return HFBackend(tiny_model_cfg, {"name": "hf", "batch_size": 64})


async def two_step(question, ctx):
    """A two-node chain per question: the second call's prompt contains the first's output."""
    first = await ctx.generate("a", [{"role": "user", "content": f"{question.id}: {question.question}"}],
                               params=SamplingParams(max_new_tokens=4))
    second = await ctx.loglikelihood("b", [{"role": "user", "content": question.question + first.text}],
                                     list(question.options), deps=[first.node])
    return second.logprobs


def test_calls_from_all_questions_are_batched_together(hf):
    backend = CountingBackend(hf)
    engine = Engine({"default": backend})
    outcomes = engine.run(hidden_passage(n=12), two_step)
    # 12 questions x 2 steps: one batch per step, not one per call
    assert backend.batches == [12, 12]
    assert all(o.error is None and len(o.value) == 2 for o in outcomes)
    assert engine.stats.calls == 24 and engine.stats.batches == 2


def test_graph_records_nodes_edges_and_io(hf, tmp_path):
    engine = Engine({"default": hf})
    outcome = engine.run(hidden_passage(n=1), two_step)[0]
    g = outcome.graph.g
    (first, a), (second, b) = outcome.graph.nodes("call")
    assert list(g.edges) == [(first, second)]
    assert a["role"] == "a" and b["role"] == "b"
    assert a["output"]["text"] in b["call"]["messages"][0]["content"]
    restored = CallGraph.from_json(outcome.graph.to_json())
    assert set(restored.nodes) == {first, second}
    assert draw(outcome.graph.to_json(), tmp_path / "g.png").stat().st_size > 1000


def test_cache_makes_a_rerun_free_and_identical(hf, tmp_path):
    questions = hidden_passage(n=8)
    first = Engine({"default": hf}, cache=CallCache(tmp_path / "c.sqlite"))
    a = first.run(questions, two_step)
    backend = CountingBackend(hf)
    second = Engine({"default": backend}, cache=CallCache(tmp_path / "c.sqlite"))
    b = second.run(questions, two_step)
    assert backend.batches == [] and second.stats.calls == 0 and second.stats.cache_hits == 16
    assert [o.value for o in a] == [o.value for o in b]


def test_cache_key_covers_sampling_params_and_model(hf, tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")
    questions = hidden_passage(n=2)

    async def sample(question, ctx, seed):
        out = await ctx.generate("a", [{"role": "user", "content": "hi"}],
                                 params=SamplingParams(max_new_tokens=3, temperature=1.0, seed=seed))
        return out.text

    e1 = Engine({"default": hf}, cache=cache)
    e1.run(questions[:1], lambda q, c: sample(q, c, 1))
    e2 = Engine({"default": hf}, cache=cache)
    e2.run(questions[:1], lambda q, c: sample(q, c, 2))
    assert e2.stats.calls == 1 and e2.stats.cache_hits == 0  # new seed, new call


def test_identical_calls_in_one_batch_are_answered_once(hf):
    backend = CountingBackend(hf)
    engine = Engine({"default": backend})

    async def same(question, ctx):
        out = await ctx.loglikelihood("j", [{"role": "user", "content": "same prompt"}], [" a", " b"])
        return out.logprobs

    values = engine.run(hidden_passage(n=5), same)
    assert backend.batches == [1] and engine.stats.deduplicated == 4
    assert len({tuple(o.value) for o in values}) == 1


def test_a_failed_call_fails_its_episode_only_and_is_never_cached(hf, tmp_path):
    questions = hidden_passage(n=6)
    marker = questions[2].id
    cache = CallCache(tmp_path / "c.sqlite")
    engine = Engine({"default": FailingBackend(hf, marker)}, cache=cache)
    outcomes = engine.run(questions, two_step)
    failed = [o for o in outcomes if o.error]
    assert [o.question.id for o in failed] == [questions[2].id]
    assert "injected failure" in failed[0].error
    node = failed[0].graph.nodes("call")[0][1]
    assert node["output"]["error"] == "injected failure" and node["output"]["text"] is None
    assert engine.stats.failed == 1
    # the rerun retries the failed call (it was not cached) and answers it
    retry = Engine({"default": hf}, cache=cache)
    again = retry.run(questions, two_step)
    assert all(o.error is None for o in again) and retry.stats.calls == 2


def test_unknown_role_binding_is_a_config_error(hf):
    with pytest.raises(ValueError, match="roles.judge='strong' is not a configured model"):
        Engine({"default": hf}, roles={"judge": "strong"})
