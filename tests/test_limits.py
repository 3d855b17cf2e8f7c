"""A-share daily price limits: boards from the code, clipped quantiles, the limited flag, evaluate and the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import cli_error_line, make_ohlcv, run_cli, write_csv
from stockllm.errors import StockLLMError
from stockllm.backtest import evaluate
from stockllm.limits import board, check_limits, clip, series_limit
from stockllm.models import NaiveForecaster


@pytest.mark.parametrize("ticker, limit", [
    ("600000.SS", 0.10), ("600000.SH", 0.10), ("sh.600000", 0.10), ("SH600000", 0.10), ("600000", 0.10),
    ("000001.SZ", 0.10), ("sz.002594", 0.10), ("300750.SZ", 0.20), ("301236", 0.20), ("688981.SS", 0.20),
    ("830799.BJ", 0.30), ("bj.430047", 0.30), ("920002", 0.30), ("data/600000.SS.csv", 0.10),
])
def test_board_limit_from_the_code_in_any_convention(ticker, limit):
    assert board(ticker)[0] == limit


@pytest.mark.parametrize("ticker", ["AAPL", "^IXIC", "0700.HK", "000001.SS", "399001.SZ", "510300.SS",
                                    "nasdaq", "300750.SS", "BTC-USD"])
def test_no_limit_for_other_markets_indices_and_funds(ticker):
    assert board(ticker) is None  # 000001.SS is the Shanghai Composite; 300750 is not a Shanghai code


def test_settings_are_checked_in_one_line():
    assert check_limits(None, None) == "auto" and check_limits("off") == "off"
    assert check_limits("auto", 0.05) == 0.05
    with pytest.raises(StockLLMError, match="between 0 and 1"):
        check_limits(None, 1.5)
    with pytest.raises(StockLLMError, match="pass one of them"):
        check_limits("off", 0.05)
    assert series_limit("AAPL", 0.05) == 0.05 and series_limit("600000.SS", "off") is None


def limit_moves(n=400, seed=3, size=0.0995):
    """A volatile stock that keeps hitting limit-like moves (±9.95% days), so a Gaussian band goes past them."""
    rng = np.random.default_rng(seed)
    return make_ohlcv(n, seed=seed, returns=rng.choice([-1, 1], n) * np.log1p(size))


def quantiles_of(model, frame, name):
    frame.attrs["source"] = name
    return model.forecast(frame, levels=model.quantiles)


@pytest.mark.parametrize("ticker, limit", [("600000.SS", 0.10), ("300750.SZ", 0.20)])
def test_every_quantile_within_the_compounded_limit(ticker, limit):
    frame = limit_moves(size=limit - 0.0005)
    model = NaiveForecaster().limited_to()
    table = quantiles_of(model, frame, ticker)
    last = table["last_close"].iloc[0]
    q = table[[c for c in table.columns if c.startswith("q")]].to_numpy()
    h = table["horizon"].to_numpy()[:, None]
    assert (q <= last * (1 + limit) ** h * (1 + 1e-12)).all() and (q >= last * (1 - limit) ** h * (1 - 1e-12)).all()
    assert table["limited"].iloc[0]  # the raw band reaches past tomorrow's limit (it widens by √h, the limit by h)
    raw = quantiles_of(NaiveForecaster(), frame, ticker)
    assert raw["q0.9"].iloc[0] > table["q0.9"].iloc[0]


def test_us_tickers_are_untouched():
    frame = limit_moves()
    limited_table = quantiles_of(NaiveForecaster().limited_to(), frame, "AAPL")
    raw = quantiles_of(NaiveForecaster(), frame.copy(), "AAPL")
    pd.testing.assert_frame_equal(limited_table, raw)
    assert not limited_table["limited"].any()


def test_clip_bounds_compound_by_horizon():
    q = np.full((1, 3, 2), 0.0)
    q[..., 0], q[..., 1] = -1.0, 1.0
    out = clip(q, 0.1)
    assert np.allclose(out[0, :, 1], np.log(1.1) * np.arange(1, 4))
    assert np.allclose(out[0, :, 0], np.log(0.9) * np.arange(1, 4))


def test_evaluate_scores_the_clipped_forecasts_and_says_so():
    frame = limit_moves()
    frames = {"600000.SS": frame.copy()}
    frames["600000.SS"].attrs["source"] = "600000.SS"
    table, forecasts = evaluate(frames, {"naive": NaiveForecaster}, log=lambda *_: None, progress=False)
    assert forecasts["limited"].any()
    q = forecasts[[c for c in forecasts.columns if c.startswith("q")]].to_numpy()
    top = forecasts["last_close"].to_numpy()[:, None] * 1.1 ** forecasts["horizon"].to_numpy()[:, None]
    assert (q <= top * (1 + 1e-12)).all()
    assert "600000.SS ±10% (main board)" in table["protocol"].iloc[0]
    off, raw = evaluate(frames, {"naive": NaiveForecaster}, log=lambda *_: None, progress=False, price_limits="off")
    assert not raw["limited"].any() and "clipped" not in off["protocol"].iloc[0]
    assert (raw[[c for c in raw.columns if c.startswith("q")]].to_numpy() > top).any()


def test_predict_cli_clips_an_a_share_file_and_flags_rows(tmp_path, capsys):
    path = write_csv(limit_moves(), tmp_path / "600000.SS.csv")
    out = tmp_path / "p.csv"
    rc, stdout, _ = run_cli(capsys, ["predict", "--model", "naive", "--data", path, "--output", out])
    assert rc == 0 and "(price limit)" in stdout and "model naive" in stdout
    table = pd.read_csv(out)
    assert table["limited"].iloc[0] and (table["q0.9"] <= table["last_close"] * 1.1 ** table["horizon"] + 1e-9).all()
    rc, _, _ = run_cli(capsys, ["predict", "--model", "naive", "--data", path, "--output", out,
                                "--price_limits", "off"])
    assert rc == 0 and not pd.read_csv(out)["limited"].any()
    rc, _, _ = run_cli(capsys, ["predict", "--model", "naive", "--data", path, "--output", out, "--price_limit", "0.05"])
    assert (pd.read_csv(out)["q0.9"] <= pd.read_csv(out)["last_close"] * 1.05 ** pd.read_csv(out)["horizon"]
            + 1e-9).all()
    line = cli_error_line(capsys, ["predict", "--model", "naive", "--data", path, "--price_limit", "2"])
    assert "--price_limit 2 must lie between 0 and 1" in line


def test_predict_df_clips_a_shares_by_default():
    frame = limit_moves()
    out = NaiveForecaster().predict_df({"600000.SS": frame, "AAPL": frame}, calendar="business")
    a, us = out[out["ticker"] == "600000.SS"], out[out["ticker"] == "AAPL"]
    assert a["limited"].iloc[0] and not us["limited"].any()
    assert (a["q0.9"] <= a["last_close"] * 1.1 ** a["horizon"] + 1e-9).all() and (us["q0.9"].to_numpy() > a["q0.9"].to_numpy()).any()
    raw = NaiveForecaster().predict_df({"600000.SS": frame}, calendar="business", price_limits="off")
    assert not raw["limited"].any()


def test_serve_clips_a_shares():
    pytest.importorskip("fastapi")
    from stockllm.config import DataConfig
    from stockllm.serve import Service, load_models

    service = Service(load_models([], ["naive"], DataConfig()), lambda ticker, period: limit_moves(),
                      calendar="business")
    rows = service.forecast({"tickers": ["600000.SS", "AAPL"]}, record=False)["forecasts"]
    assert [r["limited"] for r in rows if r["horizon"] == 1] == [True, False]
