"""Where daily bars come from: Yahoo Finance (yfinance), AKShare or BaoStock (mainland A-shares, no Yahoo needed).

Each source is one replaceable function of this module, ``yahoo``, ``akshare`` and ``baostock``, with the
signature ``(ticker, *, adjust, period, start, end, interval) -> OHLCV frame``: the same checked frame as
:func:`stockllm.data.load_ohlcv` (DatetimeIndex "Date", float64 Open High Low Close Volume, Volume in shares),
named by the ticker's Yahoo-style symbol in ``attrs["source"]`` (``600519.SS``, so that the exchange calendar
and a saved file's name follow from it). :func:`download` checks the arguments and calls one of them; tests
replace them (``monkeypatch.setattr(sources, "akshare", fake)``), or the lower ``fetch_akshare`` /
``fetch_baostock`` (the only functions that import those libraries) to test the conversion too.

``adjust``: ``none`` (prices as quoted that day), ``split`` (earlier prices divided by later splits) or
``full`` (splits and dividends, the default; the last bar keeps its quoted price). Yahoo offers all three;
AKShare and BaoStock offer ``none`` and ``full`` (前复权, forward adjusted).

Tickers: ``600519.SS`` ⇄ AKShare ``600519`` ⇄ BaoStock ``sh.600519`` (and ``.SZ`` ⇄ ``sz.``); a bare six-digit
code is placed by its first digit (6, 9, 5 → Shanghai; 0, 2, 3, 1 → Shenzhen).
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from datetime import date, timedelta

import pandas as pd

from .errors import USE_A_FILE, DataError, StockLLMError, as_flags

SOURCES = ("yahoo", "akshare", "baostock")
ADJUSTS = ("none", "split", "full")
DEFAULT_SOURCE, DEFAULT_ADJUST = "yahoo", "full"
#: What each source can adjust for (``--adjust``).
OFFERS = {"yahoo": ADJUSTS, "akshare": ("none", "full"), "baostock": ("none", "full")}
NAMES = {"yahoo": "Yahoo Finance", "akshare": "AKShare", "baostock": "BaoStock"}
#: The calendar of every mainland listing (Shenzhen closes on Shanghai's days; see calendars.SUFFIX_CALENDARS).
CN_CALENDAR = "XSHG"
EXTRA = {"akshare": "cn", "baostock": "cn"}

_CN = re.compile(r"^(?:(?P<pre>sh|sz|bj)\.?)?(?P<code>\d{6})(?:\.(?P<suf>ss|sh|sz|bj))?$", re.IGNORECASE)
_SUFFIX = {"ss": "sh", "sh": "sh", "sz": "sz", "bj": "bj"}
_PERIOD = re.compile(r"^(\d+)(d|wk|mo|y)$")


class SourceUnavailable(DataError):
    """A data source could not be reached (offline, refused, rate-limited): the server answers 503."""


# --------------------------------------------------------------------------------------------------
# Arguments


def check_source(source: str | None) -> str:
    """``source`` lower-cased if it is one of SOURCES (None → yahoo); otherwise a StockLLMError listing them."""
    name = (source or DEFAULT_SOURCE).strip().lower()
    if name not in SOURCES:
        raise StockLLMError(f"unknown --source {source!r}: choose from {', '.join(SOURCES)}")
    return name


def check_adjust(source: str, adjust: str | None) -> str:
    """``adjust`` (None → full) if ``source`` offers it; otherwise a StockLLMError saying what it offers."""
    value = (adjust or DEFAULT_ADJUST).strip().lower()
    if value not in ADJUSTS:
        raise StockLLMError(f"unknown --adjust {adjust!r}: choose from {', '.join(ADJUSTS)}")
    if value not in OFFERS[source]:
        raise StockLLMError(f"--adjust {value} is not offered by {NAMES[source]}: it adjusts for splits and "
                            f"dividends together; pass --adjust {' or --adjust '.join(OFFERS[source])}")
    return value


def cn_code(ticker: str) -> tuple[str, str]:
    """(exchange 'sh' | 'sz', six-digit code) of a mainland A-share ticker in any convention: ``600519.SS``,
    ``600519``, ``sh.600519``, ``SH600519``, ``600519.SH``. Raises DataError for anything else."""
    text = str(ticker).strip()
    match = _CN.match(text)
    if not match:
        raise DataError(f"ticker {ticker!r} is not a mainland A-share code: use a six-digit code such as 600519, "
                        "600519.SS, 000001.SZ or sh.600519 (for other markets use --source yahoo)")
    code = match["code"]
    marks = {m.lower() for m in (match["pre"], match["suf"]) if m}
    exchanges = {_SUFFIX.get(m, m) for m in marks}
    if len(exchanges) > 1:
        raise DataError(f"ticker {ticker!r} names two exchanges: write it as {code}.SS or {code}.SZ")
    exchange = exchanges.pop() if exchanges else {"6": "sh", "9": "sh", "5": "sh", "0": "sz", "2": "sz", "3": "sz",
                                                  "1": "sz"}.get(code[0], "bj")
    if exchange == "bj":
        raise DataError(f"ticker {ticker!r} is a Beijing Stock Exchange listing, which stockllm's sources do not "
                        "cover: " + USE_A_FILE)
    return exchange, code


def yahoo_symbol(ticker: str) -> str:
    """The Yahoo Finance spelling of a mainland ticker: ``sh.600519`` → ``600519.SS``, ``000001`` →
    ``000001.SZ``."""
    exchange, code = cn_code(ticker)
    return f"{code}.{'SS' if exchange == 'sh' else 'SZ'}"


def akshare_symbol(ticker: str) -> str:
    """AKShare's spelling: ``600519.SS`` → ``600519``."""
    return cn_code(ticker)[1]


