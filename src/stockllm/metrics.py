"""Scores of forecasts: point errors, the weighted quantile loss, interval coverage (overall and by volatility
tercile), Diebold–Mariano tests, and the leaderboard across series. Reads the tidy forecasts table that
``stockllm.backtest.backtest`` writes; knows nothing about models.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from .quantiles import central_intervals, column, level_of, pinball


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
    of actual closes inside it), coverage_80_lowvol / _midvol / _highvol (the same for the origins in the lowest,
    middle and highest third of the series' causal EWMA volatility at the origin: marginal coverage hides
    under-coverage in storms; NaN without a ``sigma`` column), width_80 (mean width of the 80% interval ÷ last
    close), dm_pvalue_wql (Diebold–Mariano on the per-origin quantile loss against naive's), and the tests a risk
    desk runs: crps (``crps_from_quantiles``: 2 × the mean pinball loss over the levels, price units, mean over
    origins), kupiec_p and christoffersen_p (``coverage_tests`` on the 80% interval: unconditional and
    conditional coverage; small p-values reject calibration).
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
    edges = {}  # series → the EWMA-σ terciles of its origins (the same origins for every model)
    if "sigma" in f.columns:
        for series, g in f.drop_duplicates(["series", "origin"]).groupby("series", sort=False):
            edges[series] = np.nanquantile(g["sigma"].to_numpy(dtype=np.float64), [1 / 3, 2 / 3])
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
            row["crps"] = crps_from_quantiles(g[pb].to_numpy())
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
                order = np.argsort(g["origin"].to_numpy(), kind="stable") if "origin" in g else slice(None)
                row.update(coverage_tests(inside.to_numpy()[order], int(horizon)))
                if series in edges:
                    sigma = g["sigma"].to_numpy(dtype=np.float64)
                    lo_edge, hi_edge = edges[series]
                    for name, part in (("lowvol", sigma <= lo_edge), ("midvol", (sigma > lo_edge) & (sigma <= hi_edge)),
                                       ("highvol", sigma > hi_edge)):
                        row[f"coverage_80_{name}"] = float(inside[part].mean()) if part.any() else float("nan")
        for key in ("crps", "coverage_80", "width_80", "kupiec_p", "christoffersen_p", "coverage_80_lowvol",
                    "coverage_80_midvol", "coverage_80_highvol"):
            row.setdefault(key, float("nan"))
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


def _geomean(values: pd.Series) -> float:
    v = values.to_numpy(dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.exp(np.log(v).mean())) if len(v) else float("nan")


def leaderboard(table: pd.DataFrame, forecasts: pd.DataFrame | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """One row per model across all series and horizons, best first: by wql_vs_naive when models have quantiles
    (models without come last, by MAE rank), else by mean MAE rank.

    mae_vs_naive, wql_vs_naive: geometric means over (series, horizon) of the metrics' ratios (NaN where a model
    has no quantiles); wql_vs_fhs: the same against the fhs model's wql on the same series and horizon (when fhs was
    scored). coverage_80: mean over (series, horizon). mean_rank: the model's rank by MAE among all models, within
    each series and horizon (1 = best, ties averaged), averaged. pairs: the (series, horizon) pairs scored.
    crps: geometric mean over (series, horizon) of metrics' crps (price units: compare models, not series).
    kupiec_p, christoffersen_p: the median over (series, horizon) of metrics' p-values (NaN without quantiles).
    wql_dm_better / wql_dm_worse: how many of those pairs a Diebold–Mariano test on the per-origin quantile loss
    finds the model better / worse than naive at p < ``alpha``. dm_better / dm_worse: the number of series where a
    Diebold–Mariano test on the per-origin absolute error (averaged over horizons; lags up to H − 1) finds the
    model better / worse than naive at p < ``alpha`` (needs ``forecasts``; NaN without). series: series scored.
    protocol: as in metrics.
    """
    ranks = table.groupby(["series", "horizon"])["mae"].rank(method="average")
    t = table.assign(_rank=ranks)
    fhs = t.loc[t["model"] == "fhs"].set_index(["series", "horizon"])["wql"] if (t["model"] == "fhs").any() else None
    rows = []
    for model, g in t.groupby("model", sort=False):
        sig = g["dm_pvalue_wql"] < alpha if "dm_pvalue_wql" in g else pd.Series(False, index=g.index)
        row = {
            "model": model,
            "protocol": g["protocol"].iloc[0] if "protocol" in g else "",
            "series": g["series"].nunique(),
            "mae_vs_naive": _geomean(g["mae_vs_naive"]),
            "wql_vs_naive": _geomean(g["wql_vs_naive"]) if "wql_vs_naive" in g else float("nan"),
        }
        if fhs is not None:
            base = fhs.reindex(pd.MultiIndex.from_frame(g[["series", "horizon"]])).to_numpy()
            row["wql_vs_fhs"] = _geomean(pd.Series(g["wql"].to_numpy() / base))
        row.update({
            "coverage_80": float(g["coverage_80"].mean()) if "coverage_80" in g else float("nan"),
            "crps": _geomean(g["crps"]) if "crps" in g else float("nan"),
            "kupiec_p": float(g["kupiec_p"].median()) if "kupiec_p" in g else float("nan"),
            "christoffersen_p": float(g["christoffersen_p"].median()) if "christoffersen_p" in g else float("nan"),
            "mean_rank": float(g["_rank"].mean()),
            "pairs": len(g),
            "wql_dm_better": int((sig & (g["wql_vs_naive"] < 1)).sum()) if "wql_vs_naive" in g else 0,
            "wql_dm_worse": int((sig & (g["wql_vs_naive"] > 1)).sum()) if "wql_vs_naive" in g else 0,
            "dm_better": float("nan"), "dm_worse": float("nan"),
        })
        rows.append(row)
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
    if board["wql_vs_naive"].notna().any():
        keys = ["wql_vs_naive", "mean_rank"]
    else:
        keys = ["mean_rank", "mae_vs_naive"]
    return board.sort_values(keys, kind="stable", na_position="last").reset_index(drop=True)


TERMINAL_WIDTH = 120  # the terminal tables fit this many columns
# Short headers for the terminal (the CSVs keep the full names).
SHORT = {"mae_vs_naive": "mae/naive", "wql_vs_naive": "wql/naive", "wql_vs_fhs": "wql/fhs", "coverage_80": "cov80",
         "mean_rank": "rank", "christoffersen_p": "christ_p", "horizon": "h", "dm_pvalue": "dm_p",
         "dm_pvalue_wql": "dm_p_wql", "width_80": "width80"}


def _fit_width(frame: pd.DataFrame, optional: list[str], width: int = TERMINAL_WIDTH) -> str:
    """``frame`` as fixed-width text (4 significant digits, short headers), leaving out the ``optional`` columns
    from the last one back until every line fits ``width`` characters (or none is left to drop)."""
    frame = frame.rename(columns=SHORT)
    optional = [SHORT.get(c, c) for c in optional if SHORT.get(c, c) in frame.columns]
    while True:
        text = frame.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="")
        if max(map(len, text.splitlines() or [""])) <= width or not optional:
            return text
        frame = frame.drop(columns=optional.pop())


def _pair(a: pd.Series, b: pd.Series) -> list[str]:
    """'3/0' from two count columns (NaN: '')."""
    return ["" if pd.isna(x) or pd.isna(y) else f"{int(x)}/{int(y)}" for x, y in zip(a, b)]


def protocol_lines(frame: pd.DataFrame, width: int = TERMINAL_WIDTH) -> str:
    """One line (wrapped at ``width``) per model: 'model: how it was scored', from a ``protocol`` column."""
    import textwrap

    if "protocol" not in frame.columns:
        return ""
    pairs = frame.drop_duplicates("model")[["model", "protocol"]].to_numpy()
    return "\n".join(textwrap.fill(f"{m}: {p}", width, subsequent_indent="    ") for m, p in pairs if p)


def format_leaderboard(board: pd.DataFrame) -> str:
    """The leaderboard as a fixed-width text table for the terminal, at most 120 columns wide: short headers,
    Diebold–Mariano counts as better/worse pairs, and each model's protocol on its own lines below."""
    b = board.copy()
    if {"wql_dm_better", "wql_dm_worse"} <= set(b.columns):
        b["dm_wql+/-"] = _pair(b["wql_dm_better"], b["wql_dm_worse"])
    if {"dm_better", "dm_worse"} <= set(b.columns):
        b["dm_mae+/-"] = _pair(b["dm_better"], b["dm_worse"])
    cols = ["model", "wql_vs_naive", "wql_vs_fhs", "mae_vs_naive", "coverage_80", "crps", "kupiec_p",
            "christoffersen_p", "mean_rank", "dm_wql+/-", "dm_mae+/-", "series", "pairs"]
    text = _fit_width(b[[c for c in cols if c in b.columns]], ["crps", "pairs", "series", "dm_mae+/-"])
    protocols = protocol_lines(board)
    return f"{text}\n{protocols}" if protocols else text


