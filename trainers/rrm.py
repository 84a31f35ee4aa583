"""Recursive reward modeling with trained reward models (Leike et al. 2018), in miniature.

Reward questions are worked sums (`task=arithmetic_answers`). Each level has its own, harder kind of
item, and the reward model trained at level k is the assistant that helps label level k+1:

- level 0: the smallest claims (the parts of each step: "72 + 30 = 102", "102 + 8 = 110"), labelled
  by the checker model unassisted (it recomputes the cloze "72 + 30 =" and passes the claim when the
  claimed value is likelier than its neighbours: protocols.rrm's level-0 check);
- level 1: the steps ("72 + 38 = 110"), labelled by the judge after reading what the level-0 reward
  model says of each part ("the level-0 reward model gives 0.91: checks out") and a critique;
- level 2: the whole workings, labelled by the judge after reading what the level-1 reward model
  says of each step.

At every level a reward model is a logistic-regression head (oversight.train.reward_head) on frozen
features of the embedded model (oversight.train.features): for a claim "a + b = c", the
log-likelihood of c after "a + b =" minus that of c - 1 and c + 1 (min and mean) and that
log-likelihood itself, read where the level-0 checker reads them (after its chat prompt;
`feature_prompt=plain`: after the bare "a + b ="); for a working, the step rows pooled (min and
mean). `features=all` adds the last hidden state (576 numbers), which the heads overfit at these
sizes (docs/training.md has both tables). It is trained on the level's
labels for the training split (never the ground truth) and scored against the ground truth on the
held-out split (split by seed). Reference points frame it (Burns et al. 2023): the floor head,
trained on the judge's verdicts with no assistance at all, the majority-class constant, and the
ceiling, trained on the ground truth; performance gap recovered = (RM - floor) / (ceiling - floor),
with floor = max(floor head, majority constant), so that a judge calling every item wrong cannot
put the floor below chance (the table shows PGR against the floor head alone beside it).

A best-of-N policy samples N candidate answers per held-out item (right with probability 1/2,
otherwise one value or step off by one, as the task's policy does) and keeps the one the reward
model rewards most: policy accuracy by N shows over-optimisation of a weak reward model.

Every label is a graph node: the checker's call at level 0; at level k >= 1 one `reward_model` step
per sub-claim (attrs `level`, `reward`, `checkpoint`: the head that produced it), a `critique` step
depending on them, and the judge's calls depending on those, in records.jsonl of the level's directory.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
from pydantic import Field

from oversight.errors import ConfigError
from oversight.metrics import accuracy_ci, auroc
from oversight.plugins import Trainer, TrainingRun
from oversight.progress import RunProgress
from oversight.records import jsonable, write_records
from oversight.tasks import arithmetic
from oversight.tasks.split import split_questions
from oversight.train.provenance import write_provenance
from oversight.train.reward_head import (HeadConfig, RewardHead, best_of_n_accuracy, performance_gap_recovered,
                                         pgr_floor)
from oversight.types import Claim, Question, Record, Transcript, Turn

OPTIONS = ["right", "wrong"]  # option 0 is the reward option, as in arithmetic_answers
PREFIX = "The working is"


class RRMTrainer(Trainer):
    """`train: {_target_: trainers.rrm.RRMTrainer, ...}` (conf/train/rrm.yaml). The workings are the
    job's task (`task=arithmetic_answers`, whose n, seed, terms and digits draw them); the labelling
    episodes are this trainer's own, so a configured protocol is rejected (`protocol: null`)."""

    name: str = "rrm_train"
    n_train: int = Field(default=60, ge=4, description="workings of the task in the training split")
    n_heldout: int | None = Field(default=None, ge=4, description="held-out workings: at most this many of "
                                  "the rest (null: all of them)")
    seed: int = Field(default=0, description="draws the split")
    levels: int = Field(default=2, ge=0, le=2, description="the highest level (0: leaf claims, 1: steps, 2: workings)")
    candidates: list[int] = Field(default_factory=lambda: [1, 2, 4, 8], description="best-of-N sizes")
    floor: bool = Field(default=True, description="also train the floor head on the judge's unassisted verdicts")
    head: HeadConfig = Field(default_factory=HeadConfig)
    feature_batch: int = Field(default=64, ge=1)
    features: Literal["margins", "all"] = Field(default="margins", description="margins: the log-likelihood "
                                                "features alone; all: also the last hidden state")
    feature_prompt: Literal["checker", "plain"] = Field(
        default="checker", description="checker: read the features where the level-0 checker reads (its chat "
        "prompt, then 'a + b ='); plain: from the bare text 'a + b ='")
    features_cache: str | None = Field(default=None, description="SQLite file of extracted features "
                                       "(default runs/features/features.sqlite; keyed by the weights' content)")

    def run(self, job: TrainingRun) -> dict[str, Any]:
        from oversight.train.features import FrozenFeatures

        if job.protocol is not None:
            raise ConfigError(f"protocol: train={self.name} labels with its own episodes (the level-0 checker, "
                              f"then the judge reading the reward model below), so it runs no protocol; got "
                              f"{job.protocol.title!r}: drop protocol=... (the preset sets protocol: null)")
        questions = job.task.questions()
        _claims_of_all(questions, job.config["task"].get("name"))
        if self.n_train + 4 > len(questions):
            raise ConfigError(f"train.n_train={self.n_train} leaves fewer than 4 held-out workings of the task's "
                              f"{len(questions)} (task.n)")
        with RunProgress(job.console, job.progress) as progress:
            task = progress.add("rrm", total=self.levels + 1)

            def on_engine(engine: Any) -> None:
                s = engine.stats
                progress.update(task, stats=f"calls {s.calls} cached {s.cache_hits}")

            engine = job.build_engine(job.config, on_engine)
            backend = engine.backends["default"]
            caps = backend.capabilities
            if not caps.torch_model:
                raise ConfigError(f"backend: train=rrm reads its features from an in-process torch model, and "
                                  f"{caps.engine} runs none: use backend=hf")
            features_path = Path(self.features_cache or Path("runs") / "features" / "features.sqlite")
            # the attributes capabilities.torch_model promises (oversight.backends.base.Capabilities)
            frozen = FrozenFeatures(backend.path, features_path, model=backend.model, tokenizer=backend.tokenizer,
                                    batch_size=self.feature_batch, device=caps.device,
                                    use_chat_template=backend.use_chat_template)

            def say(message: str, done: int, total: int) -> None:
                progress.update(task, description=message)
                if done == total and message.endswith("done"):
                    progress.advance(task)

            try:
                summary = run_rrm_training(self, questions, engine, job.judge, frozen, job.out_dir, progress=say)
            finally:
                frozen.close()
                if engine.cache is not None:
                    engine.cache.close()
        job.console.print((job.out_dir / "table.md").read_text())
        job.console.print(f"rrm_train: {summary['wall_seconds']} s, {summary['features_extracted']} feature pairs "
                          f"extracted -> {job.out_dir}")
        return summary


