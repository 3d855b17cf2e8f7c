"""Typed options of the library's three runs: ``EvaluateOptions``, ``TrainOptions`` and ``PredictOptions``.

The CLI converts its parsed flags into them; ``stockllm.evaluate/train/predict`` build them from keywords named as
the flags without dashes (``test_size``, ``epochs``, ``model_path``). The runs read them and never write to them
(they are frozen). Every field that is None was not given: the run takes the default, or, for a resumed training
run, the saved state's value.

Each is composed of a :class:`DataOptions` (where the history comes from and how it is cut: DataConfig's fields)
and, for the commands that build models, a :class:`ModelSettings` (the settings of the model configs, MLPConfig,
LoRAConfig with its TrainConfig, EnsembleConfig, ChronosConfig, by their flat names). Settings that only some models
use are refused where no model of the run would read them, never silently ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import ChronosConfig, DataConfig, LoRAConfig, MLPConfig, flag_names, flat_fields, from_flat
from .errors import StockLLMError
from .models.registry import REGISTRY, TRAINED, WINDOW_NETS, spec

DEFAULT_MODELS = ("naive", "drift", "fhs", "mlp")  # evaluate's models when none are given

# The settings each run takes by name, from the configs its models are built with (flag name: a field's ``flag``
# metadata renames it, as ChronosConfig.model_path is chronos_model).
# The ensemble's own setting is its members (its val_size and refit keep their defaults).
TRAIN_SETTINGS = tuple(dict.fromkeys([*flag_names(MLPConfig).values(), *flag_names(LoRAConfig).values(), "members"]))
EVALUATE_SETTINGS = tuple(n for n in TRAIN_SETTINGS if n != "save_every") + tuple(flag_names(ChronosConfig).values())

_LORA_FIELDS = set(flat_fields(LoRAConfig))
_MLP_FIELDS = set(flat_fields(MLPConfig))
LLM_SETTINGS = tuple(sorted(_LORA_FIELDS - _MLP_FIELDS))
MLP_SETTINGS = tuple(sorted(_MLP_FIELDS - _LORA_FIELDS))
TRAINING_SETTINGS = tuple(sorted(_MLP_FIELDS & _LORA_FIELDS))


def _tuple(value, parse=None):
    """A list option as given: a comma-separated string (the CLI's form) or a sequence (Python's)."""
    if value is None or parse is not None:
        return value if value is None else parse(value)
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


def refuse(values: Mapping[str, Any], names: Sequence[str], why: str) -> None:
    """StockLLMError naming the first of ``names`` that ``values`` gives (not None)."""
    given = [n for n in names if values.get(n) is not None]
    if given:
        raise StockLLMError(f"--{given[0]} {why}")


@dataclass(frozen=True)
class DataOptions:
    """Where the history comes from and how it is cut into windows. None: not given.

    data: anything ``as_frames`` reads (paths, folders, globs, long CSVs, a frame, a long frame, a dict of frames);
        None: the bundled NASDAQ sample (evaluate, train).
    columns: the files' own column names, "Date=Datum,Close=Schluss" or a dict.
    decimal: the files' decimal mark, "." or ",".
    date_format: how the files write dates, as strptime codes ("%d.%m.%Y"); None: YYYY-MM-DD or M/D/YYYY (D/M/YYYY
        taken, with a warning, where some day is above 12).
    window_size, horizon, quantiles, features: DataConfig's fields (lists as a sequence or comma-separated).
    """

    data: Any = None
    columns: str | Mapping[str, str] | None = None
    decimal: str | None = None
    date_format: str | None = None
    window_size: int | None = None
    horizon: int | None = None
    quantiles: tuple[float, ...] | None = None
    features: tuple[str, ...] | None = None

    def __post_init__(self):
        from .indicators import parse_features
        from .quantiles import check_quantiles, parse_quantiles

        if isinstance(self.quantiles, str):
            levels = parse_quantiles(self.quantiles) if self.quantiles.strip() else None
            object.__setattr__(self, "quantiles", levels)
        elif self.quantiles is not None:
            object.__setattr__(self, "quantiles", tuple(check_quantiles(self.quantiles)))
        if self.features is not None:
            object.__setattr__(self, "features", tuple(parse_features(self.features)))

    def given(self) -> dict:
        """The DataConfig fields given."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(DataConfig) if getattr(self, f.name) is not None}

    def config(self) -> DataConfig:
        """The DataConfig with the fields given; the rest keep its defaults (ranges checked)."""
        data = DataConfig(**self.given())
        if data.window_size < 2:
            raise StockLLMError(f"--window_size {data.window_size} is too small: use 2 or more (default 30)")
        return data

    def csv_options(self, downloads: bool = False) -> dict:
        """``columns``, ``decimal`` and ``date_format``, parsed and checked (before any data or model is loaded);
        ``downloads``: the run downloads tickers, which need none of them."""
        from .data import check_date_format, check_decimal, parse_columns

        columns = self.columns
        if isinstance(columns, Mapping):
            columns = ",".join(f"{k}={v}" for k, v in columns.items())
        options = {"columns": parse_columns(columns), "decimal": check_decimal(self.decimal),
                   "date_format": check_date_format(self.date_format)}
        if (options["columns"] or options["decimal"] != "." or options["date_format"]) and downloads:
            raise StockLLMError("--columns, --decimal and --date_format describe --data files; --ticker downloads "
                                "need none of them: drop them")
        return options

    def paths(self) -> list | None:
        """``data`` as a list of paths (str or Path), or None when it holds frames."""
        from pathlib import Path

        if isinstance(self.data, (str, Path)):
            return [self.data]
        if isinstance(self.data, (list, tuple)) and all(isinstance(p, (str, Path)) for p in self.data):
            return list(self.data)
        return None

    def load(self, min_rows: int, reason: str, say=lambda *_: None, shard: tuple[int, int] | None = None) -> dict:
        """{series name: checked OHLCV frame} of ``data`` (the NASDAQ sample when none is given); ``shard`` =
        (rank, world): only this process's share (of the files given by path, ``series.load_series``; of the series
        of frames given in memory)."""
        from .models.pipeline import as_frames
        from .series import load_series, share

        data = self.data
        if data is None or (isinstance(data, (list, tuple)) and not data):
            from .data import SAMPLES

            say(f"no --data given: using the bundled sample 'nasdaq' ({SAMPLES['nasdaq']})")
            data = ["nasdaq"]
        paths = dataclasses.replace(self, data=data).paths()
        if paths is None:  # frames in memory: every process has them all and keeps its share
            frames = as_frames(data, min_rows, reason)
            return frames if shard is None else {name: frames[name] for name in share(list(frames), *shard)}
        return load_series(paths, min_rows=min_rows, min_rows_reason=reason, shard=shard, **self.csv_options())


