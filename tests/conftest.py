"""Shared fixtures: synthetic OHLCV (seeded geometric random walk) and a tiny random Qwen3 with a char tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

NASDAQ = Path(__file__).resolve().parents[1] / "src" / "stockllm" / "samples" / "nasdaq.csv"


def make_ohlcv(n: int = 300, seed: int = 0, drift: float = 0.0003, vol: float = 0.01, start: str = "2020-01-01",
               returns: np.ndarray | None = None) -> pd.DataFrame:
    """A seeded geometric random walk as an OHLCV frame (DatetimeIndex "Date", business days, float columns).

    ``returns`` (length n) replaces the random daily log-returns, e.g. to make a learnable pattern.
    """
    rng = np.random.default_rng(seed)
    r = rng.normal(drift, vol, n) if returns is None else np.asarray(returns, dtype=float)
    close = 100 * np.exp(np.cumsum(r))
    open_ = close * np.exp(rng.normal(0, vol / 3, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, vol / 2, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, vol / 2, n)))
    volume = rng.integers(900_000, 1_100_000, n).astype(float)
    index = pd.bdate_range(start, periods=n, name="Date").as_unit("ns")
    frame = pd.DataFrame({"Open": open_, "High": high, "Low": low, "Close": close, "Volume": volume}, index=index)
    frame.attrs["source"] = f"synthetic-{seed}"
    return frame


def run_cli(capsys, argv) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit status, stdout, stderr); never a traceback or a catch-all line."""
    from stockllm.cli import main

    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "unexpected" not in err
    return rc, out, err


def one_and_two_processes(args: list[str], out: Path):
    """Run ``stockllm <args>`` in one process (into out/one) and under ``torchrun`` with 2 processes (out/two),
    each with one thread; both must succeed. Returns their CompletedProcess results."""
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    runs = []
    for launcher, folder in ((["python"], "one"), (["torchrun", "--nproc_per_node", "2"], "two")):
        run = subprocess.run([*launcher, "-m", "stockllm.cli", *args, "--output_dir", str(out / folder)],
                             capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 0, run.stderr[-2000:]
        runs.append(run)
    return tuple(runs)


def cli_error_line(capsys, argv) -> str:
    """Run the CLI, require a non-zero exit and exactly one error line; return it."""
    rc, out, err = run_cli(capsys, argv)
    assert rc != 0
    lines = [line for line in err.splitlines() if line.startswith("stockllm: error:")]
    assert len(lines) == 1, err
    return lines[0]


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write a frame as the seed's CSV (Date,Open,High,Low,Close,Volume)."""
    frame.rename_axis("Date").to_csv(path, date_format="%Y-%m-%d")
    return path


@pytest.fixture(autouse=True, scope="session")
def _own_cache_folder(tmp_path_factory):
    """Caches (converted GGUF models, hidden states of the LLM's lower blocks) go to a session folder, never the
    user's ~/.cache/stockllm, unless STOCKLLM_CACHE is set already."""
    import os

    if "STOCKLLM_CACHE" not in os.environ:
        os.environ["STOCKLLM_CACHE"] = str(tmp_path_factory.mktemp("stockllm-cache"))
    yield


@pytest.fixture
def ohlcv():
    return make_ohlcv


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt during the test, as in a terminal, even when the test run was started with
    SIGINT ignored (a background job of a non-interactive shell inherits SIG_IGN, and Python then keeps it)."""
    import signal

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A folder holding a tiny random Qwen3 (hidden 64, 2 layers) and a character-level tokenizer.

    It loads through the same code path as a downloaded model (config.json + safetensors + tokenizer files).
    """
    import torch
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

    folder = tmp_path_factory.mktemp("tiny-qwen3")
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{ch: i + 3 for i, ch in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
                         pad_token_id=0, eos_token_id=1, bos_token_id=1)
    Qwen3Model(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def nasdaq_path() -> Path:
    if not NASDAQ.is_file():
        pytest.skip(f"{NASDAQ} not present")
    return NASDAQ
