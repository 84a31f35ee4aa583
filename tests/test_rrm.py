"""Recursive reward modeling: the reward-question task, the levels of assistance, what each reward
saw, and the reward metrics (AUROC, ECE, Brier) on known inputs."""

from __future__ import annotations

import math
import re

import pytest

from oversight.backends.base import Backend, Capabilities
from oversight.backends.hf import HFBackend
from oversight.engine import Engine
from oversight.errors import ConfigError
from oversight.graph import CallGraph
from oversight.metrics import auroc
from oversight.records import read_records
from oversight.metrics import reward_ece, reward_metrics
from oversight.app.run import run_job
from oversight.tasks import arithmetic, multihop
from oversight.types import CallResult
from tests.helpers import build_protocol
from tests.helpers import CountingBackend, job_config


@pytest.fixture(scope="module")
def hf(tiny_model_cfg):
    return HFBackend(tiny_model_cfg, {"name": "hf", "batch_size": 64})


class ArithmeticOracle(Backend):
    """Test double: a checker that adds perfectly. A loglikelihood call whose prefix is "a + b ="
    gives 0 to the true sum and -5 to every other candidate; anything else scores all candidates 0."""

    identity = "test:arithmetic-oracle"
    capabilities = Capabilities(engine="arithmetic oracle (a test double)", device="none")

    def loglikelihood(self, calls):
        results = []
        for call in calls:
            m = re.fullmatch(r"(\d+) \+ (\d+) =", call.prefix)
            truth = str(int(m.group(1)) + int(m.group(2))) if m else None
            results.append(CallResult(logprobs=[0.0 if c.strip() == truth or truth is None else -5.0
                                                for c in call.candidates], prompt_tokens=10))
        return results

    def generate(self, calls):
        return [CallResult(text="", prompt_tokens=1) for _ in calls]

    def next_token(self, calls):
        return self.loglikelihood(calls)


def run_rrm(backend, level, questions):
    protocol = build_protocol({"name": "rrm", "level": level})
    engine = Engine({"default": backend})
    outcomes = engine.run(questions, lambda q, ctx: protocol.run(q, ctx))
    assert all(o.error is None for o in outcomes)
    return outcomes


# ---- the task -----------------------------------------------------------------------------------


def test_wrong_answers_have_exactly_one_off_by_one_step():
    questions = arithmetic.answers(n=60, seed=2, terms=3)
    assert questions == arithmetic.answers(n=60, seed=2, terms=3)
    assert 15 < sum(q.metadata["proposed_correct"] for q in questions) < 45  # a mix
    for q in questions:
        steps = [c.model_dump() for c in q.claims]
        wrong = [k for k, s in enumerate(steps) if eval(s["text"].replace("=", "==")) is False]  # noqa: S307
        assert q.options == ["right", "wrong"] and q.reward_option == 0
        assert (q.correct == 0) == q.metadata["proposed_correct"] == (not wrong)
        if wrong:
            (k,) = wrong
            a, b, c = map(int, re.findall(r"\d+", steps[k]["text"]))
            assert abs(c - (a + b)) == 1 and k == q.metadata["slip_step"]
        for s in steps:  # a step holds iff both of its parts hold
            parts = [eval(p["text"].replace("=", "==")) for p in s["claims"]]  # noqa: S307
            assert len(parts) == 2 and all(parts) == eval(s["text"].replace("=", "=="))  # noqa: S307
        assert "right" not in q.question and "wrong" not in q.question  # the judge is not primed


# ---- levels -------------------------------------------------------------------------------------


def test_levels_add_one_layer_of_checks_each(hf):
    questions = arithmetic.answers(n=4, terms=3)
    calls = {}
    for level in (0, 1, 2, 3):
        backend = CountingBackend(hf)
        outcomes = run_rrm(backend, level, questions)
        calls[level] = sum(backend.batches)
        for o in outcomes:
            (t,) = o.value
            assert t.info["level"] == level
            if level == 0:  # the judge alone: nothing to read but the question
                assert not t.turns and not list(o.graph.nodes("call"))
                continue
            assert [turn.role for turn in t.turns] == ["checker", "checker", "critic"]
            checks = [d for _, d in o.graph.nodes("call") if d["label"] == "check"]
            assert all(d["level"] == 0 for d in checks)
            # level 1 checks each step directly; level 2+ checks each step's two parts (no deeper parts exist)
            assert sorted(d["path"] for d in checks) == (["1", "2"] if level == 1 else ["1.1", "1.2", "2.1", "2.2"])
            g = o.graph.g
            for i, (turn, step) in enumerate(zip(t.turns, t.info["assistance"]), 1):
                assert turn.node == step["node"] and step["level"] == level - 1
                if level >= 2:  # an assisted check rests on its parts' checks
                    assert sorted(g.nodes[p]["path"] for p in g.predecessors(turn.node)) == [f"{i}.1", f"{i}.2"]
                    assert [part["claim"] for part in step["parts"]] == [
                        c.text for c in o.question.claims[i - 1].claims]
            critic = t.turns[-1]
            assert set(g.predecessors(critic.node)) == {turn.node for turn in t.turns[:-1]}
        # all checks of all questions went to the backend in one batch
        assert backend.batches == ([] if level == 0 else [calls[level]])
    assert calls == {0: 0, 1: 8, 2: 16, 3: 16}  # 4 questions x (2 steps | 4 parts)


