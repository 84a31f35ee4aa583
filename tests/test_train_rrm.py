"""Reward models trained from protocol outcomes (RRM): heads on frozen features of a real (tiny)
model, labels from the level's judge and never from ground truth, the recursion in the call graph."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sklearn")

from oversight.engine import Engine  # noqa: E402
from oversight.train.features import FrozenFeatures  # noqa: E402
from oversight.train.reward_head import (  # noqa: E402
    HeadConfig, RewardHead, best_of_n_accuracy, performance_gap_recovered)
from oversight.types import Judgment  # noqa: E402


@pytest.fixture
def frozen(tiny_model_dir, tmp_path):
    f = FrozenFeatures(str(tiny_model_dir), tmp_path / "features.sqlite", batch_size=16)
    yield f
    f.close()


def test_reward_head_on_separable_labels_reaches_high_heldout_accuracy(frozen):
    # two kinds of answer text that the frozen features tell apart; the label is the kind
    rng = np.random.default_rng(0)
    cities = [f" The answer is {c}." for c in ("Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Quito", "Delhi", "Rome")]
    numbers = [f" {n} + {m} = {n + m}, so the answer is {n + m}." for n, m in rng.integers(10, 99, (40, 2))]
    texts = [(f"Question {i}:", t) for i, t in enumerate(cities * 5 + numbers)]
    labels = [True] * 40 + [False] * 40
    feats = frozen.pairs(texts)
    x = np.asarray([np.concatenate([f.last, f.mean]) for f in feats])
    order = rng.permutation(len(x))
    train, held = order[:50], order[50:]
    head = RewardHead(HeadConfig()).fit(x[train], [labels[i] for i in train])
    reward = head.reward(x[held])
    accuracy = np.mean([(r > 0.5) == labels[i] for r, i in zip(reward, held)])
    assert accuracy >= 0.9
    assert head.C in HeadConfig().Cs  # chosen by cross-validation on the training labels


def test_features_are_cached_on_disk_and_identical_when_reread(frozen, tiny_model_dir, tmp_path):
    pairs = [("12 + 30 =", " 42"), ("12 + 30 =", " 43")]
    first = frozen.pairs(pairs)
    assert frozen.extracted == 2
    again = FrozenFeatures(str(tiny_model_dir), tmp_path / "features.sqlite", model=frozen.model,
                           tokenizer=frozen.tokenizer)
    second = again.pairs(pairs)
    assert again.extracted == 0
    assert np.array_equal(first[0].last, second[0].last) and first[1].logprob == second[1].logprob
    assert first[0].logprob != first[1].logprob


def test_constant_labels_give_a_constant_head_that_says_so():
    head = RewardHead().fit(np.eye(4), [False] * 4)
    assert head.degenerate and list(head.reward(np.eye(3))) == [0.0, 0.0, 0.0]


def test_best_of_n_and_gap_recovered():
    rewards = [[0.9, 0.1, 0.5, 0.2], [0.1, 0.2, 0.3, 0.8]]
    good = [[False, True, True, True], [True, False, False, True]]
    assert best_of_n_accuracy(rewards, good, 1) == 0.5  # item 1 picks its only (bad) candidate
    assert best_of_n_accuracy(rewards, good, 2) == 0.0  # item 2 prefers the bad second candidate
    assert best_of_n_accuracy(rewards, good, 4) == 0.5
    assert performance_gap_recovered(0.7, 0.5, 0.9) == pytest.approx(0.5)


def test_pgr_floor_cannot_sit_below_the_majority_constant():
    from oversight.train.reward_head import pgr_floor

    # level 1 of the measured run: a floor head that calls every step wrong scores the minority share
    # (23 of 80), the majority constant 57 of 80; the ceiling 65 of 80 and the RM 63 of 80
    floor = pgr_floor(23 / 80, 57 / 80)
    assert floor == 57 / 80
    assert performance_gap_recovered(63 / 80, floor, 65 / 80, min_gap=0.1) == pytest.approx(0.75)
    # a gap of exactly 8 of 80 counts despite 0.8125 - 0.7125 rounding below 0.1
    assert 65 / 80 - 57 / 80 < 0.1
    assert performance_gap_recovered(63 / 80, 23 / 80, 65 / 80, min_gap=0.1) == pytest.approx(40 / 42)
    # a floor head above the constant is kept; no floor head: the constant
    assert pgr_floor(0.8, 0.6) == 0.8 and pgr_floor(None, 0.6) == 0.6


class AlwaysWrongJudgeDouble:
    """Test double: a judge that always picks the option that ground truth says is wrong."""

    name = "always-wrong-double"

    async def judge(self, question, transcript, ctx):
        p = [0.0, 1.0] if question.correct == 0 else [1.0, 0.0]
        return Judgment(judge=self.name, p=p, chosen=p.index(1.0), correct=0.0)


def test_labels_come_from_the_levels_judge_not_ground_truth(tiny_model_dir, tiny_model_cfg, tmp_path, frozen):
    from oversight.backends.hf import HFBackend
    from oversight.records import read_records
    from oversight.tasks import arithmetic
    from trainers.rrm import RRMTrainer, run_rrm_training

    engine = Engine(backends={"default": HFBackend(tiny_model_cfg, {"device": "cpu", "batch_size": 32})})
    cfg = RRMTrainer(n_train=10, candidates=[1, 2], floor=False)
    summary = run_rrm_training(cfg, arithmetic.answers(n=14), engine, AlwaysWrongJudgeDouble(), frozen, tmp_path / "rrm")
    rows = {r["level"]: r for r in summary["levels"]}
    for level in (1, 2):  # the judge labels levels 1 and 2: every label is the wrong one
        assert rows[level]["label_accuracy"] == 0.0
        data = [json.loads(line) for line in (tmp_path / "rrm" / f"level{level}" / "rm" / "data.jsonl").open()]
        records = {r.question_id: r for r in read_records(tmp_path / "rrm" / f"level{level}" / "labels")}
        # the reward model was trained on the judge's labels, which are the opposite of the truth
        assert all(d["label"] == (records[d["id"]].correct_index == 1) for d in data)
        head = RewardHead.load(tmp_path / "rrm" / f"level{level}" / "rm")
        assert head.label_rate == pytest.approx(1 - np.mean([r.correct_index == 0 for r in records.values()]))
    # the ceiling head saw the ground truth instead
    ceiling = [json.loads(line) for line in (tmp_path / "rrm" / "level2" / "ceiling" / "data.jsonl").open()]
    records = {r.question_id: r for r in read_records(tmp_path / "rrm" / "level2" / "labels")}
    assert all(d["label"] == (records[d["id"]].correct_index == 0) for d in ceiling)


def test_level_k_reward_model_assists_level_k_plus_1_in_the_call_graph(tiny_model_cfg, tmp_path, frozen):
    from oversight.backends.hf import HFBackend
    from oversight.plugins import build
    from oversight.graph import CallGraph
    from oversight.records import read_records
    from oversight.tasks import arithmetic
    from trainers.rrm import RRMTrainer, run_rrm_training

    engine = Engine(backends={"default": HFBackend(tiny_model_cfg, {"device": "cpu", "batch_size": 32})})
    judge = build({"_target_": "judges.model.ModelJudge", "name": "likelihood", "kind": "likelihood"}, key="judge")
    cfg = RRMTrainer(n_train=6, candidates=[1, 2])
    summary = run_rrm_training(cfg, arithmetic.answers(n=10), engine, judge, frozen, tmp_path / "rrm")
    assert [r["level"] for r in summary["levels"]] == [0, 1, 2]
    level0 = read_records(tmp_path / "rrm" / "level0" / "labels")
    assert all(any(a.get("label") == "check" for _, a in CallGraph.from_json(r.graph).nodes(data=True)) for r in level0)
    for level in (1, 2):
        for record in read_records(tmp_path / "rrm" / f"level{level}" / "labels"):
            g = CallGraph.from_json(record.graph)
            rm = [n for n, a in g.nodes(data=True) if a.get("label") == "reward_model"]
            assert rm and all(g.nodes[n]["checkpoint"].endswith(f"level{level - 1}/rm") for n in rm)
            critique = next(n for n, a in g.nodes(data=True) if a.get("label") == "critique")
            assert set(g.predecessors(critique)) == set(rm)
            judge_calls = [n for n, a in g.nodes(data=True) if a.get("label") == "judge"]
            assert judge_calls and all(critique in set(g.predecessors(n)) for n in judge_calls)
    table = (tmp_path / "rrm" / "table.md").read_text()
    assert table.count("\n") == 2 + 3 and "PGR" in table and "majority acc" in table
    for row in summary["levels"]:
        assert row["pgr_floor"] == max(row["floor_accuracy"], row["majority_accuracy"]) >= 0.5
    for level in (0, 1, 2):
        provenance = json.loads((tmp_path / "rrm" / f"level{level}" / "rm" / "provenance.json").read_text())
        assert provenance["config"]["level"] == level and provenance["libraries"]["scikit-learn"]


def test_checker_prompt_features_read_the_checkers_own_log_likelihoods(tiny_model_cfg, frozen):
    # feature_prompt=checker: the reward model's margins are the numbers the level-0 checker compares
    import asyncio

    from oversight.backends.hf import HFBackend
    from oversight.tasks import arithmetic
    from oversight.types import Claim, Question
    from protocols import rrm
    from trainers.rrm import Featurizer

    part = arithmetic.claim(72, 30, 103)
    engine = Engine(backends={"default": HFBackend(tiny_model_cfg, {"device": "cpu", "batch_size": 8})})
    outcome = engine.run([Question(id="q", question="q", options=["right", "wrong"], correct=1)],
                         lambda q, ctx: rrm.check(ctx, Claim.model_validate(part), 0, "1"))[0]
    call = outcome.graph.g.nodes[outcome.value.node]["output"]["logprobs"]  # what the checker compared
    rows = {p: Featurizer(frozen, "margins", p).claims([part])[0] for p in ("checker", "plain")}
    values = [part["value"]] + [a for a in part["alternatives"] if a != part["value"]]
    margins = [call[0] - x for x in call[1:]]
    assert len(values) == len(call) == 3
    assert rows["checker"][:2] == pytest.approx([min(margins), np.mean(margins)], abs=1e-3)
    assert rows["checker"][2] == pytest.approx(call[0], abs=1e-3)
    assert rows["plain"][2] != pytest.approx(call[0], abs=1e-3)  # the bare text reads other numbers
