"""`stockllm serve`: every endpoint and every refusal through FastAPI's TestClient, one real uvicorn process on a
loopback port, and the watchlist page in headless Chromium where it is installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="stockllm serve needs the serve extra: pip install 'stockllm[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from conftest import make_ohlcv, write_csv  # noqa: E402
from stockllm import data as data_module  # noqa: E402
from stockllm.cli import main  # noqa: E402
from stockllm.config import DataConfig  # noqa: E402
from stockllm.ledger import read_ledger  # noqa: E402
from stockllm.serve import Service, create_app, load_models  # noqa: E402
from stockllm.sources import download  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"


def bars(ticker: str, n: int = 120) -> pd.DataFrame:
    frame = make_ohlcv(n, seed=sum(map(ord, ticker)))
    frame.attrs["source"] = ticker
    return frame


def as_rows(frame: pd.DataFrame) -> list[dict]:
    return [{"date": f"{d:%Y-%m-%d}", "open": r.Open, "high": r.High, "low": r.Low, "close": r.Close,
             "volume": r.Volume} for d, r in frame.iterrows()]


class Fetch:
    """A source replaced: counts calls, serves synthetic bars."""

    def __init__(self):
        self.calls = []

    def __call__(self, ticker, period):
        self.calls.append((ticker, period))
        return bars(ticker)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("serve")
    data = write_csv(make_ohlcv(250, seed=9), folder / "train.csv")
    assert main(["train", "--data", str(data), "--epochs", "1", "--quiet", "--quantiles", "0.1,0.5,0.9",
                 "--save_dir", str(folder / "mlp")]) == 0
    return folder / "mlp"


@pytest.fixture
def served(checkpoint):
    return load_models([str(checkpoint)], ["naive", "drift"], DataConfig())


def client_for(served, fetch=None, max_body=2_000_000, **kwargs) -> tuple[TestClient, Service]:
    service = Service(served, fetch or Fetch(), calendar="business", **kwargs)
    return TestClient(create_app(service, max_body_bytes=max_body)), service


def detail(response) -> str:
    line = response.json()["detail"]
    assert isinstance(line, str) and "\n" not in line
    return line


# --- endpoints --------------------------------------------------------------------------------------------

def test_health_and_models(served, checkpoint):
    from stockllm.ledger import checkpoint_id

    client, _ = client_for(served)
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["models"] == ["mlp", "naive", "drift"]
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert models["mlp"]["kind"] == "mlp" and models["mlp"]["levels"] == [0.1, 0.5, 0.9]
    assert models["mlp"]["horizon"] == 3 and models["mlp"]["checkpoint"] == checkpoint_id(checkpoint)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", models["mlp"]["trained_until"])
    assert models["naive"]["trained_until"] is None and models["naive"]["any_levels"]
    assert str(checkpoint) not in json.dumps(models)  # paths stay on the server


def test_forecast_rows_are_predict_dfs(served):
    client, _ = client_for(served)
    frames = {"AAA": bars("AAA"), "BBB": bars("BBB", 90)}
    response = client.post("/forecast", json={"model": "mlp", "rows": {k: as_rows(v) for k, v in frames.items()}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "mlp" and body["levels"] == [0.1, 0.5, 0.9]
    got = pd.DataFrame(body["forecasts"])
    want = served["mlp"].model.predict_df(frames, calendar="business")
    assert list(got.columns) == list(want.columns)
    assert list(got["ticker"]) == list(want["ticker"]) and list(got["horizon"]) == list(want["horizon"])
    assert list(got["date"]) == list(want["date"].dt.strftime("%Y-%m-%d"))
    for c in ("predicted_close", "q0.1", "q0.5", "q0.9", "last_close"):
        np.testing.assert_allclose(got[c], want[c], rtol=1e-12)


def test_forecast_tickers_batched_and_cached_for_the_day(served):
    fetch, day = Fetch(), [date(2024, 1, 2)]
    client, _ = client_for(served, fetch, today=lambda: day[0])
    tickers = [f"T{i}" for i in range(20)]
    first = client.post("/forecast", json={"tickers": tickers, "model": "naive"})
    assert first.status_code == 200, first.text
    assert len(first.json()["forecasts"]) == 20 * 3 and len(fetch.calls) == 20
    again = client.post("/forecast", json={"tickers": "T0,T1", "model": "drift"})
    assert again.status_code == 200 and len(fetch.calls) == 20  # the same day: from the cache
    day[0] = date(2024, 1, 3)
    client.post("/forecast", json={"tickers": ["T0"]})
    assert len(fetch.calls) == 21  # a new day: fetched again


def test_naive_takes_any_levels(served):
    client, _ = client_for(served)
    response = client.post("/forecast", json={"tickers": ["AAA"], "model": "naive", "levels": [0.05, 0.5, 0.95]})
    assert response.status_code == 200, response.text
    row = response.json()["forecasts"][0]
    assert {"q0.05", "q0.5", "q0.95"} <= set(row) and row["q0.05"] < row["q0.5"] < row["q0.95"]


# --- refusals ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, status, words", [
    ({"tickers": ["AAA"], "model": "gpt"}, 404, "unknown model 'gpt'"),
    ({"tickers": ["AAA"], "model": "/etc/passwd"}, 404, "unknown model"),
    ({"rows": {"AAA": as_rows(bars("AAA", 10))}}, 422, "too few rows"),
    ({"tickers": ["AAA"], "model": "naive", "levels": [0.5, 1.2]}, 422, "strictly between 0 and 1"),
    ({"tickers": ["AAA"], "model": "naive", "levels": "0.1,0.9"}, 422, "list of numbers"),
    ({"tickers": ["AAA"], "model": "mlp", "levels": [0.2, 0.5]}, 422, "levels 0.2: model mlp gives only"),
    ({"tickers": [f"T{i}" for i in range(11)]}, 422, "too many tickers: 11"),
    ({"rows": {f"S{i}": [] for i in range(11)}}, 422, "too many series"),
    ({"tickers": ["../../etc/passwd"]}, 422, "is not a symbol"),
    ({"tickers": []}, 422, "non-empty list"),
    ({"tickers": ["AAA"], "rows": {}}, 422, "not both"),
    ({}, 422, "not neither"),
    ({"ticker": "AAA"}, 422, "unknown field 'ticker'"),
    ([1, 2], 422, "JSON object"),
    ({"rows": {"AAA": [{"date": "2024-01-02", "open": 1}]}}, 422, "missing columns"),
    ({"rows": {"AAA": [{**r, "close": "NaN"} if i == 3 else r for i, r in enumerate(as_rows(bars("AAA")))]}},
     422, "Close"),
    ({"rows": {"AAA": [{"date": {"nested": [1]}, "open": [1], "high": 1, "low": 1, "close": 1, "volume": 1}]}},
     422, ""),
    ({"tickers": ["AAA"], "calendar": "MARS"}, 422, "unknown calendar"),  # the field, not a flag
    ({"tickers": ["AAA"], "calendar": 5}, 422, "calendar must be"),
])
def test_bad_requests_get_a_4xx_with_one_line(served, body, status, words):
    client, _ = client_for(served, max_tickers=10)
    response = client.post("/forecast", json=body)
    assert response.status_code == status, response.text
    assert words in detail(response)


def test_body_not_json_and_too_deep(served):
    client, _ = client_for(served)
    response = client.post("/forecast", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "not JSON" in detail(response)
    deep = b"[" * 100_000 + b"]" * 100_000
    response = client.post("/forecast", content=deep)
    assert response.status_code in (400, 422) and detail(response)


def test_body_too_large(served):
    service = Service(served, Fetch())
    client = TestClient(create_app(service, max_body_bytes=1000))
    big = {"rows": {"AAA": as_rows(bars("AAA"))}}
    response = client.post("/forecast", json=big)
    assert response.status_code == 413 and "over this server's 1000 bytes" in detail(response)

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b" " * 500

    response = client.post("/forecast", content=chunks())
    assert response.status_code == 413 and "1000 bytes" in detail(response)


def test_too_many_rows_in_one_series(served):
    client, _ = client_for(served, max_rows=50)
    response = client.post("/forecast", json={"rows": {"AAA": as_rows(bars("AAA", 60))}})
    assert response.status_code == 413 and "60 bars" in detail(response)


def test_unreachable_source_is_503_with_the_cli_line(served, monkeypatch, capsys):
    def offline(ticker, **kwargs):
        raise OSError("Could not resolve host: query2.finance.yahoo.com")

    monkeypatch.setattr(data_module, "fetch_yahoo", offline)
    client, _ = client_for(served, lambda ticker, period: download(ticker, "yahoo", period=period))
    response = client.post("/forecast", json={"tickers": ["AAPL"], "model": "naive"})
    assert response.status_code == 503
    line = detail(response)
    assert "could not reach Yahoo Finance" in line and "--data" in line
    assert main(["forecast", "--ticker", "AAPL", "--model", "naive", "--output", "never.csv"]) == 1
    cli_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert cli_line == f"stockllm: error: {line}"


def test_unknown_ticker_from_the_source_is_422(served, monkeypatch):
    monkeypatch.setattr(data_module, "fetch_yahoo", lambda ticker, **kwargs: pd.DataFrame())
    client, _ = client_for(served, lambda ticker, period: download(ticker, "yahoo", period=period))
    response = client.post("/forecast", json={"tickers": ["NOSUCH"]})
    assert response.status_code == 422 and "no rows from Yahoo Finance" in detail(response)


def test_unknown_path_and_method(served):
    client, _ = client_for(served)
    assert client.get("/nope").status_code == 404 and detail(client.get("/nope"))
    assert client.get("/forecast").status_code == 405


def test_requests_write_only_the_ledger(served, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ledger = tmp_path / "ledger.csv"
    client, _ = client_for(served, ledger=ledger)
    assert client.post("/forecast", json={"tickers": ["AAA", "BBB"], "model": "naive"}).status_code == 200
    assert client.post("/forecast", json={"rows": {"CCC": as_rows(bars("CCC"))}, "model": "mlp"}).status_code == 200
    assert client.get("/").status_code == 200  # page views are not forecasts anyone made
    rows, notes = read_ledger(ledger)
    assert notes == [] and list(dict.fromkeys(rows["ticker"])) == ["AAA", "BBB", "CCC"]
    assert set(rows["source"]) == {"yahoo", "request"} and rows["checkpoint"].iloc[-1] != ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.csv", "ledger.csv.lock"]


# --- the watchlist page -----------------------------------------------------------------------------------

def test_watchlist_page(served):
    client, _ = client_for(served, watch=["AAA", "BBB"])
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    assert '<script src="/plotly.js"></script>' in text and "cdn" not in text.lower()
    assert 'id="chart-0"' in text and 'id="chart-1"' in text and "AAA" in text and "BBB" in text
    js = client.get("/plotly.js")
    assert js.status_code == 200 and "plotly" in js.text[:2000].lower() and len(js.text) > 1_000_000
    other = client.get("/", params={"tickers": "CCC", "model": "drift"})
    assert 'id="chart-0"' in other.text and "CCC" in other.text and "chart-1" not in other.text
    assert client.get("/", params={"tickers": "../x"}).status_code == 422
    assert client.get("/", params={"model": "nope"}).status_code == 404


def test_watchlist_page_shows_a_failing_ticker_as_a_line(served):
    def fetch(ticker, period):
        return bars(ticker, 10 if ticker == "SHORT" else 120)

    client, _ = client_for(served, fetch, watch=["AAA", "SHORT"])
    text = client.get("/").text
    assert 'id="chart-0"' in text and "too few rows" in text


def test_watchlist_page_has_the_form_and_a_table_per_ticker(served):
    client, _ = client_for(served, watch=["AAA", "BBB"])
    text = client.get("/", params={"tickers": "AAA,BBB", "model": "mlp", "levels": "0.1,0.5,0.9"}).text
    assert '<form id="watch" method="get" action="/">' in text and 'name="tickers"' in text
    assert 'name="levels"' in text and '<option value="mlp" selected>' in text
    assert 'id="table-0"' in text and 'id="table-1"' in text and "80% band" in text and "model mlp" in text
    assert re.search(r"<td>[+-]\d+\.\d\d%</td>", text)  # change in %
    assert 'id="scores"' not in text  # no ledger, no live-score panel
    assert client.get("/", params={"levels": "0.1,x"}).status_code == 422
    assert client.get("/", params={"levels": "0.05,0.5,0.95", "model": "mlp"}).status_code == 422


def test_scores_from_the_ledger(served, tmp_path):
    ledger = tmp_path / "ledger.csv"
    client, _ = client_for(served, ledger=ledger)
    assert client.get("/scores").json() == {"scored": 0, "pending": 0, "since": None, "scores": []}
    for n in (100, 105, 110):  # forecasts made on earlier days, now scorable against the source's closes
        rows = {t: as_rows(bars(t).iloc[:n]) for t in ("AAA", "BBB")}
        for model in ("mlp", "naive"):
            assert client.post("/forecast", json={"rows": rows, "model": model}).status_code == 200
    client.post("/forecast", json={"tickers": ["AAA"], "model": "mlp"})  # ahead of the data: pending
    answer = client.get("/scores").json()
    assert answer["scored"] == 36 and answer["pending"] == 3
    mlp = {s["horizon"]: s for s in answer["scores"] if s["model"].startswith("mlp@")}
    assert sorted(mlp) == [1, 2, 3] and mlp[1]["forecasts"] == 6 and 0 <= mlp[1]["coverage_80"] <= 1
    assert mlp[1]["mae_vs_naive"] > 0 and mlp[1]["wql_vs_naive"] > 0
    assert mlp[1]["since"] == f"{bars('AAA').index[99]:%Y-%m-%d}" == answer["since"]
    naive = [s for s in answer["scores"] if s["model"].startswith("naive")]  # one per level set
    assert naive and all(s["mae_vs_naive"] == 1.0 and s["wql_vs_naive"] == 1.0 for s in naive)
    assert 'id="scores"' in client.get("/").text
    client_without, _ = client_for(served)
    assert client_without.get("/scores").status_code == 404 and "--ledger" in detail(client_without.get("/scores"))


def test_close_only_rows_for_models_that_read_closes(served):
    client, _ = client_for(served)
    rows = [{"date": r["date"], "close": r["close"]} for r in as_rows(bars("AAA"))]
    response = client.post("/forecast", json={"rows": {"AAA": rows}, "model": "naive"})
    assert response.status_code == 200, response.text
    assert response.json()["forecasts"][0]["last_close"] == rows[-1]["close"]
    refused = client.post("/forecast", json={"rows": {"AAA": rows}, "model": "mlp"})
    assert refused.status_code == 422 and "closes only" in detail(refused)


def test_docs_and_openapi(served):
    client, _ = client_for(served)
    assert client.get("/docs").status_code == 200 and "swagger" in client.get("/docs").text.lower()
    spec = client.get("/openapi.json").json()
    assert {"/forecast", "/scores", "/models", "/health"} <= set(spec["paths"])
    assert "tickers" in json.dumps(spec["paths"]["/forecast"]["post"]["requestBody"])


def test_readme_page_examples_name_models_its_serve_commands_serve():
    """Every /?...model=X example in README's serve section names a model one of its serve commands serves."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"^stockllm serve .*$", readme, flags=re.M)
    served_names = [set(re.findall(r"--model (\w+)", c)) | ({"mlp"} if "checkpoints/mlp" in c else set())
                    for c in commands]
    examples = re.findall(r"/\?[^`\s]*model=(\w+)", readme)
    assert commands and examples
    for model in examples:
        assert any(model in names for names in served_names), (model, commands)


