"""``stockllm evaluate`` as one library call: the checks, the data, the backtest, the scores and the output folder.

``run_evaluate(options, say)`` is what the CLI runs and what ``stockllm.evaluate(...)`` runs, with the same
:class:`~stockllm.options.EvaluateOptions`, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pandas as pd

from .config import DataConfig
from .errors import StockLLMError
from .models import MODEL_NAMES
from .options import DEFAULT_MODELS, EvaluateOptions, calibration, check_close_only


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


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What the checks decided before any data loads: the model names, the data config, the loaded checkpoint
    (or None) and the calibration."""

    names: list
    data: DataConfig
    checkpoint: object
    calibration: tuple

    @property
    def kinds(self) -> list:
        return self.names + ([self.checkpoint.kind] if self.checkpoint is not None else [])


def _model_names(opts: EvaluateOptions) -> list[str]:
    """The models to score (naive first, always), checked against the registry."""
    names = list(opts.models or (("naive",) if opts.checkpoint else DEFAULT_MODELS))
    for m in names:
        if m not in MODEL_NAMES:
            raise StockLLMError(f"unknown model {m!r} in --models: choose from {','.join(MODEL_NAMES)}")
    if "naive" not in names:
        names.insert(0, "naive")
    from .config import ChronosConfig, flag_names

    stray = [f for f in flag_names(ChronosConfig).values() if opts.settings.get(f) is not None]
    if stray and "chronos" not in names:
        raise StockLLMError(f"--{stray[0]} is for the chronos model, which --models does not list: add chronos to "
                            "--models or drop the flag")
    return names


def _plan(opts: EvaluateOptions) -> _Plan:
    """Check every option before any data or model is loaded."""
    opts.data.csv_options()  # a bad columns or decimal answers at once
    cal = calibration(opts.calibrate, opts.calibration_step)
    if opts.test_size is not None and not 0 < opts.test_size < 1:
        raise StockLLMError(f"--test_size {opts.test_size} must be between 0 and 1 (e.g. 0.2)")
    if opts.test_size is not None and opts.test_start:
        raise StockLLMError("--test_size and --test_start both set the cutoff: pass one of them")
    if opts.refit_every is not None and opts.refit_every < 1:
        raise StockLLMError(f"--refit_every {opts.refit_every} must be 1 or more (test days between refits)")
    names = _model_names(opts)
    if opts.refit_every:
        _check_refits(opts.settings.with_members(names), names, opts.refit_every)
    kinds = list(names)
    if opts.checkpoint:
        from .checkpoint import read_meta

        kinds.append(read_meta(opts.checkpoint).get("kind", "?"))
    settings = opts.settings
    settings.check_for(settings.with_members(kinds), f"--models {','.join(names)}"
                       + (f" and a {kinds[-1]} --checkpoint" if opts.checkpoint else ""))
    checkpoint = _load_checkpoint(opts, names) if opts.checkpoint else None
    data = checkpoint.data if checkpoint is not None else opts.data.config()
    plan = _Plan(names, data, checkpoint, cal)
    settings.check_features(data, settings.with_members(plan.kinds))
    return plan


def _check_refits(kinds: list[str], names: list[str], every: int) -> None:
    """Refuse --refit_every for a model too slow to fit again and again (``ModelSpec.refit``), before any work."""
    from .models.registry import spec

    slow = next((k for k in kinds if spec(k).needs_fit and not spec(k).refit), None)
    if slow is not None:
        what, flag = (slow, "--models") if slow in names else (f"{slow} (an ensemble member)", "--members")
        raise StockLLMError(f"--refit_every is for the cheap models; {what} takes too long to fit again every {every} "
                            f"days: drop --refit_every (one fit), or leave {slow} out of {flag}")


