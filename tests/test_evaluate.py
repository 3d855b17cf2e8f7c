"""Tests for stockllm.evaluate: no look-ahead, metrics beside naive, Diebold–Mariano and the plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_ohlcv
from stockllm.config import DataConfig, MLPConfig
from stockllm.evaluate import (
    backtest,
    diebold_mariano,
    evaluate,
    format_table,
    metrics,
    plot_forecasts,
    split_index,
    test_origins as make_test_origins,  # not collected as a test
)
from stockllm.models import DriftForecaster, MLPForecaster, NaiveForecaster
from stockllm.models.base import Forecaster

METRIC_COLUMNS = ["series", "model", "horizon", "mae", "rmse", "mape", "mae_vs_naive", "dir_acc", "dm_pvalue"]
W, H = 10, 3


def quiet(_message: str) -> None:
    pass


class Spy(Forecaster):
    """Records what it is fitted on and which origins it is asked about; predicts a small constant rise."""

    kind = "spy"
    needs_fit = True
    has_quantiles = False  # a point-only model: overrides predict_returns, quantile metrics stay empty

    def __init__(self, data=None):
        super().__init__(data)
        self.fit_frames: list[pd.DataFrame] = []
        self.calls: list[tuple[int, np.ndarray]] = []

    def fit(self, frames, progress=True):
        self.fit_frames = [f.copy() for f in frames]
        return self

    def predict_returns(self, frame, origins):
        origins = np.asarray(origins)
        self.calls.append((len(frame), origins.copy()))
        return np.full((len(origins), self.horizon), 0.001)


# --- the split --------------------------------------------------------------------------------------------

def test_split_index():
    assert split_index(100, 0.2) == 80
    assert split_index(101, 0.25) == 76
    assert split_index(5, 0.01) == 4  # at least one test row
    assert split_index(5, 0.99) == 1  # at least one training row
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError):
            split_index(100, bad)


@pytest.mark.parametrize("n, split", [(100, 80), (100, 5), (60, 55)])
def test_test_origins_have_all_targets_in_the_test_part(n, split):
    origins = make_test_origins(n, split, W, H)
    assert len(origins) > 0
    assert (origins + 1 >= split).all()  # the first target is a test row
    assert (origins >= W - 1).all()  # a full window behind it
    assert (origins + H <= n - 1).all()  # every target inside the frame
    if split - 1 >= W - 1:
        assert origins[0] == split - 1  # the last training day forecasts the first test days


def test_evaluate_fits_only_on_the_training_part():
    frames = {"a": make_ohlcv(120, seed=1), "b": make_ohlcv(90, seed=2, start="2019-06-03")}
    spies: list[Spy] = []

    def make():
        spies.append(Spy(DataConfig(window_size=W, horizon=H)))
        return spies[-1]

    _, forecasts = evaluate(frames, {"spy": make}, test_size=0.25, progress=False, log=quiet)
    (spy,) = spies
    assert len(spy.fit_frames) == 2
    for (name, frame), seen in zip(frames.items(), spy.fit_frames):
        split = split_index(len(frame), 0.25)
        pd.testing.assert_frame_equal(seen, frame.iloc[:split])
        assert seen.index.max() < frame.index[split]
    assert len(spy.calls) == 2
    for (name, frame), (n_rows, origins) in zip(frames.items(), spy.calls):
        split = split_index(len(frame), 0.25)
        assert n_rows == len(frame)
        assert origins.min() == split - 1
        assert origins.max() == len(frame) - 1 - H  # the last origin whose targets are all known
        part = forecasts[(forecasts["series"] == name) & (forecasts["model"] == "spy")]
        assert (pd.to_datetime(part["target_date"]) >= frame.index[split]).all()
        assert (pd.to_datetime(part["origin"]) >= frame.index[split - 1]).all()
        assert len(part) == len(origins) * H


def test_evaluate_mlp_training_never_sees_test_rows():
    """Change every test row wildly: a fitted MLP's weights (hence its scaled predictions) stay the same."""
    frame = make_ohlcv(200, seed=5)
    poisoned = frame.copy()
    split = split_index(len(frame), 0.2)
    poisoned.iloc[split:, :4] *= 3.0

    fitted = []

    def make():
        fitted.append(MLPForecaster(DataConfig(window_size=W, horizon=H), MLPConfig(epochs=2)))
        return fitted[-1]

    evaluate({"s": frame}, {"mlp": make}, test_size=0.2, progress=False, log=quiet)
    evaluate({"s": poisoned}, {"mlp": make}, test_size=0.2, progress=False, log=quiet)
    a, b = fitted
    for key, value in a.net.state_dict().items():
        assert torch_equal(value, b.net.state_dict()[key]), key
    assert a.fit_info["series"][0]["last"] == frame.index[split - 1].strftime("%Y-%m-%d")


def torch_equal(x, y) -> bool:
    return bool((x == y).all())


# --- metrics ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scored():
    frames = {"a": make_ohlcv(150, seed=11), "b": make_ohlcv(150, seed=12, vol=0.03)}
    data = DataConfig(window_size=W, horizon=H)
    models = {"naive": lambda: NaiveForecaster(data), "drift": lambda: DriftForecaster(data)}
    table, forecasts = evaluate(frames, models, test_size=0.3, progress=False, log=quiet)
    return frames, table, forecasts