def baostock_symbol(ticker: str) -> str:
    """BaoStock's spelling: ``600519.SS`` → ``sh.600519``, ``000001.SZ`` → ``sz.000001``."""
    exchange, code = cn_code(ticker)
    return f"{exchange}.{code}"


def series_name(ticker: str, source: str) -> str:
    """How a ticker's series is named (file name, forecast rows, ledger): the Yahoo spelling."""
    return ticker.strip().upper() if source == "yahoo" else yahoo_symbol(ticker)


def default_calendar(source: str) -> str | None:
    """The calendar that dates a source's forecasts when ``--calendar`` is not given: XSHG for the mainland
    sources, None (from each ticker's suffix) for Yahoo."""
    return None if source == "yahoo" else CN_CALENDAR


def date_range(period: str | None, start: str | None, end: str | None, today: date | None = None) -> tuple[date, date]:
    """(first, last) calendar dates, both inclusive, of a yfinance-style request: ``start``/``end`` (YYYY-MM-DD,
    end exclusive) or ``period`` back from today (``5d``, ``6mo``, ``1y``, ``2y``, ``ytd``, ``max``)."""
    today = today or date.today()

    def parse(text, flag):
        try:
            return pd.Timestamp(text).date()
        except (TypeError, ValueError):
            raise StockLLMError(f"--{flag} {text!r} is not a date: use YYYY-MM-DD") from None

    if start or end:
        first = parse(start, "start") if start else date(1990, 1, 1)
        last = parse(end, "end") - timedelta(days=1) if end else today
        return first, last
    text = (period or "1y").strip().lower()
    if text == "max":
        return date(1990, 1, 1), today
    if text == "ytd":
        return date(today.year, 1, 1), today
    match = _PERIOD.match(text)
    if not match:
        raise StockLLMError(f"invalid period {period!r}: use 5d, 1mo, 6mo, 1y, 2y, 5y, 10y, ytd or max")
    n, unit = int(match[1]), match[2]
    days = {"d": n, "wk": 7 * n, "mo": 31 * n, "y": 366 * n}[unit]
    return today - timedelta(days=days), today


