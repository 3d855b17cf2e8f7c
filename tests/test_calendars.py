"""Forecast dates are the exchange's sessions: holidays skipped, exchange from the ticker, fallbacks warned."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

from conftest import make_ohlcv
from stockllm.calendars import CalendarWarning, calendar_for, next_sessions
from stockllm.errors import StockLLMError
from stockllm.models import NaiveForecaster


def dates(index) -> list[str]:
    return list(pd.DatetimeIndex(index).strftime("%Y-%m-%d"))


def test_nyse_skips_new_years_day():
    assert dates(next_sessions("2018-12-31", 3, "XNYS")) == ["2019-01-02", "2019-01-03", "2019-01-04"]


def test_nyse_skips_a_one_off_closure():
    # 2018-12-05: national day of mourning for President G. H. W. Bush; not a rule-based holiday.
    assert dates(next_sessions("2018-12-04", 2, "XNYS")) == ["2018-12-06", "2018-12-07"]


def test_shanghai_skips_chinese_new_year():
    # Spring Festival 2019: the SSE was closed 2019-02-04 .. 2019-02-08.
    assert dates(next_sessions("2019-02-01", 3, "XSHG")) == ["2019-02-11", "2019-02-12", "2019-02-13"]


def test_shanghai_skips_golden_week():
    assert dates(next_sessions("2019-09-30", 2, "XSHG")) == ["2019-10-08", "2019-10-09"]


@pytest.mark.parametrize("ticker,code", [
    ("AAPL", "XNYS"), ("^IXIC", "XNYS"), ("nasdaq", "XNYS"), ("600519.SS", "XSHG"), ("000001.SZ", "XSHG"),
    ("0700.HK", "XHKG"), ("7203.T", "XTKS"), ("VOD.L", "XLON"), ("data/600519.SS.csv", "XSHG"),
    ("BTC-USD", None), ("ES=F", None), ("ABC.ZZ", None),
])
def test_exchange_from_ticker_suffix(ticker, code):
    assert calendar_for(ticker) == code


def test_unknown_exchange_gives_business_days_with_a_warning():
    with pytest.warns(CalendarWarning, match="BTC-USD"):
        got = next_sessions("2018-12-31", 3, calendar_for("BTC-USD"), label="BTC-USD")
    assert dates(got) == ["2019-01-01", "2019-01-02", "2019-01-03"]


def test_business_calendar_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dates(next_sessions("2018-12-31", 2, "business")) == ["2019-01-01", "2019-01-02"]


def test_dates_past_the_recorded_holidays_fall_back_with_a_warning():
    with pytest.warns(CalendarWarning, match="no XSHG holidays for 2099"):
        got = next_sessions("2099-06-01", 3, "XSHG")
    assert dates(got) == ["2099-06-02", "2099-06-03", "2099-06-04"]


def test_unknown_calendar_code_is_refused():
    with pytest.raises(StockLLMError, match="unknown calendar"):
        next_sessions("2018-12-31", 3, "NOPE")


def test_forecast_uses_the_series_exchange():
    frame = make_ohlcv(80, start="2018-09-03")
    frame = frame[frame.index <= "2018-12-21"]  # a Friday before Christmas
    frame.attrs["source"] = "nasdaq"  # the bundled sample's name: NYSE, closed 12-25 only
    assert list(NaiveForecaster().forecast(frame)["date"]) == ["2018-12-24", "2018-12-26", "2018-12-27"]
    frame.attrs["source"] = "0700.HK"  # Hong Kong: closed 12-25 and 12-26 (Boxing Day)
    assert list(NaiveForecaster().forecast(frame)["date"]) == ["2018-12-24", "2018-12-27", "2018-12-28"]
    # --calendar overrides the suffix.
    assert list(NaiveForecaster().forecast(frame, calendar="XNYS")["date"]) == ["2018-12-24", "2018-12-26",
                                                                                "2018-12-27"]
