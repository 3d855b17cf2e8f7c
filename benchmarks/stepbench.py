"""Step-level measurements for ``benchmarks/run.py``: memory per phase, the memory and speed levers, the
Qwen3-0.6B architecture on this machine, and the GPU suite that ``benchmarks/gpu.sh`` runs.

Memory is measured in fresh child processes (``python benchmarks/stepbench.py CHILD JSON``, one JSON line out),
so that one phase's high-water mark cannot hide another's: on Linux the peak RSS (``VmHWM``) is reset between
phases by writing 5 to ``/proc/self/clear_refs``. Each phase reports its own peak (``hwm_mb``), the resident
memory at its end, and how much of it is file-backed (``rss_file_mb``: pages of memory-mapped weight files,
which the kernel can drop and re-read) vs anonymous (``rss_anon_mb``: Python, torch, activations).

Phases of one training run (``phases``): ``import`` (torch, transformers, peft, stockllm), ``load`` (base model
from the cached safetensors + LoRA + head: ``LoRAForecaster.build``), ``tokenise`` (from the end of loading to
the first forward pass: training samples, the accelerate set-up), each training ``step N`` (a step runs from
one training forward pass to the next, so it holds its backward pass and optimizer update), each
``validation`` (consecutive inference forwards) and ``save`` (the checkpoint). Phases are told apart by a
forward pre-hook on the model (training or eval mode), so they need no hook inside the training loop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NASDAQ = REPO / "src" / "stockllm" / "samples" / "nasdaq.csv"


# --- memory readings -----------------------------------------------------------------------------------------
def memory_now() -> dict:
    """Peak and current resident memory of this process in MB from /proc/self/status (Linux); {} elsewhere."""
    fields = {"VmHWM": "hwm_mb", "VmRSS": "rss_mb", "RssAnon": "rss_anon_mb", "RssFile": "rss_file_mb"}
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in fields:
                out[fields[key]] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def reset_peak() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux ``clear_refs``); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PhaseRecorder:
    """Peak memory and wall time of consecutive phases, each ended by ``mark(next_name)``."""

    def __init__(self, first: str):
        self.name, self.t0, self.phases = first, time.perf_counter(), {}
        self.resettable = reset_peak()

    def mark(self, next_name: str | None) -> None:
        self.phases[self.name] = {**memory_now(), "seconds": time.perf_counter() - self.t0}
        reset_peak()
        self.name, self.t0 = next_name, time.perf_counter()


def hook_phases(model, rec: PhaseRecorder) -> None:
    """Mark a new phase at every training forward pass (one per step at grad_accum 1) and at the first of each run
    of inference forwards (validation), from a forward pre-hook on ``model``."""
    state = {"step": 0}

    def pre(module, args):
        if rec.name is None:  # recording has ended (e.g. a backtest after the run)
            return
        if module.training:
            state["step"] += 1
            rec.mark(f"step {state['step']}")
        elif not rec.name.startswith("validation"):
            rec.mark(f"validation after step {state['step']}")

    model.register_forward_pre_hook(pre)


def summarise(phases: dict) -> dict:
    """Phase peaks in MB: import, load, tokenise, first step, steady steps (max of step ≥ 2), validation (max),
    save, and the whole run's peak."""
    steps = {k: v for k, v in phases.items() if k.startswith("step ")}
    steady = [v["hwm_mb"] for k, v in steps.items() if k != "step 1"]
    vals = [v["hwm_mb"] for k, v in phases.items() if k.startswith("validation")]
    steady_s = [v["seconds"] for k, v in steps.items() if k != "step 1"]
    get = lambda k: phases[k]["hwm_mb"] if k in phases else None  # noqa: E731
    return {"import_mb": get("import"), "load_mb": get("load"), "load_rss_file_mb": phases.get("load", {}).get(
                "rss_file_mb"), "tokenise_mb": get("tokenise"), "first_step_mb": get("step 1"),
            "steady_step_mb": max(steady) if steady else None, "validation_mb": max(vals) if vals else None,
            "save_mb": get("save"), "peak_mb": max(v["hwm_mb"] for v in phases.values() if "hwm_mb" in v),
            "step_seconds": steady_s or [v["seconds"] for v in steps.values()]}


