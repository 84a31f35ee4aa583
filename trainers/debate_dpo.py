"""Debaters trained on debate outcomes (Arnesen et al. 2024, in miniature): `train=debate_dpo`.

1. The job's protocol (a debate with best-of-N turns: conf/experiment/debate_train.yaml) runs on the
   training part of the job's task (oversight.tasks.split.Split);
2. DPO with LoRA (oversight.train.dpo) on the preference pairs of its best-of-N turns;
3. the trained and the base arguer (the best-of-N strategy's inner strategy, spoken by each model
   through protocols.strategies.as_role.AsRole) meet in a cross-play tournament with self-play debate
   and consultancy (protocols/crossplay.py) on the held-out part.

- `preference_pairs(records)`: DPO pairs from best-of-N debates. Each `best_of_n` step node
  (protocols/strategies/best_of_n.py) lists its candidate nodes and their preference scores (the
  judge's probability of the speaker's side with that candidate appended); a pair is the turn's
  prompt (the candidates' shared `call.messages`), the highest-scored candidate's text as chosen and
  the lowest-scored one's as rejected. Turns whose candidates tie in score or text teach nothing
  and are skipped.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from pydantic import Field

from oversight.errors import ConfigError, OversightError
from oversight.metrics import paired_difference
from oversight.plugins import Trainer, TrainingRun
from oversight.records import jsonable, read_records
from oversight.train.dpo import DPOConfig, DPOResult, Pair
from oversight.types import Record
from protocols.debate import Debate
from protocols.strategies.best_of_n import BestOfN

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


class DebateDPO(Trainer):
    """`train: {_target_: trainers.debate_dpo.DebateDPO, ...}` (conf/train/debate_dpo.yaml): the job's
    debate protocol with best-of-N turns on `n_train` questions of the job's task, DPO on their
    preference pairs, then the trained and the base arguer in a cross-play tournament
    (protocols/crossplay.py) on the held-out rest. How the debaters argue (rounds, best-of-N size,
    word limit, sampling) is the protocol's config, not this trainer's."""

    name: str = "debate_train"
    n_train: int = Field(default=16, ge=1, description="questions whose best-of-N debates give the pairs")
    n_heldout: int | None = Field(default=None, ge=1, description="evaluate on at most this many of the rest "
                                                                  "(null: all of them)")
    seed: int = Field(default=0, description="draws the train / held-out split")
    dpo: DPOConfig = Field(default_factory=DPOConfig)
    trained_model: str = Field(default="trained", description="key of the trained adapter in `models`")

    def run(self, job: TrainingRun) -> dict[str, Any]:
        from oversight.models import WeightsSource, local_weights, weights_fingerprint
        from oversight.train.dpo import train_dpo
        from protocols.crossplay import tournament

        protocol = check_protocol(job.protocol)
        cfg, out_dir, console = job.config, job.out_dir, job.console
        # 1. best-of-N debates on the training questions: the preference data
        data_dir = out_dir / "data"
        if not (data_dir / "summary.json").exists():
            job.run_job(generation_config(self, cfg), data_dir, "best-of-N debates (train)")
        pairs = preference_pairs(read_records(data_dir))
        console.print(f"{len(pairs)} preference pairs from {data_dir}")
        if not pairs:
            raise OversightError(f"no preference pairs in {data_dir}: every best-of-N turn's candidates tied")
        # 2. DPO with LoRA on the base model (resumes from the last checkpoint)
        model_cfg = cfg["model"]
        base = local_weights(WeightsSource(path=str(model_cfg.get("path") or ""), gguf_file=model_cfg.get("gguf_file"),
                                           package=model_cfg.get("package")))
        dpo_dir = out_dir / "dpo"
        result_file = dpo_dir / "adapter" / "result.json"
        if result_file.exists() and json.loads(result_file.read_text())["steps"] >= self.dpo.max_steps:
            result = DPOResult.model_validate_json(result_file.read_text())
        else:
            result = train_dpo(pairs, base, dpo_dir, self.dpo, progress=job.progress,
                               base_identity=weights_fingerprint(base))
        console.print(f"DPO: {result.steps} steps, loss {result.first_loss:.4f} -> {result.last_loss:.4f}, "
                      f"adapter moved by {result.adapter_delta_norm:.4f} (L2) -> {result.adapter}")
        # 3. trained against untrained arguers on held-out questions: cross-play, debate, consultancy
        eval_dir = out_dir / "eval"
        if not (eval_dir / "summary.json").exists():
            job.run_job(evaluation_config(self, cfg, protocol, result.adapter), eval_dir, "trained vs base (held-out)")
        evaluation = json.loads((eval_dir / "summary.json").read_text())
        rows = tournament(read_records(eval_dir))  # from the records, so a finished run re-summarises with new metrics
        summary = {"pairs": len(pairs), "dpo": result.model_dump(), "tournament": rows,
                   "eval_accuracy": evaluation.get("accuracy"), "n_heldout": evaluation.get("n"), "config": cfg}
        (out_dir / "summary.json").write_text(json.dumps(jsonable(summary), indent=2))
        text = table(rows, result, len(pairs))
        (out_dir / "table.md").write_text(text)
        console.print(text)
        return summary


def check_protocol(protocol: Any) -> Debate:
    """The job's protocol, if it can give preference pairs: a debate whose turns are best-of-N over a
    strategy that writes text (free, critique_refine)."""
    from protocols.strategies.quotes import Quotes

    if protocol is None:
        raise ConfigError("protocol: train=debate_dpo needs a debate with best-of-N turns "
                          "(protocol=debate protocol/strategy=best_of_n_free)")
    if not isinstance(protocol, Debate):
        raise ConfigError(f"protocol: train=debate_dpo trains debaters on a debate's best-of-N turns; got "
                          f"{protocol.title!r} ({type(protocol).__name__}); use protocol=debate")
    strategy = protocol.strategy
    if not isinstance(strategy, BestOfN):
        raise ConfigError(f"protocol.strategy: train=debate_dpo needs best-of-N turns, whose candidates are the "
                          f"preference pairs; got {type(strategy).__name__}: use protocol/strategy=best_of_n_free "
                          "(or cbon)")
    if isinstance(strategy.inner, Quotes):
        raise ConfigError("protocol.strategy.inner: train=debate_dpo needs candidates with generated text; quote "
                          "choices (Quotes) give no DPO pair: use protocol/strategy=best_of_n_free (or cbon)")
    return protocol


def generation_config(trainer: DebateDPO, cfg: dict[str, Any]) -> dict[str, Any]:
    """The data run: the job's own protocol (debate, best-of-N turns) on the training part of the task."""
    return {**cfg, "task": _split(trainer, cfg, "train")}