def test_checks_and_critique_follow_the_checker(tmp_path):
    """With a checker that adds perfectly, every level >= 1 verdict is right, and the critique says so
    in the question's own answer form."""
    questions = arithmetic.answers(n=20, seed=5, terms=3)
    for level in (1, 2):
        for o in run_rrm(ArithmeticOracle(), level, questions):
            (t,) = o.value
            truth = o.question.options[o.question.correct]
            assert t.info["verdict"] == truth
            assert t.turns[-1].text.endswith(f"So the working is {truth}.")
            slip = o.question.metadata["slip_step"]
            assert [s["ok"] for s in t.info["assistance"]] == [k != slip for k in range(2)]
            assert [s["holds"] for s in t.info["assistance"]] == [k != slip for k in range(2)]


def test_each_reward_records_the_assistance_it_saw(tiny_model_cfg, tmp_path):
    cfg = job_config(tiny_model_cfg, {"name": "rrm", "label": "rrm-l2", "level": 2}, n=6)
    cfg["task"] = {"name": "arithmetic_answers", "_target_": "oversight.tasks.arithmetic.ArithmeticAnswers", "n": 6}
    summary = run_job(cfg, tmp_path / "job")
    extra = summary["extra"]
    assert extra["level"] == 2 and extra["n_rewards"] == 6
    for key in ("reward_accuracy", "auroc", "ece", "brier", "calls_per_judged_answer", "assistant_verdict_accuracy",
                "step_check_accuracy", "step_false_alarm_rate", "step_miss_rate"):
        assert key in extra
    # reward accuracy is the judge's accuracy on the reward question, by construction
    assert extra["reward_accuracy"] == pytest.approx(summary["accuracy"])
    assert extra["calls_per_judged_answer"] == (4 + 2)  # 4 part checks + the judge in 2 orders
    for record in read_records(tmp_path / "job"):
        g = CallGraph.from_json(record.graph)
        judge = next(n for n, d in g.nodes(data=True) if d["label"] == "judge")
        seen = set(g.predecessors(judge))
        assert seen == {t.node for t in record.transcripts[0].turns}
        reward = record.judgments[0].p[0]
        assert 0.0 <= reward <= 1.0


def test_rrm_refuses_questions_without_claims(hf):
    with pytest.raises(ConfigError, match="task=arithmetic_answers"):
        run_rrm(hf, 1, multihop.generate(n=1))


# ---- metrics ------------------------------------------------------------------------------------


def test_auroc_on_known_inputs():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert auroc([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0 and auroc([0.1, 0.2, 0.9], [1, 1, 0]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]) == 0.5  # ties count half
    assert auroc([0.3, 0.3, 0.7], [0, 1, 1]) == pytest.approx(0.75)
    assert math.isnan(auroc([0.2, 0.4], [1, 1]))
    with pytest.raises(ValueError):
        auroc([0.1], [1, 0])


def test_reward_metrics_on_known_inputs():
    m = reward_metrics([0.9, 0.6, 0.4, 0.2, 0.5], [True, False, False, True, True])
    assert m["reward_accuracy"] == pytest.approx((1 + 0 + 1 + 0 + 0.5) / 5)
    assert m["brier"] == pytest.approx((0.01 + 0.36 + 0.16 + 0.64 + 0.25) / 5)
    assert m["auroc"] == pytest.approx(auroc([0.9, 0.6, 0.4, 0.2, 0.5], [1, 0, 0, 1, 1]))
    assert m["mean_reward_correct"] == pytest.approx(1.6 / 3) and m["mean_reward_wrong"] == pytest.approx(0.5)
    # a perfectly calibrated reward: half of the 0.5s are right, all of the 1.0s
    assert reward_ece([0.5, 0.5, 1.0, 1.0], [True, False, True, True]) == pytest.approx(0.0)
    assert reward_ece([0.95, 0.95], [False, False]) == pytest.approx(0.95)
