"""`best_of_n`: the arguer draws N candidate turns and keeps the one a preference model likes best
(Khan et al. 2024, best-of-N debaters).

The candidates are draws 0..N-1 of the `inner` strategy (`TurnRequest.draw = k`: sampled quote
choices for `quotes`, sampled arguments for `free`, a critiqued and rewritten draft for
`critique_refine`). The preference model is a judge plugin (`preference`, built from its
`_target_` like any judge; conf/protocol/strategy/best_of_n.yaml: the likelihood judge on the role
`preference`, labelled `preference` in the graph). It scores each candidate as a judge would: its
probability of the speaker's side given the transcript so far with the candidate appended, averaged
over the option orders it judges in. That is how much the candidate raises the judge's belief in the
side, up to the constant belief before it, so the ranking is the same; the probability itself is
what is recorded. A judgment without probabilities (a generative judge's parse failure in every
order) scores 0. The role `preference` left unbound in `roles` uses the model bound to `judge`
(`fallback_role`; the default model when neither is bound), as Khan et al. used the judge's own
model. With one draw (N = 1) the arguer is as weak as its inner strategy's sampling;
more draws get closer to the exhaustive best for this judge.

All N draws (and then all N x 2 preference calls) are started at once with asyncio.gather, so the
candidates of every question reach the backend in the same batches.

Call graph, per turn (what the DPO helper of issue 12 reads, so keep this format):
- the candidates are the inner strategy's nodes; for free text each is a `generate` call node whose
  `call.messages` is the turn prompt (for `critique_refine` inside: the rewrite prompt);
- each candidate's score comes from the preference judge's call nodes (labelled `preference`, one
  per option order: two `loglikelihood` calls for the likelihood judge), each depending on its
  candidate's node and the turns before it;
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

from oversight.engine import Context
from oversight.plugins import Judge, TurnRequest, TurnStrategy, build
from oversight.types import Transcript, Turn

LABEL = "best_of_n"
# the preference model when the config names none: the likelihood judge on the role `preference`
# (named by `_target_` like any plugin in config, so this module imports no judge)
DEFAULT_PREFERENCE = {"_target_": "judges.model.ModelJudge", "name": "preference", "kind": "likelihood",
                      "role": "preference", "fallback_role": "judge", "label": "preference"}


class BestOfN(TurnStrategy):
    n: int = Field(default=4, ge=1, description="candidate turns drawn per turn")
    inner: TurnStrategy = Field(description="the strategy whose draws 0..n-1 are the candidates")
    preference: Judge = Field(default_factory=lambda: build(DEFAULT_PREFERENCE, "preference", Judge),
                              description="the judge whose probability of the speaker's side scores a candidate")

    async def turn(self, ctx: Context, req: TurnRequest) -> Turn:
        candidates: list[Turn] = list(await asyncio.gather(
            *(self.inner.turn(ctx, req.model_copy(update={"draw": k})) for k in range(self.n))))
        scored = await asyncio.gather(*(self.score(ctx, req, c) for c in candidates))
        scores = [score for score, _ in scored]
        chosen = max(range(self.n), key=lambda k: (scores[k], -k))  # ties: the earliest draw
        deps = [c.node for c in candidates if c.node] + [node for _, nodes in scored for node in nodes]
        step = ctx.step(LABEL, candidates[chosen].text, deps=deps, role=req.role, side=req.side,
                        round=req.round, candidates=[c.node for c in candidates], scores=scores, chosen=chosen)
        return candidates[chosen].model_copy(update={"node": step})

    async def score(self, ctx: Context, req: TurnRequest, candidate: Turn) -> tuple[float, list[str]]:
        """The preference judge's probability of the candidate's side with the candidate appended to
        the transcript so far, and the judge's call nodes."""
        transcript = Transcript(protocol=LABEL, turns=[*req.history, candidate])
        judgment = await self.preference.judge(req.question, transcript, ctx)
        score = judgment.p[req.side] if judgment.p else 0.0
        return score, [o.node for o in judgment.orders if o.node]
