"""Trading calendars: forecast dates are the exchange's next sessions, not merely the next weekdays.

The calendar comes from ``exchange_calendars`` (holidays, early closes, special closures such as the 2018-12-05
NYSE day of mourning). It is inferred from a Yahoo Finance ticker's suffix (``600519.SS`` → Shanghai) or set
by name (``--calendar XNYS``). Where no calendar is known, dates fall back to Monday–Friday with a warning.
"""

from __future__ import annotations

import functools
import re
import warnings
from pathlib import Path

import pandas as pd

from .errors import StockLLMError

#: ``--calendar`` value that asks for plain Monday–Friday business days, without a warning.
BUSINESS_DAYS = "business"

#: Yahoo Finance ticker suffix → exchange_calendars code. A ticker without a suffix (AAPL, ^IXIC) is US → XNYS.
#: Shenzhen (.SZ) has no calendar of its own in exchange_calendars; it closes on the same days as Shanghai, so
#: XSHG stands in for it.
SUFFIX_CALENDARS = {
    "SS": "XSHG", "SZ": "XSHG", "HK": "XHKG", "T": "XTKS", "KS": "XKRX", "KQ": "XKRX", "TW": "XTAI",
    "SI": "XSES", "AX": "XASX", "NZ": "XNZE", "BO": "XBOM", "NS": "XBOM", "L": "XLON", "DE": "XETR",
    "F": "XFRA", "PA": "XPAR", "AS": "XAMS", "BR": "XBRU", "MI": "XMIL", "MC": "XMAD", "SW": "XSWX",
    "ST": "XSTO", "OL": "XOSL", "CO": "XCSE", "HE": "XHEL", "VI": "XWBO", "LS": "XLIS", "IR": "XDUB",
    "TO": "XTSE", "V": "XTSX", "SA": "BVMF", "MX": "XMEX", "JO": "XJSE", "TA": "XTAE",
}
DEFAULT_CALENDAR = "XNYS"

_TICKER = re.compile(r"^\^?[A-Za-z0-9]+(?:\.([A-Za-z]{1,3}))?$")


class CalendarWarning(UserWarning):
    """Forecast dates fell back to business days (no calendar known, or its holidays end too early)."""


def calendar_for(name: str) -> str | None:
    """The exchange_calendars code for a ticker (``AAPL``, ``600519.SS``, ``^IXIC``) or a file named after one
    (``data/0700.HK.csv``); None when it cannot be told (crypto ``BTC-USD``, futures ``ES=F``, unknown suffix).

    No suffix means a US listing (XNYS); the bundled NASDAQ sample (``nasdaq``) is therefore XNYS too.
    """
    text = str(name).strip()
    if text.lower().endswith(".csv"):
        text = Path(text).stem
    match = _TICKER.match(text)
    if not match:
        return None
    suffix = match.group(1)
    if suffix is None:
        return DEFAULT_CALENDAR
    return SUFFIX_CALENDARS.get(suffix.upper())


def check_calendar(name: str) -> str:
    """``name`` if exchange_calendars knows it (or it is ``business``); otherwise a StockLLMError listing codes."""
    if name == BUSINESS_DAYS:
        return name
    import exchange_calendars as xcals

    known = xcals.get_calendar_names(include_aliases=True)
    if name not in known:
        upper = name.upper()
        if upper in known:
            return upper
        raise StockLLMError(f"unknown --calendar {name!r}: use an exchange_calendars code such as XNYS, XSHG, XHKG, "
                            f"XTKS, XLON (all: {', '.join(sorted(c for c in known if c.startswith('X')))}) or "
                            f"'{BUSINESS_DAYS}' for Monday–Friday")
    return name


def next_sessions(last_date, horizon: int, calendar: str | None, label: str = "") -> pd.DatetimeIndex:
    """The ``horizon`` trading sessions strictly after ``last_date`` on ``calendar`` (an exchange_calendars code).

    ``calendar`` None: business days (Monday–Friday) with a CalendarWarning; ``"business"``: the same, silently.
    Where the library's holiday list ends before the dates needed (it records Chinese holidays only a year or
    so ahead), sessions continue as business days, with a CalendarWarning. ``label`` (a ticker) names the series
    in warnings. Returns a DatetimeIndex named "Date", tz-naive.
    """
    last = pd.Timestamp(last_date).normalize()
    if calendar is None:
        warnings.warn(f"no exchange calendar known for {label or 'the series'}: forecast dates are business days "
                      "(holidays not skipped); pass --calendar CODE (e.g. XNYS) or --calendar business",
                      CalendarWarning, stacklevel=2)
    if calendar is None or calendar == BUSINESS_DAYS:
        return _business_days(last, horizon)
    name = check_calendar(calendar)
    sessions = pd.DatetimeIndex([])
    for years in (2, 1):  # this year and the next; only this year where the library's holidays end with it
        recorded = _sessions(name, last.year, last.year + years - 1)
        if recorded is not None:
            sessions = recorded[recorded > last][:horizon]
            break
    if len(sessions) < horizon:
        import exchange_calendars as xcals

        code, who = xcals.resolve_alias(name), f"{label}: " if label else ""
        what = (f"exchange_calendars records {code} holidays only up to {recorded[-1]:%Y-%m-%d}"
                if recorded is not None and len(recorded) else f"exchange_calendars has no {code} holidays for "
                f"{last.year}")
        warnings.warn(f"{who}{what}: forecast dates beyond that are business days", CalendarWarning, stacklevel=2)
        after = sessions[-1] if len(sessions) else last
        sessions = sessions.append(_business_days(after, horizon - len(sessions)))
    return pd.DatetimeIndex(sessions, name="Date")


@functools.lru_cache(maxsize=16)
def _sessions(name: str, first_year: int, last_year: int) -> pd.DatetimeIndex | None:
    """All sessions of calendar ``name`` from 1 January of ``first_year`` to 31 December of ``last_year``, or None
    when the library does not record those years. Cached: building a calendar costs about a second (NYSE)."""
    import exchange_calendars as xcals

    try:
        calendar = xcals.get_calendar(name, start=pd.Timestamp(first_year, 1, 1), end=pd.Timestamp(last_year, 12, 31))
    except (ValueError, xcals.errors.CalendarError):  # outside the years whose holidays the library records
        return None
    sessions = calendar.sessions
    return sessions.tz_localize(None) if sessions.tz is not None else sessions


def _business_days(last: pd.Timestamp, n: int) -> pd.DatetimeIndex:
    return pd.bdate_range(last + pd.offsets.BDay(1), periods=n, name="Date")
