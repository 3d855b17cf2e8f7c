"""``metrics.metrics`` in one pass over long arrays grouped by integer codes, without a frame per group.

A block of forecasts (``vectorised.BlockForecasts``: one entry per series, origin and horizon) is scored for every
(series, horizon) group at once: sums by ``np.bincount`` over the group code, Diebold–Mariano autocovariances as
products of lagged neighbours that share a group, the volatility terciles per series. The columns, their order and
their values are those of ``metrics.metrics`` on the same rows (to rounding: sums here are plain, pandas' are
compensated); a test holds the two together.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .quantiles import central_intervals, pinball


def _mean(group: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Mean of ``values`` per group code (NaN values left out; NaN for a group without any)."""
    ok = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(group[ok], values[ok], size) / np.bincount(group[ok], minlength=size)


def _segments(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, starts): a stable sort of the rows by group, and where each group's run begins in it (for groups
    that have rows)."""
    order = np.argsort(group, kind="stable")
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    return order, starts


def diebold_mariano_groups(group: np.ndarray, loss_a: np.ndarray, loss_b: np.ndarray, horizon: np.ndarray,
                           size: int) -> np.ndarray:
    """``metrics.diebold_mariano`` for every group at once: p-values [size] (NaN where it gives NaN).

    group: code of each row [n], rows of one group in time order; horizon: the lag count H of each group [size]
    (autocovariances up to lag H − 1).
    """
    order, starts = _segments(group)
    g = group[order]
    d = (np.asarray(loss_a, dtype=np.float64) - np.asarray(loss_b, dtype=np.float64))[order]
    n = np.bincount(g, minlength=size).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(g, d, size) / n
        dc = d - mean[g]
        gamma = np.bincount(g, dc * dc, size) / n
        longest = int(horizon.max()) if len(horizon) else 1
        for k in range(1, longest):
            same = g[k:] == g[:-k]
            lag = np.bincount(g[k:][same], (dc[k:] * dc[:-k])[same], size) / n
            gamma = gamma + 2 * np.where(k < horizon, lag, 0.0)
        var = gamma / n
        stat = mean / np.sqrt(var)
        h = horizon.astype(np.float64)
        stat = stat * np.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
        p = 2 * stats.t.sf(np.abs(stat), df=n - 1)
    biggest = np.zeros(size)
    biggest[g[starts]] = np.maximum.reduceat(np.abs(d), starts) if len(starts) else []
    scale = 1e-6 * _mean(group, np.abs(np.asarray(loss_b, dtype=np.float64)), size)
    same_forecast = biggest <= scale  # equal up to float32 rounding: the same forecast (see metrics.diebold_mariano)
    return np.where((n < 3) | same_forecast | ~(var > 0), np.nan, p)


def _terciles(code: np.ndarray, row: np.ndarray, sigma: np.ndarray, n_series: int) -> np.ndarray:
    """Per origin row, 0/1/2 for the lowest / middle / highest third of its series' EWMA σ at the origins
    (``metrics.metrics``' edges: ``np.nanquantile`` at 1/3 and 2/3 over the series' distinct origins)."""
    first = np.r_[True, (code[1:] != code[:-1]) | (row[1:] != row[:-1])]  # one entry per (series, origin)
    edges = np.full((n_series, 2), np.nan)
    for s in np.unique(code):
        values = sigma[first & (code == s)]
        edges[s] = np.nanquantile(values, [1 / 3, 2 / 3])
    lo, hi = edges[code, 0], edges[code, 1]
    return np.where(sigma <= lo, 0, np.where(sigma <= hi, 1, 2))


def block_metrics(names: list, forecasts: list, naive) -> pd.DataFrame:
    """Tidy metrics per series, model and horizon for one block (see ``metrics.metrics`` for the columns).

    names: the block's series [S]; forecasts: ``BlockForecasts`` of every model, naive's among them; naive: the
    naive model's ``BlockForecasts`` (the same origins as every other model's). Rows: model by model in the
    given order, then series, then horizon.
    """
    levels = naive.levels
    horizons = int(naive.horizon.max())
    size = len(names) * horizons
    group = naive.code * horizons + naive.horizon - 1
    naive_loss = pinball(naive.actual, naive.quantiles, levels)
    naive_err = np.abs(naive.last_close - naive.actual)
    tercile = _terciles(naive.code, naive.row, naive.sigma, len(names))
    frames = [_model_metrics(f, names, horizons, group, naive_loss, naive_err, tercile) for f in forecasts]
    return pd.concat(frames, ignore_index=True)


def _model_metrics(f, names, horizons, group, naive_loss, naive_err, tercile) -> pd.DataFrame:
    """One model's rows of ``block_metrics``."""
    size = len(names) * horizons
    h_of = np.tile(np.arange(1, horizons + 1), len(names))
    err = f.predicted - f.actual
    abs_err = np.abs(err)
    count = np.bincount(group, minlength=size)
    mae = _mean(group, abs_err, size)
    naive_mae = _mean(group, naive_err, size)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = {
            "series": np.repeat(np.asarray(names, dtype=object), horizons), "model": f.model, "horizon": h_of,
            "n": count, "mae": mae, "rmse": np.sqrt(_mean(group, err**2, size)),
            "mape": _mean(group, abs_err / np.abs(f.actual), size) * 100,
            "mae_vs_naive": np.where(naive_mae > 0, mae / naive_mae, np.nan),
            "dir_acc": _mean(group, (np.sign(f.predicted - f.last_close) == np.sign(f.actual - f.last_close))
                             .astype(float), size),
            "up_rate": _mean(group, (f.actual > f.last_close).astype(float), size),
            "dm_pvalue": diebold_mariano_groups(group, abs_err, naive_err, h_of, size),
        }
        loss = pinball(f.actual, f.quantiles, f.levels)
        table["wql"] = _wql(group, loss, f.actual, size)
        naive_wql = _wql(group, naive_loss, f.actual, size)
        table["wql_vs_naive"] = np.where(naive_wql > 0, table["wql"] / naive_wql, np.nan)
        table["crps"] = 2 * _mean(group, loss.mean(axis=1), size)  # metrics.crps_from_quantiles per group
        table.update(_coverage(f, group, tercile, size))
    table["dm_pvalue_wql"] = diebold_mariano_groups(group, loss.sum(axis=1), naive_loss.sum(axis=1), h_of, size)
    out = pd.DataFrame(table)
    return out.loc[count > 0].reset_index(drop=True)


