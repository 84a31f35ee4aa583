"""Bradley-Terry ratings with confidence intervals from pairwise games with soft outcomes.

A game is two players and an outcome in [0, 1]: how much the first player won (in a debate, the
judge's probability of the first player's side; 1 and 0 are plain wins and losses, 0.5 a draw).
The model is P(first beats second) = sigmoid(theta_first - theta_second + beta * advantage), where
`advantage` (default 0) marks a known edge of the first player in that game, such as arguing for
the true answer: fitting `beta` keeps that edge out of the players' strengths. Strengths are fitted
by maximum likelihood (scipy, L-BFGS) of the soft outcomes,

    sum_g w_g * [y_g log p_g + (1 - y_g) log (1 - p_g)],

which with 0/1 outcomes is the usual Bradley-Terry likelihood. Ratings are centred (mean 0) and
also reported on the Elo scale (400 points = 10:1 odds, centred on 1000).

Confidence intervals:
- `fisher`: the inverse observed information at the maximum. It treats every outcome as a coin
  flip with that probability, so with soft outcomes (which vary far less than coin flips) it is
  conservative, and it treats games as independent.
- `sandwich`: the information matrix around the observed spread of the scores, summed per group
  of games (e.g. all games on one question): the cluster-robust interval, right for soft outcomes
  and for games that share a question. The default.
- `bootstrap`: resample groups of games and refit; percentiles. Slower; agrees with `sandwich`.
Nothing here knows about protocols or judges.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Hashable, Iterable, Literal, Sequence

import numpy as np
from pydantic import BaseModel, Field
from scipy import optimize, stats

ELO_PER_LOGIT = 400.0 / math.log(10.0)
ELO_CENTRE = 1000.0


class Game(BaseModel):
    """One game: `first` against `second`; `outcome` is how much `first` won, in [0, 1]."""

    first: str
    second: str
    outcome: float = Field(ge=0.0, le=1.0)
    advantage: float = Field(default=0.0, description="a known edge of `first` in this game (+1, -1, 0)")
    group: Hashable | None = Field(default=None, description="games resampled together by the bootstrap")
    weight: float = Field(default=1.0, gt=0.0)


class Rating(BaseModel):
    player: str
    theta: float = Field(description="strength in logits, centred on the players' mean")
    low: float
    high: float
    games: int
    mean_outcome: float = Field(description="mean outcome of this player's games, as first or second")

    @property
    def elo(self) -> float:
        return ELO_CENTRE + ELO_PER_LOGIT * self.theta

    @property
    def elo_low(self) -> float:
        return ELO_CENTRE + ELO_PER_LOGIT * self.low

    @property
    def elo_high(self) -> float:
        return ELO_CENTRE + ELO_PER_LOGIT * self.high


class Fit(BaseModel):
    ratings: list[Rating]
    advantage: float = Field(description="fitted beta: logit edge per unit of `advantage`")
    advantage_ci: tuple[float, float]
    method: str
    confidence: float
    n_games: int

    def by_player(self) -> dict[str, Rating]:
        return {r.player: r for r in self.ratings}

    def separated(self, a: str, b: str) -> bool:
        """Whether the two players' intervals do not overlap."""
        ra, rb = self.by_player()[a], self.by_player()[b]
        return ra.high < rb.low or rb.high < ra.low


