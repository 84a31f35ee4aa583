"""DPO with LoRA (trl + peft) on the tiny real llama: the adapter moves, the loss on its batch
falls, and a run killed right after a checkpoint resumes from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from oversight.train.dpo import DPOConfig, Pair, train_dpo  # noqa: E402


def _pairs(n: int = 4) -> list[Pair]:
    return [Pair(prompt=[{"role": "user", "content": f"Argue for answer {i % 2}: which city does Anna live in?"}],
                 chosen=f"Anna lives in Paris, as the passage says in line {i}.",
                 rejected=f"I am not sure, maybe somewhere {i}.") for i in range(n)]


def test_dpo_step_changes_the_adapter_and_lowers_the_batch_loss(tiny_model_dir, tmp_path):
    cfg = DPOConfig(max_steps=3, batch_size=4, learning_rate=5e-3, save_steps=10, lora_r=4, lora_alpha=8)
    result = train_dpo(_pairs(4), str(tiny_model_dir), tmp_path / "dpo", cfg, progress=False)
    # one batch of all four pairs per step: step 1's loss is at the initial adapter, later ones after updates
    losses = dict(result.losses)
    assert losses[1] == pytest.approx(0.6931, abs=1e-3)  # LoRA starts as the identity: no preference yet
    assert losses[3] < losses[1] - 1e-3
    assert result.adapter_delta_norm > 0
    adapter = Path(result.adapter)
    assert (adapter / "adapter_model.safetensors").exists()
    provenance = json.loads((adapter / "provenance.json").read_text())
    assert provenance["data_rows"] == 4 and provenance["libraries"]["trl"] and provenance["config"]["beta"] == 0.1
    assert (tmp_path / "dpo" / "loss.png").stat().st_size > 1000


KILLER = textwrap.dedent("""
    import os, signal, sys
    from transformers import TrainerCallback
    sys.path.insert(0, {tests!r})
    from test_train_dpo import _pairs
    from oversight.train.dpo import DPOConfig, train_dpo

    class KillAfterCheckpoint(TrainerCallback):  # the 'crash': SIGKILL right after checkpoint-{step} is saved
        def on_save(self, args, state, control, **kwargs):
            if {kill} and state.global_step == {step}:
                os.kill(os.getpid(), signal.SIGKILL)

    cfg = DPOConfig(max_steps=4, batch_size=2, learning_rate=5e-3, save_steps=2, lora_r=4, lora_alpha=8)
    r = train_dpo(_pairs(4), {model!r}, {out!r}, cfg, progress=False,
                  callbacks=[KillAfterCheckpoint()])
    print("RESULT", r.model_dump_json())
