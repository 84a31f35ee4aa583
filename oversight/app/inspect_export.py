"""`oversight-export DIR`: a job or a sweep as Inspect eval logs, to read in `inspect view`.

    oversight-export runs/compare                  # -> runs/compare/inspect/*.eval, one log per job
    inspect view --log-dir runs/compare/inspect

Inspect has no debate or oversight protocol of its own; this maps ours onto its nouns:
- one log per job (task: the protocol's label in the sweep's comparison; dataset: our task), with
  the Hydra config in `eval.task_args`, the job's overrides, summary and provenance in
  `eval.metadata`, the git revision in `eval.revision` and the libraries in `eval.packages`;
- one sample per question: our question id is the sample id and the task's seed the epoch
  (seed + 1: a job rerun with another seed reads as another epoch of the same questions); the
  options are the choices and the true option's letter the target; `messages` are the turns as the
  judge read them, then the judge's verdict;
- sample scores: `judge_correct` (1, 0, 0.5 for a tie), `p_true` (the judge's probability of the
  true option), `parse_failures` (judge readings that could not be parsed), `position_flip`;
- the events: every call of the question's call graph as a ModelEvent inside one agent span per
  role and side (`debater A`, `debater B`, `judge`: Inspect draws agent spans as swimlanes),
  deterministic steps (a quote turn, a best-of-N choice) as info events in the same lane, and the
  best-of-N candidates that were not kept as branches of their speaker's lane; token usage per
  role and per model;
- the results: accuracy with its 95% CI, Brier score, calibration error, parse-failure and
  position-bias rates, the protocol's extra metrics and the paired difference against the sweep's
  baseline, plus the whole comparison table in `results.metadata`.

The log is built only from `inspect_ai.log`'s classes and written by `write_eval_log`: Inspect's
schema is strict and its file format is not frozen, so hand-written JSON would break on its next
release. `inspect-ai` is an optional extra, imported only here.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from oversight.app import exit_code
from oversight.errors import OversightError
from oversight.records import RECORDS, SUMMARY, read_records, read_summary
from oversight.types import Judgment, Record, Turn

INSPECT_DIR = "inspect"
INSTALL = "pip install -e '.[inspect]'"
#: directories under a sweep that other tools write there: never a job
NOT_JOBS = ("report", INSPECT_DIR)


def export(directory: str | Path, output_dir: str | Path | None = None, baseline: str | None = None) -> list[Path]:
    """Write one Inspect log per job under `directory` (a job or a sweep directory) into
    `output_dir` (default DIR/inspect/); return the paths written. Logs are written aside and
    swapped in whole, so a failed export leaves the last one as it was."""
    directory = Path(directory)
    jobs = job_dirs(directory)  # bad input is named first, with or without the optional extra
    inspect = _inspect()
    from oversight.app.report import comparison_rows, sweep_baseline

    rows, baseline_label = comparison_rows(directory, baseline if baseline is not None else sweep_baseline(directory))
    by_job = {row["job"]: row for row in rows if row.get("humans") is None}
    sweep_id = _digest(str(directory.resolve()))
    out = Path(output_dir) if output_dir is not None else directory / INSPECT_DIR
    building = out.with_name(f".{out.name}.building")
    if building.exists():
        shutil.rmtree(building)
    building.mkdir(parents=True)
    names = []
    for job in jobs:
        rel = str(job.relative_to(directory)) or "."
        log = job_log(job, rel, by_job.get(rel), rows, baseline_label, sweep_id)
        name = log_name(log)
        inspect.log.write_eval_log(log, str(building / name))
        names.append(name)
    if out.exists():
        shutil.rmtree(out)  # a re-export never keeps the logs of jobs that are gone
    building.rename(out)
    return [out / name for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oversight-export", description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="a job directory or a sweep directory (records.jsonl + summary.json per job)")
    parser.add_argument("-o", "--output-dir", help="where the .eval logs go (default: DIRECTORY/inspect)")
    parser.add_argument("--baseline", help="protocol label or job override to pair differences against "
                                           "(default: as the sweep's comparison did)")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    def work() -> None:
        paths = export(args.directory, args.output_dir, args.baseline)
        where = paths[0].parent
        print(f"inspect logs: {where} ({len(paths)} log(s), {time.perf_counter() - started:.1f} s); "
              f"open them with: inspect view --log-dir {where}")

    return exit_code("oversight-export: error", work)


def _inspect():
    """inspect_ai, imported only when exporting (an optional extra)."""
    try:
        import inspect_ai.log  # noqa: F401
        import inspect_ai
    except ImportError as exc:
        raise OversightError(f"inspect-ai is not installed ({exc.name} not found); install it with {INSTALL}") \
            from exc
    return inspect_ai


def job_dirs(directory: Path) -> list[Path]:
    """The job directories under `directory` (itself included): each has records.jsonl and summary.json."""
    if not directory.is_dir():
        raise OversightError(f"{directory}: not a directory")
    found = sorted(p.parent for p in directory.rglob(RECORDS)
                   if not set(p.relative_to(directory).parts[:-1]) & set(NOT_JOBS))
    if not found:
        raise OversightError(f"{directory}: no {RECORDS} found (not a job or sweep directory)")
    for job in found:
        if not (job / SUMMARY).exists():
            raise OversightError(f"{job / SUMMARY}: missing beside {RECORDS} (the job did not finish)")
    return found


# ---- one job ------------------------------------------------------------------------------------


def job_log(job: Path, rel: str, row: dict[str, Any] | None, rows: list[dict[str, Any]], baseline: str | None,
            sweep_id: str):
    """The EvalLog of one job directory."""
    from inspect_ai.log import (EvalConfig, EvalDataset, EvalLog, EvalPlan, EvalPlanStep, EvalResults,
                                EvalRevision, EvalSpec, EvalStats)
    from inspect_ai.model import ModelConfig

    summary = read_summary(job)
    records = read_records(job)
    cfg = summary.get("config") or {}
    provenance = summary.get("provenance") or {}
    models = ModelNames(cfg, provenance)
    created = _time(provenance.get("started")) or datetime.fromtimestamp((job / SUMMARY).stat().st_mtime, timezone.utc)
    finished = _time(provenance.get("finished")) or created
    seed = (cfg.get("task") or {}).get("seed")
    epoch = seed + 1 if isinstance(seed, int) and seed >= 0 else 1
    samples, epochs_seen = [], {}
    for record in records:
        epochs_seen[record.question_id] = epochs_seen.get(record.question_id, epoch - 1) + 1
        samples.append(sample(record, summary, models, epochs_seen[record.question_id], created))
    roles: dict[str, str] = {}
    for record in records:
        for node in record.graph.get("nodes") or []:
            if node.get("kind") == "call" and node.get("role"):
                roles.setdefault(node["role"], models.name(node.get("model")))
    revision = provenance.get("revision")
    libraries = {k: v for k, v in (provenance.get("libraries") or {}).items() if v}
    label = (row or {}).get("protocol") or summary.get("protocol") or "oversight"
    overrides = _overrides(job)
    spec = EvalSpec(
        # no eval_set_id (the viewer would look for an eval set's manifest); Inspect derives a stable
        # eval_id from run_id + task_id + created
        run_id=sweep_id,
        task_id=_digest(f"{rel}|{summary.get('protocol')}|{summary.get('judge')}"),
        created=created.isoformat(), task=_slug(label), task_display_name=f"{label} · {summary.get('judge')} judge",
        task_description=f"{summary.get('protocol')} judged by {summary.get('judge')} on {summary.get('task')} "
                         f"(oversight job {rel})",
        task_args=_override_args(overrides), task_args_passed=_override_args(overrides), solver=(cfg.get("protocol") or {}).get("_target_"), solver_args=cfg.get("protocol"),
        tags=[t for t in (summary.get("protocol"), summary.get("judge"), summary.get("task")) if t],
        dataset=EvalDataset(name=summary.get("task"), samples=len(samples), sample_ids=[s.id for s in samples],
                            shuffled=False),
        model=models.name("default"), model_roles={role: ModelConfig(model=m) for role, m in roles.items()} or None,
        config=EvalConfig(epochs=max((s.epoch for s in samples), default=1)),
        revision=EvalRevision(type="git", origin=revision.get("origin") or "", commit=revision["commit"],
                              dirty=revision.get("dirty")) if revision else None,
        packages={**libraries, "inspect_ai": _inspect().__version__},
        metadata={"oversight_job": rel, "overrides": overrides, "summary": {k: v for k, v in summary.items()
                                                                           if k not in ("config", "provenance")},
                  "provenance": provenance, "config": cfg},
    )
    plan = EvalPlan(steps=[EvalPlanStep(solver=str((cfg.get(part) or {}).get("_target_") or part),
                                        params=dict(cfg.get(part) or {})) for part in ("protocol", "judge")])
    results = EvalResults(total_samples=len(samples), completed_samples=sum(s.error is None for s in samples),
                          scores=eval_scores(summary, samples, row, baseline),
                          metadata={"comparison": {"baseline": baseline, "job": rel, "rows": rows}})
    usage, role_usage = _sum_usage(s.model_usage for s in samples), _sum_usage(s.role_usage for s in samples)
    failed = summary.get("questions") and summary.get("n_failed", 0) >= summary["questions"]
    return EvalLog(
        status="error" if failed else "success", eval=spec, plan=plan, results=results,
        stats=EvalStats(started_at=created.isoformat(), completed_at=finished.isoformat(), model_usage=usage,
                        role_usage=role_usage),
        error=_error(summary.get("first_error") or "every question failed") if failed else None,
        samples=samples, metadata={"oversight_job": rel},
    )


def log_name(log) -> str:
    """Inspect's own file naming (`{created}_{task}_{id}.eval`), so logs sort by time in its viewer."""
    created = log.eval.created.replace(":", "-").split(".")[0]
    return f"{created}_{log.eval.task}_{log.eval.eval_id}.eval"


