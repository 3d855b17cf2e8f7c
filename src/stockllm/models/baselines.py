"""Baselines without parameters, with the same interface as every model: naive (the random walk) and drift.

They import no torch, so loading or running them is light. The seed's MLP lives in ``models.mlp``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..quantiles import ewma_scale, gaussian_quantiles
from .base import Forecaster


def ewma_spread(frame: pd.DataFrame, center: np.ndarray, origins: np.ndarray, levels) -> np.ndarray:
    """Gaussian quantiles [n, H, Q] around ``center`` [n, H] log-returns, with the causal RiskMetrics EWMA
    volatility (λ = 0.94) at each origin scaled by √h."""
    scale = ewma_scale(frame["Close"].to_numpy(dtype=np.float64), origins, center.shape[1])
    return gaussian_quantiles(center, scale, levels)


class NaiveForecaster(Forecaster):
    """Driftless random walk: the median future close is the last close, and log-returns are Gaussian with the
    RiskMetrics EWMA volatility of past daily returns (λ = 0.94), times √h."""

    kind = "naive"

    def predict_quantiles(self, frame, origins):
        return ewma_spread(frame, np.zeros((len(origins), self.horizon)), origins, self.quantiles)


class DriftForecaster(Forecaster):
    """The window's mean daily log-return, extended forward: median ŷ[h] = h · mean(log C[d]/C[d-1]); the same
    Gaussian EWMA spread as naive around it."""

    kind = "drift"

    def predict_quantiles(self, frame, origins):
        return ewma_spread(frame, self._drift(frame, origins), origins, self.quantiles)

    def _drift(self, frame, origins):
        logc = np.log(frame["Close"].to_numpy(dtype=np.float64))
        origins = np.asarray(origins, dtype=np.int64)
        # Mean of the window's W-1 daily returns telescopes to (log C[t] - log C[t-W+1]) / (W-1).
        steps = max(self.window_size - 1, 1)
        first = np.maximum(origins - steps, 0)
        mean = (logc[origins] - logc[first]) / np.maximum(origins - first, 1)
        return mean[:, None] * np.arange(1, self.horizon + 1)[None, :]


def __getattr__(name: str):
    # The MLP lived here before it moved to models.mlp; old imports still work (and load torch only then).
    if name in ("MLPForecaster", "SimpleStockPredictor"):
        from . import mlp

        return getattr(mlp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
