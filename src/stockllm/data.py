"""Daily OHLCV bars: load them from CSV, download them from Yahoo Finance, check them, save them.

Every source ends in the same *OHLCV frame*: a ``DatetimeIndex`` named ``"Date"`` (tz-naive,
``datetime64[ns]``, sorted ascending, unique) and float64 columns ``Open High Low Close Volume``, in that
order. Prices are in the instrument's quote currency; Volume is in shares (or contracts) per bar.
``frame.attrs["source"]`` names where the bars came from.

Problems the user can fix raise :class:`DataError` with a one-line message
``<what> in <file> row <n> column <c>: <how to fix>``. Accepted data that had to be changed
(rows reordered, dropped or filled) emit a :class:`DataWarning`.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import math
import os
import re
import stat
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from stockllm.errors import USE_A_FILE, DataError, DataWarning, StockLLMError

OHLCV_COLUMNS = ("Open", "High", "Low", "Close", "Volume")
PRICE_COLUMNS = ("Open", "High", "Low", "Close")
_COLUMNS = ("Date", *OHLCV_COLUMNS)
_HEADER = ",".join(_COLUMNS)
_HEADER_NAMES = {"date": "Date", "datetime": "Date", **{name.lower(): name for name in OHLCV_COLUMNS}}
# Names the common exports use, taken only where the exact name is absent: Nasdaq.com writes "Close/Last",
# Investing.com "Price" and "Vol.".
_HEADER_ALIASES = {"close/last": "Close", "price": "Close", "last": "Close", "vol.": "Volume", "vol": "Volume",
                   "ds": "Date", "timestamp": "Date", "y": "Close", "target": "Close"}  # Nixtla's, Chronos's
# Beyond these a log-return or a float32 scaler overflows (and no traded price or daily volume comes near).
MAX_PRICE = 1e15
MIN_PRICE = 1e-12  # below it, log-returns and their quantiles lose every digit (5e-324 gives a quantile of 0.0)
LAST_DATE = pd.Timestamp("2200-12-31")  # the forecast dates after a bar must stay inside pandas' range (2262)
MAX_VOLUME = 1e18
MAX_FILE_BYTES = 1 << 30  # 1 GiB: decades of daily bars are a few MB
_NULLS = ("", "null", "-")  # empty cells as exports write them (Yahoo's "null", Investing.com's "-")

# A calendar date, optionally followed by a time of day and a UTC offset, which are ignored so that
# "2024-01-02 00:00:00-05:00" stays 2 January (the exchange's local date).
_TIME = r"(?:[T ](?:[01]?\d|2[0-3]):[0-5]\d(?::(?:[0-5]\d|60)(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})?)?"
_ANY_TIME = r"[T ]\d{1,2}:\d{2}"  # something that looks like a time of day, possible or not
_DATE_PATTERNS = (  # (regex, names of its three groups)
    (rf"^(\d{{4}})-(\d{{1,2}})-(\d{{1,2}}){_TIME}$", ("year", "month", "day")),
    (rf"^(\d{{1,2}})/(\d{{1,2}})/(\d{{4}}){_TIME}$", ("month", "day", "year")),  # Yahoo export
    (rf"^(\d{{4}})/(\d{{1,2}})/(\d{{1,2}}){_TIME}$", ("year", "month", "day")),
)
_SLASH = 1  # the position of M/D/YYYY in _DATE_PATTERNS: read D/M/YYYY where the days say so (_day_first)
_DATE_HINT = "use YYYY-MM-DD (or M/D/YYYY as Yahoo exports it), or pass --date_format (e.g. %d.%m.%Y)"


# --------------------------------------------------------------------------------------------------
# Public API

SAMPLES = {"nasdaq": "NASDAQ Composite, daily 1999-01-04 .. 2018-12-31 (from the arch package, NCSA licence)"}


def sample_path(name: str = "nasdaq") -> Path:
    """Path of a data sample shipped inside the package (``SAMPLES`` lists them; see samples/README.md)."""
    if name not in SAMPLES:
        raise DataError(f"unknown sample {name!r}: the bundled samples are {', '.join(SAMPLES)}")
    return Path(__file__).resolve().parent / "samples" / f"{name}.csv"


def resolve_data_path(path) -> Path:
    """A user's ``--data`` value as a path: a bundled sample's name (``nasdaq``) stands for its file unless a
    file of that name exists."""
    p = Path(path)
    if not p.exists() and str(path) in SAMPLES:
        return sample_path(str(path))
    return p


def load_ohlcv(path, *, min_rows: int = 1, min_rows_reason: str = "", columns: dict | None = None,
               decimal: str = ".", date_format: str | None = None) -> pd.DataFrame:
    """Read a CSV file of daily bars into an OHLCV frame.

    The file needs a header with Date, Open, High, Low, Close and Volume (any case, any order; extra
    columns such as "Adj Close" are ignored; an unnamed first column is taken as Date). Separators
    "," ";" or tab, a UTF-8 BOM, blank lines, ISO or M/D/YYYY dates (a time or UTC offset after the
    date is dropped) are accepted.

    Returns a frame of shape (n_days, 5): DatetimeIndex "Date" (tz-naive, sorted, unique) and float64
    columns Open High Low Close Volume; ``attrs["source"] = str(path)``.

    Warns with DataWarning when rows were sorted, exact duplicate rows dropped, or empty Volume cells
    filled (from the previous day, or the next day for the first row). Raises DataError for anything
    else that is wrong, naming the file, the line number (header = row 1) and the column. ``min_rows``
    is the least number of days needed; ``min_rows_reason`` (e.g. "window 30 + horizon 3") is added
    to that message. Reads only; never writes files.

    Common exports work as they are: Nasdaq.com (``Close/Last``, ``$`` signs), Investing.com (``Price``,
    ``Vol.`` with K/M/B suffixes, thousands separators); rows without any value (Yahoo's ``null`` rows) are
    dropped with a warning. A close-only file (``Date,Close``, Nixtla's ``ds,y``, Chronos's ``timestamp,target``)
    gets Open = High = Low = Close and Volume 0, and ``attrs["close_only"] = True``, so that the models that
    read all five columns can refuse it. ``columns`` maps stockllm's names to the file's headers (``{"Date": "Datum",
    "Close": "Schluss"}``, see :func:`parse_columns`); ``decimal`` is "." or "," (decimal commas, as a German
    Excel export writes them, with "." as thousands separator). ``date_format`` (strptime, ``%d.%m.%Y``) reads the
    dates in that format only; without it, D/M/YYYY dates are read day-first, with a warning, where some day is
    above 12.
    """
    source = str(path)
    text = _read_text(resolve_data_path(path), source)
    raw, rows = _parse_csv(text, source, columns or {})
    frame = _checked(raw, source, rows, min_rows, min_rows_reason, decimal, date_format)
    frame.attrs["close_only"] = raw.attrs.get("close_only", False)
    return frame


def parse_columns(text: str | None, flag: str = "--columns") -> dict:
    """``"Date=Datum,Close=Schluss"`` → ``{"Date": "Datum", "Close": "Schluss"}``; names any case. Refuses an
    unknown stockllm name, a missing ``=`` or a name given twice, in one line."""
    mapping: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        ours, sep, theirs = part.partition("=")
        name = _HEADER_NAMES.get(ours.strip().lower())
        if not sep or not theirs.strip() or name not in _COLUMNS:
            raise DataError(f"{flag} {text!r}: write NAME=HEADER pairs separated by commas, NAME one of "
                            f"{', '.join(_COLUMNS)} (e.g. {flag} Date=Datum,Close=Schluss)")
        if name in mapping:
            raise DataError(f"{flag} {text!r} maps {name} twice: keep one")
        mapping[name] = theirs.strip()
    return mapping


def check_decimal(decimal: str | None, flag: str = "--decimal") -> str:
    """The decimal mark: "." (default) or ","."""
    if decimal in (None, "."):
        return "."
    if decimal == ",":
        return ","
    raise DataError(f"{flag} {decimal!r}: use . or , (the character between a number's whole and fractional part)")


def check_date_format(text: str | None, flag: str = "--date_format") -> str | None:
    """A strptime format for the Date column (None: the built-in formats); refuses one without a % code."""
    if text is None or not text.strip():
        return None
    if "%" not in text:
        raise DataError(f"{flag} {text!r}: write the format with strptime codes, e.g. %d.%m.%Y for 20.10.2017 or "
                        "%d/%m/%Y for 20/10/2017")
    return text.strip()


def download_ohlcv(
    ticker: str,
    *,
    period: str | None = "1y",
    start: str | None = None,
    end: str | None = None,
    interval: str = "1d",
    adjust: str = "split",
) -> pd.DataFrame:
    """Download the bars of one ticker from Yahoo Finance into an OHLCV frame.

    ``period`` (e.g. "1y", "max") is used unless ``start``/``end`` (YYYY-MM-DD, end exclusive) are
    given. Returns the same frame as :func:`load_ohlcv`, shape (n_bars, 5), float64 Open High Low
    Close (unadjusted, quote currency) and Volume (shares); ``attrs["source"] = ticker``. For daily or
    longer intervals the index holds the exchange's local calendar dates.

    Raises DataError "could not reach Yahoo Finance ...; use a CSV file instead ..." when offline, and a
    DataError naming the ticker when Yahoo returns no rows (e.g. an unknown ticker). ``adjust`` "split" (Yahoo's
    Close), "full" (also dividends) or "none" (see :func:`adjust_yahoo`).
    """
    ticker = ticker.strip()
    if not ticker:
        raise DataError("empty ticker: pass a Yahoo Finance symbol such as AAPL or ^IXIC, or " + USE_A_FILE)
    if start is not None or end is not None:
        period = None
    try:
        raw = fetch_yahoo(ticker, period=period, start=start, end=end, interval=interval)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line for people
        raise _yahoo_error(exc, ticker, period, interval) from exc
    if raw is None or len(raw) == 0:
        raise _no_rows_error(ticker, period, interval)
    if adjust != "split":
        raw = adjust_yahoo(raw, adjust)
    frame, notes = _from_yahoo(raw, ticker, period, interval)
    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=2)
    frame.attrs["source"] = ticker
    return frame


def adjust_yahoo(raw: pd.DataFrame, adjust: str) -> pd.DataFrame:
    """yfinance's ``history(auto_adjust=False)`` frame (split-adjusted Open High Low Close, ``Adj Close`` also for
    dividends, ``Stock Splits`` ratios) adjusted as asked: ``split`` as it is, ``full`` scaled by Adj Close ÷
    Close, ``none`` with later splits multiplied back in (Volume divided by them)."""
    if adjust == "split" or raw is None or len(raw) == 0:
        return raw
    out = raw.copy()
    prices = [c for c in ("Open", "High", "Low", "Close") if c in out.columns]
    if adjust == "full":
        if "Adj Close" not in out.columns:
            raise DataError("Yahoo Finance sent no Adj Close column, so dividends cannot be adjusted for: pass "
                            "--adjust split, or " + USE_A_FILE)
        factor = (out["Adj Close"] / out["Close"]).where(out["Close"] > 0)
        out[prices] = out[prices].mul(factor, axis=0)
        return out
    splits = out["Stock Splits"].fillna(0).where(lambda s: s > 0, 1.0) if "Stock Splits" in out.columns else None
    if splits is None or (splits == 1.0).all():
        return out
    # The split on day d already divides day d's price; earlier days carry every split after them.
    later = splits[::-1].cumprod()[::-1].shift(-1, fill_value=1.0)
    out[prices] = out[prices].mul(later, axis=0)
    if "Volume" in out.columns:
        out["Volume"] = out["Volume"] / later
    return out


DATE_COLUMNS = ("date", "datetime", "ds", "timestamp", "time")  # Nixtla's ds, Chronos's timestamp


def ohlcv_from_frame(df: pd.DataFrame, source: str = "the frame", *, min_rows: int = 1,
                     min_rows_reason: str = "") -> pd.DataFrame:
    """Check an in-memory table of daily bars and return it as an OHLCV frame (same checks as :func:`load_ohlcv`).

    ``df`` has Open, High, Low, Close and Volume columns (any case; extra columns ignored) and its dates either in
    a DatetimeIndex or in a column named Date, datetime, ds or timestamp (any case; a timezone is dropped, keeping
    the local date). Returns shape (n_days, 5), float64, DatetimeIndex "Date" sorted and unique, with
    ``attrs["source"] = source``. Messages name the bad bar by its date. A table of closes only (Date, Close) is
    read as a close-only file is: Open = High = Low = Close, Volume 0, ``attrs["close_only"] = True``.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{source} is a {type(df).__name__}, not a pandas DataFrame of daily bars")
    names = {str(c).strip().lower(): c for c in df.columns}
    for name in ("Date", *OHLCV_COLUMNS):
        same = [str(c) for c in df.columns if str(c).strip().lower() == name.lower()]
        if len(same) > 1:
            raise DataError(f"columns {' and '.join(repr(c) for c in same)} in {source} both name {name}: keep one "
                            "(or rename the other)")
    date_col = next((names[d] for d in DATE_COLUMNS if d in names), None)
    if date_col is not None:
        dates = df[date_col]
    elif isinstance(df.index, pd.DatetimeIndex):
        dates = df.index.to_series(index=range(len(df)))
    else:
        raise DataError(f"no dates in {source}: give it a DatetimeIndex or a Date column")
    dates = pd.Series(dates).reset_index(drop=True)
    if isinstance(dates.dtype, pd.DatetimeTZDtype):
        dates = dates.dt.tz_localize(None)  # the exchange's wall-clock date
    if pd.api.types.is_datetime64_any_dtype(dates):
        dates = dates.dt.normalize()  # strings are parsed (and refused by row) in _validate
    missing = [c for c in OHLCV_COLUMNS if c.lower() not in names]
    close_only = set(missing) == {"Open", "High", "Low", "Volume"}
    if close_only:  # as a Date,Close file: the close stands for the whole bar, with no volume
        names = {**names, "open": names["close"], "high": names["close"], "low": names["close"]}
        df = df.assign(**{"__volume": 0.0})
        names["volume"] = "__volume"
    elif missing:
        raise DataError(f"missing columns {', '.join(missing)} in {source}: it needs Open, High, Low, Close and "
                        "Volume (any case)")
    cells = pd.DataFrame({"Date": dates, **{c: df[names[c.lower()]].to_numpy() for c in OHLCV_COLUMNS}})
    labels = [f"{i + 1} ({d})" for i, d in enumerate(dates.astype(str))]
    frame = _checked(cells, source, labels, min_rows, min_rows_reason)
    frame.attrs["close_only"] = close_only
    return frame