def _wql(group: np.ndarray, loss: np.ndarray, actual: np.ndarray, size: int) -> np.ndarray:
    """``metrics.weighted_quantile_loss`` per group: the mean over levels of 2·Σ pinball ÷ Σ|actual|."""
    denom = np.bincount(group, np.abs(actual), size)
    sums = np.stack([np.bincount(group, loss[:, j], size) for j in range(loss.shape[1])], axis=1)
    wql = np.mean(2 * sums / denom[:, None], axis=1)
    return np.where(denom > 0, wql, np.nan)


def _coverage(f, group: np.ndarray, tercile: np.ndarray, size: int) -> dict:
    """coverage_P per central interval, width_80 and coverage_80 by volatility tercile, in ``metrics``' order."""
    out = {}
    index = {level: j for j, level in enumerate(f.levels)}
    for pct, lo, hi in central_intervals(f.levels):
        low, high = f.quantiles[:, index[lo]], f.quantiles[:, index[hi]]
        inside = ((f.actual >= low) & (f.actual <= high)).astype(float)
        inside[np.isnan(low) | np.isnan(high)] = np.nan
        out[f"coverage_{pct}"] = _mean(group, inside, size)
        if pct == 80:
            out["width_80"] = _mean(group, (high - low) / f.last_close, size)
            out.update(_coverage_tests(f, group, inside, size))
            for k, name in enumerate(("lowvol", "midvol", "highvol")):
                out[f"coverage_80_{name}"] = _mean(group, np.where(tercile == k, inside, np.nan), size)
    for key in ("coverage_80", "width_80", "kupiec_p", "christoffersen_p", "coverage_80_lowvol",
                "coverage_80_midvol", "coverage_80_highvol"):
        out.setdefault(key, np.full(size, np.nan))
    return out


def _coverage_tests(f, group: np.ndarray, inside: np.ndarray, size: int) -> dict:
    """kupiec_p and christoffersen_p of the 80% interval per group (``metrics.coverage_tests`` on each group's
    outcomes in origin order): a loop over groups, each a few array operations."""
    from .metrics import coverage_tests

    kupiec, christoffersen = np.full(size, np.nan), np.full(size, np.nan)
    order = np.lexsort((f.row, group))
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    for a, b in zip(starts, [*starts[1:], len(order)]):
        g = sorted_group[a]
        tests = coverage_tests(inside[order[a:b]], int(f.horizon[order[a]]))
        kupiec[g], christoffersen[g] = tests["kupiec_p"], tests["christoffersen_p"]
    return {"kupiec_p": kupiec, "christoffersen_p": christoffersen}


def series_dm(f, naive, n_series: int) -> tuple[np.ndarray, np.ndarray]:
    """Per series: (p-value, mean difference) of a Diebold–Mariano test on the per-origin absolute error averaged
    over horizons, against naive (``metrics.leaderboard``'s dm_better / dm_worse; lags up to H − 1)."""
    horizons = int(f.horizon.max())
    err = np.abs(f.predicted - f.actual).reshape(-1, horizons).mean(axis=1)
    base = np.abs(f.last_close - f.actual).reshape(-1, horizons).mean(axis=1)
    code = f.code[::horizons]
    p = diebold_mariano_groups(code, err, base, np.full(n_series, horizons), n_series)
    return p, _mean(code, err - base, n_series)
