"""The ``stockllm`` command: download, train, predict, evaluate (and download-model for the LLM).

Thin by design: it parses flags into config dataclasses and calls the library. Every user-fixable problem is
one ``stockllm: error: ...`` line on stderr and a non-zero exit; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import json
import os
import shlex
import signal
import sys
import traceback
import warnings
from pathlib import Path

from . import __version__
from .config import DataConfig, EnsembleConfig, LoRAConfig, MLPConfig, TrainConfig, flat_dict, flat_fields
from .errors import StockLLMError, Terminated, TrainingInterrupted
from .models import MODEL_NAMES, REGISTRY, WINDOW_NETS  # names only: the classes load on first use

# What `train` saves (fitted models of the core install) and what `predict --model` runs without a checkpoint.
TRAINABLE = tuple(n for n, s in REGISTRY.items() if s.needs_fit and s.extra is None)
UNFITTED = tuple(n for n, s in REGISTRY.items() if not s.needs_fit and s.extra is None)
from .settings import (DEFAULT_MODELS, _calibration, _check_close_only, _check_features, _check_training_flags,
                       _csv_options, _data_config, _data_given, _factory, _given, _levels, _load_frames,
                       _model_config, _price_limits, _refuse, _with_members)

EXIT_ERROR = 1


def _tidy_metavars(parser: argparse.ArgumentParser) -> None:
    """Show N / X / TEXT in --help instead of argparse's upper-cased flag names."""
    for action in parser._actions:
        if action.option_strings and action.nargs != 0 and action.metavar is None and action.choices is None:
            action.metavar = {int: "N", float: "X"}.get(action.type, "K" if action.dest == "lora_layers" else "TEXT")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show a full traceback on errors")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def _data_flags(parser: argparse.ArgumentParser, *, alias_test_csv: bool = False, required: bool = True) -> None:
    names = ["--data", "--test_csv"] if alias_test_csv else ["--data"]
    default = " (default: the bundled NASDAQ sample)" if not required else ""
    parser.add_argument(*names, dest="data", nargs="+", required=required, metavar="FILE",
                        help="OHLCV CSV file(s): Date,Open,High,Low,Close,Volume (Yahoo, Nasdaq.com and "
                             "Investing.com exports work as they are), folders of them, globs ('prices/*.csv'), or "
                             "long files with a ticker (or unique_id) column, one series per ticker; several series "
                             f"train one pooled model; 'nasdaq' names the bundled NASDAQ Composite sample{default}")
    _csv_flags(parser)


def _csv_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--columns", metavar="MAP",
                        help="the data files' own column names, as NAME=HEADER pairs: Date=Datum,Open=Eröffnung,"
                             "High=Hoch,Low=Tief,Close=Schluss,Volume=Volumen (names left out keep the standard "
                             "ones)")
    parser.add_argument("--decimal", metavar="CHAR", help="decimal mark in the data files: . (default) or , "
                        "(then . is read as a thousands separator: 1.234,56)")
    parser.add_argument("--date_format", metavar="FMT", help="how the files write dates, as strptime codes: "
                        "%%d.%%m.%%Y for 20.10.2017 (default: YYYY-MM-DD or M/D/YYYY; D/M/YYYY is taken, "
                        "with a warning, where some day is above 12)")


def _window_flags(parser: argparse.ArgumentParser, note: str = "") -> None:
    # No argparse defaults: a resumed run takes what the user did not give from the checkpoint.
    parser.add_argument("--window_size", type=int, help=f"days of history per forecast (default "
                        f"{DataConfig.window_size}{note})")
    parser.add_argument("--horizon", type=int, help=f"number of future closes to forecast (default "
                        f"{DataConfig.horizon}{note})")
    _quantiles_flag(parser)


def _quantiles_flag(parser: argparse.ArgumentParser, extra: str = "") -> None:
    parser.add_argument("--quantiles", metavar="LEVELS",
                        help="comma-separated quantile levels of the forecast distribution, strictly between 0 and "
                             "1, with 0.5 or levels on both sides of it (default "
                             f"{','.join(f'{q:g}' for q in DataConfig.quantiles)}){extra}")


def _calendar_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calendar", metavar="CODE",
                        help="exchange calendar for forecast dates: an exchange_calendars code (XNYS, XSHG, XHKG, "
                             "XTKS, XLON, ...) or 'business' for Monday-Friday (default: from the ticker or file "
                             "name suffix: .SS/.SZ -> XSHG, .HK -> XHKG, .T -> XTKS, none -> XNYS)")


def _source_flags(parser: argparse.ArgumentParser) -> None:
    from .sources import ADJUSTS, SOURCES

    parser.add_argument("--source", choices=SOURCES,
                        help="where --ticker history comes from: yahoo (default), akshare or baostock (mainland "
                             "A-shares without Yahoo; pip install 'stockllm[cn]'; tickers 600519, 600519.SS or "
                             "sh.600519; dated by the Shanghai calendar)")
    parser.add_argument("--adjust", choices=ADJUSTS, default=None,
                        help="price adjustment: none (as quoted), split, or full (splits and dividends; the "
                             "default). akshare and baostock offer none and full")