@dataclass
class Item:
    """One thing to reward at some level: a claim (levels 0, 1) or a whole working (level 2)."""

    id: str
    level: int
    question: Question  # the item as a two-option reward question (what the judge reads)
    claims: list[dict]  # level 0/1: [the claim]; level 2: the steps
    parts: list[dict] = field(default_factory=list)  # what the level below rewards (sub-claims)
    holds: bool = False  # ground truth, for scoring only

    @property
    def claim(self) -> dict:
        return self.claims[0]


# ---- items and candidates ---------------------------------------------------------------------


def build_items(questions: list[Question]) -> dict[int, list[Item]]:
    """Split every working into its three levels of items."""
    items: dict[int, list[Item]] = {0: [], 1: [], 2: []}
    for q in questions:
        steps = _claims_of(q)
        items[2].append(Item(q.id, 2, _reward_question(q.id, q.question, q.correct == 0), steps, steps,
                             holds=q.correct == 0))
        for i, step in enumerate(steps, 1):
            parts = step.get("claims") or [step]
            items[1].append(Item(f"{q.id}/{i}", 1, claim_question(f"{q.id}/{i}", step), [step], parts,
                                 holds=bool(step["holds"])))
            for k, part in enumerate(parts, 1):
                items[0].append(Item(f"{q.id}/{i}.{k}", 0, claim_question(f"{q.id}/{i}.{k}", part), [part],
                                     holds=bool(part["holds"])))
    return items


