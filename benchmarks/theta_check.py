"""Our `theta` against statsforecast's own Theta on the same origins of the NASDAQ sample.

Ours: `stockllm evaluate --models naive,theta` (one fit on the dates before the cutoff, then statsforecast's
`forward` with those parameters to the history up to each origin). Theirs: `StatsForecast.cross_validation` with
`refit=False` (fitted once on the history up to its first cutoff, then `forward`), one window per origin. Both
scored as MAE ÷ naive's MAE per horizon. The issue's bar: within 0.005.

    python benchmarks/theta_check.py [--test_size 0.2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from stockllm.config import DataConfig  # noqa: E402
from stockllm.data import load_ohlcv  # noqa: E402
from stockllm.backtest import evaluate  # noqa: E402
from stockllm.models import NaiveForecaster, model_class  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "stockllm" / "samples" / "nasdaq.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test_size", type=float, default=0.2)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    from statsforecast import StatsForecast
    from statsforecast.models import Theta

    frame = load_ohlcv(SAMPLE)
    data = DataConfig()
    t0 = time.perf_counter()
    table, forecasts = evaluate({"nasdaq": frame}, {"naive": lambda: NaiveForecaster(data),
                                                    "theta": lambda: model_class("theta")(data)},
                                test_size=args.test_size, progress=False, log=lambda *_: None)
    ours_s = time.perf_counter() - t0
    ours = table[table["model"] == "theta"].set_index("horizon")["mae_vs_naive"].sort_index()
    origins = sorted(forecasts["origin"].unique())

    df = pd.DataFrame({"unique_id": "nasdaq", "ds": frame.index, "y": frame["Close"].to_numpy()})
    t0 = time.perf_counter()
    cv = StatsForecast(models=[Theta(season_length=1)], freq="B").cross_validation(
        df=df, h=data.horizon, n_windows=len(origins), step_size=1, refit=False)
    theirs_s = time.perf_counter() - t0
    cutoffs = sorted(cv["cutoff"].dt.strftime("%Y-%m-%d").unique())
    if cutoffs != origins:
        raise SystemExit(f"origin sets differ: ours {origins[0]}..{origins[-1]} ({len(origins)}), statsforecast "
                         f"{cutoffs[0]}..{cutoffs[-1]} ({len(cutoffs)})")
    cv["horizon"] = cv.groupby("cutoff").cumcount() + 1
    last = frame["Close"].reindex(cv["cutoff"]).to_numpy()
    ratio = (cv.assign(err=(cv["y"] - cv["Theta"]).abs(), naive=np.abs(cv["y"].to_numpy() - last))
             .groupby("horizon")[["err", "naive"]].mean())
    theirs = (ratio["err"] / ratio["naive"]).sort_index()
    diff = (ours - theirs).abs()
    print(f"origins: {len(origins)} ({origins[0]} .. {origins[-1]})")
    for h in ours.index:
        print(f"h={h}: stockllm theta {ours[h]:.4f}   statsforecast Theta {theirs[h]:.4f}   |diff| {diff[h]:.1e}")
    print(f"max |diff| {diff.max():.1e} ({'within' if diff.max() <= 0.005 else 'OUTSIDE'} 0.005); "
          f"time: stockllm {ours_s:.0f} s, statsforecast cross_validation {theirs_s:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"origins": len(origins), "ours": ours.to_dict(),
                                               "statsforecast": theirs.to_dict(), "max_abs_diff": diff.max(),
                                               "seconds": {"ours": ours_s, "statsforecast": theirs_s}}, indent=2))


if __name__ == "__main__":
    main()
