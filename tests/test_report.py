"""report.html: well-formed, self-contained (no network), and it embeds the forecasts and tables."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from conftest import make_ohlcv, write_csv

from stockllm.cli import main
from stockllm.errors import StockLLMError
from stockllm.report import render_report, write_report

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Checker(HTMLParser):
    """Records problems in tag nesting, external resources, scripts and table cells."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.problems, self.external, self.scripts, self.cells = [], [], [], [], []
        self._in_script = self._in_cell = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe") and attrs.get("src") or tag == "link" and attrs.get("href"):
            self.external.append((tag, attrs))
        if tag not in VOID:
            self.stack.append(tag)
        self._in_script = tag == "script"
        self._in_cell = tag in ("td", "th")
        if self._in_script:
            self.scripts.append("")
        if self._in_cell:
            self.cells.append("")

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()
        self._in_script = self._in_cell = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        if self._in_cell:
            self.cells[-1] += data


def parse(text: str) -> Checker:
    checker = Checker()
    checker.feed(text)
    checker.close()
    assert text.startswith("<!DOCTYPE html>")
    assert checker.problems == [] and checker.stack == [], (checker.problems, checker.stack)
    assert checker.external == []  # openable offline: nothing is fetched
    return checker


def fake_forecasts(with_band: bool) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    dates = pd.bdate_range("2021-01-04", periods=30)
    for series in ("AAA", "B&B <x>"):
        for model in ("naive", "mlp"):
            for i, origin in enumerate(dates[:25]):
                for h in (1, 2):
                    last = 100 + i
                    pred = last * (1 + 0.001 * h * (model == "mlp"))
                    row = {"series": series, "model": model, "origin": f"{origin:%Y-%m-%d}", "horizon": h,
                           "target_date": f"{dates[i + h]:%Y-%m-%d}", "last_close": last,
                           "actual": 100 + i + h + rng.normal(), "predicted": pred}
                    if with_band:
                        row.update({"q0.1": pred * 0.98, "q0.5": pred, "q0.9": pred * 1.02})
                    rows.append(row)
    return pd.DataFrame(rows)


def metrics_table(forecasts):
    from stockllm.backtest import metrics

    return metrics(forecasts)


def figure_data(checker: Checker) -> list[list[dict]]:
    """The trace lists passed to Plotly.newPlot, parsed as JSON."""
    out = []
    for script in checker.scripts:
        for m in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{"', script, flags=re.S):
            out.append(json.loads(m.group(1)))
    return out


def test_report_is_well_formed_and_embeds_data_and_bands(tmp_path):
    forecasts = fake_forecasts(with_band=True)
    table = metrics_table(forecasts)
    board = pd.DataFrame({"model": ["mlp", "naive"], "wql_vs_naive": [0.99, 1.0], "rank": [1, 2]})
    path = write_report(tmp_path / "report.html", table, forecasts, leaderboard=board, notes=["Data: a & b"])
    text = path.read_text(encoding="utf-8")
    checker = parse(text)
    assert "Data: a &amp; b" in text and "Leaderboard" in text and "No 80% bands" not in text
    assert "B&amp;B &lt;x&gt;" in text  # series names are escaped, not injected
    assert len(checker.scripts[0]) > 1_000_000 and "plotly" in checker.scripts[0][:2000].lower()  # plotly.js inlined
    figures = figure_data(checker)
    assert len(figures) == 2  # one chart per series
    traces = figures[0]
    named = {(t.get("name"), t.get("visible")) for t in traces}
    assert ("actual", True) in named and ("mlp", True) in named and ("mlp", False) in named  # h=1 shown, h=2 hidden
    # The AAA / mlp / h=1 forecast, its band and the actual closes are all in the page, point by point.
    g = forecasts[(forecasts.series == "AAA") & (forecasts.model == "mlp") & (forecasts.horizon == 1)]
    mlp = next(t for t in traces if t.get("name") == "mlp" and t.get("visible"))
    assert mlp["x"] == list(g["target_date"]) and np.allclose(mlp["y"], g["predicted"], atol=1e-6)
    assert any(np.allclose(t["y"], g["q0.9"], atol=1e-6) for t in traces if t.get("visible") and "y" in t)
    band = next(t for t in traces if t.get("name") == "mlp 80% band" and t.get("visible"))
    assert band["fill"] == "tonexty" and np.allclose(band["y"], g["q0.1"], atol=1e-6)
    # Both tables: every metrics row and the leaderboard's cells.
    assert "0.99" in checker.cells and "wql_vs_naive" in checker.cells
    assert checker.cells.count("mlp") >= len(table[table.model == "mlp"]) + 1


def test_report_without_quantile_columns_draws_no_band(tmp_path):
    forecasts = fake_forecasts(with_band=False)
    text = render_report(metrics_table(forecasts), forecasts)
    checker = parse(text)
    assert "No 80% bands" in text and "Leaderboard" not in text
    names = {t.get("name") for fig in figure_data(checker) for t in fig}
    assert "mlp" in names and not any(n and "band" in n for n in names)


def test_models_without_quantiles_get_no_band(tmp_path):
    forecasts = fake_forecasts(with_band=True)
    forecasts.loc[forecasts.model == "mlp", ["q0.1", "q0.5", "q0.9"]] = np.nan
    checker = parse(render_report(metrics_table(forecasts), forecasts))
    names = {t.get("name") for fig in figure_data(checker) for t in fig}
    assert "naive 80% band" in names and "mlp 80% band" not in names


def test_write_report_is_atomic(tmp_path, monkeypatch):
    forecasts = fake_forecasts(with_band=True)
    target = tmp_path / "report.html"
    target.write_text("old")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("stockllm.report.render_report", broken)
    with pytest.raises(RuntimeError):
        write_report(target, metrics_table(forecasts), forecasts)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.html"]
    monkeypatch.undo()
    with pytest.raises(StockLLMError, match="cannot create folder"):
        write_report(target / "sub" / "report.html", metrics_table(forecasts), forecasts)


def test_evaluate_writes_the_report(tmp_path, capsys):
    data = write_csv(make_ohlcv(220, seed=21), tmp_path / "s.csv")
    out = tmp_path / "ev"
    assert main(["evaluate", "--data", str(data), "--models", "naive,mlp", "--epochs", "2", "--window_size", "10",
                 "--quiet", "--output_dir", str(out)]) == 0
    assert "report.html" in capsys.readouterr().out
    text = (out / "report.html").read_text(encoding="utf-8")
    checker = parse(text)
    forecasts = pd.read_csv(out / "forecasts.csv")
    g = forecasts[(forecasts.model == "mlp") & (forecasts.horizon == 1)]
    mlp = next(t for t in figure_data(checker)[0] if t.get("name") == "mlp" and t.get("visible"))
    assert np.allclose(mlp["y"], g["predicted"], atol=1e-5)
    assert "Data: s (" in text and "Window 10 days, horizon 3." in text
