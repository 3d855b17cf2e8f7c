"""The ensemble against its best member over several training seeds: how much of "ensemble − best member" is the
seed's luck.

    for s in 0 1 2 3 4; do
      python benchmarks/skill.py --validation --seed $s --out runs/seed$s
      python benchmarks/skill.py --seed $s --out runs/seed$s
    done
    python benchmarks/ensemble_seeds.py runs/seed0 runs/seed1 runs/seed2 runs/seed3 runs/seed4

The MLP and the LSTM start from random weights, so their scores move with the seed, and "the best member" of one
run is the member that drew the luckiest seed there: an ex-post minimum over noisy scores, below what any member
is expected to score. For each part (validation dates, test part) and setting (each series alone, pooled), this
prints per seed the geometric mean of wql_vs_naive over 5 series × 3 horizons of the ensemble (shipped settings,
``EnsembleConfig``, and leave-one-series-out settings as ``ensemble_choice.py`` chooses them) and of each member,
then the mean over seeds, and both readings of issue 26's target: the mean over seeds of (ensemble − that seed's
best member), and the seeds' mean ensemble − the best of the members' seed means.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ensemble_choice import MEMBERS, geomean, load, loso_rows, member_scores, per_series  # noqa: E402
from stockllm.config import EnsembleConfig  # noqa: E402


def shipped() -> tuple:
    """The (λ, η, ρ, shared) key of the shipped EnsembleConfig in the grids."""
    c = EnsembleConfig()
    return (c.shrinkage, c.eta, c.discount, c.share_horizons)


def seed_rows(run: Path) -> list[dict]:
    """One row per (part, setting) of one seed's run: the ensemble's and members' geometric means, and the worst
    series' ensemble − fhs."""
    val_grid, _ = load(run / "validation")
    rows = []
    for part in ("validation", "test"):
        grid, table = load(run / part)
        for setting in ("alone", "pooled"):
            scores = per_series(grid[grid["setting"] == setting])
            chooser = per_series(val_grid[val_grid["setting"] == setting])
            members = member_scores(table[table["setting"] == setting])
            series = list(scores.index)
            _, loso = loso_rows(scores, chooser, members, series)
            default = scores[shipped()]
            row = {"seed": run.name, "part": part, "setting": setting, "ensemble": geomean(default),
                   "ensemble_loso": geomean(list(loso.values())),
                   "worst_vs_fhs": float((default - members["fhs"]).max()),
                   "worst_vs_fhs_loso": max(loso[s] - members.loc[s, "fhs"] for s in series)}
            row.update({m: geomean(members[m]) for m in MEMBERS})
            rows.append(row)
    return rows


def bagged(runs: list[Path], part: str, name: str) -> pd.DataFrame:
    """wql_vs_naive per series and horizon of the MLP and LSTM averaged over the seeds (their log-quantiles averaged:
    a member trained with every seed), and of the ensemble (shipped settings) over those bagged members with the
    seeds' mean fitted weights, recombined exactly as ``skill.hedge_grid`` recombines one seed's members."""
    import json

    from skill import hedge_grid
    from stockllm.backtest import quantile_columns
    from stockllm.quantiles import pinball

    runs_f = [pd.read_csv(r / part / "forecasts" / f"{name}.csv.gz") for r in runs]
    infos = [json.loads((r / part / "forecasts" / f"{name}.json").read_text()) for r in runs]
    base = runs_f[0]
    qcols = quantile_columns(base)
    cols, levels = [c for c, _ in qcols], [lv for _, lv in qcols]
    bag = base.copy()
    for member in ("mlp", "lstm"):
        rows = base["model"] == member
        logq = np.mean([np.log(f.loc[f["model"] == member, cols].to_numpy()
                               / f.loc[f["model"] == member, ["last_close"]].to_numpy()) for f in runs_f], axis=0)
        bag.loc[rows, cols] = base.loc[rows, ["last_close"]].to_numpy() * np.exp(logq)
    fitted = {m: float(np.mean([i["fitted_weights"][m] for i in infos])) for m in infos[0]["fitted_weights"]}
    grid = hedge_grid(bag, fitted, infos[0]["anchor"])
    key = dict(zip(["shrinkage", "eta", "discount", "shared"], shipped()))
    pick = np.logical_and.reduce([np.isclose(grid[k], v) if k != "shared" else grid[k] == v for k, v in key.items()])
    out = grid[pick][["series", "horizon", "wql_vs_naive"]].assign(model="ensemble")
    loss = pinball(bag["actual"].to_numpy(), bag[cols].to_numpy(), levels).sum(axis=1)
    per = bag[["series", "model", "horizon"]].assign(loss=loss).groupby(["series", "model", "horizon"])["loss"].sum()
    naive = per.xs("naive", level="model")
    members = [(per.xs(m, level="model") / naive).rename("wql_vs_naive").reset_index().assign(model=m)
               for m in ("fhs", "garch", "mlp", "lstm")]
    return pd.concat([out, *members], ignore_index=True)