def _predict_flags(p: argparse.ArgumentParser, tickers: bool) -> None:
    """Flags of predict, and of forecast (which adds --ticker and --period)."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", "--lora_weights", dest="checkpoint", metavar="DIR",
                     help="checkpoint folder from train")
    src.add_argument("--model", choices=UNFITTED, help="a baseline that needs no checkpoint")
    p.add_argument("--model_path", metavar="PATH", help="a checkpoint folder, or (LLM) the base model to use "
                   "instead of the one recorded in the checkpoint")
    if tickers:
        inputs = p.add_mutually_exclusive_group(required=True)
        inputs.add_argument("--ticker", help="Yahoo Finance symbol(s), comma-separated (AAPL,600519.SS,0700.HK): "
                            "their latest daily history is downloaded")
        inputs.add_argument("--data", nargs="+", metavar="FILE", help="OHLCV CSV file(s), folders, globs or long "
                            "files with a ticker column, instead of --ticker")
        _csv_flags(p)
        p.add_argument("--period", help="history to download: 1y, 2y, 5y, max ... (default: 2y, more for windows "
                       "over 200 days)")
        _source_flags(p)
        p.add_argument("--ledger", metavar="FILE", help="also append this run's forecasts (every quantile, the model "
                       "and its checkpoint id, the data's last date, the run time) to this CSV ledger; score it "
                       "later with `stockllm score --ledger FILE`")
    else:
        _data_flags(p, alias_test_csv=True)
    p.add_argument("--window_size", type=int, help="--model naive|drift only (default 30); a checkpoint keeps its own")
    p.add_argument("--horizon", type=int, help="--model naive|drift only (default 3); a checkpoint keeps its own")
    _quantiles_flag(p, "; with --checkpoint, some of the levels it was trained for")
    p.add_argument("--output", default="predictions.csv", metavar="FILE", help="CSV to write (default %(default)s)")
    _calendar_flag(p)
    _limit_flags(p)
    p.add_argument("--plot", metavar="FILE", help="also draw a PNG: the last 60 closes and the forecast fan (median "
                   "and central intervals)")
    p.add_argument("--device", help="auto (default), cpu, cuda or mps")
    p.add_argument("--trust_remote_code", action="store_true", default=None, help="allow the base model's own code")
    _calibrate_flags(p)
    _common(p)


def _calibrate_flags(parser: argparse.ArgumentParser, evaluate: bool = False) -> None:
    from .config import CalibrationConfig

    what = ("also score every model with quantiles recalibrated online, as MODEL+aci rows" if evaluate else
            "recalibrate the quantiles online from the file's own past coverage errors")
    parser.add_argument("--calibrate", choices=["none", "aci"], help=f"{what}: aci = adaptive conformal inference "
                        "on σ-standardised scores, causal (default none)")
    parser.add_argument("--calibration_step", type=float, help="--calibrate aci: the step γ of each level's offset, "
                        f"in units of σ·√h (default {CalibrationConfig.gamma})")


def _limit_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--price_limits", choices=("auto", "off"), help="auto (default): clip the forecast closes "
                        "of A-shares (600000.SS, 600000.SH, sh.600000, 600000) to their board's daily limit, "
                        "compounded (main ±10%%, ChiNext/STAR ±20%%, Beijing ±30%%); off: never clip")
    parser.add_argument("--price_limit", type=float, metavar="X", help="clip every series to this daily limit "
                        "instead (0.05 for an ST name's ±5%%)")


def _features_flag(parser: argparse.ArgumentParser) -> None:
    from .indicators import INDICATORS

    parser.add_argument("--features", metavar="LIST",
                        help="technical indicators added to each day's inputs (mlp, lstm) and text (lora, compact "
                             f"codec), comma-separated: {','.join(INDICATORS)} (default: none); saved in the "
                             "checkpoint")


# Who each config's defaults are for, in the help of a flag that several of them share.
_DEFAULTS_FOR = (("mlp, lstm", MLPConfig), ("lora", LoRAConfig), ("ensemble", EnsembleConfig))


def _show_default(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _config_flags(group, configs, names, owner=None) -> None:
    """Flags generated from config dataclass fields: ``--NAME`` of each of ``names`` (flat setting names, as
    ``config.flat_fields``; a field's ``flag`` metadata renames it), its type, choices and help from the field and
    the docstring of the config that holds it (``owner``, else the first of TrainConfig and ``configs`` that has
    it), and its default(s) from ``configs`` ((label, config class) pairs; one default shown when all agree).
    argparse itself defaults to None: a flag not given is one the run did not set (a resumed run takes it from
    the saved state)."""
    import types
    import typing

    from .config import field_docs, flag_names

    owners = [owner] if owner else [TrainConfig, *(cls for _, cls in configs)]
    for name in names:
        holder = next(c for c in owners if name in {f.name for f in dataclasses.fields(c)})
        fld = next(f for f in dataclasses.fields(holder) if f.name == name)
        hint = typing.get_type_hints(holder)[name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        kinds = [h for h in typing.get_args(hint) if h is not type(None)] if union else [hint]
        defaults = [(label, flat_dict(cls())[name]) for label, cls in configs if name in flat_fields(cls)]
        if len({repr(v) for _, v in defaults}) == 1:
            shown = f"default {_show_default(defaults[0][1])}"
        else:
            shown = "default: " + "; ".join(f"{label} {_show_default(v)}" for label, v in defaults)
        flag = flag_names(holder)[name]
        help_text = f"{field_docs(holder)[name].rstrip('.')} ({shown})"
        if kinds[0] is bool:
            group.add_argument(f"--{flag}", dest=flag, action="store_true", default=None, help=help_text)
            continue
        kind = kinds[0] if kinds[0] in (int, float) else str
        metavar = "LIST" if typing.get_origin(kinds[0]) is tuple else None
        group.add_argument(f"--{flag}", dest=flag, type=kind, choices=fld.metadata.get("choices"), metavar=metavar,
                           help=help_text)


def _training_flags(parser: argparse.ArgumentParser, *, state: bool = False) -> None:
    """The training flags of train (``state``: with --save_every) and evaluate, generated from the configs."""
    mlp, lora, loop = flat_fields(MLPConfig), flat_fields(LoRAConfig), flat_fields(TrainConfig)
    # The loop's settings first, then the others both model families have (val_size, head_base).
    shared = [n for n in loop if state or n != "save_every"] + [n for n in mlp if n in lora and n not in loop]
    g = parser.add_argument_group("training (mlp, lstm, lora; defaults differ where shown)")
    _config_flags(g, _DEFAULTS_FOR, shared)
    g = parser.add_argument_group("MLP and LSTM (--model mlp, lstm)")
    _config_flags(g, _DEFAULTS_FOR[:1], [n for n in mlp if n not in lora])
    g = parser.add_argument_group("ensemble (--model ensemble)")
    _config_flags(g, _DEFAULTS_FOR[2:], ["members"])
    g = parser.add_argument_group("LLM (--model lora)")
    _config_flags(g, _DEFAULTS_FOR[1:2], [n for n in lora if n not in mlp])


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stockllm",
        description="Forecast the next few daily closes with a LoRA-tuned language model, always scored beside "
                    "the random walk (naive) and drift on data the model never saw.",
        epilog="Example: stockllm evaluate --models naive,fhs,mlp,ensemble  (runs on the bundled NASDAQ sample)",
    )
    parser.add_argument("--version", action="version", version=f"stockllm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("download", help="download daily OHLCV history from Yahoo Finance to CSV",
                       description="Download OHLCV history through yfinance and write Date,Open,High,Low,Close,"
                                   "Volume CSV files.")
    p.add_argument("--ticker", required=True, help="symbol, or several separated by commas (AAPL,MSFT): one CSV each")
    p.add_argument("--period", default=None, help="how far back: 1mo, 6mo, 1y, 5y, max ... (default 1y unless "
                   "--start is given)")
    p.add_argument("--start", help="first date, YYYY-MM-DD")
    p.add_argument("--end", help="last date (exclusive), YYYY-MM-DD")
    p.add_argument("--interval", default="1d", help="bar size (default %(default)s)")
    p.add_argument("--output", metavar="PATH",
                   help="CSV path for one ticker (default TICKER.csv), or a folder for several")
    _source_flags(p)
    _common(p)

    p = sub.add_parser("train", help="train a model and save a checkpoint folder",
                       description="Train a forecaster on one or more CSV files (their windows are pooled) and save "
                                   "the best epoch as a checkpoint folder (safetensors + stockllm.json).")
    p.add_argument("--model", choices=TRAINABLE, default="mlp",
                   help="; ".join(f"{n}: {REGISTRY[n].summary}" for n in TRAINABLE) + " (default mlp)")
    _data_flags(p)
    _window_flags(p)
    _features_flag(p)
    p.add_argument("--save_dir", default="./checkpoints", metavar="DIR",
                   help="checkpoint folder to write (default %(default)s)")
    p.add_argument("--resume", metavar="DIR", nargs="?", const=True,
                   help="without DIR: continue exactly from the newest training state in SAVE_DIR/state/ (after a "
                        "crash or an interrupt; mlp, lstm, lora); with DIR: warm-start from that finished "
                        "checkpoint's weights (lora only)")
    _training_flags(p, state=True)
    _common(p)

    p = sub.add_parser("predict", help="forecast the next closes after the last row of a CSV",
                       description="Forecast the next H trading sessions after the last row of each file and write "
                                   "predictions.csv (date,horizon,predicted_close,last_close,model,series,last_date,"
                                   "limited,q0.1,...).")
    _predict_flags(p, tickers=False)
    p = sub.add_parser("forecast", help="download the latest history of tickers and forecast their next sessions",
                       description="Download each ticker's latest daily history from Yahoo Finance (or read --data), "
                                   "forecast the next H sessions of its exchange, print them with their intervals "
                                   "and write predictions.csv.",
                       epilog="Example: stockllm forecast --ticker AAPL,600519.SS --model naive")
    _predict_flags(p, tickers=True)

    p = sub.add_parser("evaluate", help="backtest of several models beside naive, after one cutoff date",
                       description="Pick one cutoff date for all series, fit the models on the dates before it "
                                   "only, forecast from every origin on or after it and score against the random "
                                   "walk.")
    _data_flags(p, required=False)
    _window_flags(p, note="; with --checkpoint, the checkpoint's")
    _features_flag(p)
    p.add_argument("--models", metavar="LIST", help=f"comma-separated, from {','.join(MODEL_NAMES)} (default {DEFAULT_MODELS}; "
                   "with --checkpoint, naive; naive is always scored)")
    p.add_argument("--test_size", type=float, help="share of the union of the series' dates held out at the end; "
                   "its first date is the cutoff for all series (default 0.2)")
    p.add_argument("--test_start", metavar="YYYY-MM-DD", help="the cutoff date itself: test origins are on or "
                   "after it, fitting and validation before it (instead of --test_size)")
    p.add_argument("--checkpoint", metavar="DIR", help="also score this trained checkpoint folder without fitting "
                   "it; the test part is then every origin after its training data (or from --test_start)")
    from .config import ChronosConfig, flag_names

    _config_flags(p.add_argument_group("peers (--models chronos)"), (("chronos", ChronosConfig),),
                  list(flag_names(ChronosConfig)), owner=ChronosConfig)
    p.add_argument("--refit_every", type=int, metavar="N", help="fit the models again every N test days on all data "
                   "before that day (expanding window); cheap models only (default: one fit before the cutoff)")
    p.add_argument("--output_dir", default="evaluation", metavar="DIR",
                   help="folder for metrics.csv, forecasts.csv, plot.png and report.html (default %(default)s)")
    _calibrate_flags(p, evaluate=True)
    _limit_flags(p)
    _training_flags(p)
    _common(p)

    p = sub.add_parser("score", help="score a forecast ledger against the closes that have come since",
                       description="Read the ledger that forecast --ledger wrote, take the actual closes (from "
                                   "--data files or downloaded through --source), and score every forecast whose "
                                   "target date has passed: MAE, WQL and coverage beside naive, per ticker, model "
                                   "and horizon.",
                       epilog="Example: stockllm score --ledger ledger.csv --data AAPL.csv")
    p.add_argument("--ledger", required=True, metavar="FILE", help="the ledger CSV that forecast --ledger wrote")
    p.add_argument("--data", nargs="+", metavar="FILE", help="OHLCV CSV file(s) of the actual closes, named after "
                   "the ledger's tickers (AAPL.csv); default: download them through --source")
    _csv_flags(p)
    p.add_argument("--source", choices=("yahoo", "akshare", "baostock"),
                   help="where to download the actual closes (default: the source each ticker's forecasts used)")
    p.add_argument("--adjust", choices=("none", "split", "full"), help="price adjustment of the downloaded closes "
                   "(default: the one each ticker's forecasts recorded, so like is scored with like; none for "
                   "ledgers that record none)")
    p.add_argument("--output", metavar="FILE", help="also write the metrics as CSV")
    _common(p)

    p = sub.add_parser("serve", help="serve forecasts over HTTP (FastAPI + uvicorn; pip install 'stockllm[serve]')",
                       description="Load models once and answer GET /health, GET /models, POST /forecast (tickers "
                                   "fetched through --source and cached for the day, or OHLCV rows in the body) "
                                   "and GET / (a watchlist page with each ticker's forecast fan).",
                       epilog="Example: stockllm serve --model naive --watch AAPL,MSFT  (then open "
                              "http://127.0.0.1:8000/)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="DIR",
                   help="a checkpoint folder to serve (repeat for several; NAME=DIR names it, default its kind)")
    p.add_argument("--model", action="append", default=[], choices=UNFITTED,
                   help="a baseline to serve (repeatable)")
    p.add_argument("--window_size", type=int, help="--model naive|drift only (default 30)")
    p.add_argument("--horizon", type=int, help="--model naive|drift only (default 3)")
    _quantiles_flag(p, "; for --model naive|drift (a request may ask for other levels)")
    _source_flags(p)
    p.add_argument("--data", nargs="+", metavar="FILE", help="OHLCV CSV file(s) served by name (AAPL.csv answers "
                   "ticker AAPL) without any download")
    _csv_flags(p)
    p.add_argument("--watch", metavar="TICKERS", help="tickers of the watchlist page GET / (default: the --data "
                   "series)")
    _calendar_flag(p)
    _limit_flags(p)
    p.add_argument("--ledger", metavar="FILE", help="append every POST /forecast answer to this ledger CSV")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s: this machine "
                   "only; the server has no authentication)")
    p.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    p.add_argument("--max_tickers", type=int, default=100, help="tickers or series per request (default "
                   "%(default)s)")
    p.add_argument("--max_body_mb", type=float, default=8.0, help="largest request body in MB (default "
                   "%(default)s)")
    p.add_argument("--device", help="auto (default), cpu, cuda or mps (LLM checkpoints)")
    _common(p)

    p = sub.add_parser("download-model", help="download a base model from the Hugging Face Hub to a folder",
                       description="Download a base model (config, tokenizer, safetensors weights) for --model_path.")
    p.add_argument("--model", default=LoRAConfig.model_path, help="Hugging Face id (default %(default)s)")
    p.add_argument("--save_dir", metavar="DIR",
                   help="folder to write (default: the id's last part, e.g. ./Qwen3-0.6B)")
    p.add_argument("--revision", help="branch, tag or commit (default: main)")
    _common(p)
    for command in sub.choices.values():
        _tidy_metavars(command)
    return parser


def _report(model, say) -> None:
    from .device import peak_memory_mb

    mb, label = peak_memory_mb()
    say(f"trainable parameters: {model.num_trainable_parameters():,}{model.trainable_parameters_detail()}")
    say(f"peak memory: {mb:,.0f} MB ({label})")


def _tickers(text: str) -> list[str]:
    tickers = [t.strip().upper() for t in text.split(",") if t.strip()]
    if not tickers:
        raise StockLLMError("--ticker is empty: pass a symbol such as AAPL, or AAPL,MSFT")
    return tickers


def _download_frames(tickers: list[str], period: str, say, source: str = "yahoo", adjust: str | None = None) -> dict:
    """{ticker: checked OHLCV frame} of the latest daily history; all are fetched before any is used, so one bad
    ticker costs nothing else."""
    from .sources import NAMES, download, series_name

    frames = {}
    for ticker in tickers:
        say(f"downloading {ticker} ({period} of daily bars from {NAMES[source]})")
        frames[series_name(ticker, source)] = download(ticker, source, adjust=adjust, period=period)
    return frames


def _check_png(path: str) -> None:
    """Refuse a --plot path that cannot be written, before any model loads."""
    from .outputs import file_target

    target = file_target(path, "--plot")
    if target.suffix.lower() != ".png":
        raise StockLLMError(f"--plot {path}: name a .png file (e.g. forecast.png)")
    if target.is_dir() or not target.parent.is_dir():
        raise StockLLMError(f"--plot {path}: {'is a folder' if target.is_dir() else 'its folder does not exist'}; "
                            "name a .png file in an existing folder")


def cmd_download(args, say) -> None:
    from .data import save_ohlcv_csv
    from .sources import check_adjust, download, series_name

    tickers = _tickers(args.ticker)
    if args.period and (args.start or args.end):
        raise StockLLMError("--period and --start/--end both say how far back: pass one of them")
    source = args.source or "yahoo"
    adjust = check_adjust(source, args.adjust)
    period = args.period if (args.period or args.start) else "1y"
    as_dir = len(tickers) > 1 or (args.output and (args.output.endswith(os.sep) or Path(args.output).is_dir()))
    frames = {}
    for ticker in tickers:  # fetch all first, so one bad ticker writes nothing
        frames[series_name(ticker, source)] = download(ticker, source, adjust=adjust, period=period,
                                                            start=args.start, end=args.end, interval=args.interval)
    for ticker, frame in frames.items():
        if as_dir:
            path = Path(args.output or ".") / f"{ticker}.csv"
        else:
            path = Path(args.output or f"{ticker}.csv")
        save_ohlcv_csv(frame, path)
        say(f"{ticker}: {len(frame)} rows {frame.index[0]:%Y-%m-%d} .. {frame.index[-1]:%Y-%m-%d} -> {path}")


def cmd_train(args, say) -> None:
    from .checkpoint import check_target

    # Every check that needs no data comes first, before torch loads: a bad flag answers at once.
    data = _data_config(args)
    _check_features(data, _with_members([args.model], args), args.prompt_format)
    if args.resume is not None and args.model not in ("lora", *WINDOW_NETS):
        raise StockLLMError(f"--resume is for --model mlp, lstm or lora; the {args.model} fits in seconds, so fit it "
                            "again without --resume")
    if isinstance(args.resume, str) and args.model != "lora":
        raise StockLLMError(f"--resume {args.resume} (a warm start from a finished checkpoint) is for --model lora; "
                            f"the {args.model} trains quickly: train it afresh, or pass --resume alone to continue "
                            "the interrupted run in --save_dir")
    _check_training_flags(args, _with_members([args.model], args), f"--model {args.model}")
    config = _model_config(args.model, args)  # --save_every included (and range-checked)
    check_target(args.save_dir)  # before training: a bad path must not cost a training run
    if args.resume is True:
        data, config = _resumed_settings(args)
    frames = _load_frames(args.data, data.min_rows + 1, f"window {data.window_size} + horizon {data.horizon} + 1",
                          args)
    _check_close_only(frames, [args.model])
    from .models import model_class

    cls = model_class(args.model)
    if isinstance(args.resume, str):
        _recorded(args.resume, "data", _data_given(args), tuple(vars(data)))  # refuses changed settings
        model = cls.load(args.resume, train_config=_warm_start_config(args, config))
    else:
        model = _factory(args.model, args, data)()
    resumable = args.model in ("lora", *WINDOW_NETS)
    fit_kwargs = {"save_dir": args.save_dir, "resume": args.resume is True} if resumable else {}
    model.fit(list(frames.values()), progress=not args.quiet, **fit_kwargs)
    model.save(args.save_dir)
    info = model.fit_info
    if math.isfinite(info.get("naive_val_loss", math.nan)) and info["naive_val_loss"] > 0:
        where = f"epoch {info['best_epoch']}" if "best_epoch" in info else f"step {info['best_step']}"
        start = {"fhs": "FHS start", "gaussian": "naive start"}.get(info.get("start"), "untrained")
        say(f"best {where}: val_loss {info['best_val_loss']:.4f} ({start} {info['naive_val_loss']:.4f}, "
            f"ratio {info['best_val_loss'] / info['naive_val_loss']:.3f})")
    if info.get("stop_reason"):
        say(f"training stopped at step {info['steps']} ({info.get('epochs_run', 0):g} epochs): "
            f"{info['stopped_because']} [{info['stop_reason']}]")
    if "weights" in info:
        say(f"ensemble weights (fitted on the validation dates from {info['validation_start']}): "
            f"{model.describe() or 'none'}")
    for note in info.get("notes", []):
        say(f"note: {note}")
    _report(model, say)
    say(f"saved checkpoint to {args.save_dir}")


# Settings a warm start (--resume DIR) keeps from the checkpoint: they shape the weights it loads.
WARM_FROZEN = ("model_path", "prompt_format", "lora_rank", "lora_alpha", "target_modules", "lora_layers",
               "head_base", "random_init")


def _recorded(where: str, section: str, given: dict, keys: tuple, recorded: dict | None = None) -> dict:
    """The ``keys`` of a checkpoint's (or state's) recorded ``section``, refusing given flags that differ."""
    from .checkpoint import read_meta

    recorded = read_meta(where).get(section, {}) if recorded is None else recorded
    out = {k: recorded[k] for k in keys if k in recorded}
    for key in keys:
        if key not in given:
            continue
        if key in out and _canon(given[key]) != _canon(out[key]):
            raise StockLLMError(f"--{key} {_show(given[key])} differs from {_show(out[key])} recorded in {where}: "
                                f"resume with the same --{key} (or leave it out), or train afresh without --resume")
        out[key] = given[key]
    return out


def _canon(value) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value, sort_keys=True)


def _show(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or "none"
    return str(value)


def _warm_start_config(args, config: LoRAConfig) -> LoRAConfig:
    """This run's config, with the weight-shaping settings taken from the checkpoint (refused if changed)."""
    from .checkpoint import read_meta
    from .config import from_dict, from_flat, old_head_base

    saved = old_head_base(read_meta(args.resume).get("config", {}))
    recorded = flat_dict(from_dict(LoRAConfig, saved, source=args.resume))
    frozen = _recorded(args.resume, "config", _given(args, LoRAConfig), WARM_FROZEN, recorded)
    if frozen.get("random_init"):  # the random base is drawn from the seed: another seed, another base
        frozen.update(_recorded(args.resume, "config", _given(args, LoRAConfig), ("seed",), recorded))
    return from_flat(LoRAConfig, {**flat_dict(config), **frozen})


