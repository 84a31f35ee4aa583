"""Cross-play tournament: arguer configurations of different strength debate each other (Khan et al.
2024, Figure 1), and each one's judge accuracy is measured under debate (self-play) and consultancy,
all on the same questions and in one job, so every call of every match goes through the same
batches.

`players` maps a name to a turn strategy (e.g. best-of-N quotes with N = 1, 4, 16). Per question:
- `crossplay:A|B` for every ordered pair of different players: A argues option 0, B option 1, so
  each pair meets in both side assignments; the judge's probability of each side is the game's
  soft outcome (oversight.ratings fits Bradley-Terry strengths from these, with the true side's
  edge as the advantage term);
- `debate:A` (if `selfplay`): A against itself, the usual debate; its judge accuracy;
- `consultancy:A:S` (if `consultancy`): A as a consultant for side S, for every side; judge
  accuracy averaged over the sides, as in the consultancy protocol.
Every transcript's `info` says `match` (crossplay | debate | consultancy) and `players` (one per
side, or the consultant). `extra_metrics` is the whole table (`tournament`).
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from typing import Any

from pydantic import Field, field_validator

from oversight.engine import Context
from oversight.metrics import accuracy_ci
from oversight.plugins import Protocol, TurnRequest, TurnStrategy
from oversight.ratings import Game, fit
from oversight.types import Question, Record, Transcript, Turn


class CrossPlay(Protocol):
    name: str = "crossplay"
    players: dict[str, TurnStrategy] = Field(description="name -> turn strategy of each arguer configuration")
    rounds: int = Field(default=1, ge=1)
    selfplay: bool = Field(default=True, description="also a self-play debate per player (debate accuracy)")
    consultancy: bool = Field(default=True, description="also consultancy per player, for every side")
    debater: str = Field(default="Debater", description="a debater's name as the judge reads it")
    consultant: str = Field(default="Consultant", description="a consultant's name as the judge reads it")

    @field_validator("players")
    @classmethod
    def _names(cls, players: dict[str, TurnStrategy]) -> dict[str, TurnStrategy]:
        if len(players) < 2:
            raise ValueError(f"needs at least 2 players, got {sorted(players)}")
        bad = [name for name in players if any(c in name for c in ":|")]
        if bad:
            raise ValueError(f"player names may not contain ':' or '|': {bad}")
        return players

    async def run(self, question: Question, ctx: Context) -> list[Transcript]:
        if len(question.options) != 2:
            raise ValueError(f"question {question.id}: cross-play debates need exactly 2 options, "
                             f"got {len(question.options)}")
        names = list(self.players)
        matches = [self.debate(question, ctx, a, b, "crossplay") for a in names for b in names if a != b]
        if self.selfplay:
            matches += [self.debate(question, ctx, a, a, "debate") for a in names]
        if self.consultancy:
            matches += [self.consult(question, ctx, a, side) for a in names for side in range(2)]
        return list(await asyncio.gather(*matches))

    async def debate(self, question: Question, ctx: Context, a: str, b: str, match: str) -> Transcript:
        turns: list[Turn] = []
        for r in range(self.rounds):
            seen = tuple(turns)
            turns += await asyncio.gather(*(
                self.players[name].turn(ctx, TurnRequest(question=question, side=side, role="debater",
                                                         label=self.debater, history=seen, round=r,
                                                         opponent_side=1 - side))
                for side, name in enumerate((a, b))))
        episode = f"crossplay:{a}|{b}" if match == "crossplay" else f"debate:{a}"
        return Transcript(protocol=self.name, turns=turns, episode=episode, info={"match": match, "players": [a, b]})

    async def consult(self, question: Question, ctx: Context, a: str, side: int) -> Transcript:
        turns: list[Turn] = []
        for r in range(self.rounds):
            turns.append(await self.players[a].turn(ctx, TurnRequest(
                question=question, side=side, role="consultant", label=self.consultant, history=tuple(turns),
                round=r)))
        return Transcript(protocol=self.name, turns=turns, assigned_side=side, episode=f"consultancy:{a}:{side}",
                          info={"match": "consultancy", "players": [a]})

    def extra_metrics(self, records: list[Record]) -> dict[str, Any]:
        return {"tournament": tournament(records)}


def tournament(records: list[Record], confidence: float = 0.95) -> list[dict[str, Any]]:
    """One row per player: Bradley-Terry rating with its CI (cluster-robust over questions),
    judge accuracy under self-play debate and consultancy (with CIs over questions), how often the
    judge sides with it as a consultant, and the mean preference score of its chosen turns (best-of-N
    players). Per-question scores are kept under `by_question` for paired comparisons."""
    games: list[Game] = []
    debate: dict[str, dict[str, float]] = defaultdict(dict)  # player -> question -> correctness
    consult: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    persuaded: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))  # judge took its side
    preference: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    players: set[str] = set()
    for record in records:
        transcripts = {t.episode: t for t in record.transcripts}
        chosen_scores = _chosen_preference(record.graph)
        for t in record.transcripts:
            match, names = t.info.get("match"), t.info.get("players") or []
            players.update(names)
            for turn in t.turns:
                if turn.node in chosen_scores and match in ("debate", "consultancy"):
                    preference[names[0]][match].append(chosen_scores[turn.node])
        for j in record.judgments:
            t = transcripts.get(j.episode)
            if t is None or j.p is None or j.pending or j.correct is None:
                continue
            match, names = t.info.get("match"), t.info.get("players") or []
            if match == "crossplay":
                games.append(Game(first=names[0], second=names[1], outcome=min(1.0, max(0.0, j.p[0])),
                                  advantage=1.0 if record.correct_index == 0 else -1.0, group=record.question_id))
            elif match == "debate":
                debate[names[0]][record.question_id] = j.correct
            elif match == "consultancy":
                consult[names[0]][record.question_id].append(j.correct)
                persuaded[names[0]][record.question_id].append(float(j.chosen == t.assigned_side))
    ratings = fit(games, ci="sandwich", confidence=confidence).by_player() if games else {}
    rows = []
    for name in sorted(players, key=lambda p: ratings[p].theta if p in ratings else -math.inf):
        r = ratings.get(name)
        by_question = {"debate": dict(debate[name]),
                       "consultancy": {q: sum(v) / len(v) for q, v in consult[name].items()},
                       "consultant_persuasion": {q: sum(v) / len(v) for q, v in persuaded[name].items()}}
        d, c, w = (list(by_question[k].values()) for k in ("debate", "consultancy", "consultant_persuasion"))
        row: dict[str, Any] = {
            "player": name,
            "rating": r.elo if r else None, "rating_low": r.elo_low if r else None,
            "rating_high": r.elo_high if r else None, "theta": r.theta if r else None,
            "crossplay_games": r.games if r else 0, "crossplay_mean_outcome": r.mean_outcome if r else None,
            "debate_accuracy": _mean(d), "debate_low": accuracy_ci(d)[0] if d else None,
            "debate_high": accuracy_ci(d)[1] if d else None, "debate_n": len(d),
            "consultancy_accuracy": _mean(c), "consultancy_low": accuracy_ci(c)[0] if c else None,
            "consultancy_high": accuracy_ci(c)[1] if c else None, "consultancy_n": len(c),
            # how often the judge takes the consultant's side, whichever side it argues (Arnesen et al.'s
            # consultant win rate): persuasiveness without regard to truth
            "consultant_persuasion": _mean(w), "consultant_persuasion_low": accuracy_ci(w)[0] if w else None,
            "consultant_persuasion_high": accuracy_ci(w)[1] if w else None,
            "preference_debate": _mean(preference[name]["debate"]),
            "preference_consultancy": _mean(preference[name]["consultancy"]),
            "by_question": by_question,
        }
        rows.append(row)
    return rows


def _chosen_preference(graph: dict[str, Any]) -> dict[str, float]:
    """best_of_n step node id -> the preference score of the candidate it kept."""
    return {node["id"]: node["scores"][node["chosen"]] for node in graph.get("nodes", ())
            if node.get("label") == "best_of_n" and node.get("scores")}


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