def format_table(table: pd.DataFrame) -> str:
    """Metrics as a fixed-width text table for the terminal, at most 120 columns wide (the tercile coverages as
    one low/mid/high column; the protocol is left to the leaderboard)."""
    t = table.copy()
    terciles = ["coverage_80_lowvol", "coverage_80_midvol", "coverage_80_highvol"]
    if set(terciles) <= set(t.columns):
        t["cov80 lo/mid/hi"] = ["" if pd.isna(row).all() else "/".join("–" if pd.isna(v) else f"{v:.2f}" for v in row)
                                for row in t[terciles].to_numpy()]
    cols = ["series", "model", "horizon", "n", "mae", "mae_vs_naive", "wql_vs_naive", "coverage_80",
            "cov80 lo/mid/hi", "width_80", "kupiec_p", "dir_acc", "up_rate", "dm_pvalue", "dm_pvalue_wql"]
    return _fit_width(t[[c for c in cols if c in t.columns]], ["width_80", "up_rate", "mae", "kupiec_p", "n"])


# ---- The tests a risk desk runs on quantile forecasts (issue 26) ----------------------------------------------


def crps_from_quantiles(pinball_losses: np.ndarray) -> float:
    """CRPS from quantile forecasts, in the units of the actuals: the mean over origins of 2 · the mean pinball
    loss over the levels, 2·(1/Q)·Σ_τ ρ_τ(y, q_τ).

    This is the quantile-score approximation of CRPS = 2∫₀¹ ρ_τ(y, F⁻¹(τ)) dτ (Gneiting & Raftery 2007, eq. 21;
    Laio & Tamea 2007): the integral over τ replaced by the mean over the model's levels. It is exact as equally
    spaced levels become dense; with the 9 deciles it ignores the tails beyond 0.1 and 0.9. pinball_losses: [n, Q].
    """
    loss = np.asarray(pinball_losses, dtype=np.float64)
    return float(2 * loss.mean(axis=1).mean()) if loss.size else float("nan")


