"""Multi-process training goes through torchrun/accelerate (DDP), tested with 2 CPU processes on gloo."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import make_ohlcv, one_and_two_processes, write_csv


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_two_process_training_writes_one_checkpoint(tiny_model_dir, tmp_path):
    csv = write_csv(make_ohlcv(260, returns=0.02 * np.sin(np.arange(260) * 2 * np.pi / 7)), tmp_path / "p.csv")
    ck = tmp_path / "ck"
    cmd = ["torchrun", "--nproc_per_node", "2", "-m", "stockllm.cli", "train", "--model", "lora", "--model_path",
           str(tiny_model_dir), "--data", str(csv), "--window_size", "20", "--chunk_days", "40", "--max_steps", "2",
           "--save_dir", str(ck), "--quiet"]
    src = str(Path(__file__).resolve().parents[1] / "src")  # this checkout, not an installed copy
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": src})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("saved checkpoint") == 1  # rank 0 alone reports and writes
    meta = json.loads((ck / "stockllm.json").read_text())
    assert meta["fit"]["num_processes"] == 2 and meta["fit"]["steps"] == 2


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_two_process_evaluate_shards_origins_and_matches_one_process(tmp_path):
    """Each rank forecasts half the origins; the gathered files (written once, by rank 0) equal a one-process
    run's."""
    import pandas as pd

    a = write_csv(make_ohlcv(300, seed=1), tmp_path / "a.csv")
    b = write_csv(make_ohlcv(240, seed=2, start="2020-03-02"), tmp_path / "b.csv")
    args = ["evaluate", "--data", str(a), str(b), "--models", "naive,drift,mlp", "--epochs", "3",
            "--window_size", "10", "--quiet"]
    _, two = one_and_two_processes(args, tmp_path)
    assert two.stdout.count("wrote ") == 1 and "2 processes: each forecasts 1/2" in two.stdout
    for name in ("forecasts.csv", "metrics.csv", "leaderboard.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "two" / name), pd.read_csv(tmp_path / "one" / name))
    assert {p.name for p in (tmp_path / "two").iterdir()} == {p.name for p in (tmp_path / "one").iterdir()}


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_two_process_early_stopping_is_one_decision(tiny_model_dir, tmp_path):
    """Two ranks validate on their halves of the validation set, sum them and stop together: several
    validations, the last of them ends the run by patience before the step budget does."""
    csv = write_csv(make_ohlcv(260, returns=0.02 * np.sin(np.arange(260) * 2 * np.pi / 7)), tmp_path / "p.csv")
    ck = tmp_path / "ck"
    # A learning rate far too high: no step beats the untrained model, so patience ends the run.
    cmd = ["torchrun", "--nproc_per_node", "2", "-m", "stockllm.cli", "train", "--model", "lora", "--model_path",
           str(tiny_model_dir), "--data", str(csv), "--window_size", "20", "--chunk_days", "40", "--batch_size", "1",
           "--learning_rate", "0.3", "--eval_every", "1", "--patience", "3", "--max_steps", "40",
           "--save_dir", str(ck), "--quiet"]
    src = str(Path(__file__).resolve().parents[1] / "src")
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": src})
    assert run.returncode == 0, run.stderr[-2000:]
    fit = json.loads((ck / "stockllm.json").read_text())["fit"]
    assert fit["num_processes"] == 2 and fit["stop_reason"] == "patience"
    assert [h["step"] for h in fit["history"]] == [1, 2, 3] and fit["steps"] == 3 and fit["best_step"] == 0
    # The summed halves are the whole set: the untrained model's loss is the one the model computes on all of it.
    np.testing.assert_allclose(fit["best_val_loss"], fit["naive_val_loss"], rtol=1e-5)