# --- the CLI and a real server ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp_path, *extra) -> tuple[subprocess.Popen, str]:
    data = write_csv(bars("AAA", 200), tmp_path / "AAA.csv")
    write_csv(bars("BBB", 200), tmp_path / "BBB.csv")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "stockllm", "serve", "--model", "naive", "--data", str(data),
                             str(tmp_path / "BBB.csv"), "--calendar", "business", "--port", str(port), "--quiet",
                             *extra], env={**os.environ, "PYTHONPATH": str(SRC)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"serve exited: {proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    pytest.fail("serve did not answer within 120 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.integration
def test_a_real_uvicorn_process_answers_on_loopback(tmp_path):
    import httpx

    proc, url = start_server(tmp_path)
    try:
        assert httpx.get(f"{url}/models").json()["models"][0]["name"] == "naive"
        response = httpx.post(f"{url}/forecast", json={"tickers": ["AAA", "BBB"]}, timeout=30)
        assert response.status_code == 200 and len(response.json()["forecasts"]) == 6
        bad = httpx.post(f"{url}/forecast", json={"model": "mlp", "tickers": ["AAA"]}, timeout=30)
        assert bad.status_code == 404
        assert httpx.get(f"{url}/health").status_code == 200  # still serving
    finally:
        stop(proc)


def test_serve_bad_flags_are_one_line(capsys, tmp_path, monkeypatch):
    rc = main(["serve"])
    assert rc == 1 and "nothing to serve" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc = main(["serve", "--model", "naive", "--port", str(port)])
        err = capsys.readouterr().err
        assert rc == 1 and f"cannot listen on 127.0.0.1:{port}" in err and err.count("\n") == 1
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    rc = main(["serve", "--model", "naive"])
    assert rc == 1 and "pip install 'stockllm[serve]'" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="no headless browser: install Chromium (apt-get install chromium) to test the page's "
                           "charts")
