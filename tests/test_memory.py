"""Memory levers: the activation estimate, automatic gradient checkpointing, the benchmark's phase helpers."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_ohlcv

from stockllm import memory
from stockllm.config import DataConfig, LoRAConfig
from stockllm.models.llm import LoRAForecaster

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def forecaster(tiny_model_dir, **kw):
    cfg = dict(model_path=str(tiny_model_dir), chunk_days=48, epochs=1, max_steps=1, max_val_windows=8)
    return LoRAForecaster(DataConfig(window_size=20, horizon=3), LoRAConfig.from_flags(**{**cfg, **kw}))


def saved_bytes(model, batch) -> int:
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:
            kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(batch["input_ids"], batch["attention_mask"], batch["read_pos"])
    return sum(kept.values())


def test_dropout_costs_saved_activations_and_the_estimate_orders_them(tiny_model_dir):
    frame = make_ohlcv(200)
    measured = {}
    for p in (0.0, 0.05):
        f = forecaster(tiny_model_dir, lora_dropout=p)
        f.build(trainable=True).train()
        batch = f.collate(f.samples(frame, np.arange(150, 180), np.zeros((len(frame), 3))))
        tokens = int(batch["attention_mask"].sum())
        measured[p] = saved_bytes(f.model, batch) / tokens
        estimate = memory.activation_bytes_per_token(f.model.backbone.get_base_model().config, p, torch.float32)
        assert 0.5 < estimate / measured[p] < 2.0, (p, estimate, measured[p])
    assert measured[0.05] > 1.3 * measured[0.0]  # each adapter keeps its own dropped input


def test_checkpointing_turns_on_by_itself_only_above_the_budget(tiny_model_dir, monkeypatch):
    # Steps through every block (--lora_layers all): the cached top-K path runs K blocks a step and never needs it.
    frame = make_ohlcv(200)
    f = forecaster(tiny_model_dir, lora_layers="all").fit([frame], progress=False)
    assert not f.model.backbone.get_base_model().is_gradient_checkpointing
    assert not any("checkpointing" in n for n in f.fit_info["notes"])

    monkeypatch.setattr(memory, "ACTIVATION_MEMORY_SHARE", 0.0)  # no room for activations at all
    f = forecaster(tiny_model_dir, lora_layers="all").fit([frame], progress=False)
    assert f.model.backbone.get_base_model().is_gradient_checkpointing
    assert any("gradient checkpointing turned on" in n for n in f.fit_info["notes"])

    explicit_no = forecaster(tiny_model_dir, gradient_checkpointing=False, lora_layers="all")
    f = explicit_no.fit([frame], progress=False)
    assert not f.model.backbone.get_base_model().is_gradient_checkpointing


def test_needs_checkpointing_scales_with_tokens(tiny_model_dir):
    f = forecaster(tiny_model_dir)
    base = f.build(trainable=True).backbone.get_base_model()
    total = memory.memory_bytes(torch.device("cpu"))
    assert total and total > 2**28
    assert not memory.needs_checkpointing(base, 1_000, 0.0, torch.device("cpu"))[0]
    assert memory.needs_checkpointing(base, 10**12, 0.0, torch.device("cpu"))[0]


@pytest.fixture()
def stepbench():
    spec = importlib.util.spec_from_file_location("stepbench", BENCH / "stepbench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_attention_flops_formula(stepbench):
    config = stepbench.qwen3_06b_config()
    # 6 · 28 layers · 16 heads · 128 head_dim · T(T+1)
    assert stepbench.attention_train_flops(config, [10, 3]) == 6 * 28 * 2048 * (10 * 11 + 3 * 4)


def test_phase_recorder_resets_the_peak(stepbench):
    rec = stepbench.PhaseRecorder("big")
    if not rec.resettable:
        pytest.skip("no /proc/self/clear_refs here")
    x = np.ones(64 * 2**20 // 8)  # 64 MB touched
    del x
    rec.mark("small")
    rec.mark(None)
    assert rec.phases["big"]["hwm_mb"] > rec.phases["small"]["hwm_mb"] + 40


def test_gpu_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(BENCH / "gpu.sh")], check=False).returncode == 0


def test_keep_heap_small_applies_on_linux_glibc():
    import platform
    import sys

    applied = memory.keep_heap_small()
    assert applied or not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc")
