"""The ensemble's settings (shrinkage λ, tracking rate η, discount ρ), chosen on validation dates only and checked
by leaving each development series out.

    python benchmarks/skill.py --validation     # writes benchmarks/skill/validation/<run>_hedge.csv
    python benchmarks/skill.py                  # the same for the test part
    python benchmarks/skill.py [--validation] --regrid   # the grids again from the saved member forecasts
    python benchmarks/ensemble_choice.py        # reads both, writes benchmarks/skill/ensemble_choice.md
    python benchmarks/ensemble_choice.py --dir runs/seed0 runs/seed1 ...   # several seeds' runs, averaged

For each setting (each series fitted alone; one pooled fit) and each (λ, η, ρ) on the grid, the ensemble's geometric
mean of wql_vs_naive over a series' horizons comes from its members' forecasts and fitted weights
(``skill.hedge_grid``, which combines them exactly as the ensemble does). The default minimises the geometric mean
over all five series × horizons on validation dates. Leave-one-series-out: for each series s, (λ, η, ρ)₋ₛ minimises
it over the other four series' validation dates, and the ensemble with it is scored on s, on the validation dates
and on the test part, beside its members and FHS. The criteria of issue 26: the ensemble's geometric mean ≤ the best
member's + 0.0005, and on every series ≤ FHS's + 0.001.

With several ``--dir`` folders (``skill.py --seed s --out runs/seed<s>`` for a few seeds), every score is first
averaged over the seeds (each (series, horizon) cell of the grid and of the members), so the choice and the
comparison with the best member are made on what a member scores in expectation, not on one seed's draw: the
learned members' geometric means move by 0.001–0.006 from seed to seed (``benchmarks/ensemble_seeds.py``), more
than the margins being judged. The tables go to ``--out`` (default: the first folder's ``ensemble_choice.md``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = ("fhs", "garch", "mlp", "lstm")
KNOBS = ["shrinkage", "eta", "discount", "shared"]


def geomean(v) -> float:
    v = np.asarray(v, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.exp(np.log(v).mean())) if len(v) else float("nan")


def load(part: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(grid, metrics) of one part: the ensemble's grid and the metrics rows, with setting 'alone' or 'pooled'
    (empty frames when the part has no grid yet)."""
    grids, tables = [pd.DataFrame(columns=["setting"])], [pd.DataFrame(columns=["setting"])]
    for path in sorted(part.glob("*_hedge.csv")):
        grids.append(pd.read_csv(path))
        tables.append(pd.read_csv(part / path.name.replace("_hedge", "_metrics")))
    grid, table = pd.concat(grids, ignore_index=True), pd.concat(tables, ignore_index=True)
    for t in (grid, table):
        t["setting"] = np.where(t["setting"] == "pooled", "pooled", "alone")
    return grid, table


