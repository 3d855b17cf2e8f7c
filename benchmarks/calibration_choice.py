"""How two defaults were chosen, on validation dates only: FHS's centre (keep the training drift, or shift the median
to 0) and --calibrate aci's step γ and volatility regimes.

    python benchmarks/calibration_choice.py

Data: the development set of ``benchmarks/skill.py`` (NASDAQ + us4, adjusted) cut before the test cutoff
(2010-07-27); the last 20% of the us4 dates before it (from 2008-06-27) are the validation part. FHS is fitted on
the dates before that. Nothing here sees the test part. Prints, per variant, the geometric mean of wql_vs_naive over
the five series and three horizons, the range of coverage_80 over series × horizons, and the range of the tercile
coverages.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from skill import dev_set  # noqa: E402
from stockllm.calibration import Calibrated  # noqa: E402
from stockllm.config import CalibrationConfig  # noqa: E402
from stockllm.backtest import backtest, before, metrics, resolve_cutoff, test_origins  # noqa: E402
from stockllm.features import origins_with_targets  # noqa: E402
from stockllm.models.baselines import NaiveForecaster  # noqa: E402
from stockllm.models.fhs import FHSForecaster, fhs_quantiles  # noqa: E402

TERCILES = ["coverage_80_lowvol", "coverage_80_midvol", "coverage_80_highvol"]


class CentredFHS(FHSForecaster):
    """FHS with each horizon's standardised median shifted to 0 (the training drift removed)."""

    def fit(self, frames, progress=True):
        frames = list(frames)
        origins = [origins_with_targets(len(f), self.window_size, self.horizon) for f in frames]
        self.z = fhs_quantiles(frames, origins, self.horizon, self.quantiles, center=True)
        return self


def geomean(v) -> float:
    v = np.asarray(v, dtype=np.float64)
    return float(np.exp(np.log(v[np.isfinite(v) & (v > 0)]).mean()))


def main() -> None:
    frames = dev_set(ROOT.parent / "shared" / "data" / "us4")
    us4 = lambda fs: {k: v for k, v in fs.items() if k != "nasdaq"} or fs  # noqa: E731
    frames = {k: before(v, resolve_cutoff(us4(frames), 0.2)) for k, v in frames.items()}
    cut = resolve_cutoff(us4(frames), 0.2)
    print(f"validation part: {cut:%Y-%m-%d} .. {max(f.index[-1] for f in frames.values()):%Y-%m-%d}")
    train = [before(v, cut) for v in frames.values()]
    fhs, centred = FHSForecaster().fit(train), CentredFHS().fit(train)
    print("median standardised return per horizon (the drift FHS keeps):", np.round(fhs.z[:, 4], 4).tolist())
    variants = {"fhs (drift kept)": fhs, "fhs centred": centred}
    for gamma in (0.005, 0.01, 0.02):
        for regimes in ((), (0.85, 1.15), (0.8, 0.95, 1.1, 1.3)):
            label = f"fhs+aci γ={gamma} regimes={list(regimes) or 'one'}"
            variants[label] = Calibrated(fhs, CalibrationConfig(gamma=gamma, regimes=regimes))
    tables = []
    for name, frame in frames.items():
        origins = test_origins(frame.index, cut, 30, 3)
        pieces = [backtest(NaiveForecaster(), "naive", name, frame, origins)]
        pieces += [backtest(model, label, name, frame, origins) for label, model in variants.items()]
        tables.append(metrics(pd.concat(pieces, ignore_index=True)))
    t = pd.concat(tables)
    rows = []
    for label, g in t.groupby("model", sort=False):
        rows.append({"variant": label, "geomean wql_vs_naive": geomean(g["wql_vs_naive"]),
                     "coverage_80": f"{g['coverage_80'].min():.3f}–{g['coverage_80'].max():.3f}",
                     "terciles": f"{g[TERCILES].min().min():.3f}–{g[TERCILES].max().max():.3f}"})
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f"))


if __name__ == "__main__":
    main()
