"""Task decomposition: the multihop and arithmetic tasks, tree growth, depth limits, orders, the
decomposer seam, batching across trees, records, drawing and metrics (tiny real model)."""

from __future__ import annotations

import re

import pytest

from oversight.backends.hf import HFBackend
from oversight.engine import Engine
from oversight.errors import ConfigError
from oversight.graph import CallGraph, draw
from oversight.quotes import sentences
from oversight.app.run import run_job
from oversight.tasks import arithmetic, multihop
from tests.helpers import build_protocol
from protocols.decomposition import (SubQuestion, clean_answer, option_index, parse_subquestions, split_span,
                                     tree_graph)
from tests.helpers import CountingBackend, job_config, task_spec


@pytest.fixture(scope="module")
def hf(tiny_model_cfg):
    return HFBackend(tiny_model_cfg, {"name": "hf", "batch_size": 64})


def run(hf, protocol_cfg, questions):
    protocol = build_protocol({"name": "decomposition", **protocol_cfg})
    backend = CountingBackend(hf)
    engine = Engine({"default": backend})
    outcomes = engine.run(questions, lambda q, ctx: protocol.run(q, ctx))
    for o in outcomes:
        assert o.error is None, o.error
    return outcomes, backend, engine


def tree(outcome) -> dict[str, dict]:
    """path -> attrs of the tree's question nodes."""
    return {d["path"]: d for _, d in outcome.graph.nodes("step") if d["label"].startswith("Q")}


# ---- tasks --------------------------------------------------------------------------------------


def test_multihop_ground_truth_follows_the_facts_and_the_reference_spans_chain():
    questions = multihop.generate(n=20, seed=3, hops=3, n_people=5)
    assert questions == multihop.generate(n=20, seed=3, hops=3, n_people=5)  # seeded
    for q in questions:
        facts = sentences(q.context)
        relation = {m.group(1): m.group(3) for f in facts if (m := re.match(r"(\w+)'s (\w+) is (\w+)\.", f))}
        city = {m.group(1): m.group(2) for f in facts if (m := re.match(r"(\w+) lives in (\w+)\.", f))}
        chain = q.metadata["chain"]
        assert all(relation[a] == b for a, b in zip(chain, chain[1:]))
        assert len(set(q.options)) == 2 and q.options[q.correct] == city[chain[-1]]
        assert q.options[1 - q.correct] in {city[p] for p in chain[:-1]}  # the skipped-hop distractor
        ref = q.metadata["reference_decomposition"]
        assert ref["combine"] == "chain" and ref["units"] == 3
        assert ref["spans"]["0:3"]["question"].replace("{x}", chain[0]) == q.question
        # following the one-hop spans through the facts reaches the answer
        x = chain[0]
        for k in range(3):
            spec = ref["spans"][f"{k}:{k + 1}"]
            assert spec["x"] == x
            x = city[x] if k == 2 else relation[x]
            assert spec["answer"] == x
        assert q.answer_prefix == ref["spans"]["0:3"]["prefix"].replace("{x}", chain[0])


def test_arithmetic_totals_distractors_and_sub_sums():
    for q in arithmetic.generate(n=20, seed=1, terms=4, digits=2):
        numbers = [int(x) for x in q.question.removeprefix("What is ").rstrip("?").split(" + ")]
        assert len(numbers) == 4 and all(10 <= x <= 99 and x % 10 for x in numbers)
        assert q.options[q.correct] == str(sum(numbers))
        assert abs(int(q.options[1 - q.correct]) - sum(numbers)) in (1, 10)
        spans = q.metadata["reference_decomposition"]["spans"]
        assert spans["1:3"]["answer"] == str(numbers[1] + numbers[2])
        assert q.metadata["context_kind"] == "worked_solution"


@pytest.mark.parametrize("bad, key", [({"hops": 0}, "task.hops"), ({"n_people": 2, "hops": 3}, "task.n_people"),
                                      ({"distractor": "x"}, "task.distractor")])
