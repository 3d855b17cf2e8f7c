"""The Python API: ``stockllm.load``, ``Forecaster.predict_df`` and ``stockllm.evaluate`` (see README "Python").

Frames go in the habits users bring from Nixtla (``unique_id``, ``ds``) and Chronos (``item_id``,
``timestamp``): one OHLCV frame, a long frame with a ticker column, or a dict of frames. Forecasts come back as
one long frame, one row per ticker and horizon.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .calendars import calendar_for, check_calendar, next_sessions
from .config import DataConfig, LoRAConfig, MLPConfig
from .errors import StockLLMError
from .quantiles import check_quantiles, column, missing_levels, select
from .series import ID_COLUMNS



def load(checkpoint, **overrides):
    """Load a checkpoint folder written by ``stockllm train`` (or ``Forecaster.save``) and return its Forecaster.

    ``overrides`` (LLM only): ``model_path`` (another copy of the same base model), ``device``
    ("auto", "cpu", "cuda", "mps"), ``trust_remote_code``; a checkpoint never turns remote code on by itself.
    """
    from .models import load_forecaster

    return load_forecaster(checkpoint, **overrides)


def as_frames(data, min_rows: int = 1, reason: str = "") -> dict[str, pd.DataFrame]:
    """Any accepted form of input → {ticker: checked OHLCV frame}, in input order.

    ``data``: a CSV path or bundled sample name ("nasdaq"), a folder, a glob, a long CSV with a ticker column, a
    list of them, one OHLCV frame (DatetimeIndex or a
    Date/ds/timestamp column), a long frame with a ticker / unique_id / item_id column, or a dict
    {ticker: frame}. A single frame is named by ``attrs["source"]`` (set by load_ohlcv and download_ohlcv).
    """
    from .data import ohlcv_from_frame
    from .series import load_series

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
        return {str(k): ohlcv_from_frame(g.drop(columns=[id_col]), str(k), min_rows=min_rows, min_rows_reason=reason)
                for k, g in frame.groupby(id_col, sort=False)}
    if isinstance(data, Sequence) and data and all(isinstance(p, (str, Path)) for p in data):
        return load_series(data, min_rows=min_rows, min_rows_reason=reason)
    raise StockLLMError(f"cannot read {type(data).__name__} as daily bars: pass a CSV path, a list of paths, a "
                        "DataFrame (one series, or long with a ticker/unique_id/item_id column) or a dict of frames")


def _id_column(names) -> str | None:
    lowered = {str(n).lower(): n for n in names if n is not None}
    return next((lowered[c] for c in ID_COLUMNS if c in lowered), None)


def forecast_table(model, ticker: str, frame: pd.DataFrame, levels: Sequence[float],
                   calendar: str | None) -> pd.DataFrame:
    """One series' forecast after its last row: ticker, date, horizon, predicted_close, q..., last_close,
    last_date, model (dates as Timestamps: the sessions of ``calendar``, or of the ticker's exchange if None).
    ``levels`` must be some of ``model.quantiles``."""
    point, q = model.predict_distribution(frame, np.array([len(frame) - 1]))
    last_close = float(frame["Close"].iloc[-1])
    dates = next_sessions(frame.index[-1], model.horizon, calendar or calendar_for(ticker), label=ticker)
    table = pd.DataFrame({"ticker": ticker, "date": dates, "horizon": np.arange(1, model.horizon + 1),
                          "predicted_close": last_close * np.exp(point[0])})
    q_prices = last_close * np.exp(select(q[0], model.quantiles, levels))  # [H, len(levels)]
    for j, level in enumerate(levels):
        table[column(level)] = q_prices[:, j]
    table["last_close"] = last_close
    table["last_date"] = frame.index[-1]
    table["model"] = model.kind
    return table


def predict_df(model, df, quantiles: Sequence[float] | None = None, calendar: str | None = None) -> pd.DataFrame:
    """Forecast the next H sessions after the last row of every series in ``df``; see Forecaster.predict_df."""
    levels = model.quantiles if quantiles is None else check_quantiles(quantiles, "quantiles")
    if not model.needs_fit and missing_levels(model.quantiles, levels):
        # naive and drift have no parameters: the same model at other levels is simply another instance.
        model = type(model)(dataclasses.replace(model.data, quantiles=tuple(levels)))
    model.check_levels(levels)
    if calendar is not None:
        calendar = check_calendar(calendar)
    from .indicators import warmup_rows

    warmup = warmup_rows(model.data.features)  # as `stockllm predict` asks: indicators need rows before the window
    frames = as_frames(df, model.window_size + warmup, f"window {model.window_size}"
                       + (f" + {warmup} rows for the indicators in features to warm up" if warmup else ""))
    return pd.concat([forecast_table(model, ticker, frame, levels, calendar) for ticker, frame in frames.items()],
                     ignore_index=True)


@dataclasses.dataclass
class Evaluation:
    """What ``stockllm.evaluate`` returns.

    metrics: one row per series, model and horizon (mae, rmse, mape, mae_vs_naive, dir_acc, dm_pvalue, ...).
    forecasts: one row per series, model, origin and horizon (actual and predicted closes, price scale).
    leaderboard: one row per model across series, when the evaluation module provides it; otherwise None.
    """

    metrics: pd.DataFrame
    forecasts: pd.DataFrame
    leaderboard: pd.DataFrame | None = None


def evaluate(data=None, models: str | Sequence[str] = ("naive", "drift", "fhs", "mlp"), *, test_size: float = 0.2,
             window_size: int = DataConfig.window_size, horizon: int = DataConfig.horizon,
             features: str | Sequence[str] = (), progress: bool = False, **training) -> Evaluation:
    """Backtest, as ``stockllm evaluate`` runs it: one cutoff date for all series (the first date of the last
    ``test_size`` share of their dates), fit on the dates before it, forecast every origin on or after it, score
    beside naive (always included).

    data: anything :func:`as_frames` reads; None means the bundled NASDAQ sample. models: names from
    ``stockllm.models.MODEL_NAMES`` (a list or "naive,mlp"). features: technical indicators for mlp, lstm and lora
    ("rsi,macd" or a list; see
    ``stockllm.indicators.INDICATORS``). training: MLPConfig / LoRAConfig fields (epochs=5, model_path=..., ...),
    each given to the models whose config has it. Returns an :class:`Evaluation`.
    """
    from .evaluate import evaluate as run_backtest
    from .models import MODEL_NAMES, WINDOW_NETS, model_class

    names = [m.strip() for m in (models.split(",") if isinstance(models, str) else models) if m.strip()]
    unknown = [m for m in names if m not in MODEL_NAMES]
    if unknown:
        raise StockLLMError(f"unknown model(s) {unknown}: choose from {', '.join(MODEL_NAMES)}")
    if "naive" not in names:
        names.insert(0, "naive")
    fields = {cls: {f.name for f in dataclasses.fields(cls)} for cls in (MLPConfig, LoRAConfig)}
    stray = sorted(set(training) - fields[MLPConfig] - fields[LoRAConfig])
    if stray:
        raise TypeError(f"evaluate() got unknown training settings {stray}: use MLPConfig or LoRAConfig fields")
    config = DataConfig(window_size=window_size, horizon=horizon, features=features)
    frames = as_frames("nasdaq" if data is None else data, config.min_rows * 3,
                       f"window {window_size} + horizon {horizon}, for both the training and test part")
    factories = {}
    for name in names:
        cls = model_class(name)
        cfg_cls = MLPConfig if name in WINDOW_NETS else {"lora": LoRAConfig}.get(name)
        if cfg_cls is None:
            factories[name] = lambda cls=cls: cls(config)
        else:
            cfg = cfg_cls(**{k: v for k, v in training.items() if k in fields[cfg_cls]})
            factories[name] = lambda cls=cls, cfg=cfg: cls(config, cfg)
    result = run_backtest(frames, factories, test_size=test_size, progress=progress,
                          log=print if progress else (lambda *_: None))
    metrics, forecasts = result[0], result[1]
    # importlib: `from . import evaluate` would give this function back (see stockllm/__init__.py).
    board = getattr(importlib.import_module(".evaluate", __package__), "leaderboard", None)
    return Evaluation(metrics, forecasts, board(metrics, forecasts) if callable(board) else None)