class ModelNames:
    """Inspect's `provider/model` name of each of the job's model keys (`default`, or a `models`
    key), the provider being the backend (from its identity, `hf:smollm2:…` -> `hf`)."""

    def __init__(self, cfg: dict[str, Any], provenance: dict[str, Any]):
        self.cfg, self.backends = cfg, provenance.get("backends") or {}

    def name(self, key: str | None) -> str:
        key = key or "default"
        model = (self.cfg.get("model") if key == "default" else (self.cfg.get("models") or {}).get(key)) or {}
        identity = str((self.backends.get(key) or {}).get("identity") or "")
        provider = identity.split(":", 1)[0] if ":" in identity else \
            str((self.cfg.get("backend") or {}).get("_target_", "oversight")).split(".")[-1].lower() \
                .removesuffix("backend") or "oversight"
        return f"{provider}/{model.get('name') or key}"


# ---- one question -------------------------------------------------------------------------------


def sample(record: Record, summary: dict[str, Any], models: ModelNames, epoch: int, start: datetime):
    """The EvalSample of one record: messages as the judge read them, scores, events per role."""
    from inspect_ai.log import EvalSample
    from inspect_ai.model import ChatMessageAssistant, ChatMessageUser, ModelOutput

    judge_name = summary.get("judge")
    judgments = [j for j in record.judgments if j.judge == judge_name and not j.pending] or \
        [j for j in record.judgments if not j.pending]
    judge_model = models.name(next((n.get("model") for n in record.graph.get("nodes") or []
                                    if n.get("role") == "judge"), "default"))
    prompt = record.question + "\n\n" + "\n".join(f"{letter(i)}) {o}" for i, o in enumerate(record.options))
    messages: list[Any] = [ChatMessageUser(content=prompt, source="input")]
    for transcript in record.transcripts:
        for turn in transcript.turns:
            messages.append(ChatMessageAssistant(
                content=turn_markdown(turn, record.options), source="generate",
                model=models.name(_node(record, turn.node).get("model")) if turn.node else None,
                metadata={"speaker": speaker(turn), "role": turn.role, "side": turn.side, "round": turn.round,
                          "episode": transcript.episode, "node": turn.node}))
    verdict = verdict_markdown(record, judgments, judge_name)
    messages.append(ChatMessageAssistant(content=verdict, source="generate", model=judge_model,
                                         metadata={"speaker": "judge", "judge": judge_name}))
    events, model_usage, role_usage = call_events(record, models, start)
    return EvalSample(
        id=record.question_id, epoch=epoch, input=prompt, choices=record.options,
        target=letter(record.correct_index), messages=messages,
        output=ModelOutput.from_content(judge_model, verdict),
        scores=sample_scores(record, judgments),
        metadata={**record.metadata, "protocol": record.protocol, "true_option": record.options[record.correct_index],
                  "passage": record.context,
                  "judgments": [{"episode": j.episode, "p": j.p, "chosen": j.chosen, "correct": j.correct,
                                 "position_flip": j.position_flip, "orders": [o.order for o in j.orders],
                                 "source": j.source} for j in record.judgments],
                  "episodes": [{"episode": t.episode, "assigned_side": t.assigned_side, "info": t.info}
                               for t in record.transcripts]},
        events=events, model_usage=model_usage, role_usage=role_usage,
        error=_error(record.error) if record.error else None,
        started_at=start.isoformat(), completed_at=start.isoformat(),
    )


