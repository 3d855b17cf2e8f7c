"""Walk-forward evaluation on a chronological split: forecasts, metrics beside naive, and a plot."""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from .errors import StockLLMError
from .features import origins_with_targets, targets, to_prices, union_dates
from .models.base import Forecaster
from .plots import plot_forecasts  # noqa: F401 - evaluate's picture, re-exported for callers of this module
from .quantiles import central_intervals, column, level_of, pinball


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


def before(frame: pd.DataFrame, date: pd.Timestamp) -> pd.DataFrame:
    """The rows strictly before ``date`` (attrs kept): what a model fitted up to that date may see."""
    part = frame.loc[frame.index < date]
    part.attrs = dict(frame.attrs)
    return part


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

    Columns: series, model, origin, horizon, target_date, last_close, actual, predicted (the median close) and
    one price-scale quantile column per level (``q0.1``, ...; NaN for a model without quantiles).
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
    })
    for j, level in enumerate(model.quantiles):
        table[column(level)] = q_prices[:, :, j].ravel()
    return table


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray, horizon: int) -> float:
    """Two-sided p-value that models a and b have equal expected loss (Diebold–Mariano with the
    Harvey–Leybourne–Newbold small-sample correction; autocovariances up to lag h-1)."""
    d = np.asarray(loss_a, dtype=np.float64) - np.asarray(loss_b, dtype=np.float64)
    n = len(d)
    if n < 3:
        return float("nan")
    # Forecasts equal up to float32 rounding (an untrained head is the naive walk to ~1e-7) are the same forecast:
    # a test would call their tiny, one-signed rounding differences "significant".
    if np.abs(d).max() <= 1e-6 * np.abs(np.asarray(loss_b, dtype=np.float64)).mean():
        return float("nan")
    dc = d - d.mean()
    gamma = [np.dot(dc[k:], dc[: n - k]) / n for k in range(horizon)]
    var = (gamma[0] + 2 * sum(gamma[1:])) / n
    if not var > 0:
        return float("nan")
    stat = d.mean() / math.sqrt(var)
    stat *= math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    return float(2 * stats.t.sf(abs(stat), df=n - 1))


def quantile_columns(forecasts: pd.DataFrame) -> list[tuple[str, float]]:
    """(column, level) for every ``q…`` column of a forecasts frame, by increasing level."""
    found = [(c, level_of(c)) for c in forecasts.columns]
    return sorted([(c, lv) for c, lv in found if lv is not None], key=lambda x: x[1])


def metrics(forecasts: pd.DataFrame) -> pd.DataFrame:
    """Tidy metrics per series, model and horizon.

    Point metrics (from ``predicted``, the median): mae, rmse, mape (%), mae_vs_naive (MAE ÷ the random walk's
    MAE on the same origins), dir_acc (share of origins where sign(predicted − last close) equals sign(actual −
    last close); naive predicts no move, so its dir_acc is the share of exactly flat moves, ≈ 0), up_rate (share
    of origins whose close rose: the base rate dir_acc must beat, since always saying "up" scores it), dm_pvalue
    (Diebold–Mariano, equal absolute error against naive).

    Quantile metrics (from the ``q…`` columns, price scale; NaN for a model without quantiles): wql (Chronos'
    weighted quantile loss: per level 2·Σ pinball ÷ Σ|actual|, averaged over the levels), wql_vs_naive (÷ the
    ``naive`` model's wql on the same origins), coverage_P for each central P% interval the levels allow (share
    of actual closes inside it), width_80 (mean width of the 80% interval ÷ last close) and dm_pvalue_wql
    (Diebold–Mariano on the per-origin quantile loss against naive's).
    """
    f = forecasts
    qcols = quantile_columns(f)
    names, levels = [c for c, _ in qcols], [lv for _, lv in qcols]
    f = f.assign(abs_err=(f["predicted"] - f["actual"]).abs(), naive_err=(f["last_close"] - f["actual"]).abs())
    keys = ["series", "origin", "horizon"]
    has_naive = bool(names) and "origin" in f.columns and (f["model"] == "naive").any()
    pb, npb_cols = [f"_pb{j}" for j in range(len(names))], [f"_npb{j}" for j in range(len(names))]
    if names:
        loss = pinball(f["actual"].to_numpy(), f[names].to_numpy(), levels)  # [rows, Q]
        f = f.assign(**dict(zip(pb, loss.T)))
        if has_naive:  # naive's losses on the same series, origin and horizon, beside each row
            naive = f.loc[f["model"] == "naive", keys + pb].rename(columns=dict(zip(pb, npb_cols)))
            f = f.merge(naive, on=keys, how="left", sort=False)
    intervals = central_intervals(levels)
    rows = []
    for (series, model, horizon), g in f.groupby(["series", "model", "horizon"], sort=False):
        err = g["predicted"] - g["actual"]
        mae = g["abs_err"].mean()
        row = {
            "series": series, "model": model, "horizon": horizon, "n": len(g),
            "mae": mae,
            "rmse": float(np.sqrt((err**2).mean())),
            "mape": float((g["abs_err"] / g["actual"].abs()).mean() * 100),
            "mae_vs_naive": mae / g["naive_err"].mean() if g["naive_err"].mean() > 0 else float("nan"),
            "dir_acc": float((np.sign(g["predicted"] - g["last_close"]) == np.sign(g["actual"] - g["last_close"])).mean()),
            "up_rate": float((g["actual"] > g["last_close"]).mean()),
            "dm_pvalue": diebold_mariano(g["abs_err"].to_numpy(), g["naive_err"].to_numpy(), int(horizon)),
            "wql": float("nan"), "wql_vs_naive": float("nan"),
        }
        if names:
            row["wql"] = weighted_quantile_loss(g[pb].to_numpy(), g["actual"].to_numpy())
            if has_naive:
                npb = g[npb_cols].to_numpy()
                naive_wql = weighted_quantile_loss(npb, g["actual"].to_numpy())
                row["wql_vs_naive"] = row["wql"] / naive_wql if naive_wql > 0 else float("nan")
        for pct, lo, hi in intervals:
            low, high = g[column(lo)], g[column(hi)]
            inside = ((g["actual"] >= low) & (g["actual"] <= high)).astype(float).where(low.notna() & high.notna())
            row[f"coverage_{pct}"] = float(inside.mean())
            if pct == 80:
                row["width_80"] = float(((high - low) / g["last_close"]).mean())
        row.setdefault("coverage_80", float("nan"))
        row.setdefault("width_80", float("nan"))
        row["dm_pvalue_wql"] = float("nan")
        if names and has_naive:
            row["dm_pvalue_wql"] = diebold_mariano(g[pb].to_numpy().sum(axis=1), npb.sum(axis=1), int(horizon))
        rows.append(row)
    return pd.DataFrame(rows)


