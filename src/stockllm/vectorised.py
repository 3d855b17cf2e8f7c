"""Backtests of the cheap models (naive, drift, fhs, garch) for a block of series at once, as arrays.

The per-series path (``evaluate.backtest``) calls ``predict_quantiles`` once per series and model, and builds a
pandas frame each time. Here a block of series becomes one (series × time) matrix of closes, left-aligned (row t
of a series is column t; NaN after its last row), and each model is a closed form over it:

- the causal EWMA variance (``quantiles.ewma_sigma``) is one recurrence along time for every series at once,
  written exactly as pandas' ``ewm(adjust=True).mean()`` computes it, so the numbers are the same;
- naive, drift and fhs quantiles are broadcasts of that σ (and, for fhs, of its fitted standardised quantiles);
- GARCH's variance filter with the fitted parameters (``GARCHForecaster.conditional_variance``) is one recurrence
  over the (series × time) matrix, with the same operations in the same order.

Origins are a long array: one entry per (series, origin row), grouped by series. Only models whose class is exactly
one of these four are taken (``supports_class``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .features import origins_with_targets
from .quantiles import EWMA_LAMBDA, median, student_t_quantiles, z_scores


def _kinds() -> dict:
    """{Forecaster class: how its quantiles are made here}; classes import lazily (arch only with garch)."""
    from .models.baselines import DriftForecaster, NaiveForecaster
    from .models.fhs import FHSForecaster
    from .models.garch import GARCHForecaster

    return {NaiveForecaster: _naive, DriftForecaster: _drift, FHSForecaster: _fhs, GARCHForecaster: _garch}


def supports_class(model) -> bool:
    """True when ``model`` is a naive, drift, fhs or garch model (exactly those classes: a subclass may predict
    differently)."""
    return type(model) in _kinds()


@dataclass
class Block:
    """A block of series as left-aligned matrices and the long array of their test origins.

    names: the series' names [S]; close: closes [S, L] (NaN after a series' last row); days: dates [S, L] as
    datetime64[D] (NaT after the last row); code: the series (0..S-1) of each origin [N]; row: the origin's row
    in its series [N], grouped by series and increasing within one.
    """

    names: list
    close: np.ndarray
    days: np.ndarray
    code: np.ndarray
    row: np.ndarray
    sigma: np.ndarray | None = None  # [S, L] causal EWMA σ, made once per block

    @property
    def last_close(self) -> np.ndarray:
        """The close at each origin [N]."""
        return self.close[self.code, self.row]


def make_block(frames: dict, start: pd.Timestamp, window: int, horizon: int) -> Block:
    """The block of ``frames`` ({name: OHLCV frame}) with every origin on or after ``start`` that has a full window
    and all H targets (as ``evaluate.test_origins`` picks them)."""
    names = list(frames)
    width = max(len(f) for f in frames.values())
    close = np.full((len(names), width), np.nan)
    days = np.full((len(names), width), np.datetime64("NaT"), dtype="datetime64[D]")
    codes, rows = [], []
    for i, frame in enumerate(frames.values()):
        n = len(frame)
        close[i, :n] = frame["Close"].to_numpy(dtype=np.float64)
        days[i, :n] = frame.index.to_numpy().astype("datetime64[D]")
        origins = origins_with_targets(n, window, horizon)
        origins = origins[days[i, origins] >= np.datetime64(pd.Timestamp(start).date())]
        codes.append(np.full(len(origins), i, dtype=np.int64))
        rows.append(origins)
    return Block(names, close, days, np.concatenate(codes), np.concatenate(rows))


def ewma_sigma_panel(close: np.ndarray, lam: float = EWMA_LAMBDA) -> np.ndarray:
    """``quantiles.ewma_sigma`` of every row of ``close`` [S, L] at once, float64 [S, L] (column 0 NaN).

    One pass along time, vectorised over series, with pandas' ``ewm(alpha=1-lam, adjust=True).mean()`` arithmetic
    (the running weight of the past, then one weighted mean per step), so the result equals the per-series one.
    """
    r2 = np.diff(np.log(close), axis=1) ** 2
    var = np.empty_like(r2)
    if r2.shape[1]:
        weighted = r2[:, 0].copy()
        var[:, 0] = weighted
        old_wt = 1.0
        for t in range(1, r2.shape[1]):
            cur = r2[:, t]
            old_wt *= lam
            moved = (old_wt * weighted + cur) / (old_wt + 1.0)
            weighted = np.where(weighted != cur, moved, weighted)
            var[:, t] = weighted
            old_wt += 1.0
    return np.concatenate([np.full((close.shape[0], 1), np.nan), np.sqrt(var)], axis=1)


def garch_variance_panel(close: np.ndarray, params: dict) -> np.ndarray:
    """``GARCHForecaster.conditional_variance`` of every row of ``close`` [S, L]: float64 [S, L], entry [s, t] the
    one-step variance σ²[t+1] (percent²) known at the close of day t, with the fitted parameters fixed."""
    from .models.garch import PCT

    r2 = (PCT * np.diff(np.log(close), axis=1)) ** 2
    var = np.empty((close.shape[0], close.shape[1]))
    var[:, 0] = params["var0"]
    omega, alpha, beta = params["omega"], params["alpha"], params["beta"]
    for d in range(r2.shape[1]):
        var[:, d + 1] = omega + alpha * r2[:, d] + beta * var[:, d]
    return var


def _scale(block: Block, horizon: int) -> np.ndarray:
    """σ[t]·√h at each origin [N, H] (``quantiles.ewma_scale``)."""
    if block.sigma is None:
        block.sigma = ewma_sigma_panel(block.close)
    sigma = block.sigma[block.code, block.row]
    return sigma[:, None] * np.sqrt(np.arange(1, horizon + 1))[None, :]


def _gaussian(center: np.ndarray, scale: np.ndarray, levels) -> np.ndarray:
    return center[:, :, None] + scale[:, :, None] * z_scores(levels)[None, None, :]


def _naive(model, block: Block) -> np.ndarray:
    return _gaussian(np.zeros((len(block.row), model.horizon)), _scale(block, model.horizon), model.quantiles)


def _drift(model, block: Block) -> np.ndarray:
    logc = np.log(block.close)
    steps = max(model.window_size - 1, 1)
    first = np.maximum(block.row - steps, 0)
    mean = (logc[block.code, block.row] - logc[block.code, first]) / np.maximum(block.row - first, 1)
    center = mean[:, None] * np.arange(1, model.horizon + 1)[None, :]
    return _gaussian(center, _scale(block, model.horizon), model.quantiles)


def _fhs(model, block: Block) -> np.ndarray:
    return _scale(block, model.horizon)[:, :, None] * model.z[None, :, :]


def _garch(model, block: Block) -> np.ndarray:
    from .models.garch import PCT

    p = model.params
    nxt = garch_variance_panel(block.close, p)[block.code, block.row]
    persistence = p["alpha"] + p["beta"]
    steps = [nxt]
    for _ in range(model.horizon - 1):
        steps.append(p["omega"] + persistence * steps[-1])
    scale = np.sqrt(np.cumsum(np.stack(steps, axis=1), axis=1)) / PCT
    return student_t_quantiles(np.zeros_like(scale), scale, model.quantiles, model.horizon_dof())


def block_quantiles(model, block: Block) -> np.ndarray:
    """Log-return quantiles [N, H, Q] of every origin of the block: ``model.predict_quantiles`` for all series."""
    return _kinds()[type(model)](model, block)


@dataclass
class BlockForecasts:
    """One model's forecasts for a block as long arrays, one entry per origin and horizon (origin-major).

    last_close, actual, predicted, sigma: [N·H]; quantiles: price-scale [N·H, Q]; horizon: 1..H [N·H];
    code, row: the series and origin row [N·H]; target_row: the target's row [N·H].
    """

    model: str
    levels: tuple
    code: np.ndarray
    row: np.ndarray
    horizon: np.ndarray
    target_row: np.ndarray
    last_close: np.ndarray
    actual: np.ndarray
    predicted: np.ndarray
    sigma: np.ndarray
    quantiles: np.ndarray


def block_forecasts(model, name: str, block: Block) -> BlockForecasts:
    """``evaluate.backtest``'s numbers for every series of the block at once (same arithmetic, same values)."""
    horizon = model.horizon
    q = block_quantiles(model, block)  # [N, H, Q]
    point = median(q, model.quantiles)
    last = block.last_close
    steps = np.arange(1, horizon + 1)
    target_rows = block.row[:, None] + steps[None, :]
    future = block.close[block.code[:, None], target_rows]
    actual = last[:, None] * np.exp(np.log(future / last[:, None]))
    predicted = last[:, None] * np.exp(point)
    q_prices = last[:, None, None] * np.exp(q)
    if block.sigma is None:
        block.sigma = ewma_sigma_panel(block.close)
    sigma = block.sigma[block.code, block.row]
    n = len(block.row)
    return BlockForecasts(name, tuple(model.quantiles), np.repeat(block.code, horizon), np.repeat(block.row, horizon),
                          np.tile(steps, n), target_rows.ravel(), np.repeat(last, horizon), actual.ravel(),
                          predicted.ravel(), np.repeat(sigma, horizon), q_prices.reshape(n * horizon, -1))
