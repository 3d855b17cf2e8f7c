"""``stockllm predict`` and ``stockllm forecast`` as one library call: the model, the history, the forecast table
and the files.

``run_predict(options, say)`` is what the CLI runs and what ``stockllm.predict(...)`` runs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import StockLLMError
from .options import PredictOptions, calibration, check_close_only, refuse

# Columns of predictions.csv before the quantile columns.
COLUMNS = ["date", "horizon", "predicted_close", "last_close", "model", "series", "last_date", "limited"]


def _check_png(path: str) -> None:
    """Refuse a --plot path that cannot be written, before any model loads."""
    from .outputs import file_target

    target = file_target(path, "--plot")
    if target.suffix.lower() != ".png":
        raise StockLLMError(f"--plot {path}: name a .png file (e.g. forecast.png)")
    if target.is_dir() or not target.parent.is_dir():
        raise StockLLMError(f"--plot {path}: {'is a folder' if target.is_dir() else 'its folder does not exist'}; "
                            "name a .png file in an existing folder")


def _checkpoint_and_base(opts: PredictOptions) -> tuple[str | None, str | None]:
    """(checkpoint folder, base-model override): ``model_path`` names the checkpoint when none is given."""
    from .checkpoint import META_FILE

    if not opts.model_path:
        return opts.checkpoint, None
    if opts.checkpoint is None and not opts.model:
        if not (Path(opts.model_path) / META_FILE).is_file():
            raise StockLLMError(f"--model_path {opts.model_path} is not a stockllm checkpoint (no {META_FILE}): "
                                "pass the --save_dir of `stockllm train` (for the LLM, --checkpoint DIR "
                                "--model_path BASE)")
        return opts.model_path, None
    return opts.checkpoint, opts.model_path


def _check_model_options(opts: PredictOptions, checkpoint: str | None, base: str | None) -> None:
    """Refuse the options the chosen model does not read."""
    from .checkpoint import read_meta

    given = {"model_path": opts.model_path, "device": opts.device, "trust_remote_code": opts.trust_remote_code,
             "window_size": opts.data.window_size, "horizon": opts.data.horizon}
    if opts.model:
        refuse(given, ("model_path", "device", "trust_remote_code"), f"applies to LLM checkpoints only, not to "
               f"--model {opts.model}: drop it")
    elif checkpoint:
        kind = read_meta(checkpoint).get("kind", "?")
        refuse(given, ("window_size", "horizon"), f"applies to --model naive|drift only; the {kind} checkpoint "
               f"{checkpoint} keeps the window and horizon it was trained with: drop it")
        if kind != "lora":
            why = f"applies to LLM checkpoints only, and {checkpoint} holds a {kind} model: drop it"
            if base:
                raise StockLLMError(f"--model_path {base} {why}")
            refuse(given, ("device", "trust_remote_code"), why)
    else:
        raise StockLLMError("nothing to predict with: pass --checkpoint DIR (from stockllm train) or --model naive")


def _where_from(opts: PredictOptions) -> tuple[str, str | None, str | None]:
    """(source, adjust, calendar) of the run, checked before anything loads."""
    source = opts.source or "yahoo"
    adjust, calendar = opts.adjust, None
    if not opts.ticker:
        refuse({"source": opts.source, "adjust": opts.adjust}, ("source", "adjust"), "applies to --ticker downloads "
               "only; --data files are used as they are: drop it")
        if opts.period:
            raise StockLLMError("--period applies to --ticker downloads only; --data files are used as they are: "
                                "drop it")
    else:
        from .sources import check_adjust, default_calendar

        adjust = check_adjust(source, opts.adjust)
        calendar = default_calendar(source)
    if opts.calendar:
        from .calendars import check_calendar

        calendar = check_calendar(opts.calendar)
    return source, adjust, calendar


def _model(opts: PredictOptions, checkpoint: str | None, base: str | None):
    """The Forecaster: a baseline built now, or the checkpoint loaded."""
    from .models import load_forecaster, model_class

    if opts.model:
        return model_class(opts.model)(opts.data.config())
    overrides = {"model_path": base, "device": opts.device, "trust_remote_code": opts.trust_remote_code}
    return load_forecaster(checkpoint, **{k: v for k, v in overrides.items() if v is not None})


def download_frames(tickers, period: str, say, source: str = "yahoo", adjust: str | None = None) -> dict:
    """{ticker: checked OHLCV frame} of the latest daily history; all are fetched before any is used, so one bad
    ticker costs nothing else."""
    from .sources import NAMES, download, series_name

    frames = {}
    for ticker in tickers:
        name = series_name(ticker, source)  # sh.600519 -> 600519.SS, as the rows will name it
        say(f"downloading {name} ({period} of daily bars from {NAMES[source]})")
        frames[name] = download(ticker, source, adjust=adjust, period=period)
    return frames


def run_predict(opts: PredictOptions, say=lambda *_: None) -> pd.DataFrame:
    """Forecast the next H sessions after the last row of every series (files, frames or downloaded tickers) and
    return the table (one row per series and horizon: date, horizon, predicted_close, last_close, model, series,
    last_date, limited and one column per level); ``opts.output``, ``plot`` and ``ledger`` write it too."""
    from .models.pipeline import min_history
    from .outputs import check_not_inputs, file_target
    from .series import data_files

    opts.data.csv_options(downloads=bool(opts.ticker))  # a bad columns, decimal or date format answers at once
    cal = calibration(opts.calibrate, opts.calibration_step)
    if opts.output is not None:
        file_target(opts.output, "--output")  # before the forecast: a bad path must not cost a model load
    if opts.plot:
        _check_png(opts.plot)
    check_not_inputs([*data_files(opts.data.data), ("--checkpoint", opts.checkpoint),
                      ("--model_path", opts.model_path), ("--ledger", opts.ledger)],
                     files=[("--output", opts.output), ("--plot", opts.plot), ("--ledger", opts.ledger)])
    checkpoint, base = _checkpoint_and_base(opts)
    _check_model_options(opts, checkpoint, base)
    source, adjust, calendar = _where_from(opts)
    if opts.ledger:
        from .ledger import check_ledger

        check_ledger(opts.ledger)
    model = _model(opts, checkpoint, base)
    levels = opts.data.quantiles or model.quantiles
    model.check_levels(levels)
    if opts.ticker:
        period = opts.period or f"{max(2, math.ceil(min_history(model)[0] / 200) + 1)}y"
        frames = download_frames(opts.ticker, period, say, source, adjust)
    else:
        frames = opts.data.load(*min_history(model))
        check_close_only(frames, [model.kind])
    if cal[0]:
        from .calibration import calibrated

        model = calibrated(model, *cal)
    model = model.limited_to(opts.price_limits)  # A-shares cannot close beyond their daily limit
    result = _forecast(model, frames, levels, calendar)
    from .training import report_resources

    report_resources(model, say)
    _say_table(result, levels, model.kind, say)
    _write(opts, result, frames, levels, checkpoint, (source, adjust), say)
    return result


def _forecast(model, frames: dict, levels, calendar) -> pd.DataFrame:
    """Every series' forecast (``Forecaster.forecast``'s columns after a ``series`` column), built in one table."""
    from .models.pipeline import forecast_tables

    model.check_levels(levels)
    table = forecast_tables(model, [(str(f.attrs.get("source", "")), f) for f in frames.values()], levels, calendar)
    table["ticker"] = np.repeat(np.asarray(list(frames), dtype=object), model.horizon)
    table["date"] = table["date"].dt.strftime("%Y-%m-%d")
    table["last_date"] = table["last_date"].dt.strftime("%Y-%m-%d")
    first = ["ticker", "date", "horizon", "predicted_close", "last_close", "last_date", "model"]
    return table[first + [c for c in table.columns if c not in first]].rename(columns={"ticker": "series"})


def _say_table(result: pd.DataFrame, levels, kind: str, say) -> None:
    """Each series' last close, the model and its forecasts, with the 80% interval (or the widest) when there is
    one; a row clipped to a daily price limit is marked."""
    from .quantiles import central_intervals, column

    intervals = central_intervals(levels)
    pct, lo, hi = next((i for i in intervals if i[0] == 80), intervals[0] if intervals else (None, None, None))
    cols = ["series", "last_close", "last_date", "date", "horizon", "predicted_close", "limited"]
    band = [column(lo), column(hi)] if pct else []
    current = None
    for row in result[cols + band].itertuples(index=False, name=None):  # plain tuples: thousands of series
        series, last_close, last_date, date, horizon, point, clipped = row[:7]
        if series != current:
            current = series
            say(f"{series}: last close {last_close:.2f} on {last_date}; model {kind}"
                + (f"; median close and {pct}% interval" if pct else "; median close"))
        interval = f"  {pct}% [{row[7]:.2f}, {row[8]:.2f}]" if pct else ""
        say(f"  {date}  +{horizon}d  {point:.2f}{interval}" + ("  (price limit)" if clipped else ""))


def _write(opts: PredictOptions, result: pd.DataFrame, frames: dict, levels, checkpoint, origin, say) -> None:
    """predictions.csv (``output``), the plot and the ledger rows, as the options ask; ``origin`` is the
    (source, adjust) of downloaded closes, recorded in the ledger."""
    from .data import write_csv_atomic
    from .outputs import check_finite
    from .quantiles import column

    cols = COLUMNS + [column(level) for level in levels]
    if opts.output is not None:
        check_finite(result, opts.output)
    if opts.plot:
        from .plots import plot_fan

        plot_fan(frames, result, opts.plot)  # first: the step more likely to fail, so no CSV is left alone
    if opts.output is not None:
        write_csv_atomic(result[cols], opts.output, index=False)
        say(f"wrote {opts.output}" + (f" and {opts.plot}" if opts.plot else ""))
    elif opts.plot:
        say(f"wrote {opts.plot}")
    if opts.ledger:
        from .ledger import append_forecasts, checkpoint_id

        n = append_forecasts(opts.ledger, result.rename(columns={"series": "ticker"}),
                             checkpoint=checkpoint_id(checkpoint) if not opts.model else "",
                             source=origin[0] if opts.ticker else "data",
                             adjust=(origin[1] or "") if opts.ticker else "")
        say(f"appended {n} rows to the ledger {opts.ledger}")
