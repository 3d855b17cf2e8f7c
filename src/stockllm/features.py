"""Scale-free windows and targets.

Inputs for the window ending at origin ``t`` (the last observed day) are, for each of its days d:
``log(O_d/C_t), log(H_d/C_t), log(L_d/C_t), log(C_d/C_t)`` and ``log1p(V_d) - log1p(mean V over the window)``.
With ``features`` (technical indicators, see ``indicators.py``) each day also carries its indicator values.
Targets are log-returns ``y[h] = log(C[t+h] / C[t])`` for h = 1..H; ``to_prices`` inverts them exactly.
Nothing here is fitted, so there is nothing that could see the test part.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .indicators import indicator_values

N_FEATURES = 5  # OHLCV inputs per day, before indicators


def _columns(frame: pd.DataFrame) -> tuple[np.ndarray, ...]:
    return tuple(frame[c].to_numpy(dtype=np.float64) for c in ("Open", "High", "Low", "Close", "Volume"))


def origins_with_targets(n_rows: int, window: int, horizon: int, start: int = 0) -> np.ndarray:
    """Row indices t (>= start) that have a full window behind them and all H targets inside the frame."""
    first = max(window - 1, start)
    return np.arange(first, n_rows - horizon, dtype=np.int64)


def union_dates(frames) -> pd.DatetimeIndex:
    """The sorted union of the dates of several frames (or DatetimeIndexes): one calendar for several series."""
    index = pd.DatetimeIndex([])
    for frame in frames:
        index = index.union(frame if isinstance(frame, pd.DatetimeIndex) else frame.index)
    return index.sort_values()


def date_split(frames, window: int, horizon: int, val_size: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split several series into (train, validation) origins at ONE date, per frame.

    The validation start is the first date of the last ``val_size`` share of the union of the origin dates (days
    with a full window and all H targets), so on one series this is its last ``val_size`` share of windows.
    Training origins have all H targets before it; validation origins lie on or after it. So no training
    target date reaches the validation period of any series, whatever dates each series covers.
    """
    frames = list(frames)
    all_origins = [origins_with_targets(len(f), window, horizon) for f in frames]
    dates = union_dates(f.index[o] for f, o in zip(frames, all_origins))
    n_val = int(round(len(dates) * val_size))
    if n_val == 0 or len(dates) == 0:
        return [(o, o[:0]) for o in all_origins]
    start = dates[len(dates) - n_val]
    out = []
    for frame, origins in zip(frames, all_origins):
        index = frame.index
        target_last = index[np.minimum(origins + horizon, len(index) - 1)]
        out.append((origins[np.asarray(target_last < start)], origins[np.asarray(index[origins] >= start)]))
    return out


def before(frame: pd.DataFrame, date: pd.Timestamp) -> pd.DataFrame:
    """The rows strictly before ``date`` (attrs kept): what a model fitted up to that date may see."""
    part = frame.loc[frame.index < date]
    part.attrs = dict(frame.attrs)
    return part


def n_inputs(features=()) -> int:
    """Inputs per day: the 5 OHLCV values plus one per indicator."""
    return N_FEATURES + len(features)


def window_inputs(frame: pd.DataFrame, window: int, origins: np.ndarray, features=()) -> np.ndarray:
    """Scale-free inputs, float32 array [len(origins), window, 5 + len(features)], for windows ending at each
    origin row; indicator values (causal, computed over the whole frame) follow the 5 OHLCV inputs."""
    origins = np.asarray(origins, dtype=np.int64)
    if len(origins) and (origins.min() < window - 1 or origins.max() >= len(frame)):
        raise ValueError(f"origins must lie in [{window - 1}, {len(frame) - 1}]")
    o, h, l, c, v = _columns(frame)
    idx = origins[:, None] + np.arange(-window + 1, 1)[None, :]  # [n, W]
    last = c[origins][:, None]
    logv = np.log1p(np.maximum(v[idx], 0.0))
    vol = logv - np.log1p(np.maximum(v[idx], 0.0).mean(axis=1, keepdims=True))
    x = np.stack([np.log(o[idx] / last), np.log(h[idx] / last), np.log(l[idx] / last), np.log(c[idx] / last), vol], -1)
    if len(features):
        x = np.concatenate([x, indicator_values(frame, features)[idx]], axis=-1)
    return x.astype(np.float32)


def targets(frame: pd.DataFrame, horizon: int, origins: np.ndarray) -> np.ndarray:
    """Log-returns float64 [len(origins), H]: log(C[t+h]/C[t]); NaN where t+h is past the last row."""
    c = frame["Close"].to_numpy(dtype=np.float64)
    origins = np.asarray(origins, dtype=np.int64)
    out = np.full((len(origins), horizon), np.nan)
    for h in range(1, horizon + 1):
        ok = origins + h < len(c)
        out[ok, h - 1] = np.log(c[origins[ok] + h] / c[origins[ok]])
    return out


def to_prices(last_close: np.ndarray, log_returns: np.ndarray) -> np.ndarray:
    """Invert the targets: closes [n, H] = last_close[:, None] * exp(log_returns)."""
    return np.asarray(last_close, dtype=np.float64)[:, None] * np.exp(np.asarray(log_returns, dtype=np.float64))

