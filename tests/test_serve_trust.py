"""A server no request can stall or crash (issue 25): bounded levels, numbers, dates and names answered with a 422
in one line, a broken ledger costing the record and not the forecast, and SIGTERM ending the process mid-request."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="stockllm serve needs the serve extra: pip install 'stockllm[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from conftest import make_ohlcv  # noqa: E402
from stockllm.config import DataConfig  # noqa: E402
from stockllm.ledger import read_ledger  # noqa: E402
from stockllm.serve import Service, create_app, load_models  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"


def rows(n: int = 60, **last) -> list[dict]:
    """Bars of a synthetic series as request rows, the last one changed by ``last``."""
    frame = make_ohlcv(n, seed=1)
    out = [{"date": f"{d:%Y-%m-%d}", "open": r.Open, "high": r.High, "low": r.Low, "close": r.Close,
            "volume": r.Volume} for d, r in frame.iterrows()]
    out[-1].update(last)
    return out


def client(**kwargs) -> TestClient:
    service = Service(load_models([], ["naive"], DataConfig()), lambda t, p: make_ohlcv(80, seed=2),
                      calendar="business", **kwargs)
    return TestClient(create_app(service), raise_server_exceptions=False)


def post(c: TestClient, text: str):
    return c.post("/forecast", content=text, headers={"content-type": "application/json"})


def one_line(response) -> str:
    line = response.json()["detail"]
    assert isinstance(line, str) and "\n" not in line and "please report" not in line
    return line


def test_a_request_with_100000_levels_gets_422_within_a_second_and_health_stays_200():
    c = client()
    body = json.dumps({"rows": {"A": rows()}, "levels": [round(0.00001 * (i + 1), 5) for i in range(99_999)]})
    started = time.monotonic()
    response = post(c, body)
    assert time.monotonic() - started < 1.0
    assert response.status_code == 422 and "over the 99 a forecast may have" in one_line(response)
    assert c.get("/health").status_code == 200


@pytest.mark.parametrize("text, words", [
    (json.dumps({"rows": {"A": rows()}, "levels": [0.4999999, 0.5, 0.5000001]}), "more than 6 significant digits"),
    (json.dumps({"rows": {"A": rows(volume=10**400)}}), "a 401-digit number is outside float range"),
    ('{"rows": {"A": %s}, "levels": [%s]}' % (json.dumps(rows()), "1" + "0" * 400), "not a number within float range"),
    (json.dumps({"rows": {"A": rows(date="2262-04-11")}}), "after 2200-12-31"),
    (json.dumps({"rows": {"A": rows(date="2024-05-02\r")}}), "control character"),
    (json.dumps({"rows": {"A\n": rows()}}), "series name"),
    (json.dumps({"tickers": ["AAPL\x00"]}), "is not a symbol"),
    (json.dumps({"rows": {"A": rows(open=5e-324, low=5e-324, close=5e-324)}}), "too small to forecast"),
])
def test_out_of_range_numbers_dates_and_names_get_422_in_one_line(text, words):
    response = post(client(), text)
    assert response.status_code == 422, response.text
    assert words in one_line(response)


def test_levels_that_print_alike_are_refused_on_the_command_line_too(capsys, tmp_path):
    from conftest import cli_error_line, write_csv

    data = write_csv(make_ohlcv(60), tmp_path / "A.csv")
    line = cli_error_line(capsys, ["predict", "--model", "naive", "--data", data, "--quantiles", "0.4999999,0.5,0.9",
                                   "--output", tmp_path / "p.csv"])
    assert "more than 6 significant digits" in line and "q0.5" in line


@pytest.mark.parametrize("breakage", ["folder", "fifo", "foreign", "lock folder"])
def test_a_ledger_broken_under_a_running_server_costs_the_record_not_the_forecast(tmp_path, capfd, breakage):
    ledger = tmp_path / "ledger.csv"
    c = client(ledger=ledger)
    assert post(c, json.dumps({"rows": {"A": rows()}})).status_code == 200
    if breakage == "lock folder":
        Path(f"{ledger}.lock").unlink()
        Path(f"{ledger}.lock").mkdir()
    else:
        ledger.unlink()
        {"folder": ledger.mkdir, "fifo": lambda: os.mkfifo(ledger),
         "foreign": lambda: ledger.write_text("Date,Open,High,Low,Close,Volume\n")}[breakage]()
    response = post(c, json.dumps({"rows": {"A": rows()}}))
    assert response.status_code == 200 and len(response.json()["forecasts"]) == 3
    warning = response.json()["warning"]
    assert warning.startswith("not recorded in the ledger") and "\n" not in warning
    if breakage == "lock folder":
        assert "lock file" in warning
    assert warning in capfd.readouterr().err


def test_a_ledger_that_works_gives_no_warning(tmp_path):
    ledger = tmp_path / "ledger.csv"
    response = post(client(ledger=ledger), json.dumps({"rows": {"A": rows()}}))
    assert response.status_code == 200 and "warning" not in response.json()
    assert len(read_ledger(ledger)[0]) == 3


def test_yfinance_caches_under_stockllms_cache_folder(tmp_path, monkeypatch):
    import yfinance
    import yfinance.cache

    from stockllm.data import fetch_yahoo

    monkeypatch.setenv("STOCKLLM_CACHE", str(tmp_path / "cache"))

    class Ticker:
        def __init__(self, symbol):
            pass

        def history(self, **kwargs):
            return make_ohlcv(5)

    monkeypatch.setattr(yfinance, "Ticker", Ticker)
    fetch_yahoo("AAA", period="1y", start=None, end=None, interval="1d")
    assert yfinance.cache._TzDBManager._cache_dir == str(tmp_path / "cache" / "yfinance")


SLOW_SERVER = textwrap.dedent("""
    import sys, time
    from stockllm.cli import _raise_on_sigterm
    from stockllm.config import DataConfig
    from stockllm.serve import Service, create_app, load_models, run_server

    def never(ticker, period):  # a source that does not answer: the request computes until the process ends
        time.sleep(600)

    _raise_on_sigterm()
    service = Service(load_models([], ["naive"], DataConfig()), never, calendar="business")
    run_server(create_app(service), "127.0.0.1", int(sys.argv[1]), quiet=True)
""")


@pytest.mark.integration
def test_sigterm_stops_the_server_within_seconds_even_mid_request(tmp_path):
    import httpx

    script = tmp_path / "slow_server.py"
    script.write_text(SLOW_SERVER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(script), str(port)], env={**os.environ, "PYTHONPATH": str(SRC)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        import threading

        answers = []
        worker = threading.Thread(target=lambda: answers.append(
            httpx.post(f"{url}/forecast", json={"tickers": ["AAA"]}, timeout=60)))
        worker.start()
        time.sleep(1.5)  # the request is inside the source now
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=30)
        assert time.monotonic() - started < 10
        assert status == 128 + signal.SIGTERM
        worker.join(timeout=10)
        assert answers and answers[0].status_code == 503 and "shutting down" in answers[0].json()["detail"]
        assert "request still running abandoned" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
