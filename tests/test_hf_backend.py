"""The hf backend against straightforward reference computations on a tiny real model."""

from __future__ import annotations

import pytest
import torch

from oversight.backends.hf import HFBackend
from oversight.types import Call, SamplingParams


@pytest.fixture(scope="module")
def hf(tiny_model_cfg):
    return HFBackend(tiny_model_cfg, {"name": "hf", "batch_size": 4})


def _reference_loglikelihood(backend, call):
    context = backend._encode(backend.render(call))
    scores = []
    for cand in call.candidates:
        cont = backend._encode(cand)
        with torch.no_grad():
            logprobs = torch.log_softmax(backend.model(torch.tensor([context + cont])).logits[0].float(), -1)
        scores.append(float(sum(logprobs[len(context) - 1 + j, cont[j]] for j in range(len(cont)))))
    return scores


def test_loglikelihood_matches_unbatched_full_sequence_scoring(hf):
    calls = [
        Call(kind="loglikelihood", messages=({"role": "user", "content": "Alice lives in Nairobi. Where?" * k},),
             prefix="Alice lives in", candidates=(" Nairobi", " Quito", " a much longer continuation"))
        for k in (1, 2, 3, 5, 8)  # different lengths: exercises padding across batches
    ]
    for call, result in zip(calls, hf.loglikelihood(calls)):
        assert result.logprobs == pytest.approx(_reference_loglikelihood(hf, call), abs=1e-3)


def test_next_token_matches_first_token_of_loglikelihood(hf):
    call = Call(kind="next_token", messages=({"role": "user", "content": "Pick A or B"},), prefix="Answer:",
                candidates=(" A", " B"))
    single = Call(kind="loglikelihood", messages=call.messages, prefix="Answer:", candidates=(" A", " B"))
    assert hf.next_token([call])[0].logprobs == pytest.approx(hf.loglikelihood([single])[0].logprobs, abs=1e-4)


def test_batched_generation_equals_one_at_a_time(hf):
    calls = [Call(kind="generate", messages=({"role": "user", "content": "x " * k},),
                  params=SamplingParams(max_new_tokens=6)) for k in (1, 4, 9, 2, 7)]
    batched = [r.text for r in hf.generate(calls)]
    single = [hf.generate([c])[0].text for c in calls]
    assert batched == single


def test_seeded_sampling_does_not_depend_on_batch_company(hf):
    target = Call(kind="generate", messages=({"role": "user", "content": "tell me"},),
                  params=SamplingParams(max_new_tokens=8, temperature=1.0, seed=7))
    others = [Call(kind="generate", messages=({"role": "user", "content": f"other {i}"},),
                   params=SamplingParams(max_new_tokens=8, temperature=1.0, seed=i)) for i in range(3)]
    alone = hf.generate([target])[0].text
    in_company = hf.generate(others + [target])[-1].text
    other_seed = hf.generate([target.model_copy(update={"params": SamplingParams(
        max_new_tokens=8, temperature=1.0, seed=8)})])[0].text
    assert alone == in_company
    assert alone != other_seed