def claim_question(item_id: str, claim: dict) -> Question:
    """A claim as a one-step reward question, worded like the task's workings."""
    expression = claim["question"].removeprefix("What is ").removesuffix("?")
    return _reward_question(item_id, f"Check this working for {expression}: {claim['text']}.", bool(claim["holds"]))


def _reward_question(item_id: str, text: str, holds: bool) -> Question:
    return Question(id=item_id, question=text, options=list(OPTIONS), correct=0 if holds else 1, reward_option=0,
                    answer_prefix=PREFIX, metadata={"family": "rrm_train"})


def _claims_of(q: Question) -> list[dict]:
    if not q.claims:
        raise ConfigError(f"task: question {q.id} has no claims; train=rrm needs worked answers "
                          "(task=arithmetic_answers)")
    return [c.model_dump() for c in q.claims]


def _claims_of_all(questions: list[Question], task_name: str | None) -> None:
    for q in questions:
        if not q.claims or q.reward_option != 0 or q.options != OPTIONS:
            raise ConfigError(f"task: {task_name!r} question {q.id} is not a worked answer with steps and the "
                              f"options {OPTIONS}; train=rrm needs task=arithmetic_answers")


def candidates_for(item: Item, n: int, rng: random.Random) -> list[tuple[list[dict], bool]]:
    """n answers from the policy for the item's problem: each right with probability 1/2, otherwise
    with one value off by one (a working: one step off, later steps computed from it)."""
    out = []
    if item.level < 2:
        a, b = _operands(item.claim)
        for _ in range(n):
            c = a + b + (0 if rng.random() < 0.5 else rng.choice([-1, 1]))
            out.append(([arithmetic.claim(a, b, c)], c == a + b))
        return out
    numbers = [_operands(item.claims[0])[0]] + [_operands(s)[1] for s in item.claims]
    for _ in range(n):
        slip = rng.randrange(len(numbers) - 1) if rng.random() < 0.5 else None
        running, steps = numbers[0], []
        for k, term in enumerate(numbers[1:]):
            result = running + term + (rng.choice([-1, 1]) if k == slip else 0)
            steps.append(arithmetic.claim(running, term, result))
            running = result
        out.append((steps, slip is None))
    return out


def _operands(claim: dict) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+) \+ (\d+) = (-?\d+)", claim["text"])
    if not match:
        raise ValueError(f"claim {claim['text']!r} is not 'a + b = c'")
    return int(match.group(1)), int(match.group(2))


# ---- features ---------------------------------------------------------------------------------