# --- children ------------------------------------------------------------------------------------------------
def run_child(kind: str, spec: dict, timeout: float | None = None, env: dict | None = None) -> dict:
    """Run ``kind`` in a fresh Python process (this file) and return its JSON answer (``error`` on failure)."""
    environ = {**os.environ, **(env or {})}
    environ["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    try:
        done = subprocess.run([sys.executable, __file__, kind, json.dumps(spec)], capture_output=True, text=True,
                              timeout=timeout, env=environ, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:] or ''}"}
    return json.loads(lines[-1])


def _quiet() -> None:
    import warnings

    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")


def child_convert(spec: dict) -> dict:
    """GGUF → safetensors conversion into an empty cache: the phase's peak memory and seconds."""
    os.environ["STOCKLLM_CACHE"] = spec["cache"]
    _quiet()
    from stockllm.hf import gguf_to_folder

    rec = PhaseRecorder("import")
    rec.mark("gguf conversion")
    gguf_to_folder(Path(spec["gguf"]))
    rec.mark(None)
    return {"phases": rec.phases, "resettable": rec.resettable}


def child_train(spec: dict) -> dict:
    """One training run of ``LoRAForecaster`` as the CLI runs it (``spec``: model_path, config overrides, data,
    rows), phase by phase; then, if ``infer_origins``, a backtest call (``predict_returns``) on the last origins."""
    _quiet()
    import torch

    from stockllm.config import DataConfig, LoRAConfig
    from stockllm.data import load_ohlcv
    from stockllm.models.llm import LoRAForecaster

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    rec = PhaseRecorder("import")
    rec.mark("load")
    frame = load_ohlcv(spec.get("data") or str(NASDAQ))
    if spec.get("rows"):
        frame = frame.iloc[-spec["rows"]:]
    config = LoRAConfig.from_flags(model_path=spec["model_path"], **spec.get("config", {}))
    forecaster = LoRAForecaster(DataConfig(), config)
    torch.manual_seed(0)
    forecaster.build()
    rec.mark("tokenise")
    hook_phases(forecaster.model, rec)
    forecaster.fit([frame], progress=False)
    rec.mark("save")
    with tempfile.TemporaryDirectory() as tmp:
        forecaster.save(Path(tmp) / "checkpoint")
    rec.mark(None)
    info = forecaster.fit_info
    base = forecaster.model.backbone.get_base_model()
    out = {"phases": rec.phases, "resettable": rec.resettable, "summary": summarise(rec.phases),
           "train_sequences": info["train_sequences"], "tokens_per_target": info["tokens_per_target"],
           "steps": info["steps"], "train_tokens_seen": info["train_tokens_seen"],
           "notes": info.get("notes", []), "gradient_checkpointing": bool(base.is_gradient_checkpointing),
           "threads": torch.get_num_threads()}
    if spec.get("infer_origins"):
        n = spec["infer_origins"]
        origins = np.arange(len(frame) - n, len(frame))
        t0 = time.perf_counter()
        forecaster.predict_returns(frame, origins)
        out["infer_targets_per_s"] = n / (time.perf_counter() - t0)
    return out


def attention_train_flops(config, lengths) -> float:
    """FLOPs of causal attention's two matmuls in one LoRA training step over sequences of these token lengths.

    Forward, per layer and head, for the T(T+1)/2 (query, key) pairs a causal mask keeps: QKᵀ and PV cost
    2·head_dim each per pair, so 2·L·heads·head_dim·T(T+1) per sequence. The backward pass needs the gradients
    of Q, K and V (they depend on LoRA weights): dS, dV, dQ, dK, twice the forward. Training = 3 × forward =
    6·L·heads·head_dim·T(T+1) per sequence. (A kernel that recomputes scores in backward does more; that is
    its overhead, not counted.)
    """
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    width = config.num_attention_heads * head_dim
    return float(sum(6 * config.num_hidden_layers * width * t * (t + 1) for t in lengths))


