"""Forecasters that share one contract (``Forecaster``), and the registry that names them.

Every model kind is declared once in ``REGISTRY``: its class, its config class, the pip extra its library comes
from, what it can do (needs a fit, gives quantiles, may be refitted every few test days, trains data-parallel under
several processes), the overrides ``load`` accepts and a one-line summary. The CLI's ``--models`` list, its help and
its errors, ``stockllm.evaluate`` and ``load`` all read it.

Classes load on first use (PEP 562): ``from stockllm.models import MODEL_NAMES`` costs nothing, so the CLI can
check ``--models`` before torch, arch or transformers load.
"""

from __future__ import annotations

from .registry import (MODEL_NAMES, REGISTRY, TRAINABLE, TRAINED, UNFITTED, WINDOW_NETS, ModelSpec, load_forecaster,
                       model_class, spec)

_CLASSES = {s.cls: s for s in REGISTRY.values()}


def __getattr__(name: str):
    if name == "Forecaster":
        from .base import Forecaster

        return Forecaster
    if name in _CLASSES:
        return _CLASSES[name].load_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Forecaster", *_CLASSES, "model_class", "load_forecaster", "spec", "REGISTRY", "ModelSpec",
           "MODEL_NAMES", "WINDOW_NETS", "TRAINED", "TRAINABLE", "UNFITTED"]
