"""``stockllm evaluate`` as one library call: the checks, the data, the backtest, the scores and the output folder.

``run_evaluate(args, say)`` is what the CLI runs and what ``stockllm.evaluate(...)`` runs, with ``args`` holding the
evaluate command's destinations (flags), so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pandas as pd

from .config import ChronosConfig, DataConfig, flag_names
from .errors import StockLLMError
from .models import MODEL_NAMES
from .settings import (DEFAULT_MODELS, _calibration, _check_close_only, _check_features, _check_training_flags,
                       _data_config, _factory, _levels, _load_frames, _price_limits, _with_members)


@dataclasses.dataclass
class Evaluation:
    """What ``stockllm.evaluate`` returns.

    metrics: one row per series, model and horizon (mae, rmse, mape, mae_vs_naive, dir_acc, dm_pvalue, ...).
    forecasts: one row per series, model, origin and horizon (actual and predicted closes, price scale).
    leaderboard: one row per model across series, when the evaluation module provides it; otherwise None.
    """

    metrics: pd.DataFrame
    forecasts: pd.DataFrame
    leaderboard: pd.DataFrame | None = None


def _evaluate_plan(args, say):
    """Check evaluate's flags before any data or model is loaded: (model names, data config, loaded checkpoint)."""
    from .models import load_forecaster

    if args.test_size is not None and not 0 < args.test_size < 1:
        raise StockLLMError(f"--test_size {args.test_size} must be between 0 and 1 (e.g. 0.2)")
    if args.test_size is not None and args.test_start:
        raise StockLLMError("--test_size and --test_start both set the cutoff: pass one of them")
    if args.refit_every is not None and args.refit_every < 1:
        raise StockLLMError(f"--refit_every {args.refit_every} must be 1 or more (test days between refits)")
    names = [m.strip() for m in (args.models or ("naive" if args.checkpoint else DEFAULT_MODELS)).split(",")
             if m.strip()]
    for m in names:
        if m not in MODEL_NAMES:
            raise StockLLMError(f"unknown model {m!r} in --models: choose from {','.join(MODEL_NAMES)}")
    if "naive" not in names:
        names.insert(0, "naive")
    stray = [f for f in flag_names(ChronosConfig).values() if getattr(args, f) is not None]
    if stray and "chronos" not in names:
        raise StockLLMError(f"--{stray[0]} is for the chronos model, which --models does not list: add chronos to "
                            "--models or drop the flag")
    kinds = list(names)
    if args.checkpoint:
        from .checkpoint import read_meta

        kinds.append(read_meta(args.checkpoint).get("kind", "?"))
    _check_training_flags(args, _with_members(kinds, args), f"--models {','.join(names)}"
                          + (f" and a {kinds[-1]} --checkpoint" if args.checkpoint else ""))
    if not args.checkpoint:
        return names, _data_config(args), None
    if args.test_size is not None:
        raise StockLLMError("--test_size does not apply with --checkpoint: the test part is every origin after the "
                            "checkpoint's training data; pass --test_start YYYY-MM-DD to choose another start")
    if args.refit_every:
        raise StockLLMError("--refit_every does not apply with --checkpoint: a checkpoint is scored as trained, "
                            "without fitting; drop one of the two")
    overrides = {k: getattr(args, k) for k in ("model_path", "device", "trust_remote_code")
                 if getattr(args, k, None) is not None}
    model = load_forecaster(args.checkpoint, **overrides)
    levels = _levels(args)
    if levels and tuple(levels) != tuple(model.data.quantiles):
        raise StockLLMError(f"--quantiles {args.quantiles} differs from the checkpoint's levels "
                            f"{','.join(f'{q:g}' for q in model.data.quantiles)}: leave --quantiles out; every "
                            "model is scored with the checkpoint's")
    for flag in ("window_size", "horizon"):
        if getattr(args, flag) is not None and getattr(args, flag) != getattr(model.data, flag):
            raise StockLLMError(f"--{flag} {getattr(args, flag)} differs from the checkpoint's "
                                f"{getattr(model.data, flag)}: leave --{flag} out; every model is scored with the "
                                "checkpoint's")
    if model.kind in names:
        raise StockLLMError(f"--models lists {model.kind} and --checkpoint holds a {model.kind} model: their rows "
                            f"would share one name; leave {model.kind} out of --models")
    return names, model.data, model