def record_lengths(model) -> list[list[int]]:
    """Per training forward pass, the token counts of its sequences (a forward pre-hook; the list fills).
    The number of targets of a pass is read from ``read_pos`` (≥ 0) and appended as the last element."""
    calls: list[list[int]] = []

    def pre(module, args, kwargs):
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        read = kwargs.get("read_pos", args[2] if len(args) > 2 else None)
        if module.training and mask is not None:
            calls.append([int(n) for n in mask.sum(dim=1).tolist()] + [int((read >= 0).sum())])

    model.register_forward_pre_hook(pre, with_kwargs=True)
    return calls


def saved_mb(call, params) -> float:
    """MB of tensors (parameters excluded) autograd keeps for the backward pass of ``call()``'s forward."""
    import torch

    weights = {p.untyped_storage().data_ptr() for p in params}
    kept: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        call()
    return sum(kept.values()) / 2**20


def chunk_batch(f, frame, end: int, chunk_days: int, n_chunks: int = 1) -> dict:
    """A training batch (targets zero) of ``n_chunks`` chunks of ``chunk_days`` days each, the last ending at row
    ``end``, cut with that chunk length (not the forecaster's own); "targets" counts the read positions."""
    reads = chunk_days - f.window_size + 1
    samples = []
    for k in range(n_chunks):
        stop = end - k * reads
        samples += f.samples(frame, np.arange(stop - reads, stop), np.zeros((len(frame), f.horizon)),
                             chunk_days=chunk_days)
    return f.collate(samples) | {"targets": sum(len(s["read_pos"]) for s in samples)}


def child_levers(spec: dict) -> dict:
    """Speed and saved-activation levers on one training step (forward + backward of one chunk of the training
    part's end), interleaved best-of-``reps`` timings in one process so that load on a shared machine hits every
    side alike. Ratios are targets/s of the lever ÷ targets/s of the reference (> 1: the lever is faster)."""
    _quiet()
    import torch

    from stockllm.config import DataConfig, LoRAConfig
    from stockllm.data import load_ohlcv
    from stockllm.models.llm import LoRAForecaster

    frame = load_ohlcv(spec.get("data") or str(NASDAQ))
    end = int(len(frame) * 0.8)  # the default run's training part ends near here
    reps = spec.get("reps", 2)

    def build(**over):
        torch.manual_seed(0)
        f = LoRAForecaster(DataConfig(), LoRAConfig.from_flags(model_path=spec["model_path"], **over))
        f.build()
        return f

    def batch_for(f, chunk_days: int, n_chunks: int = 1) -> dict:
        return chunk_batch(f, frame, end, chunk_days, n_chunks)

    def step_call(f, batch, threads=None):
        def call():
            old = torch.get_num_threads()
            if threads:
                torch.set_num_threads(threads)
            try:
                f.forward_backward(batch)
            finally:
                torch.set_num_threads(old)
        return call

    ref, drop = build(lora_dropout=0.0), build(lora_dropout=0.05)
    b128 = batch_for(ref, 128)
    cases = {"reference (dropout 0, 128-day chunk, batch 1)": (ref, b128, None),
             "lora_dropout 0.05": (drop, b128, None)}
    if torch.get_num_threads() > 1:
        cases["1 torch thread"] = (ref, b128, 1)
    for days in spec.get("chunk_days", [64, 256]):
        cases[f"{days}-day chunk"] = (ref, batch_for(ref, days), None)
    cases["batch 2 of 128-day chunks"] = (ref, batch_for(ref, 128, 2), None)
    calls = {name: step_call(f, b, th) for name, (f, b, th) in cases.items()}

    def gc_on(on: bool) -> None:
        base = ref.model.backbone.get_base_model()
        if on:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            base.gradient_checkpointing_disable()

    def with_gc(call):
        def wrapped():
            gc_on(True)
            try:
                call()
            finally:
                gc_on(False)
        return wrapped

    calls["gradient checkpointing"] = with_gc(calls["reference (dropout 0, 128-day chunk, batch 1)"])
    best = dict.fromkeys(calls, float("inf"))
    for rep in range(reps + 1):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            if rep:
                best[name] = min(best[name], time.perf_counter() - t0)
    ref_name = "reference (dropout 0, 128-day chunk, batch 1)"
    batches = {name: b for name, (_, b, _) in cases.items()} | {"gradient checkpointing": b128}
    out = {"reps": reps, "cases": {}}
    for name, secs in best.items():
        b = batches[name]
        out["cases"][name] = {"seconds": secs, "tokens": int(b["attention_mask"].sum()), "targets": b["targets"],
                              "targets_per_s": b["targets"] / secs}
    ref_rate = out["cases"][ref_name]["targets_per_s"]
    for case in out["cases"].values():
        case["ratio"] = case["targets_per_s"] / ref_rate
    params = list(ref.model.parameters())
    out["saved_mb"] = {"dropout 0": saved_mb(step_call(ref, b128), params),
                       "dropout 0.05": saved_mb(step_call(drop, b128), list(drop.model.parameters()))}
    gc_on(True)
    out["saved_mb"]["gradient checkpointing"] = saved_mb(step_call(ref, b128), params)
    gc_on(False)
    return out


