"""`quotes`: the arguer's turn is the passage sentences that best support its side.

The model reads each sentence alone and scores how far it moves a reader towards the side's answer
(log P(answer | sentence, question), normalised over the options): the speaker models its reader.
Khan et al. (2024) found quotes alone about as informative to judges as quotes with arguments; with
a small model this is also the format it can do well. Both sides (and every protocol) ask the same
reading calls, so the engine answers them once per question.

Draws (`TurnRequest.draw = k`, asked by best-of-N): instead of the best-supported sentences, the
k-th draw samples `quotes_per_turn` sentences without replacement in proportion to
softmax(support / tau), with a generator seeded by (question, side, round, k). So one draw is a
weak arguer that often quotes an irrelevant sentence, N draws contain the best sentence more and
more often as N grows, and the same draw is the same quote in every protocol and run. `tau` sets
how much a single draw already follows the speaker's own reading (small: nearly the best; large:
nearly uniform). `draw = None` is unchanged: the best-supported sentences.

Interactive judging: when the judge has asked a question (protocols/interactive.py), each sentence
is read with the judge's question beside it, so the quote chosen is the one that best answers the
judge for the side; without one the reading calls are exactly as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import weakref

from pydantic import Field

from oversight.engine import Context, Output
from oversight.metrics import logsumexp
from oversight.plugins import TurnRequest, TurnStrategy
from oversight.quotes import extract, sentences
from oversight.types import Question, Turn

from protocols.interactive import latest_question


class Quotes(TurnStrategy):
    quotes_per_turn: int = Field(default=1, ge=1)
    tau: float = Field(default=1.0, gt=0.0, description="draws: temperature of the softmax over support")

    async def turn(self, ctx: Context, req: TurnRequest) -> Turn:
        question = needs_passage(req.question)
        pool = sentences(question.context)
        used = {q.text for t in req.history if t.side == req.side for q in t.quotes}
        candidates = [s for s in pool if s not in used] or pool
        if req.draw is None:
            support, nodes = await self.support(ctx, req, candidates)
            best = sorted(range(len(candidates)), key=lambda i: -support[i])[: self.quotes_per_turn]
        else:
            support, nodes = await self.shared_support(ctx, req, candidates)
            best = self.sample(req, support)
        return self.quote_turn(ctx, req, [candidates[i] for i in best], [nodes[i] for i in best],
                               [support[i] for i in best])

    async def support(self, ctx: Context, req: TurnRequest, candidates: list[str]) -> tuple[list[float], list[str]]:
        """How far each sentence, read alone, moves a reader towards the request's side."""
        scored = await self.read(ctx, req, candidates, side=req.side)
        return [out.logprobs[req.side] - logsumexp(out.logprobs) for out in scored], [out.node for out in scored]

    async def shared_support(self, ctx: Context, req: TurnRequest, candidates: list[str]
                             ) -> tuple[list[float], list[str]]:
        """`support` for draws: the N draws of a turn (and every player's draws in a tournament)
        read the same sentences with the same history, so they share one set of reading nodes per
        question instead of repeating them per draw in the graph (the calls are the same either way)."""
        key = (req.role, req.round, tuple(candidates), tuple(req.deps))
        shared = _READINGS.setdefault(ctx, {})
        if key not in shared:
            shared[key] = asyncio.ensure_future(self.read(ctx, req, candidates))
        outs = await shared[key]
        return [out.logprobs[req.side] - logsumexp(out.logprobs) for out in outs], [out.node for out in outs]

    async def read(self, ctx: Context, req: TurnRequest, candidates: list[str], **attrs) -> list[Output]:
        """The speaker reads each sentence alone: log P(option | sentence, question) per option.
        `attrs` go on the reading nodes (`side` when one speaker reads for itself alone)."""
        question = req.question
        options = [" " + o for o in question.options]
        asked = latest_question(req.history)
        return await asyncio.gather(*(
            ctx.loglikelihood(req.role, evidence_prompt(question, s, asked), options, prefix=question.prefix,
                              deps=req.deps, label=f"{req.role}-read", round=req.round, **attrs)
            for s in candidates
        ))

    def sample(self, req: TurnRequest, support: list[float]) -> list[int]:
        """The draw's sentences: sampled without replacement, weights softmax(support / tau)."""
        key = f"{req.question.id}|{req.side}|{req.round}|{req.draw}".encode()
        rng = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))
        top = max(support)
        weights = [math.exp((s - top) / self.tau) for s in support]
        chosen: list[int] = []
        for _ in range(min(self.quotes_per_turn, len(support))):
            left = [i for i in range(len(support)) if i not in chosen]
            chosen.append(rng.choices(left, weights=[weights[i] for i in left])[0])
        return chosen

    def quote_turn(self, ctx: Context, req: TurnRequest, chosen: list[str], nodes: list[str],
                   support: list[float]) -> Turn:
        """The turn quoting `chosen` (kept in passage order), as a graph step over the readings."""
        pool = sentences(req.question.context or "")
        order = sorted(range(len(chosen)), key=lambda i: pool.index(chosen[i]) if chosen[i] in pool else i)
        text = " ".join(f"<quote>{chosen[i]}</quote>" for i in order)
        node = ctx.step("argument", text, deps=[nodes[i] for i in order], role=req.role, side=req.side,
                        round=req.round, support=[support[i] for i in order])
        return Turn(role=req.role, label=req.label, side=req.side, round=req.round, text=text,
                    quotes=extract(text, req.question.context or ""), node=node)


_READINGS: "weakref.WeakKeyDictionary[Context, dict]" = weakref.WeakKeyDictionary()


def evidence_prompt(question: Question, sentence: str, asked: str | None = None) -> list[dict[str, str]]:
    """The reading prompt; `asked`: the judge's question (interactive judging), shown beside it."""
    judge = f"The judge asks: {asked}\n\n" if asked is not None else ""
    return [
        {"role": "system", "content": "Answer from the evidence."},
        {"role": "user", "content": f'Evidence: "{sentence}"\n\n{judge}Question: {question.question}'},
    ]


def needs_passage(question: Question) -> Question:
    if not question.context:
        raise ValueError(f"question {question.id}: argument turns need a passage (question.context)")
    return question
