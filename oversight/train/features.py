"""Features of texts from a frozen causal LM, for reward heads trained on top of it.

For each (prefix, continuation) pair, one forward pass over `prefix + continuation` gives:
- the final hidden state (after the last norm) at the last token, and the mean over the
  continuation's tokens;
- the summed log-probability of the continuation's tokens given the prefix (how the
  lm-evaluation-harness scores multiple choice).

Results are cached on disk (SQLite, one row per pair) under a key that includes the weights'
content fingerprint, so features are extracted through the model once and reused across levels,
runs and reruns.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from oversight.cache import SQLiteStore
from oversight.models import weights_fingerprint


@dataclass(frozen=True)
class PairFeatures:
    last: np.ndarray  # hidden state at the last token
    mean: np.ndarray  # mean hidden state over the continuation's tokens
    logprob: float  # summed log-probability of the continuation given the prefix
    tokens: int  # continuation length in tokens


class FrozenFeatures:
    """A frozen model plus an on-disk feature cache. `model`/`tokenizer` may be passed in (shared
    with a backend) or are loaded from `path` (a local transformers directory)."""

    def __init__(self, path: str, cache_path: str | Path, *, model: Any = None, tokenizer: Any = None,
                 batch_size: int = 32, device: str = "cpu", use_chat_template: bool = True):
        self.path = path
        self.identity = weights_fingerprint(path)
        if model is None or tokenizer is None:
            from oversight.backends.hf import load_model

            model, tokenizer = load_model(path, "float32", device)
        self.model, self.tokenizer = model, tokenizer
        self.use_chat_template = use_chat_template and getattr(tokenizer, "chat_template", None) is not None
        self.batch_size = batch_size
        self.device = device
        self._store = SQLiteStore(cache_path, "features", "value", "BLOB")
        self.cache_path = self._store.path
        self.extracted = 0  # pairs computed by the model (not read from the cache) by this instance

    def pairs(self, pairs: Sequence[tuple[str, str]],
              on_batch: Callable[[int], None] | None = None) -> list[PairFeatures]:
        keys = [self._key(p, c) for p, c in pairs]
        found = {k: _unpack(v) for k, v in self._store.get_many(keys).items()}
        todo = sorted({k: i for i, k in enumerate(keys) if k not in found}.values(),
                      key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            blobs = [_pack(f) for f in self._extract([pairs[i] for i in batch])]
            self._store.put_many([(keys[i], blob) for i, blob in zip(batch, blobs)])
            # read back through the stored form, so a fresh extraction and a cached one are the same numbers
            computed = [_unpack(blob) for blob in blobs]
            found.update({keys[i]: f for i, f in zip(batch, computed)})
            self.extracted += len(batch)
            if on_batch:
                on_batch(len(batch))
        return [found[k] for k in keys]

    def chat_prefix(self, messages: list[dict[str, str]], prefix: str = "") -> str:
        """The text an in-process backend feeds this model for a call with these messages and answer
        prefix (oversight.backends.base.render_chat), so features can be read where a role reads."""
        from oversight.backends.base import render_chat
        from oversight.types import Call

        call = Call(kind="loglikelihood", messages=tuple(messages), prefix=prefix, candidates=("",))
        return render_chat(self.tokenizer, call, self.use_chat_template)

    def close(self) -> None:
        self._store.close()

    # ---- helpers ------------------------------------------------------------------------------

    def _key(self, prefix: str, continuation: str) -> str:
        return hashlib.sha256(f"{self.identity}|{prefix}\x00{continuation}".encode()).hexdigest()

    def _extract(self, pairs: list[tuple[str, str]]) -> list[PairFeatures]:
        from oversight.backends.scoring import score_rows

        encoded = []
        for prefix, continuation in pairs:
            head = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
            tail = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            if not tail:
                raise ValueError(f"empty continuation after prefix {prefix!r}")
            encoded.append((head, tail))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        rows = score_rows(self.model, [h + t for h, t in encoded], pad, self.device, hidden=True)
        results = []
        for (h, t), row in zip(encoded, rows):
            n = len(t)
            lp = sum(row.logprobs[max(len(h), 1) - 1:])  # log P(token t | tokens < t) over the continuation
            results.append(PairFeatures(last=row.hidden[-1].numpy().copy(), mean=row.hidden[-n:].mean(0).numpy().copy(),
                                        logprob=float(lp), tokens=n))
        return results


def _pack(f: PairFeatures) -> bytes:
    return np.concatenate([[f.logprob, f.tokens], f.last, f.mean]).astype(np.float32).tobytes()


def _unpack(blob: bytes) -> PairFeatures:
    v = np.frombuffer(blob, dtype=np.float32)
    d = (len(v) - 2) // 2
    return PairFeatures(last=v[2:2 + d].copy(), mean=v[2 + d:].copy(), logprob=float(v[0]), tokens=int(v[1]))
