"""Where --calibrate aci's offsets start and how fast they move after the anchor, chosen on validation dates only:
from zero at the frame's first origin (the tracker replays the whole history), or from the split-conformal offsets of
the residuals of a share of the origins before the anchor (pooled, or per volatility regime), with a larger step for
the first outcomes after the anchor or a larger step throughout (``VARIANTS``; default: "zero, boost 5/100").

    python benchmarks/aci_start.py               # validation dates (2008-06-27 .. 2010-07-26): the choice
    python benchmarks/aci_start.py --test        # the test part, for the record after the choice
    python benchmarks/aci_start.py --csv rows.csv   # also every model, series and horizon's row

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
from stockllm.config import CalibrationConfig  # noqa: E402
from stockllm.backtest import backtest, before, metrics, resolve_cutoff, test_origins  # noqa: E402
from stockllm.models.baselines import NaiveForecaster  # noqa: E402
from stockllm.models.fhs import FHSForecaster  # noqa: E402

POOLED = cal.initial_offsets
# CalibrationConfig settings tried (labels: zero = the tracker from zero at the frame's first origin, replaying the
# whole history; δ₀ s = split-conformal start from the last share s of the pre-anchor origins, "val" = the model's
# val_size or 0.2; ×k = δ₀ shrunk by k; boost b/N = step γ·(1 + (b − 1)·e^(−k/N)) k origins after the anchor).
VARIANTS = {"zero": {"warmup": -1, "boost": 1}, "δ₀ val": {"warmup": 0, "boost": 1},
            "δ₀ 0.5": {"warmup": 0.5, "boost": 1}, "δ₀ 1": {"warmup": 1.0, "boost": 1},
            "δ₀ val ×0.5": {"warmup": 0, "shrink": 0.5, "boost": 1}}
for _g in (0.02, 0.03):
    VARIANTS.update({f"zero, γ {_g:g}": {"warmup": -1, "gamma": _g, "boost": 1},
                     f"δ₀ val, γ {_g:g}": {"warmup": 0, "gamma": _g, "boost": 1},
                     f"δ₀ 1, γ {_g:g}": {"warmup": 1.0, "gamma": _g, "boost": 1}})
for _b, _n in ((2, 100), (3, 100), (3, 250), (5, 100), (5, 50), (8, 50), (4, 150)):
    VARIANTS.update({f"zero, boost {_b}/{_n}": {"warmup": -1, "boost": _b, "boost_origins": _n},
                     f"δ₀ val, boost {_b}/{_n}": {"warmup": 0, "boost": _b, "boost_origins": _n},
                     f"δ₀ 1, boost {_b}/{_n}": {"warmup": 1.0, "boost": _b, "boost_origins": _n}})


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
    ap.add_argument("--csv", type=Path, help="also write every model, series and horizon's row here")
    ap.add_argument("--per_regime", action="store_true", help="also δ₀ per volatility regime (round 5's variant)")
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
            variants = {label: cal.Calibrated(inner, CalibrationConfig(**kw), until=cutoff)
                        for label, kw in VARIANTS.items()}
            if args.per_regime:
                variants["δ₀ per regime"] = PerRegime(inner, CalibrationConfig(warmup=0, boost=1), until=cutoff)
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
    if args.csv:
        t.to_csv(args.csv, index=False)
    print("| model | geomean wql_vs_naive | coverage_80 | coverage_80, first 250 origins | outside 0.75–0.85 by | "
          "rms(first 250 − 0.8) |\n|---|---|---|---|---|---|")
    for model, g in t.groupby("model", sort=False):
        print(f"| {model} | {geomean(g['wql_vs_naive']):.4f} | {g['coverage_80'].min():.3f}–"
              f"{g['coverage_80'].max():.3f} | {g['coverage_80_first250'].min():.3f}–"
              f"{g['coverage_80_first250'].max():.3f} | {outside(g):.3f} | {rms(g):.4f} |")
    calibrated = t[t["model"].str.contains("+aci, ", regex=False)]
    by = calibrated.groupby(calibrated["model"].str.split(", ", n=1).str[1], sort=False)
    ranked = sorted(by, key=lambda kv: (round(outside(kv[1]), 3), rms(kv[1])))
    print("\nThe rule (naive+aci and fhs+aci together): the smallest excursion outside 0.75–0.85 (overall or over the "
          "first 250 origins), then the smallest rms of first-250 coverage about 0.80: "
          + "; ".join(f"{v} ({outside(g):.3f}, {rms(g):.4f})" for v, g in ranked[:4]))


def outside(g: pd.DataFrame) -> float:
    """How far the worst coverage_80 (overall or over the first 250 origins) lies outside 0.75–0.85."""
    cov = g[["coverage_80", "coverage_80_first250"]].to_numpy()
    return float(max(0.0, (0.75 - cov).max(), (cov - 0.85).max()))


def rms(g: pd.DataFrame) -> float:
    """Root mean square of the first-250 coverage_80 about 0.80, over series and horizons."""
    return float(np.sqrt(((g["coverage_80_first250"] - 0.8) ** 2).mean()))

if __name__ == "__main__":
    main()
