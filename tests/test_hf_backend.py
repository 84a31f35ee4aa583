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
