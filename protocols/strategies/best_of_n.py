"""`best_of_n`: the arguer draws N candidate turns and keeps the one a preference model likes best
(Khan et al. 2024, best-of-N debaters).

The candidates are draws 0..N-1 of the `inner` strategy (`TurnRequest.draw = k`: sampled quote
choices for `quotes`, sampled arguments for `free`, a critiqued and rewritten draft for
`critique_refine`). The preference model scores each candidate as the judge would: the likelihood
judge's probability of the speaker's side given the transcript so far with the candidate appended,
averaged over both option orders. That is how much the candidate raises the judge's belief in the
side, up to the constant belief before it, so the ranking is the same; the probability itself is
what is recorded. The preference model is the role `preference`; left unbound in `roles`, it uses
the model bound to `judge` (the default model when neither is bound), as Khan et al. used the
judge's own model. With one draw (N = 1) the arguer is as weak as its inner strategy's sampling;
more draws get closer to the exhaustive best for this judge.

All N draws (and then all N x 2 preference calls) are started at once with asyncio.gather, so the
candidates of every question reach the backend in the same batches.

Call graph, per turn (what the DPO helper of issue 12 reads, so keep this format):
- the candidates are the inner strategy's nodes; for free text each is a `generate` call node whose
  `call.messages` is the turn prompt (for `critique_refine` inside: the rewrite prompt);
- each candidate's score is two `loglikelihood` call nodes labelled `preference` (one per option
  order), each depending on its candidate's node;
- one step node labelled `best_of_n` depends on all of them, with attrs `side`, `round`,
  `candidates` (the candidates' node ids, in draw order), `scores` (preference score per
  candidate), `chosen` (index of the kept candidate) and `output` (its text). A DPO pair is
  prompt = the chosen candidate call's messages, chosen = the highest-scored candidate's text,
  rejected = the lowest-scored one's.
The returned turn is the chosen candidate's, with `node` set to the `best_of_n` step.
"""

from __future__ import annotations

import asyncio

from pydantic import Field

from judges.model import SYSTEM as JUDGE_SYSTEM
from judges.view import render
from oversight.engine import Context
from oversight.metrics import softmax
from oversight.plugins import TurnRequest, TurnStrategy
from oversight.types import Transcript, Turn

LABEL = "best_of_n"


class BestOfN(TurnStrategy):
    n: int = Field(default=4, ge=1, description="candidate turns drawn per turn")
    inner: TurnStrategy = Field(description="the strategy whose draws 0..n-1 are the candidates")
    role: str = Field(default="preference", description="model role of the preference model")
    both_orders: bool = Field(default=True, description="score each candidate in both option orders")

    async def turn(self, ctx: Context, req: TurnRequest) -> Turn:
        candidates: list[Turn] = list(await asyncio.gather(
            *(self.inner.turn(ctx, req.model_copy(update={"draw": k})) for k in range(self.n))))
        scored = await asyncio.gather(*(self.preference(ctx, req, c, k) for k, c in enumerate(candidates)))
        scores = [score for score, _ in scored]
        chosen = max(range(self.n), key=lambda k: (scores[k], -k))  # ties: the earliest draw
        deps = [c.node for c in candidates if c.node] + [node for _, nodes in scored for node in nodes]
        step = ctx.step(LABEL, candidates[chosen].text, deps=deps, role=req.role, side=req.side,
                        round=req.round, candidates=[c.node for c in candidates], scores=scores, chosen=chosen)
        return candidates[chosen].model_copy(update={"node": step})

    async def preference(self, ctx: Context, req: TurnRequest, candidate: Turn, draw: int) -> tuple[float, list[str]]:
        """The judge's probability of the candidate's side with the candidate appended to the
        transcript so far (mean over option orders), and the preference call nodes."""
        question = req.question
        transcript = Transcript(protocol=LABEL, turns=[*req.history, candidate])
        n_options = len(question.options)
        orders = [list(range(n_options))]
        if self.both_orders and n_options > 1:
            orders.append(orders[0][::-1])
        role = self.role if self.role in ctx.engine.roles or "judge" not in ctx.engine.roles else "judge"
        outs = await asyncio.gather(*(
            ctx.loglikelihood(role, [{"role": "system", "content": JUDGE_SYSTEM},
                                     {"role": "user", "content": render(question, transcript, order,
                                                                        show_options=False)}],
                              [" " + o for o in question.options], prefix=question.prefix,
                              deps=[candidate.node] if candidate.node else [], label="preference",
                              side=req.side, round=req.round, order=order, draw=draw)
            for order in orders))
        score = sum(softmax(out.logprobs)[req.side] for out in outs) / len(outs)
        return score, [out.node for out in outs]

