"""The LSTM peer: the MLP's windows, head, loss and training contract with an LSTM in between."""

from __future__ import annotations

import numpy as np
import torch

from conftest import make_ohlcv
from stockllm.config import DataConfig, MLPConfig
from stockllm.models import NaiveForecaster, load_forecaster, model_class

DATA = DataConfig(window_size=10, horizon=3)


def periodic(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return make_ohlcv(n, seed=seed, returns=0.02 * np.sin(np.arange(n) * 2 * np.pi / 5) + rng.normal(0, 0.002, n))


def test_untrained_lstm_is_the_naive_walk():
    frame = make_ohlcv(200, seed=3)
    origins = np.arange(50, 150)
    lstm = model_class("lstm")(DATA, MLPConfig())
    np.testing.assert_allclose(lstm.predict_quantiles(frame, origins),
                               NaiveForecaster(DATA).predict_quantiles(frame, origins), rtol=1e-6, atol=1e-9)


def test_lstm_learns_early_stops_and_reloads_exactly(tmp_path):
    frame = periodic()
    lstm = model_class("lstm")(DATA, MLPConfig.from_flags(epochs=30, patience=5, learning_rate=3e-3))
    lstm.fit([frame.iloc[:320]], progress=False)
    info = lstm.fit_info
    assert info["best_val_loss"] < 0.8 * info["naive_val_loss"], info["history"]
    assert info["epochs_run"] <= 30 and any(isinstance(m, torch.nn.LSTM) for m in lstm.net.modules())
    origins = np.arange(320, 396)
    q = lstm.predict_quantiles(frame, origins)
    assert (np.diff(q, axis=-1) >= 0).all()
    for t in (320, 350, 395):  # alone equals inside the backtest
        np.testing.assert_array_equal(lstm.predict_quantiles(frame, np.array([t]))[0], q[t - 320])
    lstm.save(tmp_path / "ck")
    loaded = load_forecaster(tmp_path / "ck")
    assert loaded.kind == "lstm"
    np.testing.assert_array_equal(loaded.predict_quantiles(frame, origins), q)


def test_lstm_through_the_cli(tmp_path, capsys):
    """train --model lstm writes a checkpoint that predict reads; evaluate scores it beside naive; MLP-only
    flags apply to it, LLM flags are refused."""
    import pandas as pd

    from conftest import write_csv
    from stockllm.cli import main

    csv = write_csv(make_ohlcv(260, seed=4), tmp_path / "a.csv")
    ck = tmp_path / "ck"
    assert main(["train", "--model", "lstm", "--data", str(csv), "--epochs", "2", "--hidden_size", "8",
                 "--window_size", "10", "--quiet", "--save_dir", str(ck)]) == 0
    assert load_forecaster(ck).kind == "lstm" and load_forecaster(ck).config.hidden_size == 8
    assert main(["predict", "--checkpoint", str(ck), "--data", str(csv), "--output", str(tmp_path / "p.csv"),
                 "--quiet"]) == 0
    assert (pd.read_csv(tmp_path / "p.csv")["model"] == "lstm").all()
    assert main(["evaluate", "--data", str(csv), "--models", "lstm", "--epochs", "2", "--window_size", "10",
                 "--output_dir", str(tmp_path / "ev"), "--quiet"]) == 0
    assert set(pd.read_csv(tmp_path / "ev" / "leaderboard.csv")["model"]) == {"naive", "lstm"}
    capsys.readouterr()
    assert main(["train", "--model", "lstm", "--data", str(csv), "--lora_rank", "4", "--save_dir",
                 str(tmp_path / "x")]) == 1
    assert "--lora_rank applies to the LLM (lora) only" in capsys.readouterr().err
