"""Skill on the development set: naive, fhs, garch, mlp, lstm and ensemble (and their --calibrate aci variants) on
each development series alone and pooled, at one cutoff.

    python benchmarks/skill.py                      # everything (CPU: tens of minutes)
    python benchmarks/skill.py --quick              # mlp/lstm at 5 epochs, for a smoke run
    python benchmarks/skill.py --validation         # the same, on validation dates only (hyper-parameter choice)

The development set is the bundled NASDAQ sample plus ``../shared/data/us4/`` (AAPL, GOOG, IBM, MSFT 2000–2013,
unadjusted in the file; prices are rescaled by ``Adj Close / Close`` here so a split is not a −50% day). The cutoff
is the first date of the last 20% of the us4 dates (2010-07-..), so every series has a test part; NASDAQ's runs on to
2018. ``--validation`` keeps only the dates before that cutoff and puts a new cutoff at their last 20%: figures from
it choose settings without looking at the test part.

Writes ``benchmarks/skill/<run>_metrics.csv`` as each run ends (so a partial run is usable) and
``benchmarks/skill/summary.md``: per series and setting (alone / pooled), wql_vs_naive, wql_vs_fhs, coverage_80
overall and by volatility tercile, DM p-values per horizon against naive and against fhs (quantile loss).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stockllm.config import DataConfig, EnsembleConfig, MLPConfig  # noqa: E402
from stockllm.data import load_ohlcv  # noqa: E402
from stockllm.backtest import (before, diebold_mariano, evaluate, metrics, quantile_columns,  # noqa: E402
                               resolve_cutoff)
from stockllm.models import model_class  # noqa: E402
from stockllm.quantiles import pinball  # noqa: E402

US4 = ("AAPL", "GOOG", "IBM", "MSFT")


def dev_set(us4_dir: Path) -> dict[str, pd.DataFrame]:
    """NASDAQ (bundled) and the four us4 stocks, split- and dividend-adjusted through Adj Close."""
    frames = {"nasdaq": load_ohlcv("nasdaq")}
    for ticker in US4:
        path = us4_dir / f"{ticker}.csv"
        if not path.is_file():
            print(f"skipping {ticker}: {path} not found", file=sys.stderr)
            continue
        frame = load_ohlcv(path)
        raw = pd.read_csv(path, index_col="Date", parse_dates=True)
        ratio = (raw["Adj Close"] / raw["Close"]).reindex(frame.index).to_numpy()
        for col in ("Open", "High", "Low", "Close"):
            frame[col] = frame[col] * ratio
        frame.attrs["source"] = ticker
        frames[ticker] = frame
    return frames


LAMBDAS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)  # the ensemble's shrinkage grid
ETAS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)  # its tracking rate (0: fixed weights)
DISCOUNTS = (1.0, 0.999, 0.995, 0.99, 0.98)  # and the discount of past losses per origin
SHARED = (False, True)  # weights per horizon, or one set for all horizons from their summed losses
FIRST = 250  # --calibrate aci's coverage is also shown over each series' first this many test origins
KEEP = ["series", "model", "origin", "horizon", "last_close", "actual", "sigma"]


def factories(names, epochs: int | None, seed: int, built: list):
    """Model factories with the benchmark's settings; every ensemble built is appended to ``built`` (its fit
    record holds the fitted weights before shrinkage, which ``hedge_grid`` recombines)."""
    data = DataConfig()
    mlp = MLPConfig.from_flags(seed=seed, **({"epochs": epochs} if epochs else {}))
    out = {}
    for name in names:
        cls = model_class(name)
        if name in ("mlp", "lstm"):
            out[name] = lambda cls=cls: cls(data, mlp)
        elif name == "ensemble":
            def make(cls=cls):
                built.append(cls(data, EnsembleConfig(), {"mlp": mlp, "lstm": mlp}))
                return built[-1]
            out[name] = make
        else:
            out[name] = lambda cls=cls: cls(data)
    return out


def save_members(forecasts: pd.DataFrame, ensemble, path: Path) -> dict:
    """Write the forecasts of naive and the ensemble's members (the same fitted models as the standalone rows:
    ``evaluate`` offers them to the ensemble) to ``path`` (csv.gz), and return what ``hedge_grid`` needs besides:
    the fitted weights before shrinkage and the anchor date."""
    from stockllm.calibration import anchor_date

    fitted = ensemble.fit_info["fitted_weights"]
    keep = forecasts[forecasts["model"].isin(["naive", "ensemble", *fitted])]
    keep[KEEP + [c for c, _ in quantile_columns(forecasts)]].to_csv(path, index=False, float_format="%.10g")
    return {"fitted_weights": fitted, "anchor": f"{anchor_date(ensemble):%Y-%m-%d}"}


def hedge_grid(forecasts: pd.DataFrame, fitted: dict, anchor: str) -> pd.DataFrame:
    """wql_vs_naive of the ensemble at every (shrinkage λ, tracking rate η, discount ρ) of the grids, per series and
    horizon, recombined from its members' forecasts as ``EnsembleForecaster.predict_quantiles`` combines them:
    prior weights λ/M + (1 − λ)·fitted, tracked from the anchor (``hedge_weights``) on the σ-standardised losses."""
    from stockllm.models.ensemble import combine, hedge_weights
    from stockllm.quantiles import pinball

    qcols = quantile_columns(forecasts)
    names, levels = [c for c, _ in qcols], [lv for _, lv in qcols]
    members = list(fitted)
    rows = []
    for series, g in forecasts.groupby("series", sort=False):
        g = g.sort_values(["origin", "horizon"])
        cube = {m: f for m, f in g.groupby("model")}
        origins = np.sort(cube["naive"]["origin"].unique())
        shape = (len(origins), -1)
        last = cube["naive"]["last_close"].to_numpy().reshape(shape)  # [n, H]
        actual = cube["naive"]["actual"].to_numpy().reshape(shape)
        scale = np.maximum(cube["naive"]["sigma"].to_numpy().reshape(shape) * np.sqrt(np.arange(1, last.shape[1] + 1)),
                           1e-8)
        logq = np.stack([np.log(cube[m][names].to_numpy().reshape(*last.shape, -1) / last[..., None]) for m in members])
        y = np.log(actual / last) / scale
        loss = pinball(y[None], logq / scale[None, :, :, None], levels).mean(axis=-1)  # [M, n, H]
        naive = pinball(actual, cube["naive"][names].to_numpy().reshape(*last.shape, -1), levels).sum(axis=(0, 2))
        start = int(np.searchsorted(origins, anchor))
        for lam in LAMBDAS:
            prior = np.array([lam / len(members) + (1 - lam) * fitted[m] for m in members])
            used = prior > 0
            for eta, rho, shared in [(0.0, 1.0, False)] + [(e, r, sh) for e in ETAS if e for r in DISCOUNTS
                                                           for sh in SHARED]:
                w = hedge_weights(loss[used], prior[used], eta, rho, start, shared)
                q = last[..., None] * np.exp(combine(w, logq[used]))
                ens = pinball(actual, q, levels).sum(axis=(0, 2))  # [H]
                rows += [{"series": series, "horizon": h + 1, "shrinkage": lam, "eta": eta, "discount": rho,
                          "shared": shared, "wql_vs_naive": ens[h] / naive[h]} for h in range(len(ens))]
    return pd.DataFrame(rows)


def write_grid(name: str, out: Path) -> None:
    """``<name>_hedge.csv`` from the member forecasts ``run`` saved under ``out/forecasts`` (no training: run again
    with ``--regrid`` to try other grids)."""
    info = json.loads((out / "forecasts" / f"{name}.json").read_text())
    forecasts = pd.read_csv(out / "forecasts" / f"{name}.csv.gz")
    grid = hedge_grid(forecasts, info["fitted_weights"], info["anchor"])
    grid.insert(0, "setting", name)
    grid.to_csv(out / f"{name}_hedge.csv", index=False, float_format="%.8g")


def first_coverage(forecasts: pd.DataFrame, first: int = FIRST) -> pd.DataFrame:
    """coverage_80 over each series' first ``first`` test origins, per model and horizon."""
    origins = forecasts.drop_duplicates(["series", "origin"]).sort_values("origin")
    early = origins.groupby("series").head(first)[["series", "origin"]]
    f = forecasts.merge(early, on=["series", "origin"])
    inside = (f["actual"] >= f["q0.1"]) & (f["actual"] <= f["q0.9"])
    return (f.assign(inside=inside.astype(float)).groupby(["series", "model", "horizon"])["inside"].mean()
            .rename(f"coverage_80_first{first}").reset_index())


