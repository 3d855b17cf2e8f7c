"""Filtered historical simulation, and the learned heads that start at it (--head_base)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_ohlcv

from stockllm.config import DataConfig, MLPConfig
from stockllm.errors import StockLLMError
from stockllm.features import date_split
from stockllm.models import load_forecaster
from stockllm.models.baselines import NaiveForecaster
from stockllm.models.mlp import MLPForecaster
from stockllm.models.fhs import FHSForecaster, fhs_quantiles, weighted_quantiles
from stockllm.models.lstm import LSTMForecaster


def _numpy_fhs(frames, window, horizon, levels):
    """FHS computed directly: EWMA σ by the recursion, z per origin, per-series-weighted quantiles by sorting."""
    zs, ws = [], []
    for f in frames:
        c = f["Close"].to_numpy()
        r = np.diff(np.log(c))
        lam, num, den, var = 0.94, 0.0, 0.0, [np.nan]
        for x in r:  # adjust=True EWMA: weights lam^k over the returns seen so far, normalised
            num, den = lam * num + x * x, lam * den + 1
            var.append(num / den)
        sigma = np.sqrt(np.array(var))
        t = np.arange(window - 1, len(c) - horizon)
        z = np.stack([np.log(c[t + h] / c[t]) / (sigma[t] * np.sqrt(h)) for h in range(1, horizon + 1)], axis=1)
        zs.append(z)
        ws.append(np.full(len(t), 1 / len(t)))
    z, w = np.concatenate(zs), np.concatenate(ws)
    out = []
    for h in range(horizon):
        order = np.argsort(z[:, h])
        cum = (np.cumsum(w[order]) - w[order] / 2) / w.sum()
        out.append([np.interp(q, cum, z[order, h]) for q in levels])
    return np.array(out)


def test_fhs_quantiles_equal_a_direct_numpy_computation():
    frames = [make_ohlcv(400, seed=1), make_ohlcv(250, seed=2, vol=0.02)]
    model = FHSForecaster(DataConfig(window_size=20, horizon=3)).fit(frames)
    want = _numpy_fhs(frames, 20, 3, model.quantiles)
    np.testing.assert_allclose(model.z, want, rtol=1e-9, atol=1e-9)
    origins = np.array([50, 120, 399])
    q = model.predict_quantiles(frames[0], origins)
    c = frames[0]["Close"].to_numpy()
    sigma = NaiveForecaster().predict_quantiles(frames[0], origins)  # Gaussian: q = σ√h·z(τ); recover σ√h
    from scipy import stats

    scale = sigma[:, :, -1] / stats.norm.ppf(0.9)
    np.testing.assert_allclose(q, scale[:, :, None] * want[None], rtol=1e-9)
    assert np.all(np.diff(q, axis=-1) > 0)
    assert c.shape[0] == 400


def test_weighted_quantiles_equal_weights_is_the_hazen_rule():
    x = np.random.default_rng(0).normal(size=101)
    np.testing.assert_allclose(weighted_quantiles(x, np.ones(101), [0.1, 0.5, 0.9]),
                               np.quantile(x, [0.1, 0.5, 0.9], method="hazen"))


def test_a_long_series_does_not_drown_a_short_one():
    """Pooled with equal weight per series, half of each series' share lies below the pooled median on average
    (an unweighted pool of 1,000 + 200 windows would count the long series five times as much)."""
    from stockllm.features import origins_with_targets
    from stockllm.models.fhs import standardised_returns

    long, short = make_ohlcv(1000, seed=3, drift=0.0), make_ohlcv(200, seed=4, drift=0.01, vol=0.01)
    zs = [standardised_returns(f, origins_with_targets(len(f), 30, 1), 1)[:, 0] for f in (long, short)]
    m = FHSForecaster(DataConfig(horizon=1, quantiles=(0.25, 0.5, 0.75))).fit([long, short]).z[0, 1]
    below = [float((z <= m).mean()) for z in zs]
    assert abs((below[0] + below[1]) / 2 - 0.5) < 0.01
    assert abs((len(zs[0]) * below[0] + len(zs[1]) * below[1]) / (len(zs[0]) + len(zs[1])) - 0.5) > 0.05


def test_fhs_save_load_and_damaged_checkpoint(tmp_path):
    frames = [make_ohlcv(300, seed=5)]
    model = FHSForecaster().fit(frames)
    model.save(tmp_path / "ck")
    back = load_forecaster(tmp_path / "ck")
    origins = np.arange(40, 60)
    assert np.array_equal(back.predict_quantiles(frames[0], origins), model.predict_quantiles(frames[0], origins))
    meta = json.loads((tmp_path / "ck" / "stockllm.json").read_text())
    meta["fhs"]["z"][0][0] = 99.0  # no longer increasing
    (tmp_path / "ck" / "stockllm.json").write_text(json.dumps(meta))
    with pytest.raises(StockLLMError, match="lacks valid FHS quantiles"):
        load_forecaster(tmp_path / "ck")


@pytest.mark.parametrize("cls", [MLPForecaster, LSTMForecaster])
def test_untrained_head_equals_fhs_of_the_training_part(cls):
    frames = [make_ohlcv(500, seed=6), make_ohlcv(350, seed=7, vol=0.02)]
    model = cls(DataConfig(), MLPConfig.from_flags(epochs=1))
    splits = date_split(frames, model.window_size, model.horizon, model.config.val_size)
    model._quantile_head().set_base(fhs_quantiles(frames, [s[0] for s in splits], model.horizon, model.quantiles))
    # FHS fitted on exactly the training origins: each frame cut after its last training target.
    ref = FHSForecaster().fit([f.iloc[: s[0][-1] + model.horizon + 1] for f, s in zip(frames, splits)])
    origins = np.arange(100, 130)
    np.testing.assert_allclose(model.predict_quantiles(frames[0], origins), ref.predict_quantiles(frames[0], origins),
                               rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("cls", [MLPForecaster, LSTMForecaster])
def test_gaussian_head_base_is_the_naive_walk(cls):
    frames = [make_ohlcv(300, seed=8)]
    model = cls(DataConfig(), MLPConfig.from_flags(head_base="gaussian", epochs=1, patience=1))
    origins = np.arange(40, 60)
    naive = NaiveForecaster().predict_quantiles(frames[0], origins)
    np.testing.assert_allclose(model.predict_quantiles(frames[0], origins), naive, rtol=1e-5)
    model.fit(frames, progress=False)
    assert model.fit_info["start"] == "gaussian"


def test_fit_starts_at_fhs_and_the_start_is_the_first_candidate(tmp_path):
    """On a random walk nothing beats the start: the fitted MLP is FHS of its training part, saved and reloaded."""
    frames = [make_ohlcv(400, seed=9)]
    model = MLPForecaster(DataConfig(), MLPConfig.from_flags(epochs=2, patience=1)).fit(frames, progress=False)
    assert model.fit_info["start"] == "fhs"
    splits = date_split(frames, 30, 3, 0.2)
    np.testing.assert_allclose(model.head_base_z, fhs_quantiles(frames, [splits[0][0]], 3, model.quantiles))
    model.save(tmp_path / "ck")
    back = load_forecaster(tmp_path / "ck")
    assert back.config.head_base == "fhs"
    np.testing.assert_array_equal(back.head_base_z, model.head_base_z)
    origins = np.arange(50, 80)
    assert np.array_equal(back.predict_quantiles(frames[0], origins), model.predict_quantiles(frames[0], origins))


def test_checkpoint_from_before_head_base_still_loads_as_gaussian(tmp_path):
    """A checkpoint written before head_base existed (no field, no tensor) predicts as it did: the Gaussian start."""
    from safetensors.torch import load_file, save_file

    frames = [make_ohlcv(300, seed=10)]
    model = MLPForecaster(DataConfig(), MLPConfig.from_flags(head_base="gaussian", epochs=2))
    model.fit(frames, progress=False)
    model.save(tmp_path / "ck")
    meta_path = tmp_path / "ck" / "stockllm.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["head_base"]
    meta_path.write_text(json.dumps(meta))
    tensors = load_file(tmp_path / "ck" / "model.safetensors")
    del tensors["head_base"]
    save_file(tensors, tmp_path / "ck" / "model.safetensors")
    back = load_forecaster(tmp_path / "ck")
    assert back.config.head_base == "gaussian"
    origins = np.arange(40, 70)
    assert np.array_equal(back.predict_quantiles(frames[0], origins), model.predict_quantiles(frames[0], origins))


def test_head_base_flag_is_checked():
    with pytest.raises(StockLLMError, match="head_base"):
        MLPConfig.from_flags(head_base="student")
