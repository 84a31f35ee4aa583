"""The vllm backend.

- Without vLLM (CPU CI): the error for a missing vllm/GPU is checked, and the backend's glue
  (rendering, token-id prompts, per-request SamplingParams, prompt-logprob sums, engine-argument
  checks) runs against a stand-in for the `vllm` module that answers with the hf backend's
  weights, shaped like vLLM's documented API (LLM.generate over {"prompt_token_ids"} prompts,
  RequestOutput.outputs[0].text/token_ids, prompt_logprobs as [None, {token_id: Logprob}, ...]).
- With vLLM importable and a CUDA GPU: the real engine on the tiny test model, compared with the
  hf backend. Skipped otherwise, with the reason.
"""

from __future__ import annotations

import dataclasses
import sys
import types

import pytest

from oversight.backends.hf import HFBackend
from oversight.engine import Engine
from oversight.errors import ConfigError
from oversight.types import Call, Question, SamplingParams


def _real_vllm_skip_reason() -> str | None:
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means: cannot test here
        return f"vllm is not importable ({type(exc).__name__}: {exc}); install the [vllm] extra on a CUDA machine"
    import torch

    if not torch.cuda.is_available():
        return "vllm is installed but no CUDA GPU is available"
    return None


REAL_SKIP = _real_vllm_skip_reason()


def _msgs(text: str):
    return ({"role": "system", "content": "You judge debates."}, {"role": "user", "content": text})


def _calls() -> list[Call]:
    return [
        Call(kind="generate", messages=_msgs("Who wrote Hamlet?"), params=SamplingParams(max_new_tokens=6)),
        Call(kind="generate", messages=_msgs("Who wrote Hamlet?"), prefix="It was",
             params=SamplingParams(max_new_tokens=6)),
        Call(kind="next_token", messages=_msgs("A or B?"), prefix="Answer:", candidates=(" A", " B")),
        Call(kind="loglikelihood", messages=_msgs("Where does Alice live?"), prefix="Alice lives in",
             candidates=(" Paris", " Berlin, Germany", " a flat above the bakery")),
    ]


# ---- without vLLM ---------------------------------------------------------------------------


@pytest.mark.skipif(REAL_SKIP is None, reason="vllm and a GPU are present: the missing-vllm error cannot occur")
def test_missing_vllm_or_gpu_is_a_clear_config_error(tiny_model_cfg):
    from oversight.backends.vllm import VLLMBackend

    with pytest.raises(ConfigError, match=r"pip install -e '\.\[vllm\]'|needs a CUDA GPU"):
        VLLMBackend(tiny_model_cfg, {"name": "vllm"})


@dataclasses.dataclass
class _EngineArgs:  # the stand-in's EngineArgs: the fields our backend passes, plus one more
    model: str = ""
    tokenizer: str = ""
    dtype: str = "auto"
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    enable_prefix_caching: bool = False
    seed: int = 0
    max_model_len: int | None = None
    enforce_eager: bool = False
    block_size: int = 16


@pytest.fixture
def fake_vllm(monkeypatch, tiny_model_cfg):
    """A `vllm` module whose LLM computes with the hf backend's weights (see module doc)."""
    import torch

    hf = HFBackend(tiny_model_cfg, {"device": "cpu"})
    created: list[dict] = []

    class SamplingParams:
        def __init__(self, n=1, temperature=1.0, top_p=1.0, max_tokens=16, seed=None, stop=None,
                     prompt_logprobs=None, logprobs=None):
            self.__dict__.update(locals())
            del self.__dict__["self"]

    class Logprob:
        def __init__(self, logprob):
            self.logprob = logprob

    class LLM:
        def __init__(self, **kwargs):
            created.append(kwargs)

        def get_tokenizer(self):
            return hf.tokenizer

        def generate(self, prompts, sampling_params=None, use_tqdm=True):
            params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
            return [self._one(p["prompt_token_ids"], sp) for p, sp in zip(prompts, params)]

        def _one(self, ids, sp):
            with torch.inference_mode():
                logits = hf.model(torch.tensor([ids])).logits[0].float()
                logprobs = torch.log_softmax(logits, -1)
                prompt_logprobs = None
                if sp.prompt_logprobs is not None:
                    prompt_logprobs = [None] + [
                        {ids[t]: Logprob(float(logprobs[t - 1, ids[t]]))} for t in range(1, len(ids))
                    ]
                out = hf.model.generate(torch.tensor([ids]), max_new_tokens=sp.max_tokens, do_sample=False,
                                        pad_token_id=hf.tokenizer.pad_token_id)[0, len(ids):].tolist()
            if hf.tokenizer.eos_token_id in out:
                out = out[: out.index(hf.tokenizer.eos_token_id)]
            completion = types.SimpleNamespace(text=hf.tokenizer.decode(out, skip_special_tokens=True), token_ids=out)
            return types.SimpleNamespace(outputs=[completion], prompt_logprobs=prompt_logprobs)

    module = types.ModuleType("vllm")
    module.__version__ = "0.0-standin"
    module.LLM, module.SamplingParams = LLM, SamplingParams
    engine = types.ModuleType("vllm.engine")
    arg_utils = types.ModuleType("vllm.engine.arg_utils")
    arg_utils.EngineArgs = _EngineArgs
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.engine", engine)
    monkeypatch.setitem(sys.modules, "vllm.engine.arg_utils", arg_utils)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return types.SimpleNamespace(hf=hf, created=created)