def fit(
    games: Sequence[Game],
    *,
    ci: Literal["sandwich", "fisher", "bootstrap"] = "sandwich",
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
    fit_advantage: bool | None = None,
) -> Fit:
    """Fit Bradley-Terry strengths (and the advantage term when any game has one) with CIs."""
    games = list(games)
    if not games:
        raise ValueError("ratings.fit: no games")
    players = sorted({g.first for g in games} | {g.second for g in games})
    if len(players) < 2:
        raise ValueError(f"ratings.fit: need at least 2 players, got {players}")
    _check_connected(players, games)
    if fit_advantage is None:
        fit_advantage = any(g.advantage for g in games)
    data = _Data(players, games, fit_advantage)
    theta, beta = data.maximise()
    if ci in ("fisher", "sandwich"):
        low, high, beta_ci = data.intervals(theta, beta, confidence, robust=ci == "sandwich")
    elif ci == "bootstrap":
        low, high, beta_ci = _bootstrap(players, games, fit_advantage, confidence, resamples, seed)
    else:
        raise ValueError(f"ratings.fit: ci={ci!r} is unknown; valid: ['bootstrap', 'fisher', 'sandwich']")
    counts: dict[str, list[float]] = defaultdict(list)
    for g in games:
        counts[g.first].append(g.outcome)
        counts[g.second].append(1.0 - g.outcome)
    ratings = [
        Rating(player=p, theta=float(theta[i]), low=float(low[i]), high=float(high[i]), games=len(counts[p]),
               mean_outcome=float(np.mean(counts[p])))
        for i, p in enumerate(players)
    ]
    ratings.sort(key=lambda r: -r.theta)
    return Fit(ratings=ratings, advantage=float(beta), advantage_ci=beta_ci, method=ci, confidence=confidence,
               n_games=len(games))


def strengths(games: Sequence[Game], fit_advantage: bool | None = None) -> dict[str, float]:
    """The maximum-likelihood strengths alone (centred logits), without intervals: what `fit` rates,
    cheap enough to refit in every resample of an outer bootstrap (oversight.app.gap)."""
    games = list(games)
    players = sorted({g.first for g in games} | {g.second for g in games})
    if len(players) < 2:
        raise ValueError(f"ratings.strengths: need at least 2 players, got {players}")
    _check_connected(players, games)
    if fit_advantage is None:
        fit_advantage = any(g.advantage for g in games)
    theta, _ = _Data(players, games, fit_advantage).maximise()
    return {p: float(t) for p, t in zip(players, theta)}


class _Data:
    """Games as arrays, the centred parametrisation, and the likelihood."""

    def __init__(self, players: list[str], games: Sequence[Game], fit_advantage: bool):
        index = {p: i for i, p in enumerate(players)}
        self.k = len(players)
        self.first = np.array([index[g.first] for g in games])
        self.second = np.array([index[g.second] for g in games])
        self.y = np.array([g.outcome for g in games], dtype=float)
        self.x = np.array([g.advantage for g in games], dtype=float)
        self.w = np.array([g.weight for g in games], dtype=float)
        keys = [g.group if g.group is not None else ("game", i) for i, g in enumerate(games)]
        self.groups = sorted(set(keys), key=str)
        position = {key: i for i, key in enumerate(self.groups)}
        self.group_index = np.array([position[key] for key in keys])
        self.fit_advantage = fit_advantage
        # free parameters: theta_1..theta_{k-1} (theta_0 = 0), then beta; ratings are centred after
        self.n_free = self.k - 1 + (1 if fit_advantage else 0)

    def unpack(self, params: np.ndarray) -> tuple[np.ndarray, float]:
        theta = np.concatenate([[0.0], params[: self.k - 1]])
        beta = float(params[self.k - 1]) if self.fit_advantage else 0.0
        return theta, beta

    def negative_log_likelihood(self, params: np.ndarray) -> tuple[float, np.ndarray]:
        theta, beta = self.unpack(params)
        z = theta[self.first] - theta[self.second] + beta * self.x
        # y log s(z) + (1-y) log s(-z), stable for large |z|
        nll = float(np.sum(self.w * (np.logaddexp(0.0, -z) * self.y + np.logaddexp(0.0, z) * (1 - self.y))))
        residual = self.w * (stats.logistic.cdf(z) - self.y)  # d nll / d z
        grad_theta = np.bincount(self.first, residual, self.k) - np.bincount(self.second, residual, self.k)
        grad = list(grad_theta[1:])
        if self.fit_advantage:
            grad.append(float(np.sum(residual * self.x)))
        return nll, np.array(grad)

    def maximise(self) -> tuple[np.ndarray, float]:
        # a whisper of ridge keeps a player who won (or lost) every game at a finite strength
        ridge = 1e-6

        def objective(params):
            nll, grad = self.negative_log_likelihood(params)
            return nll + ridge * float(params @ params), grad + 2 * ridge * params

        result = optimize.minimize(objective, np.zeros(self.n_free), jac=True, method="L-BFGS-B")
        theta, beta = self.unpack(result.x)
        return theta - theta.mean(), beta

    def intervals(self, theta: np.ndarray, beta: float, confidence: float, robust: bool):
        z = theta[self.first] - theta[self.second] + beta * self.x
        p = stats.logistic.cdf(z)
        curvature = self.w * p * (1 - p)
        # design matrix of z over all k strengths (+ beta), then restrict to the free parameters
        design = np.zeros((len(z), self.k + (1 if self.fit_advantage else 0)))
        design[np.arange(len(z)), self.first] += 1
        design[np.arange(len(z)), self.second] -= 1
        if self.fit_advantage:
            design[:, -1] = self.x
        free = np.delete(design, 0, axis=1)
        information = free.T @ (free * curvature[:, None])
        covariance_free = np.linalg.pinv(information)
        if robust:
            scores = free * (self.w * (p - self.y))[:, None]  # each game's gradient of the nll
            per_group = np.zeros((len(self.groups), free.shape[1]))
            np.add.at(per_group, self.group_index, scores)
            meat = per_group.T @ per_group
            covariance_free = covariance_free @ meat @ covariance_free
        # centred strengths are a linear map of the free ones: theta_c = C @ [0, free_theta]
        lift = np.zeros((self.k, self.n_free))
        lift[1:, : self.k - 1] = np.eye(self.k - 1)
        centre = np.eye(self.k) - 1.0 / self.k
        to_theta = centre @ lift
        variance = np.einsum("ij,jk,ik->i", to_theta, covariance_free, to_theta)
        half = stats.norm.ppf(0.5 + confidence / 2) * np.sqrt(np.maximum(variance, 0.0))
        if self.fit_advantage:
            beta_half = stats.norm.ppf(0.5 + confidence / 2) * math.sqrt(max(covariance_free[-1, -1], 0.0))
            beta_ci = (beta - beta_half, beta + beta_half)
        else:
            beta_ci = (0.0, 0.0)
        return theta - half, theta + half, beta_ci


