"""Bradley-Terry ratings (oversight.ratings): a synthetic tournament with known strengths."""

from __future__ import annotations

import math
import random

import pytest

from oversight.ratings import ELO_CENTRE, Game, fit


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _tournament(strengths: dict[str, float], questions: int, edge: float, seed: int) -> list[Game]:
    """Every pair meets on every question in both side assignments; the side given the true answer
    gets `edge` logits; an outcome is a noisy judge probability (soft), as in a debate."""
    rng = random.Random(seed)
    players = sorted(strengths)
    games = []
    for q in range(questions):
        difficulty = rng.gauss(0.0, 0.5)  # shared by the question's games: what the bootstrap must see
        for a in players:
            for b in players:
                if a == b:
                    continue
                honest = 1.0 if rng.random() < 0.5 else -1.0
                z = strengths[a] - strengths[b] + edge * honest + difficulty * honest + rng.gauss(0.0, 0.3)
                games.append(Game(first=a, second=b, outcome=_sigmoid(z), advantage=honest, group=q))
    return games


STRENGTHS = {"n1": -0.8, "n4": 0.0, "n16": 0.5, "cbon": 1.0}


@pytest.mark.parametrize("ci", ["sandwich", "fisher", "bootstrap"])
def test_recovers_known_order_and_strengths(ci):
    games = _tournament(STRENGTHS, questions=60, edge=1.5, seed=1)
    result = fit(games, ci=ci, resamples=200)
    order = [r.player for r in result.ratings]
    assert order == sorted(STRENGTHS, key=lambda p: -STRENGTHS[p])
    true_mean = sum(STRENGTHS.values()) / len(STRENGTHS)
    ratings = result.by_player()
    for player, strength in STRENGTHS.items():
        r = ratings[player]
        assert r.low < r.theta < r.high
        # the centred truth lies within a generous band of the estimate (soft outcomes shrink
        # nothing: the fit is the ML estimate of the same logistic model that made the data)
        assert abs(r.theta - (strength - true_mean)) < 0.25
        assert r.games == 60 * 2 * (len(STRENGTHS) - 1)
    assert result.separated("n1", "cbon")
    assert abs(result.advantage - 1.5) < 0.3
    assert result.advantage_ci[0] < result.advantage < result.advantage_ci[1]


def test_sandwich_agrees_with_the_bootstrap_and_fisher_is_conservative_for_soft_outcomes():
    games = _tournament(STRENGTHS, questions=40, edge=1.5, seed=2)
    width = {ci: sum(r.high - r.low for r in fit(games, ci=ci, resamples=300).ratings)
             for ci in ("sandwich", "bootstrap", "fisher")}
    assert 0.75 < width["sandwich"] / width["bootstrap"] < 1.33
    assert width["fisher"] > 1.5 * width["sandwich"]


def test_equal_players_are_not_separated_and_sit_at_the_centre():
    games = _tournament({"a": 0.0, "b": 0.0}, questions=30, edge=0.0, seed=3)
    result = fit(games)
    assert not result.separated("a", "b")
    for r in result.ratings:
        assert r.low < 0.0 < r.high
        assert r.elo_low < ELO_CENTRE < r.elo_high


def test_hard_outcomes_match_win_counts():
    # a beats b 3 times of 4: the ML strength gap of Bradley-Terry is log(3)
    games = [Game(first="a", second="b", outcome=y) for y in (1, 1, 1, 0)]
    result = fit(games).by_player()
    assert result["a"].theta - result["b"].theta == pytest.approx(math.log(3), abs=1e-3)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="never meet"):
        fit([Game(first="a", second="b", outcome=1), Game(first="c", second="d", outcome=0.5)])
    with pytest.raises(ValueError, match="no games"):
        fit([])
    with pytest.raises(ValueError, match="ci='exact'"):
        fit([Game(first="a", second="b", outcome=0.7)], ci="exact")
