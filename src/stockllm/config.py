"""Configuration dataclasses. The resolved config is saved beside every checkpoint in ``stockllm.json``."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass

from .errors import StockLLMError
from .indicators import parse_features
from .quantiles import DEFAULT_QUANTILES, check_quantiles


def _check(config, positive=(), non_negative=(), fraction=()) -> None:
    """Refuse out-of-range settings with the flag's name, before any work is done."""
    for name in positive:
        value = getattr(config, name)
        if value is not None and not value > 0:
            raise StockLLMError(f"--{name} {value} must be greater than 0")
    for name in non_negative:
        value = getattr(config, name)
        if value is not None and not value >= 0:
            raise StockLLMError(f"--{name} {value} must be 0 or more")
    for name in fraction:
        value = getattr(config, name)
        if not 0 <= value < 1:
            raise StockLLMError(f"--{name} {value} must be at least 0 and below 1 (e.g. 0.2)")
    seed = getattr(config, "seed", None)
    if seed is not None and not 0 <= seed < 2**32:  # what numpy and torch accept
        raise StockLLMError(f"--seed {seed} must be between 0 and {2**32 - 1}")


MAX_DAYS = 100_000  # longest window or horizon accepted: ~400 years of trading days

HEAD_BASES = ("fhs", "gaussian")


def _check_head_base(value: str) -> None:
    if value not in HEAD_BASES:
        raise StockLLMError(f"unknown --head_base {value!r}: use fhs (filtered historical simulation, the default) "
                            "or gaussian (the naive EWMA Gaussian walk)")


def old_head_base(config: dict) -> dict:
    """A saved model config with ``head_base`` filled in: checkpoints written before the field started Gaussian."""
    return {"head_base": "gaussian", **config} if isinstance(config, dict) else config


SCHEDULES = ("cosine", "linear", "constant")  # each with linear warmup (transformers.get_scheduler)


@dataclass
class DataConfig:
    """How history is cut into samples.

    window_size: days of history the model sees per forecast.
    horizon: number of future closes forecast (H).
    quantiles: the levels of the forecast distribution (Q), increasing, strictly inside (0, 1), with 0.5
        present or straddled (the point forecast is the median).
    features: technical indicators added to every day's inputs (MLP) and text (compact codec), in this order;
        names from ``stockllm.indicators.INDICATORS``. Empty: OHLCV only.
    """

    window_size: int = 30
    horizon: int = 3
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    features: tuple[str, ...] = ()

    def __post_init__(self):
        for name, low in (("window_size", 1), ("horizon", 1)):
            value = getattr(self, name)
            if not low <= value <= MAX_DAYS:  # a number read from a checkpoint is checked before it reaches torch
                raise StockLLMError(f"--{name} {value} must be between {low} and {MAX_DAYS:,} days")
        self.quantiles = check_quantiles(self.quantiles)
        self.features = parse_features(self.features)

    @property
    def min_rows(self) -> int:
        """Rows a file needs for at least one window with its targets."""
        return self.window_size + self.horizon


@dataclass
class MLPConfig:
    """The seed's ``SimpleStockPredictor`` (window×5 → hidden → H) and how it is trained."""

    hidden_size: int = 64
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    patience: int = 10
    val_size: float = 0.2
    seed: int = 0
    save_every: int = 1  # epochs between saved training states under <save_dir>/state/ (train only); 0 turns them off
    # What the untrained quantile head gives: "fhs" (filtered historical simulation of the training part) or
    # "gaussian" (the naive EWMA Gaussian walk). Checkpoints from before this field load as "gaussian".
    head_base: str = "fhs"

    def __post_init__(self):
        _check(self, positive=("hidden_size", "epochs", "batch_size", "learning_rate", "patience"),
               non_negative=("weight_decay", "save_every"), fraction=("val_size",))
        _check_head_base(self.head_base)


