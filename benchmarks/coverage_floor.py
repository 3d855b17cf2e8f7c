"""How often a *perfectly calibrated* forecaster meets issue 26's coverage target on the development set: the noise
floor of "coverage_80 within 0.75–0.85 on every series, also over the first 250 test origins".

    python benchmarks/coverage_floor.py                 # 20,000 replications, the development set's shapes
    python benchmarks/coverage_floor.py --reps 2000     # quicker

The oracle knows the true distribution of every h-day return (i.i.d. Gaussian daily returns; its 80% interval is
exactly ±1.2816·√h), so its coverage_80 differs from 0.80 by sampling alone. Each replication draws one return path
per development series, as long as that series' scored origins plus 3 days, and scores the same origins as
``benchmarks/skill.py``: 520 validation origins per series, on the test part 651 for AAPL, GOOG, IBM and MSFT and
2,120 for NASDAQ. At h > 1 the h-day returns of neighbouring origins overlap (share h − 1 days), so the misses
cluster and a coverage over 250 origins varies more than a binomial's. Prints per horizon the standard deviation of
coverage_80 over the first 250 origins and the chance that one cell lies in 0.75–0.85, then the chance that every
cell of a part lies in the band (5 series × 3 horizons, whole part and first 250 origins), for one model.

Bands are read as ``metrics`` reads them (a coverage is a share of origins; 0.75 and 0.85 count as inside).

    python benchmarks/coverage_floor.py --garch 200 --us4 ../shared/data/us4

``--garch R`` also runs the shipped models on R simulated copies of the development set (a parametric bootstrap):
each series' returns drawn from a GARCH(1,1) with Student-t errors fitted to that series before the test cutoff,
on the series' own dates, so the cutoffs and origins are the real ones. FHS is fitted on the simulated dates before
the cutoff and backtested with and without ``--calibrate aci`` (the default and a zero start with a constant step),
like ``benchmarks/aci_start.py``. The truth is stationary here, so this asks how often each method meets the band
when nothing changes at the anchor, against the oracle's chance above.
"""

from __future__ import annotations

import argparse

import numpy as np

Z90 = 1.2815515655446004  # the standard normal's 0.9 quantile
FIRST = 250
PARTS = {"validation": [520] * 5, "test": [2120, 651, 651, 651, 651]}  # nasdaq, AAPL, GOOG, IBM, MSFT
HORIZONS = (1, 2, 3)
BAND = (0.75, 0.85)


def inside_80(returns: np.ndarray, n_origins: int) -> np.ndarray:
    """[reps, H, n_origins] whether each origin's h-day return lies in the oracle's 80% interval.

    returns: [reps, n_origins + max(HORIZONS)] daily returns in units of their standard deviation; origin i's
    h-day return is the sum of days i .. i + h − 1 (the days after the origin's close)."""
    csum = np.concatenate([np.zeros((len(returns), 1)), np.cumsum(returns, axis=1)], axis=1)
    out = np.empty((len(returns), len(HORIZONS), n_origins), dtype=bool)
    for j, h in enumerate(HORIZONS):
        move = csum[:, h:h + n_origins] - csum[:, :n_origins]
        out[:, j] = np.abs(move) <= Z90 * np.sqrt(h)
    return out


def in_band(coverage: np.ndarray) -> np.ndarray:
    """Whether a coverage lies in the band, with a tolerance for the float shares of whole counts."""
    return (coverage >= BAND[0] - 1e-12) & (coverage <= BAND[1] + 1e-12)