@pytest.mark.integration
def test_watchlist_page_renders_a_chart_per_ticker_in_chromium(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    proc, url = start_server(tmp_path, "--watch", "AAA,BBB")
    try:
        result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                 "--disable-background-networking", "--no-first-run",
                                 f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
                                 "--dump-dom", f"{url}/"], capture_output=True, text=True, timeout=180)
    finally:
        stop(proc)
    dom = result.stdout
    assert "stockllm watchlist" in dom, result.stderr[-2000:]
    for i in (0, 1):  # plotly drew each chart: its div holds the rendered SVG
        chart = dom[dom.index(f'id="chart-{i}"'):]
        chart = chart[: chart.index('id="chart-1"')] if i == 0 else chart
        assert "main-svg" in chart and "scatterlayer" in chart


def test_device_is_for_llm_checkpoints_only(checkpoint):
    from stockllm.errors import StockLLMError

    with pytest.raises(StockLLMError, match="device applies to LLM checkpoints only"):
        load_models([str(checkpoint)], ["naive"], DataConfig(), {"device": "cpu"})
    two = load_models([str(checkpoint), f"other={checkpoint}"], [], DataConfig())
    assert list(two) == [checkpoint.name, "other"]  # two of one kind: named by folder, or as asked


class DevTools:
    """Headless Chromium driven over the DevTools protocol (websockets' sync client): navigate, run JavaScript,
    wait for a condition. Enough to type into the watchlist form and submit it as a user would."""

    def __init__(self, browser: str, folder: Path):
        import httpx
        from websockets.sync.client import connect

        log = folder / "chromium.log"
        self.proc = subprocess.Popen([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                      "--disable-background-networking", "--no-first-run",
                                      f"--user-data-dir={folder / 'profile'}", "--remote-debugging-port=0",
                                      "about:blank"], stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        deadline, port = time.monotonic() + 60, None
        while port is None and time.monotonic() < deadline:
            found = re.search(r"DevTools listening on ws://[\d.]+:(\d+)/", log.read_text())
            port = int(found.group(1)) if found else time.sleep(0.2)
        assert port, log.read_text()[-2000:]
        page = next(t for t in httpx.get(f"http://127.0.0.1:{port}/json").json() if t["type"] == "page")
        self.ws, self.n = connect(page["webSocketDebuggerUrl"], max_size=None), 0

    def call(self, method: str, **params) -> dict:
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.n:
                return message

    def js(self, expression: str):
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        result = answer.get("result", {})
        return None if "exceptionDetails" in result or "error" in answer else result["result"].get("value")

    def wait(self, condition: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.js(condition):  # a navigation in flight answers with an error: not yet
            assert time.monotonic() < deadline, f"timed out waiting for {condition}: {self.js('document.title')}"
            time.sleep(0.3)

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="no headless browser: install Chromium (apt-get install chromium) to test the page's form")
@pytest.mark.integration
def test_watchlist_form_submits_and_the_tables_charts_and_scores_appear_in_chromium(tmp_path):
    pytest.importorskip("websockets", reason="the form test drives Chromium over the DevTools protocol")
    from stockllm.ledger import append_forecasts
    from stockllm.models import NaiveForecaster

    ledger = tmp_path / "served.csv"
    for n in (150, 160):  # forecasts made earlier, whose dates the served files already hold
        past = bars("AAA", 200).iloc[:n]
        append_forecasts(ledger, NaiveForecaster().predict_df({"AAA": past}, calendar="business"), source="data")
    proc, url = start_server(tmp_path, "--watch", "AAA", "--ledger", str(ledger), "--model", "drift")
    browser = DevTools(shutil.which("chromium") or shutil.which("chromium-browser"), tmp_path)
    try:
        browser.call("Page.navigate", url=f"{url}/")
        browser.wait("document.querySelectorAll('#chart-0 .main-svg').length > 0 && !!document.querySelector('#table-0')")
        browser.wait("!!document.querySelector('#scores-grid')")  # the live-score panel, filled from GET /scores
        assert "naive" in browser.js("document.querySelector('#scores-grid').innerText")
        browser.js("document.querySelector('input[name=tickers]').value = 'AAA,BBB';"
                   "document.querySelector('select[name=model]').value = 'drift';"
                   "document.querySelector('#watch').requestSubmit(); true")
        browser.wait("location.search.includes('model=drift') && document.readyState === 'complete' && "
                     "document.querySelectorAll('#chart-1 .main-svg').length > 0")
        text = browser.js("document.body.innerText")
        assert "model drift" in text and "80% band" in text and "BBB" in text
        assert browser.js("document.querySelectorAll('table.forecast').length") == 2
    finally:
        browser.close()
        stop(proc)
