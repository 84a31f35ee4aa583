"""Backends turn batches of Calls into CallResults. One interface, several implementations.

`hf` (transformers, in-process) is the embedded default. Others are registered by name and
imported only when asked for, so the base install never imports vLLM or an HTTP client it does not
need.
"""

from __future__ import annotations

import importlib
from typing import Any

from oversight.backends.base import Backend
from oversight.errors import ConfigError

# name -> "module:factory"; factories take (model_cfg: dict, backend_cfg: dict) -> Backend
BACKENDS: dict[str, str] = {
    "hf": "oversight.backends.hf:HFBackend",
    "openai": "oversight.backends.openai:OpenAIBackend",
    "vllm": "oversight.backends.vllm:VLLMBackend",
}

_loaded: dict[tuple[str, str], Backend] = {}


def register_backend(name: str, target: str) -> None:
    BACKENDS[name] = target


def get_backend(model_cfg: dict[str, Any], backend_cfg: dict[str, Any]) -> Backend:
    """Build (or reuse) the backend for one model. One instance per (backend, model) per process,
    so roles that share a model share one copy of its weights."""
    name = backend_cfg.get("name")
    if name not in BACKENDS:
        raise ConfigError(f"backend.name={name!r} is unknown; valid backends: {sorted(BACKENDS)}")
    key = (name, repr(sorted((k, repr(v)) for k, v in {**model_cfg, **backend_cfg}.items())))
    if key not in _loaded:
        module_name, factory = BACKENDS[name].split(":")
        module = importlib.import_module(module_name)
        _loaded[key] = getattr(module, factory)(model_cfg, backend_cfg)
    return _loaded[key]


__all__ = ["Backend", "BACKENDS", "get_backend", "register_backend"]
