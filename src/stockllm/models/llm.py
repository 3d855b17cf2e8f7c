"""The LoRA language-model forecaster: codec text → frozen base model + PEFT LoRA → quantile head → H × Q quantiles
of the log-returns (standardised by the causal EWMA volatility; see ``heads``).

One implementation serves both training modes. A sample is a chunk of consecutive days; the head reads the
hidden state at the last token of chosen days ("read days"), each with at least ``window_size`` days of context
inside the chunk. ``chunks`` mode (default) uses long chunks, so one forward pass trains on ~chunk_days −
window_size targets; ``windows`` mode is the special case chunk = window with one read (the seed's way).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from ..checkpoint import META_FILE, read_safetensors
from ..codec import Codec, SeriesTokens
from ..config import LOOP_LIMITS, DataConfig, LoRAConfig, flat_dict, from_dict, old_head_base, to_dict
from ..device import resolve_device
from ..errors import StockLLMError
from ..features import date_split, targets
from ..hf import is_causal
from ..progress import progress_bar
from ..quantiles import pinball, standard_scale, z_scores
from .base import Forecaster, span
from .fhs import fhs_quantiles
from .heads import QuantileHead, pinball_loss
from .topk import TopHead, base_identity, cached_states, collate_cached, lora_layer_ids, split_model

HEAD_FILE = "head.safetensors"
ADAPTER_DIR = "adapter"


class RegressionLM(nn.Module):
    """Backbone (PEFT-wrapped ``AutoModel``) plus a quantile head read at explicit token positions."""

    def __init__(self, backbone: nn.Module, hidden_size: int, horizon: int, levels):
        super().__init__()
        self.backbone = backbone
        # Zero-initialised: the untrained model is the naive EWMA Gaussian walk; training must earn every deviation.
        self.head = QuantileHead(hidden_size, horizon, levels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, read_pos: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask: [B, T]; read_pos: [B, P] token indices (-1 = padding) → [B, P, H, Q] float32
        non-crossing quantiles of the standardised log-returns."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, T, d]
        idx = read_pos.clamp_min(0).unsqueeze(-1).expand(-1, -1, hidden.size(-1))
        return self.head(torch.gather(hidden, 1, idx).float())


def plan_chunks(read_days: np.ndarray, chunk_days: int, window: int) -> list[tuple[int, int, np.ndarray]]:
    """Cover sorted ``read_days`` with chunks ``(start, stop, reads)`` of at most ``chunk_days`` rows.

    Each read day d satisfies start + window − 1 <= d < stop, so it sees at least ``window`` days. Planned from
    the end, so the latest day (the one a forecast is made from) gets the longest context.
    """
    read_days = np.asarray(read_days, dtype=np.int64)
    if len(read_days) and read_days.min() < window - 1:
        raise ValueError(f"read days must be >= window - 1 = {window - 1}: they need a full window of history")
    plans, i = [], len(read_days) - 1
    while i >= 0:
        stop = int(read_days[i]) + 1
        start = max(0, stop - chunk_days)
        j = int(np.searchsorted(read_days, start + window - 1))
        plans.append((start, stop, read_days[j:i + 1]))
        i = j - 1
    return plans[::-1]


def grid_chunks(read_days: np.ndarray, chunk_days: int, window: int) -> list[tuple[int, int, np.ndarray]]:
    """Cover ``read_days`` with chunks ``(start, stop, reads)`` whose start depends on each read day alone.

    Day d is read in the chunk starting at g(d) = ((d − window + 1) // S)·S, S = chunk_days − window + 1, on a
    fixed grid of rows. So d always sees the same d − g(d) + 1 ∈ [window, chunk_days] days of context, whichever
    other days are asked with it: a forecast does not depend on the origin set (a backtest scores exactly what
    ``predict`` runs on the history up to d). With chunk = window (windows mode) every day reads its own window.
    Each chunk stops after its last read day; causal attention keeps later days from touching earlier reads.
    """
    days = np.unique(np.asarray(read_days, dtype=np.int64))
    if len(days) and days[0] < window - 1:
        raise ValueError(f"read days must be >= window - 1 = {window - 1}: they need a full window of history")
    stride = chunk_days - window + 1
    starts = (days - window + 1) // stride * stride
    cells, first = np.unique(starts, return_index=True)
    bounds = list(first[1:]) + [len(days)]
    return [(int(g), int(days[b - 1]) + 1, days[a:b]) for g, a, b in zip(cells, first, bounds)]


def _samples(tokens: SeriesTokens, plans, y: np.ndarray | None) -> list[dict]:
    out = []
    for start, stop, reads in plans:
        ids, day_end = tokens.chunk(start, stop)
        out.append({"ids": ids, "read_pos": day_end[reads - start], "days": reads,
                    "y": None if y is None else y[reads]})
    return out


def _collate(batch: list[dict], pad_id: int) -> dict:
    """Right-pad to the longest sequence of the batch (dynamic padding); reads are explicit, so side is free."""
    T = max(len(s["ids"]) for s in batch)
    P = max(len(s["read_pos"]) for s in batch)
    ids = torch.full((len(batch), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), T), dtype=torch.long)
    pos = torch.full((len(batch), P), -1, dtype=torch.long)
    out = {"input_ids": ids, "attention_mask": mask, "read_pos": pos}
    has_y = batch[0]["y"] is not None
    if has_y:
        y = torch.zeros((len(batch), P, batch[0]["y"].shape[1]), dtype=torch.float32)
    for b, s in enumerate(batch):
        ids[b, : len(s["ids"])] = torch.from_numpy(s["ids"])
        mask[b, : len(s["ids"])] = 1
        pos[b, : len(s["read_pos"])] = torch.from_numpy(s["read_pos"])
        if has_y:
            y[b, : len(s["y"])] = torch.from_numpy(s["y"]).float()
    if has_y:
        out["y"] = y
    return out


def quantile_loss(pred: torch.Tensor, batch: dict, levels: Sequence[float]) -> tuple[torch.Tensor, int]:
    """The LLM's training and validation loss: mean pinball loss over the read targets, horizons and levels.

    pred: [B, P, H, Q] head output; batch["y"]: [B, P, H] log-returns ÷ (σ_EWMA·√h); padding reads (read_pos −1)
    are not counted. Returns (loss, number of read targets).
    """
    tau = torch.as_tensor(levels, dtype=pred.dtype, device=pred.device)
    return pinball_loss(pred, batch["y"].to(pred.device), tau, batch["read_pos"].to(pred.device) >= 0)


def batch_loss(model: nn.Module, batch: dict, levels: Sequence[float]) -> tuple[torch.Tensor, int]:
    """Forward a collated batch and return (the training loss, number of read targets)."""
    return quantile_loss(model(batch["input_ids"], batch["attention_mask"], batch["read_pos"]), batch, levels)


def cached_loss(module: nn.Module, batch: dict, levels: Sequence[float]) -> tuple[torch.Tensor, int]:
    """``batch_loss`` for the cached path: ``module`` is a ``TopHead`` and ``batch`` from ``collate_cached``."""
    return quantile_loss(module(batch["hidden"], batch["attention_mask"], batch["read_pos"]), batch, levels)


def _batch_counts(batch: dict) -> tuple[int, int]:
    """(real tokens, read targets) in a collated batch."""
    return int(batch["attention_mask"].sum()), int((batch["read_pos"] >= 0).sum())


class LoRAForecaster(Forecaster):
    """Fine-tunes a causal LM with LoRA (PEFT) and a regression head on codec text. See the module docstring."""

    kind = "lora"

    def __init__(self, data: DataConfig | None = None, config: LoRAConfig | None = None):
        super().__init__(data)
        self.config = config or LoRAConfig()
        if self.config.train_mode not in ("chunks", "windows"):
            raise StockLLMError(f"unknown --train_mode {self.config.train_mode!r}: use chunks or windows")
        if self.config.train_mode == "chunks" and self.config.chunk_days <= self.window_size:
            raise StockLLMError(f"--chunk_days {self.config.chunk_days} must exceed --window_size {self.window_size}")
        if self.config.train.batch_size is None:
            self.config.train.batch_size = 1 if self.config.train_mode == "chunks" else 4
        self.codec = Codec(self.config.prompt_format, features=self.data.features)
        self.model: RegressionLM | None = None
        self.tokenizer = None
        self.base_info: dict = {}
        self._adapter_dir: Path | None = None
        self._head_state: dict | None = None
        self._head_base: np.ndarray | None = None  # [H, Q] the untrained head's quantiles; None: standard normal
        self._resumed_from: str | None = None
        self._main_process = True  # under `accelerate launch`, only rank 0 writes checkpoints

    @property
    def chunk_days(self) -> int:
        """Days per sequence: chunk_days in chunks mode, the window itself in windows mode."""
        return self.config.chunk_days if self.config.train_mode == "chunks" else self.window_size

    # --- building ------------------------------------------------------------------------------------------
    def _build(self, trainable: bool) -> None:
        """Load the base model, attach LoRA (new, or the saved adapter) and the head, on the resolved device."""
        from ..progress import status

        cfg = self.config
        device, dtype = resolve_device(cfg.device)
        status(f"loading base model {cfg.model_path} on {device.type} ({str(dtype).replace('torch.', '')}) ...")
        from peft import LoraConfig, PeftModel, get_peft_model

        base, self.tokenizer, self._base_folder = self._load_base(device, dtype)
        self._dtype = dtype
        if cfg.train_mode == "chunks" and not is_causal(base.config):
            raise StockLLMError(f"{cfg.model_path} ({base.config.model_type}) is not a causal decoder: it attends to "
                                "later tokens, so in chunks mode later days would leak into earlier days' forecasts; "
                                "use a causal LM (Qwen, Llama, SmolLM2, ...) or --train_mode windows")
        hidden = base.config.hidden_size
        info = {"model_path": cfg.model_path, "model_type": base.config.model_type, "hidden_size": hidden,
                "num_hidden_layers": base.config.num_hidden_layers}
        if self.base_info:
            self._check_base(info)
        self.base_info = info
        if cfg.gradient_checkpointing and trainable:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self._adapter_dir is not None:
            try:
                backbone = PeftModel.from_pretrained(base, self._adapter_dir, is_trainable=trainable)
            except Exception as exc:  # noqa: BLE001 - shape/key mismatches surface as several error types
                raise StockLLMError(f"the adapter in {self._adapter_dir} does not fit base model {cfg.model_path}: "
                                    f"{str(exc).splitlines()[0]}; pass the base model it was trained on") from None
        else:
            targets_ = cfg.target_modules if cfg.target_modules == "all-linear" else cfg.target_modules.split(",")
            layers = base.config.num_hidden_layers
            k = cfg.top_layers(layers)
            # The top K blocks only (PEFT's layers_to_transform); the probe (K = 0) keeps LoRA on every block at
            # B = 0, frozen, as freeze_base always did, so its checkpoint has the usual layout.
            only = {}
            if k and k < layers:
                only = {"layers_to_transform": lora_layer_ids(layers, k), "layers_pattern": "layers"}
                if isinstance(targets_, str):  # PEFT takes layers_to_transform with a list of names only
                    targets_ = sorted({n.rsplit(".", 1)[-1] for n, m in base.named_modules()
                                       if isinstance(m, nn.Linear) and ".layers." in f".{n}"})
            lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=targets_, bias="none", **only)
            try:
                backbone = get_peft_model(base, lora)
            except ValueError as exc:
                raise StockLLMError(f"LoRA could not be attached: {exc}; check --target_modules") from None
        self.model = RegressionLM(backbone, hidden, self.horizon, self.quantiles).to(device)
        if self._head_state is not None:
            weight = self._head_state["weight"]
            if weight.shape != self.model.head.linear.weight.shape:
                raise StockLLMError(f"the checkpoint's head has shape {tuple(weight.shape)}, but horizon "
                                    f"{self.horizon} × {len(self.quantiles)} levels on base model {cfg.model_path} "
                                    f"(hidden size {hidden}) needs {tuple(self.model.head.linear.weight.shape)}: pass "
                                    "the base model it was trained on (a checkpoint from an older stockllm with a "
                                    "point head must be trained again)")
            self.model.head.linear.load_state_dict({"weight": weight, "bias": self._head_state["bias"]})
        if self._head_base is not None:
            self.model.head.set_base(self._head_base)
        self.model.head.requires_grad_(trainable)

    def build(self, trainable: bool = True) -> RegressionLM:
        """Load the base model, attach LoRA and the head (``fit`` and ``predict_quantiles`` do it when needed) and
        return the model. ``trainable``: LoRA and head require grad (for training); False loads for inference.
        Build before ``fit`` to hook the model first (the benchmarks time phases from forward pre-hooks)."""
        self._build(trainable)
        return self.model

    def _load_base(self, device, dtype):
        from ..hf import load_base

        cfg = self.config
        return load_base(cfg.model_path, device=device, dtype=dtype, trust_remote_code=cfg.trust_remote_code,
                         random_init=cfg.random_init, seed=cfg.train.seed)

    def _top_k(self) -> int | None:
        """The top blocks whose LoRA trains (``LoRAConfig.top_layers``) on the built base."""
        return self.config.top_layers(self.base_info["num_hidden_layers"])

    def _lora_trains(self, name: str) -> bool:
        """Whether the backbone parameter ``name`` trains: LoRA weights of the top K blocks (every block with
        ``--lora_layers all``, none for the probe)."""
        k = self._top_k()
        if "lora_" not in name or k == 0:
            return False
        layer = re.search(r"\.layers\.(\d+)\.", name)
        return k is None or layer is None or int(layer.group(1)) >= self.base_info["num_hidden_layers"] - k

    def _freeze_adapter(self) -> None:
        """Only LoRA of the top K blocks trains. The probe (``--lora_layers 0``, ``freeze_base``): LoRA stays
        attached (B = 0: the backbone computes exactly the base model, and the checkpoint keeps its layout) but
        nothing in the backbone trains, only the head. A warm start's adapter below the top K stays as loaded."""
        if self.model is not None:
            for name, p in self.model.backbone.named_parameters():
                p.requires_grad_(self._lora_trains(name))

    def _check_base(self, info: dict) -> None:
        want = self.base_info
        for key in ("model_type", "hidden_size", "num_hidden_layers"):
            if want.get(key) != info.get(key):
                raise StockLLMError(
                    f"this checkpoint was trained on {want.get('model_path')} ({want.get('model_type')}, hidden size "
                    f"{want.get('hidden_size')}, {want.get('num_hidden_layers')} layers) but --model_path "
                    f"{info['model_path']} is {info.get('model_type')}, hidden size {info.get('hidden_size')}, "
                    f"{info.get('num_hidden_layers')} layers: pass the base model it was trained on")

    def num_trainable_parameters(self) -> int:
        """LoRA parameters of the trained blocks plus the head (what training changes); the head alone for the
        probe."""
        if self.model is None:
            return 0
        lora = sum(p.numel() for n, p in self.model.backbone.named_parameters() if self._lora_trains(n))
        return lora + sum(p.numel() for p in self.model.head.parameters())

    def trainable_parameters_detail(self) -> str:
        """' (LoRA n + head m)' for the CLI report (fit checks n against PEFT's own count)."""
        if self.model is None:
            return ""
        head = sum(p.numel() for p in self.model.head.parameters())
        base = "random weights" if self.config.random_init else "pretrained"
        if self._top_k() == 0:
            return f" (head only: the {base} base is frozen, a linear probe)"
        k = self._top_k()
        where = "every block" if k is None else f"the top {k} of {self.base_info['num_hidden_layers']} blocks"
        return f" (LoRA {self.num_trainable_parameters() - head:,} on {where} + head {head:,}; {base} base)"

    # --- data ----------------------------------------------------------------------------------------------
    def samples(self, frame: pd.DataFrame, days: np.ndarray, y: np.ndarray | None = None, planner=plan_chunks,
                chunk_days: int | None = None) -> list[dict]:
        """The model's inputs for reading ``days`` (row indices of ``frame``): one sample per chunk of ``planner``
        (``plan_chunks`` for training, ``grid_chunks`` for forecasts) of at most ``chunk_days`` rows (default:
        the forecaster's own). Needs ``tokenizer`` (set by ``build``).

        Each sample: ``ids`` int64 [T] token ids of the chunk's text; ``read_pos`` int64 [P] the index of each
        read day's last token; ``days`` int64 [P] those rows; ``y`` [P, H] the rows of ``y`` (frame rows × H,
        the standardised targets) at those days, or None without ``y``.
        """
        tokens = SeriesTokens(self.codec, self.tokenizer, frame)
        return _samples(tokens, planner(days, chunk_days or self.chunk_days, self.window_size), y)

    def tokens_per_window(self, frame: pd.DataFrame) -> float:
        """Mean tokens of a ``window_size``-day window of this frame in the configured codec."""
        tokens = SeriesTokens(self.codec, self.tokenizer, frame)
        starts = np.linspace(0, len(frame) - self.window_size, num=min(20, len(frame) - self.window_size + 1))
        return float(np.mean([len(tokens.chunk(int(s), int(s) + self.window_size)[0]) for s in starts]))

    def _training_samples(self, frames: Sequence[pd.DataFrame]) -> tuple[list[dict], list[dict], list[str]]:
        """Chunk samples for training and validation (the last ``val_size`` of all series' dates, one date for
        all), targets divided by the causal EWMA scale σ[t]·√h. Returns (train, val, notes on bounds applied)."""
        cfg, notes, parts = self.config, [], []
        splits = date_split(frames, self.window_size, self.horizon, cfg.val_size)
        for frame, (train, val) in zip(frames, splits):
            if cfg.max_train_windows and len(train) > cfg.max_train_windows:
                train = train[-cfg.max_train_windows:]
                notes.append(f"trained on the last {cfg.max_train_windows} windows of each series (--max_train_windows)")
            if cfg.max_val_windows and len(val) > cfg.max_val_windows:
                val = val[-cfg.max_val_windows:]
                notes.append(f"validated on the last {cfg.max_val_windows} windows of each series' validation part")
            parts.append((frame, train, val, targets(frame, self.horizon, np.arange(len(frame)))))
        if sum(len(train) for _, train, _, _ in parts) < 1:
            raise StockLLMError("no training windows: pass a longer history or a smaller --window_size")
        if cfg.head_base == "fhs" and self._head_state is None:
            # A warm start keeps the base its head was trained on; a new head starts at FHS of the training part.
            # Every training origin, not only the --max_train_windows the LLM reads: the base costs nothing to
            # compute, and FHS of a few hundred days is a worse start than FHS of the whole training part.
            self._head_base = fhs_quantiles(frames, [train for train, _ in splits], self.horizon, self.quantiles)
            if self.model is not None:
                self.model.head.set_base(self._head_base)
        train_samples, val_samples = [], []
        for frame, train, val, y in parts:
            ys = np.nan_to_num(y / self._scale(frame, np.arange(len(frame))))  # NaN only where never read
            train_samples += self.samples(frame, train, ys)
            if len(val):
                val_samples += self.samples(frame, val, ys)
        self._auto_checkpointing(train_samples, notes)
        return train_samples, val_samples, notes

    def _auto_checkpointing(self, samples: list[dict], notes: list[str]) -> None:
        """With ``gradient_checkpointing`` None (the default), turn it on when the longest step's saved activations
        would not fit the memory budget (``memory.needs_checkpointing``); True forces it on in ``_build``."""
        from ..memory import needs_checkpointing

        cfg = self.config
        if cfg.gradient_checkpointing is not None or not samples or self.model is None or self._top_k() is not None:
            return  # the cached path runs K blocks a step: their activations are small
        longest = sorted((len(s["ids"]) for s in samples), reverse=True)[: cfg.train.batch_size]
        base = self.model.backbone.get_base_model()
        device = next(self.model.head.parameters()).device
        on, why = needs_checkpointing(base, max(longest) * len(longest), cfg.lora_dropout, device)
        if on:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            notes.append(f"gradient checkpointing turned on: {why} (about 1.5× the step time)")

    # --- training ------------------------------------------------------------------------------------------
    def fit(self, frames: Sequence[pd.DataFrame], progress: bool = True, save_dir=None,
            resume: bool = False) -> "LoRAForecaster":
        """Train LoRA + head on the frames (pooled), validating on the last ``val_size`` of their dates.

        The loop is ``stockllm.loop.fit`` (accelerate: ``accelerate launch -m stockllm.cli train ...`` spreads it
        over processes). It keeps the best validation state; the untrained model (= naive) is the first candidate.
        With ``save_dir`` it saves training state every ``save_every`` steps and the best checkpoint beside it;
        ``resume`` continues from the newest state there.
        """
        from accelerate.utils import set_seed

        from .. import loop as train

        cfg = self.config
        if self.model is None:
            set_seed(cfg.train.seed)  # LoRA's random init: the same seed gives the same start in any process
            self._build(trainable=True)
        self._freeze_adapter()
        self._main_process = int(os.environ.get("RANK", "0")) == 0
        say = tqdm.write if (progress and self._main_process) else (lambda *_: None)
        train_samples, val_samples, notes = self._training_samples(frames)
        if cfg.random_init:
            notes.append(f"--random_init: the base is {cfg.model_path}'s architecture with random weights (seed "
                         f"{cfg.train.seed}), an ablation of pretraining")
        if self._top_k() == 0:
            notes.append("the probe (--lora_layers 0 or --freeze_base): only the head trained, on the frozen base's "
                         "last hidden states")
        elif self._top_k() is not None:
            notes.append(f"LoRA on the top {self._top_k()} of {self.base_info['num_hidden_layers']} blocks, trained on "
                         "the cached states of the frozen blocks below (--lora_layers)")
        n_targets = sum(len(s["read_pos"]) for s in train_samples)
        n_tokens = sum(len(s["ids"]) for s in train_samples)
        tpw = self.tokens_per_window(frames[0])
        say(f"codec {self.codec.name}: {tpw:.0f} tokens per {self.window_size}-day window; {cfg.train_mode} mode: "
            f"{len(train_samples)} sequences, {n_tokens / len(train_samples):.0f} tokens and "
            f"{n_targets / len(train_samples):.1f} targets each ({n_tokens / n_targets:.1f} tokens per target)")
        lora_params = self.model.backbone.get_nb_trainable_parameters()[0]  # PEFT's own count
        trained = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        if trained != lora_params + sum(p.numel() for p in self.model.head.parameters()):
            raise RuntimeError("trainable parameters other than LoRA and the head: the base model is not frozen")
        pad_id = self._pad_id()
        naive_val = (float(np.mean(np.concatenate([pinball(s["y"], self._start_z, self.quantiles)
                                                   for s in val_samples])))
                     if val_samples else float("nan"))
        series = [span(f) for f in frames]
        base = {"series": series, "start": cfg.head_base, "train_sequences": len(train_samples), "train_targets": n_targets,
                "val_targets": int(sum(len(s["read_pos"]) for s in val_samples)), "lora_parameters_peft": lora_params,
                "tokens_per_window": tpw, "tokens_per_target": n_tokens / n_targets}
        if self._resumed_from:
            base["resumed_from"] = self._resumed_from

        def save_checkpoint(info: dict) -> None:
            self.fit_info = {**base, **info}
            self.save(save_dir)

        if self._top_k() is None:
            module, collate = self.model, (lambda b: _collate(b, pad_id))
            loss = lambda model, batch: batch_loss(model, batch, self.quantiles)[0]  # noqa: E731
            validate = lambda model, bar, shard: self._val_sums(model, val_samples[shard[0]::shard[1]],  # noqa: E731
                                                                pad_id, progress=bar)
        else:
            base["hidden_cache"] = self._attach_all(train_samples, val_samples, say)
            module, collate = self.top_head(), collate_cached
            loss = lambda model, batch: cached_loss(model, batch, self.quantiles)[0]  # noqa: E731
            validate = lambda model, bar, shard: self._cached_val_sums(  # noqa: E731
                model, val_samples[shard[0]::shard[1]], progress=bar)
        task = train.Task(
            module=module, train_data=train_samples, collate=collate, loss=loss, validate=validate,
            naive_val=naive_val, count=_batch_counts, save_checkpoint=save_checkpoint,
            fingerprint={"data": vars(self.data), "config": self._resume_settings(), "codec": asdict(self.codec),
                         "base_model": self.base_info, "series": series})
        if cfg.compile:
            # In place (nn.Module.compile): parameter names stay as they are, so states and checkpoints do not
            # change. The first steps and the first validation pay the compile.
            say("--compile: torch.compile of the model; the first step and validation compile it (minutes), "
                "later ones run faster")
            module.compile()
        info = train.fit(task, cfg.train, device=cfg.device, progress=progress, save_dir=save_dir, resume=resume,
                         label=f"lora {cfg.train_mode}")
        info["notes"] = sorted(set(info["notes"]) | set(notes))
        self.model.eval()
        self.fit_info = {**base, **info}
        return self

    # --- the cached top-K path (``topk``) ----------------------------------------------------------------------
    def attach_hidden(self, samples: list[dict], desc: str = "cache hidden states",
                      root: Path | None = None) -> tuple[int, bool]:
        """Give each sample (from ``samples``) the frozen lower blocks' output as ``sample["hidden"]``: the states
        entering block L − K, [T, d] in the model's dtype, or for the probe (K = 0) the final states at its read
        positions, [P, d]. Computed once with no gradient and kept under ``<cache>/hidden/`` (memory-mapped),
        where a later run with the same base, chunks and K finds them (``root``: another folder). Returns (bytes,
        reused)."""
        from ..hf import cache_root
        from .topk import CACHE_DIR

        k, layers = self._top_k(), self.base_info["num_hidden_layers"]
        base = self.model.backbone.get_base_model()
        bottom = base if k == 0 else split_model(base, 0, layers - k, norm=False)
        identity = base_identity(self._base_folder, random_init=self.config.random_init, seed=self.config.train.seed,
                                 dtype=self._dtype, split="probe" if k == 0 else layers - k)
        if self._adapter_dir is not None:  # a warm start's adapter may change the lower blocks too
            identity["adapter"] = base_identity(self._adapter_dir, random_init=False, seed=0, dtype=self._dtype,
                                                split=None)["files"]
        return cached_states(bottom, samples, identity, root or cache_root() / CACHE_DIR, probe=k == 0, desc=desc)

    def top_head(self) -> TopHead:
        """The module a cached step trains: the base's top K blocks (sharing LoRA with the full model) and the
        head; for the probe the head alone. Call with (hidden, attention_mask, read_pos) of ``collate_cached``."""
        k, layers = self._top_k(), self.base_info["num_hidden_layers"]
        base = self.model.backbone.get_base_model()
        return TopHead(None if k == 0 else split_model(base, layers - k, layers), self.model.head)

    def _attach_all(self, train_samples: list[dict], val_samples: list[dict], say) -> dict:
        """Cache the training and validation chunks' hidden states; a record of their size and cost."""
        import time

        t0 = time.perf_counter()
        tokens = sum(len(s["ids"]) for s in train_samples + val_samples)
        size, reused = self.attach_hidden(train_samples, "cache hidden states (train)")
        vsize, vreused = self.attach_hidden(val_samples, "cache hidden states (validation)")
        seconds = time.perf_counter() - t0
        k = self._top_k()
        what = "final hidden states at the reads (probe)" if k == 0 else f"states entering the top {k} blocks"
        say(f"hidden-state cache: {what}, {(size + vsize) / 2**20:.0f} MiB for {tokens:,} tokens, "
            + ("reused from an earlier run" if reused and vreused else f"built in {seconds:.0f} s"))
        return {"bytes": size + vsize, "tokens": tokens, "seconds": round(seconds, 2), "reused": reused and vreused,
                "top_layers": k}

    def _cached_val_sums(self, module: TopHead, samples: list[dict], progress: bool = False) -> tuple[float, int]:
        """(Summed pinball loss, read targets) over cached validation samples, as ``_val_sums`` on the full
        model."""
        total, count = 0.0, 0
        if not samples:
            return total, count
        device, bs = next(module.head.parameters()).device, max(self.config.train.batch_size, 1)
        bar = progress_bar(total=len(samples), desc="validate", unit="seq", leave=False, enabled=progress)
        module.eval()
        with torch.inference_mode():
            for i in range(0, len(samples), bs):
                batch = {k: v.to(device) for k, v in collate_cached(samples[i:i + bs]).items()}
                loss, n = cached_loss(module, batch, self.quantiles)
                total, count = total + loss.item() * n, count + n
                bar.update(min(bs, len(samples) - i))
        bar.close()
        return total, count

    def _resume_settings(self) -> dict:
        """The config entries an exact resume must share with the saved state (the rest are per-run limits)."""
        per_run = (*LOOP_LIMITS, "device", "trust_remote_code", "compile")
        return {k: v for k, v in flat_dict(self.config).items() if k not in per_run}

    def _pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def collate(self, samples: list[dict]) -> dict:
        """One batch of ``samples``, right-padded with the tokenizer's pad id to the longest: ``input_ids`` and
        ``attention_mask`` [B, T], ``read_pos`` [B, P] (−1 = padding), and ``y`` [B, P, H] float32 if the
        samples carry targets. Tensors on the CPU."""
        return _collate(samples, self._pad_id())

    def forward_batches(self, samples: list[dict], desc: str | None = None):
        """Yield (samples of the batch, collated batch, predictions [B, P, H, Q] float32 on the CPU, in units of
        the standardised return) for ``samples`` in batches of ``batch_size``, under inference_mode, on the
        built model. ``desc``: a progress bar with this label when there is more than one batch."""
        yield from self._forward_samples(self.model, samples, self._pad_id(), desc=desc)

    def forward_backward(self, batch: dict, model: nn.Module | None = None) -> float:
        """The compute of one training step without the optimizer update: in training mode, forward a collated
        batch (``collate``, with targets), the training loss (``quantile_loss``: mean pinball over read targets,
        horizons and levels, standardised-return units), backward; the gradients are then dropped. ``model``: the
        built model (default) or a wrapper of it, e.g. ``torch.compile(forecaster.model)``. Returns the loss."""
        self.model.train()
        device = next(self.model.head.parameters()).device
        tensors = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
        loss, _ = batch_loss(self.model if model is None else model, tensors, self.quantiles)
        loss.backward()
        self.model.zero_grad(set_to_none=True)
        return loss.item()

    def _forward_samples(self, model: RegressionLM, samples: list[dict], pad_id: int, desc: str | None = None):
        """Yield (samples of the batch, collated batch, predictions [B, P, H, Q] float32 on CPU) under inference_mode.

        ``desc``: show a progress bar (or log lines) with this label when there is more than one batch.
        """
        device = next(model.head.parameters()).device
        bs = max(self.config.train.batch_size, 1)
        starts = range(0, len(samples), bs)
        model.eval()
        with torch.inference_mode():
            for i in progress_bar(starts, desc=desc or "", unit="batch", leave=False,
                                  enabled=False if desc is None or len(starts) < 2 else None):
                chunk = samples[i:i + bs]
                batch = _collate(chunk, pad_id)
                pred = model(batch["input_ids"].to(device), batch["attention_mask"].to(device),
                             batch["read_pos"].to(device))
                yield chunk, batch, pred.cpu()

    def _val_sums(self, model: RegressionLM, samples: list[dict], pad_id: int,
                  progress: bool = False) -> tuple[float, int]:
        """(Summed pinball loss, number of read targets) over ``samples``; (0.0, 0) for none. A bar when
        ``progress``."""
        total, count = 0.0, 0
        if not samples:
            return total, count
        bar = progress_bar(total=len(samples), desc="validate", unit="seq", leave=False, enabled=progress)
        for chunk, batch, pred in self._forward_samples(model, samples, pad_id):
            loss, n = quantile_loss(pred, batch, self.quantiles)
            total, count = total + loss.item() * n, count + n
            bar.update(len(chunk))
        bar.close()
        return total, count

    # --- prediction ----------------------------------------------------------------------------------------
    @property
    def _start_z(self) -> np.ndarray:
        """The untrained head's output [H, Q]: FHS's standardised quantiles, or the standard normal ones."""
        if self._head_base is not None:
            return self._head_base
        return np.tile(z_scores(self.quantiles), (self.horizon, 1))

    def _scale(self, frame, origins) -> np.ndarray:
        return standard_scale(frame["Close"].to_numpy(dtype=np.float64), origins, self.horizon)

    def predict_quantiles(self, frame, origins):
        """Read every origin from chunks on a fixed grid of rows (``grid_chunks``: the context of origin t depends
        on t alone), batched under inference_mode."""
        if self.model is None:
            self._build(trainable=False)
        origins = np.asarray(origins, dtype=np.int64)
        samples = self.samples(frame, origins, None, planner=grid_chunks)
        by_day = {}
        for chunk, _, pred in self.forward_batches(samples, desc=f"lora: {len(np.unique(origins))} forecasts"):
            for b, s in enumerate(chunk):
                for p, d in enumerate(s["days"]):
                    by_day[int(d)] = pred[b, p]
        z = torch.stack([by_day[int(d)] for d in origins]).double().numpy()  # [n, H, Q]
        return z * self._scale(frame, origins)[:, :, None]

    # --- checkpoints ---------------------------------------------------------------------------------------
    def config_dict(self):
        return to_dict(self.config)

    def extra_meta(self):
        return {"base_model": self.base_info, "codec": asdict(self.codec)}

    def save(self, directory):
        """Write the checkpoint folder (rank 0 only under multi-process training)."""
        return super().save(directory) if self._main_process else Path(directory)

    def _save_weights(self, directory: Path) -> None:
        if self.model is None:
            raise StockLLMError("nothing to save: the LoRA model was never trained")
        self.model.backbone.save_pretrained(directory / ADAPTER_DIR, safe_serialization=True)
        head = self.model.head.linear
        save_file({"weight": head.weight.detach().float().cpu().contiguous(),
                   "bias": head.bias.detach().float().cpu().contiguous(),
                   "base": torch.from_numpy(np.ascontiguousarray(self._start_z))}, str(directory / HEAD_FILE))

    @classmethod
    def _from_meta(cls, meta, directory, train_config: LoRAConfig | None = None, **overrides):
        """Rebuild from a checkpoint. ``overrides`` (model_path, device, trust_remote_code) replace saved values;
        ``train_config`` (--resume DIR) is the new run's whole config (the CLI copies the weight-shaping settings
        from the checkpoint into it), device and trust_remote_code included."""
        config = from_dict(LoRAConfig, old_head_base(meta.get("config", {})), source=directory)
        # Never taken from the file: a shared checkpoint must not switch on remote code, nor pin a device
        # the user's machine may lack. Only this run's flags decide.
        config.trust_remote_code = bool(overrides.pop("trust_remote_code", False))
        config.device = overrides.pop("device", None) or "auto"
        for key, value in overrides.items():
            if value is not None:
                setattr(config, key, value)
        if train_config is not None:
            config = train_config
        model = cls(from_dict(DataConfig, meta.get("data", {}), source=directory), config)
        model.base_info = dict(meta.get("base_model", {}))
        if meta.get("codec"):
            model.codec = Codec(**meta["codec"])
        head_path, adapter = directory / HEAD_FILE, directory / ADAPTER_DIR
        if not head_path.is_file() or not adapter.is_dir():
            raise StockLLMError(f"{directory} lacks {HEAD_FILE} or {ADAPTER_DIR}/: the checkpoint is incomplete; "
                                "train again")
        tensors = read_safetensors(head_path)
        read_safetensors(adapter / "adapter_model.safetensors")  # a damaged adapter fails here, in one line
        model._check_head(tensors, head_path)
        model._head_state = {"weight": tensors["weight"], "bias": tensors["bias"]}
        if "base" in tensors:  # heads saved before head_base started at the standard normal quantiles
            model._head_base = tensors["base"].double().numpy()
            if model._head_base.shape != (model.horizon, len(model.quantiles)) or not (
                    np.diff(model._head_base, axis=1) > 0).all():
                raise StockLLMError(f"{head_path}: base is not {model.horizon} increasing rows of "
                                    f"{len(model.quantiles)} quantiles; the checkpoint is damaged, train again")
        model._adapter_dir = adapter
        if train_config is not None:
            model._resumed_from = str(directory)
        return model

    def _check_head(self, tensors: dict, path: Path) -> None:
        """Refuse a head file whose tensors do not fit the horizon and levels recorded in stockllm.json."""
        outputs = self.horizon * len(self.quantiles)
        for key, dims in {"weight": 2, "bias": 1}.items():
            t = tensors.get(key)
            if t is None or t.dim() != dims or t.shape[0] != outputs:
                shape = None if t is None else tuple(t.shape)
                raise StockLLMError(f"{path} does not match {META_FILE}: {key} has shape {shape}, but horizon "
                                    f"{self.horizon} × {len(self.quantiles)} levels need {outputs} outputs; the "
                                    "checkpoint's files come from different runs, train again")