def _checked(raw: pd.DataFrame, source: str, rows: list, min_rows: int, reason: str,
             decimal: str = ".", date_format: str | None = None) -> pd.DataFrame:
    """_validate + length check + warnings for the user's caller; the frame's attrs name its source."""
    frame, notes = _validate(raw, source, rows, decimal, date_format)
    _check_length(frame, source, min_rows, reason)
    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=3)
    frame.attrs["source"] = source
    return frame


def fetch_yahoo(ticker, *, period, start, end, interval) -> pd.DataFrame:
    """Return yfinance's raw, unadjusted history of one ticker (tz-aware index, yfinance's columns).

    The only function in the package that calls yfinance, so tests can replace it. Raises whatever
    yfinance raises (``raise_errors=True``), e.g. curl_cffi's DNSError (an OSError) when offline.
    """
    import yfinance as yf

    from .hf import cache_root

    # yfinance's own caches (time zones, cookies) go under stockllm's cache folder, not ~/.cache/py-yfinance.
    yf.set_tz_cache_location(str(cache_root() / "yfinance"))
    # yfinance logs each network failure on its own; download_ohlcv reports it once, as one line.
    logger = logging.getLogger("yfinance")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        return yf.Ticker(ticker).history(
            period=period, start=start, end=end, interval=interval, auto_adjust=False, raise_errors=True
        )
    finally:
        logger.setLevel(level)


