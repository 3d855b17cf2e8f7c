"""The one place that resolves device and dtype, and reports peak memory."""

from __future__ import annotations

import resource
import sys
from contextlib import contextmanager

import torch

from .errors import StockLLMError


def resolve_device(preference: str = "auto") -> tuple[torch.device, torch.dtype]:
    """Pick the compute device and the dtype for the frozen base model.

    bf16 only on CUDA: on these CPUs bf16 matmul runs at ~0.3 GFLOP/s against ~99 for fp32 (DESIGN.md).
    """
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise StockLLMError("--device cuda was asked for but no CUDA GPU is visible: use --device cpu")
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.device(preference), dtype
    if preference == "mps":
        if not torch.backends.mps.is_available():
            raise StockLLMError("--device mps was asked for but MPS is not available: use --device cpu")
        return torch.device("mps"), torch.float32
    if preference == "cpu":
        return torch.device("cpu"), torch.float32
    raise StockLLMError(f"unknown --device {preference!r}: use auto, cpu, cuda or mps")


def peak_memory_mb() -> tuple[float, str]:
    """Peak memory so far in MB, with a label saying what was measured (GPU allocations or process RSS)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20, "GPU max allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is KiB on Linux but bytes on macOS.
    mb = rss / 2**20 if sys.platform == "darwin" else rss / 2**10
    return mb, "process peak RSS"


@contextmanager
def torch_threads(n: int):
    """Run a block with ``n`` intra-op threads (restored after).

    A tiny MLP spends its time in thread hand-offs: on 2 busy cores one thread trains it ~13× faster.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
