"""Configuration dataclasses. The resolved config is saved beside every checkpoint in ``stockllm.json``."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field

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
    """A saved model config with the fields older checkpoints lack filled in as they were then: ``head_base``
    (before the field, heads started Gaussian) and, for the LLM, ``lora_layers`` (before it, LoRA was on every
    block)."""
    if not isinstance(config, dict):
        return config
    old = {"head_base": "gaussian", **({"lora_layers": "all"} if "model_path" in config else {})}
    return {**old, **config}


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


# Loop settings that bound or pace one run without shaping what it learns: an exact resume may change them.
LOOP_LIMITS = ("epochs", "max_steps", "max_train_seconds", "patience", "min_delta", "eval_every", "save_every")


@dataclass
class TrainConfig:
    """How a trainable model (mlp, lstm, lora) is trained: the settings of the loop ``stockllm.loop.fit``. Every
    trainable model's config holds one as ``config.train`` (as litgpt puts ``TrainArgs`` inside each script's
    config); the defaults here are the LLM's, ``MLPConfig`` has its own.

    epochs: passes over the training samples.
    batch_size: samples per optimizer step: windows (mlp, lstm), or sequences (lora; none = 1 chunk of ~100
        windows in chunks mode, 4 windows in windows mode).
    learning_rate: AdamW learning rate.
    weight_decay: AdamW weight decay.
    patience: early stopping: validations in a row without a validation gain.
    min_delta: the relative validation gain that counts as one (0.005: the loss must fall to 0.995 × the best so
        far or lower); a smaller gain neither moves the kept weights nor resets the patience count.
    seed: random seed of the initial weights, the batch order and dropout.
    grad_accum: batches whose gradients are summed into one optimizer step.
    max_steps: stop after this many optimizer steps (bounds CPU runs); none = the epochs decide.
    max_train_seconds: stop training after this many seconds, validation excluded (bounds CPU runs).
    lr_scheduler: learning-rate decay after the warmup: cosine, linear or constant.
    warmup_ratio: share of the planned optimizer steps spent warming the learning rate up from 0.
    max_grad_norm: clip the gradient's global norm to this; 0 = no clipping.
    eval_every: optimizer steps between validations inside an epoch (each with a progress bar); every epoch
        also ends with one; none = at the end of each epoch only.
    save_every: validations between saved training states under SAVE_DIR/state/ (each with the best checkpoint
        so far in SAVE_DIR; also saved when training stops or is interrupted); 0 = none.
    """

    epochs: int = 20
    batch_size: int | None = None
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    patience: int = 3
    # A 0.5% validation gain of the LLM over its FHS start did not hold on test in round 4 (RESULTS §9): less is noise.
    min_delta: float = 0.005
    seed: int = 0
    grad_accum: int = 1
    max_steps: int | None = None
    max_train_seconds: float | None = None
    lr_scheduler: str = field(default="cosine", metadata={"choices": SCHEDULES})
    warmup_ratio: float = 0.05
    max_grad_norm: float = 1.0
    eval_every: int | None = 50
    save_every: int = 1

    def __post_init__(self):
        _check(self, positive=("epochs", "batch_size", "learning_rate", "patience", "grad_accum", "max_steps",
                               "max_train_seconds", "eval_every"),
               non_negative=("weight_decay", "max_grad_norm", "save_every"), fraction=("warmup_ratio", "min_delta"))
        if self.lr_scheduler not in SCHEDULES:
            raise StockLLMError(f"unknown --lr_scheduler {self.lr_scheduler!r}: use {', '.join(SCHEDULES)}")


def _mlp_train() -> TrainConfig:
    # A constant rate without clipping, validated once an epoch: the seed's MLP loop.
    return TrainConfig(epochs=100, batch_size=32, learning_rate=1e-3, weight_decay=1e-2, patience=10, min_delta=0.0,
                       lr_scheduler="constant", warmup_ratio=0.0, max_grad_norm=0.0, eval_every=None)


class _FlatSettings:
    """``Config.from_flags(epochs=3, hidden_size=8)``: a config from settings named as their flags, each put into
    the nested config that holds it (``epochs`` into ``train``); the rest keep this config's defaults."""

    @classmethod
    def from_flags(cls, **settings):
        return from_flat(cls, settings)

    @classmethod
    def _old_loop(cls, loop: dict) -> dict:
        """The loop settings of a config saved flat (before ``train`` was nested), as they read now."""
        return loop