def test_multihop_bad_arguments_name_the_key(bad, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        multihop.generate(n=2, **bad)


# ---- tree growth and depth limits ---------------------------------------------------------------


def test_reference_tree_grows_to_the_depth_limit(hf):
    questions = multihop.generate(n=3, hops=3)
    outcomes, _, _ = run(hf, {"max_depth": 2, "max_subquestions": 2}, questions)
    for o in outcomes:
        nodes = tree(o)
        # 3 hops cut in two: hop 1, then hops 2-3, which is cut again one level down
        assert {p: d["depth"] for p, d in nodes.items()} == {"root": 0, "1": 1, "2": 1, "2.1": 2, "2.2": 2}
        assert all(d["decomposer"] == "reference" and d["subquestion"] for d in nodes.values())
        g = o.graph.g
        labels = {n: d["label"] for n, d in g.nodes(data=True)}
        root = next(n for n, d in g.nodes(data=True) if d.get("path") == "root" and d["label"] == "Q")
        # the graph is the tree: question -> decompose -> sub-question ...; answers flow back up
        decompose = [n for n in g.successors(root) if labels[n] == "decompose"]
        assert len(decompose) == 2  # sequential: one proposal per sub-question
        leaves = [d for _, d in o.graph.nodes("call") if d.get("leaf")]
        assert sorted(d["path"] for d in leaves) == ["1", "2.1", "2.2"]
        recomposers = [n for n, d in g.nodes(data=True) if d["label"] == "recompose"]
        assert sorted(g.nodes[n]["path"] for n in recomposers) == ["2", "root"]
        final = next(n for n in recomposers if g.nodes[n]["path"] == "root")
        assert {g.nodes[p]["path"] for p in g.predecessors(final)} == {"root", "1", "2"}
        # sequential: the second sub-question was proposed after the first was answered
        q2 = next(n for n, d in g.nodes(data=True) if d.get("path") == "2" and d["label"] == "Q2")
        (proposer,) = g.predecessors(q2)
        assert any(g.nodes[p].get("path") == "1" and g.nodes[p]["label"] == "answer" for p in g.predecessors(proposer))
        (transcript,) = o.value
        assert [t.text.split(":")[0] for t in transcript.turns[:-1]] == ["Q1", "Q2", "Q2.1", "Q2.2"]
        assert transcript.turns[-1].role == "answer" and transcript.turns[-1].node == final
        assert transcript.info["decomposer"] == "reference" and transcript.info["tree_depth"] == 2


@pytest.mark.parametrize("depth, paths", [(0, ["root"]), (1, ["1", "2", "root"]),
                                          (2, ["1", "2", "2.1", "2.2", "root"]),
                                          (5, ["1", "2", "2.1", "2.2", "root"])])
def test_depth_limit(hf, depth, paths):
    outcomes, _, _ = run(hf, {"max_depth": depth, "max_subquestions": 2}, multihop.generate(n=2, hops=3))
    for o in outcomes:
        assert sorted(tree(o)) == paths
        (transcript,) = o.value
        assert transcript.info["tree_depth"] == min(depth, 2)
        if depth == 0:  # the answerer alone: retrieve a fact, answer from it
            assert [d["label"] for _, d in o.graph.nodes("call")] == ["retrieve", "answer"]


def test_max_subquestions_flattens_the_tree(hf):
    outcomes, _, _ = run(hf, {"max_depth": 1, "max_subquestions": 3}, multihop.generate(n=2, hops=3))
    assert all(sorted(tree(o)) == ["1", "2", "3", "root"] for o in outcomes)


def test_parallel_sub_questions_are_proposed_at_once_and_answered_in_one_batch(hf):
    questions = arithmetic.generate(n=3, terms=4)
    outcomes, backend, _ = run(hf, {"max_depth": 1, "order": "parallel"}, questions)
    for o in outcomes:
        g = o.graph.g
        (decompose,) = [n for n, d in g.nodes(data=True) if d["label"] == "decompose"]
        children = [n for n in g.successors(decompose)]
        assert sorted(g.nodes[n]["path"] for n in children) == ["1", "2"]
        assert [g.nodes[n]["subquestion"] for n in sorted(children, key=lambda n: g.nodes[n]["path"])] == [
            o.question.metadata["reference_decomposition"]["spans"][s]["question"] for s in ("0:2", "2:4")]
        # arithmetic leaves compute: they never see the worked solution
        assert not [d for _, d in o.graph.nodes("call") if d["label"] == "retrieve"]
        assert all("=" not in m["content"] for _, d in o.graph.nodes("call") for m in d["call"]["messages"]
                   if d["label"] == "answer")
    # both leaves of all three trees in one batch, then the three recompositions
    assert backend.batches == [6, 3]


def test_parallel_order_refuses_a_chain(hf):
    protocol = build_protocol({"name": "decomposition", "order": "parallel"})
    with pytest.raises(ConfigError, match="protocol.order=sequential"):
        Engine({"default": hf}).run(multihop.generate(n=1), lambda q, ctx: protocol.run(q, ctx))


# ---- batching across trees ----------------------------------------------------------------------


def test_calls_from_all_trees_share_backend_batches(hf):
    questions = multihop.generate(n=5, hops=3)
    outcomes, backend, engine = run(hf, {"max_depth": 2}, questions)
    calls = sum(1 for o in outcomes for _ in o.graph.nodes("call"))
    assert calls == 5 * 8  # 3 leaves x (retrieve, answer) + 2 recompositions, per tree
    # each stage of every tree went to the backend together: 8 batches of 5, not 40 of 1 (calls that
    # two trees happen to share are sent once)
    assert len(backend.batches) == engine.stats.batches == 8
    assert sum(backend.batches) + engine.stats.deduplicated == 40 and min(backend.batches) >= 4


# ---- decomposers --------------------------------------------------------------------------------


class ScriptedDecomposer:
    """Test double for the decomposer seam (where a human decomposer plugs in): fixed sub-questions."""

    kind = "scripted"

    def __init__(self, cfg):
        self.cfg = cfg

    async def propose(self, ctx, question, node, answered, deps, cfg):
        if node.depth > 0 or answered:
            return [], ""
        subs = [SubQuestion(f"Sub-question {k} of {question.id}?") for k in (1, 2)]
        return subs, ctx.step("decompose", [s.question for s in subs], deps=deps, decomposer=self.kind)

    def recompose_prefix(self, question, node):
        return node.sub.prefix


def test_a_decomposer_can_be_plugged_in_by_module_path(hf):
    outcomes, _, _ = run(hf, {"decomposer": "tests.test_decomposition.ScriptedDecomposer", "order": "parallel"},
                         multihop.generate(n=2))
    for o in outcomes:
        assert sorted(tree(o)) == ["1", "2", "root"]
        assert tree(o)["1"]["subquestion"] == f"Sub-question 1 of {o.question.id}?"
        assert o.value[0].info["decomposer"] == "scripted"


@pytest.mark.parametrize("order", ["parallel", "sequential"])
def test_model_decomposer_records_itself_and_always_terminates(hf, order):
    outcomes, _, _ = run(hf, {"decomposer": "model", "order": order, "max_depth": 2, "max_subquestions": 2},
                         multihop.generate(n=2))
    for o in outcomes:
        proposals = [d for _, d in o.graph.nodes("call") if d["label"] == "decompose"]
        assert proposals and all(d["decomposer"] == "model" for d in proposals)
        assert o.value[0].info["decomposer"] == "model" and o.value[0].turns[-1].role == "answer"


def test_unknown_decomposer_names_the_key():
    with pytest.raises(ConfigError, match="protocol.decomposer: 'oracle' is unknown"):
        build_protocol({"name": "decomposition", "decomposer": "oracle"})


def test_parse_subquestions_and_helpers():
    text = "1. Who wrote Hamlet?\n2) How old was he? A2: 52\n- none\nWho wrote Hamlet?\nnot a question\n3. Parent?"
    assert [s.question for s in parse_subquestions(text, "Parent?")] == ["Who wrote Hamlet?", "How old was he?"]
    assert split_span(0, 3, 2) == [(0, 1), (1, 3)] and split_span(0, 4, 2) == [(0, 2), (2, 4)]
    assert split_span(1, 3, 5) == [(1, 2), (2, 3)]
    assert clean_answer(' "Paris" ') == "Paris"


# ---- a whole job: records, drawing, metrics, other protocols on the same questions --------------


def test_job_records_the_tree_draws_it_and_reports_cost(tiny_model_cfg, tmp_path):
    task = {"name": "multihop", "_target_": "oversight.tasks.multihop.Multihop", "hops": 3}
    cfg = job_config(tiny_model_cfg, {"name": "decomposition", "label": "decomposition-d2", "max_depth": 2}, n=4)
    cfg["task"] = {**task, "n": 4}
    summary = run_job(cfg, tmp_path / "job")
    extra = summary["extra"]
    assert extra["max_depth"] == 2 and extra["decomposer"] == "reference"
    assert extra["mean_tree_depth"] == 2 and extra["subquestions_per_question"] == 4
    assert extra["protocol_calls_per_question"] == 8 and extra["calls_per_question"] == 10  # + judge, 2 orders
    assert extra["prompt_tokens_per_question"] > 0 and extra["accuracy_per_call"] is not None
    from oversight.records import read_records

    record = read_records(tmp_path / "job")[0]
    g = CallGraph.from_json(record.graph)
    assert {d.get("path") for _, d in g.nodes(data=True) if d.get("subquestion")} >= {"root", "1", "2", "2.1", "2.2"}
    # the judge read the tree: its node depends on every sub-answer and the final answer
    judge = [n for n, d in g.nodes(data=True) if d["label"] == "judge"]
    assert judge and {g.nodes[p]["path"] for p in g.predecessors(judge[0])} == {"root", "1", "2", "2.1", "2.2"}
    assert record.transcripts[0].info["decomposer"] == "reference"
    assert draw(record.graph, tmp_path / "graph.png").stat().st_size > 0
    tree = tree_graph(record.graph)
    assert sorted(tree.edges) == [("2", "2.1"), ("2", "2.2"), ("root", "1"), ("root", "2")]
    assert tree.nodes["2.1"]["depth"] == 2 and tree.nodes["root"]["answer"] == record.transcripts[0].info["answer"]
    assert draw(tree, tmp_path / "tree.png").stat().st_size > 0
    assert option_index(multihop.generate(n=1)[0], "nowhere") is None


@pytest.mark.parametrize("task", ["multihop", "arithmetic"])
def test_debate_and_consultancy_run_on_the_new_tasks(tiny_model_cfg, tmp_path, task):
    for protocol in ({"name": "debate"}, {"name": "consultancy"}):
        cfg = job_config(tiny_model_cfg, protocol, n=3)
        cfg["task"] = task_spec(task, n=3)
        summary = run_job(cfg, tmp_path / protocol["name"])
        assert summary["n"] == 3 and summary["n_failed"] == 0


@pytest.mark.parametrize("experiment, task, protocol, sweep", [
    ("amplification", "multihop", "decomposition", {"protocol.max_depth": "0,1,2"}),
    ("rrm", "arithmetic_answers", "rrm", {"protocol.level": "0,1,2"}),
])
def test_experiment_presets(experiment, task, protocol, sweep):
    from hydra import compose, initialize_config_dir

    from oversight.app.args import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={experiment}"], return_hydra_config=True)
    assert (cfg.name, cfg.task.name, cfg.protocol.name) == (experiment, task, protocol)
    assert dict(cfg.hydra.sweeper.params) == sweep
    # the sweep's comparison pairs every job with depth / level 0
    assert cfg.baseline == "{}={}".format(*next(iter(sweep.items()))).split(",")[0]


def test_decomposition_in_one_sweep_with_debate_and_consultancy(tiny_model_dir, tmp_path):
    """From the terminal, on the same questions: every job of the sweep judged the same question ids."""
    import csv
    import subprocess
    import sys

    from oversight.app.extras import extras_table
    from oversight.records import read_records

    args = ["-m", "task=multihop", "protocol=direct,consultancy,debate,decomposition", "task.n=3",
            f"hydra.sweep.dir={tmp_path}/sweep", f"model.path={tiny_model_dir}", "model.package=null",
            "model.gguf_file=null", "model.name=tiny-llama", "progress=false"]
    env = {**__import__("os").environ, "OVERSIGHT_CALL_CACHE": str(tmp_path / "calls.sqlite")}
    proc = subprocess.run([sys.executable, "-m", "oversight.app.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((tmp_path / "sweep" / "comparison.csv").open()))
    assert {r["protocol"] for r in rows} == {"direct", "consultancy", "debate", "decomposition-d2-reference"}
    jobs = sorted(p.parent for p in (tmp_path / "sweep").rglob("summary.json"))
    assert len({tuple(r.question_id for r in read_records(job)) for job in jobs}) == 1
    table = extras_table(tmp_path / "sweep", ["max_depth", "calls_per_question"])
    assert "| decomposition-d2-reference | 3 |" in table and table.count("\n") == 6
