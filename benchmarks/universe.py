"""How `stockllm evaluate` scales with the number of series (issue 18, "a universe of tickers").

Writes N synthetic series of D days (seeded geometric random walks) as CSV files in a temporary folder, runs
``stockllm evaluate --data FOLDER --models MODELS`` once per N in a fresh process, and prints one row per N: wall
seconds, peak resident memory of that process, and the size of plot.png and report.html. With ``--profile N``
it runs the library call in this process under cProfile instead and prints where the time goes.

    python benchmarks/universe.py --series 10 30 100 --days 5000 --models naive,drift,fhs,garch
    python benchmarks/universe.py --profile 30 --days 5000
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def write_universe(folder: Path, n: int, days: int) -> None:
    """N series of ``days`` business days each, ending on one date, as S0000.csv, S0001.csv, ..."""
    index = pd.bdate_range(end="2024-12-31", periods=days, name="Date")
    for i in range(n):
        rng = np.random.default_rng(i)
        vol = rng.uniform(0.01, 0.03)
        close = 50 * np.exp(np.cumsum(rng.standard_t(4, days) * vol / np.sqrt(2)))
        spread = np.abs(rng.normal(0, vol / 2, (2, days)))
        open_ = close * np.exp(rng.normal(0, vol / 3, days))
        frame = pd.DataFrame({"Open": open_, "High": np.maximum(open_, close) * np.exp(spread[0]),
                              "Low": np.minimum(open_, close) * np.exp(-spread[1]), "Close": close,
                              "Volume": rng.integers(10_000, 1_000_000, days)}, index=index)
        frame.to_csv(folder / f"S{i:04d}.csv", date_format="%Y-%m-%d", float_format="%.4f")


def run_cli(folder: Path, out: Path, models: str) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit status) of one evaluate run in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    child = subprocess.run([sys.executable, "-m", "stockllm", "evaluate", "--data", str(folder), "--models", models,
                            "--quiet", "--output_dir", str(out)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if child.returncode:
        print(child.stderr[-2000:], file=sys.stderr)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far: runs grow with N
    return wall, peak_kb / 1024, child.returncode


def profile(folder: Path, models: str, top: int = 25) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from stockllm.cli import main

    with tempfile.TemporaryDirectory() as out:
        profiler = cProfile.Profile()
        profiler.enable()
        main(["evaluate", "--data", str(folder), "--models", models, "--quiet", "--output_dir", out])
        profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[10, 30, 100])
    parser.add_argument("--days", type=int, default=5000)
    parser.add_argument("--models", default="naive,drift,fhs,garch")
    parser.add_argument("--profile", type=int, metavar="N", help="profile one in-process run over N series")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.profile:
            folder = Path(tmp) / "data"
            folder.mkdir()
            write_universe(folder, args.profile, args.days)
            profile(folder, args.models)
            return
        print(f"| series | days | models | wall s | peak RSS MB | plot.png KB | report.html KB |")
        print("|---|---|---|---|---|---|---|")
        for n in args.series:
            folder, out = Path(tmp) / f"data{n}", Path(tmp) / f"out{n}"
            folder.mkdir()
            write_universe(folder, n, args.days)
            wall, peak, rc = run_cli(folder, out, args.models)
            size = {name: (out / name).stat().st_size // 1024 if (out / name).exists() else -1
                    for name in ("plot.png", "report.html")}
            print(f"| {n} | {args.days} | {args.models} | {wall:.1f} | {peak:,.0f} | {size['plot.png']:,} | "
                  f"{size['report.html']:,} |" + ("" if rc == 0 else f" (exit {rc})"), flush=True)


if __name__ == "__main__":
    main()
