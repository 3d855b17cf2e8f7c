"""The ensemble: a weighted average of its members' quantiles, level by level, with weights fitted on validation
and then tracked online.

q_ens(τ) = Σ_m w_m · q_m(τ) on the log-return scale, with w ≥ 0 and Σ w = 1 (the weights are shared by all levels,
so the averaged quantiles cannot cross). Every member is fitted on the dates before the validation part (the last
``val_size`` share of the training dates, one date for all series) and forecasts it. The validation part is cut
into ``folds`` consecutive blocks of dates; on each block the simplex weights that minimise the members' pinball loss
are a linear programme (the loss is piecewise linear in w), solved exactly by ``scipy.optimize.linprog`` (HiGHS).
Losses are in units of the causal EWMA σ·√h and every series weighs the same, as the learned heads are trained.
The starting weights are

    w₀ = λ · (1/M) + (1 − λ) · mean over blocks of the block's weights,        λ = ``shrinkage``

and the members are fitted again on all the training dates (``refit``); a member already fitted on the same
frames with the same settings (``offer``: ``evaluate`` offers the models it fitted) is reused, not trained again.

Why not one fit on the whole validation part: an LP optimum sits on a corner of the simplex, so weights fitted on
one stretch put everything on whichever member was luckiest there (the "forecast combination puzzle": equal or
shrunk weights beat estimated ones out of sample; Smith & Wallis 2009, Wang et al. 2023). Averaging the corners of
several blocks cannot chase one stretch.

Tracking. Fixed weights still lose to a member that is simply better after the validation part (on the
development set the block weights favoured the MLP, and on the later dates the LSTM was better). So from the anchor
(the day after the training data end, as ``calibration.anchor_date``) the weights follow the members' losses,
as the exponentially weighted average forecaster (Hedge):

    w_m(t) ∝ w₀_m · exp(−η · L_m(t)),   L_m(t) = Σ_h Σ_{anchor ≤ s, s + h ≤ t} ρ^(t − h − s) · ℓ_m(s, h)

with ℓ_m(s, h) the member's pinball loss at origin s and horizon h, mean over the levels, on the log-return divided
by σ_EWMA·√h (``member_losses``), η = ``eta`` and ρ = ``discount``; one set of weights for all horizons from the
losses summed over them (``share_horizons``; False: each horizon from its own losses, a third of the evidence).
Only outcomes known at t enter (s + h ≤ t), so the forecast at t is causal; it is replayed from the anchor
whichever origins are asked, so a backtest scores exactly what ``predict`` gives for a file that ends at t (the
cost: a forecast after the anchor asks every member for every origin since the anchor). Hedge's regret against the best member is at most ln(1/w₀_best)/η + η·T/8 over T
outcomes (with ρ < 1 it follows a best member that changes); η = 0 is the fixed weights (what checkpoints saved
before tracking load as). λ, η and ρ were chosen on validation dates of the development set only, each score
averaged over five training seeds of the MLP and LSTM (``benchmarks/ensemble_choice.py --dir``, RESULTS §13.3;
one seed's draw moves a member by more than the settings differ): λ 0, η 1, ρ 0.99 (a memory of about 100 origins),
weights per horizon, had the lowest geometric mean wql_vs_naive over both settings (each series alone, and pooled),
0.99712 against 0.99718 for fixed weights. So the tracking is gentle: it moves the fitted weights only when one
member keeps losing for a few hundred outcomes. Averaged over the origins the gain is small: the
members differ by a few tenths of a percent, and a few hundred outcomes tell them apart only slowly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import DataConfig, EnsembleConfig, from_dict, to_dict
from ..errors import StockLLMError
from ..features import before, date_split, targets
from ..quantiles import pinball, standard_scale
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


def hedge_weights(loss: np.ndarray, prior: np.ndarray, eta: float, discount: float = 1.0, start: int = 0,
                  shared: bool = False) -> np.ndarray:
    """Weights [n, H, M] in force at each of n consecutive origins: w ∝ prior · exp(−η · L), per horizon.

    loss: [M, n, H] each member's loss at each origin (NaN where an outcome is not in the data); the outcome of
    origin s at horizon h (1-based) is known from origin s + h on. L_m at origin i is the discounted sum
    Σ ρ^(i − h − s) · loss[m, s, h] over the known outcomes of origins s ≥ ``start`` (ρ = ``discount``); with
    ``shared`` it is summed over the horizons and every horizon gets the same weights. Rows with no known outcome
    keep ``prior`` exactly; η = 0 keeps it everywhere (fixed weights). A member with prior 0 stays at 0.
    """
    from scipy.signal import lfilter

    m, n, horizon = loss.shape
    prior = np.asarray(prior, dtype=np.float64)
    out = np.array(np.broadcast_to(prior, (n, horizon, m)))
    if eta == 0 or n == 0:
        return out
    known = np.isfinite(loss).all(axis=0) & (np.arange(n) >= start)[:, None]  # [n, H]
    total = lfilter([1.0], [1.0, -discount], np.where(known[None], loss, 0.0), axis=1)  # [M, n, H]: origins ≤ s
    cum, seen = np.zeros((n, horizon, m)), np.zeros((n, horizon), dtype=bool)
    for h in range(horizon):  # at origin i the outcomes of origins ≤ i − h − 1 are known
        cum[h + 1:, h] = total[:, : max(n - h - 1, 0), h].T
        seen[h + 1:, h] = np.cumsum(known[:, h])[: max(n - h - 1, 0)] > 0
    if shared:
        cum[:] = cum.sum(axis=1, keepdims=True)
        seen[:] = seen.any(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        logits = np.log(prior) - eta * (cum[seen] - cum[seen].min(axis=-1, keepdims=True))
    w = np.exp(logits - logits.max(axis=-1, keepdims=True))
    out[seen] = w / w.sum(axis=-1, keepdims=True)
    return out


def combine(weights: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """The weighted quantiles [n, H, Q] from weights [n, H, M] and members' quantiles [M, n, H, Q]."""
    return np.einsum("nhm,mnhq->nhq", weights, preds)


