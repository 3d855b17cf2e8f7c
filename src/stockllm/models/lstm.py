"""An LSTM over the MLP's scale-free windows: the same inputs, quantile head, pinball loss, scalers, early stopping
and checkpoint format as the MLP; only the network between the window and the head differs."""

from __future__ import annotations

import torch
from torch import nn

from .mlp import MLPForecaster
from .heads import QuantileHead


class WindowLSTM(nn.Module):
    """One LSTM layer reads the window's days in order; the quantile head reads its last hidden state.

    The head starts at zero, so the untrained model is exactly its base (FHS, or the Gaussian walk)."""

    def __init__(self, n_features: int, hidden_size: int, horizon: int, levels):
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden_size, batch_first=True)
        self.head = QuantileHead(hidden_size, horizon, levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, window, 5 + indicators] standardised inputs → [batch, H, Q] quantiles of log-return ÷ (σ_EWMA·√h)."""
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class LSTMForecaster(MLPForecaster):
    """``WindowLSTM`` trained exactly as the MLP is (``MLPForecaster.fit``): --hidden_size is the LSTM's."""

    kind = "lstm"

    def _make_net(self) -> nn.Module:
        return WindowLSTM(self.n_inputs, self.config.hidden_size, self.horizon, self.quantiles)

    def _inputs(self, x) -> torch.Tensor:
        return (torch.from_numpy(x) - self.x_mean) / self.x_std  # [n, W, 5 + indicators]: the LSTM reads days in order
