"""Quantile heads shared by the MLP and the LLM: non-crossing quantiles of EWMA-standardised log-returns.

A head predicts, for each horizon h, Q quantiles of z[h] = log(C[t+h]/C[t]) ÷ (σ[t]·√h), where σ[t] is the causal
RiskMetrics EWMA volatility at the origin (``quantiles.ewma_sigma``). Its raw outputs become quantiles as a value
at the anchor level (the one nearest 0.5) plus cumulative positive increments (softplus) towards both ends, so
they cannot cross. With raw outputs 0 the head gives the standard normal quantiles exactly: the untrained model is
the naive EWMA Gaussian walk, and training has to earn every deviation from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..quantiles import z_scores

SCALE_FLOOR = 1e-8  # σ·√h below this (a series that never moved) is taken as this, to divide safely


class NonCrossing(nn.Module):
    """Maps raw head outputs [..., H·Q] to non-decreasing quantiles [..., H, Q] (no parameters).

    q[anchor] = z[anchor] + raw[anchor]; every other level steps away from its neighbour towards the anchor by
    gap·softplus(raw)/log 2, where gap is the standard normal distance between the two levels. raw = 0 gives
    the standard normal quantiles.
    """

    def __init__(self, horizon: int, levels: Sequence[float]):
        super().__init__()
        levels = np.asarray(levels, dtype=np.float64)
        z = z_scores(levels)
        self.horizon, self.n_levels = horizon, len(levels)
        self.anchor = int(np.argmin(np.abs(levels - 0.5)))
        gaps = np.zeros(len(levels))
        gaps[self.anchor + 1:] = np.diff(z)[self.anchor:]  # above: z[j] - z[j-1]
        gaps[:self.anchor] = np.diff(z)[:self.anchor]  # below: z[j+1] - z[j]
        self.register_buffer("z_anchor", torch.tensor(float(z[self.anchor])), persistent=False)
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


def pinball_loss(pred: torch.Tensor, y: torch.Tensor, levels: torch.Tensor,
                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Mean pinball loss over targets, horizons and levels, and the number of targets counted.

    pred: [..., H, Q] quantiles; y: [..., H] targets (same scale); levels: [Q]; mask: [...] bool (True = count).
    ρ_τ(y, q) = max(τ·(y − q), (τ − 1)·(y − q)).
    """
    diff = y.unsqueeze(-1) - pred
    loss = torch.maximum(levels * diff, (levels - 1) * diff)
    if mask is None:
        return loss.mean(), int(np.prod(y.shape[:-1]))
    m = mask.to(loss.dtype)[..., None, None]
    n = int(mask.sum())
    return (loss * m).sum() / max(n * loss.shape[-1] * loss.shape[-2], 1), n