@dataclass
class MLPConfig(_FlatSettings):
    """The MLP over scale-free windows (window × inputs → hidden → H × Q), and the LSTM over the same windows.

    hidden_size: MLP hidden units, or the LSTM's hidden state size.
    val_size: share of the training history kept for validation, at its end.
    head_base: what the untrained quantile head forecasts, so the first early-stopping candidate: fhs (filtered
        historical simulation of the training part) or gaussian (the naive EWMA Gaussian walk); checkpoints
        from before this setting load as gaussian.
    train: the training loop (``TrainConfig``).
    """

    hidden_size: int = 64
    val_size: float = 0.2
    head_base: str = field(default="fhs", metadata={"choices": HEAD_BASES})
    train: TrainConfig = field(default_factory=_mlp_train)

    def __post_init__(self):
        _check(self, positive=("hidden_size",), fraction=("val_size",))
        _check_head_base(self.head_base)
        if self.train.batch_size is None:
            raise StockLLMError("the MLP and LSTM need a --batch_size (windows per step, e.g. 32)")


@dataclass
class LoRAConfig(_FlatSettings):
    """The LoRA language-model forecaster: base model, codec, adapter and training.

    model_path: base model: Hugging Face id, local folder or .gguf file.
    prompt_format: codec: compact (scale-free, short) or verbose (the seed's text).
    train_mode: chunks (read every day of a long chunk in one pass) or windows (one fixed window per sample, the
        seed's way).
    chunk_days: days per training chunk in chunks mode.
    lora_rank: LoRA rank r.
    lora_alpha: LoRA alpha.
    lora_dropout: LoRA dropout (0: a dropout of 0.05 costs 1.7× the saved activations).
    lora_layers: LoRA on the top K blocks only, trained on the cached hidden states that enter them (the frozen
        lower blocks run once per chunk, not at every step); 0 = the frozen probe (the head alone, on the last
        hidden state); all = every block, each step through the whole model.
    target_modules: LoRA targets: all-linear or comma-separated module names.
    max_train_windows: train only on the last N windows of each series.
    max_val_windows: validate on at most the last N windows of each series.
    val_size: share of the training history kept for validation, at its end.
    gradient_checkpointing: trade time for memory (none: on by itself when a step's activations would not fit
        half of the memory).
    trust_remote_code: allow a base model's own Python code to run.
    device: auto, cpu, cuda, cuda:N or mps.
    compile: torch.compile the model for training: about 1.3-1.4× faster steps on CPU after a one-off compile of
        minutes; for long runs.
    head_base: as for the MLP: the untrained head is FHS (fhs) or the naive Gaussian walk (gaussian).
    random_init: ablation: the base model's architecture with random weights (from --seed) instead of its
        pretrained ones: what does pretraining add?
    freeze_base: ablation: a linear probe, no LoRA training; only the head learns from the frozen base's hidden
        states: what does LoRA add?
    train: the training loop (``TrainConfig``).
    """

    model_path: str = "Qwen/Qwen3-0.6B"
    prompt_format: str = field(default="compact", metadata={"choices": ("compact", "verbose")})
    train_mode: str = field(default="chunks", metadata={"choices": ("chunks", "windows")})
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
    lora_layers: str = "2"
    target_modules: str = "all-linear"
    max_train_windows: int | None = None
    max_val_windows: int = 256
    val_size: float = 0.2
    gradient_checkpointing: bool | None = None
    trust_remote_code: bool = False
    device: str = "auto"
    # torch.compile: 1.32–1.45× the eager step speed on 2 CPU cores (SmolLM2, two batch shapes), after a one-off
    # compile of ≈ 1–5 minutes (once more when the shape first changes); off by default since short runs do not
    # earn the compile back (benchmarks/RESULTS.md §7).
    compile: bool = False
    head_base: str = field(default="fhs", metadata={"choices": HEAD_BASES})
    # random_init builds the model with ``AutoModel.from_config``; freeze_base attaches the adapter with B = 0 and
    # freezes it, so the backbone computes exactly the base model.
    random_init: bool = False
    freeze_base: bool = False
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        _check(self, positive=("chunk_days", "lora_rank", "lora_alpha", "max_train_windows", "max_val_windows"),
               non_negative=("lora_dropout",), fraction=("val_size",))
        _check_head_base(self.head_base)
        self.lora_layers = str(self.lora_layers).strip().lower()
        if self.lora_layers != "all" and not (self.lora_layers.isdigit() and int(self.lora_layers) >= 0):
            raise StockLLMError(f"--lora_layers {self.lora_layers!r} is not a number of blocks: use all, 0 (the "
                                "frozen probe) or a count such as 2")

    def top_layers(self, num_layers: int) -> int | None:
        """How many top blocks carry trained LoRA on a base of ``num_layers`` blocks: None = every block, each
        step through the whole model; 0 = none (the probe, also with ``freeze_base``); K, at most ``num_layers``,
        with the lower blocks' output cached."""
        if self.freeze_base or self.lora_layers == "0":
            return 0
        return None if self.lora_layers == "all" else min(int(self.lora_layers), num_layers)

    @classmethod
    def _old_loop(cls, loop: dict) -> dict:
        # save_every counted optimizer steps then and counts validations now, so it is not carried over (it
        # paces a run and never shaped the weights); eval_every None meant "every epoch or 50 steps, whichever is
        # sooner", which is eval_every 50 now.
        loop = {k: v for k, v in loop.items() if k != "save_every"}
        return {**loop, "eval_every": 50} if loop.get("eval_every", 50) is None else loop


