"""The one place that resolves device and dtype (peak memory: ``memory.peak_memory_mb``)."""

from __future__ import annotations

from contextlib import contextmanager

import torch

from .errors import StockLLMError


def resolve_device(preference: str = "auto") -> tuple[torch.device, torch.dtype]:
    """Pick the compute device (``cuda:N`` keeps its index) and the dtype for the frozen base model.

    bf16 only on CUDA cards that compute it natively (``cuda_precision``). CPU and MPS use fp32: on CPUs without
    AVX-512 BF16 a bf16 matmul is orders of magnitude slower, and on one with it a bf16 base made a LoRA step only
    1.2× faster, its accuracy after training unmeasured (benchmarks/RESULTS.md §1).
    """
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda" or preference.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise StockLLMError(f"--device {preference} was asked for but no CUDA GPU is visible: use --device cpu")
        index = preference.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise StockLLMError(f"--device {preference}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                                f"numbered 0..{torch.cuda.device_count() - 1}")
        device = torch.device("cuda", int(index)) if index else torch.device("cuda")
        return device, cuda_precision(device)[0]
    if preference == "mps":
        if not torch.backends.mps.is_available():
            raise StockLLMError("--device mps was asked for but MPS is not available: use --device cpu")
        return torch.device("mps"), torch.float32
    if preference == "cpu":
        return torch.device("cpu"), torch.float32
    raise StockLLMError(f"unknown --device {preference!r}: use auto, cpu, cuda, cuda:N or mps")


def cuda_precision(device: torch.device) -> tuple[torch.dtype, str]:
    """(dtype of the frozen base weights, accelerate ``mixed_precision``) for a CUDA device.

    bf16 weights where the card has native bf16 (compute capability >= 8.0: A100, RTX 30xx and later).
    ``torch.cuda.is_bf16_supported()`` also reports emulated bf16 on older cards (T4, V100), which is slow,
    so those keep fp32 weights and train under fp16 autocast with loss scaling (accelerate's "fp16").
    """
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, _ = torch.cuda.get_device_capability(index)
    return (torch.bfloat16, "no") if major >= 8 else (torch.float32, "fp16")


def mixed_precision(device: torch.device) -> str:
    """accelerate's ``mixed_precision`` for training on ``device`` ("no" except on pre-Ampere CUDA cards)."""
    return cuda_precision(device)[1] if device.type == "cuda" else "no"


def bind_device(device: torch.device, num_processes: int) -> None:
    """Make ``--device cuda:N`` the current CUDA device, so accelerate (which places on "cuda") uses card N.

    Under ``accelerate launch`` / torchrun each process gets its card from its rank; there a pinned index is
    refused, since every process would pile onto the same card.
    """
    if device.type != "cuda" or device.index is None:
        return
    if num_processes > 1:
        raise StockLLMError(f"--device {device} pins one GPU, but this run has {num_processes} processes: pass "
                            "--device cuda and choose the cards with CUDA_VISIBLE_DEVICES")
    torch.cuda.set_device(device.index)


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
