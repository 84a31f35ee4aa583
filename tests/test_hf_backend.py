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