@dataclass
class EnsembleConfig:
    """The ensemble (``models.ensemble``): which members it averages and how its weights are fitted.

    members: model names (fhs, garch, mlp, lstm, lora, naive, drift, ...), each once.
    val_size: share of the training dates, at their end, on which the weights are fitted.
    refit: fit the members again on all the training dates once the weights are known (True), or keep the
        members fitted before the validation part (False: half the fitting time, e.g. with lora).
    folds: consecutive blocks of the validation part; simplex weights are fitted on each and averaged.
    shrinkage: share of equal weights in the final weights, λ·(1/M) + (1 − λ)·(the folds' mean weights).
    eta: after the anchor the weights start from those and follow each member's discounted loss L on the outcomes
        known so far, w ∝ w₀·exp(−eta·L) (Hedge); 0 keeps them fixed.
    discount: factor per origin on the older losses in L (1: none).
    share_horizons: one set of weights for all horizons, from the losses summed over them (False: per horizon).
    """

    members: tuple[str, ...] = ("fhs", "garch", "mlp", "lstm")
    val_size: float = 0.2
    refit: bool = True
    folds: int = field(default=4, metadata={"flag": None})
    # λ, eta, discount and share_horizons were chosen together on validation dates of the development set only
    # (benchmarks/skill.py --validation with seeds 0-4, then benchmarks/ensemble_choice.py --dir <the five runs>;
    # RESULTS §13.3): the lowest geometric mean wql_vs_naive over both settings (each series alone, and pooled),
    # each score first averaged over the five training seeds of the MLP and LSTM (one seed's draw moves a member by
    # 0.001-0.006, more than the settings differ): 0.99712 against 0.99718 for fixed weights and 0.99730 for the
    # previous default (λ 0.3, eta 4, shared), which seed 0 alone had preferred.
    shrinkage: float = field(default=0.0, metadata={"flag": None})
    # After the anchor the weights track the members' losses online (Hedge): w ∝ prior · exp(−eta · L), L each
    # member's σ-standardised pinball loss on the outcomes known so far, discounted by ``discount`` per origin.
    # eta 0 = fixed weights (what a checkpoint saved before these settings does).
    eta: float = field(default=1.0, metadata={"flag": None})
    discount: float = field(default=0.99, metadata={"flag": None})
    share_horizons: bool = field(default=False, metadata={"flag": None})

    def __post_init__(self):
        from .models.registry import MODEL_NAMES

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
        if not (isinstance(self.folds, int) and self.folds >= 1):
            raise StockLLMError(f"ensemble folds {self.folds!r} must be a whole number, 1 or more")
        if not 0 <= self.shrinkage <= 1:
            raise StockLLMError(f"ensemble shrinkage {self.shrinkage} must lie between 0 and 1")
        if not 0 <= self.eta < float("inf"):
            raise StockLLMError(f"ensemble eta {self.eta} must be a number 0 or more (0: fixed weights)")
        if not 0 < self.discount <= 1:
            raise StockLLMError(f"ensemble discount {self.discount} must lie in (0, 1] (1: no discount)")
        if self.val_size == 0:
            raise StockLLMError("--val_size 0 leaves the ensemble nothing to fit its weights on: use e.g. 0.2")


CALIBRATIONS = ("none", "aci")


