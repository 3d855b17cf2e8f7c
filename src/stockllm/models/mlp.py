"""The seed's MLP (``SimpleStockPredictor``) over scale-free windows, with the quantile head, as a Forecaster; the
LSTM (``models.lstm``) shares its data, training and checkpoint and swaps only the network."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file
from torch import nn

from ..checkpoint import read_safetensors
from ..config import LOOP_LIMITS, DataConfig, MLPConfig, flat_dict, from_dict, old_head_base, to_dict
from ..device import torch_threads
from ..errors import StockLLMError
from ..features import date_split, n_inputs, targets, window_inputs
from ..quantiles import standard_scale
from .base import Forecaster, span
from .fhs import fhs_quantiles
from .heads import QuantileHead, pinball_loss


class SimpleStockPredictor(nn.Module):
    """The seed's MLP: window×(5 + indicators) inputs → hidden, ReLU → a quantile head (H × Q non-crossing
    quantiles of EWMA-standardised log-returns; see ``heads``), not raw prices."""

    def __init__(self, input_size: int, hidden_size: int, horizon: int, levels):
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.relu = nn.ReLU()
        # Zero output layer: the untrained model is exactly its base (FHS or the naive EWMA Gaussian walk), and
        # training must earn every deviation.
        self.fc2 = QuantileHead(hidden_size, horizon, levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, window*(5 + indicators)] standardised inputs → [batch, H, Q] quantiles of log-return ÷
        (σ_EWMA·√h)."""
        return self.fc2(self.relu(self.fc1(x)))


