"""Hugging Face transformers, in-process, CPU or GPU: the embedded default backend.

- generate: prompts sorted by length and cut into batches (left padding), then a decode loop,
  greedy or sampled with a per-request seed (each row samples from its own generator, so a
  request's output does not depend on which batch it landed in); a row leaves the batch when it
  ends;
- next_token: one context pass, log-softmax at the last prompt position, read off the candidates'
  first tokens;
- loglikelihood: one context pass per call, then every continuation's later tokens on a copy of
  its KV cache; summed log-probs of the continuation tokens (as lm-evaluation-harness scores
  multiple choice).

Every context pass shares prompt prefixes within a batch (`prefix_sharing`, see `_prefill`).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

from pydantic import Field

from oversight.backends.base import Backend, BackendSettings, Capabilities, length_batches, render_chat, resolve_dtype
from oversight.backends.scoring import left_pad, target_logprobs
from oversight.errors import ConfigError
from oversight.models import WeightsSource, adapter_dir, adapter_fingerprint, local_weights, weights_fingerprint
from oversight.types import Call, CallResult


@lru_cache(maxsize=4)
def load_model(path: str, dtype: str, device: str, adapter: str | None = None, adapter_id: str = "") -> tuple[Any, Any]:
    """Load weights once per process; every backend and role using them shares this copy.
    (`adapter_id`, the adapter's content fingerprint, only keys this cache: a retrained adapter reloads.)"""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype, None)
    if torch_dtype is None:
        raise ConfigError(f"model.dtype={dtype!r} is not a torch dtype (float32, bfloat16, float16)")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device).eval()
    if adapter:
        model = merge_adapter(model, adapter)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def merge_adapter(model: Any, adapter: str) -> Any:
    """Base weights + a peft LoRA adapter, merged into plain weights (so every code path below is unchanged)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter).merge_and_unload().eval()


class HFSettings(BackendSettings):
    device: str = Field(default="cpu", description="cpu | cuda | cuda:0 ...")
    batch_size: int = Field(default=64, ge=1, description="prompts per forward/generate batch")
    max_batch_tokens: int = Field(default=16384, ge=1, description="padded tokens per batch")
    prefix_sharing: int = Field(default=16, ge=0, description="compute a prompt prefix shared by at least this "
                                                              "many tokens once per batch (0: off)")
    preallocate_kv: bool = Field(default=True, description="decode into a preallocated KV cache")


class HFBackend(Backend):
    def __init__(self, model_cfg: dict[str, Any], backend_cfg: dict[str, Any]):
        settings = HFSettings.read(backend_cfg)
        source = WeightsSource(
            path=str(model_cfg.get("path") or ""),
            gguf_file=model_cfg.get("gguf_file"),
            package=model_cfg.get("package"),
        )
        if not source.path and not source.package:
            raise ConfigError("model.path (or model.package + model.gguf_file) must be set for backend=hf")
        self.path = local_weights(source)
        self.device = settings.device
        self.dtype = dtype = resolve_dtype(model_cfg.get("dtype"), self.device)
        adapter = model_cfg.get("adapter")  # a LoRA adapter trained on these weights (oversight.train.dpo)
        adapter_id = adapter_fingerprint(adapter) if adapter else ""
        self.model, self.tokenizer = load_model(self.path, dtype, self.device, adapter and adapter_dir(adapter),
                                                adapter_id)
        self.batch_size = settings.batch_size
        self.max_batch_tokens = settings.max_batch_tokens
        self.use_chat_template = bool(model_cfg.get("chat_template", True)) and bool(
            getattr(self.tokenizer, "chat_template", None)
        )
        weights_id = model_cfg.get("name") or self.path
        # content, not location: the same weights share a call cache across machines and venvs
        fingerprint = weights_fingerprint(self.path)
        self.weights = fingerprint + (f"+{adapter_id}" if adapter else "")
        digest = hashlib.sha256(
            f"{fingerprint}|{dtype}|{self.use_chat_template}"
            f"{'|' + adapter_id if adapter else ''}".encode()).hexdigest()[:12]
        self.identity = f"hf:{weights_id}:{digest}"
        self.base, self.head = self.model.get_decoder(), self.model.get_output_embeddings()
        self._cache_arg = _cache_argument(self.base)
        # share prefixes of at least this many tokens within a batch (0: off); outputs unchanged
        self.prefix_sharing = settings.prefix_sharing
        # preallocate the KV cache for decoding (outputs unchanged; off: transformers' growing cache)
        self.preallocate_kv = settings.preallocate_kv
        self.max_context = getattr(self.model.config, "max_position_embeddings", None)
        self.max_context_source = f"max_position_embeddings in {self.path}/config.json"
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = {self.tokenizer.eos_token_id, *([eos] if isinstance(eos, int) else (eos or []))} - {None}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            engine="transformers", device=self.device, dispatch="batch", batch_size=self.batch_size,
            max_batch_tokens=self.max_batch_tokens, max_context=self.max_context, tokenizer=True,
            torch_model=True, trainable=True, dtype=self.dtype,
        )

    # ---- prompts ------------------------------------------------------------------------------

    def render(self, call: Call) -> str:
        return render_chat(self.tokenizer, call, self.use_chat_template)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # ---- generation ---------------------------------------------------------------------------

    def generate(self, calls: list[Call]) -> list[CallResult]:
        prompts = [self._encode(self.render(c)) for c in calls]
        # rows of one batch share decoding settings, except the seed: each row samples with its own
        shared = [calls[i].params.model_copy(update={"seed": 0}) for i in range(len(calls))]
        order = sorted(range(len(calls)), key=lambda i: (shared[i].model_dump_json(), len(prompts[i])))
        results: list[CallResult | None] = [None] * len(calls)
        fits = self._fitting(results, [(len(p), c.params.max_new_tokens, "max_new_tokens")
                                       for p, c in zip(prompts, calls)])
        fitting = set(fits)
        order = [i for i in order if i in fitting]
        for batch in self._batches(order, prompts, lambda i: calls[i].params.max_new_tokens, same=lambda i: shared[i]):
            outputs = self._decode([prompts[i] for i in batch], [calls[i].params for i in batch])
            for i, new in zip(batch, outputs):
                text = self.tokenizer.decode(new, skip_special_tokens=True)
                for stop in calls[i].params.stop:
                    if stop and stop in text:
                        text = text[: text.index(stop)]
                results[i] = CallResult(text=text, prompt_tokens=len(prompts[i]), output_tokens=len(new))
        return results  # type: ignore[return-value]

    def _decode(self, prompts: list[list[int]], params: list) -> list[list[int]]:
        """Greedy or seeded-sampled decoding of one batch (all rows share max_new_tokens and stops).

        A row leaves the batch as soon as it ends (end-of-sequence token or a stop string), so the
        remaining rows stop paying for it; with prompts that share prefixes, the prefill computes
        each shared prefix once (`_prefill`).
        """
        import torch

        limit, stops = params[0].max_new_tokens, [s for s in params[0].stop if s]
        sampler = _SeededSampler(params, self.device) if params[0].temperature > 0 else None
        outputs: list[list[int]] = [[] for _ in prompts]
        active = list(range(len(prompts)))  # batch row -> prompt index
        with self.exclusive(), torch.inference_mode():
            # room for every new token in the KV cache up front: a decode step writes in place
            # instead of copying the whole cache (torch.cat), which was 12% of a step
            hidden, cache, mask = self._prefill(prompts, reserve=limit if self.preallocate_kv else 0)
            positions = torch.tensor([len(p) for p in prompts], device=self.device)
            for _ in range(limit):
                logits = self.head(hidden).float()
                tokens = sampler.pick(logits, active) if sampler else logits.argmax(-1)
                keep = []
                for row, (i, token) in enumerate(zip(active, tokens.tolist())):
                    if token in self.eos_ids:
                        continue
                    outputs[i].append(token)
                    if len(outputs[i]) < limit and not (
                        stops and any(s in self.tokenizer.decode(outputs[i][-16:]) for s in stops)
                    ):
                        keep.append(row)
                if not keep:
                    break
                if len(keep) < len(active):
                    index = torch.tensor(keep, device=self.device)
                    cache.reorder_cache(index)
                    mask, positions, tokens = mask[index], positions[index], tokens[index]
                    active = [active[row] for row in keep]
                mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=-1)
                hidden = self._forward(
                    input_ids=tokens[:, None], attention_mask=mask, position_ids=positions[:, None], cache=cache,
                ).last_hidden_state[:, -1]
                positions = positions + 1
        return outputs

    def _prefill(self, rows: list[list[int]], reserve: int = 0):
        """Run a batch of token rows through the model; return the last position's hidden state
        [B, H], the KV cache and the attention mask. Every row ends at the last column.

        Rows that share a prefix of at least `prefix_sharing` tokens (the story and instructions
        both debaters of a question see, a judge's fixed preamble) are grouped: each group's prefix
        runs once, its KV cache is copied to the group's rows, and only the rest of each row runs
        in a second pass. The group prefixes are themselves prefilled this way, so a system prompt
        that every group shares also runs once. Position ids follow the attention mask, so padding
        may sit between a prefix and its suffix. `reserve` > 0 leaves that many free positions per
        row in the KV cache, for decoding.
        """
        import torch

        groups = _prefix_groups(rows, self.prefix_sharing) if self.prefix_sharing else []
        if not any(len(members) > 1 for _, members in groups):
            ids, mask = self._left_pad(rows)
            out = self._forward(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                                cache=_reserved_cache(self.model, reserve))
            return out.last_hidden_state[:, -1], _output_cache(out), mask
        # singletons split where the longest grouped suffix starts, so the second pass stays narrow
        suffix_width = max(len(rows[m[0]]) - cut for cut, m in groups if len(m) > 1)
        cuts, group_of = [0] * len(rows), [0] * len(rows)
        for g, (cut, members) in enumerate(groups):
            for i in members:
                cuts[i] = cut if len(members) > 1 else min(len(rows[i]) - 1, max(1, len(rows[i]) - suffix_width))
                group_of[i] = g
        _, cache, head_mask = self._prefill([rows[members[0]][: cuts[members[0]]] for _, members in groups], reserve)
        index = torch.tensor(group_of, device=self.device)
        cache.reorder_cache(index)  # one row per group -> one row per batch row
        ids, tail_mask = self._left_pad([r[c:] for r, c in zip(rows, cuts)])
        mask = torch.cat([head_mask[index], tail_mask], dim=-1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        out = self._forward(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache)
        return out.last_hidden_state[:, -1], _output_cache(out), mask

    def _forward(self, cache=None, **inputs):
        """One pass of the decoder (no LM head), growing `cache` (a new one when None).

        transformers >= 5.x names the KV cache argument `cache`; earlier releases (and models whose
        code has not moved yet) call it `past_key_values`, which newer releases accept with a
        FutureWarning. The name is read off the model's signature once, so no call of ours warns."""
        return self.base(**inputs, **{self._cache_arg: cache}, use_cache=True)

    def _left_pad(self, rows: list[list[int]]):
        """Token rows as one right-aligned id tensor and its attention mask."""
        ids, mask, _ = left_pad(rows, self.tokenizer.pad_token_id, self.device)
        return ids, mask

    def _batches(self, order, prompts, extra, same=None):
        return length_batches(order, [len(p) for p in prompts], self.batch_size, self.max_batch_tokens, extra, same)

    # ---- scoring ------------------------------------------------------------------------------

    def next_token(self, calls: list[Call]) -> list[CallResult]:
        contexts = [self._encode(self.render(c)) for c in calls]
        firsts = [[self._first_token(c) for c in call.candidates] for call in calls]
        results: list[CallResult | None] = [None] * len(calls)
        fits = self._fitting(results, [(len(c), 1, "predicted token") for c in contexts])
        for batch, first_logprobs, _ in self._context_passes(contexts, [[] for _ in calls], fits):
            for row, i in enumerate(batch):
                results[i] = CallResult(
                    logprobs=[float(first_logprobs[row, t]) for t in firsts[i]], prompt_tokens=len(contexts[i])
                )
        return results  # type: ignore[return-value]

    def _first_token(self, text: str) -> int:
        ids = self._encode(text)
        if not ids:
            raise ConfigError(f"candidate {text!r} encodes to no tokens")
        return ids[0]

    def loglikelihood(self, calls: list[Call]) -> list[CallResult]:
        contexts = [self._encode(self.render(c)) for c in calls]
        conts = [[self._encode(x) for x in c.candidates] for c in calls]
        for call, cs in zip(calls, conts):
            for text, ids in zip(call.candidates, cs):
                if not ids:
                    raise ConfigError(f"continuation {text!r} encodes to no tokens")
        results: list[CallResult | None] = [None] * len(calls)
        fits = self._fitting(results, [(len(ctx), max(len(c) for c in cs), "continuation tokens (the longest option)")
                                       for ctx, cs in zip(contexts, conts)])
        for batch, first_logprobs, rest in self._context_passes(contexts, conts, fits):
            for row, i in enumerate(batch):
                scores = [
                    float(first_logprobs[row, ids[0]]) + rest.get((i, k), 0.0) for k, ids in enumerate(conts[i])
                ]
                tokens = len(contexts[i]) + sum(len(ids) - 1 for ids in conts[i])
                results[i] = CallResult(logprobs=scores, prompt_tokens=tokens)
        return results  # type: ignore[return-value]

    def _context_passes(self, contexts: list[list[int]], conts: list[list[list[int]]], indices: list[int]):
        """Score continuations sharing one context pass per call.

        Each context runs once (left-padded, so every row ends at the last column); its last
        position gives the first continuation token's distribution. Continuations longer than one
        token then run on a copy of the context's KV cache, so a call with K options costs one
        context plus K short tails instead of K full sequences.
        Only the calls in `indices` run.
        Yields (batch indices, first-token log-probs [B, V], {(call, k): log-prob of tokens 2..n}).
        """
        import torch

        pad = self.tokenizer.pad_token_id
        head = self.head
        order = sorted(indices, key=lambda i: len(contexts[i]))
        tail = lambda i: sum(len(c) for c in conts[i])  # noqa: E731
        for batch in self._batches(order, contexts, tail):
            rest: dict[tuple[int, int], float] = {}
            with self.exclusive(), torch.inference_mode():
                last, cache, mask = self._prefill([contexts[i] for i in batch])
                first = torch.log_softmax(head(last).float(), dim=-1)
                tails = [(row, i, k, c) for row, i in enumerate(batch) for k, c in enumerate(conts[i]) if len(c) > 1]
                if tails:
                    cache.reorder_cache(torch.tensor([row for row, *_ in tails], device=self.device))
                    span = max(len(c) - 1 for *_, c in tails)
                    t_ids = torch.tensor([c[:-1] + [pad] * (span - len(c) + 1) for *_, c in tails], device=self.device)
                    t_mask = torch.tensor([[1] * (len(c) - 1) + [0] * (span - len(c) + 1) for *_, c in tails],
                                          device=self.device)
                    full_mask = torch.cat([mask[[row for row, *_ in tails]], t_mask], dim=-1)
                    starts = torch.tensor([len(contexts[i]) for _, i, _, _ in tails], device=self.device)
                    t_pos = starts[:, None] + torch.arange(span, device=self.device)[None, :]
                    hidden = self._forward(
                        input_ids=t_ids, attention_mask=full_mask, position_ids=t_pos, cache=cache,
                    ).last_hidden_state
                    # one LM-head matmul over every scored tail position, then log p(target)
                    rows_idx = [j for j, (*_, c) in enumerate(tails) for _ in range(len(c) - 1)]
                    cols_idx = [p for *_, c in tails for p in range(len(c) - 1)]
                    targets = torch.tensor([c[p + 1] for *_, c in tails for p in range(len(c) - 1)], device=self.device)
                    picked, _, _ = target_logprobs(head, hidden[rows_idx, cols_idx], targets)
                    sums = torch.zeros(len(tails), device=self.device).index_add_(
                        0, torch.tensor(rows_idx, device=self.device), picked)
                    for j, (_, i, k, _) in enumerate(tails):
                        rest[(i, k)] = float(sums[j])
            yield batch, first, rest


def _reserved_cache(model, reserve: int):
    """A KV cache whose full-attention layers keep `reserve` free positions per row past what they
    hold, so appending a decoding step writes into place; None (transformers' default cache) when
    `reserve` is 0 or this transformers has no cache-layer API."""
    if reserve <= 0:
        return None
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer

        cache = DynamicCache(config=model.config)
    except (ImportError, TypeError):
        return None
    layer_class = _reserving_layer_class(DynamicLayer)
    cache.layers = [layer_class(reserve) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


@lru_cache(maxsize=1)
def _reserving_layer_class(dynamic_layer):
    class ReservingLayer(dynamic_layer):
        """transformers' DynamicLayer over a buffer with `reserve` spare positions: `keys`/`values`
        are views of the filled part. A reorder (rows dropped or copied) makes them plain tensors
        again; the next update moves them into a new buffer."""

        def __init__(self, reserve: int):
            super().__init__()
            self.reserve = reserve
            self.buffers = None
            self.views = (None, None)

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            held, added = self.get_seq_length(), key_states.shape[-2]
            buffers = self.buffers
            # our own views still in place? (identity, not `_base`: views made under inference_mode
            # have no `_base`, so that test moved the whole cache into a new buffer every step)
            if buffers is None or self.keys is not self.views[0] or held + added > buffers[0].shape[-2]:
                size = held + added + self.reserve
                buffers = tuple(new.new_empty((*new.shape[:2], size, new.shape[-1]))
                                for new in (key_states, value_states))
                if held:
                    buffers[0][:, :, :held] = self.keys
                    buffers[1][:, :, :held] = self.values
                self.buffers = buffers
            buffers[0][:, :, held:held + added] = key_states
            buffers[1][:, :, held:held + added] = value_states
            self.keys, self.values = buffers[0][:, :, :held + added], buffers[1][:, :, :held + added]
            self.views = (self.keys, self.values)
            return self.keys, self.values

    return ReservingLayer


def _cache_argument(module) -> str:
    """The keyword under which `module.forward` takes a KV cache: `cache` (current transformers) or
    `past_key_values` (before the rename)."""
    import inspect

    parameters = inspect.signature(module.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _output_cache(output):
    """The KV cache a forward pass returned, read without touching the deprecated alias."""
    return output["cache"] if "cache" in output else output["past_key_values"]


def _prefix_groups(rows: list[list[int]], min_shared: int) -> list[tuple[int, list[int]]]:
    """Group row indices whose token rows share a prefix of at least `min_shared` tokens.

    Rows are visited in lexicographic order, so rows with a common prefix are neighbours. Returns
    (shared prefix length, member indices) per group; a shared prefix always leaves each member at
    least one token of its own (the position whose output is read)."""
    groups: list[tuple[int, list[int]]] = []
    for i in sorted(range(len(rows)), key=lambda i: rows[i]):
        if groups:
            cut, members = groups[-1]
            first, row = rows[members[0]], rows[i]
            n = 0
            limit = min(cut, len(row) - 1)
            while n < limit and first[n] == row[n]:
                n += 1
            # join only if the group still saves as much (k rows sharing n tokens vs k-1 sharing cut),
            # so the pairs that share a whole story are not merged down to a common system prompt
            if n >= min_shared and (len(members) == 1 or len(members) * n >= (len(members) - 1) * cut):
                groups[-1] = (n, members + [i])
                continue
        groups.append((len(rows[i]) - 1, [i]))
    return groups


class _SeededSampler:
    """Temperature/top-p sampling with one torch.Generator per row, seeded by the request's seed,
    so a row's sample does not depend on which batch it is in."""

    def __init__(self, params: list, device: str):
        import torch

        self.params = params
        self.generators = [torch.Generator(device=device).manual_seed(p.seed) for p in params]

    def pick(self, logits, rows: list[int]):
        """One token per batch row; `rows[r]` is the request index of batch row r."""
        import torch

        tokens = []
        for r, i in enumerate(rows):
            p = self.params[i]
            probs = torch.softmax(logits[r] / p.temperature, dim=-1)
            if p.top_p < 1.0:
                sorted_p, idx = torch.sort(probs, descending=True)
                keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < p.top_p
                probs = torch.zeros_like(probs).scatter(0, idx[keep], sorted_p[keep])
            tokens.append(torch.multinomial(probs / probs.sum(), 1, generator=self.generators[i]))
        return torch.cat(tokens)
