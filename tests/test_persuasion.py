"""Stronger arguers on the tiny real model: best-of-N, critique-and-refine (cBoN), draws of the quotes
and free strategies, open consultancy and debate, the cross-play tournament and its report."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import yaml

from oversight.app.persuasion import best_of_n_table, report
from oversight.app.run import run_job
from oversight.backends.hf import HFBackend
from oversight.engine import Engine
from oversight.errors import ConfigError
from oversight.metrics import softmax
from oversight.plugins import Judge, Protocol, TurnRequest, TurnStrategy, build
from oversight.quotes import sentences
from oversight.tasks.hidden_passage import generate as hidden_passage
from oversight.types import Judgment

CONF = Path(__file__).resolve().parents[1] / "conf"


def conf(path: str) -> dict:
    spec = yaml.safe_load((CONF / path).read_text())
    spec.pop("defaults", None)
    return spec


def protocol_spec(name: str, strategy: dict) -> dict:
    return {**conf(f"protocol/{name}.yaml"), "strategy": strategy}


def best_of_n(n: int, inner: dict | None = None) -> dict:
    return {**conf("protocol/strategy/best_of_n.yaml"), "n": n, **({"inner": inner} if inner else {})}


@pytest.fixture(scope="module")
def hf(tiny_model_cfg):
    return HFBackend(tiny_model_cfg, {"name": "hf", "batch_size": 64})


def run(hf, spec: dict, n: int = 3):
    protocol = build(spec, "protocol", Protocol)
    judge = build(conf("judge/likelihood.yaml"), "judge")
    engine = Engine({"default": hf})

    async def episode(question, ctx):
        transcripts = await protocol.run(question, ctx)
        return transcripts, [await judge.judge(question, t, ctx) for t in transcripts]

    return engine.run(hidden_passage(n=n), episode), engine


def nodes(graph, label):
    return [(n, d) for n, d in graph.nodes() if d.get("label") == label]


def test_best_of_n_keeps_the_highest_scored_candidate_and_every_candidate_is_a_node(hf):
    outcomes, engine = run(hf, protocol_spec("debate", best_of_n(4)))
    for o in outcomes:
        g = o.graph.g
        (transcript,), _ = o.value
        steps = nodes(o.graph, "best_of_n")
        # the draws of both sides read the passage once: one reading node per sentence
        assert len(nodes(o.graph, "debater-read")) == len(sentences(o.question.context))
        assert sorted(d["side"] for _, d in steps) == [0, 1]
        for turn in transcript.turns:
            step = g.nodes[turn.node]
            assert step["label"] == "best_of_n" and step["side"] == turn.side and step["round"] == 0
            scores, candidates = step["scores"], step["candidates"]
            assert len(scores) == len(candidates) == 4
            assert scores[step["chosen"]] == max(scores)
            assert turn.text == step["output"] == g.nodes[candidates[step["chosen"]]]["output"]
            for k, candidate in enumerate(candidates):
                assert g.has_edge(candidate, turn.node)
                # each score is the judge-like probability of the side, from the candidate's two
                # preference calls (both option orders), which read the candidate
                prefs = [p for p in g.successors(candidate) if g.nodes[p]["label"] == "preference"]
                assert len(prefs) == 2 and all(g.has_edge(p, turn.node) for p in prefs)
                assert sorted(g.nodes[p]["order"] for p in prefs) == [[0, 1], [1, 0]]
                assert all(g.nodes[p]["call"]["kind"] == "loglikelihood" for p in prefs)
                recomputed = sum(softmax(g.nodes[p]["output"]["logprobs"])[turn.side] for p in prefs) / 2
                assert scores[k] == pytest.approx(recomputed)
    # all candidates of all questions are asked together: one batch per stage, not one per draw
    assert engine.stats.batches <= 4


class LatestDrawPreferenceDouble(Judge):
    """Test double: a preference judge that gives the speaker's side 0.1 + 0.2 x the candidate's draw
    number (the seed of its generate call), so best-of-N must keep the last draw."""

    name: str = "latest-draw-double"

    async def judge(self, question, transcript, ctx):
        last = transcript.turns[-1]
        p = 0.1 + 0.2 * ctx.graph.g.nodes[last.node]["call"]["params"]["seed"]  # free text: seed = draw
        probs = [p, 1 - p] if last.side == 0 else [1 - p, p]
        return Judgment(judge=self.name, p=probs, chosen=0, correct=float(question.correct == 0))


def test_the_preference_model_is_a_judge_plugin(hf):
    spec = best_of_n(3, inner=conf("protocol/strategy/free.yaml") | {"word_limit": 12})
    spec["preference"] = {"_target_": f"{__name__}.LatestDrawPreferenceDouble"}
    outcomes, _ = run(hf, protocol_spec("debate", spec), n=2)
    for o in outcomes:
        g = o.graph.g
        (transcript,), _ = o.value
        assert not nodes(o.graph, "preference")  # the double makes no model call
        for turn in transcript.turns:
            step = g.nodes[turn.node]
            assert step["scores"] == pytest.approx([0.1, 0.3, 0.5]) and step["chosen"] == 2
            assert turn.text == step["output"]


def test_preference_role_falls_back_to_the_judges_model_only_when_unbound(hf):
    from judges.model import ModelJudge

    preference = build(conf("protocol/strategy/best_of_n.yaml")["preference"], "preference", Judge)
    assert isinstance(preference, ModelJudge) and preference.label == "preference"

    class Ctx:  # what _role reads of a Context: the engine's role bindings
        def __init__(self, roles):
            self.engine = Engine({"default": hf}, roles=roles)

    assert preference._role(Ctx({})) == "preference"  # the default model either way
    assert preference._role(Ctx({"judge": "default"})) == "judge"
    assert preference._role(Ctx({"judge": "default", "preference": "default"})) == "preference"


def test_quote_draws_sample_passage_sentences_and_draw_none_is_the_best(hf):
    quotes = build(conf("protocol/strategy/quotes.yaml"), "strategy", TurnStrategy)
    question = hidden_passage(n=1)[0]
    engine = Engine({"default": hf})

    async def episode(q, ctx):
        best = await quotes.turn(ctx, TurnRequest(question=q, side=0, role="debater", label="Debater"))
        draws = [await quotes.turn(ctx, TurnRequest(question=q, side=0, role="debater", label="Debater", draw=k))
                 for k in range(12)]
        again = await quotes.turn(ctx, TurnRequest(question=q, side=0, role="debater", label="Debater", draw=3))
        return best, draws, again

    ((best, draws, again),) = [o.value for o in engine.run([question], episode)]
    pool = sentences(question.context)
    support = dict(zip(pool, best_support(engine, question)))
    assert best.quotes[0].text == max(pool, key=lambda s: support[s])
    assert all(d.quotes[0].text in pool and d.quotes[0].verified for d in draws)
    assert again.text == draws[3].text  # a draw is reproducible
    assert len({d.text for d in draws}) > 1  # and draws differ


def best_support(engine, question):
    """The speaker's own support for side 0 of each passage sentence, read back from the cache-free
    backend with the same calls the strategy made."""
    from protocols.strategies.quotes import evidence_prompt
    from oversight.types import Call

    calls = [Call(kind="loglikelihood", messages=tuple(evidence_prompt(question, s)), prefix=question.prefix,
                  candidates=tuple(" " + o for o in question.options)) for s in sentences(question.context)]
    out = engine.backends["default"].run_sync(calls)
    return [r.logprobs[0] - math.log(sum(math.exp(x) for x in r.logprobs)) for r in out]


def test_free_draws_sample_with_the_draw_as_seed_and_draw_none_is_unchanged():
    free = build(conf("protocol/strategy/free.yaml"), "strategy", TurnStrategy)
    q = hidden_passage(n=1)[0]
    plain = free.params(TurnRequest(question=q, side=1, role="debater", label="Debater", round=2))
    assert (plain.temperature, plain.seed) == (0.0, 2 * 2 + 1)
    drawn = free.params(TurnRequest(question=q, side=1, role="debater", label="Debater", round=2, draw=5))
    assert drawn.temperature == free.draw_temperature > 0 and drawn.seed == 5


def test_cbon_graph_has_draft_critique_rewrite_and_preference_per_candidate(hf):
    cbon = conf("protocol/strategy/cbon.yaml")
    cbon["n"] = 2
    cbon["inner"]["word_limit"] = cbon["inner"]["inner"]["word_limit"] = 8
    cbon["inner"]["critique_words"] = 8
    outcomes, _ = run(hf, protocol_spec("debate", cbon), n=2)
    for o in outcomes:
        g = o.graph.g
        (transcript,), _ = o.value
        for turn in transcript.turns:
            step = g.nodes[turn.node]
            for candidate in step["candidates"]:
                rewrite = g.nodes[candidate]
                assert rewrite["label"] == "rewrite" and rewrite["call"]["kind"] == "generate"
                (critique,) = [p for p in g.predecessors(candidate) if g.nodes[p]["label"] == "critique"]
                assert g.nodes[critique]["role"] == "critic"
                (draft,) = [p for p in g.predecessors(critique) if g.nodes[p]["label"] == "debater"]
                assert g.has_edge(draft, candidate)  # the rewrite reads its draft and the critique
                assert g.nodes[draft]["call"]["params"]["seed"] == g.nodes[candidate]["draw"]
                assert "A critic's notes" in rewrite["call"]["messages"][-1]["content"]
                assert any(g.nodes[s]["label"] == "preference" for s in g.successors(candidate))


@pytest.mark.parametrize("name", ["open_consultancy", "open_debate"])
def test_open_protocols_record_the_side_the_arguer_believes(hf, name):
    outcomes, _ = run(hf, protocol_spec(name, conf("protocol/strategy/quotes.yaml")), n=4)
    for o in outcomes:
        (transcript,), (judgment,) = o.value
        info = transcript.info
        ((_, belief),) = nodes(o.graph, "belief")
        logprobs = belief["output"]["logprobs"]
        assert info["chosen_side"] == max(range(2), key=lambda i: logprobs[i])
        assert info["chose_correctly"] == (info["chosen_side"] == o.question.correct)
        assert info["belief"] == pytest.approx(softmax(logprobs))
        speakers = {t.side for t in transcript.turns}
        assert speakers == ({0, 1} if name == "open_debate" else {info["chosen_side"]})
    protocol = build(protocol_spec(name, conf("protocol/strategy/quotes.yaml")), "protocol", Protocol)
    from oversight.types import Record

    records = [Record(question_id=o.question.id, question=o.question.question, options=o.question.options,
                      correct_index=o.question.correct, protocol=name, transcripts=o.value[0],
                      judgments=o.value[1]) for o in outcomes]
    metrics = protocol.extra_metrics(records)
    chose = [o.value[0][0].info["chose_correctly"] for o in outcomes]
    assert metrics["arguer_correct_rate"] == pytest.approx(sum(chose) / len(chose))
    assert metrics["judge_accuracy_when_arguer_correct_n"] + metrics["judge_accuracy_when_arguer_wrong_n"] == 4
    followed = [float(o.value[1][0].chosen == o.value[0][0].info["chosen_side"]) for o in outcomes]
    assert metrics["judge_followed_rate"] == pytest.approx(sum(followed) / len(followed))


def test_crossplay_job_plays_every_pair_both_ways_and_the_report_rates_them(tiny_model_cfg, tmp_path):
    spec = conf("protocol/crossplay.yaml")
    spec["players"] = {k: spec["players"][k] for k in ("bon1", "bon4")}
    cfg = {"model": tiny_model_cfg, "backend": conf("backend/hf.yaml"), "task": {**conf("task/hidden_passage.yaml"),
           "n": 4}, "protocol": spec, "judge": conf("judge/likelihood.yaml"), "cache": {"enabled": False},
           "roles": {}, "models": {}}
    summary = run_job(cfg, tmp_path / "crossplay")
    rows = summary["extra"]["tournament"]
    assert sorted(r["player"] for r in rows) == ["bon1", "bon4"]
    for row in rows:
        assert row["crossplay_games"] == 4 * 2  # 4 questions, both side assignments
        assert row["debate_n"] == row["consultancy_n"] == 4
        assert row["rating_low"] < row["rating"] < row["rating_high"]  # a real interval, not a point
    # Elo-scale ratings are centred on 1000, and the order follows who won more of the games
    assert sum(r["rating"] for r in rows) / len(rows) == pytest.approx(1000.0, abs=1e-6)
    low, high = sorted(rows, key=lambda r: r["rating"])
    assert high["crossplay_mean_outcome"] >= low["crossplay_mean_outcome"]
    # how often the judge took each consultant's side, counted here from the records themselves
    from oversight.records import read_records

    for row in rows:
        sided = [float(j.chosen == t.assigned_side) for r in read_records(tmp_path / "crossplay")
                 for t in r.transcripts for j in r.judgments
                 if j.episode == t.episode and t.info["match"] == "consultancy" and t.info["players"] == [row["player"]]]
        assert len(sided) == 4 * 2 and row["consultant_persuasion"] == pytest.approx(sum(sided) / len(sided))
        assert sorted(row["by_question"]["consultant_persuasion"]) == sorted(row["by_question"]["debate"])
    written = report(tmp_path)
    assert (tmp_path / "persuasion.png").stat().st_size > 0
    with open(tmp_path / "ratings.csv") as f:
        assert [r["player"] for r in csv.DictReader(f)] == [r["player"] for r in written]
    # the N sweep table: the kept candidate scores at least the mean candidate, turn by turn
    (row,) = [line for line in best_of_n_table(tmp_path).splitlines() if line.startswith("| crossplay")]
    cells = [c.strip() for c in row.split("|")]
    assert cells[3] == "1/4" and float(cells[5]) >= float(cells[6])


def test_strategy_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"protocol.strategy.n: Input should be greater than or equal to 1"):
        build(protocol_spec("debate", best_of_n(0)), "protocol", Protocol)
    spec = conf("protocol/crossplay.yaml")
    spec["players"] = {"only": spec["players"]["bon1"]}
    with pytest.raises(ConfigError, match="protocol.players: .*at least 2 players"):
        build(spec, "protocol", Protocol)


def test_persuasion_preset_runs_the_tournament_and_writes_ratings_and_plot(tiny_model_dir, tmp_path):
    """`oversight -m +experiment=persuasion`, as a researcher runs it (a real process): the sweep
    callback writes ratings.csv, persuasion.md and persuasion.png next to the comparison."""
    import subprocess
    import sys

    args = ["-m", "+experiment=persuasion", "task.n=2", f"model.path={tiny_model_dir}", "model.package=null",
            "model.gguf_file=null", "model.name=tiny-llama", "progress=false"]
    proc = subprocess.run([sys.executable, "-m", "oversight.app.cli", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    sweep = tmp_path / "runs" / "persuasion"
    with open(sweep / "ratings.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["player"] for r in rows) == ["bon1", "bon16", "bon2", "bon4"]
    assert all(int(r["crossplay_games"]) == 2 * 2 * 3 for r in rows)  # 2 questions x 2 sides x 3 rivals
    assert "| bon16 |" in (sweep / "persuasion.md").read_text()
    assert (sweep / "persuasion.png").stat().st_size > 0 and (sweep / "comparison.md").exists()
