"""From flags to configs: the checks and the resolution shared by the CLI and the library's ``evaluate``.

Every function reads a namespace ``args`` whose attributes are the command-line destinations (argparse's, or the
one ``stockllm.evaluate`` builds from its keywords), None where not given. Flags that only some models use come
from the config dataclasses, so a new field is covered at once; given where they do not apply, they are refused,
never silently ignored.
"""

from __future__ import annotations

import argparse

from .config import DataConfig, LoRAConfig, MLPConfig, flag_names, flat_fields, from_flat
from .errors import StockLLMError
from .models import WINDOW_NETS  # names only: the models package loads its classes on first use

DEFAULT_MODELS = "naive,drift,fhs,mlp"  # evaluate's --models


def _calibration(args) -> tuple[str | None, float | None]:
    """(--calibrate, --calibration_step), checked: a step without a calibration is refused."""
    from .config import CalibrationConfig

    method = getattr(args, "calibrate", None)
    step = getattr(args, "calibration_step", None)
    if step is not None and method in (None, "none"):
        raise StockLLMError("--calibration_step is for --calibrate aci: add --calibrate aci or drop the step")
    if method not in (None, "none"):
        CalibrationConfig(method=method, **({} if step is None else {"gamma": step}))  # range check now
    return (None if method == "none" else method), step


def _price_limits(args) -> str | float:
    """(--price_limits, --price_limit) as one checked setting: "auto", "off" or a daily limit for every series."""
    from .limits import check_limits

    return check_limits(getattr(args, "price_limits", None), getattr(args, "price_limit", None))


def _given(args: argparse.Namespace, cls) -> dict:
    """The settings of config ``cls`` (nested loop settings included, by their flat names) that the user set, each
    read from its flag (``config.flag_names``)."""
    return {name: getattr(args, flag) for name, flag in flag_names(cls).items()
            if getattr(args, flag, None) is not None}


def _pick(args: argparse.Namespace, cls):
    """Config ``cls`` with every setting the user set on the command line; the rest keep its defaults."""
    return from_flat(cls, _given(args, cls))


def _levels(args) -> tuple[float, ...] | None:
    """The --quantiles flag, parsed and checked (None when not given)."""
    from .quantiles import parse_quantiles

    return parse_quantiles(args.quantiles) if getattr(args, "quantiles", None) else None


def _data_given(args) -> dict:
    """The DataConfig fields the user set on the command line (--quantiles and --features parsed)."""
    from .indicators import parse_features

    given = {k: getattr(args, k) for k in ("window_size", "horizon") if getattr(args, k, None) is not None}
    if getattr(args, "features", None) is not None:
        given["features"] = parse_features(args.features)
    levels = _levels(args)
    return {**given, "quantiles": levels} if levels else given


def _data_config(args) -> DataConfig:
    data = DataConfig(**_data_given(args))
    if data.window_size < 2:
        raise StockLLMError(f"--window_size {data.window_size} is too small: use 2 or more (default 30)")
    if data.horizon < 1:
        raise StockLLMError(f"--horizon {data.horizon} is too small: use 1 or more (default 3)")
    return data


def _model_config(name: str, args):
    """Model ``name``'s config (its registry entry names the class) with the settings ``args`` gives; None for
    models without settings (naive, drift, fhs, garch, the statsforecast peers)."""
    from .models import spec

    cls = spec(name).config_class()
    if cls is None:
        return None
    cfg = _pick(args, cls)
    if isinstance(cfg, LoRAConfig) and cfg.target_modules != "all-linear":
        cfg.target_modules = ",".join(m.strip() for m in cfg.target_modules.split(",") if m.strip())
        args.target_modules = cfg.target_modules
    return cfg


def _factory(name: str, args, data: DataConfig):
    """A function that builds a new, unfitted model ``name`` with this run's settings (flags checked now)."""
    from .models import model_class

    cls, config = model_class(name), _model_config(name, args)
    if name == "ensemble":
        members = {m: c for m in config.members if (c := _model_config(m, args)) is not None}
        return lambda: cls(data, config, members)
    if config is not None:
        return lambda: cls(data, config)
    return lambda: cls(data)


