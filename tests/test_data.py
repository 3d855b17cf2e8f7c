"""Tests for stockllm.data: loading, checking, downloading (offline) and saving OHLCV bars."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockllm import data
from stockllm.data import (
    OHLCV_COLUMNS,
    download_ohlcv,
    load_ohlcv,
    save_ohlcv_csv,
    write_csv_atomic,
)
from stockllm.errors import DataError, DataWarning, StockLLMError

NASDAQ = Path(__file__).resolve().parents[1] / "src" / "stockllm" / "samples" / "nasdaq.csv"

SEED = """Date,Open,High,Low,Close,Volume
2020-01-02,10,11,9,10.5,1000
2020-01-03,10.5,12,10,11.5,2000
2020-01-06,11.5,12.5,11,12,1500
"""


def write(tmp_path: Path, text: str | bytes, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def load_quietly(path, **kwargs) -> pd.DataFrame:
    """load_ohlcv, failing the test if it warns."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_ohlcv(path, **kwargs)


def assert_ohlcv(frame: pd.DataFrame, dates: list[str]) -> None:
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert frame.index.name == "Date"
    assert frame.index.tz is None
    assert list(frame.index) == list(pd.to_datetime(dates))
    assert tuple(frame.columns) == OHLCV_COLUMNS
    assert (frame.dtypes == np.float64).all()


