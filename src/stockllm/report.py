"""``report.html``: one self-contained page per evaluation, openable offline.

It holds the leaderboard (when given) with each model's protocol on its own line below it, interactive plotly
charts (the plotly.js library is inlined, so no network is needed) of the actual closes against the forecasts
and their 80% bands (the ``q0.1`` and ``q0.9`` columns of forecasts.csv, when present), one chart per series with
a button per horizon, showing naive, the best model and the user's picks at first (the rest one legend click
away), then the calibration charts (a reliability diagram of all models and a PIT histogram per model) and the
full metrics table. The CLI calls :func:`write_report`; the page is written atomically.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from . import __version__
from .data import write_text_atomic
from .quantiles import column

BAND = (0.1, 0.9)  # the 80% central interval drawn around each forecast

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; } h3 { font-size: 1rem; }
p.note { color: #555; font-size: 0.9rem; }
table.data { border-collapse: collapse; font-size: 0.8rem; font-variant-numeric: tabular-nums; }
table.data th, table.data td { border: 1px solid #ddd; padding: 0.2rem 0.45rem; text-align: right; }
table.data th { background: #f4f4f4; position: sticky; top: 0; }
table.data td:first-child, table.data th:first-child { text-align: left; }
div.scroll { overflow-x: auto; max-height: 32rem; }
"""


def _numbers(values) -> list:
    """A JSON-ready list: floats rounded to 6 decimals (ample for prices), NaN as null (a gap in the chart)."""
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 6) for v in values]


def _rgba(color: str, alpha: float) -> str:
    """'#1f77b4' → 'rgba(31,119,180,alpha)' for a translucent band in the model's colour."""
    c = color.lstrip("#")
    return f"rgba({int(c[0:2], 16)},{int(c[2:4], 16)},{int(c[4:6], 16)},{alpha})"


def default_models(forecasts: pd.DataFrame, leaderboard: pd.DataFrame | None = None, show: Sequence[str] = ()) -> list:
    """The models a forecast chart shows at first: naive, the best model (the leaderboard's first row other than
    naive; without a leaderboard, the lowest mean wql, else MAE, of the forecasts) and the user's picks."""
    models = list(dict.fromkeys(forecasts["model"]))
    best = None
    if leaderboard is not None and len(leaderboard):
        best = next((m for m in leaderboard["model"] if m != "naive"), None)
    elif len(models) > 1:
        from .metrics import quantile_columns

        qcols = [c for c, _ in quantile_columns(forecasts)]
        err = (forecasts[qcols[len(qcols) // 2]] if qcols else forecasts["predicted"]) - forecasts["actual"]
        ranked = err.abs().groupby(forecasts["model"]).mean().drop("naive", errors="ignore").sort_values()
        best = ranked.index[0] if len(ranked) else None
    wanted = ["naive", best, *show]
    return [m for m in dict.fromkeys(wanted) if m in models]


def series_figure(forecasts: pd.DataFrame, series: str, shown: Sequence[str] | None = None):
    """A plotly Figure of one series: actual closes, each model's forecast and 80% band, one view per horizon.

    forecasts: rows of forecasts.csv for this series (target_date, horizon, model, actual, predicted and
    optionally q0.1 / q0.9). Buttons switch the horizon. ``shown``: the models drawn at first (None: all); the
    others are listed in the legend, where a click shows or hides a model with its band.
    """
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    lo, hi = column(BAND[0]), column(BAND[1])
    has_band = lo in forecasts.columns and hi in forecasts.columns
    horizons = sorted(int(h) for h in forecasts["horizon"].unique())
    models = list(dict.fromkeys(forecasts["model"]))
    colors = {m: qualitative.Plotly[i % len(qualitative.Plotly)] for i, m in enumerate(models)}
    shown = set(models if shown is None else shown)
    fig = go.Figure()
    owner: list[tuple[int, bool]] = []  # (horizon, shown at first) of every trace, for the buttons
    for h in horizons:
        fh = forecasts[forecasts["horizon"] == h]
        actual = fh.drop_duplicates("target_date").sort_values("target_date")
        fig.add_trace(go.Scatter(x=list(actual["target_date"]), y=_numbers(actual["actual"]), name="actual",
                                 legendgroup="actual", line={"color": "black", "width": 1.6},
                                 visible=h == horizons[0]))
        owner.append((h, True))
        for model in models:
            g = fh[fh["model"] == model].sort_values("target_date")
            x, color = list(g["target_date"]), colors[model]
            visible = (True if model in shown else "legendonly") if h == horizons[0] else False
            if has_band and g[[lo, hi]].notna().any().all():
                fig.add_trace(go.Scatter(x=x, y=_numbers(g[hi]), legendgroup=model, showlegend=False,
                                         line={"width": 0}, hoverinfo="skip", visible=visible))
                fig.add_trace(go.Scatter(x=x, y=_numbers(g[lo]), name=f"{model} 80% band", legendgroup=model,
                                         fill="tonexty", fillcolor=_rgba(color, 0.15), line={"width": 0},
                                         showlegend=False, hoverinfo="skip", visible=visible))
                owner += [(h, model in shown)] * 2
            fig.add_trace(go.Scatter(x=x, y=_numbers(g["predicted"]), name=model, legendgroup=model,
                                     line={"color": color, "width": 1.1, "dash": "dot" if model == "naive" else None},
                                     visible=visible))
            owner.append((h, model in shown))
    buttons = [{"label": f"{h} day{'s' if h > 1 else ''} ahead", "method": "update",
                "args": [{"visible": [(on or "legendonly") if o == h else False for o, on in owner]},
                         {"title.text": f"{series}: {h}-day-ahead close"}]} for h in horizons]
    fig.update_layout(
        title={"text": f"{series}: {horizons[0]}-day-ahead close"}, template="plotly_white", height=480,
        hovermode="x unified", margin={"l": 50, "r": 20, "t": 70, "b": 40},
        xaxis={"rangeslider": {"visible": True}, "type": "date"}, yaxis={"title": {"text": "close"}},
        updatemenus=[{"type": "buttons", "direction": "right", "buttons": buttons, "x": 1, "xanchor": "right",
                      "y": 1.12, "yanchor": "top"}] if len(horizons) > 1 else [],
    )
    return fig


def reliability_figure(forecasts: pd.DataFrame):
    """A plotly Figure: for every model, the share of actuals at or below each forecast quantile against its level
    (all series and horizons pooled), beside the diagonal a calibrated model follows. None without quantiles."""
    import plotly.graph_objects as go

    from .metrics import reliability

    table = reliability(forecasts)
    if table.empty:
        return None
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], name="calibrated", line={"color": "black", "dash": "dot",
                                                                               "width": 1}))
    for model, g in table.groupby("model", sort=False):
        fig.add_trace(go.Scatter(x=_numbers(g["level"]), y=_numbers(g["observed"]), name=str(model),
                                 mode="lines+markers"))
    fig.update_layout(title={"text": "Reliability: share of actuals at or below each quantile"},
                      template="plotly_white", height=460, margin={"l": 50, "r": 20, "t": 60, "b": 40},
                      xaxis={"title": {"text": "quantile level"}, "range": [0, 1]},
                      yaxis={"title": {"text": "observed share"}, "range": [0, 1]})
    return fig