@dataclass(frozen=True)
class ModelSettings:
    """The model settings a run was given, by flat name (``epochs``, ``hidden_size``, ``lora_rank``, ``members``,
    ``chronos_model``, ...: the names of ``config.flag_names``); every setting not given keeps its config's
    default. None values count as not given."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "values", {k: v for k, v in dict(self.values).items() if v is not None})

    def get(self, name: str, default=None):
        return self.values.get(name, default)

    def given(self, cls) -> dict:
        """The settings of config ``cls`` given (nested loop settings included), by its own field names."""
        return {name: self.values[flag] for name, flag in flag_names(cls).items() if flag in self.values}

    def config(self, name: str):
        """Model ``name``'s config (its registry entry names the class) with the settings given; None for models
        without settings (naive, drift, fhs, garch, the statsforecast peers)."""
        cls = spec(name).config_class()
        if cls is None:
            return None
        cfg = from_flat(cls, self.given(cls))
        if isinstance(cfg, LoRAConfig) and cfg.target_modules != "all-linear":
            cfg.target_modules = ",".join(m.strip() for m in cfg.target_modules.split(",") if m.strip())
        return cfg

    def factory(self, name: str, data: DataConfig):
        """A function that builds a new, unfitted model ``name`` with these settings (checked now)."""
        from .models import model_class

        cls, config = model_class(name), self.config(name)
        if name == "ensemble":
            members = {m: c for m in config.members if (c := self.config(m)) is not None}
            return lambda: cls(data, config, members)
        if config is not None:
            return lambda: cls(data, config)
        return lambda: cls(data)

    def with_members(self, kinds: Sequence[str]) -> list[str]:
        """The model kinds a run trains: an ensemble stands for itself and its members (whose settings apply)."""
        if "ensemble" not in kinds:
            if self.get("members") is not None:
                raise StockLLMError("--members is for the ensemble, which this run does not have: add ensemble to "
                                    "--models (or --model ensemble), or drop --members")
            return list(kinds)
        return [*kinds, *self.config("ensemble").members]

    def check_for(self, models: Sequence[str], where: str) -> None:
        """Refuse LLM settings unless lora runs, MLP settings unless mlp or lstm runs, training settings unless a
        trained model runs, and Chronos settings unless chronos runs."""
        if "lora" not in models:
            refuse(self.values, LLM_SETTINGS, f"applies to the LLM (lora) only, and this run has {where}: drop it")
        if not set(WINDOW_NETS) & set(models):
            refuse(self.values, MLP_SETTINGS, f"applies to the MLP and LSTM only, and this run has {where}: drop it")
        if not set(TRAINED) & set(models):
            refuse(self.values, TRAINING_SETTINGS, f"applies to trained models ({', '.join(TRAINED)}) only, and this "
                   f"run has {where}: drop it")

    def check_features(self, data: DataConfig, models: Sequence[str]) -> None:
        """Refuse ``features`` where nothing would read them, before any data is loaded."""
        if not data.features:
            return
        if not set(TRAINED) & set(models):
            raise StockLLMError(f"--features feed the {', '.join(TRAINED[:-1])} and {TRAINED[-1]} models only, and --models "
                                f"{','.join(models)} has none of them: add one, or drop --features")
        if "lora" in models and self.get("prompt_format") == "verbose":
            raise StockLLMError("--features are written by the compact codec only: drop --prompt_format verbose or "
                                "drop --features")


def calibration(method: str | None, step: float | None) -> tuple[str | None, float | None]:
    """(calibrate, calibration_step), checked: a step without a calibration is refused."""
    from .config import CalibrationConfig

    if step is not None and method in (None, "none"):
        raise StockLLMError("--calibration_step is for --calibrate aci: add --calibrate aci or drop the step")
    if method not in (None, "none"):
        CalibrationConfig(method=method, **({} if step is None else {"gamma": step}))  # range check now
    return (None if method == "none" else method), step


def check_price_limits(setting: str | float | None, limit: float | None = None) -> str | float:
    """``price_limits`` and ``price_limit`` (the flags --price_limits and --price_limit) as one checked setting:
    "auto" (A-share limits by board from the code; the default), "off", or a daily limit (a fraction in (0, 1))
    for every series (``stockllm.limits``). ``price_limits`` may itself be that fraction."""
    from .limits import check_limits

    if setting is None or isinstance(setting, str):
        return check_limits(setting, limit)
    if limit is not None:
        raise StockLLMError(f"--price_limit {limit:g} and a limit in --price_limits both set the limit: pass one")
    if isinstance(setting, bool) or not 0 < float(setting) < 1:
        raise StockLLMError(f"--price_limits {setting!r}: choose auto, off or a daily limit between 0 and 1 (0.05 "
                            "for ±5%, as for ST names)")
    return float(setting)


def check_close_only(frames: dict, models: Sequence[str]) -> None:
    """Refuse close-only files for the models that read Open, High, Low and Volume too, naming them."""
    thin = [name for name, frame in frames.items() if frame.attrs.get("close_only")]
    need = [m for m in models if not REGISTRY[m].closes_only]
    if thin and need:
        fit = ",".join(name for name, entry in REGISTRY.items() if entry.closes_only)
        raise StockLLMError(f"{thin[0]} has closes only (no Open, High, Low, Volume), which {', '.join(need)} "
                            f"need{'s' if len(need) == 1 else ''}: use models that read closes only ({fit}), or "
                            "pass a file with Date,Open,High,Low,Close,Volume")


@dataclass(frozen=True)
class EvaluateOptions:
    """Every option of ``stockllm evaluate`` (see its ``--help``).

    models: model names (default naive,drift,fhs,mlp; with ``checkpoint``, naive); naive is always scored.
    test_size / test_start: the cutoff, as a share of the dates held out at the end (default 0.2) or a date.
    refit_every: fit again every N test days (expanding window); None: one fit before the cutoff.
    checkpoint: a trained checkpoint folder, also scored without fitting.
    calibrate, calibration_step: "aci" adds online-recalibrated rows (MODEL+aci) with step γ.
    price_limits: "auto" (default: A-shares clipped to their board's daily limit), "off", or a daily limit for
        every series; the forecasts are scored as clipped, and the protocol says so. price_limit: a daily limit for
        every series (as --price_limit), the same as ``price_limits=`` that fraction.
    output_dir: the folder for metrics.csv, leaderboard.csv, forecasts.csv, plot.png, report.html (None: none).
    show: models report.html's forecast charts draw at first, beside naive and the best (None: the checkpoint's).
    progress: progress bars and per-epoch lines.
    format: "csv" (forecasts.csv) or "parquet" (forecasts.parquet).
    """

    data: DataOptions = field(default_factory=DataOptions)
    settings: ModelSettings = field(default_factory=ModelSettings)
    models: tuple[str, ...] | None = None
    test_size: float | None = None
    test_start: str | None = None
    refit_every: int | None = None
    checkpoint: str | None = None
    calibrate: str | None = None
    calibration_step: float | None = None
    price_limits: str | float = "auto"
    price_limit: float | None = None
    output_dir: str | None = None
    show: tuple[str, ...] | None = None
    progress: bool = True
    format: str = "csv"

    def __post_init__(self):
        object.__setattr__(self, "models", _tuple(self.models) or None)
        object.__setattr__(self, "show", _tuple(self.show) or None)
        object.__setattr__(self, "price_limits", check_price_limits(self.price_limits, self.price_limit))


@dataclass(frozen=True)
class TrainOptions:
    """Every option of ``stockllm train`` (see its ``--help``).

    model: the kind to train (``models.TRAINABLE``; default mlp).
    save_dir: the checkpoint folder to write (None: keep the model in memory only; no training states).
    resume: True continues exactly from the newest training state in ``save_dir``; a folder warm-starts the LLM
        from that finished checkpoint's weights.
    progress: progress bars and per-epoch lines.
    """

    data: DataOptions = field(default_factory=DataOptions)
    settings: ModelSettings = field(default_factory=ModelSettings)
    model: str = "mlp"
    save_dir: str | None = None
    resume: bool | str | None = None
    progress: bool = True


@dataclass(frozen=True)
class PredictOptions:
    """Every option of ``stockllm predict`` and ``stockllm forecast`` (see their ``--help``).

    checkpoint: a checkpoint folder from train; or model: a baseline that needs none (naive, drift).
    model_path, device, trust_remote_code: LLM checkpoints only (another copy of the base model; where to run).
    ticker: symbols to download ("AAPL,MSFT" or a list) instead of ``data``; period, source, adjust: how.
    output: the CSV to write (None: write nothing); plot: also a PNG; ledger: also append to this ledger.
    calendar: the exchange calendar of the forecast dates; calibrate, calibration_step: online recalibration.
    price_limits: "auto" (default: A-shares clipped to their board's daily limit), "off", or a daily limit for
        every series; price_limit: that daily limit (as --price_limit).
    progress: progress lines.
    """

    data: DataOptions = field(default_factory=DataOptions)
    checkpoint: str | None = None
    model: str | None = None
    model_path: str | None = None
    device: str | None = None
    trust_remote_code: bool | None = None
    ticker: tuple[str, ...] | None = None
    period: str | None = None
    source: str | None = None
    adjust: str | None = None
    output: str | None = None
    plot: str | None = None
    ledger: str | None = None
    calendar: str | None = None
    calibrate: str | None = None
    calibration_step: float | None = None
    price_limits: str | float = "auto"
    price_limit: float | None = None
    progress: bool = True

    def __post_init__(self):
        object.__setattr__(self, "price_limits", check_price_limits(self.price_limits, self.price_limit))
        if self.ticker is not None:
            tickers = tuple(t.upper() for t in _tuple(self.ticker))
            if not tickers:
                raise StockLLMError("--ticker is empty: pass a symbol such as AAPL, or AAPL,MSFT")
            object.__setattr__(self, "ticker", tickers)


_DATA_FIELDS = tuple(f.name for f in dataclasses.fields(DataOptions))
_SETTINGS = {EvaluateOptions: EVALUATE_SETTINGS, TrainOptions: TRAIN_SETTINGS, PredictOptions: ()}


def keywords(cls) -> dict:
    """{keyword: default} of every option of ``cls`` as ``from_keywords`` takes it (the flags without dashes)."""
    own = {f.name: f.default for f in dataclasses.fields(cls) if f.name not in ("data", "settings")}
    data = {f.name: f.default for f in dataclasses.fields(DataOptions)}
    return {**data, **own, **dict.fromkeys(_SETTINGS[cls])}


def from_keywords(cls, **kwargs):
    """``cls`` (EvaluateOptions, TrainOptions or PredictOptions) from keywords named as the flags without dashes;
    an unknown keyword raises TypeError naming the valid ones."""
    stray = sorted(set(kwargs) - set(keywords(cls)))
    if stray:
        raise TypeError(f"unknown option(s) {stray}: valid options are {', '.join(sorted(keywords(cls)))}")
    data = DataOptions(**{k: kwargs.pop(k) for k in _DATA_FIELDS if k in kwargs})
    settings = {k: kwargs.pop(k) for k in _SETTINGS[cls] if k in kwargs}
    if "settings" in {f.name for f in dataclasses.fields(cls)}:
        kwargs["settings"] = ModelSettings(settings)
    return cls(data=data, **kwargs)
