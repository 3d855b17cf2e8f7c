"""From frames to forecasts: the one place that turns user data into checked series and a model's forecast into
the table ``predict_df``, ``Forecaster.forecast``, ``stockllm predict`` and ``stockllm forecast`` give.

It owns the minimum history a forecast needs (``min_history``: the window plus the indicators' warm-up) for every
path, and reads the input forms users bring from Nixtla (``unique_id``, ``ds``) and Chronos (``item_id``,
``timestamp``): one OHLCV frame, a long frame with a ticker column, a dict of frames, or CSV paths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..calendars import calendar_for, check_calendar, next_sessions
from ..errors import StockLLMError
from ..limits import limited
from ..quantiles import check_quantiles, column, missing_levels, select
from ..series import id_column


def min_history(model) -> tuple[int, str]:
    """(rows, why) a forecast after a series' last row needs: the window, plus the rows the model's indicators need
    to warm up before it."""
    from ..indicators import warmup_rows

    warmup = warmup_rows(model.data.features)
    why = f"window {model.window_size}" + (f" + {warmup} rows for the indicators in features to warm up"
                                           if warmup else "")
    return model.window_size + warmup, why


def as_frames(data, min_rows: int = 1, reason: str = "") -> dict[str, pd.DataFrame]:
    """Any accepted form of input → {ticker: checked OHLCV frame}, in input order.

    ``data``: a CSV path or bundled sample name ("nasdaq"), a folder, a glob, a long CSV with a ticker column, a
    list of them, one OHLCV frame (DatetimeIndex or a Date/ds/timestamp column), a long frame with a ticker /
    unique_id / item_id column, or a dict {ticker: frame}. A single frame is named by ``attrs["source"]`` (set by
    load_ohlcv and download_ohlcv).
    """
    from ..data import ohlcv_from_frame
    from ..fastload import read_clean_frame
    from ..series import load_series

    if isinstance(data, (str, Path)):
        data = [data]
    if isinstance(data, Mapping):
        return {str(k): ohlcv_from_frame(v, str(k), min_rows=min_rows, min_rows_reason=reason)
                for k, v in data.items()}
    if isinstance(data, pd.DataFrame):
        frame = data.reset_index() if _id_column(data.index.names) else data
        id_col = _id_column(frame.columns)
        if id_col is None:
            name = str(data.attrs.get("source") or "series")
            return {name: ohlcv_from_frame(data, name, min_rows=min_rows, min_rows_reason=reason)}
        fast = read_clean_frame(frame, id_col, min_rows=min_rows, min_rows_reason=reason)  # thousands of tickers
        if fast is not None:
            return fast
        return {str(k): ohlcv_from_frame(g.drop(columns=[id_col]), str(k), min_rows=min_rows, min_rows_reason=reason)
                for k, g in frame.groupby(id_col, sort=False)}
    if isinstance(data, Sequence) and data and all(isinstance(p, (str, Path)) for p in data):
        return load_series(data, min_rows=min_rows, min_rows_reason=reason)
    raise StockLLMError(f"cannot read {type(data).__name__} as daily bars: pass a CSV path, a list of paths, a "
                        "DataFrame (one series, or long with a ticker/unique_id/item_id column) or a dict of frames")


def _id_column(names) -> str | None:
    """The series-id column among a frame's column (or index) names, as ``series.id_column`` finds it in a CSV."""
    names = list(names)
    position = id_column(["" if n is None else str(n) for n in names])
    return None if position is None else names[position]


def forecast_table(model, ticker: str, frame: pd.DataFrame, levels: Sequence[float],
                   calendar: str | None) -> pd.DataFrame:
    """One series' forecast after its last row: ticker, date, horizon, predicted_close, q..., last_close,
    last_date, model, limited (True where a daily price limit clipped the quantiles; dates as Timestamps: the
    sessions of ``calendar``, or of the ticker's exchange if None).
    ``levels`` must be some of ``model.quantiles``; the frame must hold ``min_history(model)`` rows."""
    return forecast_tables(model, [(ticker, frame)], levels, calendar)


