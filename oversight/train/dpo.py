"""Direct preference optimisation (Rafailov et al. 2023) of a LoRA adapter with trl's DPOTrainer and
peft, on CPU or GPU, as a resumable job.

`train_dpo(pairs, base_path, out_dir, cfg)` trains on preference pairs (prompt messages, chosen
text, rejected text) and leaves under `out_dir`:
- `checkpoints/checkpoint-N/`: the Trainer's checkpoints (adapter, optimiser, RNG, trainer state),
  each with `provenance.json` (config, library versions, base model, data digest) and `data.jsonl`;
  a run started again in the same directory resumes from the last one;
- `adapter/`: the final LoRA adapter (load it with `+models.NAME={..., adapter: <this dir>}`), with
  its provenance and `result.json` (losses, how far the adapter moved);
- `loss.png`: the loss curve; `log.jsonl`: every logged step.

What proves a run did something: the first and last logged loss, the norm of the adapter's change
from its initial state (LoRA's B matrices start at zero, so an untrained adapter is the base model
exactly), and, on the pairs of the `eval_fraction` of questions held out of training, the DPO loss
(log 2 for the untrained adapter) and the share of pairs whose chosen answer the trained adapter
rewards more (trl's `rewards/accuracies`; 0 for the untrained adapter, where every margin is 0).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field

from oversight.train.provenance import write_provenance


class DPOConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lora_r: int = Field(default=8, ge=1)
    lora_alpha: int = Field(default=16, ge=1)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    learning_rate: float = Field(default=5e-4, gt=0)
    beta: float = Field(default=0.1, gt=0, description="DPO temperature: strength of the pull towards the reference")
    max_steps: int = Field(default=20, ge=1)
    batch_size: int = Field(default=4, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_length: int = Field(default=384, ge=16, description="tokens of prompt + answer; longer pairs lose their start")
    save_steps: int = Field(default=5, ge=1)
    eval_fraction: float = Field(default=0.2, ge=0, lt=1, description="share of the pairs' questions held out: "
                                 "the trained adapter's DPO loss and preference accuracy on pairs it never saw")
    seed: int = 0
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads (null: torch's default)")


class Pair(BaseModel):
    """One preference: the prompt (chat messages) and two answers, the preferred one first."""

    model_config = ConfigDict(extra="forbid")
    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    meta: dict[str, Any] = Field(default_factory=dict)


class DPOResult(BaseModel):
    adapter: str
    steps: int
    resumed_from: str | None
    losses: list[tuple[int, float]]
    first_loss: float | None
    last_loss: float | None
    adapter_delta_norm: float
    seconds: float
    train_pairs: int | None = None
    eval_pairs: int = 0
    eval_loss: float | None = None  # DPO loss of the trained adapter on the held-out pairs (log 2 before training)
    eval_accuracy: float | None = None  # held-out pairs whose chosen answer gets the higher implicit reward
    eval_margin: float | None = None  # mean implicit reward margin (chosen - rejected) on them


def train_dpo(pairs: Sequence[Pair | dict], base_path: str, out_dir: str | Path, cfg: DPOConfig | None = None, *,
              callbacks: Sequence[Any] = (), progress: bool = True, base_identity: str | None = None) -> DPOResult:
    """Train (or resume training) a LoRA adapter on `pairs`; see the module docstring for the outputs."""
    import time

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig as TrlDPOConfig
    from trl import DPOTrainer

    from oversight.models import weights_fingerprint

    cfg = cfg or DPOConfig()
    pairs = [p if isinstance(p, Pair) else Pair.model_validate(p) for p in pairs]
    if not pairs:
        raise ValueError("train_dpo: no preference pairs")
    out_dir = Path(out_dir)
    checkpoints = out_dir / "checkpoints"
    started = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    train_pairs, eval_pairs = split_pairs(pairs, cfg.eval_fraction, cfg.seed)
    rows, eval_rows = _rows(train_pairs), _rows(eval_pairs)
    data = [{**p.model_dump(), "split": "train"} for p in train_pairs] + \
        [{**p.model_dump(), "split": "eval"} for p in eval_pairs]
    identity = base_identity or weights_fingerprint(base_path)
    args = TrlDPOConfig(
        output_dir=str(checkpoints), per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, max_steps=cfg.max_steps, learning_rate=cfg.learning_rate,
        beta=cfg.beta, max_length=cfg.max_length, logging_steps=1, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=2, report_to=[], seed=cfg.seed, data_seed=cfg.seed, use_cpu=not torch.cuda.is_available(),
        bf16=False, fp16=False, disable_tqdm=progress, gradient_checkpointing=False, dataloader_num_workers=0,
        lr_scheduler_type="constant",
    )
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.target_modules), task_type="CAUSAL_LM")
    provenance = _ProvenanceCallback(cfg.model_dump(), data, identity)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=lora, callbacks=[provenance, *([_RichProgress()] if progress else []), *callbacks])
    initial = _adapter_state(trainer.model)
    resume = _last_checkpoint(checkpoints)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    held = trainer.evaluate(Dataset.from_list(eval_rows)) if eval_rows else {}
    adapter = out_dir / "adapter"
    trainer.model.save_pretrained(str(adapter))
    tokenizer.save_pretrained(str(adapter))
    final = _adapter_state(trainer.model)
    # the B matrices start at zero: an adapter that moved is nonzero, from a resumed run too
    delta = math.sqrt(sum(float(((final[k] - initial[k]) ** 2).sum()) for k in final))
    log = out_dir / "log.jsonl"
    with log.open("a") as handle:
        for h in trainer.state.log_history:
            handle.write(json.dumps({**h, "resumed_from": str(resume) if resume else None}) + "\n")
    all_losses = _all_losses(log)
    plot_loss(all_losses, out_dir / "loss.png", title=f"DPO loss ({len(pairs)} pairs, beta={cfg.beta})")
    result = DPOResult(adapter=str(adapter), steps=trainer.state.global_step,
                       resumed_from=str(resume) if resume else None, losses=all_losses,
                       first_loss=all_losses[0][1] if all_losses else None,
                       last_loss=all_losses[-1][1] if all_losses else None,
                       adapter_delta_norm=delta, seconds=round(time.perf_counter() - started, 1),
                       train_pairs=len(train_pairs), eval_pairs=len(eval_pairs), eval_loss=held.get("eval_loss"),
                       eval_accuracy=held.get("eval_rewards/accuracies"), eval_margin=held.get("eval_rewards/margins"))
    write_provenance(adapter, config=cfg.model_dump(), data=data, base_model=identity,
                     extra={"result": result.model_dump(exclude={"losses"})})
    (adapter / "result.json").write_text(result.model_dump_json(indent=2))
    return result


def split_pairs(pairs: Sequence[Pair], fraction: float, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """Hold out `fraction` of the pairs' questions (`meta["question"]`, else each pair on its own),
    drawn by seed, so held-out pairs share no prompt with the training ones. Fewer than one whole
    question's worth: nothing is held out."""
    from oversight.tasks.split import seeded_order

    groups = list(dict.fromkeys(str(p.meta.get("question", i)) for i, p in enumerate(pairs)))
    n_eval = int(len(groups) * fraction)
    held = set(seeded_order(groups, seed)[:n_eval])
    keys = [str(p.meta.get("question", i)) for i, p in enumerate(pairs)]
    return [p for p, k in zip(pairs, keys) if k not in held], [p for p, k in zip(pairs, keys) if k in held]


