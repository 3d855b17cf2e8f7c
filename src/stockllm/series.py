"""Many series from what users pass to ``--data``: files, folders, globs, and long CSVs with a ticker column.

``--data AAPL.csv MSFT.csv``, ``--data prices/`` (every ``*.csv`` in it), ``--data 'prices/*.csv'`` and
``--data us4_long.csv`` (one file, one series per value of its ``ticker`` / ``unique_id`` / ``item_id`` /
``symbol`` column, as Nixtla and Chronos write long data) all give {series name: checked OHLCV frame}, in the
order given (files of a folder or glob sorted by name). Each series is checked as one file is, and a bad row is
named by the file's own line number.
"""

from __future__ import annotations

import csv
import glob
import io
from pathlib import Path

import numpy as np
import pandas as pd

from .data import _checked, _parse_csv, _read_text, _sniff_separator, resolve_data_path
from .errors import DataError
from .fastload import read_clean

ID_COLUMNS = ("ticker", "unique_id", "item_id", "series", "symbol")  # ours, Nixtla's, Chronos's, and common names


def expand_paths(items) -> list[str]:
    """``--data`` values → CSV paths: a folder stands for its ``*.csv`` files (any case: ``BBB.CSV`` too), a
    pattern with * ? [ for its matches (both sorted by name); anything else is kept as given (a file, or a bundled
    sample's name)."""
    out = []
    for item in [items] if isinstance(items, (str, Path)) else items:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            found = sorted(str(p) for p in path.iterdir()
                           if p.suffix.lower() == ".csv" and not p.name.startswith(".") and p.is_file())
            if not found:
                raise DataError(f"no .csv files in folder {text}: put one CSV per series there, or pass files")
            out += found
        elif not path.exists() and any(ch in text for ch in "*?["):
            found = sorted(p for p in glob.glob(text) if Path(p).is_file())
            if not found:
                raise DataError(f"no file matches {text}: check the pattern (quote it so the shell leaves it alone)")
            out += found
        else:
            out.append(text)
    return out


def data_files(items) -> list[tuple[str, Path]]:
    """``("--data", path)`` for each file that ``--data`` values name, for checks that run before any file is
    read (an output must not be one of them); values that are not paths, or name nothing, are left out (reading
    them gives the error)."""
    if isinstance(items, (str, Path)):
        items = [items]
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, (str, Path)) for i in items):
        return []  # frames given to the Python API
    try:
        paths = expand_paths(items)
    except DataError:
        return []
    return [("--data", resolve_data_path(p)) for p in paths]


def id_column(header: list[str]) -> int | None:
    """The position of the series-id column in a header (ticker, unique_id, item_id, series, symbol; any case)."""
    names = [cell.strip().lower() for cell in header]
    return next((names.index(c) for c in ID_COLUMNS if c in names), None)


def _header(text: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.strip())
    return next(csv.reader(io.StringIO(line), delimiter=_sniff_separator(text)))


def _ids(text: str, position: int) -> dict[int, str]:
    """{line number: id cell} for every data row (the header and blank lines left out)."""
    reader = csv.reader(io.StringIO(text, newline=None), delimiter=_sniff_separator(text))
    out, header_seen = {}, False
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if not header_seen:
            header_seen = True
            continue
        out[reader.line_num] = row[position].strip() if position < len(row) else ""
    return out


def load_file_series(path, *, min_rows: int = 1, min_rows_reason: str = "", columns: dict | None = None,
                     decimal: str = ".", date_format: str | None = None) -> dict[str, pd.DataFrame]:
    """One CSV → {name: frame}: a plain file is one series named after the file's stem; a long file with an id
    column is one series per id (in order of first appearance), each named by its id and checked on its own rows
    (errors name the file's line numbers). ``columns``, ``decimal`` and ``date_format``: as in
    :func:`stockllm.data.load_ohlcv`."""
    source = str(path)
    text = _read_text(resolve_data_path(path), source)
    position = id_column(_header(text))
    fast = read_clean(text, source, id_position=position, min_rows=min_rows, min_rows_reason=min_rows_reason,
                      columns=columns, decimal=decimal)  # a clean file in one C parse; None: read it carefully
    if fast is not None:
        return fast if position is not None else {Path(source).stem: fast[""]}
    raw, rows = _parse_csv(text, source, columns)
    close_only = raw.attrs.get("close_only", False)
    if position is None:
        frame = _checked(raw, source, rows, min_rows, min_rows_reason, decimal, date_format)
        frame.attrs["close_only"] = close_only
        return {Path(source).stem: frame}
    ids = _ids(text, position)
    keys = pd.Series([ids.get(r, "") for r in rows])
    blank = [r for r, k in zip(rows, keys) if not k]
    if blank:
        raise DataError(f"empty {_header(text)[position].strip()} in {source} row {blank[0]}: every row of a long "
                        "file names its series")
    out = {}
    rows = np.asarray(rows, dtype=object)
    for key, where in keys.groupby(keys, sort=False).indices.items():  # one pass, not a mask per ticker
        part = raw.iloc[where].reset_index(drop=True)
        frame = _checked(part, source, list(rows[where]), min_rows,
                         (min_rows_reason + f"; series {key}").lstrip("; "), decimal, date_format)
        frame.attrs["source"] = key  # the ticker: it names the series and its exchange calendar
        frame.attrs["close_only"] = close_only
        out[key] = frame
    return out


def share(items: list, rank: int, world: int) -> list:
    """The contiguous share of ``items`` that process ``rank`` of ``world`` takes (all of them with one process)."""
    return list(np.array_split(np.asarray(items, dtype=object), world)[rank]) if world > 1 else list(items)


def load_series(items, *, min_rows: int = 1, min_rows_reason: str = "", columns: dict | None = None,
                decimal: str = ".", date_format: str | None = None,
                shard: tuple[int, int] | None = None) -> dict[str, pd.DataFrame]:
    """``--data`` values (files, folders, globs, long files) → {series name: checked OHLCV frame}.

    Plain files are named by their stem (by their path where two stems are equal); series of long files by their
    id. Two series with one name are refused, since their rows would be scored as one. ``shard`` = (rank, world):
    only this process's contiguous share, of the files where there are at least ``world`` of them (the others are
    never read), else of the series of the files.
    """
    paths = expand_paths(items)
    stems = [Path(p).stem for p in paths]
    by_file = shard is not None and len(paths) >= shard[1]
    chosen = share(list(range(len(paths))), *shard) if by_file else range(len(paths))
    out: dict[str, pd.DataFrame] = {}
    for path, stem in ((paths[i], stems[i]) for i in chosen):
        for name, frame in load_file_series(path, min_rows=min_rows, min_rows_reason=min_rows_reason,
                                            columns=columns, decimal=decimal,
                                            date_format=date_format).items():
            if name == stem and stems.count(stem) > 1:
                name = str(path)
            if name in out:
                raise DataError(f"two series are named {name} ({path} and an earlier one): rename one file, or keep "
                                "each ticker in one file")
            out[name] = frame
    if shard is not None and not by_file:
        out = {name: out[name] for name in share(list(out), *shard)}
    return out