def run_evaluate(args, say=lambda *_: None):
    """Run ``stockllm evaluate`` with the options in ``args`` (the evaluate command's destinations) and return an
    :class:`Evaluation`. ``say`` prints the progress lines and tables; with ``args.output_dir`` None
    nothing is written, otherwise the output folder is written as one unit (see ``outputs.atomic_folder``).
    ``args.data``: paths (files, folders, globs, long CSVs) or anything ``as_frames`` reads; empty: the NASDAQ
    sample."""
    import pandas as pd

    from .data import write_csv_atomic
    from .evaluate import evaluate, format_leaderboard, format_table, leaderboard, plot_forecasts, trained_until
    from .models.pipeline import as_frames
    from .report import write_report

    calibration = _calibration(args)
    limits = _price_limits(args)
    names, data, checkpoint = _evaluate_plan(args, say)
    _check_features(data, _with_members(names + ([checkpoint.kind] if checkpoint is not None else []), args),
                    args.prompt_format)
    if args.data is None or (isinstance(args.data, (list, tuple)) and not args.data):
        from .data import SAMPLES

        args.data = ["nasdaq"]
        say(f"no --data given: using the bundled sample 'nasdaq' ({SAMPLES['nasdaq']})")
    test_start = args.test_start
    fitted = {}
    if checkpoint is not None:
        until = trained_until(checkpoint)
        if until is None and test_start is None:
            raise StockLLMError(f"checkpoint {args.checkpoint} does not record its training dates: pass "
                                "--test_start YYYY-MM-DD after the end of its training data")
        if test_start is None:
            test_start = until + pd.Timedelta(days=1)
        fitted[checkpoint.kind] = checkpoint
        say(f"checkpoint {args.checkpoint}: a {checkpoint.kind} model trained on data up to "
            f"{until:%Y-%m-%d}" if until is not None else f"checkpoint {args.checkpoint}: a {checkpoint.kind} model")
    from .outputs import atomic_folder, check_finite, folder_target

    out = Path(args.output_dir) if args.output_dir is not None else None
    if out is not None:
        folder_target(out, "--output_dir", EVALUATE_FILES)  # before the long part, so a bad folder fails fast
    min_rows = data.min_rows * 3 if checkpoint is None else data.min_rows
    why = f"window {data.window_size} + horizon {data.horizon}, for both the training and test part"
    paths = isinstance(args.data, (str, Path)) or (isinstance(args.data, (list, tuple)) and all(
        isinstance(p, (str, Path)) for p in args.data))
    if paths:
        frames = _load_frames([args.data] if isinstance(args.data, (str, Path)) else list(args.data), min_rows, why,
                              args)
    else:
        frames = as_frames(args.data, min_rows, why)
    _check_close_only(frames, names + ([checkpoint.kind] if checkpoint is not None else []))
    if checkpoint is not None and args.test_start is None:
        _check_newer_rows(frames, trained_until(checkpoint), data.horizon, args.checkpoint)
    factories = {m: _factory(m, args, data) for m in names}
    if out is not None:
        args.interrupt_note = f"{out} is unchanged"
    table, forecasts = evaluate(frames, factories, test_size=0.2 if args.test_size is None else args.test_size,
                                test_start=test_start, fitted=fitted, refit_every=args.refit_every,
                                calibrate=calibration[0], calibration_step=calibration[1],
                                price_limits=limits, progress=not args.quiet, log=say)
    board = leaderboard(table, forecasts)
    result = Evaluation(table, forecasts, board)
    if out is None or os.environ.get("RANK", "0") != "0":  # every process holds the gathered result; one writes
        return result
    check_finite(forecasts, str(out))
    replaced = out.exists() and any(out.iterdir())
    # One unit: the whole set is written into a fresh folder and swapped in, so a reader never sees two runs'
    # files mixed, and a failure or a signal leaves the previous set whole.
    with atomic_folder(out, flag="--output_dir", legacy=EVALUATE_FILES, lock=True) as tmp:
        plot_forecasts(forecasts, tmp / "plot.png")
        write_report(tmp / "report.html", table, forecasts, leaderboard=board,
                     notes=_report_notes(data, frames, table))
        write_csv_atomic(forecasts, tmp / "forecasts.csv", index=False)
        write_csv_atomic(table, tmp / "metrics.csv", index=False)
        write_csv_atomic(board, tmp / "leaderboard.csv", index=False)
    say(format_table(table))
    say("")
    say(f"leaderboard over {table['series'].nunique()} series and {table['horizon'].nunique()} horizons "
        "(geometric means; Diebold–Mariano against naive at p < 0.05):")
    say(format_leaderboard(board))
    say(f"wrote {out / 'metrics.csv'}, {out / 'leaderboard.csv'}, {out / 'forecasts.csv'}, {out / 'plot.png'}, "
        f"{out / 'report.html'}" + (f" (replacing the previous results in {out})" if replaced else ""))
    return result


def _check_newer_rows(frames: dict, until, horizon: int, checkpoint: str) -> None:
    """Refuse data with no test origin after a checkpoint's training data (an origin needs its H targets too),
    naming the dates rather than a --test_start the user never passed."""
    newer = max(int((frame.index > until).sum()) for frame in frames.values())
    if newer > horizon:
        return
    last = max(frame.index[-1] for frame in frames.values())
    raise StockLLMError(f"the data end on {last:%Y-%m-%d} with {newer} rows after the end of checkpoint "
                        f"{checkpoint}'s training data ({until:%Y-%m-%d}); scoring it needs at least {horizon + 1} "
                        "newer rows (an origin and its targets): pass a file that goes on after "
                        f"{until:%Y-%m-%d}")


# What evaluate wrote into --output_dir before output folders had a manifest (outputs.MANIFEST).
EVALUATE_FILES = ("metrics.csv", "forecasts.csv", "leaderboard.csv", "plot.png", "report.html")


def _report_notes(data: DataConfig, frames: dict, table) -> list[str]:
    """The lines under report.html's title: what was evaluated, on what, and how."""
    spans = [f"{name} ({f.index[0]:%Y-%m-%d} .. {f.index[-1]:%Y-%m-%d}, {len(f)} rows)" for name, f in frames.items()]
    notes = [f"Data: {'; '.join(spans)}.", f"Window {data.window_size} days, horizon {data.horizon}."]
    if "protocol" in table.columns:
        notes.append("Protocol: " + "; ".join(f"{m}: {p}" for m, p in
                                              table.drop_duplicates("model")[["model", "protocol"]].to_numpy()) + ".")
    if data.features:
        notes.append(f"Technical indicators (--features): {', '.join(data.features)}.")
    return notes