def pit_figure(forecasts: pd.DataFrame):
    """A plotly Figure: the PIT histogram of one model at a time (a menu picks it): for each bin between
    consecutive levels, the share of actuals in it ÷ the share a calibrated forecast puts there (1 = calibrated;
    a U shape: bands too narrow; a hump: too wide; a slope: biased). None without quantiles."""
    import plotly.graph_objects as go

    from .metrics import pit_histogram

    hist = pit_histogram(forecasts)
    if hist.empty:
        return None
    models = list(dict.fromkeys(hist["model"]))
    fig = go.Figure()
    for i, model in enumerate(models):
        g = hist[hist["model"] == model]
        fig.add_trace(go.Bar(x=_numbers((g["bin_lo"] + g["bin_hi"]) / 2), width=_numbers(g["bin_hi"] - g["bin_lo"]),
                             y=_numbers(g["share"] / g["expected"]), name=str(model), visible=i == 0,
                             marker={"line": {"color": "white", "width": 1}},
                             hovertext=[f"{lo:g}–{hi:g}: {sh:.3f} of {n} (calibrated {ex:.3f})" for lo, hi, sh, ex, n
                                        in g[["bin_lo", "bin_hi", "share", "expected", "n"]].to_numpy()]))
    fig.add_hline(y=1, line={"color": "black", "dash": "dot", "width": 1})
    buttons = [{"label": str(m), "method": "update", "args": [{"visible": [j == i for j in range(len(models))]},
                                                             {"title.text": f"PIT histogram: {m}"}]}
               for i, m in enumerate(models)]
    fig.update_layout(title={"text": f"PIT histogram: {models[0]}"}, template="plotly_white", height=420,
                      showlegend=False, margin={"l": 50, "r": 20, "t": 70, "b": 40},
                      xaxis={"title": {"text": "probability integral transform (bins between the levels)"},
                             "range": [0, 1]},
                      yaxis={"title": {"text": "share ÷ calibrated share"}},
                      updatemenus=[{"type": "dropdown", "buttons": buttons, "x": 1, "xanchor": "right", "y": 1.15,
                                    "yanchor": "top"}])
    return fig