@dataclass
class LoRAConfig:
    """The LoRA language-model forecaster: base model, codec, adapter and training loop."""

    model_path: str = "Qwen/Qwen3-0.6B"
    prompt_format: str = "compact"
    train_mode: str = "chunks"
    # 128 days ≈ 1,300 compact tokens. Per token, causal attention costs ~4·(T/2)·d·layers FLOPs against
    # 2·N for the linear layers: for SmolLM2-135M that is ~21% at T = 1,300 (Qwen3-0.6B: ~15%), so the
    # linear layers still dominate, while one pass reads ~98 targets (13 tokens per target, vs ~300 for a
    # fixed 30-day window). Doubling L would push attention towards half the cost for little gain.
    chunk_days: int = 128
    lora_rank: int = 8
    lora_alpha: int = 16
    # 0, not PEFT's usual 0.05: dropout makes every adapter keep its own dropped copy of its input for the
    # backward pass, 1.7× the saved activations (2,530 vs 1,472 MB for one SmolLM2 chunk; benchmarks/RESULTS.md).
    lora_dropout: float = 0.0
    target_modules: str = "all-linear"
    epochs: int = 20
    batch_size: int | None = None  # sequences per step; None: 1 chunk (~100 targets) in chunks mode, 4 windows
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    grad_accum: int = 1
    max_steps: int | None = None
    max_train_seconds: float | None = None
    max_train_windows: int | None = None
    patience: int = 3
    val_size: float = 0.2
    gradient_checkpointing: bool | None = None  # None: on only when a step's activations would not fit memory
    trust_remote_code: bool = False
    seed: int = 0
    max_val_windows: int = 256
    device: str = "auto"
    lr_scheduler: str = "cosine"  # after warmup: cosine, linear or constant (transformers' get_scheduler)
    warmup_ratio: float = 0.05  # share of the planned steps spent warming the learning rate up from 0
    max_grad_norm: float = 1.0  # clip the gradient's global norm to this; 0 turns clipping off
    eval_every: int | None = None  # steps between validations; None: every epoch or 50 steps, whichever is sooner
    save_every: int = 50  # steps between saved training states under <save_dir>/state/; 0 turns them off
    # torch.compile the model for training: 1.32–1.45× the eager step speed on 2 CPU cores (SmolLM2, two batch
    # shapes), after a one-off compile of ≈ 1–5 minutes (once more when the shape first changes); off by default
    # since short runs do not earn the compile back (benchmarks/RESULTS.md §7).
    compile: bool = False
    head_base: str = "fhs"  # as MLPConfig.head_base: the untrained head is FHS ("fhs") or the Gaussian walk
    # Ablations (does the language model help?). random_init: the base model's architecture with random weights
    # (``AutoModel.from_config``, initialised from ``seed``), so a run shows what pretraining adds. freeze_base:
    # a linear probe, only the head trains on the frozen base's hidden states (the adapter is attached with
    # B = 0 and frozen, so the backbone computes exactly the base model), so a run shows what LoRA adds.
    random_init: bool = False
    freeze_base: bool = False

    def __post_init__(self):
        _check(self, positive=("chunk_days", "lora_rank", "lora_alpha", "epochs", "batch_size", "learning_rate",
                               "grad_accum", "max_steps", "max_train_seconds", "max_train_windows", "patience",
                               "max_val_windows", "eval_every"),
               non_negative=("weight_decay", "lora_dropout", "max_grad_norm", "save_every"),
               fraction=("val_size", "warmup_ratio"))
        _check_head_base(self.head_base)
        if self.lr_scheduler not in SCHEDULES:
            raise StockLLMError(f"unknown --lr_scheduler {self.lr_scheduler!r}: use {', '.join(SCHEDULES)}")


