"""The ``stockllm`` command: download, train, predict, evaluate (and download-model for the LLM).

Thin by design: it parses flags into config dataclasses and calls the library. Every user-fixable problem is
one ``stockllm: error: ...`` line on stderr and a non-zero exit; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import signal
import sys
import traceback
import warnings
from functools import partial
from pathlib import Path

from . import __version__
from .config import DataConfig, EnsembleConfig, LoRAConfig, MLPConfig, TrainConfig, flat_dict, flat_fields
from .errors import StockLLMError, Terminated, TrainingInterrupted, as_flags
from .models import MODEL_NAMES, REGISTRY, TRAINABLE, UNFITTED  # names only: the classes load on first use
from .options import (DEFAULT_MODELS, DataOptions, EvaluateOptions, PredictOptions, TrainOptions, check_price_limits,
                      from_keywords, refuse)
EXIT_ERROR = 1


def _tidy_metavars(parser: argparse.ArgumentParser) -> None:
    """Show N / X / TEXT in --help instead of argparse's upper-cased flag names."""
    for action in parser._actions:
        if action.option_strings and action.nargs != 0 and action.metavar is None and action.choices is None:
            action.metavar = {int: "N", float: "X"}.get(action.type, "K" if action.dest == "lora_layers" else "TEXT")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show a full traceback on errors")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    parser.add_argument("--follow_symlinks", action="store_true", help="write outputs through symlinks (the file "
                        "or folder a link names is replaced); without it an output path that is a symlink is "
                        "refused")


def _data_flags(parser: argparse.ArgumentParser, several: str, *, alias_test_csv: bool = False,
                required: bool = True) -> None:
    """--data (and --columns, --decimal); ``several`` says what the command does with several series."""
    names = ["--data", "--test_csv"] if alias_test_csv else ["--data"]
    default = " (default: the bundled NASDAQ sample)" if not required else ""
    parser.add_argument(*names, dest="data", nargs="+", required=required, metavar="FILE",
                        help="OHLCV CSV file(s): Date,Open,High,Low,Close,Volume (Yahoo, Nasdaq.com and "
                             "Investing.com exports work as they are), folders of them, globs ('prices/*.csv'), or "
                             "long files with a ticker (or unique_id) column, one series per ticker; several series "
                             f"{several}; 'nasdaq' names the bundled NASDAQ Composite sample{default}")
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