def write_csv_atomic(frame: pd.DataFrame, path, **to_csv_kwargs) -> None:
    """Write ``frame.to_csv(**to_csv_kwargs)`` to ``path`` atomically (UTF-8).

    Writes a temporary file in the same folder, then renames it over ``path``, so a failure leaves
    neither a half-written file nor a changed old one. Creates parent folders. Raises StockLLMError
    when the folder or file cannot be written; other errors propagate, with the temporary file removed.
    """
    write_atomic(path, lambda handle: frame.to_csv(handle, **to_csv_kwargs))


def write_text_atomic(text: str, path) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8), with the guarantees and errors of :func:`write_csv_atomic`."""
    write_atomic(path, lambda handle: handle.write(text))


def write_atomic(path, write) -> None:
    """Call ``write(handle)`` on a UTF-8 text file beside ``path``, then rename it over ``path`` (see
    :func:`stockllm.outputs.write_atomic`: special files are refused, symlinks followed)."""
    from .outputs import write_atomic as write_file

    write_file(path, write)


def save_ohlcv_csv(frame: pd.DataFrame, path) -> None:
    """Write an OHLCV frame as CSV with the columns Date,Open,High,Low,Close,Volume, atomically.

    Date is written as YYYY-MM-DD (with the time only if some bar has one), prices in full precision,
    Volume as an integer when every volume is whole. :func:`load_ohlcv` reads the file back unchanged.
    """
    out = frame.loc[:, list(OHLCV_COLUMNS)].copy()
    volume = out["Volume"].to_numpy(dtype=float)
    if np.isfinite(volume).all() and (volume == np.round(volume)).all():
        out["Volume"] = volume.astype(np.int64)
    dates = pd.DatetimeIndex(frame.index)
    has_times = (dates != dates.normalize()).any()
    out.index = dates.strftime("%Y-%m-%d %H:%M:%S" if has_times else "%Y-%m-%d")
    out.index.name = "Date"
    write_csv_atomic(out, path)


# --------------------------------------------------------------------------------------------------
# Reading a CSV file into cells


def _read_text(path: Path, source: str) -> str:
    """The file's text, or a DataError for a missing, unreadable, binary, non-UTF-8 or empty file."""
    if path.is_dir():
        raise DataError(f"{source} is a folder, not a CSV file: pass the path of a .csv file")
    try:
        # Opened without blocking and checked before reading: a FIFO would wait for a writer, a device such as
        # /dev/zero never ends.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as exc:
        raise DataError(f"no such file {source}: check the path") from exc
    except OSError as exc:
        raise DataError(f"cannot read {source} ({_reason(exc)}): check the file's permissions") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            kind = "FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode) else "device or special file"
            raise DataError(f"{source} is a {kind}, not a CSV file: save the data to a file and pass its path")
        if info.st_size > MAX_FILE_BYTES:
            raise DataError(f"{source} is {info.st_size / 2**30:.1f} GiB, more than the {MAX_FILE_BYTES >> 30} GiB "
                            "stockllm reads from one file: split it, or keep the columns Date,Open,High,Low,Close,"
                            "Volume only")
        try:
            data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise DataError(f"cannot read {source} ({_reason(exc)}): check the file") from exc
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: its BOM starts UTF-32's
        raise DataError(f"UTF-32 text in {source}: save the file as UTF-8 CSV")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(f"UTF-16 text in {source}: save the file as UTF-8 CSV")
    if b"\x00" in data:
        raise DataError(f"binary file in {source}: expected a CSV text file with the header {_HEADER}")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        row = data[: exc.start].count(b"\n") + 1
        raise DataError(f"text that is not UTF-8 in {source} row {row}: save the file as UTF-8 CSV") from exc
    if not text or text.isspace():  # not text.strip(): that would copy the whole file
        raise DataError(f"empty file in {source}: expected the header {_HEADER} and one row per day")
    return text


