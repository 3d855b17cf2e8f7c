"""Quantile forecasts: levels, the causal EWMA volatility, Gaussian quantiles, the median and the pinball loss.

Every Forecaster returns quantiles of the log-return ``log(C[t+h]/C[t])`` at the levels of
``DataConfig.quantiles`` (see ``Forecaster.predict_quantiles``). This module holds the pieces they share.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import StockLLMError

DEFAULT_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
EWMA_LAMBDA = 0.94  # RiskMetrics' daily decay
SCALE_FLOOR = 1e-8  # σ·√h below this (a series that never moved) is taken as this, to divide safely
MAX_LEVELS = 99  # quantile levels per forecast: more is no distribution anyone reads, and costs every request


def check_quantiles(levels: Sequence[float], flag: str = "--quantiles") -> tuple[float, ...]:
    """Validate quantile levels: at most MAX_LEVELS, strictly inside (0, 1), each written exactly by its column
    name (``column``: at most 6 significant digits, so two levels never share a name and a name never holds
    another level's value), strictly increasing, and 0.5 present or straddled (the point forecast is the
    median). Returns them as a tuple of floats, each exactly the value its name reads as (0.1 for 1 - 0.9)."""
    if hasattr(levels, "__len__") and len(levels) > MAX_LEVELS:
        raise StockLLMError(f"{flag} lists {len(levels)} levels, over the {MAX_LEVELS} a forecast may have: pass "
                            "fewer, such as 0.05,0.1,...,0.95")
    levels = tuple(_level_number(q, flag) for q in levels)
    if not levels:
        raise StockLLMError(f"{flag} is empty: pass levels such as 0.1,0.5,0.9")
    if len(levels) > MAX_LEVELS:
        raise StockLLMError(f"{flag} lists {len(levels)} levels, over the {MAX_LEVELS} a forecast may have: pass "
                            "fewer, such as 0.05,0.1,...,0.95")
    if not all(0 < q < 1 for q in levels):
        bad = next(q for q in levels if not 0 < q < 1)
        raise StockLLMError(f"{flag}: level {bad:g} must lie strictly between 0 and 1 (e.g. 0.1,0.5,0.9)")
    named = tuple(float(column(q)[1:]) for q in levels)
    blurred = next((q for q, n in zip(levels, named) if abs(q - n) > 1e-12), None)
    if blurred is not None:
        raise StockLLMError(f"{flag}: level {blurred!r} has more than 6 significant digits, and its column would "
                            f"be named {column(blurred)}: round it (e.g. {column(blurred)[1:]})")
    levels = named
    if any(b <= a for a, b in zip(levels, levels[1:])):
        raise StockLLMError(f"{flag} {','.join(f'{q:g}' for q in levels)}: list the levels once each, in "
                            "increasing order (e.g. 0.1,0.5,0.9)")
    if not (0.5 in levels or (levels[0] < 0.5 < levels[-1])):
        raise StockLLMError(f"{flag} {','.join(f'{q:g}' for q in levels)}: the point forecast is the median, so "
                            "include 0.5 or levels on both sides of it (e.g. 0.1,0.5,0.9)")
    return levels


def _level_number(value, flag: str) -> float:
    """One level as a float, or one line naming a value that is not a number within float range."""
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        shown = str(value)
        shown = shown if len(shown) <= 24 else f"{shown[:20]}... ({len(shown)} characters)"
        raise StockLLMError(f"{flag}: {shown} is not a number within float range; pass levels such as "
                            "0.1,0.5,0.9") from None


def parse_quantiles(text: str) -> tuple[float, ...]:
    """Parse the ``--quantiles`` flag ("0.1,0.5,0.9") into checked levels."""
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise StockLLMError(f"--quantiles {text!r} must be comma-separated numbers such as 0.1,0.5,0.9") from None
    return check_quantiles(levels)


def column(level: float) -> str:
    """The column name of a level in forecasts.csv and predictions.csv: ``q0.1``, ``q0.25``, ..."""
    return f"q{level:g}"


def level_of(name: str) -> float | None:
    """The level a ``q…`` column holds, or None when ``name`` is not a quantile column."""
    if not name.startswith("q"):
        return None
    try:
        level = float(name[1:])
    except ValueError:
        return None
    return level if 0 < level < 1 else None


def central_intervals(levels: Sequence[float]) -> list[tuple[int, float, float]]:
    """Central intervals the levels allow: (percent, lower level, upper level), widest first.

    0.1 and 0.9 make the 80% interval; 0.25 and 0.75 the 50% one.
    """
    levels = list(levels)
    out = []
    for lo in levels:
        if lo >= 0.5:
            break
        hi = next((q for q in levels if abs(q - (1 - lo)) < 1e-9), None)
        if hi is not None:
            out.append((int(round(100 * (1 - 2 * lo))), lo, hi))
    return out


def ewma_sigma(close: np.ndarray, lam: float = EWMA_LAMBDA) -> np.ndarray:
    """RiskMetrics daily volatility per row, float64 [n]: σ[t]² is the EWMA (decay ``lam``) of the squared
    log-returns log(C[d]/C[d-1]) for d <= t, with weights normalised over the returns seen so far.

    Causal: σ[t] uses rows <= t only. Row 0 (no return yet) is NaN.
    """
    close = np.asarray(close, dtype=np.float64)
    r2 = np.diff(np.log(close)) ** 2
    import pandas as pd  # here, not at the top: config imports this module and the CLI must start fast

    var = pd.Series(r2).ewm(alpha=1 - lam, adjust=True).mean().to_numpy()
    return np.concatenate([[np.nan], np.sqrt(var)])


def ewma_scale(close: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """The naive walk's spread of log(C[t+h]/C[t]) per origin and horizon, float64 [n, H]: σ[t]·√h with σ the
    causal EWMA volatility (``ewma_sigma``). Heads predict quantiles of returns divided by it."""
    sigma = ewma_sigma(close)[np.asarray(origins, dtype=np.int64)]
    return sigma[:, None] * np.sqrt(np.arange(1, horizon + 1))[None, :]


def standard_scale(close: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """What the heads, FHS, the ensemble and the calibration divide h-day log-returns by, float64 [n, H]:
    ``ewma_scale`` floored at SCALE_FLOOR, so a series that never moved divides safely."""
    return np.maximum(ewma_scale(close, origins, horizon), SCALE_FLOOR)


def z_scores(levels: Sequence[float]) -> np.ndarray:
    """Standard normal quantiles at the levels, float64 [Q]."""
    from scipy import stats

    return stats.norm.ppf(np.asarray(levels, dtype=np.float64))


def gaussian_quantiles(center: np.ndarray, scale: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Gaussian quantiles [n, H, Q]: center[n, H] + scale[n, H]·z(level)."""
    center = np.asarray(center, dtype=np.float64)
    return center[:, :, None] + np.asarray(scale, dtype=np.float64)[:, :, None] * z_scores(levels)[None, None, :]


