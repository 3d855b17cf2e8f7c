"""Reading clean CSV files fast: one C parse per file, one date parser, checks as array operations.

``data.load_ohlcv`` and ``series.load_file_series`` check a file cell by cell in Python, which names every problem
by file, line and column but costs about 15 µs a row (a universe of 500 files of 5,000 days: half a minute). Most
files are clean: a header, plain numbers, YYYY-MM-DD dates in order, one series per file or per ticker. For those,
``read_clean`` parses the file with pandas' C reader (the same float parser as the careful path, so the same
numbers), checks everything the careful path checks over whole columns at once, and returns the frames. Anything it
does not accept (a bad or empty cell, another date format, rows out of order, duplicates, decimal commas,
``--columns``) makes it return None, and the careful path reads the file again and reports the problem with its file,
line and column, or warns as it always did. A series that only needs a warning or a cleaning step (a possible split,
suspended days) goes through the careful checks alone, with its own line numbers, so one such ticker in a long file of
thousands does not send the whole file down the slow path.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd

from .data import (DATE_COLUMNS, MAX_PRICE, MAX_VOLUME, OHLCV_COLUMNS, _check_length, _checked, _column_positions,
                   _sniff_separator, _split_note, ohlcv_from_frame, suspended_days)


def read_clean(text: str, source: str, *, id_position: int | None, min_rows: int = 1, min_rows_reason: str = "",
               columns: dict | None = None, decimal: str = ".") -> dict[str, pd.DataFrame] | None:
    """{series name: checked OHLCV frame} of a clean file, or None when the careful path must read it.

    id_position: the header position of a long file's ticker / unique_id / item_id / series / symbol column
    (``series.id_column``; series named by id); None: the file is one series, named "" (the caller names it).
    Frames equal the careful path's.
    """
    if columns or decimal != ".":
        return None
    separator = _sniff_separator(text)
    end = text.find("\n")
    first = text if end < 0 else text[:end]  # not text.split: that would copy the rest of the file
    if not first.strip() or '"' in first:
        return None
    header = next(csv.reader([first.rstrip("\r")], delimiter=separator))
    try:
        positions = _column_positions(header, source, 1, {})
    except Exception:  # noqa: BLE001 - the careful path raises the message for people
        return None
    if min(positions) < 0:  # close-only files: the careful path fills the bar
        return None
    id_pos = id_position
    cells = _parse(text, separator, len(header), positions, id_pos)
    if cells is None:
        return None
    careful = _file_checks(source, id_pos is not None, min_rows, min_rows_reason) if _lines_known(text) else None
    return _split(cells, source, id_pos is not None, min_rows, min_rows_reason, careful)


def _file_checks(source: str, by_id: bool, min_rows: int, reason: str):
    """``_split``'s careful checks for one series of a file whose row i is on line i + 2 (the header on line 1):
    the careful reader's, naming those lines (it warns, and drops suspended days)."""

    def careful(name: str, frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
        raw = pd.DataFrame({"Date": frame.index, **{c: frame[c].to_numpy() for c in OHLCV_COLUMNS}})
        why = (reason + f"; series {name}").lstrip("; ") if by_id else reason
        return _checked(raw, source, list(rows + 2), min_rows, why)

    return careful


def read_clean_frame(df: pd.DataFrame, id_col, *, min_rows: int = 1,
                     min_rows_reason: str = "") -> dict[str, pd.DataFrame] | None:
    """{ticker: checked OHLCV frame} of a clean long DataFrame (``predict_df``'s input with a ticker column), or None
    when ``data.ohlcv_from_frame`` must check it ticker by ticker.

    Clean: a tz-naive datetime column named as ``ohlcv_from_frame`` finds it, holding dates only, the five OHLCV
    columns (any case) as numbers, no missing value, no two tickers with one name; the bar checks, date order and
    lengths are then checked over whole columns (``_split``). Frames equal the careful path's.
    """
    names = {str(c).strip().lower(): c for c in df.columns}
    date_col = next((names[d] for d in DATE_COLUMNS if d in names), None)
    if len(names) != len(df.columns) or date_col is None or any(c.lower() not in names for c in OHLCV_COLUMNS):
        return None
    dates = df[date_col]
    if not pd.api.types.is_datetime64_dtype(dates) or dates.isna().any() or (dates != dates.dt.normalize()).any():
        return None
    cells = {"Date": dates.to_numpy(dtype="datetime64[ns]")}
    for name in OHLCV_COLUMNS:
        column = df[names[name.lower()]]
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            return None
        cells[name] = column.to_numpy(dtype=np.float64)
    codes, ids = pd.factorize(df[id_col])
    tickers = np.asarray([str(i) for i in ids], dtype=object)
    if (codes < 0).any() or len(set(tickers)) != len(tickers) or np.bincount(codes).min() < min_rows:
        return None  # the careful path names the short ticker in its own words
    cells["id"], cells["names"] = codes.astype(np.int64), tickers

    def careful(name: str, frame: pd.DataFrame, rows) -> pd.DataFrame:  # what ohlcv_from_frame makes of it alone
        return ohlcv_from_frame(frame.reset_index(), name, min_rows=min_rows, min_rows_reason=min_rows_reason)

    return _split(cells, "the frame", True, min_rows, min_rows_reason, careful)


def _lines_known(text: str) -> bool:
    """Whether data row i is on line i + 2 (the header on line 1): no blank line, which the parser skips, before
    the end."""
    for blank in ("\n\n", "\n\r\n"):
        at = text.find(blank)
        if at >= 0 and text[at:].strip("\r\n"):  # trailing blank lines shift nothing
            return False
    return True


def _needs_care(frame: pd.DataFrame, source: str) -> bool:
    """Whether the careful checks would warn about or clean this series: a possible split, or suspended days."""
    return _split_note(frame, source, np.arange(len(frame))) is not None or bool(suspended_days(frame).any())


def _parse(text: str, separator: str, width: int, positions: list[int], id_pos: int | None) -> dict | None:
    """{name: column} of every data row (Date as datetime64[ns], OHLCV as float64; for a long file "id", each
    row's series code in order of first appearance, and "names", the ids), or None when any row is short, long,
    empty, not a plain number or not a YYYY-MM-DD date."""
    dtypes = {i: "category" for i in range(width)}  # text as categories: a date or ticker is one string, not one a row
    for i in positions[1:]:
        dtypes[i] = np.float64
    try:
        # bytes, not io.StringIO: StringIO keeps 4 bytes a character (a 265 MB file then peaked at 2 GB).
        frame = pd.read_csv(io.BytesIO(text.encode("utf-8")), encoding="utf-8", sep=separator, header=None,
                            skiprows=1, dtype=dtypes, keep_default_na=False, na_values=[""], engine="c",
                            names=range(width), skip_blank_lines=True)
    except (ValueError, pd.errors.ParserError, OverflowError):
        return None
    if len(frame) == 0 or frame.isna().to_numpy().any():
        return None
    dates = _dates(frame[positions[0]])
    if dates is None:
        return None
    out = {"Date": dates}
    out.update({name: frame[i].to_numpy(dtype=np.float64) for name, i in zip(OHLCV_COLUMNS, positions[1:])})
    if id_pos is not None:
        ids = frame[id_pos]
        stripped, unique = pd.factorize(ids.cat.categories.astype(str).str.strip())  # " A" and "A" are one id
        codes, first_seen = pd.factorize(stripped[ids.cat.codes.to_numpy()])  # ids in order of first appearance
        names = np.asarray(unique, dtype=object)[first_seen]
        if (names == "").any():
            return None
        out["id"], out["names"] = codes.astype(np.int64), names
    return out


def _values_ok(cells: dict) -> bool:
    """The careful path's number and bar checks, over whole columns: finite prices in (0, MAX_PRICE], volumes in
    [0, MAX_VOLUME], Low <= Close <= High."""
    with np.errstate(invalid="ignore"):
        for name in OHLCV_COLUMNS:
            v = cells[name]
            low, limit = (0.0, MAX_VOLUME) if name == "Volume" else (np.nextafter(0.0, 1.0), MAX_PRICE)
            if not (np.isfinite(v) & (v >= low) & (v <= limit)).all():
                return False
        high, low, close = cells["High"], cells["Low"], cells["Close"]
        return bool(((high >= low) & (close <= high) & (close >= low)).all())


def _dates(text: pd.Series) -> np.ndarray | None:
    """datetime64[ns] of YYYY-MM-DD strings (categorical: each date parsed once), or None (another format, a time
    of day, an impossible date)."""
    dates = pd.to_datetime(text.astype(str) if text.dtype != "category" else text, format="%Y-%m-%d",
                           errors="coerce")
    if dates.isna().any():
        return None
    return dates.to_numpy(dtype="datetime64[ns]")


def _split(cells: dict, source: str, by_id: bool, min_rows: int, reason: str, careful=None) -> dict | None:
    """The checked frames, one per id (in order of first appearance) or one for the file; None if any check fails.

    ``careful(name, frame, rows)``: the careful checks of one series that needs a warning or a cleaning step
    (``_needs_care``), given its bars and their positions among the input's rows; None: such a series sends the
    whole input to the careful path (return None).
    """
    if not _values_ok(cells):
        return None
    dates = cells["Date"]
    if by_id:
        codes, names = cells["id"], cells.pop("names")
        order = np.argsort(codes, kind="stable")
    else:
        codes, names, order = np.zeros(len(dates), dtype=np.int64), np.array([""], dtype=object), None
    if order is not None:
        codes, dates = codes[order], dates[order]
        cells = {k: v[order] for k, v in cells.items()}
    else:
        order = np.arange(len(dates))
    same = codes[1:] == codes[:-1]
    if (same & (dates[1:] <= dates[:-1])).any():  # out of order or repeated: the careful path sorts or refuses
        return None
    starts = np.flatnonzero(np.r_[True, ~same, True])
    out = {}
    for k, (lo, hi) in enumerate(zip(starts[:-1], starts[1:])):
        name = str(names[k])
        frame = pd.DataFrame({c: cells[c][lo:hi] for c in OHLCV_COLUMNS},
                             index=pd.DatetimeIndex(dates[lo:hi], name="Date").as_unit("ns"))
        if _needs_care(frame, source):
            if careful is None:
                return None
            frame = careful(name, frame, order[lo:hi])
        else:
            _check_length(frame, source, min_rows, (reason + f"; series {name}").lstrip("; ") if by_id else reason)
        frame.attrs["source"] = name if by_id else source
        frame.attrs["close_only"] = False
        out[name] = frame
    return out
