"""The machine bounds oversight-bench holds its rows against, and model.dtype=auto."""

from __future__ import annotations

import pytest

from oversight.app import bounds as hw
from oversight.backends import base
from oversight.backends.hf import HFBackend
from oversight.errors import ConfigError


def test_distinct_prefixes_count_a_shared_prefix_once():
    assert hw.distinct_prefixes([[1, 2, 3], [1, 2, 4], [5], [1, 2, 3]]) == 5
    assert hw.distinct_prefixes([]) == 0


def _shape(**kw) -> hw.ModelShape:
    values = dict(body_params=100, head_params=10, weight_bytes=1000, kv_bytes_per_token=8, layers=2, hidden=4,
                  dtype="float32")
    return hw.ModelShape(**{**values, **kw})


def test_decode_work_counts_steps_kv_reads_and_flops_per_batch():
    shape = _shape()
    # two batches of one row (batch size 1): 1 + 3 and 1 + 2 steps
    work = hw.decode_work([[1, 2], [1, 2, 3, 4]], [3, 2], 1, shape)
    assert work.steps == (1 + 3) + (1 + 2)
    # row 0 (prompt 2, 3 new): attends over 2+3+4 = 9 positions; row 1 (prompt 4, 2 new): 4+5 = 9
    assert work.kv_bytes == (9 + 9) * 8
    # decode at 1 row: body for g-1 fed-back tokens, head for all g; prompts once per distinct prefix
    assert work.flops[1] == 2 * (100 * (2 + 1) + 10 * (3 + 2))
    prompt_flops = 2 * (100 * 4 + 10 * 2)  # distinct prefixes of [1,2] and [1,2,3,4]: 4 positions
    attention = 4 * 2 * 4 * ((9 + 3) + (9 + 10))
    assert work.flops[hw.PREFILL_ROWS] == prompt_flops + attention


def test_the_bound_is_the_larger_of_memory_and_compute():
    shape = _shape()
    machine = hw.Bounds(threads=1, read_bytes_per_s=1000.0, matmul_flops_per_s={1: 100.0, hw.PREFILL_ROWS: 1000.0})
    work = hw.Work(steps=3, kv_bytes=500)
    work.add(1, 200)
    work.add(hw.PREFILL_ROWS, 1000)
    got = work.bound(shape, machine)
    assert got["memory_s"] == pytest.approx((3 * 1000 + 500) / 1000)
    assert got["compute_s"] == pytest.approx(200 / 100 + 1000 / 1000)
    assert got["bound_s"] == pytest.approx(3.5)


def test_scoring_work_computes_each_distinct_prefix_once():
    shape = _shape()
    work = hw.scoring_work([[1, 2, 3], [1, 2, 4]], [2, 1], 64, shape)
    assert work.steps == 1
    assert work.flops[hw.PREFILL_ROWS] == 2 * (100 * 4 + 10 * 3) + 4 * 2 * 4 * (6 + 6)


def test_measure_on_a_real_model(tiny_model_cfg):
    backend = HFBackend(tiny_model_cfg, {"name": "hf", "batch_size": 4})
    shape = hw.model_shape(backend.model)
    assert shape.dtype == "float32" and shape.head_params == backend.model.get_output_embeddings().weight.numel()
    assert shape.weight_bytes == 4 * (shape.body_params + shape.head_params)
    machine = hw.measure(backend.model, rows=(4, 1), seconds=0.05)
    assert machine.read_bytes_per_s > 1e8
    assert set(machine.matmul_flops_per_s) == {1, 4, hw.PREFILL_ROWS}
    assert all(v > 0 for v in machine.matmul_flops_per_s.values())


@pytest.mark.parametrize("flags, native", [
    ("flags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni", True),
    ("flags\t\t: fpu sse amx_bf16 amx_tile", True),
    ("flags\t\t: fpu sse avx2 avx512f avx512_vnni", False),
    ("Features\t: fp asimd evtstrm aes bf16 i8mm", True),
    ("Features\t: fp asimd evtstrm aes", False),
])
def test_native_bf16_is_read_from_the_cpu_flags(flags, native):
    assert base.native_bf16_cpu(flags) is native


def test_resolve_dtype(monkeypatch):
    assert base.resolve_dtype("float32", "cpu") == "float32"
    assert base.resolve_dtype("bfloat16", "cpu") == "bfloat16"
    monkeypatch.setattr(base, "native_bf16_cpu", lambda flags=None: True)
    assert base.resolve_dtype("auto", "cpu") == base.resolve_dtype(None, "cpu") == "bfloat16"
    monkeypatch.setattr(base, "native_bf16_cpu", lambda flags=None: False)
    assert base.resolve_dtype("auto", "cpu") == "float32"
    with pytest.raises(ConfigError, match="model.dtype"):
        base.resolve_dtype("fp8", "cpu")


def test_the_resolved_dtype_is_declared_and_keys_the_cache(tiny_model_cfg):
    fp32 = HFBackend(tiny_model_cfg, {"name": "hf"})
    bf16 = HFBackend({**tiny_model_cfg, "dtype": "bfloat16"}, {"name": "hf"})
    assert fp32.capabilities.dtype == "float32" and bf16.capabilities.dtype == "bfloat16"
    assert next(bf16.model.parameters()).dtype.__repr__() == "torch.bfloat16"
    assert fp32.identity != bf16.identity