def _with_members(kinds: list[str], args) -> list[str]:
    """The model kinds a run trains: an ensemble stands for itself and its members (whose flags apply)."""
    if "ensemble" not in kinds:
        if getattr(args, "members", None) is not None:
            raise StockLLMError("--members is for the ensemble, which this run does not have: add ensemble to "
                                "--models (or --model ensemble), or drop --members")
        return kinds
    return [*kinds, *_model_config("ensemble", args).members]


_LORA_FIELDS = set(flat_fields(LoRAConfig))
_MLP_FIELDS = set(flat_fields(MLPConfig))
LLM_FLAGS = tuple(sorted(_LORA_FIELDS - _MLP_FIELDS))
MLP_FLAGS = tuple(sorted(_MLP_FIELDS - _LORA_FIELDS))
TRAINING_FLAGS = tuple(sorted(_MLP_FIELDS & _LORA_FIELDS))


def _refuse(args, flags, why: str) -> None:
    """StockLLMError naming the first of ``flags`` the user gave (argparse leaves the others None)."""
    given = [f for f in flags if getattr(args, f, None) is not None]
    if given:
        raise StockLLMError(f"--{given[0]} {why}")


def _check_training_flags(args, models: list[str], where: str) -> None:
    """Refuse LLM flags unless lora runs, MLP flags unless mlp runs, training flags unless one of them runs."""
    if "lora" not in models:
        _refuse(args, LLM_FLAGS, f"applies to the LLM (lora) only, and this run has {where}: drop it")
    if not set(WINDOW_NETS) & set(models):
        _refuse(args, MLP_FLAGS, f"applies to the MLP and LSTM only, and this run has {where}: drop it")
    if not {"lora", *WINDOW_NETS} & set(models):
        _refuse(args, TRAINING_FLAGS, f"applies to trained models (mlp, lstm, lora) only, and this run has {where}: "
                "drop it")


def _check_features(data: DataConfig, models: list[str], prompt_format: str | None) -> None:
    """Refuse --features where nothing would read them, before any data is loaded."""
    if not data.features:
        return
    if not {"lora", *WINDOW_NETS} & set(models):
        raise StockLLMError(f"--features feed the mlp, lstm and lora models only, and --models {','.join(models)} "
                            "has none of them: add one, or drop --features")
    if "lora" in models and prompt_format == "verbose":
        raise StockLLMError("--features are written by the compact codec only: drop --prompt_format verbose or "
                            "drop --features")


def _csv_options(args) -> dict:
    """--columns, --decimal and --date_format, parsed and checked (before any data or model is loaded)."""
    from .data import check_date_format, check_decimal, parse_columns

    options = {"columns": parse_columns(getattr(args, "columns", None)),
               "decimal": check_decimal(getattr(args, "decimal", None)),
               "date_format": check_date_format(getattr(args, "date_format", None))}
    if (options["columns"] or options["decimal"] != "." or options["date_format"]) and getattr(args, "ticker", None):
        raise StockLLMError("--columns, --decimal and --date_format describe --data files; --ticker downloads need "
                            "none of them: drop them")
    return options


def _check_close_only(frames: dict, models) -> None:
    """Refuse close-only files for the models that read Open, High, Low and Volume too, naming them."""
    from .models import REGISTRY

    thin = [name for name, frame in frames.items() if frame.attrs.get("close_only")]
    need = [m for m in models if not REGISTRY[m].closes_only]
    if thin and need:
        fit = ",".join(name for name, spec in REGISTRY.items() if spec.closes_only)
        raise StockLLMError(f"{thin[0]} has closes only (no Open, High, Low, Volume), which {', '.join(need)} "
                            f"need{'s' if len(need) == 1 else ''}: use models that read closes only ({fit}), or "
                            "pass a file with Date,Open,High,Low,Close,Volume")


def _load_frames(paths: list[str], min_rows: int, reason: str, args=None) -> dict:
    """--data values (files, folders, globs, long files with a ticker column) → {series name: frame}; ``args``
    brings --columns, --decimal and --date_format."""
    from .series import load_series

    options = _csv_options(args) if args is not None else {}
    return load_series(paths, min_rows=min_rows, min_rows_reason=reason, **options)