@dataclass
class CalibrationConfig:
    """Online recalibration of the forecast quantiles (``stockllm.calibration``).

    method: "aci" (adaptive conformal inference on σ-standardised scores) or "none".
    gamma: the step of each level's offset per outcome, in units of σ_EWMA·√h.
    regimes: edges of σ_EWMA ÷ σ_long between volatility regimes that keep their own offsets.
    warmup: -1 (run from zero at the first origin) or the share of pre-anchor origins whose residuals give δ₀.
    shrink: factor on δ₀.
    boost: the step's multiple for the first outcome after the anchor, decaying to 1.
    boost_origins: origins over which the boost decays by e.
    """

    method: str = "aci"
    # γ and the regimes were chosen on validation dates of the development set only (2008-06 .. 2010-07, before
    # the test cutoff; benchmarks/RESULTS.md "Calibration"): the smallest tercile coverage rose from 0.70 (γ 0.005,
    # one regime) to 0.74 for 0.1% more quantile loss.
    gamma: float = 0.01
    # Edges of σ_EWMA ÷ σ_long between volatility regimes that keep their own offsets; () = one regime.
    regimes: tuple[float, ...] = (0.85, 1.15)
    # Where the offsets start and how fast they move after the anchor (module docstring of stockllm.calibration).
    # warmup: -1 = the tracker runs from zero at the frame's first origin, each regime converging on the whole
    # history before the anchor; a share in (0, 1] = δ₀ from the split-conformal residuals of that last share of the
    # pre-anchor origins, pooled over the regimes (0: the model's val_size, else 0.2); shrink multiplies δ₀. The step
    # is γ·(1 + (boost − 1)·e^(−k/boost_origins)) for the outcome of the k-th origin after the anchor. Chosen on
    # validation dates of the development set only (benchmarks/aci_start.py, RESULTS §13.2): -1 with boost 5 over
    # 100 origins kept coverage_80 over the first 250 origins within 0.784–0.852 (naive and FHS, 5 series ×
    # 3 horizons), at the band's edge with six other variants; why this one among them: RESULTS §13.2.
    warmup: float = field(default=-1.0, metadata={"flag": None})
    shrink: float = field(default=1.0, metadata={"flag": None})
    boost: float = field(default=5.0, metadata={"flag": None})
    boost_origins: float = field(default=100.0, metadata={"flag": None})

    def __post_init__(self):
        if self.method not in CALIBRATIONS:
            raise StockLLMError(f"unknown --calibrate {self.method!r}: use {' or '.join(CALIBRATIONS)}")
        if not 0 < self.gamma < 1:
            raise StockLLMError(f"--calibration_step {self.gamma} must lie between 0 and 1 (e.g. 0.01)")
        if not (self.warmup == -1 or 0 <= self.warmup <= 1) or not 0 <= self.shrink <= 1:
            raise StockLLMError(f"calibration warmup {self.warmup} must be -1 or lie in [0, 1], shrink {self.shrink} "
                                "in [0, 1]")
        if not (self.boost >= 1 and self.boost_origins > 0):
            raise StockLLMError(f"calibration boost {self.boost} must be 1 or more and boost_origins "
                                f"{self.boost_origins} above 0")
        self.regimes = tuple(float(e) for e in self.regimes)
        if any(b <= a for a, b in zip(self.regimes, self.regimes[1:])) or any(not e > 0 for e in self.regimes):
            raise StockLLMError(f"calibration regimes {self.regimes} must be increasing positive ratios")


@dataclass
class ChronosConfig:
    """Zero-shot Chronos (``--models chronos``): which model, how much history it reads per origin and how many
    origins per batch.

    model_path: Chronos-Bolt or Chronos-2 model: Hugging Face id or local folder.
    context_days: days of history Chronos reads per origin (fewer when the series is shorter); fixed, so a
        forecast depends on its origin alone.
    batch_size: origins per Chronos batch.
    device: auto, cpu, cuda, cuda:N or mps.
    """

    model_path: str = field(default="amazon/chronos-bolt-small", metadata={"flag": "chronos_model"})
    context_days: int = field(default=512, metadata={"flag": "chronos_context"})
    batch_size: int = field(default=64, metadata={"flag": "chronos_batch_size"})
    device: str = field(default="auto", metadata={"flag": None})  # per run: never a flag of its own

    def __post_init__(self):
        _check(self, positive=("context_days", "batch_size"))


def to_dict(config) -> dict:
    """A dataclass as a plain JSON-ready dict (nested configs as nested dicts)."""
    return dataclasses.asdict(config)