def _parse_csv(text: str, source: str, columns: dict | None = None) -> tuple[pd.DataFrame, list[int]]:
    """Split CSV text into a frame of string cells (columns Date + OHLCV) and each row's line number.
    ``columns``: {stockllm name: header in the file} (``--columns``)."""
    separator = _sniff_separator(text)
    # newline=None: "\r\n" and lone "\r" end lines too, and line_num still counts physical lines.
    reader = csv.reader(io.StringIO(text, newline=None), delimiter=separator)
    header: list[str] | None = None
    cells: list[list[str]] = []
    line_numbers: list[int] = []
    start = 1  # the physical line a row starts on: a quote left open makes one "row" run on to the end
    try:
        for row in reader:
            first, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue  # blank line, or only separators
            if header is None:
                header = row
                positions = _column_positions(header, source, reader.line_num, columns or {})
                continue
            if first != reader.line_num and any("\n" in cell for cell in row):
                raise DataError(f"a quote opened in {source} row {first} is not closed on that line: close or "
                                "remove it")
            if len(row) < len(header) or any(cell.strip() for cell in row[len(header) :]):
                raise DataError(
                    f"{len(row)} values instead of {len(header)} in {source} row {reader.line_num}: "
                    f"give each row one value per header column, separated by {separator!r}"
                )
            cells.append([row[i] if i >= 0 else "" for i in positions])
            line_numbers.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"malformed CSV ({exc}) in {source} row {first}: check the quotes on that line") from exc
    if not cells:
        raise DataError(f"no data rows in {source}: add one row per day below the header line")
    frame = pd.DataFrame(cells, columns=list(_COLUMNS), dtype=str)
    if min(positions) < 0:  # a close-only file: the close stands for the whole bar, with no volume
        for name in ("Open", "High", "Low"):
            frame[name] = frame["Close"]
        frame["Volume"] = "0"
        frame.attrs["close_only"] = True
    return frame, line_numbers


