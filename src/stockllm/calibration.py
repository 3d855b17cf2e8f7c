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

The start. The tracker runs from δ = 0 at the frame's first origin (``window_size − 1``) over the whole history, so
at the model's anchor date (the day after its training data end, from its fit record; ``evaluate`` passes its
cutoff for models fitted on nothing) each regime's offsets have converged on years of outcomes. From the anchor on,
the step is larger for the first outcomes, γ_k = γ·(1 + (boost − 1)·e^(−k/N)) for the outcome of the k-th origin
after the anchor (boost 5, N = 100 origins): a fitted model's errors change at the anchor (in-sample before it,
out-of-sample after), and ACI's coverage error over T outcomes is bounded by (range of δ + γ)/(γ·T), so a larger
step finds the new level within the first few hundred origins. Chosen on validation dates of the development set
(``benchmarks/aci_start.py``, RESULTS §13.2): coverage_80 over the first 250 origins 0.784–0.852 for naive and FHS
(5 series × 3 horizons), against 0.776–0.876 for the zero start with a constant step and 0.772–0.852 for a start at
split-conformal offsets δ₀ of the last 20% of the pre-anchor residuals (round 5's default; it pools the volatility
regimes, and on the test part fell to 0.732: ``CalibrationConfig.warmup`` keeps it as an option, with ``shrink``).
Without an anchor (a model that records no training dates, e.g. ``predict --model naive``) the step stays γ.

