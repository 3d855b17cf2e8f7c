"""Walk-forward evaluation on a chronological split: the cutoff, the test origins, the backtest and its sharding
over processes. The scores live in ``stockllm.metrics``."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pandas as pd

from .errors import StockLLMError
from .features import before, origins_with_targets, targets, to_prices, union_dates  # noqa: F401 - before re-exported
from .models.base import Forecaster
from .plots import plot_forecasts  # noqa: F401 - evaluate's picture, re-exported for callers of this module
from .metrics import (  # noqa: F401 - the scores, re-exported for callers of this module
    diebold_mariano, format_leaderboard, format_table, leaderboard, metrics, quantile_columns, weighted_quantile_loss)
from .limits import describe as describe_limits, limited
from .progress import epochs_words
from .quantiles import column, ewma_sigma


def split_index(n_rows: int, test_size: float) -> int:
    """First row of the test part: the last ``test_size`` share of rows (at least one row each side)."""
    if not 0 < test_size < 1:
        raise ValueError("test_size must be between 0 and 1")
    return min(max(int(round(n_rows * (1 - test_size))), 1), n_rows - 1)


def resolve_cutoff(frames: dict[str, pd.DataFrame], test_size: float = 0.2,
                   test_start: str | pd.Timestamp | None = None) -> pd.Timestamp:
    """The one test cutoff date for all series.

    ``test_start`` (a date) sets it; otherwise it is the first date of the last ``test_size`` share of the union
    of the series' dates. Nothing fitted or validated reaches it; every test origin lies on or after it.
    """
    dates = union_dates(frames.values())
    if test_start is not None:
        try:
            cutoff = pd.Timestamp(test_start)
        except (TypeError, ValueError):
            raise StockLLMError(f"--test_start {test_start!r} is not a date: use YYYY-MM-DD") from None
        if cutoff > dates[-1]:
            raise StockLLMError(f"--test_start {cutoff:%Y-%m-%d} is after the last date of the data "
                                f"({dates[-1]:%Y-%m-%d}): pass an earlier date")
        return cutoff
    return dates[split_index(len(dates), test_size)]


def test_origins(index: pd.DatetimeIndex, start: pd.Timestamp, window: int, horizon: int,
                 stop: pd.Timestamp | None = None) -> np.ndarray:
    """Origin rows t with start <= date[t] (< stop when given), a full window behind them and all H targets
    inside the frame."""
    origins = origins_with_targets(len(index), window, horizon)
    dates = index[origins]
    keep = dates >= start if stop is None else (dates >= start) & (dates < stop)
    return origins[np.asarray(keep)]


def trained_until(model: Forecaster) -> pd.Timestamp | None:
    """The last date of the data a fitted model was trained on (from its fit record), or None if unknown."""
    spans = model.fit_info.get("series") or []
    lasts = [pd.Timestamp(s["last"]) for s in spans if s.get("last")]
    return max(lasts) if lasts else None


def backtest(model: Forecaster, name: str, series: str, frame: pd.DataFrame, origins: np.ndarray) -> pd.DataFrame:
    """Forecast every origin at once; one row per origin and horizon (tidy).

    Columns: series, model, origin, horizon, target_date, last_close, actual, predicted (the median close), sigma
    (the causal EWMA daily volatility at the origin, which sorts origins into volatility terciles), one
    price-scale quantile column per level (``q0.1``, ...; NaN for a model without quantiles) and limited (True where
    a daily price limit clipped the quantiles).
    """
    close = frame["Close"].to_numpy(dtype=np.float64)
    point, q = model.predict_distribution(frame, origins)
    pred = to_prices(close[origins], point)
    actual = to_prices(close[origins], targets(frame, model.horizon, origins))
    n, horizon = pred.shape
    dates = frame.index
    q_prices = close[origins][:, None, None] * np.exp(q)  # [n, H, Q]
    table = pd.DataFrame({
        "series": series,
        "model": name,
        "origin": np.repeat(dates[origins].strftime("%Y-%m-%d"), horizon),
        "horizon": np.tile(np.arange(1, horizon + 1), n),
        "target_date": dates[(origins[:, None] + np.arange(1, horizon + 1)).ravel()].strftime("%Y-%m-%d"),
        "last_close": np.repeat(close[origins], horizon),
        "actual": actual.ravel(),
        "predicted": pred.ravel(),
        "sigma": np.repeat(ewma_sigma(close)[origins], horizon),
    })
    for j, level in enumerate(model.quantiles):
        table[column(level)] = q_prices[:, :, j].ravel()
    table["limited"] = limited(q, model.price_limit(frame)).ravel()
    return table


def process_rank() -> tuple[int, int]:
    """(rank, number of processes) of this run: under ``accelerate launch`` or torchrun, accelerate's state
    (which joins the process group); otherwise (0, 1) without importing accelerate."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    from accelerate import PartialState

    from .device import resolve_device

    # cpu= as the training loop's Accelerator sets it: without it accelerate sees no distributed CPU run.
    state = PartialState(cpu=resolve_device("auto")[0].type == "cpu")
    return state.process_index, state.num_processes