def _protocols(frame: pd.DataFrame) -> str:
    """Each model's protocol as one line of a list (from a ``protocol`` column; '' without one)."""
    if "protocol" not in frame.columns:
        return ""
    items = "".join(f"<li><b>{html.escape(str(m))}</b>: {html.escape(str(p))}</li>"
                    for m, p in frame.drop_duplicates("model")[["model", "protocol"]].to_numpy())
    return f'<ul class="note">{items}</ul>'


def _table(frame: pd.DataFrame) -> str:
    """A DataFrame as an escaped HTML table: 4 significant digits, empty cells for NaN (never 0)."""
    return frame.to_html(index=False, classes="data", border=0, na_rep="", escape=True,
                         float_format=lambda v: f"{v:.4g}")


def render_report(metrics: pd.DataFrame, forecasts: pd.DataFrame, leaderboard: pd.DataFrame | None = None,
                  title: str = "stockllm evaluation", notes: Sequence[str] = (), show: Sequence[str] = (),
                  sections: Sequence[str] = ()) -> str:
    """The report as one HTML document (str), with plotly.js inlined once and every chart's data embedded.

    metrics: metrics.csv's table; forecasts: forecasts.csv's rows (one per series, model, origin, horizon);
    leaderboard: leaderboard.csv's table, or None to leave that section out; notes: lines shown under the title;
    show: models the forecast charts draw at first, beside naive and the best model.
    sections: HTML fragments placed after the leaderboard (a universe's histograms).
    """
    from plotly.offline import get_plotlyjs

    lo, hi = column(BAND[0]), column(BAND[1])
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts += [f'<p class="note">{html.escape(line)}</p>' for line in notes]
    if lo not in forecasts.columns or hi not in forecasts.columns:
        parts.append(f'<p class="note">No 80% bands: forecasts.csv has no {lo} / {hi} columns.</p>')
    if leaderboard is not None:
        parts += ["<h2>Leaderboard</h2>",
                  f'<div class="scroll">{_table(leaderboard.drop(columns="protocol", errors="ignore"))}</div>',
                  '<p class="note">How each model was scored:</p>', _protocols(leaderboard)]
    parts += list(sections)
    shown = default_models(forecasts, leaderboard, show)
    parts.append("<h2>Forecasts on the test part</h2>")
    parts.append('<p class="note">Actual closes against the forecasts (the median) and their 80% bands: '
                 f"{html.escape(', '.join(shown))} at first; click a model in the legend to show or hide it. "
                 "Buttons pick the horizon; drag to zoom, double-click to reset. Naive's forecast is the actual "
                 "close shifted by the horizon.</p>")
    from .plots import drawn_series

    drawn, note = drawn_series(forecasts)
    if note:
        parts.append(f'<p class="note">{html.escape(note)}.</p>')
    for series in drawn:
        fig = series_figure(forecasts[forecasts["series"] == series], str(series), shown)
        parts.append(f"<h3>{html.escape(str(series))}</h3>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))
    calibration = [f for f in (reliability_figure(forecasts), pit_figure(forecasts)) if f is not None]
    if calibration:
        parts += ["<h2>Calibration</h2>",
                  '<p class="note">All series and horizons pooled. Reliability: a calibrated model follows the '
                  "diagonal. PIT histogram (a menu picks the model): the share of actuals between consecutive "
                  "quantiles ÷ the share a calibrated forecast puts there; flat at 1 is calibrated, a U shape means "
                  "bands too narrow, a hump too wide, a slope a biased median. kupiec_p and christoffersen_p in the "
                  "tables test the 80% band's coverage and the independence of its misses.</p>"]
        parts += [f.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
                  for f in calibration]
    parts += ["<h2>Metrics</h2>",
              '<p class="note">One row per series, model and horizon; ratios are against naive on the same '
              "origins (below 1 is better). Empty cells: the model has no such figure. Protocols: see the "
              "leaderboard.</p>" if leaderboard is not None and "protocol" in metrics.columns else
              '<p class="note">One row per series, model and horizon; ratios are against naive on the same '
              "origins (below 1 is better). Empty cells: the model has no such figure.</p>",
              f'<div class="scroll">{_table(metrics.drop(columns="protocol", errors="ignore"))}</div>',
              "" if leaderboard is not None else _protocols(metrics),
              f'<p class="note">Written by stockllm {html.escape(__version__)}.</p>']
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n"
            f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body>\n{body}\n</body>\n</html>\n')


def write_report(path: str | Path, metrics: pd.DataFrame, forecasts: pd.DataFrame,
                 leaderboard: pd.DataFrame | None = None, title: str = "stockllm evaluation",
                 notes: Sequence[str] = (), show: Sequence[str] = (),
                 sections: Sequence[str] = ()) -> Path:
    """Write :func:`render_report`'s page to ``path`` atomically (temporary file, then rename) and return it."""
    path = Path(path)
    write_text_atomic(render_report(metrics, forecasts, leaderboard, title, notes, show, sections), path)
    return path
