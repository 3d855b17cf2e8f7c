"""LoRA on the top K blocks, fed cached hidden states: the frozen lower blocks run once per chunk, not every step.

A LoRA step through every block backpropagates through the whole frozen base, so it costs the same however few
parameters train. With LoRA on the top K blocks only (PEFT's ``layers_to_transform``), the lower L − K blocks
compute the same function at every step: their output, the hidden states that enter block L − K, is computed
once per training and validation chunk (``HiddenCache``), and each step runs only the top K blocks and the head
(``TopHead``). K = 0 is the frozen probe: the cache holds the final hidden states at the read positions, and a
step is the head alone.

Both parts are models of the base's own class, built on the meta device and then given the base's own modules
(blocks, norm, rotary embedding), so they run the architecture's own forward (mask, positions) unchanged:
``split_model(base, 0, L − K, norm=False)`` returns the input of block L − K as its ``last_hidden_state``, and
``split_model(base, L − K, L)`` called with ``inputs_embeds`` = that tensor returns the base's
``last_hidden_state`` exactly. Positions default to 0..T−1 in both, as in the full model with right padding.
Inference does not use this module: a trained checkpoint predicts through the full model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..progress import progress_bar

CACHE_DIR = "hidden"


def split_model(base: nn.Module, first: int, last: int, norm: bool = True) -> nn.Module:
    """A model of ``base``'s class that runs blocks ``first`` .. ``last`` − 1 of ``base`` (shared modules, no
    copies) and then its final norm (``norm``) or nothing. Called with ``input_ids`` it embeds them first (only
    when ``first`` is 0); with ``inputs_embeds`` it starts from those hidden states. Always call it with
    ``use_cache=False``: the shared blocks keep their original ``layer_idx``."""
    config = copy.deepcopy(base.config)
    config.num_hidden_layers = last - first
    if isinstance(getattr(config, "layer_types", None), list):  # per-block attention kinds (sliding or full)
        config.layer_types = config.layer_types[first:last]
    with torch.device("meta"):
        part = type(base)(config)
    part.embed_tokens = base.embed_tokens
    part.layers = nn.ModuleList(base.layers[first:last])
    part.norm = base.norm if norm else nn.Identity()
    part.rotary_emb = base.rotary_emb
    left = [n for n, t in [*part.named_parameters(), *part.named_buffers()] if t.is_meta]
    if left:
        raise NotImplementedError(f"{type(base).__name__} holds modules besides embed_tokens, layers, norm and "
                                  f"rotary_emb ({', '.join(left[:3])}): use --lora_layers all for this base model")
    part.train(base.training)
    return part


def lora_layer_ids(num_layers: int, k: int) -> list[int]:
    """The block indices LoRA is put on: the top ``k`` of ``num_layers``."""
    return list(range(num_layers - k, num_layers))


class TopHead(nn.Module):
    """The top K blocks (``split_model``; None for the probe) and the quantile head, over cached hidden states."""

    def __init__(self, top: nn.Module | None, head: nn.Module):
        super().__init__()
        self.top = top
        self.head = head

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, read_pos: torch.Tensor) -> torch.Tensor:
        """hidden: [B, T, d] the states entering the top blocks (probe: [B, P, d], the final states at the reads);
        attention_mask [B, T]; read_pos [B, P] (−1 = padding) → [B, P, H, Q] float32 quantiles."""
        if self.top is None:
            return self.head(hidden.float())
        hidden = self.top(inputs_embeds=hidden, attention_mask=attention_mask, use_cache=False).last_hidden_state
        idx = read_pos.clamp_min(0).unsqueeze(-1).expand(-1, -1, hidden.size(-1))
        return self.head(torch.gather(hidden, 1, idx).float())


def collate_cached(batch: list[dict]) -> dict:
    """Right-pad the cached states of a batch: ``hidden`` [B, T, d] (probe: [B, P, d]), ``attention_mask`` [B, T],
    ``read_pos`` [B, P] (−1 = padding) and ``y`` [B, P, H]."""
    T = max(len(s["hidden"]) for s in batch)
    P = max(len(s["read_pos"]) for s in batch)
    d = batch[0]["hidden"].shape[-1]
    hidden = torch.zeros((len(batch), T, d), dtype=batch[0]["hidden"].dtype)
    mask = torch.zeros((len(batch), max(len(s["ids"]) for s in batch)), dtype=torch.long)
    pos = torch.full((len(batch), P), -1, dtype=torch.long)
    y = torch.zeros((len(batch), P, batch[0]["y"].shape[1]), dtype=torch.float32)
    for b, s in enumerate(batch):
        hidden[b, : len(s["hidden"])] = s["hidden"]
        mask[b, : len(s["ids"])] = 1
        pos[b, : len(s["read_pos"])] = torch.from_numpy(s["read_pos"])
        y[b, : len(s["y"])] = torch.from_numpy(s["y"]).float()
    return {"hidden": hidden, "attention_mask": mask, "read_pos": pos, "y": y}


def cache_key(identity: dict, samples: list[dict], reads: bool) -> str:
    """A key that changes with anything the cached states depend on: the base model (``identity``: its files,
    random-init seed, dtype, the split block), every chunk's token ids (so a changed chunk plan, codec, window
    or data gives another key) and, with ``reads`` (the probe), the read positions."""
    h = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    for s in samples:
        ids = np.ascontiguousarray(s["ids"], dtype=np.int64)
        h.update(len(ids).to_bytes(8, "little"))
        h.update(ids.tobytes())
        if reads:
            h.update(np.ascontiguousarray(s["read_pos"], dtype=np.int64).tobytes())
    return h.hexdigest()[:24]


class HiddenCache:
    """The hidden states of ``bottom`` for a list of chunk samples, kept on disk and memory-mapped.

    Files: ``<root>/<key>.bin`` (the states of every sample, row after row, in the model's dtype) and
    ``<key>.json`` (dtype, width, rows per sample). Written under a temporary name and renamed, so a killed run
    leaves no half-written cache; a later run with the same key (same base, chunks and split) reuses it, e.g.
    another seed of the same configuration. The OS keeps the pages in memory while they fit.
    """

    def __init__(self, root: Path, key: str):
        self.root, self.key = Path(root), key
        self.bin, self.meta = self.root / f"{key}.bin", self.root / f"{key}.json"

    def exists(self) -> bool:
        return self.bin.is_file() and self.meta.is_file()

    def build(self, bottom: nn.Module, samples: list[dict], probe: bool, desc: str) -> None:
        """Run ``bottom`` (no gradient) on each sample's ``ids`` and write the states: all T rows, or for the probe
        the P rows at ``read_pos``."""
        device = next(bottom.parameters()).device
        rows, dtype, width = [], None, None
        tmp = self.bin.with_name(f".{self.key}.tmp-{os.getpid()}")
        bottom.eval()
        try:
            with open(tmp, "wb") as out, torch.inference_mode():
                for s in progress_bar(samples, desc=desc, unit="chunk", leave=False):
                    ids = torch.from_numpy(np.asarray(s["ids"], dtype=np.int64))[None].to(device)
                    h = bottom(input_ids=ids, use_cache=False).last_hidden_state[0]
                    if probe:
                        h = h[torch.from_numpy(s["read_pos"]).to(device)]
                    h = h.contiguous().cpu()
                    dtype, width = h.dtype, h.shape[-1]
                    out.write(h.view(torch.uint8).numpy().tobytes())
                    rows.append(int(h.shape[0]))
            self.meta.write_text(json.dumps({"dtype": str(dtype).replace("torch.", ""), "width": width,
                                             "rows": rows}))
            os.replace(tmp, self.bin)
        finally:
            tmp.unlink(missing_ok=True)

    def attach(self, samples: list[dict]) -> int:
        """Put each sample's states (a view into the memory-mapped file) under ``sample["hidden"]``; returns the
        bytes the cache holds. A cache that does not match the samples is an error."""
        meta = json.loads(self.meta.read_text())
        dtype = getattr(torch, meta["dtype"])
        rows, width = meta["rows"], meta["width"]
        if len(rows) != len(samples):
            raise ValueError(f"hidden-state cache {self.bin} holds {len(rows)} chunks, not {len(samples)}")
        total = sum(rows) * width
        flat = torch.from_file(str(self.bin), shared=False, size=total, dtype=dtype).view(-1, width)
        start = 0
        for s, n in zip(samples, rows):
            s["hidden"] = flat[start:start + n]
            start += n
        return total * flat.element_size()


def cached_states(bottom: nn.Module, samples: list[dict], identity: dict, root: Path, probe: bool,
                  desc: str) -> tuple[int, bool]:
    """Attach cached hidden states to ``samples`` (building them once, under a file lock so that several processes
    build one copy). Returns (bytes held, whether they were reused from an earlier run)."""
    from filelock import FileLock

    if not samples:
        return 0, False
    cache = HiddenCache(root, cache_key(identity, samples, probe))
    root.mkdir(parents=True, exist_ok=True)
    reused = True
    with FileLock(str(cache.bin) + ".lock"):
        if not cache.exists():
            reused = False
            cache.build(bottom, samples, probe, desc)
    return cache.attach(samples), reused


def base_identity(folder: Path, *, random_init: bool, seed: int, dtype: torch.dtype, split: str) -> dict:
    """What the frozen base's hidden states depend on besides the tokens: the model folder's weight and config
    files (path, size, mtime), random-init seed, dtype and the split point."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix in (".safetensors", ".json", ".bin"))
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return {"folder": str(Path(folder).resolve()), "files": stats, "random_init": random_init,
            "seed": seed if random_init else None, "dtype": str(dtype), "split": split}
