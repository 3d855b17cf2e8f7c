"""The ensemble: a weighted average of its members' quantiles, level by level, with weights fitted on validation.

q_ens(τ) = Σ_m w_m · q_m(τ) on the log-return scale, with w ≥ 0 and Σ w = 1 (one weight per member, shared by all
levels and horizons, so the averaged quantiles cannot cross). The weights minimise the members' pinball loss on the
validation part: the last ``val_size`` share of the training dates (one date for all series), with every member
fitted on the dates before it. That is a linear programme (the loss is piecewise linear in w), solved exactly by
``scipy.optimize.linprog`` (HiGHS). Losses are in units of the causal EWMA σ·√h and every series weighs the same,
as the learned heads are trained. The members are then fitted again on all the training dates (``refit``).

Quantile averaging with validation weights is the usual way to beat every member on pinball loss (Wang et al.,
"Forecast combinations: an over 50-year review", 2023); the weights name the members that earn their place.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import DataConfig, EnsembleConfig, from_dict, to_dict
from ..errors import StockLLMError
from ..features import before, date_split, targets
from ..quantiles import standard_scale
from .base import Forecaster, span

MEMBERS_DIR = "members"


def fit_weights(preds: np.ndarray, y: np.ndarray, levels: Sequence[float], row_weights: np.ndarray) -> np.ndarray:
    """Simplex weights [M] minimising Σ_i row_weights[i] · Σ_{h,τ} ρ_τ(y[i,h] − Σ_m w_m preds[m,i,h,τ]).

    preds: [M, n, H, Q] members' quantiles; y: [n, H]; row_weights: [n] ≥ 0. Solved as a linear programme:
    variables (w, u) with u ≥ τ·(y − q·w) and u ≥ (τ − 1)·(y − q·w) for each (i, h, τ).
    """
    from scipy import sparse
    from scipy.optimize import linprog

    m = preds.shape[0]
    tau = np.broadcast_to(np.asarray(levels, dtype=np.float64), preds.shape[1:]).reshape(-1)  # [K]
    q = preds.reshape(m, -1).T  # [K, M]
    yk = np.broadcast_to(y[:, :, None], preds.shape[1:]).reshape(-1)
    ok = np.isfinite(yk) & np.isfinite(q).all(axis=1)
    q, yk, tau = q[ok], yk[ok], tau[ok]
    cost = np.broadcast_to(row_weights[:, None, None], preds.shape[1:]).reshape(-1)[ok]
    k = len(yk)
    if k == 0:
        return np.full(m, 1.0 / m)
    # u_k ≥ τ(y − qw)  ⇔  −τ q w − u ≤ −τ y ;   u_k ≥ (τ−1)(y − qw)  ⇔  (1−τ) q w − u ≤ (1−τ) y
    eye = sparse.identity(k, format="csr")
    a_ub = sparse.vstack([sparse.hstack([sparse.csr_matrix(-tau[:, None] * q), -eye]),
                          sparse.hstack([sparse.csr_matrix((1 - tau)[:, None] * q), -eye])], format="csr")
    b_ub = np.concatenate([-tau * yk, (1 - tau) * yk])
    a_eq = sparse.csr_matrix(np.concatenate([np.ones(m), np.zeros(k)])[None, :])
    c = np.concatenate([np.zeros(m), cost / cost.sum()])
    result = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[1.0], bounds=[(0, None)] * (m + k), method="highs")
    if not result.success:
        raise StockLLMError(f"the ensemble's weights could not be fitted ({result.message}); drop a member")
    w = np.clip(result.x[:m], 0, None)
    return w / w.sum()


class EnsembleForecaster(Forecaster):
    """Validation-weighted quantile average of member models (``EnsembleConfig.members``). See the module docstring.

    ``member_configs`` maps a member name to its config (MLPConfig for mlp and lstm, LoRAConfig for lora); members
    without one take their defaults.
    """

    kind = "ensemble"

    def __init__(self, data: DataConfig | None = None, config: EnsembleConfig | None = None,
                 member_configs: dict | None = None):
        super().__init__(data)
        self.config = config or EnsembleConfig()
        self.member_configs = dict(member_configs or {})
        self.members: dict[str, Forecaster] = {}
        self.weights: np.ndarray | None = None

    @property
    def refit_ok(self) -> bool:
        """Whether every member may be fitted again every few test days."""
        from .registry import spec

        return all(spec(m).refit for m in self.config.members)

    def _new_member(self, name: str) -> Forecaster:
        from . import model_class

        cls = model_class(name)
        cfg = self.member_configs.get(name)
        return cls(self.data, cfg) if cfg is not None else cls(self.data)

    def fit(self, frames, progress=True):
        """Fit members before the validation date, weights on the validation part, then refit members on all."""
        frames = list(frames)
        cfg = self.config
        splits = date_split(frames, self.window_size, self.horizon, cfg.val_size)
        if sum(len(v) for _, v in splits) == 0:
            raise StockLLMError("the ensemble needs a validation part to fit its weights: pass --val_size above 0 "
                                "(e.g. 0.2) and a longer history")
        val_start = min(f.index[v[0]] for f, (_, v) in zip(frames, splits) if len(v))
        early = [e for e in (before(f, val_start) for f in frames) if len(e) >= self.data.min_rows]
        preds, ys, rows = [], [], []
        first = {}
        for name in cfg.members:
            member = self._new_member(name)
            if not member.has_quantiles:
                raise StockLLMError(f"--members {name} gives no quantiles, so the ensemble cannot average it: drop it")
            if member.needs_fit:
                member.fit(early, progress=progress)
            first[name] = member
        for frame, (_, val) in zip(frames, splits):
            if not len(val):
                continue
            scale = standard_scale(frame["Close"].to_numpy(dtype=np.float64), val, self.horizon)
            preds.append(np.stack([first[n].predict_quantiles(frame, val) for n in cfg.members]) / scale[None, :, :, None])
            ys.append(targets(frame, self.horizon, val) / scale)
            rows.append(np.full(len(val), 1.0 / len(val)))  # every series weighs the same
        self.weights = fit_weights(np.concatenate(preds, axis=1), np.concatenate(ys), self.quantiles,
                                   np.concatenate(rows))
        if cfg.refit:
            self.members = {}
            for name in cfg.members:
                member = self._new_member(name)
                if member.needs_fit:
                    member.fit(frames, progress=progress)
                self.members[name] = member
        else:
            self.members = first
        self.fit_info = {"series": [span(f) for f in frames], "weights": self.weight_dict(),
                         "validation_start": f"{val_start:%Y-%m-%d}", "refit": cfg.refit,
                         "members": {n: m.fit_info for n, m in self.members.items()}}
        return self

    def weight_dict(self) -> dict[str, float]:
        """{member: weight}, in member order."""
        return {n: float(w) for n, w in zip(self.config.members, self.weights)}

    def describe(self) -> str:
        """The weights in words, for the table row: 'fhs 0.62, garch 0.38' (members with weight ≥ 0.005)."""
        return ", ".join(f"{n} {w:.2f}" for n, w in self.weight_dict().items() if w >= 0.005)

    def predict_quantiles(self, frame, origins):
        if self.weights is None:
            raise StockLLMError("the ensemble was never fitted: train it first (stockllm train --model ensemble)")
        origins = np.asarray(origins, dtype=np.int64)
        out = np.zeros((len(origins), self.horizon, len(self.quantiles)))
        for name, w in zip(self.config.members, self.weights):
            if w > 0:
                out += w * self.members[name].predict_quantiles(frame, origins)
        return out

    def num_trainable_parameters(self) -> int:
        return sum(m.num_trainable_parameters() for m in self.members.values())

    def config_dict(self):
        return to_dict(self.config)

    def extra_meta(self):
        return {"ensemble": {"weights": self.weight_dict()}}

    def _save_weights(self, directory: Path) -> None:
        for name, member in self.members.items():
            member.save(directory / MEMBERS_DIR / name)

    @classmethod
    def _from_meta(cls, meta, directory, **overrides):
        from . import load_forecaster

        model = cls(from_dict(DataConfig, meta.get("data", {}), source=directory),
                    from_dict(EnsembleConfig, meta.get("config", {}), source=directory))
        weights = (meta.get("ensemble") or {}).get("weights") if isinstance(meta.get("ensemble"), dict) else None
        names = list(model.config.members)
        if not isinstance(weights, dict) or list(weights) != names or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in weights.values()) or not (
                abs(sum(weights.values()) - 1) < 1e-6):
            raise StockLLMError(f"{directory}/stockllm.json lacks valid ensemble weights (one number ≥ 0 per member, "
                                "summing to 1): the checkpoint is damaged; train again")
        model.weights = np.array([weights[n] for n in names], dtype=np.float64)
        for name in names:
            member = load_forecaster(directory / MEMBERS_DIR / name, **overrides)
            if member.data.window_size != model.window_size or member.data.horizon != model.horizon or tuple(
                    member.quantiles) != tuple(model.quantiles):
                raise StockLLMError(f"{directory}/{MEMBERS_DIR}/{name} has other window, horizon or levels than the "
                                    "ensemble: the checkpoint is damaged; train again")
            model.members[name] = member
        return model
