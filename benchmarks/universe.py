"""How `stockllm evaluate` scales with the number of series (issue 24, "a universe in a minute").

Writes N synthetic series of D days (seeded Student-t random walks, business days) either as N CSV files in a folder
or as one long CSV with a ticker column, runs ``stockllm evaluate --models MODELS`` on them in a fresh process, and
prints one row per N: wall seconds, peak resident memory of that process, and, as the anchor, the same backtest
through statsforecast (``Naive`` with ``cross_validation(h=3, step_size=1, n_windows=<test origins>,
refit=False)``, one process) in the same run, with the ratio of the two times. ``uptime``'s load average is printed
beside every row: on a shared machine the seconds are upper bounds, the memory is not affected.

    python benchmarks/universe.py --series 100 500 --days 5000 --models naive,drift,fhs,garch --anchor --anchor_max 100
    python benchmarks/universe.py --series 1000 5000 --days 1000 --models naive,fhs --long --anchor
    python benchmarks/universe.py --forecast --series 1000 5000 --days 250 --anchor
    python benchmarks/universe.py --processes 2 --series 500 --days 5000
    python benchmarks/universe.py --profile 100 --days 5000

``--forecast`` times ``stockllm forecast --model naive`` (the next H sessions of every ticker of one long file) instead
of the backtest, with statsforecast's ``Naive().forecast`` (80% interval) as the anchor. ``--processes N`` runs the
evaluate rows under ``torchrun --nproc_per_node N`` (peak memory is then the largest process's).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
END = "2024-12-31"

# Runs a command in this process and prints its peak RSS (kB; the largest of it and its child processes, e.g.
# torchrun's workers) and CPU seconds (user + system, its own and its children's) last on stderr.
_PEAK = ("import resource, runpy, sys\nsys.argv = sys.argv[1:]\ntry:\n    runpy.run_module(sys.argv[0], "
         "run_name='__main__', alter_sys=True)\nfinally:\n    u = resource.getrusage(resource.RUSAGE_SELF)\n"
         "    c = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
         "    print('PEAK_KB', max(u.ru_maxrss, c.ru_maxrss), u.ru_utime + u.ru_stime + c.ru_utime + c.ru_stime, "
         "file=sys.stderr)\n")


def series_frame(i: int, days: int) -> pd.DataFrame:
    """Series i: a seeded t(4) random walk of ``days`` business days ending on END, as an OHLCV frame."""
    index = pd.bdate_range(end=END, periods=days, name="Date")
    rng = np.random.default_rng(i)
    vol = rng.uniform(0.01, 0.03)
    close = 50 * np.exp(np.cumsum(rng.standard_t(4, days) * vol / np.sqrt(2)))
    spread = np.abs(rng.normal(0, vol / 2, (2, days)))
    open_ = close * np.exp(rng.normal(0, vol / 3, days))
    return pd.DataFrame({"Open": open_, "High": np.maximum(open_, close) * np.exp(spread[0]),
                         "Low": np.minimum(open_, close) * np.exp(-spread[1]), "Close": close,
                         "Volume": rng.integers(10_000, 1_000_000, days)}, index=index)


def _csv(frame: pd.DataFrame, handle, header: bool) -> None:
    """Write a frame (prices rounded to 4 decimals, dates as YYYY-MM-DD) with Arrow's CSV writer: setup, not timed."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    frame = frame.round({c: 4 for c in ("Open", "High", "Low", "Close")}).assign(
        Date=frame["Date"].dt.strftime("%Y-%m-%d"))
    if header:
        handle.write((",".join(frame.columns) + "\n").encode())
    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), handle,
                    pacsv.WriteOptions(include_header=False, quoting_style="none"))


def write_universe(folder: Path, n: int, days: int, long: bool = False) -> Path:
    """N series as S0000.csv, S0001.csv, ... in ``folder``, or as folder/long.csv with a ticker column; returns
    the path to pass to --data."""
    if not long:
        for i in range(n):
            with open(folder / f"S{i:04d}.csv", "wb") as handle:
                _csv(series_frame(i, days).reset_index(), handle, header=True)
        return folder
    path = folder / "long.csv"
    with open(path, "wb") as handle:
        for i in range(n):
            frame = series_frame(i, days).reset_index()
            frame.insert(0, "ticker", f"S{i:04d}")
            _csv(frame, handle, header=i == 0)
    return path


def timed(argv: list[str], env: dict) -> tuple[float, float, float, int, str]:
    """(wall seconds, CPU seconds, peak RSS in MB, exit status, stderr tail) of ``python -m argv`` in a fresh
    process. On a loaded machine the CPU seconds are the steadier measure; the memory does not depend on load."""
    start = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", _PEAK, *argv], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak = [line.split() for line in child.stderr.splitlines() if line.startswith("PEAK_KB")]
    if not peak:
        return wall, float("nan"), float("nan"), child.returncode, child.stderr[-1500:]
    return wall, float(peak[-1][2]), int(peak[-1][1]) / 1024, child.returncode, child.stderr[-1500:]


