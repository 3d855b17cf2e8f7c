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

from .data import (MAX_PRICE, MAX_VOLUME, OHLCV_COLUMNS, _check_length, _checked, _column_positions,
                   _sniff_separator, _split_note)


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
    first = text.split("\n", 1)[0]
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
    cells["line"] = _line_numbers(text, len(cells["Date"]))
    return _split(cells, source, id_pos is not None, min_rows, min_rows_reason)


def _line_numbers(text: str, n: int) -> np.ndarray | None:
    """The file line of each of the n data rows (the header is line 1), or None when blank lines (which the parser
    skips) make that unknown."""
    body = text.replace("\r\n", "\n").rstrip("\n")
    return None if "\n\n" in body else np.arange(2, n + 2)


def _needs_care(frame: pd.DataFrame, source: str) -> bool:
    """Whether the careful checks would warn about or clean this series: a possible split, or suspended days
    (volume 0 and open = high = low = close in a series that trades on other days)."""
    if _split_note(frame, source, np.arange(len(frame))) is not None:
        return True
    v = frame.to_numpy()
    volume = v[:, 4]
    return bool((volume > 0).any() and ((volume == 0) & (v[:, 0] == v[:, 1]) & (v[:, 1] == v[:, 2])
                                        & (v[:, 2] == v[:, 3])).any())


def _parse(text: str, separator: str, width: int, positions: list[int], id_pos: int | None) -> dict | None:
    """{name: column} (Date and ids as strings, OHLCV as float64) of every data row, or None when any row is
    short, long, empty or not a plain number."""
    dtypes = {i: str for i in range(width)}
    for i in positions[1:]:
        dtypes[i] = np.float64
    try:
        frame = pd.read_csv(io.StringIO(text), sep=separator, header=None, skiprows=1, dtype=dtypes,
                            keep_default_na=False, na_values=[""], engine="c", names=range(width),
                            skip_blank_lines=True)
    except (ValueError, pd.errors.ParserError, OverflowError):
        return None
    if len(frame) == 0 or frame.isna().to_numpy().any():
        return None
    out = {"Date": frame[positions[0]].to_numpy(dtype=object)}
    out.update({name: frame[i].to_numpy(dtype=np.float64) for name, i in zip(OHLCV_COLUMNS, positions[1:])})
    if id_pos is not None:
        ids = frame[id_pos].str.strip()
        if (ids == "").any():
            return None
        out["id"] = ids.to_numpy(dtype=object)
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


def _dates(text: np.ndarray) -> np.ndarray | None:
    """datetime64[ns] of YYYY-MM-DD strings, or None (another format, a time of day, an impossible date)."""
    dates = pd.to_datetime(pd.Series(text, dtype=object), format="%Y-%m-%d", errors="coerce")
    if dates.isna().any():
        return None
    return dates.to_numpy(dtype="datetime64[ns]")


def _split(cells: dict, source: str, by_id: bool, min_rows: int, reason: str) -> dict | None:
    """The checked frames, one per id (in order of first appearance) or one for the file; None if any check fails."""
    if not _values_ok(cells):
        return None
    dates = _dates(cells["Date"])
    if dates is None:
        return None
    if by_id:
        codes, names = pd.factorize(cells["id"])
        order = np.argsort(codes, kind="stable")
    else:
        codes, names, order = np.zeros(len(dates), dtype=np.int64), np.array([""], dtype=object), None
    if order is not None:
        codes, dates = codes[order], dates[order]
        cells = {k: None if v is None else v[order] for k, v in cells.items()}
    same = codes[1:] == codes[:-1]
    if (same & (dates[1:] <= dates[:-1])).any():  # out of order or repeated: the careful path sorts or refuses
        return None
    starts = np.flatnonzero(np.r_[True, ~same, True])
    out = {}
    for k, (lo, hi) in enumerate(zip(starts[:-1], starts[1:])):
        name = str(names[k])
        frame = pd.DataFrame({c: cells[c][lo:hi] for c in OHLCV_COLUMNS},
                             index=pd.DatetimeIndex(dates[lo:hi], name="Date").as_unit("ns"))
        why = (reason + f"; series {name}").lstrip("; ") if by_id else reason
        if _needs_care(frame, source):
            if cells["line"] is None:
                return None
            raw = pd.DataFrame({"Date": frame.index, **{c: frame[c].to_numpy() for c in OHLCV_COLUMNS}})
            frame = _checked(raw, source, list(cells["line"][lo:hi]), min_rows, why)  # warns, drops suspended days
        else:
            _check_length(frame, source, min_rows, why)
        frame.attrs["source"] = name if by_id else source
        frame.attrs["close_only"] = False
        out[name] = frame
    return out