def _bernoulli_loglik(failures: float, total: float, p: float) -> float:
    """log L of ``failures`` in ``total`` Bernoulli(p) trials (0·log 0 = 0)."""
    from scipy.special import xlog1py, xlogy

    return float(xlogy(failures, p) + xlog1py(total - failures, -p))


def kupiec_p(violations: np.ndarray, p: float) -> float:
    """Kupiec's unconditional coverage test (proportion of failures, 1995): the p-value that the violations
    (True: the actual fell outside the interval) occur with probability ``p`` (0.2 for an 80% interval).

    LR_uc = −2·[log L(p) − log L(π̂)], π̂ = the observed violation rate, χ² with 1 degree of freedom.
    NaN without observations.
    """
    v = np.asarray(violations, dtype=bool)
    n, x = len(v), int(v.sum())
    if n == 0:
        return float("nan")
    lr = -2 * (_bernoulli_loglik(x, n, p) - _bernoulli_loglik(x, n, x / n))
    return float(stats.chi2.sf(max(lr, 0.0), df=1))


def christoffersen_p(violations: np.ndarray, p: float) -> float:
    """Christoffersen's conditional coverage test (1998): the p-value that the violations, in time order, are
    independent (a first-order Markov chain with equal rates after a hit and after a miss) and occur with
    probability ``p``.

    LR_cc = LR_uc + LR_ind, χ² with 2 degrees of freedom, where LR_ind = −2·[log L(π̂) − log L(π̂₀₁, π̂₁₁)] over
    the transitions n_ij (state i, then j): π̂₀₁ = n01 / (n00 + n01), π̂₁₁ = n11 / (n10 + n11), π̂ = (n01 + n11) / all.
    Clustered violations (storms the interval misses day after day) fail it even when the rate is right.
    NaN with fewer than 2 observations.
    """
    v = np.asarray(violations, dtype=bool)
    if len(v) < 2:
        return float("nan")
    prev, nxt = v[:-1], v[1:]
    n01, n00 = int((~prev & nxt).sum()), int((~prev & ~nxt).sum())
    n11, n10 = int((prev & nxt).sum()), int((prev & ~nxt).sum())
    total, hits = n00 + n01 + n10 + n11, n01 + n11
    markov = (_bernoulli_loglik(n01, n00 + n01, n01 / max(n00 + n01, 1))
              + _bernoulli_loglik(n11, n10 + n11, n11 / max(n10 + n11, 1)))
    lr_ind = -2 * (_bernoulli_loglik(hits, total, hits / total) - markov)
    x = int(v.sum())
    lr_uc = -2 * (_bernoulli_loglik(x, len(v), p) - _bernoulli_loglik(x, len(v), x / len(v)))
    return float(stats.chi2.sf(max(lr_uc + lr_ind, 0.0), df=2))