def _resumed_settings(args) -> tuple[DataConfig, LoRAConfig | MLPConfig]:
    """Data and model settings for an exact resume: the interrupted run's, with per-run flags from this run.

    Flags left out are taken from the saved state; a given flag that differs from it is refused, since the
    saved optimizer, schedule and data position only continue the run they came from.
    """
    from .train import latest_state, read_loop_state

    state = latest_state(args.save_dir)
    fingerprint = read_loop_state(state).get("fingerprint", {})
    where = str(state)
    kind = fingerprint.get("kind", "lora")  # LLM states from before the MLP saved state do not record it
    if kind != args.model:
        raise StockLLMError(f"the training state in {where} comes from a --model {kind} run, not --model "
                            f"{args.model}: resume with --model {kind}, or train afresh without --resume")
    data = _recorded(where, "data", _data_given(args), tuple(f.name for f in dataclasses.fields(DataConfig)),
                     recorded=fingerprint.get("data", {}))
    cls = MLPConfig if args.model in WINDOW_NETS else LoRAConfig
    saved = fingerprint.get("config", {})
    given = _given(args, cls)
    config = _recorded(where, "config", given, tuple(saved), recorded=saved)
    per_run = {k: v for k, v in given.items() if k not in saved}
    from .config import from_dict, from_flat

    known = set(flat_fields(cls))  # a state from an older stockllm may record settings this one dropped
    return from_dict(DataConfig, data), from_flat(cls, {k: v for k, v in {**config, **per_run}.items() if k in known})


