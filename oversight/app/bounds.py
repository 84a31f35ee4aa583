"""What this machine allows: the bounds `oversight-bench` holds each of its rows against.

Two micro-benchmarks of a few seconds, run in the bench's own process with its torch threads:
- **memory read bandwidth**: summing a 1 GiB fp32 tensor (the best of a few passes), the rate at
  which weights and KV cache can stream from memory;
- **matmul throughput**: the model's own linear layers (every `nn.Linear` weight, the LM head
  included) applied to an input of M rows in the model's dtype, M = the decode batch (decode) and
  M = 512 (prefill and scoring): what this machine's BLAS achieves on exactly these shapes.

From them, a lower bound on the time of a piece of work (`Work`: decode steps, the weight and KV
bytes they read, the tokens they compute) is max(bytes / bandwidth, flops / matmul rate), and a
row's fraction of the bound is bound / measured (1.0: at the hardware's limit). Decode at batch 1
is bound by streaming the weights; at batch 64 on a CPU it is bound by matmul throughput (64 rows
times 2 flops per weight), so the fraction printed is against the larger of the two, with both
parts shown.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

PREFILL_ROWS = 512


@dataclass
class ModelShape:
    """What one token costs on a model: matmul flops and the bytes of weights a step streams."""

    body_params: int        # weights of every nn.Linear below the LM head (attention, MLP)
    head_params: int        # the LM head's weights (applied only where a distribution is needed)
    weight_bytes: int       # the bytes of all those weights in the model's dtype (streamed once per step)
    kv_bytes_per_token: int  # keys + values of one position over all layers
    layers: int
    hidden: int
    dtype: str

    def flops(self, tokens: int, head_tokens: int) -> int:
        """Matmul flops of `tokens` positions through the body, `head_tokens` of them through the head."""
        return 2 * (self.body_params * tokens + self.head_params * head_tokens)

    def attention_flops(self, context: int) -> int:
        """Scores and weighted sum over `context` earlier positions, all layers (one new token)."""
        return 4 * self.layers * self.hidden * context


def _linear_weights(model: Any) -> tuple[list[Any], Any]:
    """The body's nn.Linear weights (each once) and the LM head's."""
    import torch

    head = model.get_output_embeddings().weight
    seen: set[int] = {id(head)}
    body = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            body.append(module.weight.detach())
    return body, head.detach()


def model_shape(model: Any) -> ModelShape:
    body, head = _linear_weights(model)
    config = model.config
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    element = head.element_size()
    kv = 2 * config.num_hidden_layers * kv_heads * head_dim * element
    weight_bytes = sum(w.numel() * w.element_size() for w in [*body, head])
    return ModelShape(sum(w.numel() for w in body), head.numel(), weight_bytes, kv, config.num_hidden_layers,
                      config.hidden_size, str(head.dtype).removeprefix("torch."))


@dataclass
class Bounds:
    """This machine's measured limits (bytes/s and flops/s) for one model and dtype."""

    threads: int
    read_bytes_per_s: float
    matmul_flops_per_s: dict[int, float] = field(default_factory=dict)  # rows M -> flops/s on the model's shapes
    peak_flops_per_s: dict[str, float] = field(default_factory=dict)    # dtype -> flops/s, a 1024^3 matmul

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(model: Any, rows: tuple[int, ...], seconds: float = 1.0) -> Bounds:
    """Memory bandwidth and matmul throughput at `rows` (plus PREFILL_ROWS) on `model`'s linear layers."""
    import torch

    with torch.inference_mode():
        buffer = torch.ones(256 << 20, dtype=torch.float32)  # 1 GiB: larger than any last-level cache
        read = buffer.numel() * 4 / _best(buffer.sum, seconds)
        del buffer
        body, head = _linear_weights(model)
        weights = [*body, head]
        dtype, device = weights[0].dtype, weights[0].device
        flops: dict[int, float] = {}
        for m in sorted({*rows, PREFILL_ROWS}):
            inputs = {w.shape[1]: torch.randn(m, w.shape[1], dtype=dtype, device=device) for w in weights}

            def apply() -> None:
                for w in weights:
                    torch.nn.functional.linear(inputs[w.shape[1]], w)

            apply()
            took = _best(apply, seconds)
            flops[m] = 2 * m * sum(w.numel() for w in weights) / took
        peak = {}
        for name in ("float32", "bfloat16"):
            a = torch.randn(1024, 1024, dtype=getattr(torch, name))
            a @ a
            peak[name] = 2 * 1024 ** 3 / _best(lambda: a @ a, seconds / 2)
    return Bounds(torch.get_num_threads(), read, flops, peak)


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _best(fn, seconds: float) -> float:
    """The fastest of repeated runs within about `seconds` (at least 3)."""
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - started < seconds:
        times.append(_timed(fn))
    return min(times)


