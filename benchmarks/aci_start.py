"""Where --calibrate aci's offsets start, chosen on validation dates only: at zero at the frame's first origin, or
at the split-conformal offsets of the validation residuals before the anchor (pooled, or per volatility regime).

    python benchmarks/aci_start.py               # validation dates (2008-06-27 .. 2010-07-26): the choice
    python benchmarks/aci_start.py --test        # the test part, for the record after the choice

Data: the development set of ``benchmarks/skill.py``. FHS is fitted on the dates before the cutoff; naive has no
fit, so its anchor is the cutoff. Prints, per variant, the geometric mean of wql_vs_naive over 5 series × 3 horizons,
the range of coverage_80, and the range of coverage_80 over each series' first 250 test origins.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import stockllm.calibration as cal  # noqa: E402
from skill import dev_set  # noqa: E402
from stockllm.backtest import backtest, before, metrics, resolve_cutoff, test_origins  # noqa: E402
from stockllm.models.baselines import NaiveForecaster  # noqa: E402
from stockllm.models.fhs import FHSForecaster  # noqa: E402

POOLED = cal.initial_offsets


class PerRegime(cal.Calibrated):
    """δ₀ per volatility regime (the regime's own validation outcomes; pooled where it has fewer than 30)."""

    def predict_quantiles(self, frame, origins):
        first = self.window_size - 1
        warm = self._warmup(frame, first)
        if warm is None:
            return super().predict_quantiles(frame, origins)
        close = frame["Close"].to_numpy(dtype=np.float64)
        every = np.arange(warm[0], warm[1])
        regime = cal.volatility_regime(close, every, self.config.regimes)

        def per_regime(q, y, levels, n_regimes=1):
            start = POOLED(q, y, levels, n_regimes)
            for r in range(n_regimes):
                if (regime == r).sum() >= 30:
                    start[r] = POOLED(q[regime == r], y[regime == r], levels)[0]
            return start

        cal.initial_offsets = per_regime
        try:
            return super().predict_quantiles(frame, origins)
        finally:
            cal.initial_offsets = POOLED


def geomean(v) -> float:
    v = np.asarray(v, dtype=np.float64)
    return float(np.exp(np.log(v[np.isfinite(v) & (v > 0)]).mean()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--us4", type=Path, default=ROOT.parent / "shared" / "data" / "us4")
    ap.add_argument("--test", action="store_true", help="score the test part instead of validation dates")
    args = ap.parse_args()
    frames = dev_set(args.us4)
    cutoff = resolve_cutoff({k: v for k, v in frames.items() if k != "nasdaq"}, 0.2)
    if not args.test:
        frames = {k: before(v, cutoff) for k, v in frames.items()}
        cutoff = resolve_cutoff({k: v for k, v in frames.items() if k != "nasdaq"}, 0.2)
    tables = []
    for name, frame in frames.items():
        fhs = FHSForecaster().fit([before(frame, cutoff)], progress=False)
        origins = test_origins(frame.index, cutoff, 30, 3)
        naive_rows = backtest(NaiveForecaster(), "naive", name, frame, origins)
        for inner_name, inner in (("naive", NaiveForecaster()), ("fhs", fhs)):
            zero = cal.Calibrated(inner)
            zero.until = None
            variants = {"zero start": zero, "δ₀ pooled (default)": cal.Calibrated(inner, until=cutoff),
                        "δ₀ per regime": PerRegime(inner, until=cutoff)}
            pieces = [naive_rows] + [backtest(inner, inner_name, name, frame, origins)] * (inner_name != "naive")
            pieces += [backtest(m, f"{inner_name}+aci, {v}", name, frame, origins) for v, m in variants.items()]
            f = pd.concat(pieces, ignore_index=True)
            table = metrics(f)
            early = f[f["origin"].isin(sorted(f["origin"].unique())[:250])]
            first = metrics(early).set_index(["model", "horizon"])["coverage_80"]
            table["coverage_80_first250"] = [first[(m, h)] for m, h in zip(table["model"], table["horizon"])]
            tables.append(table if inner_name == "naive" else table[table["model"] != "naive"])
    t = pd.concat(tables, ignore_index=True)
    print(f"{'test part' if args.test else 'validation dates'} from {cutoff:%Y-%m-%d}; 5 series × 3 horizons\n")
    print("| model | geomean wql_vs_naive | coverage_80 | coverage_80, first 250 origins |\n|---|---|---|---|")
    for model, g in t.groupby("model", sort=False):
        print(f"| {model} | {geomean(g['wql_vs_naive']):.4f} | {g['coverage_80'].min():.3f}–"
              f"{g['coverage_80'].max():.3f} | {g['coverage_80_first250'].min():.3f}–"
              f"{g['coverage_80_first250'].max():.3f} |")


if __name__ == "__main__":
    main()
