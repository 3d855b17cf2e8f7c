"""The Python API: ``stockllm.load``, ``Forecaster.predict_df`` and ``stockllm.evaluate`` (see README "Python").

Frames go in the habits users bring from Nixtla (``unique_id``, ``ds``) and Chronos (``item_id``,
``timestamp``): one OHLCV frame, a long frame with a ticker column, or a dict of frames. Forecasts come back as
one long frame, one row per ticker and horizon.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence

import pandas as pd

from .config import DataConfig, LoRAConfig, MLPConfig
from .errors import StockLLMError
from .models.pipeline import as_frames, forecast_table, min_history, predict_df  # noqa: F401 - re-exported

def load(checkpoint, **overrides):
    """Load a checkpoint folder written by ``stockllm train`` (or ``Forecaster.save``) and return its Forecaster.

    ``overrides`` (LLM only): ``model_path`` (another copy of the same base model), ``device``
    ("auto", "cpu", "cuda", "mps"), ``trust_remote_code``; a checkpoint never turns remote code on by itself.
    """
    from .models import load_forecaster

    return load_forecaster(checkpoint, **overrides)


@dataclasses.dataclass
class Evaluation:
    """What ``stockllm.evaluate`` returns.

    metrics: one row per series, model and horizon (mae, rmse, mape, mae_vs_naive, dir_acc, dm_pvalue, ...).
    forecasts: one row per series, model, origin and horizon (actual and predicted closes, price scale).
    leaderboard: one row per model across series, when the evaluation module provides it; otherwise None.
    """

    metrics: pd.DataFrame
    forecasts: pd.DataFrame
    leaderboard: pd.DataFrame | None = None


def evaluate(data=None, models: str | Sequence[str] = ("naive", "drift", "fhs", "mlp"), *, test_size: float = 0.2,
             window_size: int = DataConfig.window_size, horizon: int = DataConfig.horizon,
             features: str | Sequence[str] = (), progress: bool = False, **training) -> Evaluation:
    """Backtest, as ``stockllm evaluate`` runs it: one cutoff date for all series (the first date of the last
    ``test_size`` share of their dates), fit on the dates before it, forecast every origin on or after it, score
    beside naive (always included).

    data: anything :func:`as_frames` reads; None means the bundled NASDAQ sample. models: names from
    ``stockllm.models.MODEL_NAMES`` (a list or "naive,mlp"). features: technical indicators for mlp, lstm and lora
    ("rsi,macd" or a list; see
    ``stockllm.indicators.INDICATORS``). training: MLPConfig / LoRAConfig fields (epochs=5, model_path=..., ...),
    each given to the models whose config has it. Returns an :class:`Evaluation`.
    """
    from .evaluate import evaluate as run_backtest
    from .models import MODEL_NAMES, WINDOW_NETS, model_class

    names = [m.strip() for m in (models.split(",") if isinstance(models, str) else models) if m.strip()]
    unknown = [m for m in names if m not in MODEL_NAMES]
    if unknown:
        raise StockLLMError(f"unknown model(s) {unknown}: choose from {', '.join(MODEL_NAMES)}")
    if "naive" not in names:
        names.insert(0, "naive")
    fields = {cls: {f.name for f in dataclasses.fields(cls)} for cls in (MLPConfig, LoRAConfig)}
    stray = sorted(set(training) - fields[MLPConfig] - fields[LoRAConfig])
    if stray:
        raise TypeError(f"evaluate() got unknown training settings {stray}: use MLPConfig or LoRAConfig fields")
    config = DataConfig(window_size=window_size, horizon=horizon, features=features)
    frames = as_frames("nasdaq" if data is None else data, config.min_rows * 3,
                       f"window {window_size} + horizon {horizon}, for both the training and test part")
    factories = {}
    for name in names:
        cls = model_class(name)
        cfg_cls = MLPConfig if name in WINDOW_NETS else {"lora": LoRAConfig}.get(name)
        if cfg_cls is None:
            factories[name] = lambda cls=cls: cls(config)
        else:
            cfg = cfg_cls(**{k: v for k, v in training.items() if k in fields[cfg_cls]})
            factories[name] = lambda cls=cls, cfg=cfg: cls(config, cfg)
    result = run_backtest(frames, factories, test_size=test_size, progress=progress,
                          log=print if progress else (lambda *_: None))
    metrics, forecasts = result[0], result[1]
    # importlib: `from . import evaluate` would give this function back (see stockllm/__init__.py).
    board = getattr(importlib.import_module(".evaluate", __package__), "leaderboard", None)
    return Evaluation(metrics, forecasts, board(metrics, forecasts) if callable(board) else None)
