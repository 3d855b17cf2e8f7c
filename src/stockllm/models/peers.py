"""The field's forecasters beside ours, on the same contract: statsforecast's Theta, AutoETS and AutoARIMA, and
zero-shot Chronos (Bolt or 2).

Both families forecast closes (as their users run them) and their quantiles of the close become quantiles of
the log-return log(Ĉ[t+h]/C[t]). Both read the history up to t only, and the forecast for t does not depend on
the other origins asked: statsforecast models are fitted once on the training frames, then applied to the
history up to each origin with those fixed parameters (``forward``, as statsforecast's own
``cross_validation(refit=False)`` does); Chronos reads a fixed number of days ending at t.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from ..config import ChronosConfig, DataConfig, from_dict
from ..errors import StockLLMError
from .base import Forecaster, span


def _levels_to_intervals(levels) -> list[int]:
    """Central interval widths (percent) whose bounds are the given quantile levels: 0.1 and 0.9 → 80."""
    return sorted({int(round(100 * abs(1 - 2 * q))) for q in levels if abs(q - 0.5) > 1e-9})


def _log_returns(prices: np.ndarray, last_close: np.ndarray) -> np.ndarray:
    """Price quantiles [n, H, Q] → log-return quantiles, non-decreasing along Q. A price at or below zero (a wide
    Gaussian interval on a low-priced series) is floored at 1e-9 × the last close."""
    last = np.asarray(last_close, dtype=np.float64)[:, None, None]
    out = np.log(np.maximum(prices, 1e-9 * last) / last)
    return np.maximum.accumulate(out, axis=-1)


def series_key(frame: pd.DataFrame) -> tuple[str, str]:
    """Which series a frame is: its source and first date (a training part and the full frame share them)."""
    return str(frame.attrs.get("source", "")), frame.index[0].strftime("%Y-%m-%d") if len(frame) else ""


class StatsForecastPeer(Forecaster):
    """A statsforecast model fitted on each training series' closes, then applied with fixed parameters to the
    history up to each origin (``forward``). Quantiles come from its ``level=`` intervals (lo-P, hi-P) mapped
    onto our levels: level q < 0.5 is the lower bound of the central 100·(1 − 2q)% interval, q > 0.5 the upper
    bound of the 100·(2q − 1)% one, and 0.5 the point forecast.

    statsforecast models are local: one fit per series, kept by the series' source and first date. Predicting a
    series it was not fitted on is refused.
    """

    statsforecast_name: ClassVar[str]

    def __init__(self, data: DataConfig | None = None, config=None):
        super().__init__(data)
        self._models: dict[tuple[str, str], object] = {}
        self._new_model()  # the missing extra is reported before anything is fitted

    def _new_model(self):
        try:
            import statsforecast.models as sf
        except ImportError:
            raise StockLLMError(f"the {self.kind} model needs statsforecast: pip install 'stockllm[peers]'") from None
        return self._make(sf)

    def _make(self, sf):
        raise NotImplementedError

    def fit(self, frames, progress=True):
        """Fit one model per frame on its closes (float64)."""
        self._models = {}
        for frame in frames:
            model = self._new_model()
            self._models[series_key(frame)] = model.fit(y=frame["Close"].to_numpy(dtype=np.float64))
        self.fit_info = {"series": [span(f) for f in frames], "library": "statsforecast",
                         "model": self.statsforecast_name}
        return self

    def predict_quantiles(self, frame, origins):
        model = self._models.get(series_key(frame))
        if model is None:
            raise StockLLMError(f"{self.kind} was fitted on other series than {frame.attrs.get('source', 'this one')}: "
                                "statsforecast models are fitted per series; fit it on this one")
        origins = np.asarray(origins, dtype=np.int64)
        close = frame["Close"].to_numpy(dtype=np.float64)
        widths = _levels_to_intervals(self.quantiles)
        out = np.empty((len(origins), self.horizon, len(self.quantiles)))
        for i, t in enumerate(origins):
            res = model.forward(y=close[: t + 1], h=self.horizon, level=widths or None)
            for j, q in enumerate(self.quantiles):
                width = int(round(100 * abs(1 - 2 * q)))
                key = "mean" if width == 0 else f"{'lo' if q < 0.5 else 'hi'}-{width}"
                out[i, :, j] = res[key]
        return _log_returns(out, close[origins])

    def save(self, directory):
        raise StockLLMError(f"{self.kind} has no checkpoint: statsforecast refits it in seconds; score it with "
                            "stockllm evaluate --models ...")


class ThetaPeer(StatsForecastPeer):
    """statsforecast ``Theta`` (the standard theta method, STM), season length 1."""

    kind = "theta"
    statsforecast_name = "Theta"

    def _make(self, sf):
        return sf.Theta(season_length=1)


class AutoETSPeer(StatsForecastPeer):
    """statsforecast ``AutoETS`` (exponential smoothing, components chosen by AICc), season length 1."""

    kind = "autoets"
    statsforecast_name = "AutoETS"

    def _make(self, sf):
        return sf.AutoETS(season_length=1)


class AutoARIMAPeer(StatsForecastPeer):
    """statsforecast ``AutoARIMA`` (orders chosen by AICc, as R's forecast::auto.arima), season length 1."""

    kind = "autoarima"
    statsforecast_name = "AutoARIMA"

    def _make(self, sf):
        return sf.AutoARIMA(season_length=1)


class ChronosPeer(Forecaster):
    """Chronos (Bolt or 2) through ``chronos-forecasting``, zero-shot on the closes: no fit. Its quantiles of the
    close at our levels (the pipeline interpolates between the levels it was trained on) become log-return
    quantiles."""

    kind = "chronos"

    def __init__(self, data: DataConfig | None = None, config: ChronosConfig | None = None):
        super().__init__(data)
        self.config = config or ChronosConfig()
        try:
            import chronos  # noqa: F401
        except ImportError:
            raise StockLLMError("the chronos model needs chronos-forecasting: pip install 'stockllm[chronos]'") from None
        self._pipeline = None

    def _load(self):
        from chronos import BaseChronosPipeline

        from ..device import resolve_device
        from ..hf import resolve_model_path

        device, _ = resolve_device(self.config.device)
        path = Path(self.config.model_path).expanduser()
        if path.exists() and not (path / "config.json").is_file():
            raise StockLLMError(f"--chronos_model {self.config.model_path} has no config.json: pass a Chronos model "
                                "folder or a Hugging Face id such as amazon/chronos-bolt-small")
        if not path.exists():
            path = resolve_model_path(self.config.model_path, "--chronos_model")  # a Hub id: downloaded once, or a clear offline error
        try:
            self._pipeline = BaseChronosPipeline.from_pretrained(str(path), device_map=str(device),
                                                                 dtype="float32")
        except (ValueError, OSError) as exc:
            raise StockLLMError(f"--chronos_model {self.config.model_path} is not a Chronos model that "
                                f"chronos-forecasting can load: {str(exc).splitlines()[0]}") from None
        self.fit_info = {"model_path": self.config.model_path, "pipeline": type(self._pipeline).__name__}

    def predict_quantiles(self, frame, origins):
        import torch

        if self._pipeline is None:
            self._load()
        origins = np.asarray(origins, dtype=np.int64)
        close = frame["Close"].to_numpy(dtype=np.float64)
        levels = list(self.quantiles)
        out = np.empty((len(origins), self.horizon, len(levels)))
        bs = self.config.batch_size
        for i in range(0, len(origins), bs):
            batch = origins[i:i + bs]
            contexts = [torch.tensor(close[max(0, t + 1 - self.config.context_days): t + 1], dtype=torch.float32)
                        for t in batch]
            q, _ = self._pipeline.predict_quantiles(contexts, prediction_length=self.horizon, quantile_levels=levels)
            out[i:i + len(batch)] = q.detach().double().cpu().numpy()
        return _log_returns(out, close[origins])

    def config_dict(self):
        return dataclasses.asdict(self.config)

    @classmethod
    def _from_meta(cls, meta, directory, **overrides):
        """Rebuild with the saved model id, context and batch size (a saved chronos-2 stays chronos-2); only the
        device may be overridden, and it is never taken from the file."""
        config = from_dict(ChronosConfig, meta.get("config", {}), source=directory)
        config.device = overrides.get("device") or "auto"
        return cls(from_dict(DataConfig, meta.get("data", {}), source=directory), config)
