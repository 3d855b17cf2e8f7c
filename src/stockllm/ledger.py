"""The forecast ledger: every forecast a run made, appended to one CSV file, and scored once its dates have passed.

``stockllm forecast --ledger FILE`` (and ``stockllm serve --ledger FILE``) append one row per ticker, horizon
and run: the run's id, time (UTC) and row count, the ticker, the model kind and its checkpoint id (a hash of
the checkpoint's files; empty for naive and drift), the data source, the data's last date and close, the
target date and horizon, the median and every quantile, and the price adjustment of the closes it forecast
(``adjust``: none, split or full; empty for files). Past rows are never rewritten.

Safe against two runs at once: appends hold a file lock (``FILE.lock``, the ``filelock`` package). Safe against
a crash mid-write: each run's rows go down in one ``write`` followed by ``fsync``, every row records how many
rows its run wrote, and the reader drops a torn last line and any run with fewer rows than it announced; the
next append starts on a fresh line. So a ``kill -9`` during an append loses at most the run being written.

:func:`score` compares the forecasts whose target date has passed with the actual closes: the metrics of
``stockllm evaluate`` (MAE, WQL, coverage; :func:`stockllm.metrics.metrics`) beside the naive random walk,
per ticker, model and horizon. Like is compared with like: a forecast of adjusted closes (``full``, ``split``:
AKShare's qfq, Yahoo's adjusted prices) is rebased by the data's close on its last date ÷ the close it recorded,
since a dividend or split since then rewrites every earlier adjusted close.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import stat
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, StockLLMError
from .quantiles import column, level_of

BASE_COLUMNS = ("run_id", "run_time", "run_rows", "ticker", "model", "checkpoint", "source", "last_date",
                "last_close", "date", "horizon", "predicted_close")
EXTRA_COLUMNS = ("adjust",)  # after the quantiles, so that ledgers written before them still read
REWRITES_PAST = ("full", "split")  # adjustments that change earlier closes at each dividend or split
LOCK_TIMEOUT = 60.0  # seconds an append waits for another run's append
MAX_RATIO = 1000.0  # a forecast this many times off its last close, either way, is a broken row, not a forecast


def check_ledger(path) -> Path:
    """Refuse a ledger path that is a folder, a device or a FIFO, or whose folder cannot be written; before any
    data or model loads. A symlink is refused unless ``--follow_symlinks`` (outputs.following_symlinks)."""
    from .outputs import refuse_symlink

    refuse_symlink(path, "--ledger")
    path = Path(path)
    if path.exists() and not stat.S_ISREG(path.stat().st_mode):
        raise StockLLMError(f"--ledger {path} is not a regular file: name a .csv file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise StockLLMError(f"--ledger {path}: its folder {parent} does not exist; create it or choose another path")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise StockLLMError(f"--ledger {path} cannot be written: check the permissions")
    return path


def checkpoint_id(directory) -> str:
    """A short content hash (12 hex digits) of a checkpoint folder's files (stockllm.json and the weights;
    training state and hidden files left out): the same weights give the same id wherever they are copied."""
    if not directory:
        return ""
    root = Path(directory)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                                        p.relative_to(root).parts)
                   and p.relative_to(root).parts[0] != "state")
    for p in files:
        digest.update(str(p.relative_to(root).as_posix()).encode() + b"\0")
        with open(p, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def _levels(columns) -> list[float]:
    return sorted(lv for lv in (level_of(str(c)) for c in columns) if lv is not None)


def _header(levels) -> list[str]:
    return [*BASE_COLUMNS, *(column(lv) for lv in levels), *EXTRA_COLUMNS]


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if not np.isfinite(value) else repr(float(value))
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    return str(value)


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte (one ``write`` call unless the system writes fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def append_forecasts(path, table: pd.DataFrame, *, checkpoint: str = "", source: str = "",
                     run_time: datetime | None = None, levels=None, adjust: str = "") -> int:
    """Append one run's forecasts to the ledger at ``path`` (created with its header if absent); returns the rows
    written.

    table: ``predict_df``'s rows (ticker, date, horizon, predicted_close, q…, last_close, last_date, model).
    A new file's quantile columns are ``levels`` (default: this run's); a later run may give some of them (the
    others stay empty) but no others (another model's levels belong in another ledger). Holds ``path``.lock
    while appending; raises StockLLMError when the lock stays taken for a minute or the file cannot be written.
    ``source`` and ``adjust`` say where the closes came from and how they were adjusted (see the module docstring).
    """
    from filelock import FileLock, Timeout

    path = check_ledger(path)
    _check_names(table)
    ours = _levels(table.columns)
    try:
        with FileLock(f"{path}.lock", timeout=LOCK_TIMEOUT):
            header, ends_clean = _current_header(path)
            fresh = header is None
            if fresh:
                header = _header(sorted(set(ours) | set(levels or ())))
            extra = [lv for lv in ours if column(lv) not in header]
            if extra:
                theirs = ",".join(f"{lv:g}" for lv in _levels(header)) or "none"
                raise StockLLMError(f"--ledger {path} holds the quantile levels {theirs} and this run gives "
                                    f"{','.join(f'{lv:g}' for lv in ours)}: pass --quantiles with some of {theirs}, "
                                    "or use another ledger file")
            text = _render(table, header, checkpoint, source, run_time, adjust)
            if fresh:
                text = ",".join(header) + "\n" + text
            elif not ends_clean:
                text = "\n" + text  # a line torn by a crash ends here; this run starts on a line of its own
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | (os.O_TRUNC if fresh else 0), 0o644)
            try:
                _write_all(fd, text.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
    except Timeout:
        raise StockLLMError(f"--ledger {path} stayed locked by another run for {LOCK_TIMEOUT:.0f} s: wait for it, "
                            f"or delete {path}.lock if no stockllm is running") from None
    except OSError as exc:
        if exc.filename is not None and str(exc.filename).endswith(".lock"):
            raise StockLLMError(f"cannot use the ledger's lock file {exc.filename} "
                                f"({(exc.strerror or str(exc)).lower()}): remove or rename it (no stockllm run "
                                "holds a lock that is not a regular file)") from None
        raise StockLLMError(f"cannot append to --ledger {path} ({(exc.strerror or str(exc)).lower()}): check the "
                            "folder's permissions and free space") from None
    return len(table)


def _check_names(table: pd.DataFrame) -> None:
    """Refuse a series or model name with a control character: a newline in a cell would tear the ledger's lines."""
    for name in ("ticker", "model"):
        for value in dict.fromkeys(table[name].astype(str)) if name in table.columns else ():
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
                raise StockLLMError(f"the {'series' if name == 'ticker' else 'model'} name {value!r} holds a control "
                                    "character, which would tear the ledger's lines: rename the file or ticker")


def ledger_levels(path) -> list[float] | None:
    """The quantile levels a ledger file records, or None when it does not exist yet (or holds only a torn
    header)."""
    header, _ = _current_header(check_ledger(path))
    return None if header is None else _levels(header)


def _current_header(path: Path) -> tuple[list[str] | None, bool]:
    """(the header of an existing ledger or None, whether the file ends with a newline); refuses a foreign CSV."""
    if not path.exists() or path.stat().st_size == 0:
        return None, True
    with open(path, "rb") as handle:
        first = handle.readline()
        if not first.endswith(b"\n"):
            return None, True  # a header torn by a crash: no row to keep, the file starts again
        handle.seek(-1, os.SEEK_END)
        ends_clean = handle.read(1) == b"\n"
    header = first.decode("utf-8", "replace").strip().split(",")
    if header[: len(BASE_COLUMNS)] != list(BASE_COLUMNS):
        raise StockLLMError(f"--ledger {path} is not a stockllm forecast ledger (its header is "
                            f"{','.join(header[:4])}...): name another file")
    return header, ends_clean


def _render(table: pd.DataFrame, header: list[str], checkpoint: str, source: str, run_time, adjust: str = "") -> str:
    """The run's rows as CSV text under ``header`` (quantiles the table lacks left empty)."""
    run_id = uuid.uuid4().hex[:12]
    when = (run_time or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in table.to_dict("records"):
        values = {**row, "run_id": run_id, "run_time": when, "run_rows": len(table), "checkpoint": checkpoint,
                  "source": source, "adjust": adjust, "horizon": int(row["horizon"])}
        writer.writerow([_cell(values.get(c, "")) for c in header])
    return buffer.getvalue()


def read_ledger(path) -> tuple[pd.DataFrame, list[str]]:
    """The ledger's complete, sound rows as a frame (last_date and date as Timestamps, numbers as floats) and notes
    on what was left out, each naming the lines: a torn or unreadable line, repeated lines, runs with fewer rows
    than they announced (a crash mid-append), and rows a hand edit broke (numbers not finite and positive, or
    absurdly far from the last close; quantiles that cross). A UTF-8 BOM and CRLF line ends are read. A header
    with a column stockllm does not write, or two columns for one level, is refused (DataError)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no ledger {path}: run `stockllm forecast --ledger {path}` first")
    header, lines, notes = _ledger_lines(path)
    frame = pd.DataFrame([cells for _, cells in lines], columns=header)
    frame["line"] = [n for n, _ in lines]
    garbled = np.zeros(len(frame), dtype=bool)  # a number cell holding text such as "nan" (empty is allowed)
    for name in EXTRA_COLUMNS:
        if name not in frame.columns:
            frame[name] = ""  # a ledger from before the column: unknown
    for name in ("last_close", "predicted_close", *(c for c in header if level_of(c) is not None)):
        text = frame[name].str.strip()
        frame[name] = pd.to_numeric(frame[name], errors="coerce")
        garbled |= ((text != "") & frame[name].isna()).to_numpy()
    frame["garbled"] = garbled
    frame["horizon"] = pd.to_numeric(frame["horizon"], errors="coerce")
    frame["run_rows"] = pd.to_numeric(frame["run_rows"], errors="coerce")
    for name in ("last_date", "date"):
        frame[name] = pd.to_datetime(frame[name], errors="coerce", format="%Y-%m-%d")
    counts = frame.groupby("run_id")["run_id"].transform("size")
    whole = (counts == frame["run_rows"]) & frame[["horizon", "last_date", "date"]].notna().all(axis=1)
    if not whole.all():
        runs = frame.loc[~whole, "run_id"].nunique()
        notes.append(f"left out {_count_rows(frame, ~whole)} of {runs} incomplete run{'s' if runs != 1 else ''} in "
                     f"{path} (cut short by a crash)")
    frame = frame[whole]
    broken, why = _broken_rows(frame, header)
    for reason in dict.fromkeys(why[broken]):
        notes.append(f"left out {_count_rows(frame, broken & (why == reason))} of {path} whose {reason} (edited "
                     "by hand?): fix or delete those lines")
    frame = frame[~broken].drop(columns=["line", "garbled"]).reset_index(drop=True)
    frame["horizon"] = frame["horizon"].astype(int)
    return frame, notes


def _ledger_lines(path: Path) -> tuple[list[str], list[tuple[int, list[str]]], list[str]]:
    """(header, [(line number, cells)] of the rows that read as whole CSV lines of the header's width, notes).
    Refuses (DataError) a file that is not a ledger or whose header stockllm did not write."""
    text = path.read_bytes().decode("utf-8", "replace").removeprefix("\ufeff")
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    torn = lines.pop() != ""  # text after the last newline: a line a crash cut short
    if not lines:
        raise DataError(f"empty ledger {path}: run `stockllm forecast --ledger {path}` first")
    header = _cells(lines[0]) or []
    if header[: len(BASE_COLUMNS)] != list(BASE_COLUMNS):
        raise DataError(f"{path} is not a stockllm forecast ledger (its header is {lines[0][:80]!r})")
    _check_header(header, path)
    good, bad, seen, repeated = [], [len(lines) + 1] if torn else [], set(), []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = _cells(line)
        if cells is None or len(cells) != len(header):
            bad.append(number)
        elif line in seen:
            repeated.append(number)
        else:
            seen.add(line)
            good.append((number, cells))
    notes = []
    if bad:
        notes.append(f"left out {len(bad)} torn or unreadable line{'s' if len(bad) != 1 else ''} of {path} "
                     f"({_lines_text(bad)}; a run cut short, or a hand edit)")
    if repeated:
        notes.append(f"left out {len(repeated)} repeated line{'s' if len(repeated) != 1 else ''} of {path} "
                     f"({_lines_text(repeated)}): each forecast is counted once")
    return header, good, notes


def _cells(line: str) -> list[str] | None:
    """The CSV cells of one line, or None when it does not read as one (a stray carriage return, say)."""
    try:
        return next(csv.reader([line], strict=True), [])
    except csv.Error:
        return None


def _check_header(header: list[str], path: Path) -> None:
    """Refuse a ledger header with a column stockllm does not write, or two quantile columns for one level."""
    levels = [level_of(c) for c in header[len(BASE_COLUMNS):]]
    names = header[len(BASE_COLUMNS):]
    unknown = next((c for c, lv in zip(names, levels) if lv is None and c not in EXTRA_COLUMNS), None)
    if unknown is not None:
        raise DataError(f"{path} has a column {unknown[:40]!r} that stockllm's ledgers do not have: remove it, or "
                        "score the ledger a stockllm version wrote")
    for name, level in zip(names, levels):
        if level is not None and name != column(level):
            raise DataError(f"{path} has a quantile column {name!r}, which stockllm names {column(level)}: a "
                            "hand-edited header; rename it, or keep one column per level")
    if len(set(names)) != len(names):
        twice = next(c for c in names if names.count(c) > 1)
        raise DataError(f"{path} has the column {twice} twice: keep one column per name")


def _broken_rows(frame: pd.DataFrame, header: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(mask, reason per row) of rows a hand edit broke: prices that are not finite and positive, or more than
    MAX_RATIO times off the last close either way (scores would overflow), and quantiles that cross."""
    qcols = [c for c in header if level_of(c) is not None]
    last = frame["last_close"].to_numpy(dtype=float)
    prices = frame[["predicted_close", *qcols]].to_numpy(dtype=float)
    given = ~np.isnan(prices)
    given[:, 0] = True  # the point forecast is never optional
    why = np.full(len(frame), "", dtype=object)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio = prices / last[:, None]
        far = (given & ~((ratio >= 1 / MAX_RATIO) & (ratio <= MAX_RATIO))).any(axis=1)
        bad = ~(np.isfinite(last) & (last > 0)) | (given & ~(np.isfinite(prices) & (prices > 0))).any(axis=1)
        q = frame[qcols].to_numpy(dtype=float).reshape(len(frame), len(qcols))
        highest = np.fmax.accumulate(q, axis=1)  # the highest given quantile so far (empty cells skipped)
        cross = (q[:, 1:] < highest[:, :-1]).any(axis=1)  # ties are allowed; empty cells compare False
    horizon = frame["horizon"].to_numpy(dtype=float)
    bad |= ~((horizon >= 1) & (horizon == np.round(horizon))) | frame["garbled"].to_numpy(dtype=bool)
    why[cross] = "quantiles cross (a lower level above a higher one)"
    why[far] = f"forecasts lie more than {MAX_RATIO:g} times off the last close"
    why[bad] = "prices (or horizon) are not finite and positive"
    return bad | far | cross, why


def _count_rows(frame: pd.DataFrame, mask) -> str:
    """"3 rows (lines 4, 9, 12)" for the rows of ``frame`` that ``mask`` selects."""
    lines = frame.loc[np.asarray(mask, dtype=bool), "line"].tolist()
    return f"{len(lines)} row{'s' if len(lines) != 1 else ''} ({_lines_text(lines)})"


def _lines_text(numbers, limit: int = 6) -> str:
    shown = ", ".join(str(n) for n in numbers[:limit])
    return f"line{'s' if len(numbers) != 1 else ''} {shown}" + (f" and {len(numbers) - limit} more"
                                                                if len(numbers) > limit else "")


def model_label(kind: str, checkpoint: str) -> str:
    """How score names a model: its kind, with the checkpoint id when there is one (``mlp@3f2a9c1b0d4e``)."""
    return f"{kind}@{checkpoint}" if checkpoint else kind


def score(ledger: pd.DataFrame, frames: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Score every ledger forecast whose target date has a close in ``frames`` ({ticker: OHLCV frame}).

    Returns (metrics, forecasts, counts): metrics as :func:`stockllm.metrics.metrics` gives them (series =
    ticker, model = :func:`model_label`, horizon; mae, mae_vs_naive, wql, wql_vs_naive, coverage_80, ...),
    the scored forecasts beside naive (``naive`` is the random walk from each forecast's last close, with the
    EWMA volatility of the closes up to its last date, at the ledger's levels), and counts: scored, pending
    (target date after the data's last date), no_close (the data lack that date), no_data (ticker not in
    ``frames``), duplicates (the same model, ticker, last date and horizon forecast again: the latest run kept).
    Ledger rows of the naive model itself are the reference and are recomputed rather than read. Models whose
    rows record different quantile levels are scored apart, each beside naive at its own levels (that naive is
    then named ``naive (q0.1,q0.5,q0.9)``, say).
    """
    from .metrics import metrics

    qall = [column(lv) for lv in _levels(ledger.columns)]
    ledger, counts_rebased = rebase(ledger, frames, qall)
    led = ledger.assign(label=[model_label(k, c) for k, c in zip(ledger["model"], ledger["checkpoint"])])
    led = led.sort_values("run_time", kind="stable")
    keys = ["ticker", "label", "last_date", "horizon"]
    dup = led.duplicated(keys, keep="last")
    counts = {"duplicates": int(dup.sum()), "scored": 0, "pending": 0, "no_close": 0, "no_data": 0,
              "rebased": counts_rebased}
    led = led[~dup]
    present = led[qall].notna().to_numpy()
    sets = pd.Series([tuple(c for c, ok in zip(qall, row) if ok) for row in present], index=led.index)
    groups = list(dict.fromkeys(sets))
    tables, scored = [], []
    for qcols in groups:
        forecasts = _beside_naive(led[sets == qcols], frames, list(qcols), counts)
        if forecasts.empty:
            continue
        table = metrics(forecasts)
        if len(groups) > 1:
            name = f"naive ({','.join(qcols)})"
            table["model"] = table["model"].replace("naive", name)
            forecasts["model"] = forecasts["model"].replace("naive", name)
        tables.append(table)
        scored.append(forecasts)
    if not tables:
        return pd.DataFrame(), pd.DataFrame(), counts
    return pd.concat(tables, ignore_index=True), pd.concat(scored, ignore_index=True), counts


def adjustments(ledger: pd.DataFrame) -> dict[str, str]:
    """{ticker: the adjustment its forecasts used} ('' where unknown); refuses a ticker forecast with two, since
    one set of actual closes cannot score both."""
    out = {}
    for ticker, g in ledger.groupby("ticker", sort=False):
        used = sorted({a for a in g.get("adjust", pd.Series(dtype=str)).fillna("").astype(str) if a})
        if len(used) > 1:
            raise StockLLMError(f"the ledger's forecasts of {ticker} used --adjust {' and '.join(used)}: score them "
                                "apart (one ledger per adjustment), since one set of closes cannot score both")
        out[ticker] = used[0] if used else ""
    return out


def rebase(ledger: pd.DataFrame, frames: dict, qcols: list[str]) -> tuple[pd.DataFrame, int]:
    """Forecasts of adjusted closes (:data:`REWRITES_PAST`) scaled by the data's close on their last date ÷ the
    close they recorded: a dividend or split since the forecast rewrote that close, and the forecast with it.
    Returns (ledger, rows whose factor is not 1)."""
    if "adjust" not in ledger.columns or ledger.empty:
        return ledger, 0
    out = ledger.copy()
    factor = np.ones(len(out))
    for i, (ticker, last, close, adjust) in enumerate(out[["ticker", "last_date", "last_close", "adjust"]]
                                                     .itertuples(index=False)):
        frame = frames.get(ticker)
        if adjust in REWRITES_PAST and frame is not None and last in frame.index and close > 0:
            factor[i] = float(frame["Close"].loc[last]) / close
    for name in ("last_close", "predicted_close", *qcols):
        out[name] = out[name] * factor
    return out, int((np.abs(factor - 1) > 1e-9).sum())


def _beside_naive(led: pd.DataFrame, frames: dict, qcols: list[str], counts: dict) -> pd.DataFrame:
    """The scored rows of ``led`` (one level set ``qcols``) and naive's at the same origins, as
    stockllm.metrics.metrics reads them (series, model, origin, horizon, last_close, actual, predicted, q…)."""
    from .quantiles import ewma_sigma, z_scores

    levels = [level_of(c) for c in qcols]
    rows, naive = [], {}
    for ticker, g in led.groupby("ticker", sort=False):
        frame = frames.get(ticker)
        if frame is None:
            counts["no_data"] += len(g)
            continue
        close = frame["Close"]
        sigma = ewma_sigma(close.to_numpy(dtype=np.float64))
        last = frame.index[-1]
        for r in g.to_dict("records"):
            target, origin, h = r["date"], r["last_date"], int(r["horizon"])
            if target > last:
                counts["pending"] += 1
                continue
            if target not in close.index:
                counts["no_close"] += 1
                continue
            actual = float(close.loc[target])
            base = {"series": ticker, "origin": origin.strftime("%Y-%m-%d"), "horizon": h,
                    "last_close": r["last_close"], "actual": actual}
            if not (r["model"] == "naive" and not r["checkpoint"]):  # naive itself: the reference, recomputed
                rows.append({**base, "model": r["label"], "predicted": r["predicted_close"],
                             **{c: r[c] for c in qcols}})
            counts["scored"] += 1
            if (ticker, origin, h) not in naive:
                pos = int(frame.index.searchsorted(origin, side="right")) - 1
                s = sigma[pos] if pos >= 1 else np.nan
                q = r["last_close"] * np.exp(s * np.sqrt(h) * z_scores(levels))
                naive[(ticker, origin, h)] = {**base, "model": "naive", "predicted": r["last_close"],
                                              **dict(zip(qcols, q))}
    forecasts = pd.DataFrame([*naive.values(), *rows],
                             columns=["series", "model", "origin", "horizon", "last_close", "actual", "predicted",
                                      *qcols])
    forecasts["horizon"] = forecasts["horizon"].astype(int)
    return forecasts.sort_values(["series", "model", "origin", "horizon"], kind="stable").reset_index(drop=True)