def dm_vs(forecasts: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Diebold–Mariano p-values of each model's per-origin quantile loss against ``reference``'s, per series and
    horizon, with the sign of the mean difference (negative: the model is better)."""
    qcols = quantile_columns(forecasts)
    names, levels = [c for c, _ in qcols], [lv for _, lv in qcols]
    loss = pinball(forecasts["actual"].to_numpy(), forecasts[names].to_numpy(), levels).sum(axis=1)
    f = forecasts[["series", "model", "origin", "horizon"]].assign(loss=loss)
    ref = f[f["model"] == reference].set_index(["series", "origin", "horizon"])["loss"]
    rows = []
    for (series, model, h), g in f.groupby(["series", "model", "horizon"], sort=False):
        r = ref.reindex(pd.MultiIndex.from_frame(g[["series", "origin", "horizon"]])).to_numpy()
        rows.append({"series": series, "model": model, "horizon": h,
                     f"dm_p_vs_{reference}": diebold_mariano(g["loss"].to_numpy(), r, int(h)),
                     f"diff_vs_{reference}": float(np.mean(g["loss"].to_numpy() - r))})
    return pd.DataFrame(rows)


def run(name: str, frames: dict, names, cutoff, epochs, seed, out: Path) -> pd.DataFrame:
    t0 = time.time()
    built = []
    table, forecasts = evaluate(frames, factories(names, epochs, seed, built), test_start=cutoff, calibrate="aci",
                                progress=False, log=lambda *_: None)
    if built:
        (out / "forecasts").mkdir(exist_ok=True)
        info = save_members(forecasts, built[-1], out / "forecasts" / f"{name}.csv.gz")
        (out / "forecasts" / f"{name}.json").write_text(json.dumps(info, indent=1))
        write_grid(name, out)
    table = table.merge(first_coverage(forecasts), on=["series", "model", "horizon"], how="left")
    fhs = table[table["model"] == "fhs"].set_index(["series", "horizon"])["wql"]
    table["wql_vs_fhs"] = table["wql"].to_numpy() / fhs.reindex(
        pd.MultiIndex.from_frame(table[["series", "horizon"]])).to_numpy()
    table = table.merge(dm_vs(forecasts, "fhs"), on=["series", "model", "horizon"], how="left")
    table.insert(0, "setting", name)
    table["seconds"] = time.time() - t0
    table.to_csv(out / f"{name}_metrics.csv", index=False)
    print(f"{name}: {time.time() - t0:.0f} s", flush=True)
    return table


def geomean(v) -> float:
    v = np.asarray(v, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.exp(np.log(v).mean())) if len(v) else float("nan")


def summary(all_tables: pd.DataFrame) -> str:
    t = all_tables.assign(setting=np.where(all_tables["setting"] == "pooled", "pooled", "alone"))
    lines = ["| series | model | setting | wql_vs_naive h1/h2/h3 | wql_vs_fhs (geomean) | coverage_80 | low/mid/high vol "
             "| DM p vs naive h1/h2/h3 | DM p vs fhs h1/h2/h3 |", "|---|---|---|---|---|---|---|---|---|"]
    for (series, model, setting), g in t.groupby(["series", "model", "setting"], sort=False):
        g = g.sort_values("horizon")
        f3 = lambda col: "/".join(f"{v:.3f}" for v in g[col])  # noqa: E731
        lines.append(f"| {series} | {model} | {setting} | {f3('wql_vs_naive')} | {geomean(g['wql_vs_fhs']):.4f} | "
                     f"{g['coverage_80'].mean():.3f} | {g['coverage_80_lowvol'].mean():.2f}/"
                     f"{g['coverage_80_midvol'].mean():.2f}/{g['coverage_80_highvol'].mean():.2f} | "
                     f"{f3('dm_pvalue_wql')} | {f3('dm_p_vs_fhs')} |")
    lines += ["", "Geometric mean of wql_vs_naive over series and horizons, and the worst series' wql_vs_fhs "
              "(geomean over horizons):", "", "| model | setting | geomean wql_vs_naive | worst wql_vs_fhs | "
              "coverage_80 range | tercile range |", "|---|---|---|---|---|---|"]
    for (model, setting), g in t.groupby(["model", "setting"], sort=False):
        worst = g.groupby("series")["wql_vs_fhs"].apply(geomean).max()
        terc = g[["coverage_80_lowvol", "coverage_80_midvol", "coverage_80_highvol"]].to_numpy()
        lines.append(f"| {model} | {setting} | {geomean(g['wql_vs_naive']):.4f} | {worst:.4f} | "
                     f"{g['coverage_80'].min():.3f}–{g['coverage_80'].max():.3f} | "
                     f"{np.nanmin(terc):.2f}–{np.nanmax(terc):.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--us4", type=Path, default=ROOT.parent / "shared" / "data" / "us4")
    ap.add_argument("--models", default="naive,fhs,garch,mlp,lstm,ensemble")
    ap.add_argument("--epochs", type=int, help="mlp/lstm epochs (default: MLPConfig's, with early stopping)")
    ap.add_argument("--quick", action="store_true", help="5 epochs")
    ap.add_argument("--validation", action="store_true", help="validation dates only (before the cutoff)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", help="comma-separated runs: pooled and/or series names (default all)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "skill")
    ap.add_argument("--regrid", action="store_true", help="only recompute the ensemble's grids from the saved "
                    "member forecasts (no training)")
    args = ap.parse_args()
    if args.regrid:
        out = args.out / ("validation" if args.validation else "test")
        for path in sorted((out / "forecasts").glob("*.json")):
            write_grid(path.stem, out)
        return
    frames = dev_set(args.us4)
    us4 = {k: v for k, v in frames.items() if k != "nasdaq"} or frames
    cutoff = resolve_cutoff(us4, 0.2)
    if args.validation:
        frames = {k: before(v, cutoff) for k, v in frames.items()}
        cutoff = resolve_cutoff({k: v for k, v in frames.items() if k != "nasdaq"} or frames, 0.2)
    out = args.out / ("validation" if args.validation else "test")
    out.mkdir(parents=True, exist_ok=True)
    names = [m for m in args.models.split(",") if m]
    epochs = 5 if args.quick else args.epochs
    print(f"cutoff {cutoff:%Y-%m-%d}; series {', '.join(frames)}; models {', '.join(names)}", flush=True)
    runs = ["pooled", *frames] if not args.only else args.only.split(",")
    tables = []
    for name in runs:
        subset = frames if name == "pooled" else {name: frames[name]}
        tables.append(run(name, subset, names, cutoff, epochs, args.seed, out))
        text = summary(pd.concat(tables, ignore_index=True))
        (out / "summary.md").write_text(f"cutoff {cutoff:%Y-%m-%d}; command: python benchmarks/skill.py "
                                        f"{' '.join(sys.argv[1:])}\n\n{text}\n")
    print(text)


if __name__ == "__main__":
    main()
