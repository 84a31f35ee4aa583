"""The openai backend against a real OpenAI-compatible server on loopback (oversight-serve serving
the tiny test model), compared call for call with the hf backend on the same weights."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import httpx
import pytest

from oversight.app.serve import FaultPlan, OversightServer
from oversight.backends.hf import HFBackend
from oversight.backends.openai import OpenAIBackend, match_top_logprobs, public_url
from oversight.engine import CallFailed, Engine
from oversight.errors import ConfigError
from oversight.types import Call, Question, SamplingParams

SERVED = "tiny-llama"


@pytest.fixture(scope="module")
def hf(tiny_model_cfg) -> HFBackend:
    return HFBackend(tiny_model_cfg, {"device": "cpu", "batch_size": 32})


@pytest.fixture(scope="module")
def server(hf):
    with OversightServer(hf, SERVED) as srv:
        yield srv


def client(url: str, **overrides) -> OpenAIBackend:
    cfg = {"base_url": url, "timeout_s": 20, "backoff_base_s": 0.01, "backoff_max_s": 0.05, **overrides}
    return OpenAIBackend({"name": SERVED}, cfg)


def _msgs(text: str) -> tuple[dict[str, str], ...]:
    return ({"role": "system", "content": "You judge debates."}, {"role": "user", "content": text})


def sample_calls() -> list[Call]:
    greedy = SamplingParams(max_new_tokens=8)
    return [
        Call(kind="generate", messages=_msgs("Who wrote Hamlet?"), params=greedy),
        Call(kind="generate", messages=_msgs("Who wrote Hamlet?"), prefix="The answer is", params=greedy),
        *[
            Call(kind="generate", messages=_msgs(f"Argue for option {k}."),
                 params=SamplingParams(max_new_tokens=8, temperature=0.9, top_p=0.95, seed=seed))
            for k, seed in (("A", 1), ("A", 2), ("B", 1))
        ],
        Call(kind="generate", messages=_msgs("List three cities."),
             params=SamplingParams(max_new_tokens=10, temperature=1.0, seed=5, stop=("e",))),
        Call(kind="next_token", messages=_msgs("A or B?"), prefix="Answer:", candidates=(" A", " B", " yes")),
        Call(kind="next_token", messages=_msgs("Is the sky blue?"), candidates=("Yes", "No")),
        Call(kind="loglikelihood", messages=_msgs("Where does Alice live?"), prefix="Alice lives in",
             candidates=(" Paris", " Berlin, Germany", " the small flat above the bakery")),
        Call(kind="loglikelihood", messages=_msgs("Pick one."), candidates=("A", "B")),
    ]


def test_agrees_with_hf_backend(hf, server):
    calls = sample_calls()
    expected = hf.run_sync(calls)
    got = client(server.url).run_sync(calls)
    assert len(got) == len(calls)
    for call, want, have in zip(calls, expected, got):
        assert have.ok, have.error
        if call.kind == "generate":
            assert have.text == want.text
            assert have.prompt_tokens == want.prompt_tokens
        else:
            assert have.logprobs == pytest.approx(want.logprobs, abs=1e-3)
            assert all(lp < 0 for lp in have.logprobs)
    # the sampled calls really differ by seed, so the seed reached the server
    texts = [r.text for r in got[2:5]]
    assert texts[0] != texts[1]
    assert "e" not in got[5].text
    unstopped = calls[5].model_copy(update={"params": calls[5].params.model_copy(update={"stop": ()})})
    assert "e" in hf.run_sync([unstopped])[0].text, "the stop string should have cut this text"


def test_top_logprobs_next_token(hf, server):
    """The fallback for servers without /tokenize: read candidates off the top-20 list."""
    import torch

    call = Call(kind="next_token", messages=_msgs("A or B?"), prefix="Answer:", candidates=("x",))
    ids = hf._encode(hf.render(call))
    with torch.inference_mode():
        logits = hf.model(torch.tensor([ids])).logits[0, -1].float()
    logprobs = torch.log_softmax(logits, -1)
    order = torch.argsort(logprobs, descending=True).tolist()
    top_texts = [hf.tokenizer.decode([t]) for t in order[:3]]
    outside = next(t for t in order[200:] if hf.tokenizer.decode([t]).strip().isalpha())
    outside_text = hf.tokenizer.decode([outside])
    call = Call(kind="next_token", messages=call.messages, prefix=call.prefix, candidates=(*top_texts, outside_text))
    (result,) = client(server.url, next_token_method="top_logprobs").run_sync([call])
    assert result.ok, result.error
    assert result.logprobs[:3] == pytest.approx([float(logprobs[t]) for t in order[:3]], abs=1e-3)
    # not in the top 20: an upper bound, below the 20th and above the true value
    assert float(logprobs[outside]) <= result.logprobs[3] <= float(logprobs[order[19]]) + 1e-4
    exact = client(server.url).run_sync([call])[0]
    assert exact.logprobs[3] == pytest.approx(float(logprobs[outside]), abs=1e-3)
    assert client(server.url, next_token_method="top_logprobs").identity != client(server.url).identity


def test_match_top_logprobs_rules():
    top = [(" A", math.log(0.5)), (" B", math.log(0.3)), (" ", math.log(0.1)), ("Par", math.log(0.05))]
    assert match_top_logprobs(" A", top) == pytest.approx(math.log(0.5))
    assert match_top_logprobs("Paris", top) == pytest.approx(math.log(0.05))  # longest listed prefix
    assert match_top_logprobs(" C", top) == pytest.approx(math.log(0.05))  # unlisted: min(p_20, rest)
    assert match_top_logprobs(" C", top[:2]) == pytest.approx(math.log(0.2))


def _episode_factory():
    async def episode(question: Question, ctx):
        seed = int(question.id[1:]) % 4  # few distinct seeds: the hf backend batches equal params together
        params = SamplingParams(max_new_tokens=6, temperature=0.8, seed=seed)
        said = await ctx.generate("debater", _msgs(question.question), params=params)
        judge_msgs = _msgs(f"{question.question}\nDebater: {said.text}\nWhich option is right?")
        letters = await ctx.next_token("judge", judge_msgs, [" A", " B", " C"], prefix="Answer:",
                                       deps=[said.node])
        options = await ctx.loglikelihood("judge", judge_msgs, question.options, prefix="The answer is",
                                          deps=[said.node])
        return said.text, letters.logprobs, options.logprobs

    return episode


def _questions(n: int) -> list[Question]:
    return [
        Question(id=f"q{i}", question=f"Where does person {i} live?", options=[f" city {i}", f" town {i % 7}"],
                 correct=i % 2)
        for i in range(n)
    ]


def test_fault_injection_through_engine(hf, server):
    """30% HTTP errors (429/500/503), some hangs past the client timeout and dropped connections:
    every call is answered, exactly as on a fault-free server, and each once."""
    questions = _questions(24)
    clean = Engine(backends={"default": client(server.url)}).run(questions, _episode_factory())
    # a hang (held until the server closes) outlives the client's timeout, which is far above the
    # server's real latency even on a loaded machine, so only hangs time out
    faults = FaultPlan(fail_rate=0.3, fail_codes=(429, 500, 503), hang_rate=0.03, hang_s=120.0, drop_rate=0.05,
                       seed=11)
    with OversightServer(hf, SERVED, faults=faults) as faulty:
        backend = client(faulty.url, timeout_s=10.0, max_retries=12, concurrency=16)
        engine = Engine(backends={"default": backend})
        episodes = engine.run(questions, _episode_factory())
        stats = dict(faulty.stats)
    assert [e.error for e in episodes] == [None] * len(questions)
    for got, want in zip(episodes, clean):
        assert got.value[0] == want.value[0]  # generated text: identical
        # scores: equal up to float rounding (batches are composed differently under faults)
        assert got.value[1] == pytest.approx(want.value[1], abs=1e-4)
        assert got.value[2] == pytest.approx(want.value[2], abs=1e-4)
    assert len({e.value[0] for e in episodes}) >= 4, "sampled texts should differ by seed"
    for episode in episodes:
        calls = episode.graph.nodes("call")
        assert len(calls) == 3 and all(d["output"]["error"] is None for _, d in calls)
    assert engine.stats.calls == 3 * len(questions) and engine.stats.failed == 0
    # the faults really happened, of every kind
    for kind in ("fault_error429", "fault_error500", "fault_error503", "fault_hang", "fault_drop"):
        assert stats.get(kind, 0) > 0, (kind, stats)
    assert sum(v for k, v in stats.items() if k.startswith("fault_")) > 0.25 * stats["requests"]


def test_call_that_keeps_failing_is_recorded_as_failed(hf):
    faults = FaultPlan(fail_matching="POISON")
    with OversightServer(hf, SERVED, faults=faults) as srv:
        backend = client(srv.url, max_retries=2)
        ok_call = Call(kind="generate", messages=_msgs("fine"), params=SamplingParams(max_new_tokens=4))
        bad_call = Call(kind="generate", messages=_msgs("POISON"), params=SamplingParams(max_new_tokens=4))
        good, bad = backend.run_sync([ok_call, bad_call])
        assert good.ok and good.text is not None
        assert not bad.ok and bad.text is None and bad.logprobs is None
        assert "after 3 attempts" in bad.error and "HTTP 500" in bad.error
        assert srv.stats["fault_error500"] == 3

        async def episode(question: Question, ctx):
            try:
                await ctx.generate("debater", _msgs(question.question), params=SamplingParams(max_new_tokens=4))
            except CallFailed as failure:
                return ("raised", failure.node, failure.error)
            return ("answered",)

        async def unguarded(question: Question, ctx):
            await ctx.generate("debater", _msgs(question.question), params=SamplingParams(max_new_tokens=4))
            return "answered"

        qs = [Question(id="p", question="POISON here", options=["a", "b"], correct=0),
              Question(id="f", question="fine here", options=["a", "b"], correct=0)]
        engine = Engine(backends={"default": backend})
        caught = engine.run(qs, episode)
        assert caught[0].value[0] == "raised" and "HTTP 500" in caught[0].value[2]
        assert caught[1].value == ("answered",)
        node = dict(caught[0].graph.nodes("call"))[caught[0].value[1]]
        assert node["output"]["error"] and node["output"]["text"] is None
        plain = Engine(backends={"default": backend}).run(qs, unguarded)
        assert plain[0].error is not None and "failed" in plain[0].error and plain[0].value is None
        assert plain[1].error is None and plain[1].value == "answered"


def test_non_retryable_errors_fail_at_once(server):
    before = server.stats["requests"]
    wrong_model = OpenAIBackend({"name": "no-such-model"}, {"base_url": server.url, "max_retries": 5})
    (result,) = wrong_model.run_sync([Call(kind="generate", messages=_msgs("hi"))])
    assert not result.ok and "HTTP 404" in result.error and "no-such-model" in result.error
    assert server.stats["requests"] == before + 1, "a 404 must not be retried"
    no_tokenize = client(server.url, tokenize_url=server.url.replace("/v1", "/nothing-here"))
    (result,) = no_tokenize.run_sync([Call(kind="loglikelihood", messages=_msgs("hi"), candidates=("a",))])
    assert not result.ok and "/tokenize" in result.error and "next_token_method=top_logprobs" in result.error


def test_calls_over_the_servers_context_fail_at_once(tiny_model_dir, tmp_path):
    """The client reads max_model_len from GET /models; scoring calls over it fail before any
    request, and an over-long generate is the server's 400, not retried."""
    import json
    import shutil

    short_dir = tmp_path / "tiny-64"
    shutil.copytree(tiny_model_dir, short_dir)
    config = json.loads((short_dir / "config.json").read_text())
    config["max_position_embeddings"] = 64
    (short_dir / "config.json").write_text(json.dumps(config))
    short = HFBackend({"name": SERVED, "path": str(short_dir)}, {"device": "cpu"})
    long_text = "word " * 80
    with OversightServer(short, SERVED) as srv:
        backend = client(srv.url, max_retries=4)
        fine = Call(kind="loglikelihood", messages=_msgs("hi"), candidates=(" a", " b"))
        too_long = Call(kind="loglikelihood", messages=_msgs(long_text), candidates=(" a", " b"))
        long_generate = Call(kind="generate", messages=_msgs(long_text), params=SamplingParams(max_new_tokens=4))
        (ok,) = backend.run_sync([fine])
        before = srv.stats["requests"]
        scored, generated = backend.run_sync([too_long, long_generate])
        assert backend.max_context == 64 and "/models" in backend.max_context_source
        n = len(short._encode(short.render(too_long)))
        assert ok.ok and not scored.ok and not generated.ok
        assert scored.error.startswith("prompt too long") and f"{n} prompt tokens" in scored.error
        assert "above the limit of 64" in scored.error
        assert "HTTP 400" in generated.error and f"{n} prompt tokens" in generated.error
        assert "attempts" not in generated.error  # a client error is not retried
        # too_long: its context's /tokenize only (the options' tokens are cached); generate: one 400
        assert srv.stats["requests"] == before + 2