class MLPForecaster(Forecaster):
    """A two-layer MLP over scale-free windows (window × inputs → hidden → H × Q), with a pinball-loss quantile
    head that starts at FHS (or the naive walk), early stopping and weight decay."""

    kind = "mlp"

    def __init__(self, data: DataConfig | None = None, config: MLPConfig | None = None):
        super().__init__(data)
        self.config = config or MLPConfig()
        with torch.random.fork_rng():  # same seed, same initial weights, without touching the global RNG
            torch.manual_seed(self.config.train.seed)
            self.net = self._make_net()
        self.levels = torch.tensor(self.quantiles, dtype=torch.float32)
        self.x_mean = torch.zeros(self.n_inputs)
        self.x_std = torch.ones(self.n_inputs)

    def _make_net(self) -> nn.Module:
        """The network between the standardised window and the quantile head (subclasses swap it)."""
        return SimpleStockPredictor(self.window_size * self.n_inputs, self.config.hidden_size, self.horizon,
                                    self.quantiles)

    @property
    def n_inputs(self) -> int:
        """Inputs per day: OHLCV (5) plus one per indicator in ``--features``."""
        return n_inputs(self.data.features)

    def _xy(self, frames: Sequence[pd.DataFrame], origins: Sequence[np.ndarray]):
        """Inputs [n, W, 5 + len(features)], standardised targets [n, H] (log-return ÷ σ_EWMA·√h) and loss weights
        [n] of the given origins of each frame.

        The weights give every series the same total weight (mean weight 1), so a 20-year index does not drown a
        5-year stock when series are pooled; with one series they are all 1.
        """
        xs, ys, ws = [], [], []
        used = sum(len(o) > 0 for o in origins)
        total = sum(len(o) for o in origins)
        for frame, part in zip(frames, origins):
            xs.append(window_inputs(frame, self.window_size, part, self.data.features))
            ys.append(targets(frame, self.horizon, part) / self._scale(frame, part))
            ws.append(np.full(len(part), total / (used * len(part)) if len(part) else 0.0, dtype=np.float32))
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)

    def _quantile_head(self) -> QuantileHead:
        return next(m for m in self.net.modules() if isinstance(m, QuantileHead))

    @property
    def head_base_z(self) -> np.ndarray:
        """The quantiles [H, Q] of log-return ÷ (σ_EWMA·√h) that the untrained head gives."""
        return self._quantile_head().quantiles.base

    def _scale(self, frame, origins) -> np.ndarray:
        return standard_scale(frame["Close"].to_numpy(dtype=np.float64), origins, self.horizon)

    def _inputs(self, x: np.ndarray) -> torch.Tensor:
        x = (torch.from_numpy(x) - self.x_mean) / self.x_std
        return x.flatten(1)  # [n, W·F], n = 0 included

    def fit(self, frames, progress=True, save_dir=None, resume: bool = False):
        """Train on the pooled windows of ``frames`` with the pinball loss; keep the epoch with the lowest
        validation loss.

        Epoch 0 (the untrained model: filtered historical simulation of the training part with ``head_base``
        "fhs", the naive EWMA Gaussian walk with "gaussian") is a candidate too, so a model that cannot beat its
        start on validation stays there. Every series weighs the same in the loss, however long it is. The loop is
        ``stockllm.loop.fit`` with ``config.train`` (by default a constant learning rate, no clipping, and one
        validation per epoch, so ``patience`` counts epochs). With ``save_dir`` and ``save_every`` > 0 it saves
        the training state at every ``save_every``-th validation (and on SIGINT/SIGTERM) and the best checkpoint
        beside it; ``resume`` continues from the newest state there.
        """
        with torch_threads(1):
            return self._fit(frames, progress, save_dir, resume)

    def _fit(self, frames, progress, save_dir, resume):
        from .. import loop as train

        cfg = self.config
        splits = date_split(frames, self.window_size, self.horizon, cfg.val_size)
        x_tr, y_tr, w_tr = self._xy(frames, [s[0] for s in splits])
        x_va, y_va, w_va = self._xy(frames, [s[1] for s in splits])
        if len(x_tr) < 2:
            raise StockLLMError(f"only {len(x_tr)} training windows: pass a longer history or a smaller --window_size")
        if cfg.head_base == "fhs":  # the standardised quantiles of the training part only, like the scalers
            self._quantile_head().set_base(fhs_quantiles(frames, [s[0] for s in splits], self.horizon,
                                                         self.quantiles))
        # Scalers see the training part only.
        self.x_mean = torch.from_numpy(x_tr.reshape(-1, self.n_inputs).mean(0)).float()
        self.x_std = torch.from_numpy(x_tr.reshape(-1, self.n_inputs).std(0)).float().clamp_min(1e-8)
        xt, yt, wt = self._inputs(x_tr), torch.from_numpy(y_tr).float(), torch.from_numpy(w_tr)
        xv, yv, wv = self._inputs(x_va), torch.from_numpy(y_va).float(), torch.from_numpy(w_va)
        steps_per_epoch = math.ceil(len(xt) / cfg.train.batch_size / cfg.train.grad_accum)

        def loss(net, batch):
            return pinball_loss(net(batch["x"]), batch["y"], self.levels.to(batch["y"].device),
                                weights=batch["w"])[0]

        def validate(net, _progress, _shard) -> tuple[float, float]:
            # (weighted loss sum, total weight); never sharded: the MLP trains whole in every process.
            if len(xv) == 0:
                return 0.0, 0
            device = next(net.parameters()).device
            net.eval()
            with torch.inference_mode():
                mean = loss(net, {"x": xv.to(device), "y": yv.to(device), "w": wv.to(device)}).item()
            return mean * float(wv.sum()), float(wv.sum())

        series = [span(f) for f in frames]
        base = {"series": series, "train_windows": len(xt), "val_windows": len(xv), "start": cfg.head_base,
                "loss": "pinball on log-returns ÷ (EWMA σ·√h), every series weighing the same"}

        def record(info: dict) -> dict:
            # The loop counts optimizer steps; the MLP's contract counts epochs (validation ends each one).
            return {**base, **info, "best_epoch": math.ceil(info["best_step"] / steps_per_epoch),
                    "epochs_run": math.ceil(info["steps"] / steps_per_epoch)}

        def save_checkpoint(info: dict) -> None:
            self.fit_info = record(info)
            self.save(save_dir)

        task = train.Task(
            module=self.net, train_data=range(len(xt)),
            # Batches are index lists: one gather per batch instead of stacking single windows.
            collate=lambda idx: {"x": xt[torch.as_tensor(idx)], "y": yt[torch.as_tensor(idx)],
                                 "w": wt[torch.as_tensor(idx)]},
            loss=loss, validate=validate,
            naive_val=_mean(*validate(self.net, False, (0, 1))),  # the untrained head: FHS or the naive walk
            count=lambda batch: (0, len(batch["y"])), save_checkpoint=save_checkpoint, data_parallel=False,
            fingerprint={"kind": self.kind, "data": to_dict(self.data), "config": self._resume_settings(),
                         "series": series})
        try:
            info = train.fit(task, cfg.train, progress=progress, save_dir=save_dir, resume=resume, label=self.kind)
        finally:
            self.net.cpu().eval()  # predictions run on the CPU, whatever device the loop trained on
        self.fit_info = record(info)
        return self

    def _resume_settings(self) -> dict:
        """The config entries an exact resume must share with the saved state (the rest are per-run limits)."""
        return {k: v for k, v in flat_dict(self.config).items() if k not in LOOP_LIMITS}

    def predict_quantiles(self, frame, origins):
        origins = np.asarray(origins, dtype=np.int64)
        x = self._inputs(window_inputs(frame, self.window_size, origins, self.data.features))
        self.net.eval()
        with torch.inference_mode(), torch_threads(1):
            # One origin per call: a batched matmul rounds differently from the single-origin call that predict
            # makes, and a backtest must score exactly what predict says (≈ 30 µs per origin).
            z = torch.cat([self.net(x[i:i + 1]) for i in range(len(x))]).double().numpy()
        return z * self._scale(frame, origins)[:, :, None]

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters() if p.requires_grad)

    def config_dict(self):
        return to_dict(self.config)

    def _save_weights(self, directory: Path) -> None:
        tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        tensors.update(x_mean=self.x_mean, x_std=self.x_std,
                       head_base=torch.from_numpy(np.ascontiguousarray(self.head_base_z)))
        save_file(tensors, str(directory / "model.safetensors"))

    @classmethod
    def _from_meta(cls, meta, directory, **overrides):
        model = cls(from_dict(DataConfig, meta.get("data", {}), source=directory),
                    from_dict(MLPConfig, old_head_base(meta.get("config", {})), source=directory))
        path = directory / "model.safetensors"
        if not path.is_file():
            raise StockLLMError(f"{directory} has no model.safetensors: the checkpoint is incomplete; train again")
        tensors = read_safetensors(path)
        state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        want = {k: tuple(v.shape) for k, v in model.net.state_dict().items()}
        if {k: tuple(v.shape) for k, v in state.items()} != want:
            raise StockLLMError(f"{path} does not hold the quantile {model.kind} that {directory}/stockllm.json describes "
                                f"(horizon {model.horizon}, {len(model.quantiles)} levels, hidden size "
                                f"{model.config.hidden_size}); it comes from another run or an older stockllm "
                                "version: train again")
        model.net.load_state_dict(state)
        model.x_mean, model.x_std = _scaler(tensors, path, model.n_inputs)
        if "head_base" in tensors:  # checkpoints from before head_base start Gaussian, as they were trained
            try:
                model._quantile_head().set_base(tensors["head_base"].double().numpy())
            except ValueError:
                raise StockLLMError(f"{path}: head_base is not {model.horizon} increasing rows of "
                                    f"{len(model.quantiles)} quantiles; the checkpoint is damaged, train again") from None
        elif model.config.head_base != "gaussian":
            raise StockLLMError(f"{path} lacks the head_base tensor that a {model.config.head_base} head needs: the "
                                "checkpoint is incomplete or damaged; train again")
        return model


def _mean(total: float, count: float) -> float:
    return total / count if count else float("nan")


def _scaler(tensors: dict, path: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The input scaler (x_mean, x_std) of a checkpoint, refused when missing, misshapen or with a zero scale."""
    mean, std = tensors.get("x_mean"), tensors.get("x_std")
    if mean is None or std is None or tuple(mean.shape) != (n,) or tuple(std.shape) != (n,):
        raise StockLLMError(f"{path} lacks the input scaler (x_mean, x_std of {n} values each): the checkpoint is "
                            "damaged or comes from another run; train again")
    if not bool((std > 0).all()):
        raise StockLLMError(f"{path} holds a zero or negative x_std: the checkpoint is damaged or was edited; "
                            "train again")
    return mean, std