def protocol_name(model: Forecaster, refit_every: int | None, checkpoint: bool, cutoff: pd.Timestamp) -> str:
    """How a model was scored, in words, for the output (metrics.csv, leaderboard.csv, the terminal)."""
    if checkpoint:
        until = trained_until(model)
        return f"checkpoint, no fit (trained to {until:%Y-%m-%d})" if until is not None else "checkpoint, no fit"
    if not model.needs_fit:
        return "no fit"
    if refit_every:
        return f"refit every {refit_every} test days (expanding window)"
    return f"one fit (data before {cutoff:%Y-%m-%d})"


def evaluate(
    frames: dict[str, pd.DataFrame],
    models: dict[str, Callable[[], Forecaster]],
    test_size: float = 0.2,
    progress: bool = True,
    log: Callable[[str], None] = print,
    test_start: str | pd.Timestamp | None = None,
    fitted: dict[str, Forecaster] | None = None,
    refit_every: int | None = None,
    calibrate: str | None = None,
    calibration_step: float | None = None,
    price_limits: str | float = "auto",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Backtest every model on every origin on or after one cutoff date shared by all series.

    frames: series name → OHLCV frame. models: model name → factory returning an unfitted Forecaster.
    fitted: model name → an already trained Forecaster (a checkpoint), scored without fitting; its test
    origins must lie after its training data. Protocols: one fit on the rows before the cutoff (pooled over
    series); or, with ``refit_every`` N, a fresh fit every N test days on all rows before that day (expanding
    window). Returns (metrics, forecasts) as tidy frames; metrics names each model's protocol. Nothing fitted
    or validated sees a row on or after the first origin it forecasts.

    Under ``accelerate launch`` (N processes) each process forecasts a contiguous 1/N of every series' origins
    and all processes get the gathered result, in the single-process order; forecasts do not depend on which
    origins are asked together, so the result is the one-process result. Models are fitted in every process
    (the LLM's fit is itself spread over them, data-parallel).

    ``calibrate`` "aci" adds, beside every model with quantiles, its online-recalibrated variant ``<name>+aci``
    (``stockllm.calibration``; the same fitted model, no extra fit); ``calibration_step`` is its γ. Its offsets
    start from the model's validation residuals before its training end (or before the cutoff, for a model fitted
    on nothing).

    ``price_limits`` ("auto", "off" or a fraction; ``stockllm.limits``): every model's forecasts are clipped to the
    series' daily price limit before they are scored, as ``predict`` clips them, and the protocol says so.
    """
    fitted = dict(fitted or {})
    calibrate = None if calibrate in (None, "none") else calibrate
    if refit_every is not None and refit_every < 1:
        raise StockLLMError(f"--refit_every {refit_every} must be 1 or more (test days between refits)")
    run = _Backtest(frames, models, fitted, refit_every, calibrate, calibration_step, progress, log, price_limits)
    run.plan(test_size, test_start)
    # An ensemble comes after the models it may reuse as members.
    for model_name, model in sorted(run.first_models().items(), key=lambda item: hasattr(item[1], "offer")):
        run.score(model_name, model)
    return run.gather()


class _Backtest:
    """One call of :func:`evaluate`: the plan (cutoff, refit dates, process shard), each model's fits and backtests,
    and the gathered result. Its fields are set once, in ``plan``; ``pieces`` and ``protocols`` grow as models are
    scored."""

    def __init__(self, frames, models, fitted, refit_every, calibrate, calibration_step, progress, log,
                 price_limits="auto"):
        self.frames, self.models, self.fitted = frames, models, fitted
        self.price_limits = price_limits  # the limit is part of the forecast: scored as predict gives it
        self.refit_every, self.calibrate, self.calibration_step = refit_every, calibrate, calibration_step
        self.progress, self.log = progress, log
        self.pieces: list = []  # (order, rank, forecasts) so gathered shards sort back into one order
        self.protocols: dict[str, str] = {}
        self.fitted_at: dict = {}  # fit date → {model name: the model fitted before it}, for an ensemble to reuse

    def plan(self, test_size: float, test_start) -> None:
        """The cutoff (checked against every checkpoint's training range), the refit dates and this process's
        rank."""
        cutoff = resolve_cutoff(self.frames, test_size, test_start)
        for name, model in self.fitted.items():
            until = trained_until(model)
            if until is not None and cutoff <= until:
                raise StockLLMError(
                    f"--test_start {cutoff:%Y-%m-%d} lies inside the training range of checkpoint model {name} "
                    f"(trained on data up to {until:%Y-%m-%d}): pass --test_start after {until:%Y-%m-%d}, or leave "
                    "it out to test on every origin after the training range")
        self.log(f"test cutoff {cutoff:%Y-%m-%d}: models are fitted and validated on earlier dates only; "
                 "every test origin is on or after it")
        test_dates = union_dates(self.frames.values())
        test_dates = test_dates[test_dates >= cutoff]
        if self.refit_every:
            self.refits = list(test_dates[::self.refit_every])
            self.log(f"refitting every {self.refit_every} test days: {len(self.refits)} fits per model")
        else:
            self.refits = [cutoff]
        self.cutoff = cutoff
        self.rank, self.world = process_rank()
        if self.world > 1:
            self.log(f"{self.world} processes: each forecasts 1/{self.world} of every series' origins")

    def first_models(self) -> dict:
        """Each model as it is scored first: a new one from its factory, or the checkpoint; refused when
        ``refit_every`` asks for a model too slow to fit again and again."""
        first = {**{m: make() for m, make in self.models.items() if m not in self.fitted}, **self.fitted}
        for model_name, model in first.items():
            if self.refit_every and model.needs_fit and model_name not in self.fitted and not model.refit_ok:
                raise StockLLMError(
                    f"--refit_every is for the cheap models; {model_name} takes too long to fit again every "
                    f"{self.refit_every} days: drop --refit_every (one fit), or leave {model_name} out of --models")
        return first

    def score(self, model_name: str, model: Forecaster) -> None:
        """Fit (once, or once per refit block) and backtest one model on every series; its calibrated variant too."""
        from .calibration import calibrated

        refitted = model_name not in self.fitted and self.refit_every and model.needs_fit
        blocks = list(zip(self.refits, self.refits[1:] + [None])) if refitted else [(self.cutoff, None)]
        self.protocols[model_name] = protocol_name(model, self.refit_every if model.needs_fit else None,
                                                   model_name in self.fitted, self.cutoff)
        variant = None
        for k, (start, stop) in enumerate(blocks):
            if k > 0:
                model = self.models[model_name]()
            if model.needs_fit and model_name not in self.fitted:
                self.fit(model_name, model, start, first=k == 0)
            variant = (calibrated(model, self.calibrate, self.calibration_step, until=start)
                       if self.calibrate and model.has_quantiles else None)
            self.backtest_block(model_name, model, variant, k, start, stop, single=len(blocks) == 1)
        if variant is not None:
            self.protocols[f"{model_name}+{self.calibrate}"] = (
                f"{self.protocols[model_name]}; online recalibration ({self.calibrate}, γ = {variant.config.gamma:g})")

    def fit(self, model_name: str, model: Forecaster, start: pd.Timestamp, first: bool) -> None:
        """Fit on every series' rows before ``start`` (pooled); the first fit reports how training went."""
        if first:
            self.log(f"fitting {model_name} on the data before {start:%Y-%m-%d} ({len(self.frames)} series)")
        parts = [part for part in (before(frame, start) for frame in self.frames.values())
                 if len(part) >= model.data.min_rows]
        if not parts:
            raise StockLLMError(f"no series has {model.data.min_rows} rows before {start:%Y-%m-%d} to fit "
                                f"{model_name} on: use a smaller --test_size or a later --test_start")
        if hasattr(model, "offer"):
            model.offer(self.fitted_at.get(start, {}))
        model.fit(parts, progress=self.progress and first and self.rank == 0)
        self.fitted_at.setdefault(start, {})[model_name] = model
        if not first:
            return
        info = model.fit_info
        if info.get("stop_reason"):
            self.log(f"{model_name}: training stopped at step {info.get('steps')} "
                     f"({epochs_words(info.get('epochs_run', 0))}): "
                     f"{info.get('stopped_because')} [{info['stop_reason']}]")
        for note in info.get("notes", []):
            self.log(f"note: {model_name}: {note}")
        if hasattr(model, "describe"):  # the ensemble: its row names its weights
            self.protocols[model_name] += f"; weights {model.describe()}"
        if info.get("reused"):
            self.log(f"{model_name}: reused the {', '.join(info['reused'])} fitted above as members")

    def backtest_block(self, model_name, model, variant, k: int, start, stop, single: bool) -> None:
        """This process's shard of every series' origins in [start, stop), forecast by the model (and its
        calibrated variant), each clipped to the series' daily price limit as predict clips it."""
        scored = model.limited_to(self.price_limits)
        for i, (series, frame) in enumerate(self.frames.items()):
            origins = test_origins(frame.index, start, model.window_size, model.horizon, stop)
            if len(origins) == 0:
                continue
            if model.needs_fit and single:  # trained models can take a while (the LLM: about a minute per 1,000
                self.log(f"backtesting {model_name} on {series}: {len(origins)} origins")  # origins on CPU)
            order = len(self.protocols), 0, k, i
            shard = np.array_split(origins, self.world)[self.rank]
            if len(shard):
                self.pieces.append((order, self.rank, backtest(scored, model_name, series, frame, shard)))
                if variant is not None:
                    self.pieces.append(((order[0], 1, k, i), self.rank, backtest(
                        variant.limited_to(self.price_limits), f"{model_name}+{self.calibrate}", series, frame,
                        shard)))

    def gather(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Every process's pieces in the single-process order, scored: (metrics, forecasts)."""
        pieces = self.pieces
        if self.world > 1:
            from accelerate.utils import gather_object

            pieces = gather_object(pieces)
        pieces = [table for *_, table in sorted(pieces, key=lambda p: p[:2])]
        if not pieces:
            raise StockLLMError(f"no series has a test origin on or after the cutoff {self.cutoff:%Y-%m-%d} with all "
                                "its targets inside the data: use a larger --test_size, an earlier --test_start or "
                                "longer files")
        forecasts = pd.concat(pieces, ignore_index=True)
        for series in self.frames:
            if series not in set(forecasts["series"]):
                self.log(f"note: {series} has no test origin on or after {self.cutoff:%Y-%m-%d} with its targets "
                         "inside the data (its dates end too early): it is not scored")
        table = metrics(forecasts)
        clipped = describe_limits(self.frames, self.price_limits)
        table.insert(2, "protocol", table["model"].map(self.protocols) + (f"; {clipped}" if clipped else ""))
        return table, forecasts