def evaluation_config(trainer: DebateDPO, cfg: dict[str, Any], protocol: Debate, adapter: str) -> dict[str, Any]:
    """The evaluation run: a cross-play tournament of the base and the trained arguer on the held-out
    part, with self-play debate and consultancy for each. Each player is the best-of-N strategy's
    inner strategy (greedy, as the trained model will be used) spoken by its model."""
    inner = cfg["protocol"]["strategy"]["inner"]
    trained_role = f"{trainer.trained_model}_arguer"
    players = {"base": {"_target_": AS_ROLE, "role": "debater", "inner": inner},
               "dpo": {"_target_": AS_ROLE, "role": trained_role, "inner": inner}}
    crossplay = {"_target_": "protocols.crossplay.CrossPlay", "name": "crossplay", "label": "crossplay",
                 "rounds": protocol.rounds, "players": players}
    trained = {**cfg["model"], "name": f"{cfg['model'].get('name')}-dpo", "adapter": adapter}
    return {**cfg, "protocol": crossplay, "task": _split(trainer, cfg, "heldout"),
            "models": {**(cfg.get("models") or {}), trainer.trained_model: trained},
            "roles": {**(cfg.get("roles") or {}), trained_role: trainer.trained_model}}


AS_ROLE = "protocols.strategies.as_role.AsRole"


def _split(trainer: DebateDPO, cfg: dict[str, Any], part: str) -> dict[str, Any]:
    return {"_target_": "oversight.tasks.split.Split", "name": f"{cfg['task'].get('name')}-{part}",
            "task": cfg["task"], "part": part, "n_train": trainer.n_train, "n_heldout": trainer.n_heldout,
            "seed": trainer.seed}


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