def _source_flags(parser: argparse.ArgumentParser, what: str = "--ticker history") -> None:
    from .sources import ADJUSTS, SOURCES

    parser.add_argument("--source", choices=SOURCES,
                        help=f"where {what} comes from: yahoo (default), akshare or baostock (mainland "
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
        _data_flags(p, "are each forecast by the same model", alias_test_csv=True)
    p.add_argument("--window_size", type=int, help="--model naive|drift only (default 30); a checkpoint keeps its own")
    p.add_argument("--horizon", type=int, help="--model naive|drift only (default 3); a checkpoint keeps its own")
    _quantiles_flag(p, "; with --checkpoint, some of the levels it was trained for")
    p.add_argument("--output", default="predictions.csv", metavar="FILE", help="CSV to write (default %(default)s)")
    _calendar_flag(p)
    _limit_flags(p)
    p.add_argument("--plot", metavar="FILE", help="also draw a PNG: the last 60 closes and the forecast fan (median "
                   "and central intervals)")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
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


def _download_command(sub) -> None:
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
    _source_flags(p, "the history")
    _common(p)


def _train_command(sub) -> None:
    p = sub.add_parser("train", help="train a model and save a checkpoint folder",
                       description="Train a forecaster on one or more CSV files (their windows are pooled) and save "
                                   "the best epoch as a checkpoint folder (safetensors + stockllm.json).")
    p.add_argument("--model", choices=TRAINABLE, default="mlp",
                   help="the model to train (default mlp): " + "; ".join(f"{n}: {REGISTRY[n].summary}"
                                                                        for n in TRAINABLE))
    _data_flags(p, "train one pooled model")
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


def _predict_command(sub) -> None:
    p = sub.add_parser("predict", help="forecast the next closes after the last row of a CSV",
                       description="Forecast the next H trading sessions after the last row of each file and write "
                                   "predictions.csv (date,horizon,predicted_close,last_close,model,series,last_date,"
                                   "limited,q0.1,...).")
    _predict_flags(p, tickers=False)


def _forecast_command(sub) -> None:
    p = sub.add_parser("forecast", help="download the latest history of tickers and forecast their next sessions",
                       description="Download each ticker's latest daily history from Yahoo Finance (or read --data), "
                                   "forecast the next H sessions of its exchange, print them with their intervals "
                                   "and write predictions.csv.",
                       epilog="Example: stockllm forecast --ticker AAPL,600519.SS --model naive")
    _predict_flags(p, tickers=True)


def _evaluate_command(sub) -> None:
    p = sub.add_parser("evaluate", help="backtest of several models beside naive, after one cutoff date",
                       description="Pick one cutoff date for all series, fit the models on the dates before it "
                                   "only, forecast from every origin on or after it and score against the random "
                                   "walk.")
    _data_flags(p, "share one cutoff date and fit one pooled model per model kind; each series is scored",
                required=False)
    _window_flags(p, note="; with --checkpoint, the checkpoint's")
    _features_flag(p)
    p.add_argument("--models", metavar="LIST", help=f"comma-separated, from {','.join(MODEL_NAMES)} (default {','.join(DEFAULT_MODELS)}; "
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
                   help="folder for metrics.csv, leaderboard.csv, forecasts.csv, plot.png and report.html "
                        "(default %(default)s)")
    p.add_argument("--show", metavar="LIST", help="models report.html's forecast charts draw at first, beside naive "
                   "and the best (default: the --checkpoint's model; the others are one legend click away)")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv",
                   help="forecasts.csv, or forecasts.parquet (pyarrow: columnar, several times smaller for a "
                        "universe of series) (default %(default)s)")
    _calibrate_flags(p, evaluate=True)
    _limit_flags(p)
    _training_flags(p)
    _common(p)


def _score_command(sub) -> None:
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


def _serve_command(sub) -> None:
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
    _source_flags(p, "the history of requested and watched tickers")
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
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps (LLM checkpoints)")
    _common(p)


def _download_model_command(sub) -> None:
    p = sub.add_parser("download-model", help="download a base model from the Hugging Face Hub to a folder",
                       description="Download a base model (config, tokenizer, safetensors weights) for --model_path.")
    p.add_argument("--model", default=LoRAConfig.model_path, help="Hugging Face id (default %(default)s)")
    p.add_argument("--save_dir", metavar="DIR",
                   help="folder to write (default: the id's last part, e.g. ./Qwen3-0.6B)")
    p.add_argument("--revision", help="branch, tag or commit (default: main)")
    _common(p)


# Hints added to argparse's own messages for mistakes it cannot explain: (commands, words in its message) -> hint.
_USAGE_HINTS = {(("predict", "forecast"), "argument --model: invalid choice"): "a trained model is read with "
                "--checkpoint DIR (--model names only the models that need no fit)"}


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, like every other error of the CLI: ``stockllm CMD: error: what;
    see stockllm CMD --help`` and exit status 2 (argparse prints the whole usage block)."""

    def error(self, message: str):
        _usage_error(self.prog, message)


def _usage_error(prog: str, message: str):
    """Print ``prog: error: message[; hint]; see prog --help`` to stderr and exit 2."""
    command = prog.split()[-1]
    hints = [hint for (commands, words), hint in _USAGE_HINTS.items() if command in commands and words in message]
    line = "; ".join([message.replace("\n", " "), *hints])
    print(f"{prog}: error: {line}; see {prog} --help", file=sys.stderr)
    raise SystemExit(2)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="stockllm",
        description="Forecast the next few daily closes with a LoRA-tuned language model, always scored beside "
                    "the random walk (naive) and drift on data the model never saw.",
        epilog="Example: stockllm evaluate --models naive,fhs,mlp,ensemble  (runs on the bundled NASDAQ sample)",
    )
    parser.add_argument("--version", action="version", version=f"stockllm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _download_command(sub)
    _train_command(sub)
    _predict_command(sub)
    _forecast_command(sub)
    _evaluate_command(sub)
    _score_command(sub)
    _serve_command(sub)
    _download_model_command(sub)
    for command in sub.choices.values():
        _tidy_metavars(command)
    return parser


def _tickers(text: str) -> list[str]:
    tickers = [t.strip().upper() for t in text.split(",") if t.strip()]
    if not tickers:
        raise StockLLMError("--ticker is empty: pass a symbol such as AAPL, or AAPL,MSFT")
    return tickers


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


def _options(cls, args: argparse.Namespace):
    """The typed options of a run (``stockllm.options``) from the parsed flags: the same keywords as Python's."""
    values = {k: v for k, v in vars(args).items() if k not in ("command", "debug", "quiet", "follow_symlinks")}
    return from_keywords(cls, **values, progress=not args.quiet)


