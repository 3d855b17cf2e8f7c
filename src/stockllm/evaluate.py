"""Walk-forward evaluation on a chronological split: forecasts, metrics beside naive, and a plot."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from .errors import StockLLMError
from .features import origins_with_targets, targets, to_prices
from .models.base import Forecaster
from .plots import plot_forecasts  # noqa: F401 - evaluate's picture, re-exported for callers of this module
from .quantiles import central_intervals, column, level_of, pinball


def split_index(n_rows: int, test_size: float) -> int:
    """First row of the test part: the last ``test_size`` share of rows (at least one row each side)."""
    if not 0 < test_size < 1:
        raise ValueError("test_size must be between 0 and 1")
    return min(max(int(round(n_rows * (1 - test_size))), 1), n_rows - 1)


def test_origins(n_rows: int, split: int, window: int, horizon: int) -> np.ndarray:
    """Origins whose targets all lie in the test part: t >= split - 1 (the last training day forecasts the first
    test days)."""
    return origins_with_targets(n_rows, window, horizon, start=split - 1)


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
    last close); naive predicts no move, so its dir_acc is the share of exactly flat moves, ≈ 0), dm_pvalue
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


def evaluate(
    frames: dict[str, pd.DataFrame],
    models: dict[str, Callable[[], Forecaster]],
    test_size: float = 0.2,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit each model on the training part of every series (pooled), then backtest every test origin.

    frames: series name → OHLCV frame. models: model name → factory returning an unfitted Forecaster.
    Returns (metrics, forecasts) as tidy frames. Nothing fitted sees a row of any test part.
    """
    splits = {name: split_index(len(frame), test_size) for name, frame in frames.items()}
    train_parts = []
    for name, frame in frames.items():
        part = frame.iloc[: splits[name]]
        part.attrs = dict(frame.attrs)
        train_parts.append(part)
    pieces = []
    for model_name, make in models.items():
        model = make()
        if model.needs_fit:
            log(f"fitting {model_name} on the training part of {len(frames)} series")
            model.fit(train_parts, progress=progress)
            for note in model.fit_info.get("notes", []):
                log(f"note: {model_name}: {note}")
        for series, frame in frames.items():
            origins = test_origins(len(frame), splits[series], model.window_size, model.horizon)
            if len(origins) == 0:
                continue
            if model.needs_fit:  # trained models can take a while (the LLM: about a minute per 1,000 origins on CPU)
                log(f"backtesting {model_name} on {series}: {len(origins)} origins")
            pieces.append(backtest(model, model_name, series, frame, origins))
    if not pieces:
        raise StockLLMError(f"no test origin has all its targets inside the test part (--test_size {test_size}): "
                            "use a larger --test_size or longer files")
    forecasts = pd.concat(pieces, ignore_index=True)
    return metrics(forecasts), forecasts


def format_table(table: pd.DataFrame) -> str:
    """Metrics as a fixed-width text table for the terminal."""
    cols = ["series", "model", "horizon", "n", "mae", "mae_vs_naive", "wql_vs_naive", "coverage_80", "width_80",
            "dir_acc", "dm_pvalue", "dm_pvalue_wql"]
    return table[[c for c in cols if c in table.columns]].to_string(index=False, float_format=lambda v: f"{v:.4g}")
