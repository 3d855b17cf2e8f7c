"""``stockllm evaluate`` for a universe of series: the cheap models backtested block by block as arrays
(``stockllm.vectorised``), scored in one pass (``stockllm.groupmetrics``), the forecasts streamed to
forecasts.csv or forecasts.parquet block by block, and the series sharded over processes.

``run_evaluate`` takes this path when every model is naive, drift, fhs or garch with one fit before the cutoff (no
checkpoint, no ``--refit_every``, no ``--calibrate``); it gives the numbers of the per-series path
(``backtest.evaluate``). Peak memory is the data plus one block of forecasts (about ``BLOCK_ROWS`` rows), whatever
the number of series. Under ``accelerate launch`` (one machine or many) each process backtests a contiguous share
of the series; rank 0 writes the merged outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import StockLLMError
from .quantiles import column

BLOCK_ROWS = 300_000  # forecast rows (origins × horizons × models) per block: the memory a block holds
FORMATS = ("csv", "parquet")


CHEAP = ("naive", "drift", "fhs", "garch")  # the models ``vectorised`` backtests as arrays


def eligible(factories: dict, fitted: dict | None = None, refit_every: int | None = None,
             calibrate: str | None = None) -> bool:
    """True when the options allow the universe path: naive and only other cheap models, each fitted once before
    the cutoff (no checkpoint, no refits, no online recalibration). The data must also hold no series under a
    daily price limit (``run_evaluate`` checks that once the data are read)."""
    if fitted or refit_every or calibrate not in (None, "none"):
        return False
    return "naive" in factories and set(factories) <= set(CHEAP)


# --------------------------------------------------------------------------------------------------
# Fitting: as evaluate.evaluate does it with one fit (the rows before the cutoff, pooled over series)


def fit_models(frames: dict, factories: dict, cutoff: pd.Timestamp, progress: bool, log) -> tuple[dict, dict]:
    """({name: fitted model}, {name: protocol}) with each model fitted once on every series' rows before ``cutoff``."""
    from .backtest import before, protocol_name
    from .vectorised import supports_class

    models, protocols = {}, {}
    for name, make in factories.items():
        model = make()
        if not supports_class(model):
            raise StockLLMError(f"{name} is not one of the models the universe path backtests ({', '.join(CHEAP)})")
        if model.needs_fit:
            log(f"fitting {name} on the data before {cutoff:%Y-%m-%d} ({len(frames)} series)")
            parts = [part for part in (before(frame, cutoff) for frame in frames.values())
                     if len(part) >= model.data.min_rows]
            if not parts:
                raise StockLLMError(f"no series has {model.data.min_rows} rows before {cutoff:%Y-%m-%d} to fit "
                                    f"{name} on: use a smaller --test_size or a later --test_start")
            model.fit(parts, progress=progress)
            for note in model.fit_info.get("notes", []):
                log(f"note: {name}: {note}")
        models[name] = model
        protocols[name] = protocol_name(model, None, False, cutoff)
    return models, protocols


# --------------------------------------------------------------------------------------------------
# Forecast tables and where they go


def forecast_table(block, forecasts: list):
    """The block's forecasts as one pyarrow Table with ``evaluate.backtest``'s columns, model by model."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = pa.array([str(n) for n in block.names], pa.string())
    parts = []
    for f in forecasts:
        code = pa.array(f.code)
        origin = pa.array(block.days[f.code, f.row]).cast(pa.string())
        target = pa.array(block.days[f.code, f.target_row]).cast(pa.string())
        columns = {"series": pc.take(names, code), "model": pa.array(np.full(len(f.code), f.model, dtype=object),
                                                                     pa.string()),
                   "origin": origin, "horizon": pa.array(f.horizon), "target_date": target,
                   "last_close": f.last_close, "actual": f.actual, "predicted": f.predicted, "sigma": f.sigma}
        columns.update({column(level): f.quantiles[:, j] for j, level in enumerate(f.levels)})
        columns["limited"] = pa.array(np.zeros(len(f.code), dtype=bool))  # never: limited series take the other path
        parts.append(pa.table(columns))
    return pa.concat_tables(parts)


class MemorySink:
    """Keeps every block's forecasts, for a caller who wants the whole forecasts frame back."""

    def __init__(self):
        self.frames: list[pd.DataFrame] = []

    def write(self, table) -> None:
        self.frames.append(table.to_pandas())

    def close(self) -> None:
        pass

    def frame(self) -> pd.DataFrame:
        return pd.concat(self.frames, ignore_index=True) if self.frames else pd.DataFrame()