def student_t_quantiles(center: np.ndarray, scale: np.ndarray, levels: Sequence[float], nu: np.ndarray) -> np.ndarray:
    """Quantiles [n, H, Q] of center[n, H] + scale[n, H]·T, where T is Student-t with nu[h] degrees of freedom
    rescaled to variance 1 (so ``scale`` is the standard deviation, as in ``gaussian_quantiles``); nu = inf gives
    the Gaussian quantiles. nu: [H], each > 2."""
    from scipy import stats

    levels = np.asarray(levels, dtype=np.float64)
    nu = np.asarray(nu, dtype=np.float64)
    z = np.stack([stats.norm.ppf(levels) if not np.isfinite(v) else stats.t.ppf(levels, v) * np.sqrt((v - 2) / v)
                  for v in nu])  # [H, Q]
    center = np.asarray(center, dtype=np.float64)
    return center[:, :, None] + np.asarray(scale, dtype=np.float64)[:, :, None] * z[None, :, :]


def median(quantiles: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """The level-0.5 quantile [..., ] from quantiles [..., Q], interpolated linearly between the levels around
    0.5 when 0.5 itself is absent."""
    levels = np.asarray(levels, dtype=np.float64)
    exact = np.flatnonzero(np.abs(levels - 0.5) < 1e-12)
    if len(exact):
        return quantiles[..., int(exact[0])]
    j = int(np.searchsorted(levels, 0.5))
    if j == 0 or j == len(levels):
        raise ValueError("levels must include 0.5 or lie on both sides of it")
    w = (0.5 - levels[j - 1]) / (levels[j] - levels[j - 1])
    return (1 - w) * quantiles[..., j - 1] + w * quantiles[..., j]


def pinball(y: np.ndarray, q: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Pinball (quantile) loss per level: y [...], q [..., Q] → [..., Q],
    ρ_τ(y, q) = max(τ·(y − q), (τ − 1)·(y − q))."""
    tau = np.asarray(levels, dtype=np.float64)
    diff = np.asarray(y, dtype=np.float64)[..., None] - np.asarray(q, dtype=np.float64)
    return np.maximum(tau * diff, (tau - 1) * diff)


def select(quantiles: np.ndarray, have: Sequence[float], want: Sequence[float]) -> np.ndarray:
    """The columns of ``quantiles`` [..., len(have)] at levels ``want`` (each must be one of ``have``)."""
    have = np.asarray(have, dtype=np.float64)
    idx = [int(np.flatnonzero(np.abs(have - w) < 1e-9)[0]) for w in want]
    return quantiles[..., idx]


def missing_levels(have: Sequence[float], want: Sequence[float]) -> list[float]:
    """Levels of ``want`` that ``have`` lacks (compared to 1e-9)."""
    return [w for w in want if not any(abs(w - h) < 1e-9 for h in have)]
