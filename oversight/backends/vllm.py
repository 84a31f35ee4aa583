"""vLLM's offline engine (`vllm.LLM`), in-process, on GPUs. An optional extra: `pip install -e '.[vllm]'`.

Prompts are rendered exactly as the hf backend renders them
(`tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefix`,
encoded without special tokens) and sent to vLLM as token ids, so the two backends see the same
tokens.

- generate: one `LLM.generate` over the whole batch with one SamplingParams per request (its own
  seed, temperature, top_p, max_tokens, stop), so a request's output does not depend on its batch;
- loglikelihood: prompt `context + continuation` with `prompt_logprobs=1`, summing the
  continuation tokens' log-probabilities (as lm-evaluation-harness scores multiple choice);
- next_token: the same with each candidate's first token as a one-token continuation. Exact over
  the whole vocabulary, unlike reading a top-N list. vLLM does not read the prefix cache for
  requests that ask for prompt logprobs, so a call with K candidates costs K context prefills.

Prefix caching is on by default (debate turns share long prefixes). Parallelism and memory come
from the backend config: tensor_parallel_size, pipeline_parallel_size (several nodes: set
distributed_executor_backend: ray), gpu_memory_utilization, max_model_len; `engine_kwargs` passes
any other vLLM engine argument through (unknown ones are refused, naming the key).

GGUF models (the embedded SmolLM2): by default the converted safetensors directory from
`oversight.models.local_weights` is both model and tokenizer (`gguf: converted`); `gguf: direct`
loads the .gguf file itself with that directory as tokenizer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any

from oversight.backends.base import Backend, render_chat
from oversight.errors import ConfigError
from oversight.models import WeightsSource, local_weights, weights_fingerprint
from oversight.types import Call, CallResult

log = logging.getLogger(__name__)

GGUF_MODES = ("converted", "direct")


class VLLMBackend(Backend):
    def __init__(self, model_cfg: dict[str, Any], backend_cfg: dict[str, Any]):
        vllm = _import_vllm()
        source = WeightsSource(
            path=str(model_cfg.get("path") or ""), gguf_file=model_cfg.get("gguf_file"),
            package=model_cfg.get("package"),
        )
        if not source.path and not source.package:
            raise ConfigError("model.path (or model.package + model.gguf_file) must be set for backend=vllm")
        gguf_mode = str(backend_cfg.get("gguf") or "converted")
        if gguf_mode not in GGUF_MODES:
            raise ConfigError(f"backend.gguf={gguf_mode!r} is unknown; valid: {list(GGUF_MODES)}")
        directory, gguf_name = source.resolve()
        if gguf_name:
            tokenizer = local_weights(source)
            model = tokenizer if gguf_mode == "converted" else str(Path(directory) / gguf_name)
        else:
            model = tokenizer = directory
        tokenizer = str(model_cfg.get("tokenizer") or tokenizer)
        dtype = str(backend_cfg.get("dtype") or model_cfg.get("dtype") or "auto")
        wanted: dict[str, Any] = {
            "model": model, "tokenizer": tokenizer, "dtype": dtype,
            "tensor_parallel_size": int(backend_cfg.get("tensor_parallel_size") or 1),
            "pipeline_parallel_size": int(backend_cfg.get("pipeline_parallel_size") or 1),
            "gpu_memory_utilization": float(backend_cfg.get("gpu_memory_utilization") or 0.85),
            "enable_prefix_caching": bool(backend_cfg.get("enable_prefix_caching", True)),
            "seed": int(backend_cfg.get("seed") or 0),
        }
        for key in ("max_model_len", "distributed_executor_backend", "quantization", "enforce_eager"):
            if backend_cfg.get(key) is not None:
                wanted[key] = backend_cfg[key]
        if not 0.0 < wanted["gpu_memory_utilization"] <= 1.0:
            raise ConfigError(f"backend.gpu_memory_utilization={wanted['gpu_memory_utilization']} must lie in (0, 1]")
        extra = dict(backend_cfg.get("engine_kwargs") or {})
        self.engine_args = _check_engine_args(vllm, wanted, extra)
        self.llm = vllm.LLM(**self.engine_args)
        self._sampling_params = vllm.SamplingParams
        self.tokenizer = self.llm.get_tokenizer()
        self.use_chat_template = bool(model_cfg.get("chat_template", True)) and bool(
            getattr(self.tokenizer, "chat_template", None)
        )
        version = getattr(vllm, "__version__", "?")
        self.weights = weights_fingerprint(model)
        digest = hashlib.sha256(
            f"{self.weights}|{weights_fingerprint(tokenizer)}|{dtype}|{self.use_chat_template}|{version}"
            .encode()
        ).hexdigest()[:12]
        self.identity = f"vllm:{model_cfg.get('name') or model}:{digest}"
        self.batch_size = int(backend_cfg.get("batch_size") or 0)  # 0: the whole engine batch at once
        model_config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        limit = getattr(model_config, "max_model_len", None) or self.engine_args.get("max_model_len")
        self.max_context = int(limit) if limit else None
        self.max_context_source = "vLLM's max_model_len"

    # ---- prompts ------------------------------------------------------------------------------

    def render(self, call: Call) -> str:
        return render_chat(self.tokenizer, call, self.use_chat_template)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # ---- generation ---------------------------------------------------------------------------

    def generate(self, calls: list[Call]) -> list[CallResult]:
        encoded = [self._encode(self.render(c)) for c in calls]
        results: list[CallResult | None] = [None] * len(calls)
        fits = self._fitting(results, [(len(ids), c.params.max_new_tokens, "max_new_tokens")
                                       for ids, c in zip(encoded, calls)])
        prompts = [{"prompt_token_ids": encoded[i]} for i in fits]
        params = []
        for call in (calls[i] for i in fits):
            p = call.params
            params.append(self._sampling_params(
                n=1, temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_new_tokens,
                seed=p.seed if p.temperature > 0 else None, stop=list(p.stop) or None,
            ))
        outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False) if prompts else []
        for i, prompt, out in zip(fits, prompts, outputs):
            completion = out.outputs[0]
            results[i] = CallResult(
                text=completion.text, prompt_tokens=len(prompt["prompt_token_ids"]),
                output_tokens=len(completion.token_ids),
            )
        return results  # type: ignore[return-value]

    # ---- scoring ------------------------------------------------------------------------------

    def next_token(self, calls: list[Call]) -> list[CallResult]:
        contexts = [self._encode(self.render(c)) for c in calls]
        firsts = [[self._first_token(c) for c in call.candidates] for call in calls]
        results: list[CallResult | None] = [None] * len(calls)
        fits = self._fitting(results, [(len(ctx), 1, "predicted token") for ctx in contexts])
        scores = self._score([(contexts[i], [[t] for t in firsts[i]]) for i in fits])
        for i, s in zip(fits, scores):
            results[i] = CallResult(logprobs=s, prompt_tokens=len(contexts[i]))
        return results  # type: ignore[return-value]

    def loglikelihood(self, calls: list[Call]) -> list[CallResult]:
        contexts = [self._encode(self.render(c)) for c in calls]
        conts = []
        for call in calls:
            ids = [self._encode(x) for x in call.candidates]
            for text, cont in zip(call.candidates, ids):
                if not cont:
                    raise ConfigError(f"continuation {text!r} encodes to no tokens")
            conts.append(ids)
        results: list[CallResult | None] = [None] * len(calls)
        fits = self._fitting(results, [(len(ctx), max(len(c) for c in cs), "continuation tokens (the longest option)")
                                       for ctx, cs in zip(contexts, conts)])
        scores = self._score([(contexts[i], conts[i]) for i in fits])
        for i, s in zip(fits, scores):
            results[i] = CallResult(logprobs=s, prompt_tokens=len(contexts[i]) + sum(len(c) for c in conts[i]))
        return results  # type: ignore[return-value]

    def _first_token(self, text: str) -> int:
        ids = self._encode(text)
        if not ids:
            raise ConfigError(f"candidate {text!r} encodes to no tokens")
        return ids[0]

    def _score(self, items: list[tuple[list[int], list[list[int]]]]) -> list[list[float]]:
        """For each (context, continuations): summed log P(continuation | context) per continuation."""
        if not items:
            return []
        flat = [(i, ctx, cont) for i, (ctx, conts) in enumerate(items) for cont in conts]
        unique = list(dict.fromkeys(tuple(ctx + cont) for _, ctx, cont in flat))
        params = self._sampling_params(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        outputs = self.llm.generate(
            [{"prompt_token_ids": list(p)} for p in unique], sampling_params=params, use_tqdm=False
        )
        by_prompt = {p: out.prompt_logprobs for p, out in zip(unique, outputs)}
        scores: list[list[float]] = [[] for _ in items]
        for i, ctx, cont in flat:
            logprobs = by_prompt[tuple(ctx + cont)]
            total = 0.0
            for j, token in enumerate(cont):
                entry = logprobs[len(ctx) + j]
                value = entry[token]
                total += float(getattr(value, "logprob", value))
            scores[i].append(total)
        return scores

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        shutdown = getattr(getattr(llm, "llm_engine", None), "shutdown", None) or getattr(llm, "shutdown", None)
        if callable(shutdown):
            shutdown()
        self.llm = None


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise ConfigError(
            f"backend=vllm needs the vllm package (pip install -e '.[vllm]' on a CUDA GPU machine); "
            f"importing it failed: {exc}"
        ) from None
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a base dependency
        raise ConfigError(f"backend=vllm needs torch: {exc}") from None
    if not torch.cuda.is_available():
        raise ConfigError(
            "backend=vllm needs a CUDA GPU, and torch.cuda.is_available() is False here; "
            "use backend=hf on CPU, or backend=openai against a `vllm serve` server"
        )
    for name in ("LLM", "SamplingParams"):
        if not hasattr(vllm, name):
            raise ConfigError(f"vllm {getattr(vllm, '__version__', '?')} has no vllm.{name}; it is too old or too new")
    return vllm


def _check_engine_args(vllm, wanted: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Our defaults plus engine_kwargs, checked against the installed vLLM's EngineArgs fields.

    A default this vLLM does not know is left out with a warning; an unknown engine_kwargs key is
    a configuration error (it was asked for explicitly)."""
    try:
        from vllm.engine.arg_utils import EngineArgs

        known = {f.name for f in dataclasses.fields(EngineArgs)}
    except Exception:  # noqa: BLE001 - layout changed: let vLLM validate
        return {**wanted, **extra}
    version = getattr(vllm, "__version__", "?")
    unknown = sorted(k for k in extra if k not in known)
    if unknown:
        raise ConfigError(f"backend.engine_kwargs: vllm {version} has no engine argument(s) {unknown}")
    args = {}
    for key, value in wanted.items():
        if key in known:
            args[key] = value
        else:
            log.warning("vllm %s has no engine argument %r; leaving %s=%r out", version, key, key, value)
    return {**args, **extra}