def cmd_train(args, say) -> None:
    from .training import run_train

    run_train(_options(TrainOptions, args), say)


def cmd_predict(args, say) -> None:
    """predict (CSV files) and forecast (tickers downloaded, or files)."""
    from .prediction import run_predict

    run_predict(_options(PredictOptions, args), say)


def cmd_evaluate(args, say) -> None:
    from .evaluation import run_evaluate

    run_evaluate(_options(EvaluateOptions, args), say, keep_forecasts=False)


def cmd_download_model(args, say) -> None:
    from .hf import download_model
    from .outputs import refuse_symlink

    target = args.save_dir or args.model.rstrip("/").split("/")[-1]
    refuse_symlink(target, "--save_dir")
    path = download_model(args.model, target, revision=args.revision)
    say(f"downloaded {args.model} to {path}; use it with --model_path {path}")


def _check_not_inputs(args, files=(), folders=()) -> None:
    """Refuse the outputs named by ``files`` and ``folders`` (flag destinations) when one is an input of this run:
    a --data file, the --ledger, or a --checkpoint folder (see outputs.check_not_inputs)."""
    from .outputs import check_not_inputs
    from .series import data_files

    inputs = data_files(getattr(args, "data", None) or [])
    for flag in ("checkpoint", "ledger"):
        values = getattr(args, flag, None)
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, str):  # serve's --checkpoint may be NAME=DIR
                inputs.append((f"--{flag}", value.rpartition("=")[2] if flag == "checkpoint" else value))
    check_not_inputs(inputs, files=[(f"--{f}", getattr(args, f, None)) for f in files],
                     folders=[(f"--{f}", getattr(args, f, None)) for f in folders])


def _files(args: argparse.Namespace) -> DataOptions:
    """score's and serve's --data files with --columns, --decimal and --date_format (checked now, before the
    ledger or any model is read)."""
    files = DataOptions(data=args.data, columns=args.columns, decimal=args.decimal, date_format=args.date_format)
    files.csv_options()
    return files


