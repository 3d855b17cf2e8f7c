"""Tests for the baselines (naive, drift, MLP): predictions, learning, determinism and checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import make_ohlcv
from stockllm.config import DataConfig, MLPConfig
from stockllm.errors import StockLLMError
from stockllm.features import origins_with_targets
from stockllm.models import DriftForecaster, MLPForecaster, NaiveForecaster, load_forecaster


def tiny_frame(closes) -> pd.DataFrame:
    closes = np.asarray(closes, dtype=float)
    index = pd.bdate_range("2021-03-01", periods=len(closes), name="Date").as_unit("ns")
    return pd.DataFrame({"Open": closes, "High": closes * 1.01, "Low": closes * 0.99, "Close": closes,
                         "Volume": np.full(len(closes), 1000.0)}, index=index)


def learnable(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """A weekly cycle in the daily returns plus a little noise: an MLP can learn it, naive cannot."""
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    return make_ohlcv(n, seed=seed, returns=0.02 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 0.002, n))


# --- naive and drift --------------------------------------------------------------------------------------

def test_naive_predicts_the_last_close(ohlcv):
    frame = ohlcv(60, seed=1)
    model = NaiveForecaster(DataConfig(window_size=10, horizon=4))
    origins = origins_with_targets(len(frame), 10, 4)
    close = frame["Close"].to_numpy()
    np.testing.assert_array_equal(model.predict_returns(frame, origins), np.zeros((len(origins), 4)))
    np.testing.assert_array_equal(model.predict_prices(frame, origins), np.repeat(close[origins][:, None], 4, 1))
    table = model.forecast(frame)
    assert list(table["horizon"]) == [1, 2, 3, 4]
    assert (table["predicted_close"] == close[-1]).all()
    assert (table["last_close"] == close[-1]).all()
    assert model.num_trainable_parameters() == 0


def test_drift_is_h_times_the_window_mean_log_return():
    closes = [100.0, 110.0, 99.0, 121.0, 120.0, 126.0]
    frame = tiny_frame(closes)
    model = DriftForecaster(DataConfig(window_size=3, horizon=2))
    y = model.predict_returns(frame, np.array([2, 4, 5]))
    # Window of 3 closes ending at row 4: 99, 121, 120 -> daily log-returns log(121/99), log(120/121).
    mean_4 = (np.log(121 / 99) + np.log(120 / 121)) / 2
    mean_2 = (np.log(110 / 100) + np.log(99 / 110)) / 2
    mean_5 = (np.log(120 / 121) + np.log(126 / 120)) / 2
    np.testing.assert_allclose(y, [[mean_2, 2 * mean_2], [mean_4, 2 * mean_4], [mean_5, 2 * mean_5]], rtol=1e-12)
    prices = model.predict_prices(frame, np.array([4]))[0]
    np.testing.assert_allclose(prices, [120 * np.exp(mean_4), 120 * np.exp(2 * mean_4)], rtol=1e-12)


def test_drift_matches_a_direct_computation_on_a_random_walk(ohlcv):
    frame = ohlcv(100, seed=2, drift=0.002)
    w, h = 20, 3
    model = DriftForecaster(DataConfig(window_size=w, horizon=h))
    origins = origins_with_targets(len(frame), w, h)
    logc = np.log(frame["Close"].to_numpy())
    expected = np.array([np.diff(logc[t - w + 1: t + 1]).mean() for t in origins])[:, None] * np.arange(1, h + 1)
    np.testing.assert_allclose(model.predict_returns(frame, origins), expected, rtol=1e-10, atol=1e-15)


# --- MLP -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def learn_frame():
    return learnable()


@pytest.fixture(scope="module")
def trained(learn_frame):
    model = MLPForecaster(DataConfig(), MLPConfig.from_flags(epochs=5, seed=0))
    return model.fit([learn_frame], progress=False)


def test_untrained_mlp_equals_naive(learn_frame):
    model = MLPForecaster(DataConfig(), MLPConfig())
    origins = origins_with_targets(len(learn_frame), 30, 3)
    close = learn_frame["Close"].to_numpy()
    np.testing.assert_array_equal(model.predict_returns(learn_frame, origins), 0.0)
    np.testing.assert_array_equal(model.predict_prices(learn_frame, origins), np.repeat(close[origins][:, None], 3, 1))
    # The whole distribution is the naive EWMA Gaussian walk (float32 head: to ~1e-7).
    naive = NaiveForecaster(DataConfig()).predict_quantiles(learn_frame, origins)
    np.testing.assert_allclose(model.predict_quantiles(learn_frame, origins), naive, rtol=1e-6, atol=1e-12)


def test_mlp_parameter_count():
    model = MLPForecaster(DataConfig(window_size=10, horizon=2), MLPConfig.from_flags(hidden_size=8))
    assert model.num_trainable_parameters() == 10 * 5 * 8 + 8 + 8 * 2 * 9 + 2 * 9  # H × Q = 2 × 9 outputs


def test_mlp_quantiles_never_cross_under_random_weights(learn_frame):
    import torch

    levels = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
    model = MLPForecaster(DataConfig(quantiles=levels), MLPConfig.from_flags(hidden_size=16))
    origins = origins_with_targets(len(learn_frame), 30, 3)
    for seed in range(5):
        torch.manual_seed(seed)
        for p in model.net.parameters():
            torch.nn.init.normal_(p, std=3.0)
        q = model.predict_quantiles(learn_frame, origins)
        assert q.shape == (len(origins), 3, len(levels))
        assert np.isfinite(q).all()
        assert (np.diff(q, axis=-1) >= 0).all()


def test_mlp_learns_a_learnable_series(trained, learn_frame):
    info = trained.fit_info
    assert info["best_epoch"] >= 1
    assert info["best_val_loss"] < 0.5 * info["naive_val_loss"], info
    losses = [row["train_loss"] for row in info["history"]]
    assert losses[-1] < losses[0]
    origins = origins_with_targets(len(learn_frame), 30, 3)
    pred = trained.predict_returns(learn_frame, origins)
    assert np.isfinite(pred).all()
    assert np.abs(pred).max() > 1e-3  # it moved away from naive's zeros


def test_mlp_beats_naive_out_of_sample(trained):
    """Fresh data from the same process (another noise seed): the trained MLP's errors are far below naive's."""
    fresh = learnable(300, seed=7)
    origins = origins_with_targets(len(fresh), 30, 3)
    close = fresh["Close"].to_numpy()
    actual = np.stack([close[origins + h] for h in (1, 2, 3)], 1)
    mlp_err = np.abs(trained.predict_prices(fresh, origins) - actual).mean()
    naive_err = np.abs(close[origins][:, None] - actual).mean()
    assert mlp_err < 0.5 * naive_err


def test_mlp_same_seed_same_predictions(ohlcv):
    frame = ohlcv(200, seed=4)
    origins = origins_with_targets(len(frame), 10, 3)

    def run(seed):
        model = MLPForecaster(DataConfig(window_size=10), MLPConfig.from_flags(epochs=2, seed=seed, patience=100))
        return model.fit([frame], progress=False).predict_returns(frame, origins)

    a, b = run(0), run(0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, run(1))


def test_mlp_save_load_reproduces_predictions(trained, learn_frame, tmp_path):
    folder = tmp_path / "ckpt"
    trained.save(folder)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["model.safetensors", "stockllm.json"]
    assert not [p for p in tmp_path.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".pickle"}]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary folder left beside it

    origins = origins_with_targets(len(learn_frame), 30, 3)
    for loaded in (MLPForecaster.load(folder), load_forecaster(folder)):
        assert isinstance(loaded, MLPForecaster)
        np.testing.assert_array_equal(loaded.predict_returns(learn_frame, origins),
                                      trained.predict_returns(learn_frame, origins))
        np.testing.assert_array_equal(loaded.predict_quantiles(learn_frame, origins),
                                      trained.predict_quantiles(learn_frame, origins))
        assert loaded.quantiles == trained.quantiles
        pd.testing.assert_frame_equal(loaded.forecast(learn_frame), trained.forecast(learn_frame))


def test_mlp_checkpoint_metadata(trained, learn_frame, tmp_path):
    folder = trained.save(tmp_path / "ckpt")
    meta = json.loads((folder / "stockllm.json").read_text())
    assert meta["kind"] == "mlp"
    assert meta["data"]["window_size"] == 30
    assert meta["data"]["horizon"] == 3
    assert meta["config"]["train"]["epochs"] == 5
    assert meta["config"]["train"]["seed"] == 0
    assert meta["config"]["hidden_size"] == 64
    assert "stockllm_version" in meta
    (span,) = meta["fit"]["series"]
    assert span["first"] == learn_frame.index[0].strftime("%Y-%m-%d")
    assert span["last"] == learn_frame.index[-1].strftime("%Y-%m-%d")
    assert span["rows"] == len(learn_frame)
    assert meta["fit"]["best_val_loss"] == pytest.approx(trained.fit_info["best_val_loss"])


def test_save_overwrites_an_old_checkpoint(trained, learn_frame, tmp_path, ohlcv):
    folder = tmp_path / "ckpt"
    MLPForecaster(DataConfig(window_size=10)).save(folder)
    trained.save(folder)
    loaded = load_forecaster(folder)
    assert loaded.window_size == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_load_folder_without_meta_is_a_clear_error(tmp_path):
    folder = tmp_path / "not_a_checkpoint"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    for load in (load_forecaster, MLPForecaster.load):
        with pytest.raises(StockLLMError) as info:
            load(folder)
        message = str(info.value)
        assert "stockllm.json" in message
        assert str(folder) in message
        assert "\n" not in message


def test_load_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(StockLLMError, match="does not exist"):
        load_forecaster(tmp_path / "nowhere")


def test_load_wrong_kind_is_a_clear_error(tmp_path):
    folder = NaiveForecaster().save(tmp_path / "naive")
    with pytest.raises(StockLLMError, match="naive"):
        MLPForecaster.load(folder)
    assert isinstance(load_forecaster(folder), NaiveForecaster)


def test_load_mlp_without_weights_is_a_clear_error(trained, tmp_path):
    folder = trained.save(tmp_path / "ckpt")
    (folder / "model.safetensors").unlink()
    with pytest.raises(StockLLMError, match="model.safetensors"):
        load_forecaster(folder)