def cmd_predict(args, say) -> None:
    """predict (CSV files) and forecast (tickers downloaded, or files)."""
    from .checkpoint import META_FILE, read_meta

    checkpoint, base_override = args.checkpoint, None
    levels = _levels(args)  # checked before any model loads
    calibration = _calibration(args)
    limits = _price_limits(args)
    tickers = _tickers(args.ticker) if getattr(args, "ticker", None) else None
    if getattr(args, "period", None) and not tickers:
        raise StockLLMError("--period applies to --ticker downloads only; --data files are used as they are: drop it")
    from .outputs import file_target

    file_target(args.output, "--output")  # before the forecast: a bad path must not cost a model load
    if args.plot:
        _check_png(args.plot)
    if args.model_path:
        if checkpoint is None and not args.model:
            if not (Path(args.model_path) / META_FILE).is_file():
                raise StockLLMError(f"--model_path {args.model_path} is not a stockllm checkpoint (no {META_FILE}): "
                                    "pass the --save_dir of `stockllm train` (for the LLM, --checkpoint DIR "
                                    "--model_path BASE)")
            checkpoint = args.model_path
        else:
            base_override = args.model_path
    if args.model:
        _refuse(args, ("model_path", "device", "trust_remote_code"), f"applies to LLM checkpoints only, not to "
                f"--model {args.model}: drop it")
        data = _data_config(args)
    elif checkpoint:
        kind = read_meta(checkpoint).get("kind", "?")
        _refuse(args, ("window_size", "horizon"), f"applies to --model naive|drift only; the {kind} checkpoint "
                f"{checkpoint} keeps the window and horizon it was trained with: drop it")
        if kind != "lora":
            why = f"applies to LLM checkpoints only, and {checkpoint} holds a {kind} model: drop it"
            if base_override:
                raise StockLLMError(f"--model_path {base_override} {why}")
            _refuse(args, ("device", "trust_remote_code"), why)
    else:
        raise StockLLMError("nothing to predict with: pass --checkpoint DIR (from stockllm train) or --model naive")
    calendar = None
    source = getattr(args, "source", None) or "yahoo"
    if not tickers:
        _refuse(args, ("source", "adjust"), "applies to --ticker downloads only; --data files are used as they are: "
                "drop it")
    else:
        from .sources import check_adjust, default_calendar

        args.adjust = check_adjust(source, args.adjust)
        calendar = default_calendar(source)
    if args.calendar:
        from .calendars import check_calendar

        calendar = check_calendar(args.calendar)
    if getattr(args, "ledger", None):
        from .ledger import check_ledger

        check_ledger(args.ledger)
    import pandas as pd

    from .data import write_csv_atomic
    from .models import load_forecaster, model_class
    from .quantiles import central_intervals, column

    if args.model:
        model = model_class(args.model)(data)
    else:
        overrides = {k: v for k, v in {"model_path": base_override, "device": args.device,
                                         "trust_remote_code": args.trust_remote_code}.items() if v is not None}
        model = load_forecaster(checkpoint, **overrides)
    levels = levels or model.quantiles
    model.check_levels(levels)
    if getattr(args, "ticker", None):
        frames = _download_frames(tickers, args.period or f"{max(2, math.ceil(model.window_size / 200) + 1)}y", say,
                                  source, args.adjust)
    else:
        from .models.pipeline import min_history

        frames = _load_frames(args.data, *min_history(model), args)
        _check_close_only(frames, [model.kind])
    if calibration[0]:
        from .calibration import calibrated

        model = calibrated(model, *calibration)
    model = model.limited_to(limits)
    tables = []
    for series, frame in frames.items():
        table = model.forecast(frame, levels, calendar=calendar)
        table.insert(0, "series", series)
        tables.append(table)
    result = pd.concat(tables, ignore_index=True)
    _report(model, say)
    intervals = central_intervals(levels)
    pct, lo, hi = next((i for i in intervals if i[0] == 80), intervals[0] if intervals else (None, None, None))
    for series, g in result.groupby("series", sort=False):
        say(f"{series}: last close {g['last_close'].iloc[0]:.2f} on {g['last_date'].iloc[0]}; model {model.kind}"
            + (f"; median close and {pct}% interval" if pct else "; median close"))
        for _, row in g.iterrows():
            band = f"  {pct}% [{row[column(lo)]:.2f}, {row[column(hi)]:.2f}]" if pct else ""
            mark = "  (price limit)" if row["limited"] else ""
            say(f"  {row['date']}  +{row['horizon']}d  {row['predicted_close']:.2f}{band}{mark}")
    cols = ["date", "horizon", "predicted_close", "last_close", "model", "series", "last_date", "limited"]
    cols += [column(level) for level in levels]
    from .outputs import check_finite

    check_finite(result, args.output)
    if args.plot:
        from .plots import plot_fan

        plot_fan(frames, result, args.plot)  # first: the step more likely to fail, so no CSV is left alone
    write_csv_atomic(result[cols], args.output, index=False)
    say(f"wrote {args.output}" + (f" and {args.plot}" if args.plot else ""))
    if getattr(args, "ledger", None):
        from .ledger import append_forecasts, checkpoint_id

        n = append_forecasts(args.ledger, result.rename(columns={"series": "ticker"}),
                             checkpoint=checkpoint_id(checkpoint) if not args.model else "",
                             source=source if tickers else "data", adjust=args.adjust if tickers else "")
        say(f"appended {n} rows to the ledger {args.ledger}")


