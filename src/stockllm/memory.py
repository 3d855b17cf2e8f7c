"""Memory: how many bytes a LoRA step keeps, how much the device has, whether to checkpoint, the heap, and the
peak so far."""

from __future__ import annotations

import os
import resource
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value, here kept fixed


def peak_memory_mb() -> tuple[float, str]:
    """Peak memory so far in MB, with a label saying what was measured (GPU allocations or process RSS). It does
    not import torch: a run that never loaded it (naive, drift) has no GPU allocations to report."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20, "GPU max allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (rss / 2**20 if sys.platform == "darwin" else rss / 2**10), "process peak RSS"  # macOS: bytes, Linux: KiB


def keep_heap_small() -> bool:
    """Make glibc return freed activation buffers to the OS (Linux only; True if applied).

    glibc serves allocations above a threshold with their own mmap and unmaps them on free, but it raises that
    threshold (up to 32 MB) each time such a block is freed. After the first training step every activation
    (a few MB each) then comes from the heap, whose freed holes are kept and fragment: peak RSS of SmolLM2
    training grew by 1.2 GB from step 1 to step 2. ``mallopt(M_MMAP_THRESHOLD, 128 KiB)`` fixes the threshold
    (setting it disables the adjustment), so the buffers are unmapped when freed (benchmarks/RESULTS.md).
    """
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


def activation_bytes_per_token(config, lora_dropout: float, dtype: torch.dtype) -> int:
    """Bytes autograd keeps per token for a LoRA backward pass through a frozen decoder (all linear layers adapted).

    Per layer and token, in ``dtype`` elements: 4 × hidden (the two norm inputs and outputs), 4 × intermediate
    (gate, up, activation, product) and 2 × (query + key/value width) for attention (q, k, v and the SDPA
    output). LoRA dropout adds its outputs (6 × hidden + intermediate) and their masks (1 byte each), because
    each adapter's A matrix needs its own dropped input. Measured on SmolLM2-135M at 1,277 tokens: 1,472 MB
    saved without dropout (this formula: 1,530), 2,530 MB with dropout 0.05 (formula: 2,570).
    """
    hidden, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    q_width = config.num_attention_heads * head_dim
    kv_width = getattr(config, "num_key_value_heads", config.num_attention_heads) * head_dim
    import torch

    size = torch.tensor([], dtype=dtype).element_size()
    per_layer = (4 * hidden + 4 * inter + 2 * (q_width + kv_width)) * size
    if lora_dropout > 0:
        per_layer += (6 * hidden + inter) * (size + 1)
    return per_layer * layers


def memory_bytes(device: torch.device) -> int | None:
    """Total memory of the device that holds the activations: the GPU's, or the machine's RAM; None if unknown."""
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


# Share of the device's memory that saved activations may take before checkpointing turns on by itself: the
# rest holds the weights, the interpreter and libraries (~0.5 GB), the backward pass's transients, and whatever
# else the user runs.
ACTIVATION_MEMORY_SHARE = 0.5


def needs_checkpointing(model, tokens_per_step: int, lora_dropout: float, device: torch.device) -> tuple[bool, str]:
    """Whether a step of ``tokens_per_step`` tokens would keep more activations than the budget allows, with why.

    Budget: ``ACTIVATION_MEMORY_SHARE`` of the device's memory minus the weights. Returns (decision, reason).
    """
    total = memory_bytes(device)
    if total is None:
        return False, "device memory unknown"
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    dtype = next(model.parameters()).dtype
    need = activation_bytes_per_token(model.config, lora_dropout, dtype) * tokens_per_step
    budget = ACTIVATION_MEMORY_SHARE * total - weights
    reason = (f"a step of {tokens_per_step:,} tokens keeps ≈ {need / 2**30:.1f} GB of activations; the budget is "
              f"{budget / 2**30:.1f} GB ({ACTIVATION_MEMORY_SHARE:.0%} of {total / 2**30:.0f} GB {device.type} "
              f"memory minus {weights / 2**30:.1f} GB of weights)")
    return need > budget, reason
