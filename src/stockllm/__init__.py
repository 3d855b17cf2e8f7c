"""stockllm: forecast the next few daily closes with a LoRA-tuned language model, beside honest baselines.

Python API (README "Python")::

    import stockllm
    model = stockllm.train("nasdaq", model="mlp", save_dir="checkpoints/mlp", epochs=3)
    table = stockllm.predict("nasdaq", checkpoint="checkpoints/mlp")
    model = stockllm.load("checkpoints/mlp")              # or stockllm.NaiveForecaster()
    table = model.predict_df(stockllm.load_ohlcv("nasdaq"), quantiles=(0.1, 0.5, 0.9))
    result = stockllm.evaluate(models="naive,drift,fhs,mlp")  # .metrics, .forecasts, .leaderboard

Names are imported on first use (PEP 562), so ``import stockllm`` and the command line stay fast: torch,
transformers and pandas load only when a model or a frame is needed.
"""

import importlib

__version__ = "0.1.0"

# public name → module that defines it
_EXPORTS = {
    "load": "api", "evaluate": "api", "train": "api", "predict": "api", "Evaluation": "api",
    "evaluate_options": "api",
    "EvaluateOptions": "options", "TrainOptions": "options", "PredictOptions": "options",
    "load_ohlcv": "data", "download_ohlcv": "data", "ohlcv_from_frame": "data", "sample_path": "data",
    "Forecaster": "models", "NaiveForecaster": "models", "DriftForecaster": "models", "MLPForecaster": "models",
    "GARCHForecaster": "models", "LoRAForecaster": "models", "load_forecaster": "models",
    "FHSForecaster": "models", "LSTMForecaster": "models", "EnsembleForecaster": "models",
    "DataConfig": "config", "MLPConfig": "config", "LoRAConfig": "config", "EnsembleConfig": "config",
    "CalibrationConfig": "config", "TrainConfig": "config", "ChronosConfig": "config",
    "next_sessions": "calendars", "calendar_for": "calendars",
    "StockLLMError": "errors", "DataError": "errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stockllm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # cache; later look-ups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))