def cmd_evaluate(args, say) -> None:
    from .evaluation import run_evaluate

    run_evaluate(args, say)


def cmd_download_model(args, say) -> None:
    from .hf import download_model

    target = args.save_dir or args.model.rstrip("/").split("/")[-1]
    path = download_model(args.model, target, revision=args.revision)
    say(f"downloaded {args.model} to {path}; use it with --model_path {path}")


def cmd_score(args, say) -> None:
    from .data import write_csv_atomic
    from .metrics import format_table
    from .ledger import adjustments, read_ledger, score

    if args.data:
        _refuse(args, ("source", "adjust"), "applies to downloaded closes; --data files are used as they are: drop it")
    ledger, notes = read_ledger(args.ledger)
    for note in notes:
        say(f"note: {note}")
    if ledger.empty:
        raise StockLLMError(f"no complete forecasts in the ledger {args.ledger}: run stockllm forecast --ledger "
                            f"{args.ledger} first")
    tickers = list(dict.fromkeys(ledger["ticker"]))
    used = adjustments(ledger)  # refuses a ticker forecast with two adjustments
    if args.data:
        frames = _load_frames(args.data, 1, "", args)
        lower = {name.lower(): name for name in frames}
        frames = {t: frames[lower[t.lower()]] for t in tickers if t.lower() in lower}
    else:
        from .sources import SOURCES, check_adjust, download

        import pandas as pd

        start = (ledger["last_date"].min() - pd.Timedelta(days=200)).strftime("%Y-%m-%d")
        frames = {}
        for ticker in tickers:
            origin = ledger.loc[ledger["ticker"] == ticker, "source"].iloc[-1]
            source = args.source or (origin if origin in SOURCES else "yahoo")
            if args.adjust and used[ticker] and args.adjust != used[ticker]:
                raise StockLLMError(f"--adjust {args.adjust} differs from --adjust {used[ticker]}, which the "
                                    f"ledger's forecasts of {ticker} used: drop --adjust to score like with like")
            adjust = check_adjust(source, args.adjust or used[ticker] or "none")
            say(f"downloading {ticker} from {source} (since {start}, adjust {adjust})")
            frames[ticker] = download(ticker, source, adjust=adjust, period=None, start=start)
    table, forecasts, counts = score(ledger, frames)
    say(f"{counts['scored']} forecasts scored; {counts['pending']} still ahead of the data's last date"
        + (f"; {counts['no_close']} without a close on their date" if counts["no_close"] else "")
        + (f"; {counts['no_data']} of tickers without data ({', '.join(t for t in tickers if t not in frames)}: "
           "pass their files to --data, named after them)" if counts["no_data"] else "")
        + (f"; {counts['duplicates']} repeated forecasts (same model, ticker, last date and horizon: the latest "
           "run kept)" if counts["duplicates"] else "")
        + (f"; {counts['rebased']} forecasts of adjusted closes rebased to the data's adjustment (a dividend or "
           "split since)" if counts.get("rebased") else ""))
    if table.empty:
        say("nothing to score yet: no forecast's target date has a close in the data")
        return
    say(format_table(table))
    if args.output:
        write_csv_atomic(table, args.output, index=False)
        say(f"wrote {args.output}")


