"""`stockllm forecast`: download the latest history (through the one yfinance function, replaced here), forecast
the exchange's next sessions per ticker, print them with intervals and write predictions.csv."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_ohlcv, write_csv
from stockllm import data as data_module
from stockllm.cli import main

# Last bar before a holiday on each exchange, and the sessions that follow it.
LAST_BAR = {"AAPL": "2018-12-31", "600519.SS": "2019-02-01"}
NEXT = {"AAPL": ["2019-01-02", "2019-01-03", "2019-01-04"],  # NYSE: New Year's Day
        "600519.SS": ["2019-02-11", "2019-02-12", "2019-02-13"]}  # Shanghai: Spring Festival week


def yahoo_history(ticker: str, n: int = 300) -> pd.DataFrame:
    """What yfinance's Ticker.history(auto_adjust=False) returns, ending on LAST_BAR[ticker]: tz-aware index."""
    bars = make_ohlcv(700, seed=len(ticker), start="2016-06-01")
    bars = bars[bars.index <= LAST_BAR[ticker]].iloc[-n:]
    index = pd.DatetimeIndex(bars.index).tz_localize("Asia/Shanghai" if ticker.endswith(".SS") else
                                                      "America/New_York").rename("Date")
    return pd.DataFrame({**{c: bars[c].to_numpy() for c in ("Open", "High", "Low", "Close")},
                         "Adj Close": bars["Close"].to_numpy(), "Volume": bars["Volume"].to_numpy(),
                         "Dividends": 0.0, "Stock Splits": 0.0}, index=index)


@pytest.fixture
def yahoo(monkeypatch):
    calls = []

    def fake(ticker, **kwargs):
        calls.append((ticker, kwargs))
        return yahoo_history(ticker)

    monkeypatch.setattr(data_module, "fetch_yahoo", fake)
    return calls


def run(capsys, argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


@pytest.mark.parametrize("model", ["naive", "drift"])
def test_forecast_tickers_dates_and_intervals(yahoo, capsys, tmp_path, model):
    output = tmp_path / "predictions.csv"
    rc, out, err = run(capsys, ["forecast", "--ticker", "aapl,600519.SS", "--model", model, "--output", output])
    assert rc == 0, err
    assert [t for t, _ in yahoo] == ["AAPL", "600519.SS"]
    assert all(kw["period"] == "2y" for _, kw in yahoo)
    table = pd.read_csv(output)
    for ticker in ("AAPL", "600519.SS"):
        rows = table[table["series"] == ticker]
        assert list(rows["date"]) == NEXT[ticker]
        assert list(rows["horizon"]) == [1, 2, 3]
        last = yahoo_history(ticker)["Close"].iloc[-1]
        np.testing.assert_allclose(rows["last_close"], last)
        assert (rows["last_date"] == LAST_BAR[ticker]).all()
        assert (rows["q0.1"] < rows["predicted_close"]).all() and (rows["predicted_close"] < rows["q0.9"]).all()
        assert (np.diff(rows["q0.9"] - rows["q0.1"]) > 0).all()  # the interval widens with the horizon
        for _, row in rows.iterrows():  # the printed table: median and 80% interval per session
            assert (f"{row['date']}  +{row['horizon']}d  {row['predicted_close']:.2f}  "
                    f"80% [{row['q0.1']:.2f}, {row['q0.9']:.2f}]") in out
    assert "downloading AAPL" in out and "wrote" in out


def test_forecast_with_a_checkpoint_and_calendar_override(yahoo, capsys, tmp_path):
    ck = tmp_path / "ck"
    data = write_csv(make_ohlcv(300, seed=5), tmp_path / "train.csv")
    assert main(["train", "--data", str(data), "--epochs", "2", "--quiet", "--save_dir", str(ck)]) == 0
    output = tmp_path / "p.csv"
    rc, out, err = run(capsys, ["forecast", "--ticker", "600519.SS", "--checkpoint", ck, "--calendar", "XNYS",
                                "--quantiles", "0.1,0.5,0.9", "--output", output])
    assert rc == 0, err
    table = pd.read_csv(output)
    assert list(table["date"]) == ["2019-02-04", "2019-02-05", "2019-02-06"]  # NYSE is open in Spring Festival
    assert list(table.columns[-3:]) == ["q0.1", "q0.5", "q0.9"]
    assert (table["model"] == "mlp").all()


def test_forecast_data_instead_of_ticker(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "fetch_yahoo", lambda *a, **k: pytest.fail("--data must not download"))
    frame = make_ohlcv(400, start="2017-09-01")
    path = write_csv(frame[frame.index <= "2019-02-01"], tmp_path / "600519.SS.csv")
    output = tmp_path / "p.csv"
    rc, out, err = run(capsys, ["forecast", "--data", path, "--model", "naive", "--output", output])
    assert rc == 0, err
    assert list(pd.read_csv(output)["date"]) == NEXT["600519.SS"]  # exchange from the file name


def test_forecast_offline_is_one_clear_line_and_writes_nothing(capsys, tmp_path, monkeypatch):
    def offline(ticker, **kwargs):
        raise OSError("Could not resolve host: query2.finance.yahoo.com")

    monkeypatch.setattr(data_module, "fetch_yahoo", offline)
    output = tmp_path / "p.csv"
    rc, out, err = run(capsys, ["forecast", "--ticker", "AAPL", "--model", "naive", "--output", output])
    assert rc == 1
    errors = [line for line in err.splitlines() if line.startswith("stockllm: error:")]
    assert len(errors) == 1 and "could not reach Yahoo Finance" in errors[0] and "--data" in errors[0]
    assert not output.exists()


def test_forecast_needs_ticker_or_data(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["forecast", "--model", "naive"])
    assert exit_info.value.code == 2
    assert "--ticker" in capsys.readouterr().err


def test_forecast_short_history_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "fetch_yahoo", lambda ticker, **k: yahoo_history("AAPL", n=10))
    rc, out, err = run(capsys, ["forecast", "--ticker", "AAPL", "--model", "naive", "--output", tmp_path / "p.csv"])
    assert rc == 1 and "AAPL has 10 rows" in err
