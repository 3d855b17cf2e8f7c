"""Data sources (yahoo, akshare, baostock): ticker conventions, adjustment, one checked frame, one-line errors.

No test reaches the network: the fetch functions (``sources.fetch_akshare``, ``sources.fetch_baostock``,
``data.fetch_yahoo``) are replaced, and neither akshare nor baostock needs to be installed."""

from __future__ import annotations

import sys
from datetime import date

import numpy as np
import pandas as pd
import pytest

from conftest import make_ohlcv
from stockllm import data as data_module
from stockllm import sources
from stockllm.cli import main
from stockllm.data import load_ohlcv
from stockllm.errors import DataError, StockLLMError

LAST_BAR = "2019-02-01"  # the Friday before the Spring Festival week (Shanghai closed 4-8 February 2019)
NEXT_XSHG = ["2019-02-11", "2019-02-12", "2019-02-13"]


def bars(n=300, end=LAST_BAR, seed=3) -> pd.DataFrame:
    frame = make_ohlcv(700, seed=seed, start="2016-06-01")
    return frame[frame.index <= end].iloc[-n:]


def akshare_raw(frame: pd.DataFrame) -> pd.DataFrame:
    """What ak.stock_zh_a_hist returns: Chinese column names, dates as datetime.date, Volume in lots of 100."""
    return pd.DataFrame({"日期": [d.date() for d in frame.index], "股票代码": "600519",
                         "开盘": frame["Open"].to_numpy(), "收盘": frame["Close"].to_numpy(),
                         "最高": frame["High"].to_numpy(), "最低": frame["Low"].to_numpy(),
                         "成交量": (frame["Volume"].to_numpy() / 100).round(), "成交额": 1e9, "振幅": 1.0,
                         "涨跌幅": 0.1, "涨跌额": 0.2, "换手率": 0.3})


def baostock_raw(frame: pd.DataFrame) -> pd.DataFrame:
    """What BaoStock's query gives: every field a string, tradestatus 0 on a suspended day."""
    out = pd.DataFrame({"date": frame.index.strftime("%Y-%m-%d"),
                        **{c.lower(): [f"{v:.4f}" for v in frame[c]] for c in ("Open", "High", "Low", "Close")},
                        "volume": [f"{v:.0f}" for v in frame["Volume"]], "tradestatus": "1"})
    out.loc[5, "tradestatus"] = "0"
    return out


def run(capsys, argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def one_error(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("stockllm: error:")]
    assert len(errors) == 1, err
    return errors[0]


# --- tickers ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ticker, yahoo, ak, bao", [
    ("600519.SS", "600519.SS", "600519", "sh.600519"),
    ("600519", "600519.SS", "600519", "sh.600519"),
    ("sh.600519", "600519.SS", "600519", "sh.600519"),
    ("SH.600519", "600519.SS", "600519", "sh.600519"),
    ("SH600519", "600519.SS", "600519", "sh.600519"),
    ("600519.SH", "600519.SS", "600519", "sh.600519"),
    ("000001.SZ", "000001.SZ", "000001", "sz.000001"),
    ("000001", "000001.SZ", "000001", "sz.000001"),
    ("sz.300750", "300750.SZ", "300750", "sz.300750"),
])
def test_ticker_conventions(ticker, yahoo, ak, bao):
    assert sources.yahoo_symbol(ticker) == yahoo
    assert sources.akshare_symbol(ticker) == ak
    assert sources.baostock_symbol(ticker) == bao
    assert sources.yahoo_symbol(sources.baostock_symbol(ticker)) == yahoo  # round trip


@pytest.mark.parametrize("ticker, words", [("AAPL", "six-digit"), ("60051", "six-digit"),
                                           ("sh.000001.SZ", "two exchanges"), ("830799", "Beijing")])
def test_bad_mainland_tickers(ticker, words):
    with pytest.raises(DataError, match=words):
        sources.cn_code(ticker)


def test_period_to_dates():
    today = date(2024, 6, 30)
    assert sources.date_range("1y", None, None, today) == (date(2023, 6, 30), today)
    assert sources.date_range("ytd", None, None, today) == (date(2024, 1, 1), today)
    assert sources.date_range(None, "2024-01-02", "2024-02-01", today) == (date(2024, 1, 2), date(2024, 1, 31))
    with pytest.raises(StockLLMError, match="invalid period"):
        sources.date_range("forever", None, None, today)


