"""Online, causal recalibration of any model's quantiles: adaptive conformal inference on σ-standardised scores.

For each horizon h and level τ an offset δ (in units of the causal EWMA σ[t]·√h) is added to the model's quantile:
q'_τ(t) = q_τ(t) + δ_τ,h(t)·σ[t]·√h. After each outcome becomes known the offset moves towards the level's
coverage: δ ← δ + γ·(τ − 1{y ≤ q'_τ}), the quantile-tracking form of adaptive conformal inference (Gibbs & Candès
2021; Angelopoulos, Candès & Tibshirani 2023). If more than τ of the outcomes fall below q'_τ, it is lowered, if
fewer, raised, so the long-run share below each level converges to τ whatever the model does. The scores are
standardised by σ, so an offset learnt in calm markets means the same in a storm.

Volatility mean-reverts: after a calm spell the next days are more volatile than the EWMA σ says, after a storm
less, so one offset for all days under-covers calm origins and over-covers stormy ones. The origins are therefore
split into regimes by σ_EWMA ÷ σ_long (λ 0.94 over λ 0.99, both causal; edges ``CalibrationConfig.regimes``,
default below 0.85, 0.85–1.15, above), and each regime tracks its own offsets from its own outcomes (Mondrian
conformal prediction by regime).

Causality: the outcome of origin s at horizon h (the close of row s + h) is known at origin t only when
s + h ≤ t, so δ at t has seen exactly those outcomes, in order. The state at origin t is the tracker run over every
origin of the frame from its first (``window_size − 1``) with δ = 0 at the start: a function of the rows up to t
only, the same whether a backtest asks for t among many origins or ``predict`` asks for the last row of a file
that ends at t. Levels that cross after the offsets are sorted (the rearrangement that keeps every level's
coverage).
"""

from __future__ import annotations

import numpy as np

from .config import CalibrationConfig
from .features import targets
from .models.base import Forecaster
from .quantiles import standard_scale


def track_offsets(q: np.ndarray, y: np.ndarray, levels, gamma: float, regime: np.ndarray | None = None) -> np.ndarray:
    """Offsets [n, H, Q] (standardised units) in force at each of n consecutive origins.

    q: [n, H, Q] standardised quantiles; y: [n, H] standardised outcomes (NaN where not in the data). The offset
    at origin i has been updated with the outcomes of origins i − h, i − h − 1, ... (those known at i).
    regime: [n] integer bucket of each origin (known at the origin); each bucket keeps its own offsets, updated by
    the outcomes of its own origins only (None: one bucket).
    """
    n, horizon, n_levels = q.shape
    tau = np.asarray(levels, dtype=np.float64)
    regime = np.zeros(n, dtype=np.int64) if regime is None else np.asarray(regime, dtype=np.int64)
    offsets = np.zeros((n, horizon, n_levels))
    for h in range(horizon):
        lag = h + 1
        delta = np.zeros((int(regime.max()) + 1 if n else 1, n_levels))
        for i in range(n):
            s = i - lag
            if s >= 0 and np.isfinite(y[s, h]) and np.isfinite(q[s, h]).all():
                below = y[s, h] <= q[s, h] + offsets[s, h]
                delta[regime[s]] += gamma * (tau - below)
            offsets[i, h] = delta[regime[i]]
    return offsets


def volatility_regime(close: np.ndarray, origins: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Bucket [n] of each origin by σ_EWMA(t) ÷ σ_long(t), the short (λ = 0.94) over the long (λ = 0.99) causal
    volatility, cut at ``edges``: calm spells (ratio low) are followed by more volatility than σ says, storms by
    less, so each regime needs its own offset."""
    from .quantiles import ewma_sigma

    ratio = ewma_sigma(close)[origins] / ewma_sigma(close, lam=0.99)[origins]
    return np.searchsorted(np.asarray(edges, dtype=np.float64), np.nan_to_num(ratio, nan=1.0))


class Calibrated(Forecaster):
    """Wraps a fitted Forecaster and recalibrates its quantiles online (see the module docstring).

    Its kind is the inner model's with ``+aci`` appended; it fits nothing itself and saves nothing (the state is
    recomputed from the history it is given).
    """

    needs_fit = False

    def __init__(self, inner: Forecaster, config: CalibrationConfig | None = None):
        super().__init__(inner.data)
        self.inner = inner
        self.config = config or CalibrationConfig()
        self.kind = f"{inner.kind}+{self.config.method}"
        self.fit_info = inner.fit_info

    def check_levels(self, levels) -> None:
        self.inner.check_levels(levels)

    def predict_quantiles(self, frame, origins):
        origins = np.asarray(origins, dtype=np.int64)
        if len(origins) == 0:
            return np.zeros((0, self.horizon, len(self.quantiles)))
        first = self.window_size - 1
        every = np.arange(first, int(origins.max()) + 1)
        close = frame["Close"].to_numpy(dtype=np.float64)
        scale = standard_scale(close, every, self.horizon)  # [n, H]
        q = self.inner.predict_quantiles(frame, every)
        z = q / scale[:, :, None]
        y = targets(frame, self.horizon, every) / scale
        regime = volatility_regime(close, every, self.config.regimes) if self.config.regimes else None
        offsets = track_offsets(z, y, self.quantiles, self.config.gamma, regime)
        adjusted = np.sort((z + offsets) * scale[:, :, None], axis=-1)
        return adjusted[origins - first]

    def num_trainable_parameters(self) -> int:
        return self.inner.num_trainable_parameters()


def calibrated(model: Forecaster, method: str | None, gamma: float | None = None) -> Forecaster:
    """``model`` wrapped by the recalibration ``method`` ("aci"), or itself for None / "none"."""
    if method in (None, "none"):
        return model
    config = CalibrationConfig(method=method, **({} if gamma is None else {"gamma": gamma}))
    return Calibrated(model, config)