def first_line(text: str) -> str:
    """The first non-blank line of ``text`` (the header; "" if there is none), found without splitting the whole
    text into lines (a long file of millions of rows would make a list of millions of strings)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end].rstrip("\r")
        if line.strip():
            return line
        start = end + 1
    return ""


def _sniff_separator(text: str) -> str:
    """The separator of the first non-blank line (the header): ',', ';' or tab, whichever occurs most."""
    return max((",", ";", "\t"), key=first_line(text).count)


def _column_positions(header: list[str], source: str, row: int, columns: dict | None = None) -> list[int]:
    """Where Date, Open, High, Low, Close and Volume are in the header (case and spaces ignored).

    ``columns`` ({stockllm name: file header}) comes first; then the standard names; then the aliases of common
    exports (:data:`_HEADER_ALIASES`), for names still missing.
    """
    columns = columns or {}
    mapped = {theirs.strip().lower(): ours for ours, theirs in columns.items()}
    cleaned = [cell.strip().rstrip("*").strip().lower() for cell in header]
    for ours, theirs in columns.items():
        if theirs.strip().lower() not in cleaned:
            names = ", ".join(repr(cell.strip()) for cell in header)
            raise DataError(f"no column {theirs!r} (--columns {ours}={theirs}) in {source} row {row}: found "
                            f"columns {names}")
    found: dict[str, int] = {}
    for position, cell in enumerate(cleaned):
        if cell in mapped:
            name = mapped[cell]
        else:
            name = _HEADER_NAMES.get(cell)
            if name is None or name in columns:  # not ours, or the user named another column for it
                continue
        if name in found:
            raise DataError(
                f"column {name} appears twice in {source} row {row}: keep one of columns {found[name] + 1} and {position + 1}"
            )
        found[name] = position
    for position, cell in enumerate(cleaned):
        name = _HEADER_ALIASES.get(cell)
        if name is not None and name not in found and position not in found.values():
            found[name] = position
    if "Date" not in found and not header[0].strip():
        found["Date"] = 0  # pandas' to_csv writes the index under an empty header
    missing = [name for name in _COLUMNS if name not in found]
    if not missing:
        return [found[name] for name in _COLUMNS]
    if set(missing) == {"Open", "High", "Low", "Volume"}:
        return [found.get(name, -1) for name in _COLUMNS]  # close-only: _parse_csv fills the bar
    what = f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} in {source} row {row}"
    if _looks_like_data(header):
        raise DataError(f"{what}: the first line holds data, not a header; add the header line {_HEADER}")
    names = ", ".join(repr(cell.strip()) for cell in header)
    raise DataError(f"{what}: found columns {names}; the header needs {_HEADER} (any order, extra columns are ignored)")


def _looks_like_data(header: list[str]) -> bool:
    """True when a 'header' line holds a date or a number, i.e. the file has no header."""
    cells = pd.Series([cell.strip() for cell in header], dtype=str)
    numbers = pd.to_numeric(cells, errors="coerce")
    return bool(numbers.notna().any() or _parse_dates(cells).notna().any())


# --------------------------------------------------------------------------------------------------
# Downloaded frames


def _yahoo_error(exc: Exception, ticker: str, period, interval) -> DataError:
    """Turn an exception from fetch_yahoo into one line for people."""
    # yfinance is imported only in fetch_yahoo; if its exception classes are loaded, the error may be one.
    # getattr: older yfinance versions lack some of these classes.
    yf_errors = sys.modules.get("yfinance.exceptions")
    if isinstance(exc, getattr(yf_errors, "YFTickerMissingError", ())):
        return _no_rows_error(ticker, period, interval)
    if isinstance(exc, getattr(yf_errors, "YFInvalidPeriodError", ())):
        valid = getattr(exc, "valid_ranges", "1d, 5d, 1mo, 3mo, 6mo, 1y, 2y, 5y, 10y, ytd, max")
        return DataError(f"invalid period {period!r} for {ticker}: use one of {valid}")
    if isinstance(exc, getattr(yf_errors, "YFRateLimitError", ())):
        return DataError(f"Yahoo Finance refused more requests for {ticker} (rate limit): wait a while, or " + USE_A_FILE)
    # curl's own text carries URLs and request details that tell the user nothing: keep the first line, no URLs.
    detail = re.sub(r"\s*\(?https?://\S+\)?", "", (str(exc).strip().splitlines() or [""])[0])
    detail = re.sub(r"\.?\s*See\s+first for more details\.?", "", detail)[:160]  # curl's pointer, URL removed
    return DataError(
        f"could not reach Yahoo Finance for {ticker} ({type(exc).__name__}: {detail}); "
        "check the network connection, or " + USE_A_FILE
    )


def _no_rows_error(ticker: str, period, interval) -> DataError:
    return DataError(
        f"no rows from Yahoo Finance for ticker {ticker!r} (period {period}, interval {interval}): "
        "check the symbol (e.g. AAPL, ^IXIC) and the dates; offline, " + USE_A_FILE
    )


def _from_yahoo(raw: pd.DataFrame, ticker: str, period, interval: str) -> tuple[pd.DataFrame, list[str]]:
    """yfinance's history frame → checked OHLCV frame and warning notes."""
    source = f"Yahoo Finance data for {ticker}"
    if isinstance(raw.columns, pd.MultiIndex):  # yf.download-style (field, ticker) columns
        raw = raw.droplevel(-1, axis=1)
    missing = [name for name in OHLCV_COLUMNS if name not in raw.columns]
    if missing:
        raise DataError(f"missing columns {', '.join(missing)} in {source}: use --data FILE.csv instead")
    dates = pd.DatetimeIndex(pd.to_datetime(raw.index))
    if dates.tz is not None:
        dates = dates.tz_localize(None)  # the exchange's wall-clock time
    if interval.endswith(("d", "wk", "mo")):
        dates = dates.normalize()
    notes = []
    priced = raw[list(PRICE_COLUMNS)].notna().any(axis=1).to_numpy()
    if not priced.all():
        notes.append(f"dropped {int((~priced).sum())} rows without prices in {source}")
        if not priced.any():
            raise _no_rows_error(ticker, period, interval)
    cells = pd.DataFrame({"Date": dates[priced], **{name: raw[name].to_numpy()[priced] for name in OHLCV_COLUMNS}})
    frame, more_notes = _validate(cells, source, list(dates[priced].strftime("%Y-%m-%d")))
    return frame, notes + more_notes


# --------------------------------------------------------------------------------------------------
# Checks shared by files and downloads