# --------------------------------------------------------------------------------------------------
# The one entry point


def download(ticker: str, source: str = DEFAULT_SOURCE, *, adjust: str = DEFAULT_ADJUST, period: str | None = "1y",
             start: str | None = None, end: str | None = None, interval: str = "1d") -> pd.DataFrame:
    """Download one ticker's bars from ``source`` into a checked OHLCV frame (see the module docstring).

    Raises SourceUnavailable (a DataError) with one line naming the source and ``--data`` when the source cannot
    be reached, and DataError / StockLLMError for a bad ticker, flag, missing library or empty answer.
    """
    source = check_source(source)
    adjust = check_adjust(source, adjust)
    if source != "yahoo" and interval != "1d":
        raise StockLLMError(f"--interval {interval} is not offered through --source {source}: it gives daily bars "
                            "(--interval 1d)")
    fetch = getattr(sys.modules[__name__], source)  # looked up now, so a test's replacement is the one called
    return fetch(ticker, adjust=adjust, period=period, start=start, end=end, interval=interval)


# --------------------------------------------------------------------------------------------------
# The sources


def yahoo(ticker: str, *, adjust: str, period, start, end, interval) -> pd.DataFrame:
    """Yahoo Finance through :func:`stockllm.data.download_ohlcv` (its ``fetch_yahoo`` is the one yfinance call)."""
    from .data import download_ohlcv

    try:
        return download_ohlcv(ticker, period=period, start=start, end=end, interval=interval, adjust=adjust)
    except DataError as exc:
        text = as_flags(exc)
        if exc.__cause__ is not None and ("could not reach" in text or "rate limit" in text):
            raise SourceUnavailable(text) from exc.__cause__
        raise


def fetch_akshare(symbol: str, *, start: str, end: str, adjust: str) -> pd.DataFrame:
    """AKShare's raw daily A-share history (``stock_zh_a_hist``: Chinese column names, Volume in lots of 100).

    The only function that imports akshare. ``symbol`` 600519; ``start``/``end`` YYYYMMDD inclusive; ``adjust``
    "" or "qfq". Raises what akshare raises (requests' ConnectionError, an OSError, when offline).
    """
    _require("akshare")
    import akshare as ak

    return ak.stock_zh_a_hist(symbol=symbol, period="daily", start_date=start, end_date=end, adjust=adjust)


AKSHARE_COLUMNS = {"日期": "Date", "开盘": "Open", "最高": "High", "最低": "Low", "收盘": "Close", "成交量": "Volume"}


def akshare(ticker: str, *, adjust: str, period, start, end, interval="1d") -> pd.DataFrame:
    """Daily A-share bars through AKShare (Eastmoney's data); Volume converted from lots to shares."""
    name, symbol = yahoo_symbol(ticker), akshare_symbol(ticker)
    first, last = date_range(period, start, end)
    try:
        raw = fetch_akshare(symbol, start=f"{first:%Y%m%d}", end=f"{last:%Y%m%d}",
                            adjust={"none": "", "full": "qfq"}[adjust])
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line for people
        raise _unreachable("akshare", name, exc) from exc
    if raw is None or len(raw) == 0:
        raise _no_rows("akshare", name, first, last)
    missing = [c for c in AKSHARE_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"AKShare's answer for {name} lacks the columns {', '.join(missing)} (has "
                        f"{', '.join(map(str, raw.columns))}): update akshare, or " + USE_A_FILE)
    bars = raw[list(AKSHARE_COLUMNS)].rename(columns=AKSHARE_COLUMNS)
    bars["Volume"] = pd.to_numeric(bars["Volume"], errors="coerce") * 100  # 手 (lots) → shares
    return _checked(bars, name, "AKShare")