def test_adjust_offers():
    assert sources.check_adjust("yahoo", None) == "full"
    assert sources.check_adjust("akshare", "none") == "none"
    with pytest.raises(StockLLMError, match="not offered by AKShare"):
        sources.check_adjust("akshare", "split")


# --- conversions ------------------------------------------------------------------------------------------

def test_akshare_frame_is_the_checked_ohlcv_frame(monkeypatch):
    calls = []

    def fake(symbol, **kwargs):
        calls.append((symbol, kwargs))
        return akshare_raw(bars())

    monkeypatch.setattr(sources, "fetch_akshare", fake)
    frame = sources.download("600519.SS", "akshare", period=None, start="2018-01-01", end="2019-02-02")
    assert calls == [("600519", {"start": "20180101", "end": "20190201", "adjust": "qfq"})]
    assert list(frame.columns) == ["Open", "High", "Low", "Close", "Volume"]
    assert frame.index.name == "Date" and str(frame.index.dtype) == "datetime64[ns]"
    assert all(str(t) == "float64" for t in frame.dtypes)
    np.testing.assert_allclose(frame["Close"], bars()["Close"])
    np.testing.assert_allclose(frame["Volume"], (bars()["Volume"] / 100).round() * 100)  # lots → shares
    assert frame.attrs["source"] == "600519.SS"
    sources.download("600519", "akshare", adjust="none", period="1y")
    assert calls[-1][1]["adjust"] == ""


def test_baostock_frame_drops_suspended_days(monkeypatch):
    calls = []

    def fake(code, **kwargs):
        calls.append((code, kwargs))
        return baostock_raw(bars())

    monkeypatch.setattr(sources, "fetch_baostock", fake)
    frame = sources.download("000001", "baostock", adjust="none", period=None, start="2018-01-01")
    assert calls[0][0] == "sz.000001" and calls[0][1]["adjustflag"] == "3" and calls[0][1]["start"] == "2018-01-01"
    assert len(frame) == len(bars()) - 1 and bars().index[5] not in frame.index
    assert frame.attrs["source"] == "000001.SZ"
    np.testing.assert_allclose(frame["Close"], bars()["Close"].drop(bars().index[5]), rtol=1e-5)


def test_yahoo_adjustments():
    idx = pd.bdate_range("2024-01-01", periods=4)
    raw = pd.DataFrame({"Open": [50.0, 52, 26, 27], "High": [51.0, 53, 27, 28], "Low": [49.0, 51, 25, 26],
                        "Close": [50.0, 52, 26, 27], "Adj Close": [49.0, 51, 26, 27], "Volume": [100.0, 100, 200, 200],
                        "Stock Splits": [0.0, 0, 2, 0]}, index=idx)
    # Yahoo's Close is already split-adjusted (52 was 104 before the 2:1 split on day 3).
    none = data_module.adjust_yahoo(raw, "none")
    np.testing.assert_allclose(none["Close"], [100, 104, 26, 27])
    np.testing.assert_allclose(none["Volume"], [50, 50, 200, 200])
    full = data_module.adjust_yahoo(raw, "full")
    np.testing.assert_allclose(full["Close"], [49, 51, 26, 27])
    np.testing.assert_allclose(full["Open"], np.array([50, 52, 26, 27]) * np.array([49 / 50, 51 / 52, 1, 1]))
    assert data_module.adjust_yahoo(raw, "split") is raw


def test_yahoo_full_adjustment_through_download(monkeypatch):
    from test_cli import yahoo_like

    monkeypatch.setattr(data_module, "fetch_yahoo", lambda ticker, **kwargs: yahoo_like(ticker))
    full = sources.download("AAA", "yahoo", period="1y")
    split = sources.download("AAA", "yahoo", adjust="split", period="1y")
    np.testing.assert_allclose(full["Close"], split["Close"] * 0.98)  # Adj Close is 0.98 × Close there


# --- the CLI ----------------------------------------------------------------------------------------------

def offline(*args, **kwargs):
    raise OSError("HTTPSConnectionPool(host='push2his.eastmoney.com', port=443): Max retries exceeded")