def _bootstrap(players, games, fit_advantage, confidence, resamples, seed):
    groups: dict[Hashable, list[Game]] = defaultdict(list)
    for i, g in enumerate(games):
        groups[g.group if g.group is not None else ("game", i)].append(g)
    keys = list(groups)
    rng = random.Random(seed)
    thetas, betas = [], []
    for _ in range(resamples):
        sample = [g for key in rng.choices(keys, k=len(keys)) for g in groups[key]]
        present = {g.first for g in sample} | {g.second for g in sample}
        if present != set(players):
            continue  # a resample that lost a player says nothing about its strength
        theta, beta = _Data(players, sample, fit_advantage).maximise()
        thetas.append(theta)
        betas.append(beta)
    if len(thetas) < resamples // 2:
        raise ValueError(f"ratings.fit: only {len(thetas)} of {resamples} bootstrap resamples kept every player; "
                         "too few groups")
    tail = (1 - confidence) / 2 * 100
    thetas_arr = np.array(thetas)
    low, high = np.percentile(thetas_arr, tail, axis=0), np.percentile(thetas_arr, 100 - tail, axis=0)
    beta_ci = (float(np.percentile(betas, tail)), float(np.percentile(betas, 100 - tail)))
    return low, high, beta_ci


def _check_connected(players: list[str], games: Iterable[Game]) -> None:
    """Strengths are only comparable within a connected set of players."""
    links: dict[str, set[str]] = defaultdict(set)
    for g in games:
        links[g.first].add(g.second)
        links[g.second].add(g.first)
    seen, todo = {players[0]}, [players[0]]
    while todo:
        for other in links[todo.pop()] - seen:
            seen.add(other)
            todo.append(other)
    if seen != set(players):
        raise ValueError(f"ratings.fit: players {sorted(set(players) - seen)} never meet {sorted(seen)}; "
                         "their strengths cannot be compared")