def fetch_baostock(code: str, *, start: str, end: str, adjustflag: str) -> pd.DataFrame:
    """BaoStock's raw daily history as strings (columns date open high low close volume tradestatus).

    The only function that imports baostock; its login chatter on stdout is swallowed. ``code`` sh.600519;
    ``start``/``end`` YYYY-MM-DD inclusive; ``adjustflag`` "3" none or "2" forward-adjusted. Raises
    ConnectionError when the login or the query fails.
    """
    _require("baostock")
    import baostock as bs

    with contextlib.redirect_stdout(io.StringIO()):
        login = bs.login()
        if getattr(login, "error_code", "1") != "0":
            raise ConnectionError(f"login failed: {getattr(login, 'error_msg', '')} ({login.error_code})")
        try:
            result = bs.query_history_k_data_plus(code, "date,open,high,low,close,volume,tradestatus",
                                                  start_date=start, end_date=end, frequency="d",
                                                  adjustflag=adjustflag)
            if result.error_code != "0":
                raise ConnectionError(f"query failed: {result.error_msg} ({result.error_code})")
            rows = []
            while result.error_code == "0" and result.next():
                rows.append(result.get_row_data())
            return pd.DataFrame(rows, columns=result.fields)
        finally:
            bs.logout()


def baostock(ticker: str, *, adjust: str, period, start, end, interval="1d") -> pd.DataFrame:
    """Daily A-share bars through BaoStock; suspended days (tradestatus 0, no trades) are left out."""
    name, code = yahoo_symbol(ticker), baostock_symbol(ticker)
    first, last = date_range(period, start, end)
    try:
        raw = fetch_baostock(code, start=f"{first:%Y-%m-%d}", end=f"{last:%Y-%m-%d}",
                             adjustflag={"none": "3", "full": "2"}[adjust])
    except Exception as exc:  # noqa: BLE001
        raise _unreachable("baostock", name, exc) from exc
    if raw is not None and "tradestatus" in raw.columns:
        raw = raw[raw["tradestatus"].astype(str) != "0"]
    if raw is None or len(raw) == 0:
        raise _no_rows("baostock", name, first, last)
    bars = raw.rename(columns={c: c.capitalize() for c in ("date", "open", "high", "low", "close", "volume")})
    return _checked(bars[["Date", "Open", "High", "Low", "Close", "Volume"]], name, "BaoStock")


# --------------------------------------------------------------------------------------------------
# Helpers


def _require(source: str) -> None:
    """A StockLLMError naming the extra when the source's library is not installed."""
    try:
        __import__(source)
    except ImportError:
        raise StockLLMError(f"--source {source} needs the {source} package: pip install 'stockllm[{EXTRA[source]}]', "
                            "or " + USE_A_FILE) from None


def _checked(bars: pd.DataFrame, name: str, label: str) -> pd.DataFrame:
    from .data import ohlcv_from_frame

    frame = ohlcv_from_frame(bars.reset_index(drop=True), f"{label} data for {name}")
    frame.attrs["source"] = name
    return frame


def _unreachable(source: str, name: str, exc: Exception) -> DataError:
    if isinstance(exc, StockLLMError):
        return exc
    detail = (str(exc).strip().splitlines() or [""])[0][:160]
    if not isinstance(exc, (OSError, TimeoutError)):  # not the network: the library's own failure
        return DataError(f"{NAMES[source]} failed for {name} ({type(exc).__name__}: {detail}): update "
                         f"{source}, check the code, or " + USE_A_FILE)
    return SourceUnavailable(f"could not reach {NAMES[source]} for {name} ({type(exc).__name__}: {detail}); check "
                             "the network connection, or " + USE_A_FILE)


def _no_rows(source: str, name: str, first: date, last: date) -> DataError:
    return DataError(f"no rows from {NAMES[source]} for {name} ({first:%Y-%m-%d} .. {last:%Y-%m-%d}): check the "
                     "code and the dates; offline, " + USE_A_FILE)
