"""The Python API: ``stockllm.load``, ``Forecaster.predict_df``, ``stockllm.train``, ``stockllm.predict`` and
``stockllm.evaluate`` (see README "Python").

``train``, ``predict`` and ``evaluate`` run exactly what the commands of the same names run: they build the same
typed options (``stockllm.options``) from keywords named as the flags without dashes, and call the same library
function. Frames go in the habits users bring from Nixtla (``unique_id``, ``ds``) and Chronos (``item_id``,
``timestamp``): one OHLCV frame, a long frame with a ticker column, or a dict of frames. Errors name the keyword
(``test_size``), not the flag.
"""

from __future__ import annotations

from collections.abc import Sequence

from .evaluation import Evaluation  # noqa: F401 - re-exported
from .models.pipeline import as_frames, forecast_table, min_history, predict_df  # noqa: F401 - re-exported
from .options import EvaluateOptions, PredictOptions, TrainOptions, from_keywords, keywords


def load(checkpoint, **overrides):
    """Load a checkpoint folder written by ``stockllm train`` (or ``Forecaster.save``) and return its Forecaster.

    ``overrides`` (LLM only): ``model_path`` (another copy of the same base model), ``device``
    ("auto", "cpu", "cuda", "mps"), ``trust_remote_code``; a checkpoint never turns remote code on by itself.
    """
    from .models import load_forecaster

    return load_forecaster(checkpoint, **overrides)


def evaluate_options() -> dict:
    """Every keyword of :func:`evaluate` with its default (None: not given; the run's default applies)."""
    return keywords(EvaluateOptions)


def _say(progress: bool):
    return print if progress else (lambda *_: None)


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
    window_size, horizon, quantiles, features, checkpoint, calibrate, calibration_step, price_limits (and
    price_limit), members, columns, decimal, date_format, the chronos_* settings and every training setting
    (epochs=5, model_path=..., head_base=...). Lists are accepted where the flag takes a comma-separated list. An
    unknown keyword raises TypeError naming the valid ones; a bad value raises StockLLMError naming the keyword.
    Returns an :class:`Evaluation`.
    """
    from .evaluation import run_evaluate

    opts = from_keywords(EvaluateOptions, data=data, models=models, progress=progress, output_dir=output_dir,
                         **options)
    return run_evaluate(opts, _say(progress))


def train(data=None, model: str = "mlp", *, save_dir: str | None = None, progress: bool = False, **options):
    """Train a model, exactly as ``stockllm train`` does, and return the fitted Forecaster.

    data: as for :func:`evaluate` (None: the bundled NASDAQ sample). model: mlp (default), lstm, lora, fhs, garch
    or ensemble. save_dir: the checkpoint folder to write (None: keep the model in memory only). options: every
    other flag of ``stockllm train`` by its name: window_size, horizon, quantiles, features, columns, decimal,
    date_format, resume (True: continue the interrupted run in save_dir; a folder: warm-start the LLM from it) and
    every model setting (epochs=5, hidden_size=32, lora_rank=8, members=[...], ...).
    """
    from .training import run_train

    opts = from_keywords(TrainOptions, data=data, model=model, save_dir=save_dir, progress=progress, **options)
    return run_train(opts, _say(progress))


def predict(data=None, checkpoint: str | None = None, *, model: str | None = None, output: str | None = None,
            progress: bool = False, **options):
    """Forecast the next H sessions after each series' last row, exactly as ``stockllm predict`` (or, with
    ``ticker=``, ``stockllm forecast``) does, and return the table (one row per series and horizon).

    data: as for :func:`evaluate`. checkpoint: a folder from ``train``; or model: "naive" or "drift". output: also
    write this CSV (None: write nothing). options: every other flag by its name: quantiles, window_size and horizon
    (naive and drift), calendar, plot, calibrate, calibration_step, price_limits, model_path, device,
    trust_remote_code, columns, decimal, date_format, and for downloads ticker, period, source, adjust, ledger.
    """
    from .prediction import run_predict

    opts = from_keywords(PredictOptions, data=data, checkpoint=checkpoint, model=model, output=output,
                         progress=progress, **options)
    return run_predict(opts, _say(progress))
