"""The Forecaster contract that every model follows (naive, drift, MLP, LoRA-LLM)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from ..checkpoint import atomic_dir, read_meta, write_meta
from ..config import DataConfig
from ..errors import StockLLMError
from ..features import future_dates, to_prices


class Forecaster(ABC):
    """Forecasts the next H closes after an origin row from the ``window_size`` rows ending there.

    fit(frames) trains on one or more OHLCV frames (their windows are pooled); predict_returns(frame, origins)
    forecasts many origins at once (backtests); forecast(frame) gives the next H closes after the last row;
    save/load use a checkpoint folder. Evaluation code never asks which model it holds.
    """

    kind: ClassVar[str]
    needs_fit: ClassVar[bool] = False

    def __init__(self, data: DataConfig | None = None):
        self.data = data or DataConfig()
        self.fit_info: dict = {}

    @property
    def window_size(self) -> int:
        return self.data.window_size

    @property
    def horizon(self) -> int:
        return self.data.horizon

    def fit(self, frames: Sequence[pd.DataFrame], progress: bool = True) -> "Forecaster":
        """Train on the frames' windows (pooled). Models without parameters return at once."""
        return self

    @abstractmethod
    def predict_returns(self, frame: pd.DataFrame, origins: np.ndarray) -> np.ndarray:
        """Predicted log-returns float64 [len(origins), H]: log(Ĉ[t+h]/C[t]) for each origin row t.

        Only rows <= t may be used (no look-ahead); every origin must have ``window_size - 1`` rows before it.
        """

    def predict_prices(self, frame: pd.DataFrame, origins: np.ndarray) -> np.ndarray:
        """Predicted closes [len(origins), H] for each origin row."""
        close = frame["Close"].to_numpy(dtype=np.float64)
        return to_prices(close[np.asarray(origins)], self.predict_returns(frame, origins))

    def forecast(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The next H closes after the frame's last row.

        Returns columns date, horizon, predicted_close, last_close, last_date, model (one row per horizon).
        """
        if len(frame) < self.window_size:
            raise StockLLMError(
                f"{frame.attrs.get('source', 'the data')} has {len(frame)} rows but the model needs "
                f"{self.window_size} (its window): pass a longer history")
        origin = np.array([len(frame) - 1])
        prices = self.predict_prices(frame, origin)[0]
        return pd.DataFrame({
            "date": future_dates(frame.index[-1], self.horizon).strftime("%Y-%m-%d"),
            "horizon": np.arange(1, self.horizon + 1),
            "predicted_close": prices,
            "last_close": float(frame["Close"].iloc[-1]),
            "last_date": frame.index[-1].strftime("%Y-%m-%d"),
            "model": self.kind,
        })

    def num_trainable_parameters(self) -> int:
        """Parameters that training changes (0 for naive and drift)."""
        return 0

    def trainable_parameters_detail(self) -> str:
        """A breakdown appended to the parameter count in the CLI report ('' when there is none)."""
        return ""

    # --- checkpoints -------------------------------------------------------------------------------------
    def config_dict(self) -> dict:
        """Model-specific resolved config saved in stockllm.json."""
        return {}

    def extra_meta(self) -> dict:
        """More stockllm.json entries (the LLM records its base model and codec here)."""
        return {}

    def _save_weights(self, directory: Path) -> None:
        """Write safetensors files into ``directory`` (nothing for parameter-free models)."""

    def save(self, directory: str | Path) -> Path:
        """Write a checkpoint folder atomically: stockllm.json plus safetensors weights."""
        with atomic_dir(directory) as tmp:
            self._save_weights(tmp)
            write_meta(tmp, {"kind": self.kind, "data": vars(self.data).copy(), "config": self.config_dict(),
                             "fit": self.fit_info, **self.extra_meta()})
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path, **overrides) -> "Forecaster":
        """Rebuild a forecaster from a checkpoint folder written by ``save``."""
        meta = read_meta(directory)
        if meta.get("kind") != cls.kind:
            raise StockLLMError(f"{directory} holds a {meta.get('kind')!r} model, not {cls.kind!r}")
        model = cls._from_meta(meta, Path(directory), **overrides)
        model.fit_info = meta.get("fit", {})
        return model

    @classmethod
    def _from_meta(cls, meta: dict, directory: Path, **overrides) -> "Forecaster":
        return cls(DataConfig(**meta["data"]))


def span(frame: pd.DataFrame) -> dict:
    """Where a training frame came from and which dates it covers (saved in the checkpoint)."""
    return {"source": frame.attrs.get("source", ""), "first": frame.index[0].strftime("%Y-%m-%d"),
            "last": frame.index[-1].strftime("%Y-%m-%d"), "rows": len(frame)}