def _validate(raw: pd.DataFrame, source: str, rows: list, decimal: str = ".",
              date_format: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Check and clean the bars of one source.

    raw: one row per bar, columns Date + OHLCV_COLUMNS holding strings (CSV cells) or numbers and
    datetimes (downloads). rows: how messages name each bar (line numbers in the file, or dates).
    Returns the OHLCV frame and the notes to warn about; raises DataError for the first problem in
    row order.
    """
    if len(raw) == 0:
        raise DataError(f"no data rows in {source}: add one row per day")
    rows = np.asarray(rows, dtype=object)
    notes: list[str] = []
    # Rows with a date and no value at all (Yahoo writes "null" for days without trading, crypto exports do it
    # for whole weeks): nothing to check or fill, so they are dropped and said so.
    void = np.logical_and.reduce([_is_blank(raw[name]) for name in OHLCV_COLUMNS])
    if void.any():
        if void.all():
            raise DataError(f"no values in any row of {source}: every Open, High, Low, Close and Volume cell is "
                            "empty or null")
        notes.append(f"dropped {_count(void.sum(), 'row')} without any values (empty or null) in {source} "
                     f"{_rows_text(rows[void])}")
        raw, rows = raw[~void].reset_index(drop=True), rows[~void]
    dates = _parse_dates(raw["Date"], date_format)
    if date_format is None and _day_first(raw["Date"]):
        notes.append(f"read the dates in {source} as day/month/year (D/M/YYYY), since some first number is above 12 "
                     "(e.g. 20/10/2017); pass --date_format to say how they are written")
    elif date_format is None:
        ambiguous = _ambiguous_day_month(raw["Date"], source)
        if ambiguous:
            raise DataError(ambiguous)
    values = {name: _to_float(raw[name], decimal, volume=name == "Volume") for name in OHLCV_COLUMNS}
    if _is_blank(raw["Volume"]).all():
        raise DataError(f"empty Volume column in {source} column Volume: fill in the daily volumes (0 where unknown)")

    problems = [_date_problem(raw["Date"], dates, source, rows, date_format),
                _late_date_problem(raw["Date"], dates, source, rows)]
    problems += [_number_problem(raw[name], values[name], name, source, rows, decimal) for name in OHLCV_COLUMNS]
    problems.append(_high_low_problem(raw, values, source, rows))
    problems = [problem for problem in problems if problem is not None]
    if problems:
        raise DataError(min(problems, key=lambda problem: problem[0])[1])

    frame = pd.DataFrame(values, index=pd.DatetimeIndex(dates, name="Date").as_unit("ns"))
    frame, rows = _drop_exact_duplicates(frame, source, rows, notes)
    _reject_conflicting_dates(frame, source, rows)
    if not frame.index.is_monotonic_increasing:
        order = np.argsort(frame.index.to_numpy(), kind="stable")
        frame, rows = frame.iloc[order], rows[order]
        notes.append(f"rows in {source} were not in date order: sorted them by Date")
    empty = frame["Volume"].isna().to_numpy()
    if empty.any():
        frame["Volume"] = frame["Volume"].ffill().bfill()
        notes.append(
            f"filled {_count(empty.sum(), 'empty Volume cell')} in {source} {_rows_text(rows[empty])} "
            "with the previous day's volume (the next day's for the first row)"
        )
    frame, rows = _drop_suspended(frame, source, rows, notes)
    split = _split_note(frame, source, rows)
    if split:
        notes.append(split)
    return frame, notes


def suspended_days(frame: pd.DataFrame) -> np.ndarray:
    """bool [n]: the suspended days of a series that trades on other days (volume 0 and open = high = low = close);
    all False for a series whose volume is 0 on every day (an index, a close-only file)."""
    volume = frame["Volume"].to_numpy()
    if not (volume > 0).any():
        return np.zeros(len(frame), dtype=bool)
    o, h, lo, c = (frame[name].to_numpy() for name in PRICE_COLUMNS)
    return (volume == 0) & (o == h) & (h == lo) & (lo == c)


def _drop_suspended(frame: pd.DataFrame, source: str, rows: np.ndarray, notes: list[str]):
    """Drop suspended days (volume 0 and open = high = low = close, as BaoStock and AKShare mark them) from a series
    that trades on other days, naming the first dates: left in, they look like days without a move. A series
    whose volume is 0 on every day (an index, a close-only file) keeps its rows; its volume inputs are then
    constant, i.e. off."""
    idle = suspended_days(frame)
    if not idle.any():
        return frame, rows
    dates = frame.index[idle].strftime("%Y-%m-%d")
    more = f" and {len(dates) - 5} more" if len(dates) > 5 else ""
    notes.append(f"dropped {_count(int(idle.sum()), 'suspended day')} (volume 0 and open = high = low = close) in "
                 f"{source}: {', '.join(dates[:5])}{more}")
    return frame[~idle], rows[~idle]


# Stock splits (2:1, 3:2, ...) and reverse splits as the ratio of a day's open to the previous close.
_SPLITS = {f"{a}:{b}": b / a for a, b in ((2, 1), (3, 1), (3, 2), (4, 1), (5, 1), (7, 1), (10, 1), (1, 2), (1, 3),
                                           (2, 3), (1, 4), (1, 5), (1, 10))}


def _split_note(frame: pd.DataFrame, source: str, rows: np.ndarray) -> str | None:
    """A warning when an overnight move (open ÷ previous close) matches a split ratio within 1%: unadjusted
    prices make a 2:1 split look like a −50% day, which every model then learns from."""
    close, open_ = frame["Close"].to_numpy(), frame["Open"].to_numpy()
    if len(close) < 2:
        return None
    move = open_[1:] / close[:-1]
    hits = [(i + 1, name) for name, ratio in _SPLITS.items() for i in np.flatnonzero(np.abs(move / ratio - 1) < 0.01)]
    if not hits:
        return None
    i, name = min(hits)
    more = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
    date = f"{frame.index[i]:%Y-%m-%d}"
    where = str(rows[i]) if date in str(rows[i]) else f"{rows[i]} ({date})"  # a frame's row labels carry the date
    return (f"the overnight move into {source} row {where} matches a {name} stock split"
            f"{more}: if the prices are not split-adjusted, use an adjusted export (e.g. Yahoo's with Adj Close "
            "applied) so the split does not look like a price move")


def _parse_dates(column: pd.Series, date_format: str | None = None) -> pd.DatetimeIndex:
    """Dates of a column of strings (see _DATE_PATTERNS, or the strptime ``date_format``) or datetimes; NaT where
    unparseable."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return pd.DatetimeIndex(column)
    text = column.astype(str).str.strip()
    if date_format:
        return pd.DatetimeIndex(pd.to_datetime(text, format=date_format, errors="coerce").dt.normalize())
    if len(text) and (text.str.len() == 10).all():  # plain YYYY-MM-DD, the common case: one fast parse
        dates = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
        if dates.notna().all():
            return pd.DatetimeIndex(dates)
    parts = _date_parts(column, _day_first(column))
    return pd.DatetimeIndex(pd.to_datetime(parts[["year", "month", "day"]], errors="coerce"))


def _ambiguous_day_month(column: pd.Series, source: str) -> str | None:
    """The refusal for A/B/YYYY dates that read as month/day and as day/month alike, or None.

    Ambiguous: every A and every B is 12 or less, and both vary (with A fixed, the file is one month of daily
    bars, M/D/YYYY). Read as month/day, a D/M/YYYY file of such dates would be silently wrong.
    """
    if pd.api.types.is_datetime64_any_dtype(column):
        return None
    found = column.astype(str).str.strip().str.extract(r"^(\d{1,2})/(\d{1,2})/\d{4}").astype(float).dropna()
    if len(found) < 2 or (found > 12).any().any() or found[0].nunique() < 2 or found[1].nunique() < 2:
        return None
    example = column.astype(str).str.strip()[found.index[found[0] != found[1]]]
    example = example.iloc[0] if len(example) else column.iloc[found.index[0]]
    return (f"ambiguous dates in {source} column Date: dates such as {example!r} read as month/day and as "
            "day/month alike (no number before the year is above 12); write the dates as YYYY-MM-DD or "
            "pass --date_format (e.g. %d/%m/%Y)")


def _day_first(column: pd.Series) -> bool:
    """True when the column's A/B/YYYY dates are day-first: some A is above 12 (no month) and no B is. Files where
    every A and B is 12 or less stay month-first, as Yahoo writes them."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return False
    found = column.astype(str).str.strip().str.extract(r"^(\d{1,2})/(\d{1,2})/\d{4}").astype(float).dropna()
    return bool(len(found)) and bool((found[0] > 12).any()) and not bool((found[1] > 12).any())


def _date_parts(column: pd.Series, day_first: bool = False) -> pd.DataFrame:
    """Year, month and day (floats; NaN where no pattern matches) of a column of date strings; ``day_first`` reads
    A/B/YYYY as day/month."""
    text = column.astype(str).str.strip()
    parts = None
    for k, (pattern, names) in enumerate(_DATE_PATTERNS):
        if day_first and k == _SLASH:
            names = ("day", "month", "year")
        found = text.str.extract(pattern).set_axis(list(names), axis=1).astype(float)
        parts = found if parts is None else parts.fillna(found)
    return parts


_SUFFIXES = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}  # Investing.com volumes: 53.12M


def _to_float(column: pd.Series, decimal: str = ".", volume: bool = False) -> np.ndarray:
    """float64 values of a column of strings or numbers; NaN where empty or not a number.

    Strings may carry a currency sign ($1.25, as Nasdaq.com writes), thousands separators (1,234.5, or 1.234,5
    with ``decimal`` ","), and for ``volume`` a K/M/B/T suffix. A separator is taken as a thousands separator
    only where it groups digits by three, so "101,25" is never read as 10125.
    """
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=float, na_value=np.nan)
    text = column.astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    # Only cells that are not plain numbers go through the slower clean-up; with decimal commas every cell does,
    # since "1.234" then means 1234.
    odd = (np.isnan(numbers) | (decimal == ",")) & (text != "").to_numpy()
    if odd.any():
        numbers[odd] = _export_numbers(text[odd], decimal, volume)
    return numbers


def _export_numbers(text: pd.Series, decimal: str, volume: bool) -> np.ndarray:
    """float64 values of number strings as exports write them (see :func:`_to_float`); NaN where none."""
    text = text.str.replace(r"^([-+]?)[$€£¥]\s*", r"\1", regex=True)
    text = text.str.replace(r"[\s\u00a0']", "", regex=True)
    group, point = (".", ",") if decimal == "," else (",", ".")
    grouped = text.str.fullmatch(rf"[-+]?\d{{1,3}}(?:{re.escape(group)}\d{{3}})+(?:{re.escape(point)}\d*)?")
    text = text.where(~grouped, text.str.replace(group, "", regex=False))
    if decimal == ",":
        text = text.str.replace(",", ".", regex=False)
    scale = 1.0
    if volume:
        suffix = text.str.extract(r"^([-+]?[\d.]+(?:[eE][-+]?\d+)?)([KMBTkmbt])$")
        has = suffix[1].notna()
        if has.any():
            text = text.where(~has, suffix[0])
            scale = suffix[1].str.upper().map(_SUFFIXES).fillna(1.0).to_numpy()
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return numbers * scale


def _is_blank(column: pd.Series) -> np.ndarray:
    """Empty cells: NaN, "", or an export's spelling of nothing ("null", "-")."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_datetime64_any_dtype(column):
        return column.isna().to_numpy()
    if pd.api.types.infer_dtype(column, skipna=False) != "string":  # mixed cells, e.g. a frame with None
        return column.map(lambda v: v is None or (isinstance(v, float) and math.isnan(v))
                          or (isinstance(v, str) and v.strip().lower() in _NULLS)).to_numpy(dtype=bool)
    return column.astype(str).str.strip().str.lower().isin(_NULLS).to_numpy()


def _date_problem(column: pd.Series, dates: pd.DatetimeIndex, source: str, rows: np.ndarray,
                  date_format: str | None = None):
    """(position, message) of the first missing or unparseable date, or None."""
    bad = np.flatnonzero(dates.isna())
    if len(bad) == 0:
        return None
    i = bad[0]
    where = f"{source} row {rows[i]} column Date"
    if _is_blank(column)[i]:
        return i, f"missing date in {where}: fill in the date ({_DATE_HINT}) or delete the row"
    text = str(column.iloc[i]).strip()
    if date_format:
        return i, (f"date {text!r} does not match --date_format {date_format} in {where}: fix the date or the format "
                   "(strptime codes such as %d.%m.%Y)")
    parts = _date_parts(column.iloc[[i]], _day_first(column)).iloc[0]
    if parts.notna().all():
        if not pd.Timestamp.min.year < parts["year"] < pd.Timestamp.max.year:
            return i, (f"date {text!r} out of range in {where}: stockllm handles the years "
                       f"{pd.Timestamp.min.year + 1}–{pd.Timestamp.max.year - 1}; fix the year")
        return i, (f"unparseable date {text!r} in {where}: there is no month {parts['month']:.0f} day "
                   f"{parts['day']:.0f}; {_DATE_HINT}")
    if re.search(_ANY_TIME, text):
        return i, (f"impossible time of day in date {text!r} in {where}: times run from 00:00 to 23:59:59; "
                   f"{_DATE_HINT}, optionally followed by HH:MM")
    return i, f"unparseable date {text!r} in {where}: {_DATE_HINT}"


def _late_date_problem(column: pd.Series, dates: pd.DatetimeIndex, source: str, rows: np.ndarray):
    """(position, message) of the first date after LAST_DATE, or None: the sessions forecast after it would fall
    outside the dates pandas can hold."""
    late = np.flatnonzero(np.asarray(dates > LAST_DATE, dtype=bool))
    if len(late) == 0:
        return None
    i = late[0]
    return i, (f"date {str(column.iloc[i]).strip()!r} in {source} row {rows[i]} column Date is after "
               f"{LAST_DATE:%Y-%m-%d}, the last date stockllm forecasts from: fix the year")


def _number_problem(column: pd.Series, values: np.ndarray, name: str, source: str, rows: np.ndarray,
                    decimal: str = "."):
    """(position, message) of the first bad price or volume, or None. Empty volumes are filled later."""
    blank = _is_blank(column)
    limit = MAX_VOLUME if name == "Volume" else MAX_PRICE
    with np.errstate(invalid="ignore"):
        if name == "Volume":
            bad = ~blank & ~(np.isfinite(values) & (values >= 0) & (values <= limit))
        else:
            bad = blank | ~(np.isfinite(values) & (values >= MIN_PRICE) & (values <= limit))
    positions = np.flatnonzero(bad)
    if len(positions) == 0:
        return None
    i = positions[0]
    text = str(column.iloc[i]).strip()
    where = f"{source} row {rows[i]} column {name}"
    if blank[i]:
        return i, f"missing {name} in {where}: fill in the price or delete the row"
    if not math.isfinite(values[i]):
        if _is_nan_or_inf(text):
            return i, f"non-finite {name} {text!r} in {where}: replace it with a real value or delete the row"
        if decimal == "." and re.fullmatch(r"[-+]?[$€£¥]?\d[\d.]*,\d+", text):
            return i, f"non-numeric {name} {text!r} in {where}: for decimal commas pass --decimal ,"
        return i, (f"non-numeric {name} {text!r} in {where}: use a plain number such as "
                   f"{'101,25' if decimal == ',' else '101.25'}")
    if values[i] > limit:
        return i, (f"{name} {text} out of range in {where}: it must be at most {limit:g}; fix the value or delete "
                   "the row")
    if name == "Volume":
        return i, f"negative Volume {text} in {where}: volumes must be 0 or more"
    if values[i] > 0:
        return i, (f"{name} {text} in {where} is below {MIN_PRICE:g}, too small to forecast in floating point: "
                   "rescale the prices (e.g. per million units) or fix the value")
    sign = "zero" if values[i] == 0 else "negative"
    return i, f"{sign} {name} {text} in {where}: prices must be above 0; fix the value or delete the row"


def _is_nan_or_inf(text: str) -> bool:
    """True for spellings of NaN or infinity such as 'nan', '-inf', 'Infinity'."""
    try:
        return not math.isfinite(float(text))
    except ValueError:
        return False


def _high_low_problem(raw: pd.DataFrame, values: dict, source: str, rows: np.ndarray):
    """(position, message) of the first row whose High is below its Low, or whose Close lies outside them."""
    high, low, close = values["High"], values["Low"], values["Close"]
    with np.errstate(invalid="ignore"):
        checks = [(high < low, "High", lambda i: f"High {cell('High', i)} below Low {cell('Low', i)}",
                   "High must be at least Low; fix or swap the two values"),
                  (close > high, "Close", lambda i: f"Close {cell('Close', i)} above High {cell('High', i)}",
                   "a day's Close lies between its Low and High; fix the values (or the column order)"),
                  (close < low, "Close", lambda i: f"Close {cell('Close', i)} below Low {cell('Low', i)}",
                   "a day's Close lies between its Low and High; fix the values (or the column order)")]

    def cell(name: str, i: int) -> str:
        return str(raw[name].iloc[i]).strip()

    found = [(int(np.flatnonzero(bad)[0]), column, what, fix) for bad, column, what, fix in checks if bad.any()]
    if not found:
        return None
    i, column, what, fix = min(found, key=lambda f: f[0])
    return i, f"{what(i)} in {source} row {rows[i]} column {column}: {fix}"


def _drop_exact_duplicates(frame: pd.DataFrame, source: str, rows: np.ndarray, notes: list[str]):
    """Drop rows that repeat an earlier row exactly (same date, same values)."""
    repeated = frame.reset_index().duplicated(keep="first").to_numpy()
    if not repeated.any():
        return frame, rows
    notes.append(f"dropped {_count(repeated.sum(), 'exact duplicate row')} in {source} {_rows_text(rows[repeated])}")
    return frame[~repeated], rows[~repeated]


def _reject_conflicting_dates(frame: pd.DataFrame, source: str, rows: np.ndarray) -> None:
    """Raise DataError, naming both rows, when one date has two different bars."""
    repeated = np.flatnonzero(frame.index.duplicated(keep="first"))
    if len(repeated) == 0:
        return
    second = repeated[0]
    date = frame.index[second]
    first = np.flatnonzero(frame.index == date)[0]
    raise DataError(
        f"two rows for {date:%Y-%m-%d} with different values in {source} rows {rows[first]} and {rows[second]} "
        "column Date: keep one of them"
    )


def _check_length(frame: pd.DataFrame, source: str, min_rows: int, reason: str) -> None:
    if len(frame) >= min_rows:
        return
    why = f" ({reason.strip().strip('()')})" if reason.strip() else ""
    raise DataError(
        f"too few rows in {source}: {len(frame)} valid rows, needs at least {min_rows} rows{why}; "
        "use a longer history or a shorter window"
    )


# --------------------------------------------------------------------------------------------------
# Small helpers


def _rows_text(rows: np.ndarray, limit: int = 10) -> str:
    """'row 7' or 'rows 3, 9, 12 and 5 more'."""
    shown = ", ".join(str(row) for row in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def _count(n, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc) or type(exc).__name__).lower()