def cmd_score(args, say) -> None:
    from .data import write_csv_atomic
    from .metrics import format_table
    from .ledger import adjustments, read_ledger, score

    _files(args)  # a bad --columns, --decimal or --date_format answers first
    if args.data:
        refuse(vars(args), ("source", "adjust"), "applies to downloaded closes; --data files are used as they are: drop it")
    if args.output:
        from .outputs import file_target

        file_target(args.output, "--output")
    _check_not_inputs(args, files=("output",))
    ledger, notes = read_ledger(args.ledger)
    for note in notes:
        say(f"note: {note}")
    if ledger.empty:
        raise StockLLMError(f"no complete forecasts in the ledger {args.ledger}: run stockllm forecast --ledger "
                            f"{args.ledger} first")
    tickers = list(dict.fromkeys(ledger["ticker"]))
    used = adjustments(ledger)  # refuses a ticker forecast with two adjustments
    if args.data:
        frames = _files(args).load(1, "")
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
    _files(args)  # a bad --columns, --decimal or --date_format answers before any model loads
    if args.checkpoint:
        refuse(vars(args), ("window_size", "horizon", "quantiles"), "applies to --model naive|drift only; a checkpoint keeps "
                "its own (a request may ask for some of its levels): drop it")
    from .sources import check_adjust, default_calendar

    source = args.source or "yahoo"
    adjust = check_adjust(source, args.adjust)
    limits = check_price_limits(args.price_limits, args.price_limit)
    calendar = default_calendar(source)
    if args.calendar:
        from .calendars import check_calendar

        calendar = check_calendar(args.calendar)
    if args.ledger:
        from .ledger import check_ledger

        check_ledger(args.ledger)
        _check_not_inputs(args, files=("ledger",))
    watch = _tickers(args.watch) if args.watch else []
    import socket

    try:  # a taken port gives one line now, not a uvicorn traceback after the models load
        with socket.create_server((args.host, args.port)):
            pass
    except OSError as exc:
        raise StockLLMError(f"cannot listen on {args.host}:{args.port} ({(exc.strerror or str(exc)).lower()}): pass "
                            "another --port or --host") from None
    from .serve import Service, create_app, load_models, run_server
    from .sources import download

    data = DataOptions(window_size=args.window_size, horizon=args.horizon,
                       quantiles=args.quantiles).config() if args.model else None
    overrides = {"device": args.device} if args.device else {}
    models = load_models(args.checkpoint, args.model, data, overrides)
    files = _files(args).load(1, "") if args.data else {}

    def fetch(ticker, period):
        return download(ticker, source, adjust=adjust, period=period)

    service = Service(models, fetch, files=files, watch=watch, ledger=args.ledger, source=source, adjust=adjust,
                      calendar=calendar, price_limits=limits, max_tickers=args.max_tickers)
    app = create_app(service, max_body_bytes=int(args.max_body_mb * 1024 * 1024))
    say(f"serving {', '.join(models)} on http://{args.host}:{args.port}/ (data: {source}"
        + (f" and {len(files)} file{'s' if len(files) != 1 else ''}" if files else "") + "); Ctrl-C stops")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        say(f"note: --host {args.host} lets other machines in, and the server has no authentication")
    run_server(app, args.host, args.port, args.quiet)


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
    """Run the CLI; returns the exit status (0 ok, 1 error, 130 interrupted; bad flags: 2, one line, ``_Parser``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, unknown = _build_parser().parse_known_args(argv)
    if unknown:  # named against the command they were given to, not the top-level parser
        _usage_error(f"stockllm {args.command}", f"unrecognized arguments: {' '.join(unknown)}")
    if args.command in ("train", "predict", "forecast", "evaluate"):
        _stray_launcher_variables()
    # Under `accelerate launch` / torchrun every rank runs main(); only rank 0 talks.
    say = print if os.environ.get("RANK", "0") == "0" else (lambda *a, **k: None)
    from .outputs import following_symlinks, is_stdout

    if is_stdout(getattr(args, "output", None)):  # the CSV streams to stdout: the messages go to stderr
        say = partial(print, file=sys.stderr) if say is print else say
    old_showwarning = warnings.showwarning
    warnings.showwarning = _print_warning
    from . import progress

    old_progress, progress.enabled = progress.enabled, not getattr(args, "quiet", False)
    old_term = _raise_on_sigterm()
    try:
        if args.command in ("train", "predict", "forecast", "evaluate", "serve"):
            _quiet_libraries()
        with following_symlinks(args.follow_symlinks):
            COMMANDS[args.command](args, say)
        return 0
    except StockLLMError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"stockllm: error: {as_flags(exc)}", file=sys.stderr)
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
    out = getattr(args, "output_dir", None) if args.command == "evaluate" else None
    note = f"{out} is unchanged" if out else "no output was half-written"
    print(f"stockllm: interrupted by {signal.Signals(signum).name}; {note}", file=sys.stderr)
    return 128 + signum


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