def letter(index: int) -> str:
    return chr(ord("A") + index) if 0 <= index < 26 else str(index)


def speaker(turn: Turn) -> str:
    """The turn's speaker with its side's letter: two debaters share a role and a label."""
    return f"{turn.label} {letter(turn.side)}" if turn.side is not None else turn.label


def turn_markdown(turn: Turn, options: list[str]) -> str:
    """A turn as Inspect shows a message (markdown): who spoke for which option, then the text with
    each quote as a blockquote marked with the verification made when the turn was made."""
    side = f" for {letter(turn.side)}) {options[turn.side]}" if turn.side is not None and turn.side < len(options) else ""
    head = f"**{speaker(turn)}**{side}, round {turn.round + 1}"
    from oversight.app.report import quote_segments

    parts = [f"> “{seg['text']}”" + {True: " ✓ verified", False: " ✗ unverified"}.get(seg["verified"], "")
             if seg.get("quote") else seg["text"].strip() for seg in quote_segments(turn) if seg["text"].strip()]
    return head + "\n\n" + "\n\n".join(parts)


def verdict_markdown(record: Record, judgments: list[Judgment], judge: str | None) -> str:
    lines = []
    for j in judgments:
        chosen = f"{letter(j.chosen)}) {record.options[j.chosen]}" if j.chosen is not None else "no answer"
        probs = ", ".join(f"{letter(i)} {p:.3f}" for i, p in enumerate(j.p or []))
        right = {1.0: "right", 0.0: "wrong", 0.5: "a tie"}.get(j.correct, "not scored") if j.correct is not None \
            else "not scored"
        episode = f" ({j.episode})" if j.episode != "main" else ""
        lines.append(f"**Judge{episode}** ({j.judge}): {chosen}; p = {probs or '-'}; {right}"
                     + (" (parse failure)" if j.parse_failed else ""))
    return "\n\n".join(lines) or f"**Judge** ({judge}): no judgment"