# --- random-weight models ------------------------------------------------------------------------------------
def qwen3_06b_config(**overrides):
    """The Qwen/Qwen3-0.6B architecture (values from its config.json), hard-coded: the Hub is not reachable."""
    from transformers import Qwen3Config

    values = dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                  num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True,
                  rope_theta=1e6, max_position_embeddings=40960, rms_norm_eps=1e-6, hidden_act="silu")
    values.update(overrides)
    return Qwen3Config(**values)


TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16)


def char_tokenizer():
    """A character-level fast tokenizer built in code (no download): digits, signs, spaces and newlines are one
    token each, as digits are in Qwen3's and SmolLM2's tokenizers."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{ch: i + 3 for i, ch in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def child_make_model(spec: dict) -> dict:
    """Save a random-weight ``AutoModel`` (Qwen3-0.6B architecture, or ``tiny``) in bf16 with a tokenizer (of the
    folder ``tokenizer``, or the character tokenizer) into ``target``."""
    _quiet()
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer"]) if spec.get("tokenizer") else char_tokenizer()
    config = qwen3_06b_config(**(TINY if spec.get("tiny") else {}))
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    with torch.device(spec.get("device", "cpu")):
        model = AutoModel.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(spec["target"])
    tokenizer.save_pretrained(spec["target"])
    return {"folder": spec["target"], "parameters": sum(p.numel() for p in model.parameters()),
            "tokenizer": spec.get("tokenizer") or "character-level"}


def qwen3_arch(tokenizer: str | None, quick: bool, say, tiny: bool = False) -> dict:
    """The default base model's architecture on this machine (random weights: speed and memory do not depend on
    weight values): a default training run's step time and peak memory, without and with gradient
    checkpointing, each in a fresh process; backtest inference targets/s; what an epoch of NASDAQ costs."""
    from stockllm.memory import ACTIVATION_MEMORY_SHARE, activation_bytes_per_token

    out: dict = {"base": "Qwen3-0.6B architecture, random weights" + (" (tiny)" if tiny else "")}
    with tempfile.TemporaryDirectory(prefix="stockllm-qwen3-") as tmp:
        say("qwen3-0.6b-arch: random weights ...")
        made = run_child("make_model", {"tokenizer": tokenizer, "target": str(Path(tmp) / "qwen3"), "tiny": tiny})
        if "error" in made:
            return {**out, "error": made["error"]}
        out["parameters"] = made["parameters"]
        out["tokenizer"] = made["tokenizer"]
        common = {"max_steps": 2, "max_val_windows": 32, "device": "cpu"}
        for key, gc_flag in (("no_checkpointing", False), ("checkpointing", True)):
            say(f"qwen3-0.6b-arch: 2 training steps, gradient checkpointing {'on' if gc_flag else 'off'} ...")
            spec = {"model_path": made["folder"], "config": {**common, "gradient_checkpointing": gc_flag},
                    "rows": 600 if tiny else None}
            if not gc_flag:
                spec["infer_origins"] = 100 if quick else 200
            out[key] = run_child("train", spec)
    run = out["no_checkpointing"]
    if "error" in run:
        return out
    step = run["summary"]["step_seconds"][-1]
    tokens = run["train_tokens_seen"] / max(run["steps"], 1)
    out.update(step_s=step, peak_mem_mb=run["summary"]["peak_mb"], tokens_per_step=tokens,
               infer_targets_per_s=run.get("infer_targets_per_s"), steps_per_epoch=run["train_sequences"],
               epoch_s=step * run["train_sequences"])
    if "error" not in out["checkpointing"]:
        ck = out["checkpointing"]["summary"]
        out.update(step_s_checkpointing=ck["step_seconds"][-1], peak_mem_mb_checkpointing=ck["peak_mb"],
                   epoch_s_checkpointing=ck["step_seconds"][-1] * run["train_sequences"])
    config = qwen3_06b_config(**(TINY if tiny else {}))
    import torch

    need = activation_bytes_per_token(config, 0.0, torch.float32) * tokens
    weights = out["parameters"] * 4
    out["auto_checkpointing_16gb"] = bool(need > ACTIVATION_MEMORY_SHARE * 16 * 2**30 - weights)
    out["activation_estimate_mb"] = need / 2**20
    return out


# --- the GPU suite (benchmarks/gpu.sh) ------------------------------------------------------------------------
# Dense bf16 tensor-core peaks from the vendors' data sheets (FLOP/s, no sparsity), by a name fragment.
BF16_PEAKS = {"H200": 989e12, "H100 SXM": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 756e12,
              "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 70e12, "A10": 125e12, "RTX 4090": 165e12,
              "RTX 3090": 71e12}


def spec_peak(name: str) -> float | None:
    """The card's dense bf16 peak from ``BF16_PEAKS`` (longest matching fragment), or None if unknown."""
    hits = [k for k in BF16_PEAKS if k.lower() in name.lower()]
    return BF16_PEAKS[max(hits, key=len)] if hits else None