def _load_checkpoint(opts: EvaluateOptions, names: list[str]):
    """The --checkpoint model, after the options that cannot go with it are refused."""
    from .models import load_forecaster

    if opts.test_size is not None:
        raise StockLLMError("--test_size does not apply with --checkpoint: the test part is every origin after the "
                            "checkpoint's training data; pass --test_start YYYY-MM-DD to choose another start")
    if opts.refit_every:
        raise StockLLMError("--refit_every does not apply with --checkpoint: a checkpoint is scored as trained, "
                            "without fitting; drop one of the two")
    overrides = {k: opts.settings.get(k) for k in ("model_path", "device", "trust_remote_code")}
    model = load_forecaster(opts.checkpoint, **overrides)
    levels = opts.data.quantiles
    if levels and tuple(levels) != tuple(model.data.quantiles):
        raise StockLLMError(f"--quantiles {','.join(f'{q:g}' for q in levels)} differs from the checkpoint's levels "
                            f"{','.join(f'{q:g}' for q in model.data.quantiles)}: leave --quantiles out; every "
                            "model is scored with the checkpoint's")
    for name in ("window_size", "horizon"):
        given = getattr(opts.data, name)
        if given is not None and given != getattr(model.data, name):
            raise StockLLMError(f"--{name} {given} differs from the checkpoint's {getattr(model.data, name)}: leave "
                                f"--{name} out; every model is scored with the checkpoint's")
    if model.kind in names:
        raise StockLLMError(f"--models lists {model.kind} and --checkpoint holds a {model.kind} model: their rows "
                            f"would share one name; leave {model.kind} out of --models")
    return model


def _checkpoint_start(opts: EvaluateOptions, checkpoint, say):
    """The test start with a checkpoint: --test_start, else the day after its training data."""
    from .backtest import trained_until

    until = trained_until(checkpoint)
    if until is None and opts.test_start is None:
        raise StockLLMError(f"checkpoint {opts.checkpoint} does not record its training dates: pass "
                            "--test_start YYYY-MM-DD after the end of its training data")
    say(f"checkpoint {opts.checkpoint}: a {checkpoint.kind} model trained on data up to "
        f"{until:%Y-%m-%d}" if until is not None else f"checkpoint {opts.checkpoint}: a {checkpoint.kind} model")
    return opts.test_start if opts.test_start is not None else until + pd.Timedelta(days=1)


def run_evaluate(opts: EvaluateOptions, say=lambda *_: None, keep_forecasts: bool = True) -> Evaluation:
    """Run ``stockllm evaluate`` with ``opts`` and return an :class:`Evaluation`. ``say`` prints the progress lines
    and tables; with ``opts.output_dir`` None nothing is written, otherwise the output folder is written as one
    unit (see ``outputs.atomic_folder``). ``keep_forecasts`` False: with an output folder, the cheap models'
    forecasts go only to the file (``stockllm.universe``: flat memory), and the result's forecasts are None."""
    from .backtest import evaluate, leaderboard
    from .outputs import check_not_inputs, folder_target
    from .series import data_files

    plan = _plan(opts)
    test_start, fitted = opts.test_start, {}
    if plan.checkpoint is not None:
        test_start = _checkpoint_start(opts, plan.checkpoint, say)
        fitted[plan.checkpoint.kind] = plan.checkpoint
    out = Path(opts.output_dir) if opts.output_dir is not None else None
    if out is not None:
        folder_target(out, "--output_dir")  # before the long part, so a bad folder fails fast
        check_not_inputs([*data_files(opts.data.data or ["nasdaq"]), ("--checkpoint", opts.checkpoint)],
                         folders=[("--output_dir", out)])
    data = plan.data
    factories = {m: opts.settings.factory(m, data) for m in plan.names}
    from .limits import describe as describe_limits
    from .universe import eligible, forecasts_name, run_universe

    forecasts_name(opts.format)
    cheap = eligible(factories, fitted, opts.refit_every, plan.calibration[0])
    frames, shared = _load(opts, data, plan, say, sharded=cheap)
    shown = _shown(opts, plan.checkpoint, plan.names + ([plan.checkpoint.kind] if plan.checkpoint is not None
                                                        else []), plan.calibration[0])
    limited = bool(describe_limits(frames, opts.price_limits))
    if limited and shared:
        frames, _ = _load(opts, data, plan, say, sharded=False)  # price limits take the per-series path: all the data
    if cheap and not limited:  # the cheap models: arrays, streamed
        return Evaluation(*run_universe(
            frames, factories, data, test_size=0.2 if opts.test_size is None else opts.test_size,
            test_start=test_start, out=out, fmt=opts.format, progress=opts.progress, say=say,
            keep_forecasts=keep_forecasts, notes=lambda table: _report_notes(data, frames, table), show=shown))
    table, forecasts = evaluate(frames, factories, test_size=0.2 if opts.test_size is None else opts.test_size,
                                test_start=test_start, fitted=fitted, refit_every=opts.refit_every,
                                calibrate=plan.calibration[0], calibration_step=plan.calibration[1],
                                price_limits=opts.price_limits, progress=opts.progress, log=say)
    result = Evaluation(table, forecasts, leaderboard(table, forecasts))
    if out is not None and os.environ.get("RANK", "0") == "0":  # every process holds the gathered result; one writes
        _write(out, result, data, frames, say, shown, opts.format)
    return result