def coverage_tests(inside: np.ndarray, horizon: int, p: float = 0.2) -> dict[str, float]:
    """{"kupiec_p", "christoffersen_p"} for one series, model and horizon.

    inside: [n] in origin order, 1 where the actual lay inside the interval, 0 outside, NaN where unknown; p: the
    rate of outside under a calibrated forecast (0.2 for the 80% interval). Forecasts h > 1 days ahead from
    consecutive origins share days, so their violations are dependent even for a perfect forecaster; the tests
    therefore use every h-th origin (non-overlapping forecasts), which for h = 1 is every origin.
    """
    x = np.asarray(inside, dtype=np.float64)
    x = x[np.isfinite(x)][:: max(int(horizon), 1)]
    violations = x < 0.5
    return {"kupiec_p": kupiec_p(violations, p), "christoffersen_p": christoffersen_p(violations, p)}


def pit_histogram(forecasts: pd.DataFrame) -> pd.DataFrame:
    """Per model, the share of actuals between consecutive forecast quantiles (PIT histogram with the levels as
    edges): columns model, bin_lo, bin_hi, share, expected (= bin_hi − bin_lo, what a calibrated forecast gives),
    n. Pools every series and horizon. Empty without quantile columns."""
    qcols = quantile_columns(forecasts)
    if not qcols:
        return pd.DataFrame(columns=["model", "bin_lo", "bin_hi", "share", "expected", "n"])
    names, levels = [c for c, _ in qcols], np.array([lv for _, lv in qcols])
    edges = np.concatenate([[0.0], levels, [1.0]])
    rows = []
    for model, g in forecasts.groupby("model", sort=False):
        q = g[names].to_numpy(dtype=np.float64)
        y = g["actual"].to_numpy(dtype=np.float64)
        ok = np.isfinite(y) & np.isfinite(q).all(axis=1)
        if not ok.any():
            continue
        below = (y[ok, None] >= q[ok]).sum(axis=1)  # how many quantiles lie at or below the actual: the bin
        counts = np.bincount(below, minlength=len(edges) - 1)
        for j in range(len(edges) - 1):
            rows.append({"model": model, "bin_lo": edges[j], "bin_hi": edges[j + 1], "share": counts[j] / ok.sum(),
                         "expected": edges[j + 1] - edges[j], "n": int(ok.sum())})
    return pd.DataFrame(rows)


def reliability(forecasts: pd.DataFrame) -> pd.DataFrame:
    """Per model and level τ, the share of actuals at or below the τ-quantile (a reliability diagram: calibrated
    forecasts lie on the diagonal observed = τ). Columns model, level, observed, n. Pools series and horizons."""
    qcols = quantile_columns(forecasts)
    rows = []
    for model, g in forecasts.groupby("model", sort=False):
        y = g["actual"].to_numpy(dtype=np.float64)
        for name, level in qcols:
            q = g[name].to_numpy(dtype=np.float64)
            ok = np.isfinite(y) & np.isfinite(q)
            if ok.any():
                rows.append({"model": model, "level": level, "observed": float((y[ok] <= q[ok]).mean()),
                             "n": int(ok.sum())})
    return pd.DataFrame(rows, columns=["model", "level", "observed", "n"])
