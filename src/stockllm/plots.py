"""Pictures: the backtest (each model's median and 80% band beside the actual closes, plus rolling coverage) and
the forecast fan of ``predict --plot``. PNG files written under a temporary name, then renamed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .quantiles import central_intervals, column, level_of

RECENT_ORIGINS = 120  # the backtest panels show the last this many test origins: years of closes hide everything
ROLLING = 60  # origins per rolling-coverage point
HISTORY_DAYS = 60  # days of history before the forecast fan


MAX_DRAWN_SERIES = 12  # past this, plot.png and report.html draw the best and worst series only


def drawn_series(forecasts: pd.DataFrame, limit: int = MAX_DRAWN_SERIES) -> tuple[list, str]:
    """The series to draw, and a note on the choice ('' when all are drawn).

    Up to ``limit`` series are all drawn. Beyond that (a whole market), the ``limit // 2`` series where the
    models beat naive most and the ``limit - limit // 2`` where they do worst: the median over the models other
    than naive of MAE ÷ naive's MAE at the first horizon. Every series stays in the CSVs and the metrics table.
    """
    series = list(dict.fromkeys(forecasts["series"]))
    if len(series) <= limit:
        return series, ""
    f = forecasts[forecasts["horizon"] == forecasts["horizon"].min()]
    err = (f["predicted"] - f["actual"]).abs().groupby([f["series"], f["model"]]).mean().unstack("model")
    others = [m for m in err.columns if m != "naive"]
    if "naive" in err.columns and others:
        score = err[others].div(err["naive"], axis=0).median(axis=1).reindex(series)
        ordered = list(score.sort_values(kind="stable").index)
    else:
        ordered = series
    best, worst = limit // 2, limit - limit // 2
    chosen = set(ordered[:best] + ordered[-worst:])
    picked = [s for s in series if s in chosen]
    return picked, (f"{len(series)} series: drawn are the {best} where the models' MAE is lowest against naive "
                    f"and the {worst} where it is highest; all series are in the tables and CSVs")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> None:
    """Write the figure atomically (temporary name in the same folder, then rename) and close it."""
    from .outputs import write_atomic

    try:
        write_atomic(path, lambda handle: fig.savefig(handle, format="png", dpi=110), binary=True)
    finally:
        _pyplot().close(fig)


def _band(levels) -> tuple[int, float, float] | None:
    """The 80% interval if the levels have it, else the widest central interval, else None."""
    intervals = central_intervals(levels)
    return next((i for i in intervals if i[0] == 80), intervals[0] if intervals else None)


def plot_forecasts(forecasts: pd.DataFrame, path: str | Path) -> None:
    """PNG of a backtest, for each series: one panel per model with the actual closes and the model's 1-day-ahead
    median and 80% band over the last ``RECENT_ORIGINS`` test origins, and a panel with every model's rolling
    80% coverage (``ROLLING`` origins) over the whole test period beside the nominal 0.80.

    forecasts: the tidy frame of ``evaluate.backtest`` (columns series, model, horizon, target_date, actual,
    predicted and ``q…`` per level).
    """
    plt = _pyplot()
    levels = sorted(lv for lv in map(level_of, forecasts.columns) if lv is not None)
    band = _band(levels)
    series, note = drawn_series(forecasts)
    models = list(dict.fromkeys(forecasts["model"]))
    h = int(forecasts["horizon"].min())
    panels = len(models) + (1 if band else 0)
    ncols = min(3, panels)
    rows_per_series = math.ceil(panels / ncols)
    fig, axes = plt.subplots(rows_per_series * len(series), ncols, figsize=(5.2 * ncols, 3.4 * rows_per_series *
                             len(series)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for s_i, s in enumerate(series):
        fs = forecasts[(forecasts["series"] == s) & (forecasts["horizon"] == h)]
        grid = [axes[s_i * rows_per_series + i // ncols][i % ncols] for i in range(rows_per_series * ncols)]
        for ax in grid[panels:]:
            ax.axis("off")
        for m_i, model in enumerate(models):
            ax, color = grid[m_i], colors[m_i % len(colors)]
            g = fs[fs["model"] == model].tail(RECENT_ORIGINS)
            dates = pd.to_datetime(g["target_date"])
            ax.plot(dates, g["actual"], color="black", lw=1.2, label="actual")
            ax.plot(dates, g["predicted"], color=color, lw=1.0, label="median")
            if band and g[column(band[1])].notna().any():
                ax.fill_between(dates, g[column(band[1])], g[column(band[2])], color=color, alpha=0.25,
                                lw=0, label=f"{band[0]}% band")
            ax.set_title(f"{s}: {model}, {h}-day-ahead (last {len(g)} origins)", fontsize=9)
            ax.legend(loc="best", fontsize=7)
            ax.grid(alpha=0.3)
            ax.tick_params(axis="x", labelsize=7, rotation=30)
        if band:
            lowest = 1.0
            ax = grid[len(models)]
            for m_i, model in enumerate(models):
                g = fs[fs["model"] == model]
                low, high = g[column(band[1])], g[column(band[2])]
                if low.isna().all():
                    continue
                inside = ((g["actual"] >= low) & (g["actual"] <= high)).astype(float)
                rolling = inside.rolling(ROLLING, min_periods=ROLLING).mean()
                ax.plot(pd.to_datetime(g["target_date"]), rolling, color=colors[m_i % len(colors)], lw=1.0,
                        label=model, ls="--" if model == "naive" else "-")
                lowest = min(lowest, float(rolling.min()) if rolling.notna().any() else lowest)
            ax.axhline(band[0] / 100, color="black", lw=0.8, ls=":")
            ax.set_ylim(min(0.5, lowest - 0.05), 1.02)
            ax.set_title(f"{s}: rolling {band[0]}% coverage ({ROLLING} origins, {h}-day-ahead)", fontsize=9)
            ax.legend(loc="lower left", fontsize=7)
            ax.grid(alpha=0.3)
            ax.tick_params(axis="x", labelsize=7, rotation=30)
    if note:
        fig.suptitle(note, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def plot_fan(history: dict[str, pd.DataFrame], forecasts: pd.DataFrame, path: str | Path) -> None:
    """PNG of each series' last ``HISTORY_DAYS`` closes and its forecast fan: the median and every central
    interval the ``q…`` columns allow, shaded from wide (light) to narrow (dark).

    history: series → OHLCV frame; forecasts: ``predict``'s table (series, date, predicted_close, last_close,
    last_date, ``q…``).
    """
    plt = _pyplot()
    levels = sorted(lv for lv in map(level_of, forecasts.columns) if lv is not None)
    intervals = central_intervals(levels)
    fig, axes = plt.subplots(len(history), 1, figsize=(8, 3.6 * len(history)), squeeze=False)
    for ax, (series, frame) in zip(axes[:, 0], history.items()):
        past = frame["Close"].iloc[-HISTORY_DAYS:]
        g = forecasts[forecasts["series"] == series]
        # The fan starts at the last close, so it joins the history line.
        dates = pd.DatetimeIndex([past.index[-1], *pd.to_datetime(g["date"])])
        last = float(past.iloc[-1])
        ax.plot(past.index, past.to_numpy(), color="black", lw=1.2, label="close")
        for k, (pct, lo, hi) in enumerate(intervals):
            ax.fill_between(dates, np.r_[last, g[column(lo)]], np.r_[last, g[column(hi)]], color="tab:blue",
                            alpha=0.15 + 0.5 * k / max(len(intervals), 1), lw=0, label=f"{pct}% interval")
        ax.plot(dates, np.r_[last, g["predicted_close"]], color="tab:blue", lw=1.4, marker="o", ms=3,
                label="median")
        ax.set_title(f"{series}: last {len(past)} closes and the next {len(g)} ({g['model'].iloc[0]})", fontsize=10)
        ax.legend(loc="best", fontsize=7)
        ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    _save(fig, path)