def reject(path, **kwargs) -> str:
    """The one-line DataError message load_ohlcv gives for path."""
    with pytest.raises(DataError) as info:
        load_ohlcv(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert ": " in message
    return message


# --------------------------------------------------------------------------------------------------
# Accepted files


def test_seed_columns_load_without_warnings(tmp_path):
    path = write(tmp_path, SEED)
    frame = load_quietly(path)
    assert_ohlcv(frame, ["2020-01-02", "2020-01-03", "2020-01-06"])
    assert frame.loc["2020-01-03"].tolist() == [10.5, 12.0, 10.0, 11.5, 2000.0]
    assert frame.attrs["source"] == str(path)


def test_yahoo_export_uses_close_not_adj_close(tmp_path):
    path = write(
        tmp_path,
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "1/4/1999,10,11,9,10.5,99,1000\n"
        "1/5/1999,10.5,12,10,11.5,98,2000\n",
    )
    frame = load_quietly(path)
    assert_ohlcv(frame, ["1999-01-04", "1999-01-05"])
    assert frame["Close"].tolist() == [10.5, 11.5]


def test_times_and_utc_offsets_keep_the_local_date(tmp_path):
    path = write(
        tmp_path,
        "Date,Open,High,Low,Close,Volume\n"
        "2024-03-08 00:00:00-05:00,10,11,9,10,1\n"
        "2024-03-11 00:00:00-04:00,10,11,9,10,1\n"  # DST changed: mixed offsets in one file
        "2024-03-12T00:00:00Z,10,11,9,10,1\n"
        "2024-03-13 16:00,10,11,9,10,1\n",
    )
    assert_ohlcv(load_quietly(path), ["2024-03-08", "2024-03-11", "2024-03-12", "2024-03-13"])


def test_header_case_and_whitespace_are_ignored(tmp_path):
    path = write(
        tmp_path,
        " date , OPEN,high ,Low,  cLoSe ,volume\n"
        " 2020-01-02 , 10 ,11, 9,10.5 , 1000 \n"
        "2020-01-03,10.5,12,10,11.5,2000\n",
    )
    frame = load_quietly(path)
    assert_ohlcv(frame, ["2020-01-02", "2020-01-03"])
    assert frame.iloc[0].tolist() == [10.0, 11.0, 9.0, 10.5, 1000.0]


def test_semicolon_separator_is_sniffed(tmp_path):
    path = write(tmp_path, SEED.replace(",", ";"))
    assert_ohlcv(load_quietly(path), ["2020-01-02", "2020-01-03", "2020-01-06"])


def test_utf8_bom_and_crlf(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbf" + SEED.replace("\n", "\r\n").encode())
    assert_ohlcv(load_quietly(path), ["2020-01-02", "2020-01-03", "2020-01-06"])


def test_extra_columns_are_ignored_and_order_is_free(tmp_path):
    path = write(
        tmp_path,
        "Ticker,Volume,Close,Low,High,Open,Date,Note\n"
        "X,1000,10.5,9,11,10,2020-01-02,hello\n"
        "X,2000,11.5,10,12,10.5,2020-01-03,\n",
    )
    frame = load_quietly(path)
    assert_ohlcv(frame, ["2020-01-02", "2020-01-03"])
    assert frame.iloc[0].tolist() == [10.0, 11.0, 9.0, 10.5, 1000.0]


def test_blank_lines_are_skipped(tmp_path):
    path = write(tmp_path, "\n" + SEED.replace("\n", "\n\n", 2) + "\n\n  \n,,,,,\n")
    assert_ohlcv(load_quietly(path), ["2020-01-02", "2020-01-03", "2020-01-06"])


def test_pandas_to_csv_with_unnamed_index_column(tmp_path):
    index = pd.to_datetime(["2020-01-02", "2020-01-03"])
    written = pd.DataFrame(
        {"Open": [10.0, 10.5], "High": [11.0, 12.0], "Low": [9.0, 10.0], "Close": [10.5, 11.5], "Volume": [1e3, 2e3]},
        index=index,
    )
    path = tmp_path / "frame.csv"
    written.to_csv(path)
    assert path.read_text().startswith(",Open,")
    frame = load_quietly(path)
    assert_ohlcv(frame, ["2020-01-02", "2020-01-03"])
    np.testing.assert_array_equal(frame.to_numpy(), written.to_numpy())


def test_unsorted_rows_are_sorted_with_a_warning(tmp_path):
    lines = SEED.splitlines()
    path = write(tmp_path, "\n".join([lines[0], lines[3], lines[1], lines[2]]) + "\n")
    with pytest.warns(DataWarning, match=r"not in date order.*sorted"):
        frame = load_ohlcv(path)
    assert_ohlcv(frame, ["2020-01-02", "2020-01-03", "2020-01-06"])
    assert frame["Close"].tolist() == [10.5, 11.5, 12.0]


def test_newest_first_file_is_sorted(tmp_path):
    lines = SEED.splitlines()
    path = write(tmp_path, "\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    with pytest.warns(DataWarning, match="sorted"):
        frame = load_ohlcv(path)
    assert frame.index.is_monotonic_increasing


def test_exact_duplicate_rows_are_dropped_with_a_warning(tmp_path):
    path = write(tmp_path, SEED + "2020-01-03,10.5,12,10,11.5,2000\n")
    with pytest.warns(DataWarning, match=r"dropped 1 exact duplicate row in .*bars\.csv row 5"):
        frame = load_ohlcv(path)
    assert_ohlcv(frame, ["2020-01-02", "2020-01-03", "2020-01-06"])


def test_empty_volume_is_filled_from_the_previous_row(tmp_path):
    path = write(
        tmp_path,
        "Date,Open,High,Low,Close,Volume\n"
        "2020-01-02,10,11,9,10.5,1000\n"
        "2020-01-03,10.5,12,10,11.5,\n"
        "2020-01-06,11.5,12.5,11,12,1500\n",
    )
    with pytest.warns(DataWarning, match=r"filled 1 empty Volume cell in .*bars\.csv row 3"):
        frame = load_ohlcv(path)
    assert frame["Volume"].tolist() == [1000.0, 1000.0, 1500.0]


def test_empty_volume_in_the_first_row_is_filled_from_the_next(tmp_path):
    path = write(
        tmp_path,
        "Date,Open,High,Low,Close,Volume\n"
        "2020-01-02,10,11,9,10.5,\n"
        "2020-01-03,10.5,12,10,11.5,2000\n"
        "2020-01-06,11.5,12.5,11,12,  \n",
    )
    with pytest.warns(DataWarning, match=r"filled 2 empty Volume cells in .* rows 2, 4"):
        frame = load_ohlcv(path)
    assert frame["Volume"].tolist() == [2000.0, 2000.0, 2000.0]


def test_volume_is_filled_after_sorting(tmp_path):
    path = write(
        tmp_path,
        "Date,Open,High,Low,Close,Volume\n"
        "2020-01-06,11.5,12.5,11,12,\n"
        "2020-01-02,10,11,9,10.5,1000\n"
        "2020-01-03,10.5,12,10,11.5,2000\n",
    )
    with pytest.warns(DataWarning):
        frame = load_ohlcv(path)
    assert frame["Volume"].tolist() == [1000.0, 2000.0, 2000.0]


def test_zero_volume_is_valid(tmp_path):
    path = write(tmp_path, SEED.replace(",1000\n", ",0\n"))
    assert load_quietly(path)["Volume"].iloc[0] == 0.0


def test_min_rows_met(tmp_path):
    assert len(load_quietly(write(tmp_path, SEED), min_rows=3)) == 3


def test_nasdaq_sample_file():
    if not NASDAQ.exists():
        pytest.skip(f"{NASDAQ} not present")
    frame = load_quietly(NASDAQ, min_rows=33, min_rows_reason="window 30 + horizon 3")
    assert len(frame) == 5031
    assert_ohlcv(frame.iloc[:1], ["1999-01-04"])
    assert frame["Close"].iloc[0] == pytest.approx(2208.050049)
    assert frame.index[-1] == pd.Timestamp("2018-12-31")
    assert frame.index.is_unique and frame.index.is_monotonic_increasing


# --------------------------------------------------------------------------------------------------
# Rejected files: the message names the file, the row (header = 1) and the column


def test_missing_file(tmp_path):
    message = reject(tmp_path / "nope.csv")
    assert message.startswith(f"no such file {tmp_path / 'nope.csv'}: ")


def test_directory(tmp_path):
    assert "is a folder" in reject(tmp_path)


@pytest.mark.parametrize("content", [b"", b"  \n\n \t\n"])
def test_empty_file(tmp_path, content):
    path = write(tmp_path, content)
    assert reject(path).startswith(f"empty file in {path}: ")


def test_header_without_rows(tmp_path):
    path = write(tmp_path, "Date,Open,High,Low,Close,Volume\n\n")
    assert reject(path).startswith(f"no data rows in {path}: ")


def test_missing_column_lists_the_columns_found(tmp_path):
    path = write(tmp_path, "Date,Open,High,Low,Close\n2020-01-02,10,11,9,10.5\n")
    message = reject(path)
    assert message.startswith(f"missing column Volume in {path} row 1: ")
    assert "'Date', 'Open', 'High', 'Low', 'Close'" in message
    assert "Date,Open,High,Low,Close,Volume" in message


def test_adj_close_does_not_stand_in_for_close(tmp_path):
    path = write(tmp_path, "Date,Open,High,Low,Adj Close,Volume\n2020-01-02,10,11,9,10.5,1\n")
    assert reject(path).startswith(f"missing column Close in {path} row 1: ")


def test_file_without_header(tmp_path):
    path = write(tmp_path, "2020-01-02,1,2,0.5,1.5,5\n2020-01-03,1,2,0.5,1.5,5\n")
    message = reject(path)
    assert message.startswith(f"missing columns Date, Open, High, Low, Close, Volume in {path} row 1: ")
    assert "add the header line Date,Open,High,Low,Close,Volume" in message


def test_header_row_number_counts_leading_blank_lines(tmp_path):
    path = write(tmp_path, "\n\nDate,Open\n2020-01-02,1\n")
    assert f"in {path} row 3:" in reject(path)


def test_duplicate_column(tmp_path):
    path = write(tmp_path, "Date,Open,High,Low,Close,close,Volume\n2020-01-02,1,2,0.5,1.5,1.5,5\n")
    assert reject(path).startswith(f"column Close appears twice in {path} row 1: keep one of columns 5 and 6")


BAD_CELLS = [
    # (row 3 as written, what the message starts with, column)
    ("2020-01-03,abc,12,10,11.5,2000", "non-numeric Open 'abc'", "Open"),
    ("2020-01-03,10.5,nan,10,11.5,2000", "non-finite High 'nan'", "High"),
    ("2020-01-03,10.5,12,-inf,11.5,2000", "non-finite Low '-inf'", "Low"),
    ("2020-01-03,10.5,12,10,0,2000", "zero Close 0", "Close"),
    ("2020-01-03,-10.5,12,10,11.5,2000", "negative Open -10.5", "Open"),
    ("2020-01-03,10.5,12,10,,2000", "missing Close", "Close"),
    ("2020-01-03,10.5,12,10,11.5,-5", "negative Volume -5", "Volume"),
    ("2020-01-03,10.5,12,10,11.5,inf", "non-finite Volume 'inf'", "Volume"),
    ("2020-01-03,10.5,12,10,11.5,lots", "non-numeric Volume 'lots'", "Volume"),
    ("2020-01-03,10.5,9,10,9.5,2000", "High 9 below Low 10", "High"),
    ("2020-13-45,10.5,12,10,11.5,2000", "unparseable date '2020-13-45'", "Date"),
    ("2021-02-30,10.5,12,10,11.5,2000", "unparseable date '2021-02-30'", "Date"),
    ("03.01.2020,10.5,12,10,11.5,2000", "unparseable date '03.01.2020'", "Date"),
    (",10.5,12,10,11.5,2000", "missing date", "Date"),
]


@pytest.mark.parametrize(("line", "what", "column"), BAD_CELLS, ids=[case[1] for case in BAD_CELLS])
def test_bad_cell_names_file_row_and_column(tmp_path, line, what, column):
    lines = SEED.splitlines()
    path = write(tmp_path, "\n".join([lines[0], lines[1], line, lines[3]]) + "\n")
    message = reject(path)
    assert message.startswith(f"{what} in {path} row 3 column {column}: ")


def test_row_numbers_count_blank_lines(tmp_path):
    path = write(
        tmp_path,
        "Date,Open,High,Low,Close,Volume\r\n\r\n2020-01-02,10,11,9,10.5,1000\r\n\r\n\r\n2020-01-03,10.5,12,10,x,2000\r\n",
    )
    assert reject(path).startswith(f"non-numeric Close 'x' in {path} row 6 column Close: ")


def test_the_first_problem_in_row_order_is_reported(tmp_path):
    path = write(
        tmp_path,
        "Date,Open,High,Low,Close,Volume\n"
        "2020-01-02,10,11,9,10.5,1000\n"
        "2020-01-03,10.5,12,10,11.5,-1\n"
        "bad,10.5,12,10,11.5,2000\n",
    )
    assert reject(path).startswith(f"negative Volume -1 in {path} row 3 column Volume")


def test_entirely_empty_volume_column(tmp_path):
    path = write(tmp_path, "Date,Open,High,Low,Close,Volume\n2020-01-02,10,11,9,10.5,\n2020-01-03,10,11,9,10.5,\n")
    assert reject(path).startswith(f"empty Volume column in {path} column Volume: ")


def test_same_date_with_different_values_names_both_rows(tmp_path):
    path = write(tmp_path, SEED + "\n2020-01-03,10.5,12,10,11.6,2000\n")
    message = reject(path)
    assert message.startswith(f"two rows for 2020-01-03 with different values in {path} rows 3 and 6 column Date: ")


def test_wrong_number_of_values(tmp_path):
    path = write(tmp_path, SEED + "2020-01-07,1,2,0.5\n")
    assert reject(path).startswith(f"4 values instead of 6 in {path} row 5: ")


def test_binary_file(tmp_path):
    path = write(tmp_path, b"PK\x03\x04\x00\x00binary\x00stuff")
    assert reject(path).startswith(f"binary file in {path}: ")


def test_utf16_file(tmp_path):
    path = write(tmp_path, SEED.encode("utf-16"))
    assert reject(path).startswith(f"UTF-16 text in {path}: ")


def test_not_utf8_names_the_row(tmp_path):
    path = write(tmp_path, (SEED + "2020-01-07,1,2,0.5,1,5 caf\xe9\n").encode("latin-1"))
    assert reject(path).startswith(f"text that is not UTF-8 in {path} row 5: ")


def test_too_few_rows_says_how_many_are_needed(tmp_path):
    path = write(tmp_path, SEED)
    message = reject(path, min_rows=33, min_rows_reason="window 30 + horizon 3")
    assert message.startswith(f"too few rows in {path}: 3 valid rows, ")
    assert "needs at least 33 rows (window 30 + horizon 3)" in message


def test_too_few_rows_counts_rows_after_dropping_duplicates(tmp_path):
    path = write(tmp_path, SEED + SEED.splitlines()[1] + "\n")
    with pytest.raises(DataError, match="3 valid rows, needs at least 4 rows;"):
        load_ohlcv(path, min_rows=4)  # fails before it warns: the error is the one line people see


def test_load_writes_nothing(tmp_path):
    path = write(tmp_path, SEED)
    load_quietly(path)
    with pytest.raises(DataError):
        load_ohlcv(write(tmp_path, "junk\n", "bad.csv"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "bars.csv"]


# --------------------------------------------------------------------------------------------------
# Downloads, with fetch_yahoo replaced (no network)


class FakeDNSError(OSError):
    """Stands in for curl_cffi's DNSError, an OSError subclass."""


def yahoo_frame(rows: int = 3) -> pd.DataFrame:
    """A frame shaped like yf.Ticker(...).history(auto_adjust=False)."""
    index = pd.DatetimeIndex(
        pd.date_range("2024-03-07", periods=rows, freq="B", tz="America/New_York"), name="Date"
    )
    close = 100.0 + np.arange(rows)
    return pd.DataFrame(
        {
            "Open": close - 0.5,
            "High": close + 1.0,
            "Low": close - 1.0,
            "Close": close,
            "Adj Close": close * 0.9,
            "Volume": np.arange(rows, dtype=np.int64) * 1000 + 5000,
            "Dividends": 0.0,
            "Stock Splits": 0.0,
        },
        index=index,
    )


def test_download_offline_says_use_data(monkeypatch):
    def offline(ticker, **kwargs):
        raise FakeDNSError("Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com.\nSee docs")

    monkeypatch.setattr(data, "fetch_yahoo", offline)
    with pytest.raises(DataError) as info:
        download_ohlcv("AAPL")
    message = str(info.value)
    assert "could not reach Yahoo Finance" in message and "--data" in message and "AAPL" in message
    assert "\n" not in message


def test_download_other_network_failure_gives_the_same_message(monkeypatch):
    def broken(ticker, **kwargs):
        raise RuntimeError("HTTP 503")

    monkeypatch.setattr(data, "fetch_yahoo", broken)
    with pytest.raises(DataError, match=r"could not reach Yahoo Finance .*--data FILE\.csv"):
        download_ohlcv("AAPL")


@pytest.mark.parametrize("empty", [pd.DataFrame(), None])
def test_download_no_rows_names_the_ticker(monkeypatch, empty):
    monkeypatch.setattr(data, "fetch_yahoo", lambda ticker, **kwargs: empty)
    with pytest.raises(DataError, match=r"no rows from Yahoo Finance for ticker 'NOSUCHTICKER'"):
        download_ohlcv("NOSUCHTICKER")


def test_download_yfinance_missing_ticker_error_names_the_ticker(monkeypatch):
    yf_errors = pytest.importorskip("yfinance.exceptions")

    def missing(ticker, **kwargs):
        raise yf_errors.YFPricesMissingError(ticker, "(period=1y)")

    monkeypatch.setattr(data, "fetch_yahoo", missing)
    with pytest.raises(DataError, match="ticker 'ZZZZ'"):
        download_ohlcv("ZZZZ")


def test_download_returns_a_clean_frame(monkeypatch):
    calls = []

    def fake(ticker, **kwargs):
        calls.append((ticker, kwargs))
        return yahoo_frame()

    monkeypatch.setattr(data, "fetch_yahoo", fake)
    frame = download_ohlcv("AAPL", period="5d")
    assert calls == [("AAPL", {"period": "5d", "start": None, "end": None, "interval": "1d"})]
    # 2024-03-10 is the DST change in New York: offsets differ, local dates stay.
    assert_ohlcv(frame, ["2024-03-07", "2024-03-08", "2024-03-11"])
    assert frame["Close"].tolist() == [100.0, 101.0, 102.0]
    assert frame["Volume"].tolist() == [5000.0, 6000.0, 7000.0]
    assert frame.attrs["source"] == "AAPL"


def test_download_start_end_override_period(monkeypatch):
    calls = []
    monkeypatch.setattr(data, "fetch_yahoo", lambda ticker, **kwargs: calls.append(kwargs) or yahoo_frame())
    download_ohlcv("AAPL", start="2024-03-01", end="2024-04-01")
    assert calls == [{"period": None, "start": "2024-03-01", "end": "2024-04-01", "interval": "1d"}]


def test_download_checks_values_like_files(monkeypatch):
    bad = yahoo_frame()
    bad.iloc[1, bad.columns.get_loc("Low")] = 500.0
    monkeypatch.setattr(data, "fetch_yahoo", lambda ticker, **kwargs: bad)
    with pytest.raises(DataError, match=r"High 102\.0 below Low 500\.0 in Yahoo Finance data for AAPL row 2024-03-08 column High"):
        download_ohlcv("AAPL")


def test_download_drops_rows_without_prices(monkeypatch):
    raw = yahoo_frame(4)
    raw.iloc[2, :4] = np.nan
    monkeypatch.setattr(data, "fetch_yahoo", lambda ticker, **kwargs: raw)
    with pytest.warns(DataWarning, match="dropped 1 rows without prices"):
        frame = download_ohlcv("AAPL")
    assert len(frame) == 3


def test_fetch_yahoo_asks_for_unadjusted_prices_and_errors(monkeypatch):
    yf = pytest.importorskip("yfinance")
    seen = {}

    class FakeTicker:
        def __init__(self, symbol):
            seen["symbol"] = symbol

        def history(self, **kwargs):
            seen.update(kwargs)
            return "raw"

    monkeypatch.setattr(yf, "Ticker", FakeTicker)
    assert data.fetch_yahoo("MSFT", period="1y", start=None, end=None, interval="1d") == "raw"
    assert seen == {
        "symbol": "MSFT", "period": "1y", "start": None, "end": None, "interval": "1d",
        "auto_adjust": False, "raise_errors": True,
    }


# --------------------------------------------------------------------------------------------------
# Writing


def test_write_csv_atomic_creates_folders_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "out" / "deeper" / "metrics.csv"
    write_csv_atomic(pd.DataFrame({"a": [1, 2]}), path, index=False)
    assert path.read_text() == "a\n1\n2\n"
    assert [p.name for p in path.parent.iterdir()] == ["metrics.csv"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), RuntimeError("boom")])
def test_failed_write_leaves_no_file(tmp_path, monkeypatch, error):
    frame = pd.DataFrame({"a": [1, 2]})

    def failing_to_csv(handle, **kwargs):
        handle.write("a\n1\n")  # half written
        raise error

    monkeypatch.setattr(frame, "to_csv", failing_to_csv)
    path = tmp_path / "predictions.csv"
    expected = StockLLMError if isinstance(error, OSError) else RuntimeError
    with pytest.raises(expected):
        write_csv_atomic(frame, path)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = write(tmp_path, "old\n", "predictions.csv")
    frame = pd.DataFrame({"a": [1]})
    monkeypatch.setattr(frame, "to_csv", lambda *args, **kwargs: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(StockLLMError, match=f"cannot write {path}"):
        write_csv_atomic(frame, path)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]


def test_save_ohlcv_csv_round_trips(tmp_path):
    frame = load_quietly(write(tmp_path, SEED))
    path = tmp_path / "saved" / "bars.csv"
    save_ohlcv_csv(frame, path)
    text = path.read_text()
    assert text.splitlines()[0] == "Date,Open,High,Low,Close,Volume"
    assert text.splitlines()[1] == "2020-01-02,10.0,11.0,9.0,10.5,1000"
    again = load_quietly(path)
    pd.testing.assert_frame_equal(again, frame, check_freq=False)
    assert sorted(p.name for p in path.parent.iterdir()) == ["bars.csv"]


def test_save_ohlcv_csv_keeps_fractional_volume(tmp_path):
    frame = load_quietly(write(tmp_path, SEED.replace(",1000\n", ",1000.5\n")))
    save_ohlcv_csv(frame, tmp_path / "out.csv")
    assert load_quietly(tmp_path / "out.csv")["Volume"].iloc[0] == 1000.5