def weighted_quantile_loss(pinball_losses: np.ndarray, actual: np.ndarray) -> float:
    """Chronos' WQL: for each level 2·Σ pinball ÷ Σ|actual|, averaged over the levels.

    pinball_losses: [n, Q] price-scale pinball losses; actual: [n] closes. NaN if any loss is NaN.
    """
    denom = np.abs(np.asarray(actual, dtype=np.float64)).sum()
    if not denom > 0:
        return float("nan")
    return float(np.mean(2 * np.asarray(pinball_losses, dtype=np.float64).sum(axis=0) / denom))


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
    """
    fitted = dict(fitted or {})
    if refit_every is not None and refit_every < 1:
        raise StockLLMError(f"--refit_every {refit_every} must be 1 or more (test days between refits)")
    cutoff = resolve_cutoff(frames, test_size, test_start)
    for name, model in fitted.items():
        until = trained_until(model)
        if until is not None and cutoff <= until:
            raise StockLLMError(
                f"--test_start {cutoff:%Y-%m-%d} lies inside the training range of checkpoint model {name} (trained "
                f"on data up to {until:%Y-%m-%d}): pass --test_start after {until:%Y-%m-%d}, or leave it out to "
                "test on every origin after the training range")
    log(f"test cutoff {cutoff:%Y-%m-%d}: models are fitted and validated on earlier dates only; "
        "every test origin is on or after it")
    test_dates = union_dates(frames.values())
    test_dates = test_dates[test_dates >= cutoff]
    if refit_every:
        refits = list(test_dates[::refit_every])
        log(f"refitting every {refit_every} test days: {len(refits)} fits per model")
    else:
        refits = [cutoff]
    first = {**{m: make() for m, make in models.items() if m not in fitted}, **fitted}
    for model_name, model in first.items():
        if refit_every and model.needs_fit and model_name not in fitted and not model.refit_ok:
            raise StockLLMError(
                f"--refit_every is for the cheap models; {model_name} takes too long to fit again every "
                f"{refit_every} days: drop --refit_every (one fit), or leave {model_name} out of --models")
    rank, world = process_rank()
    if world > 1:
        log(f"{world} processes: each forecasts 1/{world} of every series' origins")
    pieces, protocols = [], {}  # pieces: (order, rank, forecasts) so gathered shards sort back into one order
    for model_name, model in first.items():
        if model_name in fitted or not (refit_every and model.needs_fit):
            blocks = [(cutoff, None)]
        else:
            blocks = list(zip(refits, refits[1:] + [None]))
        protocols[model_name] = protocol_name(model, refit_every if model.needs_fit else None,
                                              model_name in fitted, cutoff)
        for k, (start, stop) in enumerate(blocks):
            if k > 0:
                model = models[model_name]()
            if model.needs_fit and model_name not in fitted:
                if k == 0:
                    log(f"fitting {model_name} on the data before {start:%Y-%m-%d} ({len(frames)} series)")
                parts = [part for part in (before(frame, start) for frame in frames.values())
                         if len(part) >= model.data.min_rows]
                if not parts:
                    raise StockLLMError(f"no series has {model.data.min_rows} rows before {start:%Y-%m-%d} to fit "
                                        f"{model_name} on: use a smaller --test_size or a later --test_start")
                model.fit(parts, progress=progress and k == 0 and rank == 0)
                if k == 0:
                    info = model.fit_info
                    if info.get("stop_reason"):
                        log(f"{model_name}: training stopped at step {info.get('steps')}: "
                            f"{info.get('stopped_because')} [{info['stop_reason']}]")
                    for note in info.get("notes", []):
                        log(f"note: {model_name}: {note}")
                    if hasattr(model, "describe"):  # the ensemble: its row names its weights
                        protocols[model_name] += f"; weights {model.describe()}"
            for i, (series, frame) in enumerate(frames.items()):
                origins = test_origins(frame.index, start, model.window_size, model.horizon, stop)
                if len(origins) == 0:
                    continue
                if model.needs_fit and len(blocks) == 1:  # trained models can take a while (the LLM: about a
                    log(f"backtesting {model_name} on {series}: {len(origins)} origins")  # minute per 1,000 on CPU)
                order = len(protocols), k, i
                shard = np.array_split(origins, world)[rank]
                if len(shard):
                    pieces.append((order, rank, backtest(model, model_name, series, frame, shard)))
    if world > 1:
        from accelerate.utils import gather_object

        pieces = gather_object(pieces)
    pieces = [table for *_, table in sorted(pieces, key=lambda p: p[:2])]
    if not pieces:
        raise StockLLMError(f"no series has a test origin on or after the cutoff {cutoff:%Y-%m-%d} with all its "
                            "targets inside the data: use a larger --test_size, an earlier --test_start or longer "
                            "files")
    forecasts = pd.concat(pieces, ignore_index=True)
    for series in frames:
        if series not in set(forecasts["series"]):
            log(f"note: {series} has no test origin on or after {cutoff:%Y-%m-%d} with its targets inside the data "
                "(its dates end too early): it is not scored")
    table = metrics(forecasts)
    table.insert(2, "protocol", table["model"].map(protocols))
    return table, forecasts


def _geomean(values: pd.Series) -> float:
    v = values.to_numpy(dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.exp(np.log(v).mean())) if len(v) else float("nan")


def leaderboard(table: pd.DataFrame, forecasts: pd.DataFrame | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """One row per model across all series and horizons, best first (by mean rank).

    mae_vs_naive, wql_vs_naive: geometric means over (series, horizon) of the metrics' ratios (NaN where a model
    has no quantiles). mean_rank: the model's rank by MAE among all models, within each series and horizon
    (1 = best, ties averaged), averaged. dm_better / dm_worse: the number of series where a Diebold–Mariano test
    on the per-origin absolute error (averaged over horizons; lags up to H − 1) finds the model better / worse
    than naive at p < ``alpha`` (needs ``forecasts``; NaN without). series: series scored. protocol: as in
    metrics.
    """
    ranks = table.groupby(["series", "horizon"])["mae"].rank(method="average")
    t = table.assign(_rank=ranks)
    rows = []
    for model, g in t.groupby("model", sort=False):
        rows.append({
            "model": model,
            "protocol": g["protocol"].iloc[0] if "protocol" in g else "",
            "series": g["series"].nunique(),
            "mae_vs_naive": _geomean(g["mae_vs_naive"]),
            "wql_vs_naive": _geomean(g["wql_vs_naive"]) if "wql_vs_naive" in g else float("nan"),
            "mean_rank": float(g["_rank"].mean()),
            "dm_better": float("nan"), "dm_worse": float("nan"),
        })
    board = pd.DataFrame(rows)
    if forecasts is not None and len(forecasts):
        err = forecasts.assign(_err=(forecasts["predicted"] - forecasts["actual"]).abs(),
                               _naive=(forecasts["last_close"] - forecasts["actual"]).abs())
        per_origin = err.groupby(["model", "series", "origin"], sort=False)[["_err", "_naive"]].mean()
        horizon = int(forecasts["horizon"].max())
        counts = {}
        for (model, _), g in per_origin.groupby(level=["model", "series"], sort=False):
            p = diebold_mariano(g["_err"].to_numpy(), g["_naive"].to_numpy(), horizon)
            better, worse = counts.get(model, (0, 0))
            if p < alpha:
                mean_diff = float((g["_err"] - g["_naive"]).mean())
                better, worse = better + (mean_diff < 0), worse + (mean_diff > 0)
            counts[model] = (better, worse)
        board["dm_better"] = board["model"].map(lambda m: counts.get(m, (0, 0))[0])
        board["dm_worse"] = board["model"].map(lambda m: counts.get(m, (0, 0))[1])
    return board.sort_values(["mean_rank", "mae_vs_naive"], kind="stable").reset_index(drop=True)


def format_leaderboard(board: pd.DataFrame) -> str:
    """The leaderboard as a fixed-width text table for the terminal."""
    return board.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def format_table(table: pd.DataFrame) -> str:
    """Metrics as a fixed-width text table for the terminal."""
    cols = ["series", "model", "horizon", "n", "mae", "mae_vs_naive", "wql_vs_naive", "coverage_80", "width_80",
            "dir_acc", "up_rate", "dm_pvalue", "dm_pvalue_wql"]
    return table[[c for c in cols if c in table.columns]].to_string(index=False, float_format=lambda v: f"{v:.4g}")