def test_token_counts_and_stop_strings(hf):
    call = Call(kind="generate", messages=({"role": "user", "content": "hello"},),
                params=SamplingParams(max_new_tokens=5))
    result = hf.generate([call])[0]
    assert 0 < result.output_tokens <= 5 and result.prompt_tokens > 5
    if result.text:
        cut = result.text[len(result.text) // 2 :] or result.text
        stopped = hf.generate([call.model_copy(update={"params": SamplingParams(max_new_tokens=5, stop=(cut,))})])[0]
        assert cut not in stopped.text


# ---- prefix sharing: prompts with a common prefix compute it once per batch ---------------------

STORIES = ["Alice lives in Nairobi. Bob lives in Quito. Carol keeps a parrot. The bakery opened late. " * 3,
           "Dmitri lives in Oslo. Erin keeps a ferret. Farid lives in Lima. The river froze early. " * 3]


def _story_calls(kind, **extra):
    return [Call(kind=kind, messages=({"role": "user", "content": f"Story: {story} Question: {q}"},), **extra)
            for story in STORIES for q in ("Where does the first person live?", "Who keeps a pet?", "What happened?")]


def test_prefix_groups_keep_story_pairs_apart_from_a_short_common_preamble():
    from oversight.backends.hf import _prefix_groups

    preamble, story_a, story_b = [1] * 20, [2] * 60, [3] * 60
    rows = [preamble + story_a + [7, 8], preamble + story_a + [9], preamble + story_b + [7], preamble + story_b + [9, 9],
            [5] * 30]
    groups = sorted(_prefix_groups(rows, 16), key=lambda g: g[1])
    assert groups == [(80, [0, 1]), (80, [2, 3]), (29, [4])]  # not merged down to the 20-token preamble
    # a shared prefix always leaves each row a token of its own
    assert _prefix_groups([[1] * 30, [1] * 30], 16) == [(29, [0, 1])]


def test_prefix_shared_scoring_matches_full_sequence_reference(tiny_model_cfg):
    from oversight.backends.hf import _prefix_groups

    # prefix_sharing=4 also shares the "user: Story:" preamble across the two stories' groups
    shared = HFBackend(tiny_model_cfg, {"name": "hf", "batch_size": 8, "prefix_sharing": 4})
    calls = _story_calls("loglikelihood", prefix="The answer is", candidates=(" Nairobi", " a long continuation here"))
    rows = [shared._encode(shared.render(c)) for c in calls]
    assert sorted(len(m) for _, m in _prefix_groups(rows, 4)) == [3, 3]  # sharing really happens here
    for call, result in zip(calls, shared.loglikelihood(calls)):
        assert result.logprobs == pytest.approx(_reference_loglikelihood(shared, call), abs=1e-3)
    nt = [c.model_copy(update={"kind": "next_token", "candidates": (" A", " B")}) for c in calls]
    off = HFBackend(tiny_model_cfg, {"name": "hf", "batch_size": 8, "prefix_sharing": 0})
    for a, b in zip(shared.next_token(nt), off.next_token(nt)):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_prefix_shared_generation_equals_unshared_and_one_at_a_time(tiny_model_cfg):
    shared = HFBackend(tiny_model_cfg, {"name": "hf", "batch_size": 8, "prefix_sharing": 4})
    off = HFBackend(tiny_model_cfg, {"name": "hf", "batch_size": 8, "prefix_sharing": 0})
    greedy = _story_calls("generate", params=SamplingParams(max_new_tokens=8))
    sampled = _story_calls("generate", params=SamplingParams(max_new_tokens=8, temperature=1.0, seed=3))
    for calls in (greedy, sampled):
        together = [(r.text, r.output_tokens) for r in shared.generate(calls)]
        assert together == [(r.text, r.output_tokens) for r in off.generate(calls)]
        assert together == [(shared.generate([c])[0].text, shared.generate([c])[0].output_tokens) for c in calls]


def test_preallocated_kv_cache_changes_no_output(tiny_model_cfg):
    from oversight.app.bench import transformers_generate

    on = HFBackend(tiny_model_cfg, {"name": "hf", "batch_size": 8, "prefix_sharing": 4})
    off = HFBackend(tiny_model_cfg, {"name": "hf", "batch_size": 8, "prefix_sharing": 4, "preallocate_kv": False})
    greedy = _story_calls("generate", params=SamplingParams(max_new_tokens=12))
    sampled = _story_calls("generate", params=SamplingParams(max_new_tokens=12, temperature=1.0, seed=5))
    for calls in (greedy, sampled):
        assert [(r.text, r.output_tokens) for r in on.generate(calls)] == [
            (r.text, r.output_tokens) for r in off.generate(calls)]
    # and greedy decoding is what transformers' own generate() writes for the same prompts
    _, _, texts = transformers_generate(on, greedy, batch_size=8)
    assert texts == [r.text for r in on.generate(greedy)]


def test_prefix_sharing_rejects_negative_values(tiny_model_cfg):
    from oversight.errors import ConfigError

    with pytest.raises(ConfigError, match="backend.prefix_sharing"):
        HFBackend(tiny_model_cfg, {"name": "hf", "prefix_sharing": -1})


def test_cache_identity_follows_the_weights_not_their_location(tiny_model_dir, tmp_path):
    import shutil

    from oversight.models import weights_fingerprint

    here, there = tmp_path / "a" / "tiny", tmp_path / "b" / "elsewhere"
    shutil.copytree(tiny_model_dir, here)
    shutil.copytree(tiny_model_dir, there)
    cfg = {"name": "tiny-llama", "dtype": "float32"}
    identity = lambda path, **kw: HFBackend({**cfg, "path": str(path), **kw}, {"name": "hf"}).identity  # noqa: E731
    assert identity(here) == identity(there) == identity(tiny_model_dir)  # same weights, any place
    assert identity(here, dtype="bfloat16") != identity(here)
    weights = there / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF  # other weights: one byte of the last tensor
    weights.write_bytes(bytes(data))
    assert weights_fingerprint(str(there)) != weights_fingerprint(str(here))
    assert weights_fingerprint("org/model-on-the-hub") == "org/model-on-the-hub"


# ---- context length: a call that does not fit the model's context fails, naming both numbers ------


@pytest.fixture(scope="module")
def short_model_cfg(tiny_model_dir, tmp_path_factory):
    """The tiny model with a 64-token context (max_position_embeddings in its config.json)."""
    import json
    import shutil

    target = tmp_path_factory.mktemp("short") / "tiny-64"
    shutil.copytree(tiny_model_dir, target)
    config = json.loads((target / "config.json").read_text())
    config["max_position_embeddings"] = 64
    (target / "config.json").write_text(json.dumps(config))
    return {"name": "tiny-64", "path": str(target), "dtype": "float32"}


def _sized(backend, limit_left: int, **call):
    """A call and the token count of its rendered prompt; `limit_left` words of filler."""
    c = Call(messages=({"role": "user", "content": "word " * limit_left},), **call)
    return c, len(backend._encode(backend.render(c)))


def test_calls_over_the_context_fail_with_token_count_and_limit(short_model_cfg):
    short = HFBackend(short_model_cfg, {"name": "hf", "batch_size": 8})
    assert short.max_context == 64
    probe, n = _sized(short, 5, kind="generate")
    fits = probe.model_copy(update={"params": SamplingParams(max_new_tokens=64 - n)})
    over = probe.model_copy(update={"params": SamplingParams(max_new_tokens=65 - n)})
    long_prompt, m = _sized(short, 80, kind="generate", params=SamplingParams(max_new_tokens=4))
    assert m > 64
    ok, failed, failed_long = short.generate([fits, over, long_prompt])
    assert ok.ok and ok.prompt_tokens == n and ok.text == short.generate([fits])[0].text  # company changes nothing
    for result, prompt, added in ((failed, n, 65 - n), (failed_long, m, 4)):
        assert not result.ok and result.text is None
        assert f"{prompt} prompt tokens + {added} max_new_tokens = {prompt + added} tokens" in result.error
        assert "above the limit of 64" in result.error and "max_position_embeddings" in result.error

    scored, k = _sized(short, 5, kind="loglikelihood", prefix="Answer:", candidates=(" A", " B"))
    cont = max(len(short._encode(c)) for c in scored.candidates)
    pad = 64 - k - cont  # words that bring the sequence to exactly the limit (a word is a token here)
    edge, e = _sized(short, 5 + pad, kind="loglikelihood", prefix="Answer:", candidates=(" A", " B"))
    beyond, b = _sized(short, 6 + pad, kind="loglikelihood", prefix="Answer:", candidates=(" A", " B"))
    assert e + cont == 64 and b + cont == 65
    at_edge, past = short.loglikelihood([edge, beyond])
    assert at_edge.ok and len(at_edge.logprobs) == 2
    assert not past.ok and f"{b} prompt tokens + {cont} continuation tokens" in past.error and "limit of 64" in past.error
    nt = [c.model_copy(update={"kind": "next_token"}) for c in (edge, beyond)]
    assert [r.ok for r in short.next_token(nt)] == [e + 1 <= 64, b + 1 <= 64]


def test_engine_records_the_too_long_call_in_its_question(short_model_cfg):
    from oversight.engine import Engine
    from oversight.types import Question

    short = HFBackend(short_model_cfg, {"name": "hf", "batch_size": 8})
    questions = [Question(id="short-q", question="Where?", options=[" here", " there"], correct=0),
                 Question(id="long-q", question="Where? " * 60, options=[" here", " there"], correct=0)]

    async def episode(question, ctx):
        scored = await ctx.loglikelihood("judge", ({"role": "user", "content": question.question},), question.options)
        return scored.logprobs

    done = {e.question.id: e for e in Engine(backends={"default": short}).run(questions, episode)}
    assert done["short-q"].error is None and len(done["short-q"].value) == 2
    failed = done["long-q"]
    assert "prompt too long" in failed.error and "above the limit of 64" in failed.error
    (node,) = [d for _, d in failed.graph.nodes("call")]
    assert node["output"]["logprobs"] is None
    assert "above the limit of 64" in node["output"]["error"] and failed.graph.question_id == "long-q"


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_rows_ending_at_different_steps_change_no_other_row(tiny_model_cfg, temperature):
    """A row that ends leaves the batch (the KV cache is reordered without it): no other row may notice."""
    backend = HFBackend(tiny_model_cfg, {"name": "hf", "batch_size": 8})
    prompts = [backend._encode(f"story {k} " * (1 + k % 3)) for k in range(8)]
    params = [SamplingParams(max_new_tokens=12, temperature=temperature, seed=k) for k in range(8)]
    free = [backend._decode([p], [q])[0] for p, q in zip(prompts, params)]
    # the token rows 0, 2, 4, 6 emit at steps 0, 2, 4, 6 now ends a row (the tiny random model repeats one
    # token when greedy, so there rows end at step 0 or run to the limit; sampled, they end all over)
    backend.eos_ids = {free[k][k] for k in range(0, 8, 2)}
    expected = []
    for row in free:
        ends = [j for j, t in enumerate(row) if t in backend.eos_ids]
        expected.append(row[: ends[0]] if ends else row)
    assert len({len(e) for e in expected}) >= 2  # the rows really do end at different steps
    assert sum(len(e) < 12 for e in expected) >= 4  # several rows leave the batch, at different steps
    assert backend._decode(prompts, params) == expected
    assert [backend._decode([p], [q])[0] for p, q in zip(prompts, params)] == expected