def cmd_serve(args, say) -> None:
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise StockLLMError(f"stockllm serve needs {' and '.join(missing)}: pip install 'stockllm[serve]'")
    if not 0 < args.port < 65536:
        raise StockLLMError(f"--port {args.port} must be between 1 and 65535")
    if args.max_tickers < 1 or not args.max_body_mb > 0:
        raise StockLLMError("--max_tickers and --max_body_mb must be above 0")
    if not args.checkpoint and not args.model:
        raise StockLLMError("nothing to serve: pass --checkpoint DIR (from stockllm train) or --model naive")
    if args.checkpoint:
        _refuse(args, ("window_size", "horizon", "quantiles"), "applies to --model naive|drift only; a checkpoint keeps "
                "its own (a request may ask for some of its levels): drop it")
    from .sources import check_adjust, default_calendar

    source = args.source or "yahoo"
    adjust = check_adjust(source, args.adjust)
    limits = _price_limits(args)
    calendar = default_calendar(source)
    if args.calendar:
        from .calendars import check_calendar

        calendar = check_calendar(args.calendar)
    if args.ledger:
        from .ledger import check_ledger

        check_ledger(args.ledger)
    watch = _tickers(args.watch) if args.watch else []
    import socket

    try:  # a taken port gives one line now, not a uvicorn traceback after the models load
        with socket.create_server((args.host, args.port)):
            pass
    except OSError as exc:
        raise StockLLMError(f"cannot listen on {args.host}:{args.port} ({(exc.strerror or str(exc)).lower()}): pass "
                            "another --port or --host") from None
    from .serve import Service, create_app, load_models
    from .sources import download

    data = _data_config(args) if args.model else None
    overrides = {"device": args.device} if args.device else {}
    models = load_models(args.checkpoint, args.model, data, overrides)
    files = _load_frames(args.data, 1, "", args) if args.data else {}

    def fetch(ticker, period):
        return download(ticker, source, adjust=adjust, period=period)

    service = Service(models, fetch, files=files, watch=watch, ledger=args.ledger, source=source, adjust=adjust,
                      calendar=calendar, price_limits=limits, max_tickers=args.max_tickers)
    app = create_app(service, max_body_bytes=int(args.max_body_mb * 1024 * 1024))
    import uvicorn

    say(f"serving {', '.join(models)} on http://{args.host}:{args.port}/ (data: {source}"
        + (f" and {len(files)} file{'s' if len(files) != 1 else ''}" if files else "") + "); Ctrl-C stops")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        say(f"note: --host {args.host} lets other machines in, and the server has no authentication")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info",
                access_log=not args.quiet)