def _load(opts: EvaluateOptions, data: DataConfig, plan, say, sharded: bool) -> tuple[dict, bool]:
    """(the checked frames of ``opts.data``, whether they are closes shared between processes). ``sharded`` under
    several processes (the cheap models, which read closes only): each process reads and checks only its share of
    the files, then all swap closes (``universe.gather_closes``)."""
    from .backtest import process_rank, trained_until

    min_rows = data.min_rows * 3 if plan.checkpoint is None else data.min_rows
    shard = process_rank() if sharded and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    frames = opts.data.load(min_rows, f"window {data.window_size} + horizon {data.horizon}, for both the training "
                            "and test part", say, shard=shard)
    check_close_only(frames, plan.kinds)
    if plan.checkpoint is not None and opts.test_start is None:
        _check_newer_rows(frames, trained_until(plan.checkpoint), data.horizon, opts.checkpoint)
    if shard is None:
        return frames, False
    from .universe import gather_closes

    say(f"{shard[1]} processes: each read and checked 1/{shard[1]} of the data ({len(frames)} series here)")
    return gather_closes(frames), True


def _write(out: Path, result: Evaluation, data: DataConfig, frames: dict, say, shown=(),
           fmt: str = "csv") -> None:
    """The output folder, written whole into a fresh folder and swapped in, so a reader never sees two runs' files
    mixed, and a failure or a signal leaves the previous set whole."""
    from .backtest import format_leaderboard, format_table, plot_forecasts
    from .data import write_csv_atomic
    from .outputs import atomic_folder, check_finite
    from .report import write_report
    from .universe import forecasts_name, write_forecasts

    table, forecasts, board = result.metrics, result.forecasts, result.leaderboard
    check_finite(forecasts, str(out))
    replaced = out.exists() and any(out.iterdir())
    with atomic_folder(out, flag="--output_dir", lock=True) as tmp:
        plot_forecasts(forecasts, tmp / "plot.png")
        write_report(tmp / "report.html", table, forecasts, leaderboard=board,
                     notes=_report_notes(data, frames, table), show=shown)
        write_forecasts(forecasts, tmp, fmt)
        write_csv_atomic(table, tmp / "metrics.csv", index=False)
        write_csv_atomic(board, tmp / "leaderboard.csv", index=False)
    say(format_table(table))
    say("")
    say(f"leaderboard over {table['series'].nunique()} series and {table['horizon'].nunique()} horizons "
        "(geometric means; Diebold–Mariano against naive at p < 0.05):")
    say(format_leaderboard(board))
    say(f"wrote {out / 'metrics.csv'}, {out / 'leaderboard.csv'}, {out / forecasts_name(fmt)}, {out / 'plot.png'}, "
        f"{out / 'report.html'}" + (f" (replacing the previous results in {out})" if replaced else ""))


def _shown(opts, checkpoint, models: list[str], calibrate: str | None) -> list[str]:
    """The models --show names (checked against the ``models`` to be scored and their ``+calibrate`` variants),
    else the checkpoint's."""
    show = getattr(opts, "show", None) or ""
    names = [m.strip() for m in (show.split(",") if isinstance(show, str) else show) if m.strip()]
    scored = models + [f"{m}+{calibrate}" for m in models if calibrate]
    for m in names:
        if m not in scored:
            raise StockLLMError(f"--show {m}: no such model was scored; choose from {','.join(scored)}")
    return names or ([checkpoint.kind] if checkpoint is not None else [])


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