def simulate(lengths: list[int], reps: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Coverage_80 of the oracle for one part: 'first' and 'whole', each [reps, series, H]."""
    first, whole = [], []
    for n in lengths:
        cells = []
        for start in range(0, reps, 2000):  # in chunks: 2,000 × 2,123 × 3 booleans at most
            k = min(2000, reps - start)
            cells.append(inside_80(rng.standard_normal((k, n + max(HORIZONS))), n))
        ok = np.concatenate(cells)
        first.append(ok[:, :, :FIRST].mean(axis=2))
        whole.append(ok.mean(axis=2))
    return {"first": np.stack(first, axis=1), "whole": np.stack(whole, axis=1)}


def garch_params(frame, cutoff) -> dict:
    """GARCH(1,1)-t parameters (percent log returns) of one series' closes before ``cutoff``."""
    from arch import arch_model

    close = frame.loc[frame.index < cutoff, "Close"].to_numpy(dtype=np.float64)
    r = 100 * np.diff(np.log(close))
    fit = arch_model(r, vol="GARCH", p=1, q=1, dist="t").fit(disp="off")
    return dict(fit.params)


def garch_path(p: dict, n: int, rng: np.random.Generator) -> np.ndarray:
    """n daily log returns (fractions) of the GARCH(1,1)-t with parameters ``p`` (from ``garch_params``), started
    at its unconditional variance."""
    nu = p["nu"]
    z = rng.standard_t(nu, n) * np.sqrt((nu - 2) / nu)
    var = p["omega"] / max(1 - p["alpha[1]"] - p["beta[1]"], 1e-3)
    out = np.empty(n)
    for t in range(n):
        eps = np.sqrt(var) * z[t]
        out[t] = p["mu"] + eps
        var = p["omega"] + p["alpha[1]"] * eps ** 2 + p["beta[1]"] * var
    return out / 100


def garch_bootstrap(us4, reps: int, rng: np.random.Generator) -> None:
    """Coverage of fhs and fhs+aci on ``reps`` simulated copies of the development set (module docstring)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import pandas as pd
    from skill import dev_set
    from stockllm.backtest import backtest, before, resolve_cutoff, test_origins
    from stockllm.calibration import Calibrated
    from stockllm.config import CalibrationConfig
    from stockllm.models.fhs import FHSForecaster

    frames = dev_set(us4)
    test_cut = resolve_cutoff({k: v for k, v in frames.items() if k != "nasdaq"}, 0.2)
    params = {k: garch_params(f, test_cut) for k, f in frames.items()}
    val = {k: before(f, test_cut) for k, f in frames.items()}
    parts = {"validation": (val, resolve_cutoff({k: v for k, v in val.items() if k != "nasdaq"}, 0.2)),
             "test": (frames, test_cut)}
    variants = {"fhs": None, "fhs+aci (default)": CalibrationConfig(),
                "fhs+aci, zero start, constant step": CalibrationConfig(boost=1)}
    rows = []
    for rep in range(reps):
        for part, (part_frames, cutoff) in parts.items():
            for name, real in part_frames.items():
                sim = real[["Open", "High", "Low", "Close", "Volume"]].copy()
                close = real["Close"].iloc[0] * np.exp(np.cumsum(garch_path(params[name], len(real), rng)))
                for col in ("Open", "High", "Low", "Close"):
                    sim[col] = close
                fhs = FHSForecaster().fit([before(sim, cutoff)], progress=False)
                origins = test_origins(sim.index, cutoff, 30, 3)
                for label, config in variants.items():
                    model = fhs if config is None else Calibrated(fhs, config, until=cutoff)
                    f = backtest(model, label, name, sim, origins)
                    ok = ((f["actual"] >= f["q0.1"]) & (f["actual"] <= f["q0.9"])).to_numpy()
                    ok = ok.reshape(len(origins), -1)  # [origin, horizon]
                    for h in range(ok.shape[1]):
                        rows.append({"rep": rep, "part": part, "series": name, "model": label, "horizon": h + 1,
                                     "first": ok[:FIRST, h].mean(), "whole": ok[:, h].mean()})
        print(f"replication {rep + 1}/{reps}", file=sys.stderr, flush=True)
    t = pd.DataFrame(rows)
    print(f"\nSimulated development set (GARCH(1,1)-t per series), {reps} replications: the share of replications "
          "in which every cell (5 series × 3 horizons) lies in the band\n")
    print("| model | part | rms of first-250 coverage about 0.80 | P(all first-250 cells in band) | "
          "P(all whole-part cells in band) | P(both) |\n|---|---|---|---|---|---|")
    for (model, part), g in t.groupby(["model", "part"], sort=False):
        by_rep = g.groupby("rep")
        first = by_rep["first"].apply(lambda v: in_band(v.to_numpy()).all())
        whole = by_rep["whole"].apply(lambda v: in_band(v.to_numpy()).all())
        rms = float(np.sqrt(((g["first"] - 0.8) ** 2).mean()))
        both = (first & whole).mean()
        print(f"| {model} | {part} | {rms:.4f} | {first.mean():.3f} | {whole.mean():.3f} | {both:.3f} |")
    t["ok"] = in_band(t["first"].to_numpy()) & in_band(t["whole"].to_numpy())
    for model, g in t.groupby("model", sort=False):
        ok = g.groupby("rep")["ok"].all()
        print(f"\n{model}: every cell of both parts in band (60 cells) in {ok.mean():.3f} of the replications")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20000, help="replications (default 20,000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--garch", type=int, default=0, metavar="R",
                    help="also R simulated copies of the development set through fhs and fhs+aci (see above)")
    ap.add_argument("--us4", default=None, help="the us4 folder (default ../shared/data/us4)")
    args = ap.parse_args()
    if args.reps < 100:
        ap.error("--reps must be at least 100")
    rng = np.random.default_rng(args.seed)
    print(f"Perfectly calibrated forecaster, {args.reps:,} replications; coverage_80 band {BAND[0]}–{BAND[1]}\n")
    print("| part | window | sd of coverage_80 h1/h2/h3 | rms about 0.80 | P(one cell in band) h1/h2/h3 | "
          "P(all 15 cells in band) |\n|---|---|---|---|---|---|")
    every = []
    for part, lengths in PARTS.items():
        sims = simulate(lengths, args.reps, rng)
        for window, cov in sims.items():
            sd = "/".join(f"{cov[:, :, j].std():.3f}" for j in range(len(HORIZONS)))
            rms = float(np.sqrt(((cov - 0.8) ** 2).mean()))
            one = "/".join(f"{in_band(cov[:, :, j]).mean():.3f}" for j in range(len(HORIZONS)))
            allin = in_band(cov).all(axis=(1, 2))
            every.append(allin)
            label = f"first {FIRST} origins" if window == "first" else "whole part"
            print(f"| {part} | {label} | {sd} | {rms:.4f} | {one} | {allin.mean():.3f} |")
        both = every[-1] & every[-2]
        print(f"| {part} | both windows (30 cells) | | | | {both.mean():.3f} |")
    print(f"\nP(every cell of both parts in band, 60 cells, one model): {np.all(every, axis=0).mean():.3f}")
    if args.garch:
        from pathlib import Path

        us4 = Path(args.us4) if args.us4 else Path(__file__).resolve().parents[2] / "shared" / "data" / "us4"
        garch_bootstrap(us4, args.garch, rng)


if __name__ == "__main__":
    main()
