"""`ScriptedBackend`: a TEST DOUBLE, not a model. It answers calls from a script, instantly and
deterministically, so protocols, turn strategies and judges can be unit-tested in milliseconds
(as Inspect AI's `mockllm` and ICE's `FakeAgent` do). The tiny real llama (tests/conftest.py) and
the embedded model stay the tests of real behaviour; never use this for a result.

- generate: `replies(call)` if given, else the next item of `texts` (cycled), else "scripted reply";
- next_token / loglikelihood: `scores(call)` if given, else a fixed rule that prefers candidates
  whose text occurs in the prompt (so a judge "follows the evidence" it is shown), ties by order.
Every call is recorded in `calls`, every batch size in `batches`.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

from oversight.backends.base import Backend, Capabilities
from oversight.types import Call, CallResult


class ScriptedBackend(Backend):
    def __init__(self, model_cfg: dict[str, Any] | None = None, backend_cfg: dict[str, Any] | None = None, *,
                 texts: Sequence[str] = (), replies: Callable[[Call], str] | None = None,
                 scores: Callable[[Call], list[float]] | None = None):
        self.identity = f"scripted:{(model_cfg or {}).get('name', 'test-double')}"
        self._texts = itertools.cycle(texts) if texts else None
        self._replies = replies
        self._scores = scores
        self.calls: list[Call] = []
        self.batches: list[int] = []

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(engine="scripted (a test double)", device="none")

    async def run(self, calls: list[Call]) -> list[CallResult]:
        self.batches.append(len(calls))
        return self.run_sync(calls)

    def generate(self, calls: list[Call]) -> list[CallResult]:
        out = []
        for call in calls:
            self.calls.append(call)
            text = self._replies(call) if self._replies else next(self._texts) if self._texts else "scripted reply"
            out.append(CallResult(text=text, prompt_tokens=len(self.render(call).split()),
                                  output_tokens=len(text.split())))
        return out

    def next_token(self, calls: list[Call]) -> list[CallResult]:
        return [self._score(call) for call in calls]

    def loglikelihood(self, calls: list[Call]) -> list[CallResult]:
        return [self._score(call) for call in calls]

    def _score(self, call: Call) -> CallResult:
        self.calls.append(call)
        if self._scores:
            logprobs = list(self._scores(call))
        else:
            prompt = " ".join(m["content"] for m in call.messages).lower()
            logprobs = [(-1.0 if c.strip().lower() and c.strip().lower() in prompt else -3.0) - 0.01 * i
                        for i, c in enumerate(call.candidates)]
        return CallResult(logprobs=logprobs, prompt_tokens=len(self.render(call).split()))
