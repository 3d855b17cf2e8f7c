"""The Forecaster contract that every model follows (naive, drift, MLP, LoRA-LLM)."""

from __future__ import annotations

from abc import ABC
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from ..checkpoint import atomic_dir, read_meta, write_meta
from ..config import DataConfig, from_dict
from ..errors import StockLLMError
from ..features import to_prices
from ..limits import clip, series_limit
from ..quantiles import median, missing_levels
from .registry import REGISTRY

# Forecaster attribute → the registry field that declares it.
CAPABILITIES = {"needs_fit": "needs_fit", "has_quantiles": "quantiles", "refit_ok": "refit", "any_levels": "any_levels"}


class Forecaster(ABC):
    """Forecasts the distribution of the next H closes after an origin row from the rows up to it.

    fit(frames) trains on one or more OHLCV frames (their windows are pooled); predict_quantiles(frame, origins)
    forecasts the quantiles of many origins at once (backtests) and is what every model implements;
    predict_returns gives the point forecast (the median); forecast(frame) gives the next H closes after the
    last row; save/load use a checkpoint folder. Evaluation code never asks which model it holds.

    A model without a distribution has ``has_quantiles`` False and overrides predict_returns instead; its
    predict_quantiles is then all-NaN, and its quantile metrics show as empty.

    The capabilities (``needs_fit``, ``has_quantiles``, ``refit_ok``: whether ``evaluate --refit_every`` may fit it
    again every few test days; ``any_levels``: parameter-free, gives any levels asked for) are declared once, in
    the registry entry of the class's ``kind``, and copied onto the class when it is defined. A class that is not
    registered (a test's, a wrapper) keeps the defaults below or sets its own.
    """

    kind: ClassVar[str]
    needs_fit: ClassVar[bool] = False
    has_quantiles: ClassVar[bool] = True
    refit_ok: ClassVar[bool] = True
    any_levels: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        entry = REGISTRY.get(cls.__dict__.get("kind"))
        if entry is None:
            return
        for attr, name in CAPABILITIES.items():
            if not isinstance(cls.__dict__.get(attr), property):  # a property computes it (the ensemble's refit)
                setattr(cls, attr, getattr(entry, name))

    def __init__(self, data: DataConfig | None = None):
        self.data = data or DataConfig()
        self.fit_info: dict = {}

    @property
    def label(self) -> str:
        """What this model's training log lines and progress bar are called: its kind, unless set (an ensemble
        names its members "ensemble member mlp", so two fits of one kind in a run tell themselves apart)."""
        return getattr(self, "_label", None) or self.kind

    @label.setter
    def label(self, text: str) -> None:
        self._label = text

    @property
    def window_size(self) -> int:
        return self.data.window_size

    @property
    def horizon(self) -> int:
        return self.data.horizon

    @property
    def quantiles(self) -> tuple[float, ...]:
        """The quantile levels this model forecasts (Q), increasing."""
        return self.data.quantiles

    def fit(self, frames: Sequence[pd.DataFrame], progress: bool = True) -> "Forecaster":
        """Train on the frames' windows (pooled). Models without parameters return at once."""
        return self

    def predict_quantiles(self, frame: pd.DataFrame, origins: np.ndarray) -> np.ndarray:
        """Quantiles of the log-return log(C[t+h]/C[t]), float64 [len(origins), H, Q], non-decreasing along Q,
        at the levels ``self.quantiles``, for each origin row t.

        Only rows <= t may be used (no look-ahead); every origin must have ``window_size - 1`` rows before it.
        """
        if self.has_quantiles:
            raise NotImplementedError(f"{type(self).__name__} must implement predict_quantiles")
        return np.full((len(origins), self.horizon, len(self.quantiles)), np.nan)

    def predict_returns(self, frame: pd.DataFrame, origins: np.ndarray) -> np.ndarray:
        """Point forecast float64 [len(origins), H]: the median log-return (level 0.5, interpolated between the
        levels around it when 0.5 is not one of them)."""
        return median(self.predict_quantiles(frame, origins), self.quantiles)

    def predict_distribution(self, frame: pd.DataFrame, origins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point [n, H], quantiles [n, H, Q]) log-returns from one pass of the model."""
        if self.has_quantiles:
            q = self.predict_quantiles(frame, origins)
            return median(q, self.quantiles), q
        return self.predict_returns(frame, origins), self.predict_quantiles(frame, origins)

    def predict_prices(self, frame: pd.DataFrame, origins: np.ndarray) -> np.ndarray:
        """Predicted closes [len(origins), H] for each origin row (the median)."""
        close = frame["Close"].to_numpy(dtype=np.float64)
        return to_prices(close[np.asarray(origins)], self.predict_returns(frame, origins))

    def price_limit(self, frame: pd.DataFrame) -> float | None:
        """The daily price limit its forecasts for ``frame`` respect (None: none; see ``stockllm.limits``)."""
        return None

    def limited_to(self, setting: str | float = "auto") -> "Forecaster":
        """This model with its forecasts clipped to each series' daily price limit under ``setting`` ("auto": the
        A-share board's, from the ticker; a fraction: that limit for every series); itself for "off"."""
        return self if setting == "off" else PriceLimited(self, setting)

    def check_levels(self, levels) -> None:
        """Refuse quantile levels this model cannot give (a trained head knows only the levels it learnt)."""
        missing = missing_levels(self.quantiles, levels)
        if missing:
            raise StockLLMError(
                f"--quantiles {','.join(f'{q:g}' for q in missing)}: this {self.kind} model gives only the levels "
                f"{','.join(f'{q:g}' for q in self.quantiles)} it was trained for; pass some of those, or train "
                "again with --quantiles")

    def forecast(self, frame: pd.DataFrame, levels=None, calendar: str | None = None) -> pd.DataFrame:
        """The next H closes after the frame's last row, with their quantiles, dated by the exchange's next H
        sessions.

        Returns columns date, horizon, predicted_close, last_close, last_date, model (dates as YYYY-MM-DD) and one
        price-scale column per level (``q0.1``, ...; ``levels`` picks some of ``self.quantiles``, default all),
        one row per horizon. ``calendar``: an exchange_calendars code (XNYS, XSHG, ...) or "business"; None infers
        it from ``frame.attrs["source"]`` (a ticker, or a file named after one; no suffix → XNYS).
        """
        from .pipeline import forecast_table

        levels = self.quantiles if levels is None else tuple(levels)
        self.check_levels(levels)
        table = forecast_table(self, str(frame.attrs.get("source", "")), frame, levels, calendar)
        table["date"] = table["date"].dt.strftime("%Y-%m-%d")
        table["last_date"] = table["last_date"].dt.strftime("%Y-%m-%d")
        first = ["date", "horizon", "predicted_close", "last_close", "last_date", "model"]
        return table[first + [c for c in table.columns if c not in first and c != "ticker"]]

    def predict_df(self, df, quantiles: Sequence[float] | None = None, calendar: str | None = None,
                   price_limits: str | float = "auto") -> pd.DataFrame:
        """Forecast the next H sessions after the last row of each series in ``df`` (Chronos / Nixtla style).

        df: one OHLCV frame (DatetimeIndex or a Date/ds/timestamp column; Open High Low Close Volume in any case),
        a long frame with a ``ticker``, ``unique_id`` or ``item_id`` column, or a dict {ticker: frame}. Each
        series is checked like a CSV file and needs at least ``window_size`` rows.
        quantiles: levels to report (default: the model's own; a trained model gives only levels it was trained
        for, naive and drift any).
        calendar: exchange_calendars code for every series; None infers each from its ticker (600519.SS →
        XSHG, AAPL → XNYS; unknown → business days with a warning).
        price_limits: "auto" (default) clips A-shares to their board's daily limit (``stockllm.limits``), "off"
        never clips, a fraction (0.05) clips every series to it.

        Returns a long frame, one row per ticker and horizon: ticker, date (Timestamp of the session), horizon
        (1..H), predicted_close (the point forecast, the median where the model has quantiles), one column per
        level named q0.1, q0.5, ... (closes, price scale; NaN for a model without quantiles), last_close,
        last_date, model, limited (True where a price limit clipped the quantiles).
        """
        from .pipeline import predict_df

        return predict_df(self, df, quantiles=quantiles, calendar=calendar, price_limits=price_limits)

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
        return cls(from_dict(DataConfig, meta.get("data", {}), source=directory))


