"""`oversight-train`: training jobs from what the protocols produce (issue 12). The same Hydra app
and config tree as `oversight`, with a `train/` config group:

    oversight-train train=rrm                  # reward models per RRM level (protocols/rrm_train.py)
    oversight-train train=debate_dpo           # debaters by DPO on best-of-N debates, then evaluated
    oversight -m +experiment=rrm_train         # the presets: the same jobs inside the main app
    oversight -m +experiment=debate_train

Outputs go to the job's directory under runs/ (checkpoints, adapters, provenance, loss curve,
records of every labelling or evaluation run, table.md); running the same command again resumes:
finished stages are read back, DPO continues from its last checkpoint, and every model call and
feature comes from the caches.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from oversight.errors import ConfigError, OversightError
from oversight.records import jsonable
from oversight.train.job import TrainJob

log = logging.getLogger("oversight")


def run_train(cfg: dict[str, Any], out_dir: str | Path, console: Console | None = None) -> dict[str, Any]:
    """Build `cfg.train` and run it; returns its summary (also written to out_dir/summary.json)."""
    from oversight.plugins import build
    from protocols.debate_train import DebateTrain
    from protocols.rrm_train import RRMTrainConfig

    console = console or Console(stderr=True)
    job = build(cfg.get("train"), "train", TrainJob)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2, default=str))
    if isinstance(job, RRMTrainConfig):
        return _run_rrm(job, cfg, out_dir, console)
    if isinstance(job, DebateTrain):
        return _run_debate(job, cfg, out_dir, console)
    raise ConfigError(f"train._target_: no runner for {type(job).__name__}")


# ---- RRM ----------------------------------------------------------------------------------------


def _run_rrm(job: Any, cfg: dict[str, Any], out_dir: Path, console: Console) -> dict[str, Any]:
    from oversight.app.run import build_engine
    from oversight.plugins import Judge, build
    from oversight.train.features import FrozenFeatures
    from protocols.rrm_train import run_rrm_training

    judge = build(cfg["judge"], "judge", Judge)
    with _progress(console, cfg) as progress:
        task = progress.add_task("rrm", total=job.levels + 1, stats="")

        def on_engine(engine) -> None:
            s = engine.stats
            progress.update(task, stats=f"calls {s.calls} cached {s.cache_hits}")

        engine = build_engine(cfg, on_engine)
        backend = engine.backends["default"]
        if not hasattr(backend, "model"):
            raise ConfigError("train=rrm needs an in-process model for its features: backend=hf")
        features_path = Path(job.features_cache or Path("runs") / "features" / "features.sqlite")
        frozen = FrozenFeatures(backend.path, features_path, model=backend.model, tokenizer=backend.tokenizer,
                                batch_size=job.feature_batch, use_chat_template=backend.use_chat_template)

        def say(message: str, done: int, total: int) -> None:
            progress.update(task, description=message)
            if done == total and message.endswith("done"):
                progress.advance(task)

        try:
            summary = run_rrm_training(job, engine, judge, frozen, out_dir, progress=say)
        finally:
            frozen.close()
            if engine.cache is not None:
                engine.cache.close()
    console.print((out_dir / "table.md").read_text())
    console.print(f"rrm_train: {summary['wall_seconds']} s, {summary['features_extracted']} feature pairs "
                  f"extracted -> {out_dir}")
    return summary


# ---- debate by DPO ------------------------------------------------------------------------------


def _run_debate(job: Any, cfg: dict[str, Any], out_dir: Path, console: Console) -> dict[str, Any]:
    from oversight.app.run import run_job
    from oversight.models import WeightsSource, local_weights, weights_fingerprint
    from oversight.records import read_records
    from oversight.train.dpo import train_dpo
    from protocols.crossplay import tournament
    from protocols.debate_train import preference_pairs, table

    # 1. best-of-N debates on the training questions: the preference data
    data_dir = out_dir / "data"
    if not (data_dir / "summary.json").exists():
        with _progress(console, cfg) as progress:
            run_job(generation_config(job, cfg), data_dir, _engine_progress(progress, "best-of-N debates (train)"))
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
    done = result_file.exists() and json.loads(result_file.read_text())["steps"] >= job.dpo.max_steps
    if done:
        from oversight.train.dpo import DPOResult

        result = DPOResult.model_validate_json(result_file.read_text())
    else:
        result = train_dpo(pairs, base, dpo_dir, job.dpo, progress=bool(cfg.get("progress", True)),
                           base_identity=weights_fingerprint(base))
    console.print(f"DPO: {result.steps} steps, loss {result.first_loss:.4f} -> {result.last_loss:.4f}, "
                  f"adapter moved by {result.adapter_delta_norm:.4f} (L2) -> {result.adapter}")
    # 3. trained against untrained arguers on held-out questions: cross-play, debate, consultancy
    eval_dir = out_dir / "eval"
    if not (eval_dir / "summary.json").exists():
        with _progress(console, cfg) as progress:
            run_job(evaluation_config(job, cfg, result.adapter), eval_dir,
                    _engine_progress(progress, "trained vs base (held-out)"))
    evaluation = json.loads((eval_dir / "summary.json").read_text())
    rows = tournament(read_records(eval_dir))  # from the records, so a finished run re-summarises with new metrics
    summary = {"pairs": len(pairs), "dpo": result.model_dump(), "tournament": rows,
               "eval_accuracy": evaluation.get("accuracy"), "n_heldout": evaluation.get("n"), "config": cfg}
    (out_dir / "summary.json").write_text(json.dumps(jsonable(summary), indent=2))
    text = table(rows, result, len(pairs))
    (out_dir / "table.md").write_text(text)
    console.print(text)
    return summary


def generation_config(job: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    """The data run: debate with best-of-N free-text turns on the training part of the task."""
    free = {"_target_": "protocols.strategies.free.Free", "word_limit": job.word_limit,
            "draw_temperature": job.draw_temperature}
    protocol = {"_target_": "protocols.debate.Debate", "name": "debate", "label": f"debate-bon{job.best_of}",
                "rounds": job.rounds, "strategy": {"_target_": "protocols.strategies.best_of_n.BestOfN",
                                                   "n": job.best_of, "inner": free}}
    return {**cfg, "protocol": protocol, "task": _split(job, cfg, "train")}


def evaluation_config(job: Any, cfg: dict[str, Any], adapter: str) -> dict[str, Any]:
    """The evaluation run: a cross-play tournament of the base and the trained arguer (greedy free
    text, as in training) on the held-out part, with self-play debate and consultancy for each."""
    free = {"_target_": "protocols.strategies.free.Free", "word_limit": job.word_limit}
    trained_role = f"{job.trained_model}_arguer"
    players = {"base": {"_target_": "protocols.debate_train.AsRole", "role": "debater", "inner": free},
               "dpo": {"_target_": "protocols.debate_train.AsRole", "role": trained_role, "inner": free}}
    protocol = {"_target_": "protocols.crossplay.CrossPlay", "name": "crossplay", "label": "crossplay",
                "rounds": job.rounds, "players": players}
    trained = {**cfg["model"], "name": f"{cfg['model'].get('name')}-dpo", "adapter": adapter}
    return {**cfg, "protocol": protocol, "task": _split(job, cfg, "heldout"),
            "models": {**(cfg.get("models") or {}), job.trained_model: trained},
            "roles": {**(cfg.get("roles") or {}), trained_role: job.trained_model}}


def _split(job: Any, cfg: dict[str, Any], part: str) -> dict[str, Any]:
    return {"_target_": "protocols.debate_train.Split", "name": f"{cfg['task'].get('name')}-{part}",
            "task": cfg["task"], "part": part, "n_train": job.n_train, "n_heldout": job.n_heldout, "seed": job.seed}


# ---- shared -------------------------------------------------------------------------------------


def _progress(console: Console, cfg: dict[str, Any]) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=console,
                    disable=not cfg.get("progress", True))


def _engine_progress(progress: Progress, label: str):
    task = progress.add_task(label, total=None, stats="")

    def on_progress(engine) -> None:
        s = engine.stats
        progress.update(task, total=engine.total, completed=engine.done,
                        stats=f"calls {s.calls} cached {s.cache_hits} tokens out {s.output_tokens}")

    return on_progress


class SweepCallback:
    """Stands in for the comparison callback in training presets: a training job's directory holds
    a table, not a protocol comparison; print the tables of the sweep's jobs at its end."""

    def __init__(self, **_: Any):
        pass

    def on_multirun_end(self, config, **_: Any) -> None:
        console = Console()
        for table in sorted(Path(config.hydra.sweep.dir).glob("**/table.md")):
            if table.parent.parent.name == "":  # pragma: no cover
                continue
            console.print(f"[bold]{table.parent}[/bold]")
            console.print(table.read_text())

    def __getattr__(self, name: str):
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)


def main() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig, OmegaConf

    from oversight.app.cli import CONF_DIR, unknown_group_choice

    args = sys.argv[1:]
    if not any(a.split("=", 1)[0].lstrip("+") == "train" for a in args):
        sys.argv.append("+train=rrm")
    elif any(a.startswith("train=") for a in args):  # the group has no default in config.yaml: add it
        sys.argv = [sys.argv[0]] + ["+" + a if a.startswith("train=") else a for a in args]
    problem = unknown_group_choice(sys.argv[1:], Path(CONF_DIR))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
    def app(cfg: DictConfig) -> None:
        out_dir = Path(HydraConfig.get().runtime.output_dir)
        try:
            run_train(OmegaConf.to_container(cfg, resolve=True), out_dir)
        except OversightError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    app()


if __name__ == "__main__":
    main()