def _nested(cls) -> dict[str, type]:
    """{field name: config class} of the configs nested in ``cls`` (``train`` in MLPConfig and LoRAConfig)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])}


def flat_fields(cls) -> tuple[str, ...]:
    """Every setting of a config by its own name, those of nested configs included: the names flags and
    ``stockllm.evaluate`` keywords use (``epochs`` for ``MLPConfig.train.epochs``)."""
    inner = _nested(cls)
    names = []
    for f in dataclasses.fields(cls):
        names += flat_fields(inner[f.name]) if f.name in inner else [f.name]
    return tuple(names)


def flat_dict(config) -> dict:
    """A config's settings by their flat names (``flat_fields``), nested configs spread out."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out.update(flat_dict(value) if dataclasses.is_dataclass(value) else {f.name: value})
    return out


def flag_names(cls) -> dict[str, str]:
    """{flat setting name (``flat_fields``): its flag's destination}. A field's ``flag`` metadata renames it
    (``ChronosConfig.model_path`` is ``--chronos_model``); ``flag`` None: set per run, never a flag."""
    inner = _nested(cls)
    names = {}
    for f in dataclasses.fields(cls):
        if f.name in inner:
            names.update(flag_names(inner[f.name]))
        elif f.metadata.get("flag", f.name) is not None:
            names[f.name] = f.metadata.get("flag", f.name)
    return names


def from_flat(cls, values: dict, base=None):
    """``cls`` from settings named flat (as ``flat_fields``), each put into the config that holds it; the rest
    keep ``base``'s values (default: ``cls``'s defaults, so an MLP keeps the MLP's loop defaults). Unknown names
    are refused, naming the valid ones."""
    stray = sorted(set(values) - set(flat_fields(cls)))
    if stray:
        raise StockLLMError(f"{cls.__name__} has no setting {', '.join(stray)} (valid: {', '.join(flat_fields(cls))})")
    base = base if base is not None else cls()
    kept = {}
    for f in dataclasses.fields(cls):
        current = getattr(base, f.name)
        if dataclasses.is_dataclass(current):
            inner = flat_fields(type(current))
            kept[f.name] = from_flat(type(current), {k: v for k, v in values.items() if k in inner}, current)
        else:
            kept[f.name] = values.get(f.name, current)
    return cls(**kept)


def _upgrade(cls, values: dict) -> dict:
    """A saved config from before its loop settings moved into ``train`` (flat ``epochs``, ``patience``, ...), nested
    as they are now; what changed meaning since is the class's ``_old_loop``."""
    inner = _nested(cls).get("train")
    if inner is None or "train" in values:
        return values
    loop_names = set(flat_fields(inner))
    loop = cls._old_loop({k: v for k, v in values.items() if k in loop_names})
    return {**{k: v for k, v in values.items() if k not in loop_names}, "train": {**to_dict(cls().train), **loop}}


def from_dict(cls, values: dict, source=None):
    """Build ``cls`` from a saved dict, ignoring keys this version does not know (older/newer checkpoints); a
    config saved before its loop settings were nested (flat ``epochs``, ``patience`` ...) is read as well.

    With ``source`` (the checkpoint folder the dict was read from) every value is type-checked first, so a
    damaged or hand-edited stockllm.json is refused in one line instead of failing later.
    """
    if not isinstance(values, dict):
        raise StockLLMError(f"{source}/stockllm.json: {cls.__name__} settings are {type(values).__name__}, not an "
                            "object; the checkpoint is damaged, train again")
    values = _upgrade(cls, values)
    hints = typing.get_type_hints(cls)
    inner = _nested(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kept = {k: v for k, v in values.items() if k in names}
    for key in set(kept) & set(inner):
        kept[key] = from_dict(inner[key], kept[key], source)
    if source is not None:
        for key, value in kept.items():
            if key not in inner and not _fits(value, hints[key]):
                raise StockLLMError(f"{source}/stockllm.json: {key} = {value!r} is not {_type_name(hints[key])}; "
                                    "the checkpoint is damaged or was edited, train again (or fix that value)")
        try:
            return cls(**kept)
        except StockLLMError as exc:  # an out-of-range value: name the file it came from, by the setting's name
            raise StockLLMError(f"{source}/stockllm.json: {exc}; the checkpoint is "
                                "damaged or was edited, train again (or fix that value)") from None
    return cls(**kept)


def field_docs(cls) -> dict[str, str]:
    """{field name: its description} from the ``name: text`` lines of a config's docstring (continuation lines
    indented further): the help of the flags generated from the config."""
    docs, name = {}, None
    for line in (cls.__doc__ or "").splitlines():
        m = re.match(r"^    (\w+): (.*)$", line)
        if m:
            name = m.group(1)
            docs[name] = m.group(2).strip()
        elif name and line.startswith("        ") and line.strip():
            docs[name] += " " + line.strip()
        else:
            name = None
    return docs


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
