"""Quantile heads shared by the MLP, the LSTM and the LLM: non-crossing quantiles of EWMA-standardised log-returns.

A head predicts, for each horizon h, Q quantiles of z[h] = log(C[t+h]/C[t]) ÷ (σ[t]·√h), where σ[t] is the causal
RiskMetrics EWMA volatility at the origin (``quantiles.ewma_sigma``). Its raw outputs become quantiles as a value
at the anchor level (the one nearest 0.5) plus cumulative positive increments (softplus) towards both ends, so
they cannot cross. With raw outputs 0 the head gives its *base* quantiles exactly: filtered historical
simulation's standardised quantiles of the training part (``head_base = "fhs"``, the default, see ``models.fhs``)
or the standard normal ones (``"gaussian"``: the naive EWMA Gaussian walk). The untrained model is that baseline,
and training has to earn every deviation from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..quantiles import z_scores


class NonCrossing(nn.Module):
    """Maps raw head outputs [..., H·Q] to non-decreasing quantiles [..., H, Q] (no parameters).

    q[h, anchor] = base[h, anchor] + raw[h, anchor]; every other level steps away from its neighbour towards the
    anchor by gap·softplus(raw)/log 2, where gap is the distance between the two levels' base quantiles. raw = 0
    gives the base quantiles: the standard normal ones unless ``set_base`` gave others.
    """

    def __init__(self, horizon: int, levels: Sequence[float]):
        super().__init__()
        levels = np.asarray(levels, dtype=np.float64)
        self.horizon, self.n_levels = horizon, len(levels)
        self.anchor = int(np.argmin(np.abs(levels - 0.5)))
        self.set_base(np.tile(z_scores(levels), (horizon, 1)))

    def set_base(self, base: np.ndarray) -> None:
        """Start from ``base`` [H, Q] (strictly increasing along Q): the quantiles that raw = 0 gives."""
        base = np.asarray(base, dtype=np.float64)
        if base.shape != (self.horizon, self.n_levels) or not (np.diff(base, axis=1) > 0).all():
            raise ValueError(f"a head base must be [{self.horizon}, {self.n_levels}] and strictly increasing")
        k = self.anchor
        gaps = np.zeros(base.shape)
        gaps[:, k + 1:] = np.diff(base, axis=1)[:, k:]  # above: b[j] - b[j-1]
        gaps[:, :k] = np.diff(base, axis=1)[:, :k]  # below: b[j+1] - b[j]
        self.base = base
        self.register_buffer("z_anchor", torch.tensor(base[:, k:k + 1], dtype=torch.float32), persistent=False)
        self.register_buffer("gaps", torch.tensor(gaps / math.log(2), dtype=torch.float32), persistent=False)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        raw = raw.unflatten(-1, (self.horizon, self.n_levels))
        k = self.anchor
        steps = F.softplus(raw) * self.gaps  # [..., H, Q], > 0 (the anchor's entry is unused)
        center = self.z_anchor + raw[..., k:k + 1]
        above = center + torch.cumsum(steps[..., k + 1:], dim=-1)
        below = center - torch.cumsum(steps[..., :k].flip(-1), dim=-1).flip(-1)
        return torch.cat([below, center, above], dim=-1)


class QuantileHead(nn.Module):
    """Linear layer (features [..., d] → H·Q, zero-initialised) followed by ``NonCrossing`` → [..., H, Q]."""

    def __init__(self, in_features: int, horizon: int, levels: Sequence[float]):
        super().__init__()
        self.linear = nn.Linear(in_features, horizon * len(levels), dtype=torch.float32)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.quantiles = NonCrossing(horizon, levels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.quantiles(self.linear(features))

    def set_base(self, base: np.ndarray) -> None:
        """The quantiles [H, Q] the zero-initialised head starts at (see ``NonCrossing.set_base``)."""
        device = self.linear.weight.device
        self.quantiles.set_base(base)
        self.quantiles.to(device)


def pinball_loss(pred: torch.Tensor, y: torch.Tensor, levels: torch.Tensor,
                 mask: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Mean pinball loss over targets, horizons and levels, and the number of targets counted.

    pred: [..., H, Q] quantiles; y: [..., H] targets (same scale); levels: [Q]; mask: [...] bool (True = count);
    weights: [N] per-target weights for pred [N, H, Q] (a weighted mean; not with ``mask``).
    ρ_τ(y, q) = max(τ·(y − q), (τ − 1)·(y − q)).
    """
    diff = y.unsqueeze(-1) - pred
    loss = torch.maximum(levels * diff, (levels - 1) * diff)
    if weights is not None:
        w = weights.to(loss.dtype)
        return (loss.mean(dim=(-1, -2)) * w).sum() / w.sum(), len(w)
    if mask is None:
        return loss.mean(), int(np.prod(y.shape[:-1]))
    m = mask.to(loss.dtype)[..., None, None]
    n = int(mask.sum())
    return (loss * m).sum() / max(n * loss.shape[-1] * loss.shape[-2], 1), n