class FileSink:
    """Appends each block's forecasts to forecasts.csv (header once) or forecasts.parquet (one row group each)."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt, self.writer, self.handle = Path(path), fmt, None, None

    def write(self, table) -> None:
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            if self.writer is None:
                self.writer = pq.ParquetWriter(self.path, table.schema)
            self.writer.write_table(table)
            return
        if self.handle is None:
            self.handle = open(self.path, "wb")
        write_csv(table, self.handle, header=self.handle.tell() == 0)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.handle is not None:
            self.handle.close()


def write_csv(table, handle, header: bool = True) -> None:
    """Write a pyarrow Table as CSV the way pandas' ``to_csv(index=False)`` does (quotes only where a cell needs
    them), but in Arrow's C++ writer: a few times faster on millions of rows."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if header:
        handle.write((",".join(_csv_cell(name) for name in table.column_names) + "\n").encode())
    try:
        pacsv.write_csv(table, handle, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    except pa.ArrowInvalid:  # a cell with a comma, quote or line break: quote every text cell, as CSV allows
        pacsv.write_csv(table, handle, pacsv.WriteOptions(include_header=False, quoting_style="needed"))


def _csv_cell(text: str) -> str:
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n\r') else text


def write_forecasts(frame: pd.DataFrame, folder: Path, fmt: str = "csv") -> Path:
    """Write a whole forecasts frame as forecasts.csv or forecasts.parquet in ``folder``; returns the path."""
    import pyarrow as pa

    sink = FileSink(Path(folder) / forecasts_name(fmt), fmt)
    try:
        sink.write(pa.Table.from_pandas(frame, preserve_index=False))
    finally:
        sink.close()
    return sink.path


def forecasts_name(fmt: str) -> str:
    """forecasts.csv or forecasts.parquet."""
    if fmt not in FORMATS:
        raise StockLLMError(f"--format {fmt!r}: choose csv or parquet")
    return f"forecasts.{fmt}"


# --------------------------------------------------------------------------------------------------
# The backtest, block by block


def gather_closes(frames: dict) -> dict:
    """Every process's series as Close-only frames (all the cheap models and the array path read), in rank order:
    each process reads and checks only its share of the files, then the processes swap closes."""
    from accelerate.utils import gather_object

    from .errors import DataError

    out = {}
    for name, frame in gather_object([(name, frame[["Close"]]) for name, frame in frames.items()]):
        if name in out:
            raise DataError(f"two series are named {name} (in two processes' shares of the files): rename one file, "
                            "or keep each ticker in one file")
        out[name] = frame
    return out


def plan_blocks(frames: dict, names: list, models: int, horizon: int, cutoff) -> list[list]:
    """``names`` cut into blocks of about ``BLOCK_ROWS`` forecast rows each (at least one series per block)."""
    blocks, current, rows = [], [], 0
    for name in names:
        index = frames[name].index
        size = int((index >= cutoff).sum()) * horizon * models
        if current and rows + size > BLOCK_ROWS:
            blocks.append(current)
            current, rows = [], 0
        current.append(name)
        rows += size
    return blocks + ([current] if current else [])


def backtest_universe(frames: dict, models: dict, cutoff: pd.Timestamp, sink, *, rank: int = 0, world: int = 1,
                      where: str = "", progress: bool = False):
    """Backtest every model on every series' origins on or after ``cutoff``, one block of series at a time.

    Each block's forecasts go to ``sink`` (rank 0 writes every process's blocks, in rank order); returns (the metrics
    table in ``evaluate``'s row order, {model: [(DM p-values, mean differences) per block]} for the leaderboard).
    """
    from .progress import progress_bar
    from .series import share

    horizon = next(iter(models.values())).horizon
    blocks = plan_blocks(frames, share(list(frames), rank, world), len(models), horizon, cutoff)
    tables, dms = [], {name: [] for name in models}
    for k in progress_bar(range(_agreed_steps(len(blocks), world)), desc="backtest", unit="block",
                          enabled=progress and rank == 0):
        table = None
        if k < len(blocks):
            scored = _score_block({n: frames[n] for n in blocks[k]}, models, cutoff, where)
            if scored is not None:
                metrics, block_dms, table = scored
                tables.append(metrics)
                for name, dm in block_dms.items():
                    dms[name].append(dm)
        for piece in _gathered(table, world):
            if piece is not None and rank == 0:
                sink.write(piece)
    metrics = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if world > 1:
        from accelerate.utils import gather_object

        metrics = pd.concat(gather_object([metrics]), ignore_index=True)
        dms = {name: sum(gather_object([dms[name]]), []) for name in models}
    return _in_order(metrics, list(models), list(frames)), dms


def _score_block(frames: dict, models: dict, cutoff, where: str):
    """One block: (its metrics, {model: (DM p-value, mean difference) per series}, its forecast table), or None
    when none of its series has a test origin. A non-finite forecast is refused as ``outputs.check_finite`` does."""
    from .groupmetrics import block_metrics, series_dm
    from .outputs import check_finite
    from .vectorised import block_forecasts, make_block

    first = next(iter(models.values()))
    block = make_block(frames, cutoff, first.window_size, first.horizon)
    if not len(block.row):
        return None
    forecasts = [block_forecasts(model, name, block) for name, model in models.items()]
    naive = forecasts[list(models).index("naive")]
    dms = {f.model: series_dm(f, naive, len(block.names)) for f in forecasts}
    table = forecast_table(block, forecasts)
    if not _finite(table):
        check_finite(table.to_pandas(), where)
    return block_metrics(block.names, forecasts, naive), dms, table


def _agreed_steps(blocks: int, world: int) -> int:
    """The number of block steps every process runs (the largest count), so their gathers pair up."""
    if world == 1:
        return blocks
    from accelerate.utils import gather_object

    return max(gather_object([blocks]))


def _gathered(table, world: int) -> list:
    """Every process's block of this step, in rank order (just ours with one process)."""
    if world == 1:
        return [table]
    from accelerate.utils import gather_object

    return gather_object([table])


def _finite(table) -> bool:
    """True when every number of a forecast table is finite."""
    import pyarrow.compute as pc

    numbers = [c for c in table.column_names if c in ("predicted",) or c.startswith("q")]
    return all(pc.all(pc.is_finite(table[c])).as_py() is not False for c in numbers)


def _in_order(metrics: pd.DataFrame, models: list, series: list) -> pd.DataFrame:
    """The metrics rows as ``evaluate`` orders them: model, then series, then horizon."""
    if metrics.empty:
        return metrics
    key = (metrics["model"].map({m: i for i, m in enumerate(models)}) * (len(series) + 1)
           + metrics["series"].map({s: i for i, s in enumerate(series)}))
    order = np.lexsort((metrics["horizon"].to_numpy(), key.to_numpy()))
    return metrics.iloc[order].reset_index(drop=True)


def dm_counts(dms: dict, alpha: float = 0.05) -> dict:
    """{model: (series better, series worse)} than naive at p < ``alpha`` (``metrics.leaderboard``'s rule)."""
    out = {}
    for model, parts in dms.items():
        better = worse = 0
        for p, diff in parts:
            sig = p < alpha
            better += int((sig & (diff < 0)).sum())
            worse += int((sig & (diff > 0)).sum())
        out[model] = (better, worse)
    return out


def universe_leaderboard(table: pd.DataFrame, dms: dict) -> pd.DataFrame:
    """``metrics.leaderboard(table, forecasts)`` from the per-series Diebold–Mariano results of the blocks."""
    from .metrics import leaderboard

    board = leaderboard(table, None)
    counts = dm_counts(dms)
    board["dm_better"] = board["model"].map(lambda m: counts.get(m, (0, 0))[0])
    board["dm_worse"] = board["model"].map(lambda m: counts.get(m, (0, 0))[1])
    return board


def evaluate_universe(frames: dict, factories: dict, *, test_size: float = 0.2, test_start=None, sink=None,
                      progress: bool = False, log: Callable[[str], None] = print, where: str = ""):
    """``evaluate.evaluate`` for the cheap models through the array path: (metrics, leaderboard, forecasts or
    None). Forecasts are kept (and returned as one frame) only when ``sink`` is None."""
    from .backtest import process_rank, resolve_cutoff

    cutoff = resolve_cutoff(frames, test_size, test_start)
    log(f"test cutoff {cutoff:%Y-%m-%d}: models are fitted and validated on earlier dates only; "
        "every test origin is on or after it")
    models, protocols = fit_models(frames, factories, cutoff, progress, log)
    rank, world = process_rank()
    if world > 1:
        log(f"{world} processes: each backtests 1/{world} of the series")
    memory = MemorySink() if sink is None else None
    table, dms = backtest_universe(frames, models, cutoff, sink or memory, rank=rank, world=world, where=where,
                                   progress=progress)
    if table.empty:
        raise StockLLMError(f"no series has a test origin on or after the cutoff {cutoff:%Y-%m-%d} with all its "
                            "targets inside the data: use a larger --test_size, an earlier --test_start or longer "
                            "files")
    scored = set(table["series"])
    for series in frames:
        if series not in scored:
            log(f"note: {series} has no test origin on or after {cutoff:%Y-%m-%d} with its targets inside the data "
                "(its dates end too early): it is not scored")
    table.insert(2, "protocol", table["model"].map(protocols))
    return table, universe_leaderboard(table, dms), (memory.frame() if memory is not None else None), models, cutoff


UNIVERSE_DRAWN = 6  # past MAX_DRAWN_SERIES series, report.html and plot.png draw the 3 best and the 3 worst
RECENT_TARGETS = 250  # ... over their last this many test origins


def drawn_forecasts(frames: dict, models: dict, cutoff, table: pd.DataFrame) -> tuple[pd.DataFrame, list, str]:
    """Forecasts of the series worth drawing, recomputed through the array path: (frame, names, note).

    Up to ``plots.MAX_DRAWN_SERIES`` series: all of them, whole (note ""). Beyond: the ``UNIVERSE_DRAWN // 2``
    series where the models beat naive most and as many where they do worst (the median over the models other than
    naive of each series' wql_vs_naive, ``series_scores``), over their last ``RECENT_TARGETS`` origins.
    """
    from .plots import MAX_DRAWN_SERIES
    from .vectorised import block_forecasts, make_block

    series = list(dict.fromkeys(table["series"]))
    note = ""
    if len(series) > MAX_DRAWN_SERIES:
        scores = series_scores(table)
        others = [m for m in scores.columns if m != "naive"] or list(scores.columns)
        order = list(scores[others].median(axis=1).reindex(series).sort_values(kind="stable").index)
        half = UNIVERSE_DRAWN // 2
        best, worst = order[:half], order[-half:][::-1]
        series = best + [s for s in worst if s not in best]
        note = (f"{len(order)} series: drawn are the {half} where the models' wql is lowest against naive "
                f"({', '.join(map(str, best))}) and the {half} where it is highest ({', '.join(map(str, worst))}), "
                f"over their last {RECENT_TARGETS} test origins")
    model = next(iter(models.values()))
    block = make_block({s: frames[s] for s in series}, cutoff, model.window_size, model.horizon)
    if note:
        keep = np.r_[block.code[1:] != block.code[:-1], True]  # each series' last origin, then the ones before
        last = np.flatnonzero(keep)
        first = np.maximum(np.r_[0, last[:-1] + 1], last - RECENT_TARGETS + 1)
        rows = np.concatenate([np.arange(a, b + 1) for a, b in zip(first, last)])
        block.code, block.row = block.code[rows], block.row[rows]
    frame = forecast_table(block, [block_forecasts(m, n, block) for n, m in models.items()]).to_pandas()
    return frame, series, note


def series_scores(table: pd.DataFrame) -> pd.DataFrame:
    """wql_vs_naive per series and model: the geometric mean over horizons (series × models)."""
    ratio = table[["series", "model", "wql_vs_naive"]].copy()
    ratio = ratio[np.isfinite(ratio["wql_vs_naive"]) & (ratio["wql_vs_naive"] > 0)]
    ratio["log"] = np.log(ratio["wql_vs_naive"])
    return np.exp(ratio.pivot_table(index="series", columns="model", values="log", sort=False))


def histogram_html(table: pd.DataFrame) -> str:
    """A plotly chart for report.html: the distribution over series of each model's wql_vs_naive."""
    import plotly.graph_objects as go

    scores = series_scores(table)
    fig = go.Figure()
    for model in [m for m in scores.columns if m != "naive"]:
        fig.add_trace(go.Histogram(x=[round(float(v), 6) for v in scores[model].dropna()], name=model,
                                   opacity=0.6, nbinsx=60))
    fig.add_vline(x=1.0, line_dash="dot")
    fig.update_layout(barmode="overlay", template="plotly_white", height=380,
                      title={"text": f"wql_vs_naive per series ({len(scores)} series; geometric mean over horizons)"},
                      xaxis={"title": {"text": "wql ÷ naive's wql (below 1: better than naive)"}},
                      yaxis={"title": {"text": "series"}}, margin={"l": 50, "r": 20, "t": 60, "b": 40})
    return ("<h2>Across the universe</h2>" + '<p class="note">How each model scores against naive over every series '
            "(one count per series). metrics.csv has every series; the charts below show the best and the worst."
            "</p>" + fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))


