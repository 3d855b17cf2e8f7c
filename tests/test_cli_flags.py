"""A fast, honest CLI: bad arguments answer before torch or transformers load; flags that do not apply are refused;
file-system failures are one clear line; progress in a log comes as plain lines."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_ohlcv, write_csv
from stockllm import progress
from stockllm.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"


def error_line(capsys, argv) -> str:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 1, err
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("stockllm: error:")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize("argv", [
    ["train", "--window_size", "0", "--data", "nasdaq"],
    ["train", "--model", "mlp", "--lora_rank", "4", "--data", "nasdaq"],
    ["evaluate", "--models", "naive,arima"],
    ["predict", "--model", "naive", "--data", "nasdaq", "--quantiles", "0.9,0.1"],
    ["predict", "--data", "nasdaq"],
    ["forecast", "--ticker", "AAPL", "--model", "naive", "--calendar", "NOPE"],
])
def test_argument_errors_come_before_heavy_imports(argv):
    code = ("import sys; from stockllm.cli import main; rc = main(sys.argv[1:]); "
            "print(rc, sorted(m for m in ('torch', 'transformers', 'peft', 'accelerate', 'matplotlib') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(SRC), "PATH": ""})
    assert result.stdout.strip() == "1 []", result.stdout + result.stderr
    assert result.stderr.startswith("stockllm: error:") and len(result.stderr.splitlines()) == 1


@pytest.fixture(scope="module")
def mlp_checkpoint(tmp_path_factory) -> Path:
    from stockllm.models import MLPForecaster

    folder = tmp_path_factory.mktemp("flags") / "mlp"
    from stockllm.config import DataConfig, MLPConfig

    MLPForecaster(DataConfig(window_size=10, horizon=2), MLPConfig.from_flags(epochs=1)).fit([make_ohlcv(200)],
                                                                                  progress=False).save(folder)
    return folder


@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> Path:
    return write_csv(make_ohlcv(200), tmp_path_factory.mktemp("flags-data") / "AAA.csv")


def test_llm_flags_are_refused_for_the_mlp(capsys, csv):
    line = error_line(capsys, ["train", "--model", "mlp", "--data", csv, "--prompt_format", "verbose"])
    assert "--prompt_format applies to the LLM (lora) only" in line and "--model mlp" in line
    line = error_line(capsys, ["train", "--model", "lora", "--data", csv, "--hidden_size", "8"])
    assert "--hidden_size applies to the MLP and LSTM only" in line


def test_evaluate_refuses_flags_of_models_it_does_not_run(capsys, csv, tmp_path):
    out = tmp_path / "ev"
    line = error_line(capsys, ["evaluate", "--data", csv, "--models", "naive,mlp", "--lora_rank", "4",
                               "--output_dir", out])
    assert "--lora_rank applies to the LLM (lora) only" in line and "--models naive,mlp" in line
    line = error_line(capsys, ["evaluate", "--data", csv, "--models", "naive,drift", "--epochs", "3",
                               "--output_dir", out])
    assert "--epochs applies to trained models" in line
    assert not out.exists()


def test_predict_refuses_a_base_model_for_an_mlp_checkpoint(capsys, csv, mlp_checkpoint, tmp_path):
    output = tmp_path / "p.csv"
    # The case: the seed's --lora_weights alias pointing at an MLP checkpoint, plus a base model.
    line = error_line(capsys, ["predict", "--lora_weights", mlp_checkpoint, "--model_path", "Qwen/Qwen3-0.6B",
                               "--data", csv, "--output", output])
    assert "--model_path Qwen/Qwen3-0.6B applies to LLM checkpoints only" in line and "mlp model" in line
    line = error_line(capsys, ["predict", "--checkpoint", mlp_checkpoint, "--device", "cpu", "--data", csv,
                               "--output", output])
    assert "--device applies to LLM checkpoints only" in line
    line = error_line(capsys, ["predict", "--checkpoint", mlp_checkpoint, "--window_size", "20", "--data", csv,
                               "--output", output])
    assert "--window_size applies to --model naive|drift only" in line
    line = error_line(capsys, ["predict", "--model", "naive", "--model_path", "x", "--data", csv, "--output", output])
    assert "--model_path applies to LLM checkpoints only, not to --model naive" in line
    assert not output.exists()


def test_download_and_forecast_refuse_conflicting_ranges(capsys, csv, tmp_path):
    line = error_line(capsys, ["download", "--ticker", "AAPL", "--period", "5y", "--start", "2020-01-01"])
    assert "--period and --start/--end" in line
    line = error_line(capsys, ["forecast", "--data", csv, "--model", "naive", "--period", "5y"])
    assert "--period applies to --ticker downloads only" in line


def test_evaluate_output_dir_that_cannot_be_created(capsys, csv, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    line = error_line(capsys, ["evaluate", "--data", csv, "--models", "naive", "--output_dir", blocker / "sub"])
    assert line.startswith(f"stockllm: error: cannot create --output_dir {blocker / 'sub'}")
    assert "unexpected" not in line


def test_other_os_errors_are_one_line(capsys, monkeypatch, csv):
    from stockllm.options import DataOptions

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/somewhere/file.csv")

    monkeypatch.setattr(DataOptions, "load", denied)
    line = error_line(capsys, ["predict", "--model", "naive", "--data", csv])
    assert line == ("stockllm: error: permission denied /somewhere/file.csv: check the path, its permissions and "
                    "the free space")


def test_progress_in_a_log_is_plain_lines(monkeypatch):
    log = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)
    for _ in progress.progress_bar(range(5), desc="lora: 5 forecasts", unit="batch", enabled=True):
        pass
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines and all(line.startswith("lora: 5 forecasts") for line in lines)
    assert "5/5" in lines[-1]


def test_quiet_turns_progress_off_for_the_run_only(capsys, csv, tmp_path):
    assert progress.enabled
    assert main(["predict", "--model", "naive", "--data", str(csv), "--output", str(tmp_path / "p.csv"),
                 "--quiet"]) == 0
    assert progress.enabled
