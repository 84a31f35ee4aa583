"""Debate (Irving et al. 2018; Michael et al. 2023; Khan et al. 2024): two debaters, one per option.

Each debater sees the passage and argues for its option for `rounds` rounds. Turns are
`simultaneous` (each round, both see only earlier rounds) or `sequential` (the second debater also
sees the first's argument of the same round). With sequential turns, `first` says who opens each
round: side 0, side 1, `alternate` (a fixed coin per question id, so about half the questions each
way) or `both` (two debates per question, one per opening order, judged and averaged like
consultancy's two episodes), so a first- or last-mover advantage can be measured rather than
confounded. The judge sees all turns, quotes marked verified or unverified, but not the passage.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from oversight.arguments import ArgumentConfig, argue
from oversight.engine import Context
from oversight.types import Question, Record, Transcript, Turn


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "debate"
    rounds: int = Field(default=1, ge=1)
    turns: Literal["simultaneous", "sequential"] = "simultaneous"
    first: Union[Literal[0, 1], Literal["alternate", "both"]] = 0
    argument: ArgumentConfig = ArgumentConfig()


async def run(question: Question, ctx: Context, cfg: Config) -> list[Transcript]:
    if len(question.options) != 2:
        raise ValueError(f"question {question.id}: debate needs exactly 2 options, got {len(question.options)}")
    if cfg.turns == "simultaneous":
        return [await _debate(question, ctx, cfg, None, "main")]
    if cfg.first == "both":
        return list(await asyncio.gather(*(_debate(question, ctx, cfg, side, f"first-{side}") for side in (0, 1))))
    first = opening_side(question.id) if cfg.first == "alternate" else cfg.first
    return [await _debate(question, ctx, cfg, first, "main")]


def opening_side(question_id: str) -> int:
    """`first: alternate`: a coin per question that does not change between runs or machines."""
    return hashlib.sha256(question_id.encode()).digest()[0] % 2


async def _debate(question: Question, ctx: Context, cfg: Config, first: int | None, episode: str) -> Transcript:
    turns: list[Turn] = []
    for r in range(cfg.rounds):
        if first is None:
            seen = list(turns)
            turns += await asyncio.gather(
                *(argue(ctx, "debater", question, side, cfg.argument, seen, r, 1 - side) for side in (0, 1))
            )
        else:
            for side in (first, 1 - first):
                turns.append(await argue(ctx, "debater", question, side, cfg.argument, list(turns), r, 1 - side))
    info = {} if first is None else {"first_speaker": first}
    return Transcript(protocol=cfg.name, turns=turns, episode=episode, sequential=first is not None, info=info)


def extra_metrics(records: list[Record], cfg: Config) -> dict[str, Any]:
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