def member_losses(frame, origins: np.ndarray, preds: np.ndarray, levels, horizon: int) -> np.ndarray:
    """Each member's pinball loss per origin and horizon [M, n, H], mean over the levels, on log-returns divided by
    the causal EWMA σ·√h (so calm and stormy days weigh alike); NaN where the outcome is past the frame's end."""
    scale = standard_scale(frame["Close"].to_numpy(dtype=np.float64), origins, horizon)  # [n, H]
    y = targets(frame, horizon, origins) / scale
    return pinball(y[None], preds / scale[None, :, :, None], levels).mean(axis=-1)


def fold_blocks(preds: list, ys: list, dates: list, folds: int):
    """Cut the validation rows of every series into ``folds`` consecutive blocks of the union of their dates and
    yield (preds [M, n, H, Q], y [n, H], row_weights [n]) per non-empty block, each series weighing the same in
    each block. preds, ys, dates: per series, [M, n_s, H, Q], [n_s, H] and n_s dates."""
    import pandas as pd

    union = pd.DatetimeIndex(sorted(set().union(*[set(d) for d in dates])))
    edges = [union[int(round(k * len(union) / folds))] for k in range(1, folds)]
    for k in range(folds):
        lo = edges[k - 1] if k > 0 else None
        hi = edges[k] if k < folds - 1 else None
        p, y, w = [], [], []
        for pr, yy, d in zip(preds, ys, dates):
            keep = np.ones(len(d), dtype=bool)
            if lo is not None:
                keep &= np.asarray(d >= lo)
            if hi is not None:
                keep &= np.asarray(d < hi)
            if keep.any():
                p.append(pr[:, keep])
                y.append(yy[keep])
                w.append(np.full(int(keep.sum()), 1.0 / keep.sum()))
        if p:
            yield np.concatenate(p, axis=1), np.concatenate(y), np.concatenate(w)


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

    def offer(self, models: dict[str, Forecaster]) -> None:
        """Fitted models this ensemble may reuse as members when ``fit`` refits on all the training dates: one is
        taken if it has the member's kind, data settings and config and was fitted on the very same frames."""
        self.offered = dict(models)

    def _reusable(self, name: str, frames) -> Forecaster | None:
        """The offered model that is exactly what fitting member ``name`` on ``frames`` would train, or None."""
        from ..config import to_dict as as_dict

        candidate = getattr(self, "offered", {}).get(name)
        fresh = self._new_member(name)
        if candidate is None or type(candidate) is not type(fresh) or candidate.data != fresh.data:
            return None
        if hasattr(fresh, "config") and as_dict(candidate.config) != as_dict(fresh.config):
            return None
        if fresh.needs_fit and candidate.fit_info.get("series") != [span(f) for f in frames]:
            return None
        return candidate

    def _fit_member(self, name: str, frames, progress: bool, label: str) -> Forecaster:
        """Member ``name`` fitted on ``frames``; its training log lines and bar say ``label``."""
        member = self._new_member(name)
        if not member.has_quantiles:
            raise StockLLMError(f"--members {name} gives no quantiles, so the ensemble cannot average it: drop it")
        if member.needs_fit:
            member.label = label
            member.fit(frames, progress=progress)
        return member

    def fit(self, frames, progress=True):
        """Fit members before the validation date, weights on the validation blocks, then refit members on all
        (reusing offered ones)."""
        frames = list(frames)
        cfg = self.config
        splits = date_split(frames, self.window_size, self.horizon, cfg.val_size)
        if sum(len(v) for _, v in splits) == 0:
            raise StockLLMError("the ensemble needs a validation part to fit its weights: pass --val_size above 0 "
                                "(e.g. 0.2) and a longer history")
        val_start = min(f.index[v[0]] for f, (_, v) in zip(frames, splits) if len(v))
        early = [e for e in (before(f, val_start) for f in frames) if len(e) >= self.data.min_rows]
        first = {n: self._fit_member(n, early, progress, f"ensemble member {n} (before {val_start:%Y-%m-%d})")
                 for n in cfg.members}
        preds, ys, dates = [], [], []
        for frame, (_, val) in zip(frames, splits):
            if not len(val):
                continue
            scale = standard_scale(frame["Close"].to_numpy(dtype=np.float64), val, self.horizon)
            preds.append(np.stack([first[n].predict_quantiles(frame, val) for n in cfg.members]) / scale[None, :, :, None])
            ys.append(targets(frame, self.horizon, val) / scale)
            dates.append(frame.index[val])
        fold_weights = [fit_weights(p, y, self.quantiles, w) for p, y, w in fold_blocks(preds, ys, dates, cfg.folds)]
        fitted = np.mean(fold_weights, axis=0)
        self.weights = cfg.shrinkage / len(cfg.members) + (1 - cfg.shrinkage) * fitted
        if cfg.refit:
            self.members = {n: self._reusable(n, frames) or self._fit_member(n, frames, progress,
                                                                             f"ensemble member {n}")
                            for n in cfg.members}
        else:
            self.members = first
        reused = [n for n in cfg.members if cfg.refit and self.members[n] is getattr(self, "offered", {}).get(n)]
        self.fit_info = {"series": [span(f) for f in frames], "weights": self.weight_dict(),
                         "fitted_weights": dict(zip(cfg.members, map(float, fitted))),
                         "fold_weights": [dict(zip(cfg.members, map(float, w))) for w in fold_weights],
                         "shrinkage": cfg.shrinkage, "eta": cfg.eta, "discount": cfg.discount,
                         "share_horizons": cfg.share_horizons,
                         "validation_start": f"{val_start:%Y-%m-%d}",
                         "refit": cfg.refit, "reused": reused,
                         "members": {n: m.fit_info for n, m in self.members.items()}}
        return self

    def weight_dict(self) -> dict[str, float]:
        """{member: weight}, in member order."""
        return {n: float(w) for n, w in zip(self.config.members, self.weights)}

    def describe(self) -> str:
        """The weights in words, for the table row: 'fhs 0.62, garch 0.38' (members with weight ≥ 0.005), and how
        they track."""
        text = ", ".join(f"{n} {w:.2f}" for n, w in self.weight_dict().items() if w >= 0.005)
        if self.config.eta > 0:
            text += f" at the start, then tracked (η {self.config.eta:g}, ρ {self.config.discount:g})"
        return text

    def predict_quantiles(self, frame, origins):
        """The members' quantiles weighted as of each origin: the prior weights, moved by each member's loss on the
        outcomes known at the origin since the anchor (replayed from the anchor, so the answer for an origin is the
        same whichever other origins are asked)."""
        if self.weights is None:
            raise StockLLMError("the ensemble was never fitted: train it first (stockllm train --model ensemble)")
        origins = np.asarray(origins, dtype=np.int64)
        used = [i for i, w in enumerate(self.weights) if w > 0]
        names, prior = [self.config.members[i] for i in used], self.weights[used]
        start = self._anchor_row(frame)
        if not len(origins) or start is None or self.config.eta == 0 or origins.max() <= start:
            preds = np.stack([self.members[n].predict_quantiles(frame, origins) for n in names])
            return combine(np.broadcast_to(prior, (len(origins), self.horizon, len(names))), preds)
        first = min(start, int(origins.min()))
        every = np.arange(first, int(origins.max()) + 1)
        preds = np.stack([self.members[n].predict_quantiles(frame, every) for n in names])
        loss = member_losses(frame, every, preds, self.quantiles, self.horizon)
        cfg = self.config
        w = hedge_weights(loss, prior, cfg.eta, cfg.discount, start - first, cfg.share_horizons)
        return combine(w[origins - first], preds[:, origins - first])

    def _anchor_row(self, frame) -> int | None:
        """The first row of ``frame`` on or after the anchor (the day after the training data ends), from which
        the weights track the members' losses; None when the fit record has no training dates."""
        from ..calibration import anchor_date, anchor_row

        anchor = anchor_date(self)
        return None if anchor is None else max(anchor_row(frame, anchor), self.window_size - 1)

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

        saved = meta.get("config", {})
        if isinstance(saved, dict) and "eta" not in saved:  # saved before the weights tracked: fixed, as then
            saved = {**saved, "eta": 0.0}
        model = cls(from_dict(DataConfig, meta.get("data", {}), source=directory),
                    from_dict(EnsembleConfig, saved, source=directory))
        weights = (meta.get("ensemble") or {}).get("weights") if isinstance(meta.get("ensemble"), dict) else None
        names = list(model.config.members)
        if not isinstance(weights, dict) or list(weights) != names or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in weights.values()) or not (
                abs(sum(weights.values()) - 1) < 1e-6):
            raise StockLLMError(f"{directory}/stockllm.json lacks valid ensemble weights (one number ≥ 0 per member, "
                                "summing to 1): the checkpoint is damaged; train again")
        model.weights = np.array([weights[n] for n in names], dtype=np.float64)
        for name in names:
            member = load_forecaster(_member_folder(directory, name), **overrides)
            if member.data.window_size != model.window_size or member.data.horizon != model.horizon or tuple(
                    member.quantiles) != tuple(model.quantiles):
                raise StockLLMError(f"{directory}/{MEMBERS_DIR}/{name} has other window, horizon or levels than the "
                                    "ensemble: the checkpoint is damaged; train again")
            model.members[name] = member
        return model


def _member_folder(directory, name: str) -> Path:
    """The folder of the ensemble member ``name``, after refusing one that is a link (it could lead outside the
    checkpoint, or back into it) or that holds a model of another kind than its name (the members are named by
    kind, so an ensemble can never be its own member)."""
    from ..checkpoint import read_meta

    folder = Path(directory) / MEMBERS_DIR / name
    shown = f"{MEMBERS_DIR}/{name} of the ensemble {Path(directory).name}"
    if folder.is_symlink() or (Path(directory) / MEMBERS_DIR).is_symlink():
        raise StockLLMError(f"{shown} is a link, not a folder inside the checkpoint: the checkpoint is damaged or "
                            "was edited; train again")
    kind = read_meta(folder).get("kind")
    if kind != name:
        raise StockLLMError(f"{shown} holds a {str(kind)[:20]} model, not a {name} one: the checkpoint is damaged or "
                            "was edited; train again")
    return folder
