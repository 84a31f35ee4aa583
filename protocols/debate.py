"""Debate (Irving et al. 2018; Michael et al. 2023; Khan et al. 2024): two debaters, one per option.

Each debater sees the passage and argues for its option for `rounds` rounds. Turns are
`simultaneous` (each round, both see only earlier rounds) or `sequential` (the second debater also
sees the first's argument of the same round). With sequential turns, `first` says who opens each
round: side 0, side 1, `alternate` (a fixed coin per question id, so about half the questions each
way) or `both` (two debates per question, one per opening order, judged and averaged like
consultancy's two episodes), so a first- or last-mover advantage can be measured rather than
confounded. The judge sees all turns, quotes marked verified or unverified, but not the passage.

`interactive: true` (protocols/interactive.py): after every round but the last, the judge writes a
question (one `generate` call of role `judge`), which opens the next round; both debaters' turns
of that round see it and answer it, and the verdict reads the whole exchange. Off, nothing changes.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Literal

from pydantic import Field

from oversight.engine import Context
from oversight.plugins import Protocol, TurnRequest, TurnStrategy
from oversight.types import Question, Record, Transcript, Turn

from protocols.interactive import JudgeQuestions


class Debate(Protocol):
    name: str = "debate"
    rounds: int = Field(default=1, ge=1)
    turns: Literal["simultaneous", "sequential"] = "simultaneous"
    first: Literal[0, 1, "alternate", "both"] = 0
    strategy: TurnStrategy
    speakers: tuple[str, str] = Field(default=("Debater", "Debater"),
                                      description="each side's name as the judge reads it")
    interactive: bool = Field(default=False, description="the judge asks a question between rounds")
    judge_questions: JudgeQuestions = Field(default_factory=JudgeQuestions,
                                            description="how the judge asks (interactive only)")

    async def run(self, question: Question, ctx: Context) -> list[Transcript]:
        if len(question.options) != 2:
            raise ValueError(f"question {question.id}: debate needs exactly 2 options, got {len(question.options)}")
        if self.turns == "simultaneous":
            return [await self.debate(question, ctx, None, "main")]
        if self.first == "both":
            return list(await asyncio.gather(*(self.debate(question, ctx, side, f"first-{side}") for side in (0, 1))))
        first = opening_side(question.id) if self.first == "alternate" else self.first
        return [await self.debate(question, ctx, first, "main")]

    async def debate(self, question: Question, ctx: Context, first: int | None, episode: str) -> Transcript:
        turns: list[Turn] = []
        for r in range(self.rounds):
            if self.interactive and r > 0:
                turns.append(await self.judge_questions.ask(ctx, question, turns, r, episode, "debaters"))
            if first is None:
                seen = tuple(turns)
                turns += await asyncio.gather(*(self.strategy.turn(ctx, self.request(question, side, seen, r))
                                                for side in (0, 1)))
            else:
                for side in (first, 1 - first):
                    turns.append(await self.strategy.turn(ctx, self.request(question, side, tuple(turns), r)))
        info = {} if first is None else {"first_speaker": first}
        return Transcript(protocol=self.name, turns=turns, episode=episode, sequential=first is not None, info=info)

    def request(self, question: Question, side: int, history: tuple[Turn, ...], round: int) -> TurnRequest:
        return TurnRequest(question=question, side=side, role="debater", label=self.speakers[side],
                           history=history, round=round, opponent_side=1 - side)

    def extra_metrics(self, records: list[Record]) -> dict[str, Any]:
        return extra_metrics(records, self)


def opening_side(question_id: str) -> int:
    """`first: alternate`: a coin per question that does not change between runs or machines."""
    return hashlib.sha256(question_id.encode()).digest()[0] % 2


def extra_metrics(records: list[Record], cfg: Debate) -> dict[str, Any]:
    """Sequential turns: how often the judge sides with the debater who opened each round.

    `first_speaker_win_rate` is the share of judged debates whose chosen option was the opener's
    (ties count half); `first_speaker_p` the judge's mean probability on it. 0.5 is no order effect;
    with `first: both`, every question contributes one debate each way, so a gap from 0.5 is the
    order effect itself, not a difference between questions.
    """
    if cfg.turns != "sequential":
        return {}
    wins, probs = [], []
    for r in records:
        opener = {t.episode: t.info.get("first_speaker") for t in r.transcripts}
        for j in r.judgments:
            first = opener.get(j.episode)
            if first is None or j.p is None or j.pending:
                continue
            probs.append(j.p[first])
            wins.append(0.5 if j.p[0] == j.p[1] else float(j.chosen == first))
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {"first": cfg.first, "first_speaker_win_rate": mean(wins), "first_speaker_p": mean(probs),
            "debates_judged": len(wins)}