class PriceLimited(Forecaster):
    """A fitted Forecaster whose forecasts are clipped to each series' daily price limit (``stockllm.limits``).

    It keeps the inner model's kind (the limit is part of the forecast, not another model) and fits and saves
    nothing; the series is named by ``frame.attrs["source"]`` (a ticker, or a file named after one).
    """

    needs_fit = False

    def __init__(self, inner: Forecaster, setting: str | float = "auto"):
        super().__init__(inner.data)
        self.inner, self.setting = inner, setting
        self.kind, self.has_quantiles, self.fit_info = inner.kind, inner.has_quantiles, inner.fit_info

    def price_limit(self, frame) -> float | None:
        return series_limit(str(frame.attrs.get("source", "")), self.setting)

    def check_levels(self, levels) -> None:
        self.inner.check_levels(levels)

    def predict_quantiles(self, frame, origins):
        return clip(self.inner.predict_quantiles(frame, origins), self.price_limit(frame))

    def predict_returns(self, frame, origins):
        return clip(self.inner.predict_returns(frame, origins), self.price_limit(frame))

    def predict_distribution(self, frame, origins):
        point, q = self.inner.predict_distribution(frame, origins)
        limit = self.price_limit(frame)
        return clip(point, limit), clip(q, limit)

    def num_trainable_parameters(self) -> int:
        return self.inner.num_trainable_parameters()

    def trainable_parameters_detail(self) -> str:
        return self.inner.trainable_parameters_detail()


def span(frame: pd.DataFrame) -> dict:
    """Where a training frame came from and which dates it covers (saved in the checkpoint)."""
    return {"source": frame.attrs.get("source", ""), "first": frame.index[0].strftime("%Y-%m-%d"),
            "last": frame.index[-1].strftime("%Y-%m-%d"), "rows": len(frame)}
