"""Tests for stockllm.evaluate: no look-ahead, metrics beside naive, Diebold–Mariano and the plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_ohlcv
from stockllm.config import DataConfig, MLPConfig
from stockllm.errors import StockLLMError
from stockllm.backtest import (
    backtest,
    diebold_mariano,
    evaluate,
    format_table,
    metrics,
    plot_forecasts,
    resolve_cutoff,
    split_index,
    test_origins as make_test_origins,  # not collected as a test
)
from stockllm.features import date_split, union_dates
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
def test_test_origins_lie_on_or_after_the_cutoff(n, split):
    index = make_ohlcv(n).index
    origins = make_test_origins(index, index[split], W, H)
    assert len(origins) > 0
    assert (origins >= split).all()  # every origin on or after the cutoff
    assert (origins >= W - 1).all()  # a full window behind it
    assert (origins + H <= n - 1).all()  # every target inside the frame
    assert origins[0] == max(split, W - 1) and origins[-1] == n - 1 - H
    first = origins[0]
    assert len(make_test_origins(index, index[split], W, H, stop=index[first + 2])) == 2


def test_one_cutoff_for_series_with_different_date_ranges():
    """Two series over different dates share one cutoff on the union of their dates; nothing that is fitted or
    validated (inputs or targets) reaches it, and every test origin is on or after it."""
    frames = {"a": make_ohlcv(120, seed=1), "b": make_ohlcv(90, seed=2, start="2020-03-02")}
    spies: list[Spy] = []

    def make():
        spies.append(Spy(DataConfig(window_size=W, horizon=H)))
        return spies[-1]

    logs = []
    _, forecasts = evaluate(frames, {"spy": make}, test_size=0.25, progress=False, log=logs.append)
    dates = union_dates(frames.values())
    cutoff = dates[split_index(len(dates), 0.25)]
    assert resolve_cutoff(frames, 0.25) == cutoff
    assert any(f"test cutoff {cutoff:%Y-%m-%d}" in line for line in logs)
    # The old per-series split (each series' own share of rows) would have trained on b up to a date inside
    # a's test part.
    assert frames["b"].index[split_index(90, 0.25)] > cutoff > frames["a"].index[split_index(120, 0.25)]
    (spy,) = spies
    assert len(spy.fit_frames) == 2
    for (name, frame), seen in zip(frames.items(), spy.fit_frames):
        pd.testing.assert_frame_equal(seen, frame[frame.index < cutoff])
        assert seen.index.max() < cutoff
    for name, frame in frames.items():
        part = forecasts[(forecasts["series"] == name) & (forecasts["model"] == "spy")]
        assert (pd.to_datetime(part["origin"]) >= cutoff).all()
        assert pd.to_datetime(part["origin"]).min() == frame.index[frame.index >= cutoff][0]
        assert part["origin"].max() == frame.index[-1 - H].strftime("%Y-%m-%d")
        assert len(part) == part["origin"].nunique() * H


def test_validation_is_one_date_across_series_and_before_the_cutoff():
    """The models' validation split is chronological on dates: one validation start for all series, every
    training target before it, and (through evaluate) every validation target before the test cutoff."""
    frames = [make_ohlcv(200, seed=1), make_ohlcv(120, seed=2, start="2020-04-01")]
    splits = date_split(frames, W, H, 0.25)
    dates = union_dates(frame.index[W - 1:len(frame) - H] for frame in frames)  # the days with a window and targets
    start = dates[len(dates) - int(round(len(dates) * 0.25))]
    for frame, (train, val) in zip(frames, splits):
        assert len(train) and len(val)
        assert (frame.index[train + H] < start).all()  # training targets end before validation starts
        assert (frame.index[val] >= start).all()
        assert frame.index[train[-1] + H + 1] >= start  # and no training origin was dropped needlessly
    # Inside evaluate, the MLP validates on dates before the cutoff only.
    data = DataConfig(window_size=W, horizon=H)
    full = {"a": make_ohlcv(300, seed=3), "b": make_ohlcv(200, seed=4, start="2020-06-01")}
    fitted = []

    def make():
        fitted.append(MLPForecaster(data, MLPConfig.from_flags(epochs=1)))
        return fitted[-1]

    evaluate(full, {"mlp": make}, test_size=0.2, progress=False, log=quiet)
    cutoff = resolve_cutoff(full, 0.2)
    assert all(pd.Timestamp(s["last"]) < cutoff for s in fitted[0].fit_info["series"])


def test_test_start_sets_the_cutoff_and_is_checked():
    frames = {"a": make_ohlcv(120, seed=1)}
    data = DataConfig(window_size=W, horizon=H)
    table, forecasts = evaluate(frames, {"naive": lambda: NaiveForecaster(data)}, test_start="2020-05-01",
                                progress=False, log=quiet)
    assert forecasts["origin"].min() == "2020-05-01"
    assert table["protocol"].iloc[0] == "no fit"
    with pytest.raises(StockLLMError, match="after the last date"):
        evaluate(frames, {"naive": lambda: NaiveForecaster(data)}, test_start="2030-01-01", progress=False, log=quiet)
    with pytest.raises(StockLLMError, match="YYYY-MM-DD"):
        evaluate(frames, {"naive": lambda: NaiveForecaster(data)}, test_start="soon", progress=False, log=quiet)


def test_evaluate_mlp_training_never_sees_test_rows():
    """Change every test row wildly: a fitted MLP's weights (hence its scaled predictions) stay the same."""
    frame = make_ohlcv(200, seed=5)
    poisoned = frame.copy()
    split = split_index(len(frame), 0.2)  # one series: the cutoff is its own row split
    poisoned.iloc[split:, :4] *= 3.0

    fitted = []

    def make():
        fitted.append(MLPForecaster(DataConfig(window_size=W, horizon=H), MLPConfig.from_flags(epochs=2)))
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
    assert "mae/naive" in format_table(table)
    blank = table.assign(coverage_80_lowvol=np.nan, coverage_80_midvol=np.nan, coverage_80_highvol=np.nan)
    assert "//" not in format_table(blank)  # no terciles (e.g. score's few outcomes): an empty cell, not "//"


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
    origins = make_test_origins(frame.index, frame.index[45], W, H)
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


# --- origin independence ----------------------------------------------------------------------------------

def test_forecasts_do_not_depend_on_the_origin_set():
    """Origin t's forecast is the same asked alone, inside a long backtest, or by forecast() on rows <= t."""
    frame = make_ohlcv(260, seed=21)
    data = DataConfig(window_size=W, horizon=H)
    mlp = MLPForecaster(data, MLPConfig.from_flags(epochs=3)).fit([frame.iloc[:150]], progress=False)
    all_origins = np.arange(W - 1, len(frame) - H)
    for model in (NaiveForecaster(data), DriftForecaster(data), mlp):
        together = model.predict_returns(frame, all_origins)
        for t in (W - 1, 100, 151, 200, len(frame) - H - 1):
            alone = model.predict_returns(frame, np.array([t]))[0]
            np.testing.assert_array_equal(alone, together[t - (W - 1)], err_msg=model.kind)
            history = frame.iloc[: t + 1]
            predicted = model.forecast(history)["predicted_close"].to_numpy()
            np.testing.assert_allclose(predicted, frame["Close"].iloc[t] * np.exp(together[t - (W - 1)]),
                                       rtol=1e-6, err_msg=model.kind)
