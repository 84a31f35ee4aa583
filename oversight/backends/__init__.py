"""Backends turn batches of Calls into CallResults. One interface, several implementations.

`hf` (transformers, in-process) is the embedded default; `openai` (any OpenAI-compatible server)
and `vllm` (in-process, GPU). A backend config names its class with `_target_` (conf/backend/*.yaml),
found like every plugin (`oversight.plugins.locate`) and imported only when asked for, so the base
install never imports vLLM or an HTTP client it does not need. The class takes `(model_cfg,
backend_cfg)`: one instance serves every role bound to its model.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from oversight.backends.base import Backend
from oversight.errors import ConfigError
from oversight.plugins import TARGET, locate

log = logging.getLogger(__name__)

_loaded: dict[tuple[str, str], Backend] = {}


def get_backend(model_cfg: dict[str, Any], backend_cfg: dict[str, Any]) -> Backend:
    """Build (or reuse) the backend for one model. One instance per (backend, model) per process,
    so roles that share a model share one copy of its weights."""
    target = backend_cfg.get(TARGET)
    if target is None:
        raise ConfigError(f"backend.{TARGET}: missing; expected a Backend class such as "
                          "oversight.backends.hf.HFBackend (conf/backend/*.yaml)")
    key = (str(target), repr(sorted((k, repr(v)) for k, v in {**model_cfg, **backend_cfg}.items())))
    if key not in _loaded:
        cls = locate(target, "backend")
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise ConfigError(f"backend.{TARGET}={target!r} is not a Backend (oversight.backends.base.Backend)")
        started = time.perf_counter()
        backend = cls(model_cfg, {k: v for k, v in backend_cfg.items() if k != TARGET})
        caps = backend.capabilities
        log.info("backend %s ready in %.1f s (%s on %s)", backend.identity, time.perf_counter() - started,
                 caps.engine, caps.device)
        _loaded[key] = backend
    return _loaded[key]


__all__ = ["Backend", "get_backend"]