class Featurizer:
    """Claim and working features from oversight.train.features.FrozenFeatures."""

    def __init__(self, frozen: Any, kind: str = "all", prompt: str = "checker",
                 on_batch: Callable[[int], None] | None = None):
        self.frozen = frozen
        self.kind = kind
        self.prompt = prompt
        self.on_batch = on_batch

    def _pairs(self, claim: dict) -> list[tuple[str, str]]:
        from protocols.rrm import checker_messages

        values = [claim["value"]] + [a for a in claim["alternatives"] if a != claim["value"]]
        context = claim["prefix"] if self.prompt == "plain" else \
            self.frozen.chat_prefix(checker_messages(claim["question"]), claim["prefix"])
        return [(context, " " + v) for v in values]

    def claims(self, claims: list[dict]) -> np.ndarray:
        """One row per claim: [margins against each alternative..., log-likelihood, last hidden state]."""
        per_claim = [self._pairs(c) for c in claims]
        feats = self.frozen.pairs([p for pairs in per_claim for p in pairs], self.on_batch)
        rows, i = [], 0
        for pairs in per_claim:
            k = len(pairs)
            own, alts = feats[i], feats[i + 1:i + k]
            margins = [own.logprob - a.logprob for a in alts]
            scalars = [min(margins), float(np.mean(margins)), own.logprob]
            rows.append(np.asarray(scalars) if self.kind == "margins" else np.concatenate([scalars, own.last]))
            i += k
        return np.asarray(rows)

    def workings(self, workings: list[list[dict]]) -> np.ndarray:
        """One row per working: the step rows pooled (min and mean margins and log-likelihoods, mean hidden)."""
        flat = [s for w in workings for s in w]
        rows = self.claims(flat)
        out, i = [], 0
        for w in workings:
            block = rows[i:i + len(w)]
            out.append(np.concatenate([block[:, :3].min(0), block[:, :3].mean(0), block[:, 3:].mean(0)]))
            i += len(w)
        return np.asarray(out)

    def items(self, level: int, answers: list[list[dict]]) -> np.ndarray:
        return self.workings(answers) if level == 2 else self.claims([a[0] for a in answers])


# ---- labelling through the engine -------------------------------------------------------------


async def label_episode(item: Item, ctx: Any, judge: Any, assistant: dict[str, float] | None,
                        assistant_id: str | None, unassisted: bool) -> tuple[Transcript, Any, bool]:
    """Label one item. `unassisted`: the judge alone (the floor). Level 0: the checker alone.
    Level k >= 1: the judge reads the level-(k-1) reward model's rewards of the item's parts."""
    from protocols import rrm

    if item.level == 0 and not unassisted:
        checked = await rrm.check(ctx, Claim.model_validate(item.claim), 0, "1")
        info = {"level": 0, "labeller": "checker", "p_claim": checked.p}
        return Transcript(protocol="rrm_train", info=info), None, checked.ok
    turns, info = [], {"level": item.level, "labeller": "judge", "assistance": []}
    if not unassisted:
        failed = []
        for i, part in enumerate(item.parts, 1):
            r = assistant[part["text"]]
            ok = r >= 0.5
            node = ctx.step("reward_model", {"claim": part["text"], "reward": r}, level=item.level - 1,
                            checkpoint=assistant_id, claim=part["text"], reward=r, ok=ok)
            turns.append(Turn(role="assistant", node=node, text=(
                f'Step {i}, "{part["text"]}": the level-{item.level - 1} reward model gives {r:.2f}, '
                f'so it {"checks out" if ok else "is wrong"}.')))
            info["assistance"].append({"claim": part["text"], "reward": r, "ok": ok, "holds": part["holds"]})
            if not ok:
                failed.append(i)
        verdict, text = rrm.critique_of(item.question, failed)
        node = ctx.step("critique", text, deps=[t.node for t in turns], level=item.level, verdict=verdict)
        turns.append(Turn(role="critic", text=text, node=node))
        info["verdict"] = verdict
    transcript = Transcript(protocol="rrm_train", turns=turns, info=info)
    judgment = await judge.judge(item.question, transcript, ctx)
    return transcript, judgment, judgment.p is not None and judgment.p[0] > judgment.p[1]


def label_level(engine: Any, judge: Any, items: list[Item], out_dir: Path, *, assistant: dict[str, float] | None,
                assistant_id: str | None, unassisted: bool) -> list[bool]:
    """Run the labelling episodes of a level through the engine (batched across items) and write
    their records (graphs included)."""
    by_id = {i.question.id: i for i in items}

    async def episode(question: Question, ctx: Any):
        return await label_episode(by_id[question.id], ctx, judge, assistant, assistant_id, unassisted)

    outcomes = engine.run([i.question for i in items], episode)
    labels, records = [], []
    for outcome in outcomes:
        if outcome.value is None:
            raise RuntimeError(f"labelling {outcome.question.id} failed: {outcome.error}")
        transcript, judgment, label = outcome.value
        labels.append(label)
        q = outcome.question
        records.append(Record.of(
            q, "rrm_train", metadata={"label": label, "unassisted": unassisted}, transcripts=[transcript],
            judgments=[judgment] if judgment else [], correct=float(label == (q.correct == 0)),
            graph=outcome.graph.to_json()))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_records(out_dir, records)
    return labels