def forecast_tables(model, series: Sequence[tuple[str, pd.DataFrame]], levels: Sequence[float],
                    calendar: str | None) -> pd.DataFrame:
    """``forecast_table`` of every (ticker, frame) pair, stacked in order, built at once from arrays.

    The model forecasts series by series; the sessions are looked up once per (calendar, last date) and the
    frame is made once at the end, so thousands of tickers cost little beyond the model itself.
    """
    rows, why = min_history(model)
    horizon = model.horizon
    points, quantiles, closes, lasts, dates, flags, sessions = [], [], [], [], [], [], {}
    for ticker, frame in series:
        if len(frame) < rows:
            raise StockLLMError(f"{frame.attrs.get('source') or ticker or 'the data'} has {len(frame)} rows but the "
                                f"model needs {rows} ({why}): pass a longer history")
        point, q = model.predict_distribution(frame, np.array([len(frame) - 1]))
        code = calendar or calendar_for(ticker)
        key = (code, frame.index[-1], ticker if code is None else "")  # unknown calendars warn per ticker
        if key not in sessions:
            sessions[key] = next_sessions(frame.index[-1], horizon, code, label=ticker)
        points.append(point[0])
        quantiles.append(select(q[0], model.quantiles, levels))  # [H, len(levels)], log-returns
        flags.append(limited(q, model.price_limit(frame))[0])  # a price limit cut some of the distribution
        closes.append(float(frame["Close"].iloc[-1]))
        lasts.append(frame.index[-1])
        dates.append(sessions[key])
    close = np.repeat(np.asarray(closes, dtype=np.float64), horizon)
    table = pd.DataFrame({"ticker": np.repeat(np.asarray([t for t, _ in series], dtype=object), horizon),
                          "date": pd.DatetimeIndex(np.concatenate(dates) if dates else [], name=None),
                          "horizon": np.tile(np.arange(1, horizon + 1), len(series)),
                          "predicted_close": close * np.exp(np.concatenate(points) if points else [])})
    q_prices = close[:, None] * np.exp(np.concatenate(quantiles) if quantiles else np.zeros((0, len(levels))))
    table = pd.concat([table, pd.DataFrame(q_prices, columns=[column(level) for level in levels])], axis=1)
    table["last_close"] = close
    table["last_date"] = pd.DatetimeIndex(np.repeat(np.asarray(lasts, dtype="datetime64[ns]"), horizon))
    table["model"] = model.kind
    table["limited"] = np.concatenate(flags) if flags else np.zeros(0, dtype=bool)
    return table


def check_closes_only(model, frames: dict) -> None:
    """Refuse series of closes only (no Open, High, Low, Volume) for a model that reads all five columns."""
    from .registry import REGISTRY

    thin = next((name for name, frame in frames.items() if frame.attrs.get("close_only")), None)
    spec = REGISTRY.get(model.kind.split("+")[0])
    if thin is not None and spec is not None and not spec.closes_only:
        fit = ",".join(name for name, s in REGISTRY.items() if s.closes_only)
        raise StockLLMError(f"{thin} has closes only (no Open, High, Low, Volume), which the {model.kind} model "
                            f"needs: use a model that reads closes only ({fit}), or send all five")


def predict_df(model, df, quantiles: Sequence[float] | None = None, calendar: str | None = None,
               price_limits: str | float = "auto") -> pd.DataFrame:
    """Forecast the next H sessions after the last row of every series in ``df``; see Forecaster.predict_df."""

    levels = model.quantiles if quantiles is None else check_quantiles(quantiles, "quantiles")
    if model.any_levels and missing_levels(model.quantiles, levels):
        # naive and drift have no parameters: the same model at other levels is simply another instance.
        model = type(model)(dataclasses.replace(model.data, quantiles=tuple(levels)))
    model.check_levels(levels)
    if calendar is not None:
        calendar = check_calendar(calendar)
    rows, why = min_history(model)
    frames = as_frames(df, rows, why)
    check_closes_only(model, frames)
    model = model.limited_to(price_limits)
    return forecast_tables(model, list(frames.items()), levels, calendar)