Causality: the outcome of origin s at horizon h (the close of row s + h) is known at origin t only when
s + h ≤ t, so δ at t has seen exactly those outcomes, in order. The state at an origin t is the tracker replayed
over the outcomes known at t (from the frame's first origin, or from δ₀ at the anchor with a warm-up share): a
function of the frame's rows up to t only, the same whether a backtest asks for t among many origins or
``predict`` asks for the last row of a file with the same history that ends at t. Levels that cross after the
offsets are sorted (the rearrangement that keeps every level's coverage).
"""

from __future__ import annotations

import numpy as np

from .config import CalibrationConfig
from .features import targets
from .models.base import Forecaster
from .quantiles import standard_scale


MIN_WARMUP = 20  # validation origins needed to start from δ₀; fewer: start at zero
WARMUP_SHARE = 0.2  # the validation share of a model that has no val_size of its own


def track_offsets(q: np.ndarray, y: np.ndarray, levels, gamma, regime: np.ndarray | None = None,
                  initial: np.ndarray | None = None, start: int = 0) -> np.ndarray:
    """Offsets [n, H, Q] (standardised units) in force at each of n consecutive origins.

    gamma: the step, one number or one per origin [n] (the step taken with that origin's outcome).
    q: [n, H, Q] standardised quantiles; y: [n, H] standardised outcomes (NaN where not in the data). The offset
    at origin i has been updated with the outcomes of origins i − h, i − h − 1, ... (those known at i).
    regime: [n] integer bucket of each origin (known at the origin); each bucket keeps its own offsets, updated by
    the outcomes of its own origins only (None: one bucket). initial: [R, H, Q] offsets at the start (R ≥ the
    number of buckets; None: zeros); start: outcomes of origins before it are already in ``initial`` and do
    not update the offsets again.
    """
    n, horizon, n_levels = q.shape
    tau = np.asarray(levels, dtype=np.float64)
    regime = np.zeros(n, dtype=np.int64) if regime is None else np.asarray(regime, dtype=np.int64)
    n_regimes = int(regime.max()) + 1 if n else 1
    if initial is not None:
        n_regimes = max(n_regimes, len(initial))
    offsets = np.zeros((n, horizon, n_levels))
    gamma = np.broadcast_to(np.asarray(gamma, dtype=np.float64), (n,))
    for h in range(horizon):
        lag = h + 1
        delta = np.zeros((n_regimes, n_levels)) if initial is None else np.array(initial[:, h, :], dtype=np.float64)
        for i in range(n):
            s = i - lag
            if s >= start and s >= 0 and np.isfinite(y[s, h]) and np.isfinite(q[s, h]).all():
                below = y[s, h] <= q[s, h] + offsets[s, h]
                delta[regime[s]] += gamma[s] * (tau - below)
            offsets[i, h] = delta[regime[i]]
    return offsets


def initial_offsets(q: np.ndarray, y: np.ndarray, levels, n_regimes: int = 1) -> np.ndarray:
    """Split-conformal starting offsets [n_regimes, H, Q] from validation origins: for each horizon and level τ the
    τ-quantile of y − q_τ (so that exactly a share τ of the validation outcomes lies at or below q_τ + δ₀), the
    same for every regime. q: [n, H, Q] and y: [n, H] standardised, as in ``track_offsets``."""
    tau = np.asarray(levels, dtype=np.float64)
    start = np.zeros((q.shape[1], len(tau)))
    for h in range(q.shape[1]):
        resid = y[:, h, None] - q[:, h, :]  # [n, Q]
        resid = resid[np.isfinite(resid).all(axis=1)]
        if len(resid):
            start[h] = [np.quantile(resid[:, j], t) for j, t in enumerate(tau)]
    return np.repeat(start[None], n_regimes, axis=0)


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

    def __init__(self, inner: Forecaster, config: CalibrationConfig | None = None, until=None):
        super().__init__(inner.data)
        self.inner = inner
        self.config = config or CalibrationConfig()
        self.kind = f"{inner.kind}+{self.config.method}"
        self.fit_info = inner.fit_info
        self.until = anchor_date(inner, until)

    def _warmup(self, frame, first: int) -> tuple[int, int] | None:
        """(first validation origin, first origin after the validation part) of ``frame``, or None to start at
        zero: the validation origins are the last ``val_size`` share of the origins before the anchor whose H
        targets lie before it."""
        if self.until is None or self.config.warmup == -1:
            return None
        end = anchor_row(frame, self.until) - self.horizon  # origins < end have every target in a row < rows
        share = self.config.warmup or getattr(getattr(self.inner, "config", None), "val_size", None) or WARMUP_SHARE
        begin = max(first, end - int(round(share * (end - first))))
        return (begin, end) if end - begin >= MIN_WARMUP else None

    def _steps(self, frame, every: np.ndarray) -> np.ndarray:
        """The step per origin [n]: γ, boosted for the first outcomes after the anchor (``CalibrationConfig``)."""
        cfg = self.config
        if cfg.boost == 1 or self.until is None:
            return np.full(len(every), cfg.gamma)
        anchor = anchor_row(frame, self.until)
        k = np.maximum(every - anchor, 0)
        return np.where(every >= anchor, cfg.gamma * (1 + (cfg.boost - 1) * np.exp(-k / cfg.boost_origins)),
                        cfg.gamma)

    def check_levels(self, levels) -> None:
        self.inner.check_levels(levels)

    def predict_quantiles(self, frame, origins):
        origins = np.asarray(origins, dtype=np.int64)
        if len(origins) == 0:
            return np.zeros((0, self.horizon, len(self.quantiles)))
        first = self.window_size - 1
        warm = self._warmup(frame, first)
        if warm is not None:
            first = min(warm[0], int(origins.min()))
        every = np.arange(first, int(origins.max()) + 1)
        close = frame["Close"].to_numpy(dtype=np.float64)
        scale = standard_scale(close, every, self.horizon)  # [n, H]
        q = self.inner.predict_quantiles(frame, every)
        z = q / scale[:, :, None]
        y = targets(frame, self.horizon, every) / scale
        regime = volatility_regime(close, every, self.config.regimes) if self.config.regimes else None
        initial, start = None, 0
        if warm is not None:
            val = slice(warm[0] - first, warm[1] - first)
            initial = self.config.shrink * initial_offsets(z[val], y[val], self.quantiles, len(self.config.regimes) + 1)
            start = warm[1] - first
        offsets = track_offsets(z, y, self.quantiles, self._steps(frame, every), regime, initial, start)
        adjusted = np.sort((z + offsets) * scale[:, :, None], axis=-1)
        return adjusted[origins - first]

    def num_trainable_parameters(self) -> int:
        return self.inner.num_trainable_parameters()


def anchor_date(model: Forecaster, fallback=None):
    """The date from which the tracker runs: the day after the last training date in ``model``'s fit record,
    else ``fallback`` (a date: rows before it are the model's past), else None."""
    import pandas as pd

    lasts = [pd.Timestamp(s["last"]) for s in (model.fit_info.get("series") or []) if s.get("last")]
    if lasts:
        return max(lasts) + pd.Timedelta(days=1)
    return None if fallback is None else pd.Timestamp(fallback)


def anchor_row(frame, date) -> int:
    """The first row of ``frame`` dated on or after ``date`` (len(frame) when none is)."""
    return int(np.searchsorted(frame.index.to_numpy(), np.datetime64(date), side="left"))


def calibrated(model: Forecaster, method: str | None, gamma: float | None = None, until=None) -> Forecaster:
    """``model`` wrapped by the recalibration ``method`` ("aci"), or itself for None / "none". ``until``: the
    anchor date for a model whose fit record has no training dates (``evaluate`` passes its cutoff)."""
    if method in (None, "none"):
        return model
    config = CalibrationConfig(method=method, **({} if gamma is None else {"gamma": gamma}))
    return Calibrated(model, config, until)