def child_gpu(spec: dict) -> dict:
    """The GPU suite on the Qwen3-0.6B architecture (random weights, bf16 base, fp32 LoRA and head): LoRA
    chunks training at growing batch sizes until memory runs out or the time budget is spent (targets/s,
    tokens/s, MFU with attention against the measured bf16 matmul peak and the card's data-sheet peak, peak
    GPU memory), then backtest inference targets/s. Saves the model folder in ``spec['work']`` for the evaluate
    run that gpu.sh starts next. ``tiny`` (with device cpu) exercises every path in a minute on a CPU."""
    _quiet()
    import math

    import torch

    from stockllm.config import DataConfig, LoRAConfig
    from stockllm.data import load_ohlcv
    from stockllm.models.llm import LoRAForecaster

    t_start, budget = time.perf_counter(), spec.get("budget_s", 300)
    device, tiny = torch.device(spec.get("device", "cuda")), bool(spec.get("tiny"))
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    out: dict = {"device": name, "torch": torch.__version__, "tiny": tiny}
    if cuda:
        props = torch.cuda.get_device_properties(device)
        out.update(memory_gb=props.total_memory / 2**30, capability=f"{props.major}.{props.minor}")
    n, dtype = (8192, torch.bfloat16) if cuda else (256, torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(11):
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        a @ b
        if cuda:
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    del a, b
    out["matmul_peak_flops"], out["spec_peak_flops"] = 2 * n**3 / best, spec_peak(name)
    out["matmul_peak_desc"] = f"{str(dtype).removeprefix('torch.')} {n}x{n}, best of 10"
    made = child_make_model({"target": str(Path(spec["work"]) / "qwen3"), "tiny": tiny,
                             "device": str(device), "tokenizer": spec.get("tokenizer")})
    folder, out["tokenizer"] = made["folder"], made["tokenizer"]
    frame = load_ohlcv(spec.get("data") or str(NASDAQ))
    if tiny:
        frame = frame.iloc[-600:]
    steps, sweep = spec.get("steps", 3), []
    batch = 1
    while batch <= spec.get("max_batch", 256) and time.perf_counter() - t_start < budget:
        cfg = LoRAConfig.from_flags(model_path=folder, batch_size=batch, max_steps=steps + 1, epochs=1, max_val_windows=8,
                         gradient_checkpointing=False, device=str(device))
        forecaster = LoRAForecaster(DataConfig(), cfg)
        row: dict = {"batch_size": batch}
        try:
            torch.manual_seed(0)
            calls, rec = record_lengths(forecaster.build()), PhaseRecorder("load")
            hook_phases(forecaster.model, rec)
            # enough copies of the series for steps + 1 full batches (about 40 chunks per copy)
            copies = max(1, math.ceil((steps + 1) * batch / (8 if tiny else 38)))
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            forecaster.fit([frame] * copies, progress=False)
            secs = [v["seconds"] for k, v in rec.phases.items() if k.startswith("step ") and k != "step 1"]
            timed = calls[1:len(secs) + 1]
            lengths = [t for c in timed for t in c[:-1]]
            step_s = sum(secs) / len(secs)
            base = forecaster.model.backbone.get_base_model()
            n_params = sum(p.numel() for k, p in base.named_parameters()
                           if not any(x in k for x in ("embed_tokens", "lm_head", "lora_")))
            flops = (4 * n_params * sum(lengths) + attention_train_flops(base.config, lengths)) / sum(secs)
            row.update(step_s=step_s, tokens_per_s=sum(lengths) / sum(secs),
                       targets_per_s=sum(c[-1] for c in timed) / sum(secs), tokens_per_step=sum(lengths) / len(secs),
                       achieved_flops=flops, mfu_measured_peak=flops / out["matmul_peak_flops"],
                       mfu_spec_peak=flops / out["spec_peak_flops"] if out["spec_peak_flops"] else None,
                       peak_mem_gb=torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None)
            if batch == spec.get("infer_batch", 8) or (tiny and batch == 1):
                origins = np.arange(len(frame) - min(1000, len(frame) - 40), len(frame))
                t0 = time.perf_counter()
                forecaster.predict_returns(frame, origins)
                if cuda:
                    torch.cuda.synchronize(device)
                out["infer"] = {"batch_size": batch, "origins": len(origins),
                                "targets_per_s": len(origins) / (time.perf_counter() - t0)}
        except torch.OutOfMemoryError as exc:
            row["oom"] = str(exc).splitlines()[0][:200]
        sweep.append(row)
        del forecaster
        if cuda:
            torch.cuda.empty_cache()
        if "oom" in row:
            break
        batch *= 2
    out["sweep"] = sweep
    out["seconds"] = time.perf_counter() - t_start
    done = [r for r in sweep if "step_s" in r]
    if done:
        top = max(done, key=lambda r: r["targets_per_s"])
        out["best"] = {k: top[k] for k in ("batch_size", "targets_per_s", "tokens_per_s", "mfu_measured_peak",
                                            "mfu_spec_peak", "peak_mem_gb")}
    out["model_folder"] = folder
    return out


def child_merge(spec: dict) -> dict:
    """gpu.sh's last step: the training sweep's JSON, the evaluate run (wall seconds, exit status, metrics.csv
    rows, the log's tail) and nvidia-smi's line, written atomically as one JSON file at ``spec['out']``."""
    import csv

    work = Path(spec["work"])
    out: dict = {"script": "benchmarks/gpu.sh", "tiny": spec["tiny"], "train_status": spec["train_status"]}
    smi = work / "nvidia-smi.txt"
    out["nvidia_smi"] = smi.read_text().strip() if smi.is_file() else None
    try:
        out["train"] = json.loads((work / "train.json").read_text().strip().splitlines()[-1])
    except (OSError, IndexError, ValueError):
        log = work / "train.log"
        out["train"] = {"error": log.read_text()[-2000:] if log.is_file() else "no output"}
    metrics = work / "eval" / "metrics.csv"
    log = work / "eval.log"
    out["evaluate"] = {"command": "stockllm evaluate --data nasdaq --models naive,lora --model_path QWEN3_RANDOM "
                                  f"--max_train_seconds {spec['eval_train_seconds']:g}",
                       "status": spec["eval_status"], "wall_seconds": spec["eval_seconds"],
                       "metrics": list(csv.DictReader(metrics.open())) if metrics.is_file() else None,
                       "log_tail": log.read_text()[-1500:] if log.is_file() else None}
    target = Path(spec["out"])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(out, indent=2, default=float) + "\n")
    os.replace(tmp, target)
    return {"wrote": str(target)}


CHILDREN = {"convert": child_convert, "gpu": child_gpu, "merge": child_merge, "train": child_train, "levers": child_levers, "make_model": child_make_model}

if __name__ == "__main__":
    result = CHILDREN[sys.argv[1]](json.loads(sys.argv[2]))
    print(json.dumps(result, default=float))
