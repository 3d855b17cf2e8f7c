"""Is a bf16 base worth it on a CPU with AVX-512 BF16? One LoRA training step (forward + backward) with the frozen
base in fp32 (the CPU default, ``device.resolve_device``) and in bf16 (the GPU path: bf16 base, fp32 LoRA and
head), same chunk, same model, interleaved best of ``--reps``; plus how far the bf16 base's hidden states are
from the fp32 ones.

    python benchmarks/cpu_bf16.py [--gguf SmolLM2.gguf] [--reps 3] [--json out.json]

Prints one JSON object: step seconds and tokens/s per dtype, their ratio, and the relative error of the last
hidden states (‖h_bf16 − h_fp32‖ / ‖h_fp32‖). It does not train to the end, so it says nothing about accuracy
after training; that needs a full run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import DEFAULT_GGUF, best_seconds, ensure_gguf  # noqa: E402

from stockllm.config import DataConfig, LoRAConfig  # noqa: E402
from stockllm.data import load_ohlcv  # noqa: E402
from stockllm.models import llm  # noqa: E402


def build(folder: str, dtype: torch.dtype):
    """A LoRAForecaster on ``folder`` whose frozen base is loaded in ``dtype`` on the CPU (LoRA and head fp32)."""
    real = llm.resolve_device
    llm.resolve_device = lambda preference="auto": (torch.device("cpu"), dtype)
    try:
        forecaster = llm.LoRAForecaster(DataConfig(), LoRAConfig.from_flags(model_path=folder, device="cpu"))
        forecaster.build(trainable=True)
    finally:
        llm.resolve_device = real
    return forecaster


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gguf", default=str(DEFAULT_GGUF), help="SmolLM2 GGUF file")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    folder = str(ensure_gguf(Path(args.gguf), lambda *_: None))
    frame = load_ohlcv("nasdaq")
    models = {name: build(folder, dtype) for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    days = np.arange(len(frame) - 128, len(frame) - 3)
    y = np.zeros((len(frame), 3))
    batches = {name: f.collate(f.samples(frame, days, y)[-1:]) for name, f in models.items()}
    tokens = int(batches["fp32"]["attention_mask"].sum())
    seconds = best_seconds({name: (lambda n=name: models[n].forward_backward(batches[n])) for name in models},
                           args.reps, torch.device("cpu"))
    with torch.inference_mode():
        hidden = {}
        for name, f in models.items():
            b = batches[name]
            out = f.model.backbone(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
            hidden[name] = out.last_hidden_state.float()
    error = float((hidden["bf16"] - hidden["fp32"]).norm() / hidden["fp32"].norm())
    result = {"model": Path(args.gguf).name, "tokens": tokens, "threads": torch.get_num_threads(),
              "step_seconds": seconds, "tokens_per_s": {k: tokens / v for k, v in seconds.items()},
              "speedup_bf16": seconds["fp32"] / seconds["bf16"], "hidden_relative_error_bf16": error,
              "reps": f"best of {args.reps}, interleaved, after one warm-up each"}
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