def test_metrics_columns_and_rows(scored):
    frames, table, forecasts = scored
    for column in METRIC_COLUMNS:
        assert column in table.columns
    assert len(table) == 2 * 2 * H  # series × models × horizons
    assert set(table["series"]) == {"a", "b"}
    assert set(table["model"]) == {"naive", "drift"}
    assert sorted(table["horizon"].unique()) == [1, 2, 3]
    assert list(forecasts.columns[:8]) == ["series", "model", "origin", "horizon", "target_date", "last_close",
                                           "actual", "predicted"]
    assert "mae_vs_naive" in format_table(table)


def test_naive_mae_vs_naive_is_exactly_one(scored):
    _, table, _ = scored
    naive = table[table["model"] == "naive"]
    assert (naive["mae_vs_naive"] == 1.0).all()
    assert (naive["dir_acc"] == 0.0).all()  # naive never predicts a move; these prices never stay flat
    assert naive["dm_pvalue"].isna().all()  # identical losses: no test


def test_metrics_match_a_direct_computation(scored):
    _, table, forecasts = scored
    g = forecasts[(forecasts["series"] == "b") & (forecasts["model"] == "drift") & (forecasts["horizon"] == 2)]
    row = table[(table["series"] == "b") & (table["model"] == "drift") & (table["horizon"] == 2)].iloc[0]
    err = g["predicted"] - g["actual"]
    assert row["mae"] == pytest.approx(err.abs().mean())
    assert row["rmse"] == pytest.approx(np.sqrt((err**2).mean()))
    assert row["mape"] == pytest.approx((err.abs() / g["actual"]).mean() * 100)
    assert row["mae_vs_naive"] == pytest.approx(err.abs().mean() / (g["last_close"] - g["actual"]).abs().mean())


def test_each_series_is_scored_on_its_own(scored):
    frames, table, _ = scored
    data = DataConfig(window_size=W, horizon=H)
    for name, frame in frames.items():
        models = {"naive": lambda: NaiveForecaster(data), "drift": lambda: DriftForecaster(data)}
        alone, _ = evaluate({name: frame}, models, test_size=0.3, progress=False, log=quiet)
        together = table[table["series"] == name].reset_index(drop=True)
        pd.testing.assert_frame_equal(alone.reset_index(drop=True), together)
    # The two series differ (vol 1% vs 3%), so pooling them would have shown.
    mae = table[table["model"] == "naive"].groupby("series")["mae"].mean()
    assert mae["b"] > 2 * mae["a"]


def test_dir_acc_on_a_hand_made_frame():
    forecasts = pd.DataFrame({
        "series": "s", "model": "m", "horizon": 1,
        "last_close": [10.0, 10.0, 10.0, 10.0, 10.0],
        "actual":     [11.0, 9.0, 11.0, 9.0, 10.0],
        "predicted":  [10.5, 9.5, 9.8, 10.2, 10.0],
        # direction:   up=up  dn=dn up≠dn dn≠up flat=flat  -> 3 of 5
    })
    row = metrics(forecasts).iloc[0]
    assert row["dir_acc"] == pytest.approx(3 / 5)
    assert row["n"] == 5
    assert row["mae"] == pytest.approx(np.mean([0.5, 0.5, 1.2, 1.2, 0.0]))
    assert row["mae_vs_naive"] == pytest.approx(np.mean([0.5, 0.5, 1.2, 1.2, 0.0]) / np.mean([1, 1, 1, 1, 0]))


def test_diebold_mariano():
    rng = np.random.default_rng(0)
    n = 400
    base = np.abs(rng.normal(0, 1, n))
    clearly_worse = base + 0.5 + np.abs(rng.normal(0, 0.2, n))
    assert diebold_mariano(clearly_worse, base, horizon=1) < 1e-6
    assert diebold_mariano(clearly_worse, base, horizon=3) < 1e-6
    same_a = np.abs(rng.normal(0, 1, n))
    same_b = rng.permutation(same_a)  # the very same losses in another order: equal means
    p = diebold_mariano(same_a, same_b, horizon=1)
    assert 0.9 < p <= 1.0
    # Symmetric in its arguments, and undefined where it cannot be computed.
    assert diebold_mariano(same_b, same_a, horizon=1) == pytest.approx(p)
    assert np.isnan(diebold_mariano(base, base, horizon=1))
    assert np.isnan(diebold_mariano(base * (1 + 1e-7), base, horizon=1))  # equal up to float32 rounding
    assert np.isnan(diebold_mariano(base[:2], same_a[:2], horizon=1))


def test_diebold_mariano_p_values_are_roughly_uniform_under_the_null():
    rng = np.random.default_rng(1)
    ps = np.array([diebold_mariano(np.abs(rng.normal(size=200)), np.abs(rng.normal(size=200)), 1) for _ in range(200)])
    assert 0.01 <= (ps < 0.05).mean() <= 0.10


# --- backtest and plot ----------------------------------------------------------------------------------

def test_backtest_actuals_are_the_real_closes():
    frame = make_ohlcv(60, seed=8)
    origins = make_test_origins(len(frame), 45, W, H)
    out = backtest(NaiveForecaster(DataConfig(window_size=W, horizon=H)), "naive", "s", frame, origins)
    close = frame["Close"]
    for row in out.itertuples():
        assert row.actual == pytest.approx(close.loc[row.target_date], rel=1e-13)
        assert row.last_close == close.loc[row.origin]
        assert row.predicted == row.last_close


def test_plot_forecasts_writes_a_png_and_no_temp_file(scored, tmp_path):
    _, _, forecasts = scored
    path = tmp_path / "plot.png"
    plot_forecasts(forecasts, path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