def _rows(pairs: Sequence[Pair]) -> list[dict[str, Any]]:
    return [{"prompt": p.prompt, "chosen": [{"role": "assistant", "content": p.chosen}],
             "rejected": [{"role": "assistant", "content": p.rejected}]} for p in pairs]


def plot_loss(losses: list[tuple[int, float]], path: str | Path, title: str = "loss") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    if losses:
        ax.plot([s for s, _ in losses], [l for _, l in losses], marker="o", ms=3)
    ax.axhline(math.log(2), color="grey", lw=0.8, ls="--", label="log 2 (no preference)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def _all_losses(log: Path) -> list[tuple[int, float]]:
    """Every logged loss across the original run and its resumptions (the later log of a step wins)."""
    by_step: dict[int, float] = {}
    for line in log.read_text().splitlines():
        row = json.loads(line)
        if "loss" in row and "step" in row:
            by_step[int(row["step"])] = float(row["loss"])
    return sorted(by_step.items())


def _last_checkpoint(directory: Path) -> Path | None:
    found = [p for p in directory.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return max(found, key=lambda p: int(p.name.split("-")[1])) if found else None


def _adapter_state(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def _trainer_callback_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


class _ProvenanceCallback(_trainer_callback_base()):  # type: ignore[misc]
    """Writes the data, config and library versions beside every checkpoint as it is saved."""

    def __init__(self, config: dict[str, Any], data: list[dict], base_model: str):
        self.config, self.data, self.base_model = config, data, base_model

    def on_save(self, args, state, control, **kwargs):
        directory = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if directory.exists():
            write_provenance(directory, config=self.config, data=self.data, base_model=self.base_model,
                             extra={"global_step": state.global_step})
        return control


class _RichProgress(_trainer_callback_base()):  # type: ignore[misc]
    """A rich progress bar with the latest loss."""

    def __init__(self):
        self.progress = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("DPO"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), transient=False)
        self.progress.start()
        self.task = self.progress.add_task("dpo", total=state.max_steps, completed=state.global_step, loss="")
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is not None and logs and "loss" in logs:
            self.progress.update(self.task, loss=f"loss {float(logs['loss']):.4f}")
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        return control