""")


def _run_killer(model: Path, out: Path, kill: bool, step: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    script = KILLER.format(tests=str(Path(__file__).parent), kill=kill, step=step, model=str(model), out=str(out))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)


def test_run_killed_after_its_last_checkpoint_resumes_without_training_further(tiny_model_dir, tmp_path):
    out = tmp_path / "dpo"
    first = _run_killer(tiny_model_dir, out, kill=True, step=4)  # every step done, the adapter not yet written
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    assert not (out / "adapter").exists()
    second = _run_killer(tiny_model_dir, out, kill=False, step=4)
    assert second.returncode == 0, second.stderr[-2000:]
    result = json.loads(second.stdout.split("RESULT", 1)[1])
    assert result["resumed_from"].endswith("checkpoint-4") and result["steps"] == 4
    assert [s for s, _ in result["losses"]] == [1, 2, 3, 4]  # no fifth step
    assert result["adapter_delta_norm"] > 0  # the adapter written is the trained one, read from the checkpoint


def test_killed_run_resumes_from_its_checkpoint(tiny_model_dir, tmp_path):
    out = tmp_path / "dpo"

    def run(kill: bool) -> subprocess.CompletedProcess:
        return _run_killer(tiny_model_dir, out, kill, step=2)

    first = run(kill=True)
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    assert (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists()
    assert (out / "checkpoints" / "checkpoint-2" / "provenance.json").exists()
    assert not (out / "adapter").exists()
    second = run(kill=False)
    assert second.returncode == 0, second.stderr[-2000:]
    result = json.loads(second.stdout.split("RESULT", 1)[1])
    assert result["resumed_from"].endswith("checkpoint-2")
    assert result["steps"] == 4
    # the resumed process trained steps 3 and 4 only; steps 1 and 2 come from the killed run's log
    assert [s for s, _ in result["losses"]] == [1, 2, 3, 4]
    state = json.loads((out / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4


def test_trained_adapter_is_a_model_whose_cache_identity_is_its_content(tiny_model_dir, tiny_model_cfg, tmp_path):
    from oversight.backends.hf import HFBackend
    from oversight.types import Call

    cfg = DPOConfig(max_steps=2, batch_size=4, learning_rate=5e-3, save_steps=10, lora_r=4, lora_alpha=8)
    result = train_dpo(_pairs(4), str(tiny_model_dir), tmp_path / "dpo", cfg, progress=False)
    backend_cfg = {"device": "cpu", "batch_size": 8}
    base = HFBackend(tiny_model_cfg, backend_cfg)
    trained = HFBackend({**tiny_model_cfg, "adapter": result.adapter}, backend_cfg)
    again = HFBackend({**tiny_model_cfg, "adapter": result.adapter}, backend_cfg)
    assert trained.identity != base.identity and trained.identity == again.identity
    call = Call(kind="loglikelihood", messages=({"role": "user", "content": "Where does Anna live?"},),
                candidates=(" Anna lives in Paris, as the passage says in line 0.",
                            " I am not sure, maybe somewhere 0."))
    before, after = base.loglikelihood([call])[0].logprobs, trained.loglikelihood([call])[0].logprobs
    # DPO pushed the chosen answer up relative to the rejected one
    assert after[0] - after[1] > before[0] - before[1]
    # a retrained adapter at the same path is a different model to the cache
    train_dpo(_pairs(4), str(tiny_model_dir), tmp_path / "dpo2", cfg.model_copy(update={"max_steps": 3}),
              progress=False)
    import shutil
    shutil.rmtree(result.adapter)
    shutil.copytree(tmp_path / "dpo2" / "adapter", result.adapter)
    assert HFBackend({**tiny_model_cfg, "adapter": result.adapter}, backend_cfg).identity != trained.identity


def test_adapter_path_that_is_not_an_adapter_is_a_clear_error(tiny_model_cfg, tmp_path):
    from oversight.backends.hf import HFBackend
    from oversight.errors import ConfigError

    with pytest.raises(ConfigError, match="model.adapter=.*not a peft adapter directory"):
        HFBackend({**tiny_model_cfg, "adapter": str(tmp_path)}, {"device": "cpu"})


def test_pairs_of_held_out_questions_score_the_trained_adapter_without_training_it(tiny_model_dir, tmp_path):
    from oversight.train.dpo import split_pairs

    pairs = [p.model_copy(update={"meta": {"question": f"q{i // 2}"}}) for i, p in enumerate(_pairs(10))]
    train, held = split_pairs(pairs, 0.4)
    assert len(held) == 4 and len(train) == 6  # 2 of 5 questions, both pairs of each
    assert not {p.meta["question"] for p in held} & {p.meta["question"] for p in train}
    assert split_pairs(pairs, 0.1) == (pairs, [])  # under one question's worth: nothing held out
    cfg = DPOConfig(max_steps=3, batch_size=6, learning_rate=5e-3, save_steps=10, lora_r=4, lora_alpha=8,
                    eval_fraction=0.4)
    result = train_dpo(pairs, str(tiny_model_dir), tmp_path / "dpo", cfg, progress=False)
    assert (result.train_pairs, result.eval_pairs) == (6, 4)
    # the held-out pairs are like the training ones, so the adapter that learnt those prefers their chosen side
    assert result.eval_loss < 0.6931 and result.eval_accuracy > 0.5 and result.eval_margin > 0
    rows = [json.loads(line) for line in (Path(result.adapter) / "data.jsonl").open()]
    assert sorted(r["split"] for r in rows) == ["eval"] * 4 + ["train"] * 6
