"""Forecasters that share one contract (``Forecaster``): naive, drift, GARCH, MLP, LSTM, the LoRA language model
and the statistical peers.

Classes load on first use (PEP 562): ``from stockllm.models import MODEL_NAMES`` costs nothing, so the CLI can
check ``--models`` before torch, arch or transformers load.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import StockLLMError

MODEL_NAMES = ("naive", "drift", "fhs", "garch", "mlp", "lstm", "lora", "ensemble", "theta", "autoets", "autoarima",
               "chronos")
WINDOW_NETS = ("mlp", "lstm")  # the networks over windows that MLPConfig configures and one training contract fits

# class name → (submodule, model name)
_CLASSES = {"NaiveForecaster": (".baselines", "naive"), "DriftForecaster": (".baselines", "drift"),
            "MLPForecaster": (".baselines", "mlp"), "LSTMForecaster": (".lstm", "lstm"),
            "GARCHForecaster": (".garch", "garch"), "FHSForecaster": (".fhs", "fhs"),
            "EnsembleForecaster": (".ensemble", "ensemble"),
            "LoRAForecaster": (".llm", "lora"), "ThetaPeer": (".peers", "theta"),
            "AutoETSPeer": (".peers", "autoets"), "AutoARIMAPeer": (".peers", "autoarima"),
            "ChronosPeer": (".peers", "chronos")}


def model_class(name: str):
    """The Forecaster class for a model name (imported now: torch for the MLP, arch for GARCH, transformers for
    the LLM,
    statsforecast or chronos for the peers)."""
    for cls_name, (module, model_name) in _CLASSES.items():
        if model_name == name:
            return getattr(importlib.import_module(module, __name__), cls_name)
    raise StockLLMError(f"unknown model {name!r}: choose from {', '.join(MODEL_NAMES)}")


def load_forecaster(directory: str | Path, **overrides):
    """Load any checkpoint folder; its ``stockllm.json`` says which model it holds."""
    from ..checkpoint import read_meta

    meta = read_meta(directory)
    return model_class(meta.get("kind", "?")).load(directory, **overrides)


def __getattr__(name: str):
    if name == "Forecaster":
        from .base import Forecaster

        return Forecaster
    if name in _CLASSES:
        return getattr(importlib.import_module(_CLASSES[name][0], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Forecaster", *_CLASSES, "model_class", "load_forecaster", "MODEL_NAMES", "WINDOW_NETS"]