def load_runs(folders: list[Path], part: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``load`` of ``part`` for each run folder, each cell's wql_vs_naive averaged over the runs (one run: as is)."""
    pairs = [load(folder / part) for folder in folders]
    if len(pairs) == 1:
        return pairs[0]
    grids, tables = zip(*pairs)
    grid = pd.concat(grids).groupby(["setting", "series", "horizon", *KNOBS], as_index=False)["wql_vs_naive"].mean()
    table = pd.concat(tables).groupby(["setting", "series", "model", "horizon"], as_index=False)["wql_vs_naive"].mean()
    return grid, table


def per_series(grid: pd.DataFrame) -> pd.DataFrame:
    """[series × (λ, η, ρ)] geometric mean of wql_vs_naive over horizons."""
    return grid.groupby(["series", *KNOBS])["wql_vs_naive"].apply(geomean).unstack(KNOBS)


def member_scores(table: pd.DataFrame) -> pd.DataFrame:
    """[series × member] geometric mean of wql_vs_naive over horizons."""
    t = table[table["model"].isin(MEMBERS)]
    return t.groupby(["series", "model"])["wql_vs_naive"].apply(geomean).unstack("model")[list(MEMBERS)]


def choose(scores: pd.DataFrame, series) -> tuple:
    """The (λ, η, ρ, shared) with the lowest geometric mean over ``series`` (ties: the smallest η, then the largest
    ρ and the largest λ: the steadiest weights)."""
    means = np.exp(np.log(scores.loc[list(series)]).mean())
    best = [k for k in means.index if means[k] <= means.min() + 1e-12]
    return min(best, key=lambda k: (k[1], -k[2], -k[0], k[3]))


def name(knobs) -> str:
    """The settings in words: 'λ 0, η 4, ρ 0.99, shared'."""
    return "λ {:g}, η {:g}, ρ {:g}".format(*knobs[:3]) + (", shared" if knobs[3] else "")


def by_eta(scores: pd.DataFrame, default) -> str:
    """The geometric mean over all series by η, at the default's λ and the best ρ for each η."""
    means = np.exp(np.log(scores).mean())
    lam = means[[k for k in means.index if k[0] == default[0]]]
    return ", ".join(f"η {eta:g}: {lam[[k for k in lam.index if k[1] == eta]].min():.4f}"
                     for eta in sorted({k[1] for k in lam.index}))


def loso_rows(scores, val, members, series):
    """Leave-one-series-out rows and the ensemble's score per series, with settings chosen on the others."""
    rows, ens = [], {}
    for s in series:
        knobs = choose(val, [x for x in series if x != s])
        ens[s] = scores.loc[s, knobs]
        rows.append(f"| {s} | {name(knobs)} | {ens[s]:.4f} | " + " | ".join(f"{members.loc[s, m]:.4f}" for m in MEMBERS)
                    + f" | {ens[s] - members.loc[s, 'fhs']:+.4f} |")
    return rows, ens


def report(setting: str, val_grid, val_table, test_grid, test_table, joint: pd.DataFrame) -> list[str]:
    """Markdown lines for one setting: the choice and the leave-one-series-out table on both parts. ``joint``: the
    validation scores the settings are chosen on (both settings' rows: one default serves both)."""
    val = per_series(val_grid)
    test = per_series(test_grid) if len(test_grid) else pd.DataFrame()
    series = list(val.index)
    default, own = choose(joint, series), choose(val, series)
    fixed = choose(val[[k for k in val.columns if k[1] == 0]], series)
    lines = [f"### {setting}", "", f"On validation dates, all five series, this setting alone: {name(own)}, geometric "
             f"mean {np.exp(np.log(val[own]).mean()):.4f}; the joint default {name(default)}: "
             f"{np.exp(np.log(val[default]).mean()):.4f}; fixed weights at their best ({name(fixed)}): "
             f"{np.exp(np.log(val[fixed]).mean()):.4f}. By η at λ {default[0]:g} (best ρ and sharing each): "
             f"{by_eta(val, default)}.", ""]
    parts = [("validation dates", val, val_table)] + ([("test part", test, test_table)] if len(test) else [])
    for part, scores, table in parts:
        members = member_scores(table)
        _, both = loso_rows(scores, joint, members, series)
        rows, ens = loso_rows(scores, val, members, series)
        best = members.apply(geomean).idxmin()
        g_ens, g_best, g_both = geomean(list(ens.values())), geomean(members[best]), geomean(list(both.values()))
        worst = max(ens[s] - members.loc[s, "fhs"] for s in series)
        lines += [f"{part}, leave-one-series-out ((λ, η, ρ)₋ₛ chosen on the other four series' validation dates, "
                  "this setting):",
                  "", "| series | (λ, η, ρ)₋ₛ | ensemble | " + " | ".join(MEMBERS) + " | ensemble − fhs |",
                  "|---|---|---|" + "---|" * len(MEMBERS) + "---|", *rows,
                  f"| **geomean** | | **{g_ens:.4f}** | " + " | ".join(f"{geomean(members[m]):.4f}" for m in MEMBERS)
                  + f" | worst {worst:+.4f} |", "",
                  f"Best member {best} {g_best:.4f}: ensemble − best = {g_ens - g_best:+.4f} "
                  f"({'meets' if g_ens <= g_best + 0.0005 else 'misses'} ≤ +0.0005); worst series − fhs = "
                  f"{worst:+.4f} ({'meets' if worst <= 0.001 else 'misses'} ≤ +0.001). With the settings₋ₛ chosen on "
                  f"both settings' scores of the other four series instead: geometric mean {g_both:.4f}"
                  f" ({g_both - g_best:+.4f} against {best}), worst series − fhs "
                  f"{max(both[s] - members.loc[s, 'fhs'] for s in series):+.4f}.", ""]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, nargs="+", default=[ROOT / "benchmarks" / "skill"],
                    help="skill.py output folder(s); several (one per seed): scores averaged over them")
    ap.add_argument("--out", type=Path, help="where to write the tables (default: <first --dir>/ensemble_choice.md)")
    args = ap.parse_args()
    val_grid, val_table = load_runs(args.dir, "validation")
    test_grid, test_table = load_runs(args.dir, "test")
    joint = pd.concat([per_series(val_grid[val_grid["setting"] == st]) for st in ("alone", "pooled")])
    default = choose(joint, sorted(set(joint.index)))
    runs = ", ".join(d.name for d in args.dir)
    seeds = f", scores averaged over {len(args.dir)} runs ({runs})" if len(args.dir) > 1 else ""
    lines = [f"# The ensemble's settings, chosen on validation dates (python benchmarks/ensemble_choice.py{seeds})", "",
             f"One default for both settings (each series alone, and pooled), lowest geometric mean over both "
             f"settings' validation scores: **{name(default)}** ({np.exp(np.log(joint[default]).mean()):.4f}; fixed "
             f"weights λ 0: {np.exp(np.log(joint[(0.0, 0.0, 1.0, False)]).mean()):.4f}).", ""]
    for setting in ("alone", "pooled"):
        pick = lambda t: t[t["setting"] == setting]  # noqa: E731
        if len(pick(val_grid)):
            lines += report(setting, pick(val_grid), pick(val_table), pick(test_grid), pick(test_table), joint)
    text = "\n".join(lines)
    (args.out or args.dir[0] / "ensemble_choice.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
