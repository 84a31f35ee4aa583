"""Metrics against hand computations and scipy's own reference values."""

from __future__ import annotations

import math

import pytest

from oversight.metrics import accuracy_ci, brier, expected_calibration_error, paired_difference, summarise
from oversight.types import Judgment, OrderJudgment, Record


def test_wilson_interval_for_binary_scores():
    low, high = accuracy_ci([1.0] * 130 + [0.0] * 70)
    # Wilson 95% interval for 130/200 (reference values from the closed form)
    z = 1.959963984540054
    p, n = 0.65, 200
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-9)


def test_t_interval_for_fractional_scores():
    scores = [1.0, 0.5, 0.5, 0.0, 1.0, 1.0]
    low, high = accuracy_ci(scores)
    mean = sum(scores) / 6
    assert low < mean < high and high - low > 0.3


def test_brier_and_calibration_by_hand():
    perfect = [(Judgment(judge="j", p=[1.0, 0.0], correct=1.0), 0)]
    assert brier(perfect) == 0.0 and expected_calibration_error(perfect) == 0.0
    coin = [(Judgment(judge="j", p=[0.5, 0.5], correct=0.5), 0)]
    assert brier(coin) == pytest.approx(0.5)
    # always 90% confident, right 60% of the time: ECE = 0.3
    overconfident = [(Judgment(judge="j", p=[0.9, 0.1], correct=1.0 if i < 6 else 0.0), 0 if i < 6 else 1)
                     for i in range(10)]
    assert expected_calibration_error(overconfident) == pytest.approx(0.3)


def test_paired_difference_matches_hand_computation():
    a = {f"q{i}": 1.0 for i in range(10)}
    b = {f"q{i}": (1.0 if i < 4 else 0.0) for i in range(10)}
    d = paired_difference(a, b)
    assert d["n"] == 10 and d["diff"] == pytest.approx(0.6)
    assert d["ci_low"] < 0.6 < d["ci_high"] and d["p_value"] < 0.01


def _record(qid, correct_index, judgments):
    return Record(question_id=qid, question="?", options=["a", "b"], correct_index=correct_index,
                  protocol="debate", judgments=judgments)


def test_summarise_scores_per_question_and_counts_position_flips_and_parse_failures():
    records = [
        _record("q1", 0, [Judgment(judge="j", p=[0.7, 0.3], chosen=0, correct=1.0, position_flip=False,
                                   orders=[OrderJudgment(order=[0, 1], p=[0.7, 0.3])])]),
        _record("q2", 1, [Judgment(judge="j", p=[0.6, 0.4], chosen=0, correct=0.0, position_flip=True,
                                   orders=[OrderJudgment(order=[0, 1], p=[], parse_failed=True)])]),
        # consultancy-style: two episodes, one right one wrong -> 0.5 for the question
        _record("q3", 0, [Judgment(judge="j", episode="correct", p=[0.9, 0.1], chosen=0, correct=1.0),
                          Judgment(judge="j", episode="incorrect-1", p=[0.2, 0.8], chosen=1, correct=0.0)]),
        _record("q4", 0, [Judgment(judge="other", p=[1.0, 0.0], chosen=0, correct=1.0)]),
    ]
    s = summarise(records, "j")
    assert s["n"] == 3 and s["accuracy"] == pytest.approx(0.5)
    assert s["position_bias_rate"] == pytest.approx(0.5)
    assert s["parse_failure_rate"] == pytest.approx(0.5)


def test_interval_never_collapses_when_every_question_scores_the_same():
    # the credulous judge under consultancy: right with the honest consultant, wrong with the other,
    # so every question scores 0.5 and the t interval would be [0.5, 0.5]
    low, high = accuracy_ci([0.5] * 400, n_judgments=800)
    # Wilson 95% interval for 400/800 (closed form): the 800 judgments count in full, since the two
    # episodes of a question cancel rather than agree
    z, p, n = 1.959963984540054, 0.5, 800
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (low, high) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-9)
    assert high - low > 0.06


def test_interval_with_a_handful_of_off_mode_questions_covers_the_wilson_interval():
    scores = [0.5] * 391 + [1.0] * 9
    low, high = accuracy_ci(scores, n_judgments=800)
    mean = sum(scores) / 400
    assert low < mean < high
    from oversight.metrics import wilson
    w_low, w_high = wilson(mean, 800)
    assert low <= w_low and high >= w_high


def test_t_interval_is_kept_when_the_scores_spread():
    from scipy import stats
    scores = [1.0] * 200 + [0.0] * 150 + [0.5] * 50
    mean = sum(scores) / len(scores)
    expected = stats.t.interval(0.95, len(scores) - 1, loc=mean, scale=stats.sem(scores))
    assert accuracy_ci(scores, n_judgments=800) == pytest.approx(tuple(map(float, expected)), abs=1e-12)


def test_summarise_counts_judgments_for_the_interval():
    records = [_record(f"q{i}", 0, [Judgment(judge="j", episode="correct", p=[0.9, 0.1], chosen=0, correct=1.0),
                                    Judgment(judge="j", episode="incorrect-1", p=[0.2, 0.8], chosen=1, correct=0.0)])
               for i in range(50)]
    s = summarise(records, "j")
    assert s["accuracy"] == 0.5
    from oversight.metrics import wilson
    assert s["accuracy_ci"] == pytest.approx(list(wilson(0.5, 100)), abs=1e-12)