COMMANDS = {"download": cmd_download, "train": cmd_train, "predict": cmd_predict, "forecast": cmd_predict,
            "evaluate": cmd_evaluate, "score": cmd_score, "serve": cmd_serve, "download-model": cmd_download_model}


LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def _stray_launcher_variables() -> None:
    """Drop RANK/WORLD_SIZE that no launcher set (torchrun and accelerate launch also set MASTER_ADDR and
    MASTER_PORT): left in place, rank 1 would write nothing and WORLD_SIZE 2 would wait for a second process."""
    stray = [v for v in LAUNCHER_VARIABLES if v in os.environ]
    if not stray or ("MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ):
        return
    for name in stray:
        os.environ.pop(name)
    print(f"stockllm: warning: ignoring {', '.join(stray)} in the environment: no launcher set MASTER_ADDR and "
          "MASTER_PORT; start several processes with accelerate launch or torchrun", file=sys.stderr)


def _print_warning(message, category, filename, lineno, file=None, line=None):
    print(f"stockllm: warning: {message}", file=sys.stderr)


def _quiet_libraries() -> None:
    """Keep library chatter (weight-loading bars, deprecation notices aimed at developers) out of the terminal.

    Only deprecations are hidden: other library warnings (PEFT's missing or unexpected adapter keys, say) show.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("transformers", "peft", "accelerate", "torch"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=name)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=name)
    # Read by transformers and huggingface_hub when they are imported: setting them costs no import (the
    # arguments are checked first, and a bad flag must not wait for transformers to load). A user's own values win.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _out_of_memory(exc: BaseException) -> bool:
    """A CUDA (or MPS) out-of-memory error, by type name so that torch need not be imported here."""
    return type(exc).__name__ == "OutOfMemoryError" or (isinstance(exc, RuntimeError)
                                                         and "out of memory" in str(exc).lower())


def _resume_command(argv: list[str]) -> str:
    """The command line that continues an interrupted ``train``: the same flags, with a bare --resume."""
    out, skip = [], False
    for i, tok in enumerate(argv):
        if skip:
            skip = False
            continue
        if tok.startswith("--resume="):
            continue
        if tok == "--resume":
            skip = i + 1 < len(argv) and not argv[i + 1].startswith("-")
            continue
        out.append(tok)
    return shlex.join(["stockllm", *out, "--resume"])


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 error, 130 interrupted). Bad flags exit 2 via argparse."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _build_parser().parse_args(argv)
    if args.command in ("train", "predict", "forecast", "evaluate"):
        _stray_launcher_variables()
    # Under `accelerate launch` / torchrun every rank runs main(); only rank 0 talks.
    say = print if os.environ.get("RANK", "0") == "0" else (lambda *a, **k: None)
    old_showwarning = warnings.showwarning
    warnings.showwarning = _print_warning
    from . import progress

    old_progress, progress.enabled = progress.enabled, not getattr(args, "quiet", False)
    old_term = _raise_on_sigterm()
    try:
        if args.command in ("train", "predict", "forecast", "evaluate", "serve", "score"):
            _csv_options(args)  # a bad --columns or --decimal answers before anything loads
            _quiet_libraries()
        COMMANDS[args.command](args, say)
        return 0
    except StockLLMError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"stockllm: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except TrainingInterrupted as exc:
        if args.command != "train":  # a model fitted inside evaluate: no training state is kept for it
            return _interrupted(args, exc.signum)
        if exc.state is not None:
            print(f"stockllm: interrupted at step {exc.step}; training state saved in {exc.state}\n"
                  f"resume with: {_resume_command(argv)}", file=sys.stderr)
        else:
            print("stockllm: interrupted before a state was saved (states written earlier are kept)", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        return _interrupted(args, signal.SIGINT)
    except Terminated as exc:
        return _interrupted(args, exc.signum)
    except OSError as exc:  # a file or folder the system refused: say which, in one line
        if args.debug:
            traceback.print_exc()
        where = f" {exc.filename}" if exc.filename else ""
        print(f"stockllm: error: {(exc.strerror or str(exc)).lower()}{where}: check the path, its permissions and "
              "the free space", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if args.debug:
            traceback.print_exc()
        if _out_of_memory(exc):
            print(f"stockllm: error: the GPU ran out of memory ({str(exc).splitlines()[0][:160]}): lower "
                  "--batch_size or --chunk_days, or pass --gradient_checkpointing", file=sys.stderr)
            return EXIT_ERROR
        print(f"stockllm: error: unexpected {type(exc).__name__}: {exc} (run again with --debug for a traceback, "
              "and please report it)", file=sys.stderr)
        return EXIT_ERROR
    finally:
        warnings.showwarning = old_showwarning
        progress.enabled = old_progress
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _raise_on_sigterm():
    """Make SIGTERM raise :class:`Terminated`, so that partial outputs are cleaned up; returns the old handler
    (None where handlers cannot be set: outside the main thread)."""
    def handler(signum, frame):
        raise Terminated(signum)

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


def _interrupted(args, signum: int) -> int:
    """One line for SIGINT/SIGTERM outside training's own handling; exit status 128 + the signal number."""
    note = getattr(args, "interrupt_note", None) or "no output was half-written"
    print(f"stockllm: interrupted by {signal.Signals(signum).name}; {note}", file=sys.stderr)
    return 128 + signum


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