def sample_scores(record: Record, judgments: list[Judgment]) -> dict[str, Any]:
    from inspect_ai.scorer import Score

    chosen = ",".join(letter(j.chosen) for j in judgments if j.chosen is not None) or None
    scores: dict[str, Any] = {}
    if record.correct is not None:
        scores["judge_correct"] = Score(value=record.correct, answer=chosen,
                                        explanation=f"true option {letter(record.correct_index)}, "
                                                    f"judge chose {chosen or 'nothing'}")
    p_true = [j.p[record.correct_index] for j in judgments if j.p]
    if p_true:
        scores["p_true"] = Score(value=sum(p_true) / len(p_true), answer=chosen)
    readings = [o for j in judgments for o in j.orders] or judgments
    scores["parse_failures"] = Score(value=sum(bool(o.parse_failed) for o in readings),
                                     metadata={"readings": len(readings)})
    flips = [j.position_flip for j in judgments if j.position_flip is not None]
    if flips:
        scores["position_flip"] = Score(value=float(any(flips)))
    return scores


def eval_scores(summary: dict[str, Any], samples: list[Any], row: dict[str, Any] | None, baseline: str | None):
    """The job's metrics as Inspect results, as oversight.metrics computed them (never recomputed
    here), and the paired difference against the sweep's baseline."""
    from inspect_ai.log import EvalMetric, EvalScore

    def score(name: str, scorer: str, metrics: dict[str, Any], **meta: Any):
        numbers = {k: EvalMetric(name=k, value=v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        scored = sum(1 for s in samples if s.scores and name in s.scores)
        return EvalScore(name=name, scorer=scorer, metrics=numbers, scored_samples=scored,
                         unscored_samples=len(samples) - scored, metadata=meta or None) if numbers else None

    judge = str(summary.get("judge"))
    ci = summary.get("accuracy_ci") or [None, None]
    p_true = [s.scores["p_true"].value for s in samples if s.scores and "p_true" in s.scores]
    found = [
        score("judge_correct", judge, {"accuracy": summary.get("accuracy"), "ci_low": ci[0], "ci_high": ci[1],
                                       "n": summary.get("n")}),
        score("p_true", judge, {"mean": sum(p_true) / len(p_true) if p_true else None, "brier": summary.get("brier"),
                                "ece": summary.get("ece")}),
        score("parse_failures", judge, {"rate": summary.get("parse_failure_rate")}),
        score("position_flip", judge, {"rate": summary.get("position_bias_rate")}),
        score("protocol", str(summary.get("protocol")), _flat(summary.get("extra") or {})),
    ]
    if row and row.get("diff_vs_baseline") is not None:
        found.append(score("vs_baseline", "paired_difference",
                           {"diff": row["diff_vs_baseline"], "ci_low": row.get("diff_ci_low"),
                            "ci_high": row.get("diff_ci_high")}, baseline=baseline))
    return [s for s in found if s is not None]


# ---- the call graph as events -------------------------------------------------------------------


def call_events(record: Record, models: ModelNames, start: datetime):
    """The record's call graph as Inspect events: per lane (a role, and a side where it has one)
    one agent span holding its calls (ModelEvent) and steps (InfoEvent) in graph order; best-of-N
    candidates that were not kept become branch spans of their lane. Returns the events and the
    token usage per model and per role."""
    from inspect_ai.event import (AnchorEvent, BranchEvent, InfoEvent, ModelEvent, SpanBeginEvent,
                                  SpanEndEvent)
    from inspect_ai.model import GenerateConfig, ModelOutput, ModelUsage

    nodes = list(record.graph.get("nodes") or [])
    by_id = {n["id"]: n for n in nodes}
    parents: dict[str, list[str]] = {n["id"]: [] for n in nodes}
    for edge in record.graph.get("edges") or record.graph.get("links") or []:
        if edge["target"] in parents and edge["source"] in by_id:
            parents[edge["target"]].append(edge["source"])
    lanes = {n["id"]: lane(n, record.options) for n in nodes}
    candidates = best_of_n_candidates(nodes, parents, lanes)
    for step_id, owned in candidates.items():
        for members in owned.values():
            for node_id in members:
                lanes[node_id] = lanes[step_id]  # the preference judge's calls belong to the speaker's turn
    # the candidates a best-of-N step did not keep: branches of its lane, not its main line
    branches = {step_id: {k: members for k, members in owned.items() if k != by_id[step_id]["chosen"]}
                for step_id, owned in candidates.items()}
    turns = {turn.node: turn for t in record.transcripts for turn in t.turns if turn.node}
    kept_out = {node_id for dropped in branches.values() for members in dropped.values() for node_id in members}

    clock = iter(range(10 ** 9))
    model_usage: dict[str, ModelUsage] = {}
    role_usage: dict[str, ModelUsage] = {}

    def at() -> dict[str, Any]:
        tick = next(clock)
        return {"timestamp": datetime.fromtimestamp(start.timestamp() + tick / 1000, timezone.utc),
                "working_start": tick / 1000}

    def event(node: dict[str, Any], span_id: str):
        if node.get("kind") != "call" or not isinstance(node.get("call"), dict):
            output = node.get("output")
            data = turn_markdown(turns[node["id"]], record.options) if node["id"] in turns else \
                output if isinstance(output, str) else {k: v for k, v in node.items() if k != "id"}
            return InfoEvent(source=str(node.get("label") or node.get("kind")), data=data, span_id=span_id,
                             metadata={"node": node["id"], "label": node.get("label")}, **at())
        call, out = node["call"], node.get("output") or {}
        model = models.name(node.get("model"))
        usage = ModelUsage(input_tokens=int(out.get("prompt_tokens") or 0), output_tokens=int(out.get("output_tokens") or 0))
        usage.total_tokens = usage.input_tokens + usage.output_tokens
        for table, key in ((model_usage, model), (role_usage, str(node.get("role") or "default"))):
            table[key] = table[key] + usage if key in table else usage.model_copy()
        error = out.get("error")
        output = ModelOutput.from_content(model, call_output_text(call, out), error=error)
        output.usage = usage
        output.metadata = {"kind": call.get("kind"), "candidates": call.get("candidates") or None,
                           "logprobs": out.get("logprobs")}
        params = call.get("params") or {}
        times = at()
        return ModelEvent(
            model=model, role=node.get("role"), input=chat_messages(call), tools=[], tool_choice="none",
            config=GenerateConfig(max_tokens=params.get("max_new_tokens"), temperature=params.get("temperature"),
                                  top_p=params.get("top_p"), seed=params.get("seed"),
                                  stop_seqs=list(params.get("stop") or []) or None),
            output=output, error=error, cache="read" if out.get("cached") else None, span_id=span_id,
            completed=times["timestamp"], working_time=0.0,
            metadata={"node": node["id"], "label": node.get("label"), "kind": call.get("kind"),
                      **{k: node[k] for k in ("side", "round", "episode", "order") if k in node}},
            **times)

    solvers = "solvers-" + _digest(record.question_id)[:8]
    events: list[Any] = [SpanBeginEvent(id=solvers, span_id=solvers, type="solvers", name="solvers", **at())]
    order = list(dict.fromkeys(lanes[n["id"]] for n in nodes))
    for name in order:
        span = f"{_slug(name)}-{_digest(record.question_id + name)[:8]}"
        events.append(SpanBeginEvent(id=span, span_id=span, parent_id=solvers, type="agent", name=name,
                                     metadata={"description": lane_description(name, record, nodes, lanes)},
                                     **at()))
        for node in nodes:
            if lanes[node["id"]] != name or node["id"] in kept_out:
                continue
            if branches.get(node["id"]):  # a best-of-N choice: the candidates it did not keep branch off here
                anchor = f"anchor-{_digest(record.question_id + node['id'])[:8]}"
                events.append(AnchorEvent(anchor_id=anchor, span_id=span, **at()))
                for k, members in branches[node["id"]].items():
                    branch = f"{span}-{_digest(node['id'])[:6]}-{k}"
                    events.append(SpanBeginEvent(id=branch, span_id=branch, parent_id=span, type="branch",
                                                 name=f"candidate {k} (not kept)", **at()))
                    events.append(BranchEvent(from_anchor=anchor, span_id=branch, **at()))
                    events += [event(by_id[m], branch) for m in members]
                    events.append(SpanEndEvent(id=branch, span_id=branch, **at()))
            events.append(event(node, span))
        events.append(SpanEndEvent(id=span, span_id=span, **at()))
    events.append(SpanEndEvent(id=solvers, span_id=solvers, **at()))
    return events, model_usage, role_usage


def lane(node: dict[str, Any], options: list[str]) -> str:
    """The swimlane of a node: its role, with the side's letter where the node speaks for a side."""
    role = str(node.get("role") or node.get("label") or node.get("kind") or "step")
    side = node.get("side")
    return f"{role} {letter(side)}" if isinstance(side, int) and 0 <= side < len(options) else role


def lane_description(name: str, record: Record, nodes: list[dict[str, Any]], lanes: dict[str, str]) -> str:
    """What the viewer prints on a lane's card: the side it argues, its turns as the judge read
    them, and how many calls it made."""
    mine = [n for n in nodes if lanes[n["id"]] == name]
    sides = {n.get("side") for n in mine if isinstance(n.get("side"), int)}
    calls = sum(n.get("kind") == "call" for n in mine)
    parts = []
    if len(sides) == 1:
        side = next(iter(sides))
        parts.append(f"argues for {letter(side)}) {record.options[side]}")
    elif any(lanes[n["id"]].startswith(name + " ") for n in nodes):
        parts.append("shared by every side (the same calls serve each speaker)")
    turns = [turn for t in record.transcripts for turn in t.turns
             if lane({"role": turn.role, "side": turn.side}, record.options) == name]
    for turn in turns:
        text = " ".join(_plain_quotes(turn))
        parts.append(f"round {turn.round + 1}: {text}" if len(turns) > 1 else f"turn: {text}")
    ids = {n["id"] for n in mine}
    for j in record.judgments:  # the judge's lane: its verdict
        if j.chosen is not None and any(o.node in ids for o in j.orders):
            episode = f" ({j.episode})" if j.episode != "main" else ""
            p_true = f", p(true) {j.p[record.correct_index]:.2f}" if j.p else ""
            parts.append(f"verdict{episode}: {letter(j.chosen)}) {record.options[j.chosen]}{p_true}")
    parts.append(f"{calls} call(s)")
    return " · ".join(parts)


def _plain_quotes(turn: Turn) -> list[str]:
    """The turn's text with each quote as “text” ✓ (verified when the turn was made) or ✗ (not)."""
    from oversight.app.report import quote_segments

    return [f"“{seg['text']}”" + {True: " ✓", False: " ✗"}.get(seg["verified"], "") if seg.get("quote")
            else seg["text"].strip() for seg in quote_segments(turn) if seg["text"].strip()]


def best_of_n_candidates(nodes: list[dict[str, Any]], parents: dict[str, list[str]],
                         lanes: dict[str, str]) -> dict[str, dict[int, list[str]]]:
    """best_of_n step id -> {candidate index: the nodes that made only that candidate}: the
    candidate's node, its own calls in the speaker's lane (readings shared by every draw stay
    where they are) and the preference judge's calls on it."""
    by_id = {n["id"]: n for n in nodes}

    def ancestors(node_id: str) -> set[str]:
        seen, stack = set(), [node_id]
        while stack:
            for p in parents.get(stack.pop(), []):
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        return seen

    found: dict[str, dict[int, list[str]]] = {}
    for node in nodes:
        candidates = node.get("candidates")
        if node.get("label") != "best_of_n" or not isinstance(candidates, list) or node.get("chosen") is None:
            continue
        made = {c: ancestors(c) | {c} for c in candidates if c in by_id}
        scorers = [p for p in parents.get(node["id"], []) if p not in made]
        owned: dict[int, list[str]] = {}
        for k, c in enumerate(candidates):
            if c not in made:
                continue
            others = set().union(*(m for other, m in made.items() if other != c))
            own = {n for n in made[c] - others if n == c or lanes[n] == lanes[node["id"]]}
            own |= {s for s in scorers if c in ancestors(s)}
            owned[k] = [n["id"] for n in nodes if n["id"] in own]
        found[node["id"]] = owned
    return found


def chat_messages(call: dict[str, Any]) -> list[Any]:
    """A call's prompt as Inspect chat messages; the prefix the reply continues (`Answer:`) as the
    start of the assistant's reply."""
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser

    kinds = {"system": ChatMessageSystem, "user": ChatMessageUser, "assistant": ChatMessageAssistant}
    out = [kinds.get(m.get("role"), ChatMessageUser)(content=str(m.get("content", ""))) for m in call.get("messages") or []]
    if call.get("prefix"):
        out.append(ChatMessageAssistant(content=str(call["prefix"]), metadata={"prefix": True}))
    return out


def call_output_text(call: dict[str, Any], out: dict[str, Any]) -> str:
    """What a call returned, as text: the generation, or each candidate's log-probability."""
    if out.get("error"):
        return ""
    if call.get("kind") == "generate":
        return str(out.get("text") or "")
    logprobs = out.get("logprobs") or []
    candidates = call.get("candidates") or []
    what = "log-likelihood" if call.get("kind") == "loglikelihood" else "next-token log-probability"
    return f"{what} of each candidate:\n\n" + "\n".join(
        f"- `{c!r}`: {lp:.3f}" for c, lp in zip(candidates, logprobs))


# ---- small pieces -------------------------------------------------------------------------------


def _node(record: Record, node_id: str | None) -> dict[str, Any]:
    return next((n for n in record.graph.get("nodes") or [] if n.get("id") == node_id), {})


def _overrides(job: Path) -> list[str]:
    saved = job / ".hydra" / "overrides.yaml"
    if saved.exists():
        from omegaconf import OmegaConf

        return [str(o) for o in OmegaConf.load(saved)]
    return []


def _override_args(overrides: list[str]) -> dict[str, Any]:
    """The job's Hydra overrides as Inspect task arguments (what differs between a sweep's jobs;
    the whole composed config is in the log's metadata)."""
    args: dict[str, Any] = {}
    for item in overrides:
        key, _, value = item.partition("=")
        args[key.lstrip("+~")] = value
    return args


def _flat(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _sum_usage(tables):
    total: dict[str, Any] = {}
    for table in tables:
        for key, usage in table.items():
            total[key] = total[key] + usage if key in total else usage.model_copy()
    return total


def _error(message: str):
    from inspect_ai.log import EvalError

    return EvalError(message=message, traceback=message, traceback_ansi=message)


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        return None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:22]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-") or "job"


if __name__ == "__main__":
    import sys

    sys.exit(main())