def test_unreachable_server_is_a_failed_call():
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = client(f"http://127.0.0.1:{port}/v1", max_retries=2)
    (result,) = backend.run_sync([Call(kind="generate", messages=_msgs("hi"))])
    assert not result.ok and "ConnectError" in result.error and "after 3 attempts" in result.error


def test_identity_and_config_errors(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-secret-123")
    backend = OpenAIBackend(
        {"name": "m", "served_name": "org/model"},
        {"base_url": "https://user:pw@api.example.org:8443/v1/?token=abc", "api_key_env": "MY_KEY", "concurrency": 3},
    )
    assert backend.identity == "openai:https://api.example.org:8443/v1:org/model"
    assert "secret" not in repr(vars(backend)) and "pw" not in backend.identity
    same = OpenAIBackend({"name": "org/model"}, {"base_url": "https://api.example.org:8443/v1", "max_retries": 1})
    assert same.identity == backend.identity  # concurrency and retries do not change answers
    extra = OpenAIBackend({"name": "org/model"}, {"base_url": "https://api.example.org:8443/v1",
                                                  "extra_body": {"top_k": 5}})
    assert extra.identity != backend.identity
    assert public_url("http://a:b@h:1/v1?x=1#f") == "http://h:1/v1"
    with pytest.raises(ConfigError, match="backend.base_url"):
        OpenAIBackend({"name": "m"}, {"base_url": "localhost:8000"})
    with pytest.raises(ConfigError, match="backend.concurrency"):
        OpenAIBackend({"name": "m"}, {"base_url": "http://h/v1", "concurrency": 0})
    with pytest.raises(ConfigError, match="next_token_method"):
        OpenAIBackend({"name": "m"}, {"base_url": "http://h/v1", "next_token_method": "guess"})
    with pytest.raises(ConfigError, match="served_name"):
        OpenAIBackend({}, {"base_url": "http://h/v1"})


def test_server_batches_concurrent_requests(hf):
    with OversightServer(hf, SERVED, batch_window_ms=20) as srv:
        calls = [Call(kind="generate", messages=_msgs(f"Say {i}."), params=SamplingParams(max_new_tokens=4))
                 for i in range(48)]
        results = client(srv.url, concurrency=48).run_sync(calls)
        assert all(r.ok for r in results)
        assert srv.stats["batched_requests"] == 48
        assert srv.stats["batches"] <= 12, f"48 concurrent requests took {srv.stats['batches']} backend batches"
        assert [r.text for r in results] == [r.text for r in hf.run_sync(calls)]


def test_server_rejects_what_it_cannot_do(server):
    base = server.url
    with httpx.Client(timeout=10) as http:
        models = http.get(f"{base}/models").json()
        assert models["data"][0]["id"] == SERVED
        r = http.post(f"{base}/completions", json={"prompt": "hi", "max_tokens": 5})
        assert r.status_code == 400 and "max_tokens must be 0 or 1" in r.json()["error"]["message"]
        r = http.post(f"{base}/chat/completions", json={
            "messages": [{"role": "user", "content": "x"}], "continue_final_message": True})
        assert r.status_code == 400 and "Cannot set both" in r.json()["error"]["message"]
        r = http.post(f"{base}/chat/completions", content=b"{not json")
        assert r.status_code == 400
        echo = http.post(f"{base}/completions", json={
            "prompt": "The cat sat", "echo": True, "logprobs": 2, "max_tokens": 0, "temperature": 0}).json()
        lp = echo["choices"][0]["logprobs"]
        assert lp["token_logprobs"][0] is None and len(lp["tokens"]) == len(lp["token_logprobs"]) >= 3
        assert all(len(d) >= 1 for d in lp["top_logprobs"][1:])
        assert "".join(lp["tokens"]) == echo["choices"][0]["text"]


def test_oversight_serve_command(tiny_model_dir, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "oversight.app.serve", "--path", str(tiny_model_dir), "--served-name", SERVED,
         "--port", "0", "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 90
        url = None
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            if line.startswith("oversight-serve: serving"):
                url = line.rsplit(" at ", 1)[1].strip()
        assert url, f"server did not start (exit code {proc.poll()})"
        (result,) = client(url).run_sync([
            Call(kind="loglikelihood", messages=_msgs("Pick."), candidates=(" one", " two"))])
        assert result.ok and len(result.logprobs) == 2 and all(x < 0 for x in result.logprobs)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        proc.stdout.close()
