"""No "unexpected ... please report it" (issue 18): each case once ended in the CLI's catch-all line; now it works
or says what to do in one line."""

from __future__ import annotations

import errno
import json
import signal
from pathlib import Path

import pytest

from conftest import cli_error_line, make_ohlcv, run_cli, write_csv
from stockllm.errors import StockLLMError


run = run_cli
error_line = cli_error_line


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_csv(make_ohlcv(120, seed=7), tmp_path_factory.mktemp("trust-cli") / "a.csv")


@pytest.mark.parametrize("model", ["mlp", "lstm"])
def test_val_size_zero_trains_on_everything(data, capsys, tmp_path, model):
    rc, out, err = run(capsys, ["train", "--model", model, "--data", data, "--val_size", "0", "--epochs", "2",
                                "--window_size", "10", "--quiet", "--save_dir", tmp_path / "ck"])
    assert rc == 0, err
    meta = json.loads((tmp_path / "ck" / "stockllm.json").read_text())
    assert meta["fit"]["val_windows"] == 0 and meta["fit"]["best_epoch"] == 2  # no validation: the last epoch


def test_a_34_row_training_file(capsys, tmp_path):
    path = write_csv(make_ohlcv(34, seed=8), tmp_path / "short.csv")
    rc, _, err = run(capsys, ["train", "--data", path, "--epochs", "1", "--quiet", "--save_dir", tmp_path / "ck"])
    assert rc == 0 or "training windows" in err


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_out_of_range_is_refused_before_training(data, capsys, tmp_path, seed):
    line = error_line(capsys, ["train", "--data", data, "--seed", seed, "--save_dir", tmp_path / "ck"])
    assert f"--seed {seed} must be between 0 and 4294967295" in line
    assert not (tmp_path / "ck").exists()


def test_evaluate_checkpoint_without_newer_rows_does_not_blame_test_start(data, capsys, tmp_path):
    ck = tmp_path / "ck"
    assert run(capsys, ["train", "--data", data, "--epochs", "1", "--window_size", "10", "--quiet",
                        "--save_dir", ck])[0] == 0
    line = error_line(capsys, ["evaluate", "--checkpoint", ck, "--data", data, "--quiet",
                               "--output_dir", tmp_path / "ev"])
    assert "--test_start" not in line and "newer rows" in line and "pass a file that goes on after" in line


def test_enospc_while_saving_the_training_state_is_one_line(data, capsys, tmp_path, monkeypatch):
    import accelerate

    def full(self, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(accelerate.Accelerator, "save_state", full)
    line = error_line(capsys, ["train", "--data", data, "--epochs", "2", "--window_size", "10", "--quiet",
                               "--save_dir", tmp_path / "ck"])
    assert "cannot save the training state" in line and "--save_every 0" in line
    state = tmp_path / "ck" / "state"
    assert not state.exists() or not any(p.name.startswith(".tmp") for p in state.iterdir())


def test_a_tampered_optimizer_state_is_refused_in_one_line(data, capsys, tmp_path):
    ck = tmp_path / "ck"
    flags = ["train", "--data", data, "--epochs", "2", "--window_size", "10", "--quiet", "--save_dir", ck]
    assert run(capsys, flags)[0] == 0
    states = sorted((ck / "state").iterdir())
    (states[-1] / "optimizer.bin").write_bytes(b"not a pickle, not a zip: a tampered file")
    line = error_line(capsys, [*flags, "--resume"])
    assert "cannot read the training state" in line and "weights_only" not in line


def test_ctrl_c_while_evaluate_fits_a_model_does_not_talk_about_training_states(data, capsys, tmp_path,
                                                                                  monkeypatch, sigint_raises):
    import os

    from stockllm import loop as train

    real = train.fit

    def interrupted(task, cfg, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # arrives inside the loop, which turns it into TrainingInterrupted
        return real(task, cfg, **kwargs)

    monkeypatch.setattr(train, "fit", interrupted)
    rc, _, err = run(capsys, ["evaluate", "--data", data, "--models", "naive,mlp", "--window_size", "10",
                              "--epochs", "50", "--quiet", "--output_dir", tmp_path / "ev"])
    assert rc == 130
    assert "training state" not in err and "interrupted by SIGINT" in err
    assert not (tmp_path / "ev").exists()


def test_offline_chronos_names_the_chronos_flag(monkeypatch):
    from stockllm import hf

    def offline(*args, **kwargs):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(hf, "hub_download", offline)
    with pytest.raises(StockLLMError) as info:
        hf.resolve_model_path("amazon/chronos-bolt-small", "--chronos_model")
    from stockllm.errors import as_flags

    assert "--chronos_model DIR" in as_flags(info.value) and "--model_path" not in as_flags(info.value)
    assert "pass chronos_model DIR" in str(info.value)  # Python's view: the keyword


def test_download_model_offline_does_not_tell_you_to_run_it_again(monkeypatch, capsys, tmp_path):
    from stockllm import hf

    def offline(*args, **kwargs):
        raise OSError("curl: (6) Could not resolve host: huggingface.co https://huggingface.co/api/models/x")

    monkeypatch.setattr(hf, "hub_download", offline)
    line = error_line(capsys, ["download-model", "--model", "Qwen/Qwen3-0.6B", "--save_dir", tmp_path / "m"])
    assert "download-model" not in line and "https://" not in line and "check the network" in line