def test_download_akshare_offline_is_one_line_and_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "fetch_akshare", offline)
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capsys, ["download", "--source", "akshare", "--ticker", "600519", "--output", "x.csv"])
    line = one_error(err)
    assert rc == 1 and "could not reach AKShare" in line and "--data" in line
    assert list(tmp_path.iterdir()) == []


def test_download_baostock_offline_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "fetch_baostock", lambda *a, **k: (_ for _ in ()).throw(
        ConnectionError("login failed: 网络接收错误。 (10002007)")))
    rc, out, err = run(capsys, ["download", "--source", "baostock", "--ticker", "sh.600519",
                                "--output", tmp_path / "x.csv"])
    line = one_error(err)
    assert rc == 1 and "could not reach BaoStock" in line and "--data" in line
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("source", ["akshare", "baostock"])
def test_missing_library_names_the_extra(capsys, tmp_path, monkeypatch, source):
    monkeypatch.setitem(sys.modules, source, None)  # `import akshare` now raises ImportError
    rc, out, err = run(capsys, ["download", "--source", source, "--ticker", "600519", "--output", tmp_path / "x.csv"])
    line = one_error(err)
    assert rc == 1 and "pip install 'stockllm[cn]'" in line and "--data" in line


def test_download_akshare_writes_the_same_columns_as_yahoo(capsys, tmp_path, monkeypatch):
    from test_cli import yahoo_like

    monkeypatch.setattr(sources, "fetch_akshare", lambda symbol, **kwargs: akshare_raw(bars()))
    monkeypatch.setattr(data_module, "fetch_yahoo", lambda ticker, **kwargs: yahoo_like(ticker))
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capsys, ["download", "--source", "akshare", "--ticker", "600519"])
    assert rc == 0, err
    rc, out, err = run(capsys, ["download", "--ticker", "AAA"])
    assert rc == 0, err
    cn, us = tmp_path / "600519.SS.csv", tmp_path / "AAA.csv"  # the Yahoo spelling: the calendar follows
    assert cn.read_text().splitlines()[0] == us.read_text().splitlines()[0] == "Date,Open,High,Low,Close,Volume"
    frame = load_ohlcv(cn)
    np.testing.assert_allclose(frame["Close"], bars()["Close"], rtol=1e-12)


def test_download_refuses_an_adjustment_the_source_lacks(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "fetch_akshare", lambda *a, **k: pytest.fail("no fetch for a bad flag"))
    rc, out, err = run(capsys, ["download", "--source", "akshare", "--adjust", "split", "--ticker", "600519",
                                "--output", tmp_path / "x.csv"])
    assert rc == 1 and "--adjust split is not offered by AKShare" in one_error(err)


@pytest.mark.parametrize("source, ticker", [("akshare", "600519"), ("baostock", "sz.000001")])
def test_forecast_mainland_source_dates_by_shanghai(capsys, tmp_path, monkeypatch, source, ticker):
    monkeypatch.setattr(sources, "fetch_akshare", lambda symbol, **kwargs: akshare_raw(bars()))
    monkeypatch.setattr(sources, "fetch_baostock", lambda code, **kwargs: baostock_raw(bars()))
    output, ledger = tmp_path / "p.csv", tmp_path / "ledger.csv"
    rc, out, err = run(capsys, ["forecast", "--source", source, "--ticker", ticker, "--model", "naive",
                                "--output", output, "--ledger", ledger, "--quiet"])
    assert rc == 0, err
    from stockllm.ledger import read_ledger

    rows, _ = read_ledger(ledger)
    assert set(rows["source"]) == {source} and set(rows["ticker"]) == {sources.yahoo_symbol(ticker)}
    table = pd.read_csv(output)
    assert list(table["date"]) == NEXT_XSHG  # Spring Festival skipped: the Shanghai calendar
    assert table["series"].iloc[0] == sources.yahoo_symbol(ticker)
    assert f"from {sources.NAMES[source]}" in out


def test_forecast_data_refuses_source_flags(capsys, tmp_path):
    from conftest import write_csv

    path = write_csv(bars(), tmp_path / "600519.SS.csv")
    rc, out, err = run(capsys, ["forecast", "--data", path, "--source", "akshare", "--model", "naive",
                                "--output", tmp_path / "p.csv"])
    assert rc == 1 and "--source applies to --ticker downloads only" in one_error(err)
