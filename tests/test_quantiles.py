"""The quantile contract: levels, pinball loss, the causal EWMA spread, Gaussian baselines and quantile metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import make_ohlcv
from stockllm.config import DataConfig
from stockllm.errors import StockLLMError
from stockllm.backtest import evaluate, metrics
from stockllm.models import DriftForecaster, NaiveForecaster
from stockllm.quantiles import (
    central_intervals,
    ewma_sigma,
    median,
    parse_quantiles,
    pinball,
)


def quiet(_message: str) -> None:
    pass


def test_pinball_loss_on_a_hand_computed_case():
    levels = [0.1, 0.5, 0.9]
    q = np.array([[9.0, 10.0, 11.0]])
    # y = 12 lies above every quantile: loss = τ·(y − q) = 0.1·3, 0.5·2, 0.9·1
    np.testing.assert_allclose(pinball(np.array([12.0]), q, levels), [[0.3, 1.0, 0.9]])
    # y = 9.5: below 10 and 11, above 9: 0.1·0.5, (1 − 0.5)·0.5, (1 − 0.9)·1.5
    np.testing.assert_allclose(pinball(np.array([9.5]), q, levels), [[0.05, 0.25, 0.15]])


def test_levels_are_checked():
    assert parse_quantiles("0.1,0.5,0.9") == (0.1, 0.5, 0.9)
    assert DataConfig().quantiles == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    assert DataConfig(quantiles=[0.25, 0.75]).quantiles == (0.25, 0.75)  # from JSON: a list; 0.5 straddled
    for bad in ("0.1,x", "0,0.5", "0.5,1", "0.9,0.1", "0.1,0.1,0.5", "0.1,0.2", "0.6,0.9", ""):
        with pytest.raises(StockLLMError):
            parse_quantiles(bad)


def test_central_intervals_and_median():
    assert central_intervals((0.1, 0.2, 0.5, 0.8, 0.9)) == [(80, 0.1, 0.9), (60, 0.2, 0.8)]
    assert central_intervals((0.05, 0.5, 0.9)) == []
    q = np.array([[1.0, 2.0, 4.0]])
    assert median(q, (0.1, 0.5, 0.9))[0] == 2.0
    assert median(np.array([[1.0, 3.0]]), (0.25, 0.75))[0] == pytest.approx(2.0)
    assert median(np.array([[1.0, 3.0]]), (0.4, 0.8))[0] == pytest.approx(1.5)


def test_ewma_sigma_is_the_riskmetrics_recursion():
    close = make_ohlcv(80, seed=3)["Close"].to_numpy()
    r2 = np.diff(np.log(close)) ** 2
    # Normalised EWMA: Σ λ^k r²[t−k] ÷ Σ λ^k over the returns seen so far.
    t = 60
    w = 0.94 ** np.arange(t)[::-1]
    expected = np.sqrt((w * r2[:t]).sum() / w.sum())
    assert ewma_sigma(close)[t] == pytest.approx(expected, rel=1e-12)
    assert np.isnan(ewma_sigma(close)[0])


def test_ewma_spread_is_causal():
    """Changing every row after t leaves the naive and drift quantiles of origins <= t unchanged."""
    frame = make_ohlcv(200, seed=4)
    changed = frame.copy()
    t = 120
    changed.iloc[t + 1:, :4] *= np.exp(np.random.default_rng(0).normal(0, 0.2, (200 - t - 1, 1)))
    origins = np.arange(29, t + 1)
    for cls in (NaiveForecaster, DriftForecaster):
        model = cls(DataConfig())
        a, b = model.predict_quantiles(frame, origins), model.predict_quantiles(changed, origins)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(model.predict_quantiles(frame, [t + 20]), model.predict_quantiles(changed, [t + 20]))


def test_naive_quantiles_are_gaussian_around_zero_and_grow_with_sqrt_h():
    frame = make_ohlcv(100, seed=5)
    model = NaiveForecaster(DataConfig(horizon=4, quantiles=(0.1, 0.5, 0.9)))
    q = model.predict_quantiles(frame, np.array([50, 99]))
    sigma = ewma_sigma(frame["Close"].to_numpy())[[50, 99]]
    z = stats.norm.ppf(0.9)
    assert q.shape == (2, 4, 3)
    np.testing.assert_array_equal(q[:, :, 1], 0.0)
    np.testing.assert_allclose(q[:, :, 2], sigma[:, None] * np.sqrt([1, 2, 3, 4]) * z, rtol=1e-12)
    np.testing.assert_allclose(q[:, :, 0], -q[:, :, 2], rtol=1e-12)
    drift = DriftForecaster(DataConfig(horizon=4, quantiles=(0.1, 0.5, 0.9)))
    d = drift.predict_quantiles(frame, np.array([50, 99]))
    np.testing.assert_allclose(d - d[:, :, 1:2], q, rtol=1e-9, atol=1e-15)  # same spread around its drift
    np.testing.assert_array_equal(drift.predict_returns(frame, np.array([50, 99])), d[:, :, 1])


def test_naive_on_a_gaussian_random_walk_covers_80_percent_and_wql_matches_a_direct_computation():
    frame = make_ohlcv(10_000, seed=6, drift=0.0, vol=0.01)
    data = DataConfig(window_size=10, horizon=2)
    table, forecasts = evaluate({"s": frame}, {"naive": lambda: NaiveForecaster(data)}, test_size=0.5,
                                progress=False, log=quiet)
    for _, row in table.iterrows():
        n = row["n"]
        # Sampling sd ≈ √(0.8·0.2/n) ≈ 0.006; the EWMA's own estimation noise narrows intervals by ≈ 0.01.
        assert abs(row["coverage_80"] - 0.80) < 0.025, row
        assert abs(row["coverage_20"] - 0.20) < 0.025, row
        assert n == 4998  # origins 5000 … 9997: on or after the cutoff row, with both targets inside
    g = forecasts[forecasts["horizon"] == 2]
    y = g["actual"].to_numpy()
    levels = data.quantiles
    total = 0.0
    for level in levels:
        qv = g[f"q{level:g}"].to_numpy()
        loss = np.where(y >= qv, level * (y - qv), (1 - level) * (qv - y))
        total += 2 * loss.sum() / np.abs(y).sum()
    row = table[table["horizon"] == 2].iloc[0]
    assert row["wql"] == pytest.approx(total / len(levels), rel=1e-12)
    assert row["wql_vs_naive"] == 1.0
    inside = (y >= g["q0.1"]) & (y <= g["q0.9"])
    assert row["coverage_80"] == pytest.approx(inside.mean())
    assert row["width_80"] == pytest.approx(((g["q0.9"] - g["q0.1"]) / g["last_close"]).mean())


def test_quantile_metrics_against_naive_and_empty_for_point_only_models():
    frame = make_ohlcv(300, seed=7)
    data = DataConfig(window_size=10, horizon=2)
    table, forecasts = evaluate({"s": frame}, {"naive": lambda: NaiveForecaster(data),
                                               "drift": lambda: DriftForecaster(data)},
                                test_size=0.4, progress=False, log=quiet)
    drift = table[table["model"] == "drift"].set_index("horizon")
    naive = table[table["model"] == "naive"].set_index("horizon")
    np.testing.assert_allclose(drift["wql_vs_naive"], drift["wql"] / naive["wql"])
    assert drift["dm_pvalue_wql"].between(0, 1).all()
    assert naive["dm_pvalue_wql"].isna().all()
    # A model without quantiles (NaN columns): its quantile metrics are empty, never 0.
    point_only = forecasts[forecasts["model"] == "drift"].assign(model="point")
    point_only[[c for c in forecasts.columns if c.startswith("q")]] = np.nan
    both = metrics(pd.concat([forecasts, point_only], ignore_index=True))
    p = both[both["model"] == "point"]
    for col in ("wql", "wql_vs_naive", "coverage_80", "width_80", "dm_pvalue_wql"):
        assert p[col].isna().all(), col
    assert p["mae_vs_naive"].notna().all()
