"""Debaters trained on debate outcomes (Arnesen et al. 2024, in miniature): the protocol-side pieces.

- `preference_pairs(records)`: DPO pairs from best-of-N debates. Each `best_of_n` step node
  (protocols/strategies/best_of_n.py) lists its candidate nodes and their preference scores (the
  judge's probability of the speaker's side with that candidate appended); a pair is the turn's
  prompt (the candidates' shared `call.messages`), the highest-scored candidate's text as chosen and
  the lowest-scored one's as rejected. Turns whose candidates tie in score or text teach nothing
  and are skipped.
- `AsRole`: a turn strategy that makes its inner strategy speak as another model role, so two
  players of one cross-play tournament can be different models (the trained adapter and the base).
- `Split`: a task that keeps the training or the held-out part of another task, split by seed, so
  the debaters are evaluated on questions they were never trained on.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Literal

from pydantic import Field

from oversight.metrics import paired_difference
from oversight.plugins import Task, TurnRequest, TurnStrategy
from oversight.train.dpo import DPOConfig, DPOResult, Pair
from oversight.train.job import TrainJob
from oversight.types import Question, Record, Turn

BEST_OF_N = "best_of_n"


def preference_pairs(records: Iterable[Record], min_gap: float = 1e-6) -> list[Pair]:
    pairs = []
    for record in records:
        nodes = {n["id"]: n for n in record.graph.get("nodes", ())}
        for node in nodes.values():
            if node.get("label") != BEST_OF_N or not node.get("scores") or len(node.get("candidates", [])) < 2:
                continue
            scores, candidates = node["scores"], [nodes[c] for c in node["candidates"]]
            calls = [c for c in candidates if (c.get("call") or {}).get("kind") == "generate"]
            if len(calls) != len(candidates):
                continue  # quote-choice candidates (no generated text) give no DPO pair
            best = max(range(len(scores)), key=lambda k: (scores[k], -k))
            worst = min(range(len(scores)), key=lambda k: (scores[k], k))
            chosen, rejected = _text(candidates[best]), _text(candidates[worst])
            if scores[best] - scores[worst] < min_gap or chosen.strip() == rejected.strip():
                continue
            prompt = [{"role": m["role"], "content": m["content"]} for m in candidates[best]["call"]["messages"]]
            pairs.append(Pair(prompt=prompt, chosen=chosen, rejected=rejected, meta={
                "question": record.question_id, "node": node["id"], "side": node.get("side"),
                "round": node.get("round"), "chosen_score": scores[best], "rejected_score": scores[worst]}))
    return pairs


def _text(node: dict[str, Any]) -> str:
    return str((node.get("output") or {}).get("text") or "")


class AsRole(TurnStrategy):
    """The inner strategy's turn, spoken by the model bound to `role` (the judge still reads the
    protocol's label, e.g. "Debater", so it cannot tell the players apart by name)."""

    role: str = Field(description="model role, bound to a model in `roles`")
    inner: TurnStrategy

    async def turn(self, ctx: Any, req: TurnRequest) -> Turn:
        return await self.inner.turn(ctx, req.model_copy(update={"role": self.role}))


class Split(Task):
    """The `part` ("train" or "heldout") of `task`'s questions: the first `n_train` in an order drawn
    from `seed` are the training part, the rest held out."""

    name: str = "split"
    task: Task
    part: Literal["train", "heldout"]
    n_train: int = Field(ge=1)
    n_heldout: int | None = Field(default=None, ge=1, description="keep at most this many held-out questions")
    seed: int = 0

    def questions(self) -> list[Question]:
        questions = self.task.questions()
        if self.n_train >= len(questions):
            raise ValueError(f"task.n_train={self.n_train} leaves no held-out questions of {len(questions)}")
        order = sorted(questions, key=lambda q: hashlib.sha256(f"{self.seed}|{q.id}".encode()).hexdigest())
        if self.part == "train":
            return order[:self.n_train]
        return order[self.n_train:][:self.n_heldout]


class DebateTrain(TrainJob):
    """`train: {_target_: protocols.debate_train.DebateTrain, ...}` (conf/train/debate_dpo.yaml): best-of-N
    debates on `n_train` questions of the job's task, DPO on their preference pairs, then the trained
    and the base arguer in a cross-play tournament (protocols/crossplay.py) on the held-out rest."""

    name: str = "debate_train"
    n_train: int = Field(default=16, ge=1, description="questions whose best-of-N debates give the pairs")
    n_heldout: int | None = Field(default=None, ge=1, description="evaluate on at most this many of the rest "
                                                                  "(null: all of them)")
    seed: int = Field(default=0, description="draws the train / held-out split")
    best_of: int = Field(default=4, ge=2, description="candidates per turn in the data debates")
    word_limit: int = Field(default=32, ge=5)
    draw_temperature: float = Field(default=1.0, gt=0)
    rounds: int = Field(default=1, ge=1)
    dpo: DPOConfig = Field(default_factory=DPOConfig)
    trained_model: str = Field(default="trained", description="key of the trained adapter in `models`")


def table(rows: list[dict[str, Any]], result: DPOResult, n_pairs: int) -> str:
    """The evaluation table (markdown) with the training run it came from."""
    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.3f}"

    def ci(lo: Any, hi: Any) -> str:
        return "-" if lo is None else f"[{lo:.3f}, {hi:.3f}]"

    lines = ["| arguer | cross-play rating [95% CI] | mean cross-play outcome | debate judge accuracy [95% CI] | "
             "consultancy judge accuracy [95% CI] | judge sides with consultant [95% CI] | n |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        rating = "-" if r["rating"] is None else f"{r['rating']:.0f} [{r['rating_low']:.0f}, {r['rating_high']:.0f}]"
        lines.append(f"| {r['player']} | {rating} | {f(r['crossplay_mean_outcome'])} | "
                     f"{f(r['debate_accuracy'])} {ci(r['debate_low'], r['debate_high'])} | "
                     f"{f(r['consultancy_accuracy'])} {ci(r['consultancy_low'], r['consultancy_high'])} | "
                     f"{f(r.get('consultant_persuasion'))} "
                     f"{ci(r.get('consultant_persuasion_low'), r.get('consultant_persuasion_high'))} | "
                     f"{r['debate_n']} |")
    players = {r["player"]: r for r in rows}
    if {"dpo", "base"} <= set(players) and "by_question" in players["dpo"]:
        cells = []
        for key, name in (("debate", "debate accuracy"), ("consultancy", "consultancy accuracy"),
                          ("consultant_persuasion", "judge sides with consultant")):
            d = paired_difference(players["dpo"]["by_question"][key], players["base"]["by_question"][key])
            cells.append(f"{name} {d['diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]")
        lines.append("")
        lines.append("dpo - base, paired over held-out questions [95% CI]: " + "; ".join(cells) + ".")
    lines.append("")
    trained_on = n_pairs if result.train_pairs is None else result.train_pairs
    lines.append(f"DPO: {trained_on} training pairs, {result.steps} steps, batch loss {f(result.first_loss)} -> "
                 f"{f(result.last_loss)}, adapter moved {result.adapter_delta_norm:.4f} (L2 norm of the LoRA weights' "
                 f"change).")
    if result.eval_pairs:
        lines.append(f"Held-out pairs ({result.eval_pairs}, from questions kept out of DPO): loss {f(result.eval_loss)} "
                     f"(untrained: 0.693), chosen answer rewarded more on {f(result.eval_accuracy)} of them, mean "
                     f"reward margin {f(result.eval_margin)}.")
    return "\n".join(lines) + "\n"