@dataclass
class Work:
    """The least a piece of work must do: `steps` forward passes that each stream the weights once,
    `kv_bytes` of cached keys and values read, and matmul flops by the rows they are computed at
    (`flops[M]`: decode steps at the batch's rows, prompts at PREFILL_ROWS), plus attention flops
    (counted at the prompt rate)."""

    steps: int = 0
    kv_bytes: int = 0
    flops: dict[int, int] = field(default_factory=dict)

    def add(self, rows: int, flops: int) -> None:
        self.flops[rows] = self.flops.get(rows, 0) + flops

    def bound(self, shape: ModelShape, bounds: Bounds) -> dict[str, float]:
        memory = (self.steps * shape.weight_bytes + self.kv_bytes) / bounds.read_bytes_per_s
        rates = bounds.matmul_flops_per_s
        compute = sum(f / rates[min(rates, key=lambda m: abs(m - rows))] for rows, f in self.flops.items())
        return {"memory_s": memory, "compute_s": compute, "bound_s": max(memory, compute)}


def distinct_prefixes(rows: list[list[int]]) -> int:
    """Positions a perfect prefix cache computes for these token rows: the nodes of their trie
    (a story both debaters read, a judge's fixed preamble, computed once)."""
    root: dict = {}
    count = 0
    for row in rows:
        node = root
        for token in row:
            if token not in node:
                node[token] = {}
                count += 1
            node = node[token]
    return count


def decode_work(prompts: list[list[int]], generated: list[int], batch_size: int, shape: ModelShape) -> Work:
    """Greedy decoding of calls with these prompt tokens and output lengths in batches of `batch_size`
    (sorted by prompt length, as the backend batches them): each batch runs as many steps as its
    longest output, each step of a row reads that row's KV cache and computes one token (body and LM
    head) at the batch's rows; the prompts are computed once per distinct prefix (body, plus the head
    at each row's last position). No padding is counted: padding is waste the bound excludes."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    work = Work()
    work.add(PREFILL_ROWS, shape.flops(distinct_prefixes(prompts), len(prompts)))
    for at in range(0, len(order), batch_size):
        batch = order[at: at + batch_size]
        work.steps += 1 + max(generated[i] for i in batch)
        for i in batch:
            p, g = len(prompts[i]), generated[i]
            context = g * p + g * (g - 1) // 2  # positions attended over by the g new tokens
            work.kv_bytes += context * shape.kv_bytes_per_token
            work.add(len(batch), shape.flops(max(g - 1, 0), g))  # the last new token is never fed back
            work.add(PREFILL_ROWS, shape.attention_flops(1) * (context + p * (p + 1) // 2))
    return work


def scoring_work(rows: list[list[int]], heads: list[int], batch_size: int, shape: ModelShape) -> Work:
    """Scoring calls (one forward pass, no decoding): `rows` each call's tokens (context, then each
    continuation but its last token), computed once per distinct prefix; `heads` the positions whose
    next-token distribution the call needs (the context's last, plus the continuations' later ones)."""
    work = Work()
    work.steps = -(-len(rows) // batch_size)
    work.add(PREFILL_ROWS, shape.flops(distinct_prefixes(rows), sum(heads)))
    work.add(PREFILL_ROWS, sum(shape.attention_flops(1) * len(r) * (len(r) + 1) // 2 for r in rows))
    return work