def anchor(data: Path, out: Path, horizon: int = 3, test_size: float = 0.2, forecast: bool = False) -> None:
    """statsforecast's Naive backtest of every series over the same test origins, or (``forecast``) its next
    ``horizon`` values with an 80% interval (run in its own process)."""
    from statsforecast import StatsForecast
    from statsforecast.models import Naive

    paths = sorted(data.glob("*.csv")) if data.is_dir() else [data]
    parts = []
    for p in paths:
        df = pd.read_csv(p, parse_dates=["Date"])
        if "ticker" not in df.columns:
            df["ticker"] = p.stem
        parts.append(df[["ticker", "Date", "Close"]].rename(columns={"ticker": "unique_id", "Date": "ds",
                                                                      "Close": "y"}))
    df = pd.concat(parts, ignore_index=True)
    if forecast:
        StatsForecast(models=[Naive()], freq="B", n_jobs=1).forecast(df=df, h=horizon, level=[80]).to_csv(out)
        return
    days = df.groupby("unique_id").size().max()
    windows = days - int(round(days * (1 - test_size))) - horizon + 1
    sf = StatsForecast(models=[Naive()], freq="B", n_jobs=1)
    cv = sf.cross_validation(df=df, h=horizon, step_size=1, n_windows=windows, refit=False)
    cv.to_csv(out, index=False)


def load() -> str:
    """The 1-minute load average (uptime)."""
    return f"{os.getloadavg()[0]:.1f}"


def bench(n: int, args, tmp: Path, env: dict) -> None:
    """One table row: write the data, run stockllm (and the anchor), print."""
    folder = tmp / f"data{n}"
    folder.mkdir()
    data = write_universe(folder, n, args.days, args.long)
    before = load()
    if args.forecast:
        argv = ["stockllm", "forecast", "--model", "naive", "--data", str(data), "--quiet", "--output",
                str(tmp / f"predictions{n}.csv")]
    else:
        argv = ["stockllm", "evaluate", "--data", str(data), "--models", args.models, "--quiet", "--format",
                args.format, "--output_dir", str(tmp / f"out{n}")]
    if args.processes > 1:
        argv = ["torch.distributed.run", "--nproc_per_node", str(args.processes), "-m", "stockllm.cli", *argv[1:]]
    wall, cpu, peak, rc, err = timed(argv, env)
    if rc:
        print(err, file=sys.stderr)
    job = "forecast --model naive" if args.forecast else args.models
    job += f" ({args.processes} processes)" if args.processes > 1 else ""
    row = (f"| {n} | {args.days} | {'long CSV' if args.long else 'folder'} | {job} | {wall:.1f} | {cpu:.1f} "
           f"| {peak:,.0f}")
    if args.anchor and n <= args.anchor_max:
        a_wall, a_cpu, a_peak, a_rc, a_err = timed(
            [Path(__file__).stem, "--anchor-run", str(data), str(tmp / "sf.csv"), *(["forecast"] if args.forecast
                                                                                  else [])],
            {**env, "PYTHONPATH": f"{Path(__file__).parent}:{env['PYTHONPATH']}"})
        if a_rc:
            print(a_err, file=sys.stderr)
        row += f" | {a_wall:.1f} | {a_cpu:.1f} | {a_peak:,.0f} | {a_wall / wall:.1f}× / {a_cpu / cpu:.1f}×"
    elif args.anchor:
        row += " | – | – | – | –"
    print(row + f" | {before} → {load()} |" + ("" if rc == 0 else f" (exit {rc})"), flush=True)
    for p in folder.iterdir():
        p.unlink()


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
    parser.add_argument("--series", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--days", type=int, default=5000)
    parser.add_argument("--models", default="naive,drift,fhs,garch")
    parser.add_argument("--long", action="store_true", help="one long CSV with a ticker column instead of a folder")
    parser.add_argument("--format", default="csv", choices=("csv", "parquet"))
    parser.add_argument("--anchor", action="store_true", help="also time statsforecast's Naive backtest")
    parser.add_argument("--anchor_max", type=int, default=10**9, metavar="N",
                        help="run the anchor only up to N series (it is the slow part of the benchmark)")
    parser.add_argument("--forecast", action="store_true",
                        help="time `stockllm forecast --model naive` on one long file (implies --long)")
    parser.add_argument("--processes", type=int, default=1, metavar="N",
                        help="run stockllm under torchrun with N processes (peak memory: the largest process)")
    parser.add_argument("--profile", type=int, metavar="N", help="profile one in-process run over N series")
    parser.add_argument("--anchor-run", nargs="+", metavar="DATA OUT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.anchor_run:
        anchor(Path(args.anchor_run[0]), Path(args.anchor_run[1]), forecast=args.anchor_run[2:] == ["forecast"])
        return
    args.long = args.long or args.forecast
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.profile:
            folder = tmp / "data"
            folder.mkdir()
            profile(write_universe(folder, args.profile, args.days, args.long), args.models)
            return
        head = "| series | days | input | models | stockllm wall s | stockllm CPU s | stockllm peak MB"
        head += (" | statsforecast wall s | statsforecast CPU s | statsforecast peak MB | ratio (wall / CPU)"
                 if args.anchor else "")
        print(head + " | load before → after |")
        print("|---" * (head.count("|") + 1) + "|")
        for n in args.series:
            bench(n, args, tmp, env)


if __name__ == "__main__":
    main()
