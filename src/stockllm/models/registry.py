"""The registry of model kinds: each declared once, with its class, config, extra and capabilities.

It imports nothing of the models themselves (classes load on first use), so configs and the CLI can read
it before torch, arch or transformers load.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import StockLLMError


@dataclass(frozen=True)
class ModelSpec:
    """One model kind. ``module``/``cls``: where its Forecaster lives (relative to this package); ``config``: its
    config dataclass as "module:Class" (relative to the package root), None when it has no settings; ``extra``:
    the ``pip install 'stockllm[EXTRA]'`` that brings its library (None: the core install); ``overrides``: the
    keyword arguments ``load`` accepts for it.

    Capabilities are declared here only; a Forecaster class reads its own from here (``Forecaster.needs_fit``,
    ``has_quantiles`` from ``quantiles``, ``refit_ok`` from ``refit``, ``any_levels``). ``loop``: the training loop
    that fits it ("windows": the networks over windows that MLPConfig configures; "llm"), None when it is fitted
    without one (no resumable training state)."""

    name: str
    module: str
    cls: str
    summary: str
    config: str | None = None
    extra: str | None = None
    closes_only: bool = False  # reads only the closes, so a Date,Close (or ds,y) file serves it
    needs_fit: bool = True
    quantiles: bool = True
    refit: bool = True
    data_parallel: bool = False
    any_levels: bool = False  # parameter-free: gives any quantile levels asked for (a new instance at those levels)
    loop: str | None = None
    overrides: tuple[str, ...] = ()

    def load_class(self):
        """The Forecaster class (imported now: torch for the networks, arch for GARCH, transformers for the LLM)."""
        return getattr(importlib.import_module(self.module, __package__), self.cls)

    def config_class(self):
        """The config dataclass, or None."""
        if self.config is None:
            return None
        module, name = self.config.split(":")
        return getattr(importlib.import_module(module, __package__.rsplit(".", 1)[0]), name)


REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("naive", ".baselines", "NaiveForecaster", "driftless random walk, Gaussian with EWMA volatility",
              needs_fit=False, closes_only=True, any_levels=True),
    ModelSpec("drift", ".baselines", "DriftForecaster", "the window's mean return extended, naive's spread",
              needs_fit=False, closes_only=True, any_levels=True),
    ModelSpec("fhs", ".fhs", "FHSForecaster", "filtered historical simulation: EWMA σ × empirical standardised "
              "quantiles", closes_only=True),
    ModelSpec("garch", ".garch", "GARCHForecaster", "GARCH(1,1) volatility with Student-t errors (arch)",
              closes_only=True),
    ModelSpec("mlp", ".mlp", "MLPForecaster", "an MLP over scale-free windows, quantile head",
              config=".config:MLPConfig", loop="windows"),
    ModelSpec("lstm", ".lstm", "LSTMForecaster", "an LSTM over the MLP's windows, quantile head",
              config=".config:MLPConfig", loop="windows"),
    ModelSpec("lora", ".llm", "LoRAForecaster", "the language model: codec text → base model + LoRA → quantile head",
              config=".config:LoRAConfig", refit=False, data_parallel=True, loop="llm",
              overrides=("model_path", "device", "trust_remote_code", "train_config")),
    ModelSpec("ensemble", ".ensemble", "EnsembleForecaster", "validation-weighted quantile average of --members",
              config=".config:EnsembleConfig", overrides=("model_path", "device", "trust_remote_code")),
    ModelSpec("theta", ".peers", "ThetaPeer", "statsforecast's Theta", extra="peers", closes_only=True),
    ModelSpec("autoets", ".peers", "AutoETSPeer", "statsforecast's AutoETS", extra="peers", closes_only=True),
    ModelSpec("autoarima", ".peers", "AutoARIMAPeer", "statsforecast's AutoARIMA", extra="peers", closes_only=True),
    ModelSpec("chronos", ".peers", "ChronosPeer", "Chronos-Bolt / Chronos-2 zero-shot (chronos-forecasting)",
              config=".config:ChronosConfig", extra="chronos", needs_fit=False, closes_only=True,
              overrides=("device",)),
)}
MODEL_NAMES = tuple(REGISTRY)
# Sets derived from the capabilities above, never spelled out elsewhere.
WINDOW_NETS = tuple(n for n, s in REGISTRY.items() if s.loop == "windows")  # mlp, lstm: MLPConfig and one loop
TRAINED = tuple(n for n, s in REGISTRY.items() if s.loop is not None)  # fitted by the training loop (resumable)
TRAINABLE = tuple(n for n, s in REGISTRY.items() if s.needs_fit and s.extra is None)  # what `train` saves
UNFITTED = tuple(n for n, s in REGISTRY.items() if not s.needs_fit and s.extra is None)  # run without a checkpoint


def spec(name: str) -> ModelSpec:
    """The registry entry of a model name, or a one-line error listing the names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise StockLLMError(f"unknown model {name!r}: choose from {', '.join(MODEL_NAMES)}") from None


def model_class(name: str):
    """The Forecaster class for a model name (imported now)."""
    return spec(name).load_class()


def load_forecaster(directory: str | Path, **overrides):
    """Load any checkpoint folder; its ``stockllm.json`` says which model it holds. ``overrides`` other than the
    model's own (``ModelSpec.overrides``) are refused, naming the valid ones; None values count as not given."""
    from ..checkpoint import read_meta

    meta = read_meta(directory)
    kind = meta.get("kind", "?")
    entry = REGISTRY.get(kind) if isinstance(kind, str) else None
    if entry is None:
        raise StockLLMError(f"{directory} holds a model of kind {kind!r}, which this stockllm does not know: use the "
                            "stockllm version that wrote it, or train again")
    given = {k: v for k, v in overrides.items() if v is not None}
    stray = sorted(set(given) - set(entry.overrides))
    if stray:
        valid = ", ".join(entry.overrides) or "none"
        raise StockLLMError(f"load() got {', '.join(stray)}, which a {kind} checkpoint does not take (valid: {valid})")
    return entry.load_class().load(directory, **given)
