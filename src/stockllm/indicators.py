"""Technical indicators as optional model inputs (``--features``), computed with the ``ta`` package.

Each indicator becomes one scale-free number per day (a ratio to the close, or a bounded oscillator centred on
0), so it means the same on an index at 7,000 and a stock at 20. Every ``ta`` function used here reads only
rows up to the day it describes (rolling windows and recursive averages), so the value for day t depends on
rows <= t only. Warm-up days, where ``ta`` has no value yet, get the neutral value 0: a constant, so it cannot
carry information from later rows either.

The MLP reads the floats; the compact codec writes them as one extra integer each per day, in ``unit`` steps,
clipped to ±clip like the other integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import StockLLMError

if TYPE_CHECKING:  # numpy, pandas and ta load when indicators are computed, not when flags are checked
    import numpy as np


@dataclass(frozen=True)
class Indicator:
    """One indicator: what it is, and the step of its integer in the compact codec."""

    description: str
    unit: float
    warmup: int  # rows before the first day that has a value


INDICATORS: dict[str, Indicator] = {
    "sma_ratio": Indicator("log(close / 20-day simple moving average of the close)", 0.002, 19),
    "rsi": Indicator("14-day relative strength index, as (RSI - 50) / 100, in [-0.5, 0.5]", 0.01, 13),
    "macd": Indicator("MACD line (12-day minus 26-day EMA of the close) / close", 0.001, 25),
    "bbp": Indicator("Bollinger %B (20 days, 2 standard deviations) - 0.5: 0 at the middle band", 0.01, 19),
    "atr": Indicator("14-day average true range / close", 0.001, 13),
}


def warmup_rows(names) -> int:
    """Rows of history the indicators need before a window's first day, so that no day of it is a warm-up 0."""
    return max((INDICATORS[n].warmup for n in parse_features(names)), default=0)


def parse_features(value) -> tuple[str, ...]:
    """Indicator names from ``--features`` text ('rsi,macd'), a list, or None/'' (none), checked and de-duplicated.

    Raises StockLLMError naming the known indicators for an unknown name. Order is kept: it is the order of the
    extra inputs and of the codec's extra integers.
    """
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(str(p).strip() for p in parts if str(p).strip()))
    for name in names:
        if name not in INDICATORS:
            raise StockLLMError(f"unknown indicator {name!r} in --features: choose from {','.join(INDICATORS)} "
                                "(comma-separated)")
    return names


def indicator_values(frame, names) -> np.ndarray:
    """Scale-free indicator values, float64 [rows, len(names)], for every row of an OHLCV frame (causal).

    Non-finite values (warm-up days, a zero-width Bollinger band on flat prices) are 0, the neutral value.
    """
    import numpy as np
    import pandas as pd
    import ta

    names = parse_features(names)
    close = pd.Series(frame["Close"].to_numpy(dtype=np.float64))
    high = pd.Series(frame["High"].to_numpy(dtype=np.float64))
    low = pd.Series(frame["Low"].to_numpy(dtype=np.float64))
    out = np.zeros((len(frame), len(names)))
    with np.errstate(divide="ignore", invalid="ignore"):
        for j, name in enumerate(names):
            if name == "sma_ratio":
                value = np.log(close / ta.trend.sma_indicator(close, window=20))
            elif name == "rsi":
                value = (ta.momentum.rsi(close, window=14) - 50) / 100
            elif name == "macd":
                value = ta.trend.macd(close, window_slow=26, window_fast=12) / close
            elif name == "bbp":
                value = ta.volatility.bollinger_pband(close, window=20, window_dev=2) - 0.5
            else:  # atr; ta writes 0 (not NaN) for its warm-up days, which is already the neutral value
                value = ta.volatility.average_true_range(high, low, close, window=14) / close
            value = np.asarray(value, dtype=np.float64)
            out[:, j] = np.where(np.isfinite(value), value, 0.0)
    return out


def indicator_integers(frame, names, clip: int) -> np.ndarray:
    """The compact codec's extra integers, int64 [rows, len(names)]: value / unit, rounded, clipped to ±clip."""
    import numpy as np

    names = parse_features(names)
    units = np.array([INDICATORS[n].unit for n in names], dtype=np.float64)
    return np.clip(np.rint(indicator_values(frame, names) / units), -clip, clip).astype(np.int64)