@dataclass
class EnsembleConfig:
    """The ensemble (``models.ensemble``): which members it averages and how its weights are fitted.

    members: model names (fhs, garch, mlp, lstm, lora, naive, drift, ...), each once.
    val_size: share of the training dates, at their end, on which the weights are fitted.
    refit: fit the members again on all the training dates once the weights are known (True), or keep the
        members fitted before the validation part (False: half the fitting time, e.g. with lora).
    """

    members: tuple[str, ...] = ("fhs", "garch", "mlp", "lstm")
    val_size: float = 0.2
    refit: bool = True

    def __post_init__(self):
        from .models import MODEL_NAMES

        members = self.members.split(",") if isinstance(self.members, str) else self.members
        self.members = tuple(m.strip() for m in members if m.strip())
        if not self.members:
            raise StockLLMError("--members is empty: name the models to average, e.g. fhs,garch,mlp,lstm")
        for m in self.members:
            if m not in MODEL_NAMES or m == "ensemble":
                choices = ",".join(n for n in MODEL_NAMES if n != "ensemble")
                raise StockLLMError(f"unknown --members entry {m!r}: choose from {choices}")
        if len(set(self.members)) != len(self.members):
            raise StockLLMError(f"--members {','.join(self.members)} names a model twice: list each once")
        _check(self, fraction=("val_size",))
        if self.val_size == 0:
            raise StockLLMError("--val_size 0 leaves the ensemble nothing to fit its weights on: use e.g. 0.2")


CALIBRATIONS = ("none", "aci")


@dataclass
class CalibrationConfig:
    """Online recalibration of the forecast quantiles (``stockllm.calibration``).

    method: "aci" (adaptive conformal inference on σ-standardised scores) or "none".
    gamma: the step of each level's offset per outcome, in units of σ_EWMA·√h.
    """

    method: str = "aci"
    # γ and the regimes were chosen on validation dates of the development set only (2008-06 .. 2010-07, before
    # the test cutoff; benchmarks/RESULTS.md "Calibration"): the smallest tercile coverage rose from 0.70 (γ 0.005,
    # one regime) to 0.74 for 0.1% more quantile loss.
    gamma: float = 0.01
    # Edges of σ_EWMA ÷ σ_long between volatility regimes that keep their own offsets; () = one regime.
    regimes: tuple[float, ...] = (0.85, 1.15)

    def __post_init__(self):
        if self.method not in CALIBRATIONS:
            raise StockLLMError(f"unknown --calibrate {self.method!r}: use {' or '.join(CALIBRATIONS)}")
        if not 0 < self.gamma < 1:
            raise StockLLMError(f"--calibration_step {self.gamma} must lie between 0 and 1 (e.g. 0.01)")
        self.regimes = tuple(float(e) for e in self.regimes)
        if any(b <= a for a, b in zip(self.regimes, self.regimes[1:])) or any(not e > 0 for e in self.regimes):
            raise StockLLMError(f"calibration regimes {self.regimes} must be increasing positive ratios")


def to_dict(config) -> dict:
    """A dataclass as a plain JSON-ready dict."""
    return dataclasses.asdict(config)


def from_dict(cls, values: dict, source=None):
    """Build ``cls`` from a dict, ignoring keys this version does not know (older/newer checkpoints).

    With ``source`` (the checkpoint folder the dict was read from) every value is type-checked first, so a
    damaged or hand-edited stockllm.json is refused in one line instead of failing later.
    """
    if not isinstance(values, dict):
        raise StockLLMError(f"{source}/stockllm.json: {cls.__name__} settings are {type(values).__name__}, not an "
                            "object; the checkpoint is damaged, train again")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kept = {k: v for k, v in values.items() if k in names}
    if source is not None:
        for key, value in kept.items():
            if not _fits(value, hints[key]):
                raise StockLLMError(f"{source}/stockllm.json: {key} = {value!r} is not {_type_name(hints[key])}; "
                                    "the checkpoint is damaged or was edited, train again (or fix that value)")
        try:
            return cls(**kept)
        except StockLLMError as exc:  # an out-of-range value: name the file it came from, not a flag
            raise StockLLMError(f"{source}/stockllm.json: {str(exc).replace('--', '', 1)}; the checkpoint is "
                                "damaged or was edited, train again (or fix that value)") from None
    return cls(**kept)


def _fits(value, hint) -> bool:
    """Whether a JSON value fits a dataclass field's type (int, float, str, bool, X | None, tuple[float, ...])."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (tuple, list):
        inner = typing.get_args(hint)[0]
        return isinstance(value, (list, tuple)) and all(_fits(v, inner) for v in value)
    return isinstance(value, hint)


def _type_name(hint) -> str:
    return " or ".join("null" if h is type(None) else getattr(h, "__name__", str(h))
                       for h in (typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType)
                                 else (hint,)))
