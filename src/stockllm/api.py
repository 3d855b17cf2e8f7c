"""The Python API: ``stockllm.load``, ``Forecaster.predict_df`` and ``stockllm.evaluate`` (see README "Python").

Frames go in the habits users bring from Nixtla (``unique_id``, ``ds``) and Chronos (``item_id``,
``timestamp``): one OHLCV frame, a long frame with a ticker column, or a dict of frames. Forecasts come back as
one long frame, one row per ticker and horizon.
"""

from __future__ import annotations

from collections.abc import Sequence

from .evaluation import Evaluation  # noqa: F401 - re-exported
from .models.pipeline import as_frames, forecast_table, min_history, predict_df  # noqa: F401 - re-exported


def load(checkpoint, **overrides):
    """Load a checkpoint folder written by ``stockllm train`` (or ``Forecaster.save``) and return its Forecaster.

    ``overrides`` (LLM only): ``model_path`` (another copy of the same base model), ``device``
    ("auto", "cpu", "cuda", "mps"), ``trust_remote_code``; a checkpoint never turns remote code on by itself.
    """
    from .models import load_forecaster

    return load_forecaster(checkpoint, **overrides)


def evaluate_options() -> dict:
    """Every option of ``stockllm evaluate`` as {keyword: default}: the command's own flag destinations, from its
    argument parser, so a new flag is a new keyword at once (``--debug`` and ``--quiet`` excepted: the library has
    ``progress``)."""
    from .cli import _build_parser

    sub = next(a for a in _build_parser()._actions if a.dest == "command")
    parser = sub.choices["evaluate"]
    return {a.dest: a.default for a in parser._actions if a.dest not in ("help", "debug", "quiet")}


def evaluate(data=None, models: str | Sequence[str] | None = None, *, progress: bool = False,
             output_dir: str | None = None, **options) -> Evaluation:
    """Backtest, exactly as ``stockllm evaluate`` runs it (the same function runs both): one cutoff date for all
    series, fit on the dates before it, forecast every origin on or after it, score beside naive (always
    included).

    data: anything :func:`as_frames` reads (paths, folders, globs, long CSVs, a frame, a long frame, a dict of
    frames); None means the bundled NASDAQ sample. models: names from ``stockllm.models.MODEL_NAMES`` (a list or
    "naive,mlp"; default ``naive,drift,fhs,mlp``). output_dir: write metrics.csv, leaderboard.csv, forecasts.csv,
    plot.png and report.html there as the CLI does (None: write nothing). options: every other flag of
    ``stockllm evaluate`` by its name (see :func:`evaluate_options`): test_size, test_start, refit_every,
    window_size, horizon, quantiles, features, checkpoint, calibrate, calibration_step, members, columns, decimal,
    the chronos_* settings and every training flag (epochs=5, model_path=..., head_base=...). Lists are accepted
    where the flag takes a comma-separated list. Unknown keywords are refused, naming the valid ones. Returns an
    :class:`Evaluation`.
    """
    import argparse

    from .evaluation import run_evaluate

    known = evaluate_options()
    stray = sorted(set(options) - set(known))
    if stray:
        raise TypeError(f"evaluate() got unknown option(s) {stray}: valid options are {', '.join(sorted(known))}")
    args = argparse.Namespace(**known, debug=False, quiet=not progress)
    for key, value in {**options, "models": models, "output_dir": output_dir}.items():
        if isinstance(value, (list, tuple)) and key in _LIST_OPTIONS:
            value = ",".join(str(v) for v in value)
        setattr(args, key, value)
    args.data = data
    return run_evaluate(args, print if progress else (lambda *_: None))


# Flags that take one comma-separated string on the command line.
_LIST_OPTIONS = ("models", "quantiles", "features", "members", "target_modules", "columns", "show")