def bag_table(runs: list[Path]) -> None:
    """Print the bagged members' and ensemble's geometric means per part and setting."""
    print(f"\nMembers bagged over the {len(runs)} seeds (log-quantiles averaged), ensemble with shipped settings:\n")
    print("| part | setting | ensemble | " + " | ".join(MEMBERS) + " | ensemble − best member | "
          "worst series − fhs |\n|---|---|---|" + "---|" * len(MEMBERS) + "---|---|")
    for part in ("validation", "test"):
        names = sorted(p.name.removesuffix(".csv.gz") for p in (runs[0] / part / "forecasts").glob("*.csv.gz"))
        for setting, group in (("alone", [n for n in names if n != "pooled"]), ("pooled", ["pooled"])):
            t = pd.concat([bagged(runs, part, n) for n in group], ignore_index=True)
            g = t.groupby("model")["wql_vs_naive"].apply(geomean)
            by_series = t.groupby(["model", "series"])["wql_vs_naive"].apply(geomean).unstack("model")
            best = min(g[m] for m in MEMBERS)
            print(f"| {part} | {setting} | {g['ensemble']:.4f} | " + " | ".join(f"{g[m]:.4f}" for m in MEMBERS)
                  + f" | {g['ensemble'] - best:+.4f} | {(by_series['ensemble'] - by_series['fhs']).max():+.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="skill.py --out folders, one per seed")
    ap.add_argument("--bag", action="store_true", help="also the members averaged over the seeds (needs the "
                    "forecasts skill.py saves under <run>/<part>/forecasts)")
    args = ap.parse_args()
    t = pd.DataFrame([r for run in args.runs for r in seed_rows(run)])
    t["best"] = t[list(MEMBERS)].min(axis=1)
    t["best_member"] = t[list(MEMBERS)].idxmin(axis=1)
    print(f"Shipped ensemble settings: λ {shipped()[0]:g}, η {shipped()[1]:g}, ρ {shipped()[2]:g}, "
          f"{'shared' if shipped()[3] else 'per horizon'}; {len(args.runs)} seeds\n")
    print("| part | setting | seed | ensemble | ensemble (LOSO) | " + " | ".join(MEMBERS)
          + " | best member | ensemble − best | LOSO − best |\n|---|---|---|---|---|" + "---|" * len(MEMBERS)
          + "---|---|---|")
    for _, r in t.iterrows():
        print(f"| {r.part} | {r.setting} | {r.seed} | {r.ensemble:.4f} | {r.ensemble_loso:.4f} | "
              + " | ".join(f"{r[m]:.4f}" for m in MEMBERS)
              + f" | {r.best_member} | {r.ensemble - r.best:+.4f} | {r.ensemble_loso - r.best:+.4f} |")
    print("\nOver the seeds (mean ± sd across seeds):\n")
    print("| part | setting | ensemble | ensemble (LOSO) | " + " | ".join(MEMBERS) + " | E[ensemble − that seed's "
          "best] | ensemble mean − best member mean | LOSO: same two | worst series − fhs, mean / max |\n"
          "|---|---|---|---|" + "---|" * len(MEMBERS) + "---|---|---|---|")
    for (part, setting), g in t.groupby(["part", "setting"], sort=False):
        ms = lambda c: f"{g[c].mean():.4f} ± {g[c].std(ddof=1):.4f}"  # noqa: E731
        best_mean = g[list(MEMBERS)].mean().min()
        print(f"| {part} | {setting} | {ms('ensemble')} | {ms('ensemble_loso')} | "
              + " | ".join(ms(m) for m in MEMBERS)
              + f" | {(g['ensemble'] - g['best']).mean():+.4f} | {g['ensemble'].mean() - best_mean:+.4f} | "
              f"{(g['ensemble_loso'] - g['best']).mean():+.4f} / {g['ensemble_loso'].mean() - best_mean:+.4f} | "
              f"{g['worst_vs_fhs'].mean():+.4f} / {g['worst_vs_fhs'].max():+.4f} |")
    if args.bag:
        bag_table(args.runs)


if __name__ == "__main__":
    main()