def plot_universe(table: pd.DataFrame, drawn: pd.DataFrame, path: Path, recent: int = 120) -> None:
    """plot.png for a universe: a histogram of wql_vs_naive over series per model (top row), then the 1-day-ahead
    medians of every model beside the actual closes for the drawn series (the best and the worst)."""
    from .plots import _pyplot, _save

    plt = _pyplot()
    scores = series_scores(table)
    models = [m for m in scores.columns if m != "naive"] or list(scores.columns)
    series = list(dict.fromkeys(drawn["series"]))
    ncols = max(len(models), 2)
    rows = 1 + math.ceil(len(series) / ncols)
    fig, axes = plt.subplots(rows, ncols, figsize=(4.6 * ncols, 3.2 * rows), squeeze=False)
    for ax, model in zip(axes[0], models):
        values = scores[model].dropna()
        ax.hist(values, bins=40, color="tab:blue", alpha=0.8)
        ax.axvline(1.0, color="black", lw=0.8, ls=":")
        ax.set_title(f"{model}: wql_vs_naive over {len(values)} series\n(median {values.median():.4f})", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[0][len(models):]:
        ax.axis("off")
    h = int(drawn["horizon"].min())
    flat = [ax for row in axes[1:] for ax in row]
    for k, (ax, s) in enumerate(zip(flat, series)):
        g = drawn[(drawn["series"] == s) & (drawn["horizon"] == h)]
        actual = g.drop_duplicates("target_date").tail(recent)
        ax.plot(pd.to_datetime(actual["target_date"]), actual["actual"], color="black", lw=1.2, label="actual")
        for model in dict.fromkeys(g["model"]):
            m = g[g["model"] == model].tail(recent)
            ax.plot(pd.to_datetime(m["target_date"]), m["predicted"], lw=0.9, label=model)
        score = scores.loc[s].drop("naive", errors="ignore").median() if s in scores.index else float("nan")
        rank = "best" if k < len(series) // 2 else "worst"
        ax.set_title(f"{s} ({rank}): {h}-day-ahead, median wql_vs_naive {score:.4f}", fontsize=9)
        ax.legend(fontsize=6)
        ax.tick_params(axis="x", labelsize=7, rotation=30)
        ax.grid(alpha=0.3)
    for ax in flat[len(series):]:
        ax.axis("off")
    fig.tight_layout()
    _save(fig, path)


# --------------------------------------------------------------------------------------------------
# The output folder


class _Tee:
    """Sends each block to several sinks (the file, and memory for a caller who wants the frame)."""

    def __init__(self, *sinks):
        self.sinks = [s for s in sinks if s is not None]

    def write(self, table) -> None:
        for sink in self.sinks:
            sink.write(table)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def universe_notes(frames: dict, data) -> list[str]:
    """report.html's lines under the title for many series: counts and ranges instead of one span per series."""
    lengths = np.array([len(f) for f in frames.values()])
    first = min(f.index[0] for f in frames.values())
    last = max(f.index[-1] for f in frames.values())
    return [f"Data: {len(frames)} series, {first:%Y-%m-%d} .. {last:%Y-%m-%d}, {lengths.min()}–{lengths.max()} rows "
            f"each ({lengths.sum():,} in all).", f"Window {data.window_size} days, horizon {data.horizon}."]


def run_universe(frames: dict, factories: dict, data, *, test_size: float, test_start, out: Path | None,
                 fmt: str = "csv", progress: bool = False, say=print, keep_forecasts: bool = True,
                 notes: Callable | None = None, show=()):
    """``run_evaluate``'s backtest, scores and output folder through the array path: (metrics, forecasts or None,
    leaderboard). ``show``: the models report.html's forecast charts draw at first (``--show``). An existing
    output folder is replaced only when its manifest lists everything in it.

    With ``out`` the forecasts stream into out/forecasts.csv (or .parquet) block by block inside the folder's
    temporary copy, so memory stays flat; ``keep_forecasts`` also keeps them in memory and returns them.
    ``notes(table)``: report.html's lines for a few series (a universe gets counts instead).
    """
    import os

    from .data import write_csv_atomic
    from .backtest import format_leaderboard, format_table, plot_forecasts
    from .outputs import atomic_folder
    from .plots import MAX_DRAWN_SERIES
    from .report import write_report

    name = forecasts_name(fmt)
    options = {"test_size": test_size, "test_start": test_start, "progress": progress, "log": say}
    if out is None:
        memory = MemorySink()
        table, board, *_ = evaluate_universe(frames, factories, sink=memory, **options)
        return table, memory.frame(), board
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and os.environ.get("RANK", "0") != "0":
        table, board, *_ = evaluate_universe(frames, factories, sink=_Tee(), **options)  # rank 0 writes
        return table, None, board
    replaced = out.exists() and any(out.iterdir())
    memory = MemorySink() if keep_forecasts else None
    with atomic_folder(out, flag="--output_dir", lock=True) as tmp:
        sink = _Tee(FileSink(tmp / name, fmt), memory)
        try:
            table, board, _, models, cutoff = evaluate_universe(frames, factories, sink=sink, where=str(out),
                                                                **options)
        finally:
            sink.close()
        drawn, series, note = drawn_forecasts(frames, models, cutoff, table)
        if not note:
            plot_forecasts(drawn, tmp / "plot.png")
            write_report(tmp / "report.html", table, drawn, leaderboard=board,
                         notes=notes(table) if notes else universe_notes(frames, data), show=show)
        else:
            plot_universe(table, drawn, tmp / "plot.png")
            write_report(tmp / "report.html", table[table["series"].isin(series)], drawn, leaderboard=board,
                         notes=universe_notes(frames, data) + [note + "; the metrics table below shows the drawn "
                                                               "series (metrics.csv has them all)."],
                         sections=[histogram_html(table)], show=show)
        write_csv_atomic(table, tmp / "metrics.csv", index=False)
        write_csv_atomic(board, tmp / "leaderboard.csv", index=False)
    if table["series"].nunique() <= MAX_DRAWN_SERIES:
        say(format_table(table))
    else:
        say(f"metrics of {table['series'].nunique()} series in {out / 'metrics.csv'} ({len(table):,} rows)")
    say("")
    say(f"leaderboard over {table['series'].nunique()} series and {table['horizon'].nunique()} horizons "
        "(geometric means; Diebold–Mariano against naive at p < 0.05):")
    say(format_leaderboard(board))
    say(f"wrote {out / 'metrics.csv'}, {out / 'leaderboard.csv'}, {out / name}, {out / 'plot.png'}, "
        f"{out / 'report.html'}" + (f" (replacing the previous results in {out})" if replaced else ""))
    return table, memory.frame() if memory is not None else None, board
