"""stockllm serve under load: one uvicorn process on 127.0.0.1, a bounded client, every figure from one run.

    python benchmarks/serve.py [--requests 2000] [--concurrency 16] [--time_limit 120] [--tickers 100] [--json F]

What it does:

1. Writes ``--tickers`` synthetic daily series (seeded geometric random walks, 300 rows each) and trains a small
   MLP checkpoint on one of them (``stockllm train --epochs 2``).
2. Starts ``stockllm serve --checkpoint MLP --model naive --data <the series>`` on a free loopback port (the
   series are served from memory: no data source, no network).
3. For each model (mlp, naive): ``--requests`` POST /forecast calls of one ticker each (cycling over the
   series), at most ``--concurrency`` in flight, stopping early at ``--time_limit`` seconds. Reports
   requests/s, p50 / p99 latency, the status codes (5xx must be 0).
4. Batch against single calls: one POST /forecast carrying the OHLCV rows of all ``--tickers`` series (60 bars
   each) against ``--tickers`` sequential calls of one series each; median of 3 rounds each.
5. The server's peak resident memory (VmHWM from /proc), read at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def series(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0003, 0.01, n)))
    open_ = close * np.exp(rng.normal(0, 0.003, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.005, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.005, n)))
    return pd.DataFrame({"Open": open_, "High": high, "Low": low, "Close": close,
                         "Volume": rng.integers(900_000, 1_100_000, n).astype(float)},
                        index=pd.bdate_range("2020-01-01", periods=n, name="Date"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(url: str, model: str, tickers: list[str], n: int, concurrency: int, limit: float) -> dict:
    import httpx

    latencies, codes = [], {}
    next_i = 0
    deadline = time.perf_counter() + limit

    async def worker(client):
        nonlocal next_i
        while next_i < n and time.perf_counter() < deadline:
            i = next_i
            next_i += 1
            t0 = time.perf_counter()
            r = await client.post(f"{url}/forecast", json={"model": model, "tickers": [tickers[i % len(tickers)]]})
            latencies.append(time.perf_counter() - t0)
            codes[r.status_code] = codes.get(r.status_code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"model": model, "requests": len(latencies), "concurrency": concurrency, "wall_s": round(wall, 2),
            "requests_per_s": round(len(latencies) / wall, 1), "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1), "status": {str(k): v for k, v in sorted(codes.items())},
            "5xx": sum(v for k, v in codes.items() if k >= 500), "stopped_by_time_limit": len(latencies) < n}


def batch_vs_single(url: str, model: str, frames: dict[str, pd.DataFrame], rounds: int = 3) -> dict:
    import httpx

    rows = {name: [{"date": f"{d:%Y-%m-%d}", "open": r.Open, "high": r.High, "low": r.Low, "close": r.Close,
                    "volume": r.Volume} for d, r in f.iloc[-60:].iterrows()] for name, f in frames.items()}
    batch_t, single_t = [], []
    with httpx.Client(timeout=120) as client:
        for _ in range(rounds):
            t0 = time.perf_counter()
            r = client.post(f"{url}/forecast", json={"model": model, "rows": rows})
            batch_t.append(time.perf_counter() - t0)
            assert r.status_code == 200 and len(r.json()["forecasts"]) == 3 * len(rows), r.text[:300]
            t0 = time.perf_counter()
            for name, bars in rows.items():
                r = client.post(f"{url}/forecast", json={"model": model, "rows": {name: bars}})
                assert r.status_code == 200, r.text[:300]
            single_t.append(time.perf_counter() - t0)
    b, s = statistics.median(batch_t), statistics.median(single_t)
    return {"model": model, "series": len(rows), "batch_s": round(b, 3), "singles_s": round(s, 3),
            "singles_over_batch": round(s / b, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--time_limit", type=float, default=120.0, help="seconds per load phase, at most")
    p.add_argument("--tickers", type=int, default=100)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args()
    import httpx

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames = {f"T{i:03d}": series(300, i) for i in range(args.tickers)}
        for name, f in frames.items():
            f.to_csv(tmp / f"{name}.csv", date_format="%Y-%m-%d")
        subprocess.run([sys.executable, "-m", "stockllm", "train", "--data", str(tmp / "T000.csv"), "--epochs", "2",
                        "--quiet", "--save_dir", str(tmp / "mlp")], env=env, check=True, stdout=subprocess.DEVNULL)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, "-m", "stockllm", "serve", "--checkpoint", str(tmp / "mlp"),
                                   "--model", "naive", "--calendar", "business", "--port", str(port), "--quiet",
                                   "--max_tickers", str(max(100, args.tickers)), "--data",
                                   *[str(tmp / f"{n}.csv") for n in frames]], env=env)
        try:
            t0 = time.perf_counter()
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
                if server.poll() is not None or time.perf_counter() - t0 > 180:
                    raise SystemExit("serve did not start")
            startup = time.perf_counter() - t0
            result = {"startup_s": round(startup, 1), "load": [], "batch": []}
            for model in ("mlp", "naive"):
                result["load"].append(asyncio.run(load(url, model, list(frames), args.requests, args.concurrency,
                                                       args.time_limit)))
                print(json.dumps(result["load"][-1]), flush=True)
            for model in ("mlp", "naive"):
                result["batch"].append(batch_vs_single(url, model, frames))
                print(json.dumps(result["batch"][-1]), flush=True)
            result["server_peak_rss_mb"] = round(peak_rss_mb(server.pid), 0)
            result["cpus"] = os.cpu_count()
            result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(json.dumps({k: v for k, v in result.items() if k not in ("load", "batch")}))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