# ---- the whole run ----------------------------------------------------------------------------


def run_rrm_training(cfg: RRMTrainer, questions: list[Question], engine: Any, judge: Any, frozen: Any,
                     out_dir: str | Path, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Levels 0..cfg.levels on `questions` (worked answers): label, train, score, best-of-N. Returns
    the per-level table rows and writes heads (with provenance) and records under out_dir."""
    out_dir = Path(out_dir)
    started = time.perf_counter()
    say = progress or (lambda *a: None)
    train_q, held_q = split_questions(questions, cfg.n_train, cfg.seed)
    held_q = held_q[:cfg.n_heldout]
    train_items, held_items = build_items(train_q), build_items(held_q)
    features = Featurizer(frozen, cfg.features, cfg.feature_prompt)
    rng = random.Random(f"rrm_train:{cfg.seed}")
    n_max = max(cfg.candidates)
    rows: list[dict[str, Any]] = []
    assistant: dict[str, float] | None = None
    assistant_id: str | None = None
    for level in range(cfg.levels + 1):
        level_dir = out_dir / f"level{level}"
        train, held = train_items[level], held_items[level]
        if (level_dir / "metrics.json").exists() and (level_dir / "rm" / "head.pkl").exists():
            # finished by an earlier run of this job (a resumed run): reuse its head and row
            say(f"level {level}: finished earlier, reusing {level_dir}", 1, 1)
            rows.append(json.loads((level_dir / "metrics.json").read_text()))
            assistant_id = str(level_dir / "rm")
            assistant = _assistant_for(level, train_items, RewardHead.load(level_dir / "rm"), features)
            continue
        say(f"level {level}: features", 0, 1)
        x_train = features.items(level, [i.claims for i in train])
        x_held = features.items(level, [i.claims for i in held])
        truth_train = [i.holds for i in train]
        truth_held = [i.holds for i in held]
        say(f"level {level}: labels", 0, 1)
        labels = label_level(engine, judge, train, level_dir / "labels", assistant=assistant,
                             assistant_id=assistant_id, unassisted=False)
        heads = {"rm": RewardHead(cfg.head).fit(x_train, labels),
                 "ceiling": RewardHead(cfg.head).fit(x_train, truth_train)}
        floor_labels = None
        if cfg.floor:
            floor_labels = label_level(engine, judge, train, level_dir / "floor_labels", assistant=None,
                                       assistant_id=None, unassisted=True)
            heads["floor"] = RewardHead(cfg.head).fit(x_train, floor_labels)
        # best-of-N candidates for every held-out item, scored by each head
        pools = [candidates_for(i, n_max, rng) for i in held]
        x_cand = features.items(level, [c for pool in pools for c, _ in pool])
        good = [[g for _, g in pool] for pool in pools]
        row: dict[str, Any] = {"level": level, "items": _ITEM_NAMES[level], "n_train": len(train),
                               "n_heldout": len(held), "label_rate": _mean(labels),
                               "label_accuracy": _mean([y == t for y, t in zip(labels, truth_train)])}
        if floor_labels is not None:
            row["floor_label_accuracy"] = _mean([l == t for l, t in zip(floor_labels, truth_train)])
        for name, head in heads.items():
            reward = head.reward(x_held)
            hits = [float((r > 0.5) == t) if r != 0.5 else 0.5 for r, t in zip(reward, truth_held)]
            row[f"{name}_accuracy"] = _mean(hits)
            row[f"{name}_accuracy_ci"] = list(accuracy_ci(hits))
            row[f"{name}_auroc"] = auroc(list(reward), truth_held)
            row[f"{name}_degenerate"] = head.degenerate
            cand_reward = head.reward(x_cand).reshape(len(held), n_max)
            for n in cfg.candidates:
                row[f"{name}_bon{n}"] = best_of_n_accuracy(cand_reward.tolist(), good, n)
            checkpoint = head.save(level_dir / name)
            write_provenance(checkpoint, config={"rrm_train": cfg.model_dump(), "head": name, "level": level},
                             data=[{"id": i.id, "label": bool(y)} for i, y in
                                   zip(train, {"rm": labels, "ceiling": truth_train, "floor": floor_labels}[name])],
                             base_model=frozen.identity)
        # the majority-class constant of the training split's ground truth, scored on the held-out split
        majority = sum(truth_train) * 2 >= len(truth_train)
        row["majority_class"] = "right" if majority else "wrong"
        row["majority_accuracy"] = _mean([t == majority for t in truth_held])
        row["pgr_floor"] = pgr_floor(row.get("floor_accuracy"), row["majority_accuracy"])
        row["pgr"] = performance_gap_recovered(row["rm_accuracy"], row["pgr_floor"], row["ceiling_accuracy"],
                                               min_gap=PGR_MIN_GAP)
        if "floor" in heads:
            row["pgr_vs_floor_head"] = performance_gap_recovered(row["rm_accuracy"], row["floor_accuracy"],
                                                                 row["ceiling_accuracy"], min_gap=PGR_MIN_GAP)
        rows.append(row)
        (level_dir / "metrics.json").write_text(json.dumps(jsonable(row), indent=2))
        # the recursion: this level's reward model checks the parts of the next level's items
        assistant_id = str(level_dir / "rm")
        assistant = _assistant_for(level, train_items, heads["rm"], features)
        say(f"level {level}: done", 1, 1)
    summary = {"levels": rows, "config": cfg.model_dump(), "wall_seconds": round(time.perf_counter() - started, 1),
               "features_extracted": frozen.extracted}
    (out_dir / "summary.json").write_text(json.dumps(jsonable(summary), indent=2))
    (out_dir / "table.md").write_text(table(rows, cfg.candidates))
    return summary


def _assistant_for(level: int, items: dict[int, list[Item]], head: RewardHead, features: Featurizer
                   ) -> dict[str, float] | None:
    """The level-`level` reward model's reward of every part of the next level's training items."""
    parts = list({p["text"]: p for i in items.get(level + 1, []) for p in i.parts}.values())
    if not parts:
        return None
    return dict(zip([p["text"] for p in parts], map(float, head.reward(features.items(level, [[p] for p in parts])))))


# PGR is reported only where the ceiling beats the floor by this much held-out accuracy (4 of 40 workings)
PGR_MIN_GAP = 0.1

_ITEM_NAMES = {0: "parts of steps", 1: "steps", 2: "workings"}


def table(rows: list[dict[str, Any]], ns: list[int]) -> str:
    """The per-level table (markdown)."""
    head = ["level", "items", "label acc", "RM acc [95% CI]", "RM AUROC", "floor head acc", "majority acc",
            "ceiling acc", "PGR", "PGR vs floor head", *[f"BoN-{n}" for n in ns], *[f"ceiling BoN-{n}" for n in ns[-1:]]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ci = r["rm_accuracy_ci"]
        cells = [str(r["level"]), r["items"], _f(r["label_accuracy"]),
                 f"{_f(r['rm_accuracy'])} [{_f(ci[0])}, {_f(ci[1])}]" + (" (constant)" if r["rm_degenerate"] else ""),
                 _f(r["rm_auroc"]), _f(r.get("floor_accuracy")) + (" (constant)" if r.get("floor_degenerate") else ""),
                 _f(r.get("majority_accuracy")), _f(r["ceiling_accuracy"]), _f(r.get("pgr")),
                 _f(r.get("pgr_vs_floor_head")), *[_f(r[f"rm_bon{n}"]) for n in ns],
                 *[_f(r[f"ceiling_bon{n}"]) for n in ns[-1:]]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _f(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.3f}"


def _mean(xs: list) -> float:
    return sum(map(float, xs)) / len(xs) if xs else float("nan")