def test_glue_against_standin(fake_vllm, tiny_model_cfg):
    from oversight.backends.vllm import VLLMBackend

    backend = VLLMBackend(tiny_model_cfg, {
        "name": "vllm", "tensor_parallel_size": 1, "gpu_memory_utilization": 0.5, "max_model_len": 2048,
        "engine_kwargs": {"block_size": 32},
    })
    (args,) = fake_vllm.created
    assert args["model"] == tiny_model_cfg["path"] and args["tokenizer"] == tiny_model_cfg["path"]
    assert args["enable_prefix_caching"] is True and args["max_model_len"] == 2048 and args["block_size"] == 32
    assert args["dtype"] == "float32" and "distributed_executor_backend" not in args
    calls = _calls()
    hf = fake_vllm.hf
    assert [backend.render(c) for c in calls] == [hf.render(c) for c in calls]
    got, want = backend.run_sync(calls), hf.run_sync(calls)
    for call, g, w in zip(calls, got, want):
        assert g.ok
        if call.kind == "generate":
            assert g.text == w.text and g.prompt_tokens == w.prompt_tokens
        else:
            assert g.logprobs == pytest.approx(w.logprobs, abs=1e-4)
    assert backend.identity.startswith("vllm:tiny-llama:")
    # over max_model_len: failed before reaching the engine, naming the numbers; the rest answered
    too_long = [Call(kind=kind, messages=_msgs("word " * 2100), candidates=(" a",) if kind != "generate" else (),
                     params=SamplingParams(max_new_tokens=4)) for kind in ("generate", "next_token", "loglikelihood")]
    results = backend.run_sync([*too_long, calls[0]])
    assert all(not r.ok and "above the limit of 2048 (vLLM's max_model_len)" in r.error for r in results[:3])
    assert results[3].ok and results[3].text == got[0].text
    with pytest.raises(ConfigError, match=r"engine_kwargs.*\['no_such_arg'\]"):
        VLLMBackend(tiny_model_cfg, {"engine_kwargs": {"no_such_arg": 1}})
    with pytest.raises(ConfigError, match="backend.gguf"):
        VLLMBackend(tiny_model_cfg, {"gguf": "sideways"})
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        VLLMBackend(tiny_model_cfg, {"gpu_memory_utilization": 1.5})


# ---- with vLLM and a GPU --------------------------------------------------------------------

real = pytest.mark.skipif(REAL_SKIP is not None, reason=REAL_SKIP or "")


@pytest.fixture(scope="module")
def vllm_backend(tiny_model_cfg):
    from oversight.backends.vllm import VLLMBackend

    backend = VLLMBackend(tiny_model_cfg, {
        "name": "vllm", "gpu_memory_utilization": 0.3, "max_model_len": 1024, "enforce_eager": True,
    })
    yield backend
    backend.close()


@real
def test_real_vllm_matches_hf(vllm_backend, tiny_model_cfg):
    hf = HFBackend(tiny_model_cfg, {"device": "cuda"})
    calls = _calls()
    got, want = vllm_backend.run_sync(calls), hf.run_sync(calls)
    for call, g, w in zip(calls, got, want):
        assert g.ok
        if call.kind == "generate":
            assert g.prompt_tokens == w.prompt_tokens and g.output_tokens > 0
        else:
            assert g.logprobs == pytest.approx(w.logprobs, abs=2e-2)


@real
def test_real_vllm_seeds_and_engine(vllm_backend):
    sampled = [Call(kind="generate", messages=_msgs("Argue."), params=SamplingParams(
        max_new_tokens=12, temperature=1.0, seed=s)) for s in (1, 1, 2)]
    a, b, c = vllm_backend.run_sync(sampled)
    assert a.text == b.text and a.text != c.text
    questions = [Question(id=f"q{i}", question=f"Where does person {i} live?", options=[f" city {i}", " town"],
                          correct=0) for i in range(64)]

    async def episode(question, ctx):
        said = await ctx.generate("debater", _msgs(question.question), params=SamplingParams(max_new_tokens=8))
        scores = await ctx.loglikelihood("judge", _msgs(said.text), question.options, deps=[said.node])
        return scores.logprobs

    engine = Engine(backends={"default": vllm_backend})
    episodes = engine.run(questions, episode)
    assert all(e.error is None and len(e.value) == 2 for e in episodes)
    assert engine.stats.batches == 2  # 64 generations in one batch, 64 scorings in another
