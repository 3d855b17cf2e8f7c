"""Forecasters that share one contract (``Forecaster``): naive, drift, MLP and the LoRA language model."""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import read_meta
from ..errors import StockLLMError
from .base import Forecaster
from .baselines import DriftForecaster, MLPForecaster, NaiveForecaster

MODEL_NAMES = ("naive", "drift", "garch", "mlp", "lora")


def model_class(name: str) -> type[Forecaster]:
    """The Forecaster class for a model name; GARCH and the LLM are imported lazily (arch, transformers)."""
    if name == "naive":
        return NaiveForecaster
    if name == "drift":
        return DriftForecaster
    if name == "mlp":
        return MLPForecaster
    if name == "garch":
        from .garch import GARCHForecaster

        return GARCHForecaster
    if name == "lora":
        from .llm import LoRAForecaster

        return LoRAForecaster
    raise StockLLMError(f"unknown model {name!r}: choose from {', '.join(MODEL_NAMES)}")


def load_forecaster(directory: str | Path, **overrides) -> Forecaster:
    """Load any checkpoint folder; its ``stockllm.json`` says which model it holds."""
    meta = read_meta(directory)
    return model_class(meta.get("kind", "?")).load(directory, **overrides)


__all__ = ["Forecaster", "NaiveForecaster", "DriftForecaster", "MLPForecaster", "model_class", "load_forecaster",
           "MODEL_NAMES"]
