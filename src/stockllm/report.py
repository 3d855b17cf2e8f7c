"""``report.html``: one self-contained page per evaluation, openable offline.

It holds interactive plotly charts (the plotly.js library is inlined, so no network is needed) of the actual
closes against each model's forecast and its 80% band (the ``q0.1`` and ``q0.9`` columns of forecasts.csv, when
present), one chart per series with a button per horizon, then the leaderboard (when given) and the full
metrics table. The CLI calls :func:`write_report`; the page is written atomically.
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


def series_figure(forecasts: pd.DataFrame, series: str):
    """A plotly Figure of one series: actual closes, each model's forecast and 80% band, one view per horizon.

    forecasts: rows of forecasts.csv for this series (target_date, horizon, model, actual, predicted and
    optionally q0.1 / q0.9). Buttons switch the horizon; legend clicks hide a model with its band.
    """
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    lo, hi = column(BAND[0]), column(BAND[1])
    has_band = lo in forecasts.columns and hi in forecasts.columns
    horizons = sorted(int(h) for h in forecasts["horizon"].unique())
    models = list(dict.fromkeys(forecasts["model"]))
    colors = {m: qualitative.Plotly[i % len(qualitative.Plotly)] for i, m in enumerate(models)}
    fig = go.Figure()
    owner: list[int] = []  # the horizon of every trace, for the buttons
    for h in horizons:
        fh = forecasts[forecasts["horizon"] == h]
        visible = h == horizons[0]
        actual = fh.drop_duplicates("target_date").sort_values("target_date")
        fig.add_trace(go.Scatter(x=list(actual["target_date"]), y=_numbers(actual["actual"]), name="actual",
                                 legendgroup="actual", line={"color": "black", "width": 1.6}, visible=visible))
        owner.append(h)
        for model in models:
            g = fh[fh["model"] == model].sort_values("target_date")
            x, color = list(g["target_date"]), colors[model]
            if has_band and g[[lo, hi]].notna().any().all():
                fig.add_trace(go.Scatter(x=x, y=_numbers(g[hi]), legendgroup=model, showlegend=False,
                                         line={"width": 0}, hoverinfo="skip", visible=visible))
                fig.add_trace(go.Scatter(x=x, y=_numbers(g[lo]), name=f"{model} 80% band", legendgroup=model,
                                         fill="tonexty", fillcolor=_rgba(color, 0.15), line={"width": 0},
                                         showlegend=False, hoverinfo="skip", visible=visible))
                owner += [h, h]
            fig.add_trace(go.Scatter(x=x, y=_numbers(g["predicted"]), name=model, legendgroup=model,
                                     line={"color": color, "width": 1.1, "dash": "dot" if model == "naive" else None},
                                     visible=visible))
            owner.append(h)
    buttons = [{"label": f"{h} day{'s' if h > 1 else ''} ahead", "method": "update",
                "args": [{"visible": [o == h for o in owner]},
                         {"title.text": f"{series}: {h}-day-ahead close"}]} for h in horizons]
    fig.update_layout(
        title={"text": f"{series}: {horizons[0]}-day-ahead close"}, template="plotly_white", height=480,
        hovermode="x unified", margin={"l": 50, "r": 20, "t": 70, "b": 40},
        xaxis={"rangeslider": {"visible": True}, "type": "date"}, yaxis={"title": {"text": "close"}},
        updatemenus=[{"type": "buttons", "direction": "right", "buttons": buttons, "x": 1, "xanchor": "right",
                      "y": 1.12, "yanchor": "top"}] if len(horizons) > 1 else [],
    )
    return fig


def _table(frame: pd.DataFrame) -> str:
    """A DataFrame as an escaped HTML table: 4 significant digits, empty cells for NaN (never 0)."""
    return frame.to_html(index=False, classes="data", border=0, na_rep="", escape=True,
                         float_format=lambda v: f"{v:.4g}")


def render_report(metrics: pd.DataFrame, forecasts: pd.DataFrame, leaderboard: pd.DataFrame | None = None,
                  title: str = "stockllm evaluation", notes: Sequence[str] = (), sections: Sequence[str] = ()) -> str:
    """The report as one HTML document (str), with plotly.js inlined once and every chart's data embedded.

    metrics: metrics.csv's table; forecasts: forecasts.csv's rows (one per series, model, origin, horizon);
    leaderboard: leaderboard.csv's table, or None to leave that section out; notes: lines shown under the title;
    sections: HTML fragments placed after the leaderboard (a universe's histograms).
    """
    from plotly.offline import get_plotlyjs

    lo, hi = column(BAND[0]), column(BAND[1])
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts += [f'<p class="note">{html.escape(line)}</p>' for line in notes]
    if lo not in forecasts.columns or hi not in forecasts.columns:
        parts.append(f'<p class="note">No 80% bands: forecasts.csv has no {lo} / {hi} columns.</p>')
    if leaderboard is not None:
        parts += ["<h2>Leaderboard</h2>", f'<div class="scroll">{_table(leaderboard)}</div>']
    parts += list(sections)
    parts.append("<h2>Forecasts on the test part</h2>")
    parts.append('<p class="note">Actual closes against each model\'s forecast (the median) and its 80% band. '
                 "Buttons pick the horizon; click a legend entry to hide a model; drag to zoom, double-click to "
                 "reset. Naive's forecast is the actual close shifted by the horizon.</p>")
    from .plots import drawn_series

    drawn, note = drawn_series(forecasts)
    if note:
        parts.append(f'<p class="note">{html.escape(note)}.</p>')
    for series in drawn:
        fig = series_figure(forecasts[forecasts["series"] == series], str(series))
        parts.append(f"<h3>{html.escape(str(series))}</h3>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))
    parts += ["<h2>Metrics</h2>",
              '<p class="note">One row per series, model and horizon; ratios are against naive on the same '
              "origins (below 1 is better). Empty cells: the model has no such figure.</p>",
              f'<div class="scroll">{_table(metrics)}</div>',
              f'<p class="note">Written by stockllm {html.escape(__version__)}.</p>']
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n"
            f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body>\n{body}\n</body>\n</html>\n')


def write_report(path: str | Path, metrics: pd.DataFrame, forecasts: pd.DataFrame,
                 leaderboard: pd.DataFrame | None = None, title: str = "stockllm evaluation",
                 notes: Sequence[str] = (), sections: Sequence[str] = ()) -> Path:
    """Write :func:`render_report`'s page to ``path`` atomically (temporary file, then rename) and return it."""
    path = Path(path)
    write_text_atomic(render_report(metrics, forecasts, leaderboard, title, notes, sections), path)
    return path
