"""Training that survives: periodic state, exact resume after SIGKILL, clean stop on SIGTERM, resume checks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_ohlcv, write_csv
from safetensors.torch import load_file

from stockllm.cli import _resume_command, main
from stockllm.device import torch_threads
from stockllm.errors import StockLLMError
from stockllm.loop import state_dirs

SRC = str(Path(__file__).resolve().parents[1] / "src")


def periodic(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return make_ohlcv(n, seed=seed, returns=0.02 * np.sin(np.arange(n) * 2 * np.pi / 7) + rng.normal(0, 0.002, n))


@pytest.fixture
def flags(tiny_model_dir, tmp_path):
    csv = write_csv(periodic(), tmp_path / "p.csv")
    # Dropout on, so the RNG state matters; batch 1 and 40-day chunks give 7 steps per epoch; a state at every
    # second validation; any validation gain counts (--min_delta 0), so patience does not end the run early.
    return ["train", "--model", "lora", "--data", str(csv), "--model_path", str(tiny_model_dir), "--window_size", "20",
            "--chunk_days", "40", "--batch_size", "1", "--epochs", "2", "--max_steps", "10", "--save_every", "2",
            "--eval_every", "3", "--lora_dropout", "0.1", "--learning_rate", "3e-3", "--min_delta", "0", "--quiet"]


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "stockllm", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_state(proc: subprocess.Popen, save_dir: Path, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while not state_dirs(save_dir):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < end, "no state was saved in time"
        time.sleep(0.02)


def weights(save_dir: Path) -> dict:
    out = {f"head.{k}": v for k, v in load_file(str(save_dir / "head.safetensors")).items()}
    out.update(load_file(str(save_dir / "adapter" / "adapter_model.safetensors")))
    return out


def history(save_dir: Path) -> list[dict]:
    return json.loads((save_dir / "stockllm.json").read_text())["fit"]["history"]


@pytest.mark.integration
def test_sigkilled_run_resumes_to_the_same_weights_and_history(flags, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    with torch_threads(1):  # the subprocesses run with one thread too: same float summation order
        assert main([*flags, "--save_dir", str(a)]) == 0
    proc = start([*flags, "--save_dir", str(b)])
    wait_for_state(proc, b)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = int(state_dirs(b)[-1].name.split("-")[1])
    assert killed_at < 10  # it really stopped part-way
    assert (b / "stockllm.json").is_file()  # a usable best checkpoint once the first state was saved
    run = subprocess.run([sys.executable, "-m", "stockllm", *flags, "--save_dir", str(b), "--resume"],
                         env={**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=1e-4, atol=1e-6, msg=key)
    ha, hb = history(a), history(b)
    # Every 3 steps into each epoch (3, 6; 10 is the second epoch's third), at the epoch's end (7) and the last.
    assert [h["step"] for h in ha] == [h["step"] for h in hb] == [3, 6, 7, 10]
    np.testing.assert_allclose([h["val_loss"] for h in hb], [h["val_loss"] for h in ha], rtol=1e-4)
    np.testing.assert_allclose([h["train_loss"] for h in hb], [h["train_loss"] for h in ha], rtol=1e-4)
    assert len(state_dirs(b)) == 2  # only the newest states are kept


@pytest.mark.integration
def test_sigterm_saves_state_and_prints_the_resume_command(flags, tmp_path):
    ck = tmp_path / "ck"
    # A state at every validation, and no early stop: the run is still training when the signal comes.
    proc = start([*flags, "--max_steps", "400", "--epochs", "50", "--save_every", "1", "--patience", "1000",
                  "--save_dir", str(ck)])
    wait_for_state(proc, ck)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err and "training state saved in" in err
    command = err.split("resume with: ", 1)[1].strip()
    assert command.startswith("stockllm train ") and command.endswith("--resume")
    step = int(state_dirs(ck)[-1].name.split("-")[1])
    assert f"interrupted at step {step}" in err
    assert not [p for p in (ck / "state").iterdir() if p.name.startswith(".")]  # nothing half-written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    from stockllm.models import load_forecaster

    load_forecaster(ck).predict_returns(periodic(), np.array([100]))  # the best checkpoint is usable


def test_resume_command_replaces_any_resume_flag():
    assert _resume_command(["train", "--data", "a.csv", "--resume", "old"]) == \
        "stockllm train --data a.csv --resume"
    assert _resume_command(["train", "--resume", "--data", "a b.csv"]) == "stockllm train --data 'a b.csv' --resume"


def test_resume_refuses_changed_settings(flags, tmp_path, capsys):
    ck = tmp_path / "ck"
    assert main([*flags, "--max_steps", "2", "--save_dir", str(ck)]) == 0
    capsys.readouterr()
    for flag, value in [("--window_size", "25"), ("--horizon", "2"), ("--prompt_format", "verbose"),
                        ("--model_path", str(tmp_path))]:
        i = flags.index(flag) if flag in flags else None
        changed = [*flags[:i], flag, value, *flags[i + 2:]] if i is not None else [*flags, flag, value]
        for resume in (["--resume"], ["--resume", str(ck)]):
            assert main([*changed, "--save_dir", str(tmp_path / "new"), *resume]
                        if resume[1:] else [*changed, "--save_dir", str(ck), *resume]) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and flag in err and "differs from" in err, err


def test_warm_start_takes_remote_code_and_device_from_this_run(flags, tmp_path, monkeypatch):
    from stockllm.models.llm import LoRAForecaster

    ck = tmp_path / "ck"
    assert main([*flags, "--max_steps", "1", "--save_dir", str(ck)]) == 0
    seen = {}

    def fake_fit(self, frames, progress=True, **kw):
        seen.update(trust=self.config.trust_remote_code, device=self.config.device, path=self.config.model_path)
        raise SystemExit(0)

    monkeypatch.setattr(LoRAForecaster, "fit", fake_fit)
    with pytest.raises(SystemExit):
        main([*flags, "--save_dir", str(tmp_path / "b"), "--resume", str(ck), "--trust_remote_code",
              "--device", "cpu"])
    assert seen["trust"] is True and seen["device"] == "cpu"


def test_resume_without_state_is_one_clear_line(flags, tmp_path, capsys):
    assert main([*flags, "--save_dir", str(tmp_path / "none"), "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no saved training state" in err


# --- review fixes ---------------------------------------------------------------------------------------------
def test_bf16_only_on_cards_with_native_bf16(monkeypatch):
    from stockllm.device import mixed_precision, resolve_device

    caps = {0: (7, 5), 1: (8, 0)}  # a T4 (emulated bf16, which is_bf16_supported() would accept) and an A100
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=None: caps[i])
    assert resolve_device("cuda:0") == (torch.device("cuda", 0), torch.float32)
    assert mixed_precision(torch.device("cuda", 0)) == "fp16"
    assert resolve_device("cuda") == (torch.device("cuda"), torch.float32)  # the current card, 0
    assert resolve_device("cuda:1") == (torch.device("cuda", 1), torch.bfloat16)
    assert mixed_precision(torch.device("cuda", 1)) == "no" and mixed_precision(torch.device("cpu")) == "no"
    with pytest.raises(StockLLMError, match="numbered 0..1"):
        resolve_device("cuda:2")


def test_device_cuda_n_is_the_card_training_uses(monkeypatch):
    from stockllm.device import bind_device

    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    bind_device(torch.device("cuda", 1), num_processes=1)
    bind_device(torch.device("cuda"), num_processes=1)
    bind_device(torch.device("cpu"), num_processes=1)
    assert chosen == [1]
    with pytest.raises(StockLLMError, match="CUDA_VISIBLE_DEVICES"):
        bind_device(torch.device("cuda", 1), num_processes=2)


def test_cuda_out_of_memory_gets_advice(flags, tmp_path, monkeypatch, capsys):
    from stockllm.models.llm import LoRAForecaster

    def oom(self, frames, progress=True, **kw):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(LoRAForecaster, "fit", oom)
    assert main([*flags, "--save_dir", str(tmp_path / "ck")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--batch_size" in err and "--chunk_days" in err
    assert "--gradient_checkpointing" in err and "please report" not in err


def test_adapter_key_mismatch_warning_is_shown(flags, tmp_path, capsys):
    from safetensors.torch import save_file

    ck = tmp_path / "ck"
    assert main([*flags, "--max_steps", "1", "--save_dir", str(ck)]) == 0
    path = ck / "adapter" / "adapter_model.safetensors"
    tensors = load_file(str(path))
    del tensors[sorted(tensors)[0]]
    save_file(tensors, str(path))
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(ck), "--data", flags[flags.index("--data") + 1], "--output",
                 str(tmp_path / "predictions.csv")]) == 0
    assert "stockllm: warning: Found missing adapter keys" in capsys.readouterr().err


def test_non_causal_base_is_refused_in_chunks_mode(tiny_model_dir, tmp_path):
    from transformers import BertConfig, BertModel, Qwen3Config, T5Config

    from stockllm.config import DataConfig, LoRAConfig
    from stockllm.hf import is_causal
    from stockllm.models.llm import LoRAForecaster

    assert is_causal(Qwen3Config()) and not is_causal(BertConfig()) and not is_causal(T5Config())
    assert is_causal(BertConfig(is_decoder=True))
    bert = tmp_path / "bert"
    BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, pad_token_id=0)).save_pretrained(bert)
    for f in Path(tiny_model_dir).glob("tokenizer*"):
        (bert / f.name).write_bytes(f.read_bytes())
    data = DataConfig(window_size=20, horizon=3)
    with pytest.raises(StockLLMError, match="not a causal decoder.*train_mode windows"):
        LoRAForecaster(data, LoRAConfig.from_flags(model_path=str(bert), chunk_days=40, max_steps=1)).fit([periodic()], False)


@pytest.fixture
def mlp_checkpoint(tmp_path):
    csv = write_csv(periodic(300), tmp_path / "m.csv")
    ck = tmp_path / "mlp"
    assert main(["train", "--model", "mlp", "--data", str(csv), "--epochs", "2", "--save_dir", str(ck), "--quiet"]) == 0
    return ck, csv


def predict_error(ck: Path, csv: Path, tmp_path: Path, capsys) -> str:
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(ck), "--data", str(csv), "--output",
                 str(tmp_path / "predictions.csv")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "please report" not in err, err
    return err


def test_checkpoint_value_of_the_wrong_type_is_one_line(mlp_checkpoint, tmp_path, capsys):
    ck, csv = mlp_checkpoint
    meta = json.loads((ck / "stockllm.json").read_text())
    meta["data"]["window_size"] = "30"
    (ck / "stockllm.json").write_text(json.dumps(meta))
    assert "window_size = '30' is not int" in predict_error(ck, csv, tmp_path, capsys)
    meta["data"]["window_size"], meta["config"]["hidden_size"] = 30, 6.5
    (ck / "stockllm.json").write_text(json.dumps(meta))
    assert "hidden_size = 6.5 is not int" in predict_error(ck, csv, tmp_path, capsys)


def test_weights_that_do_not_match_stockllm_json_are_one_line(mlp_checkpoint, tmp_path, capsys):
    ck, csv = mlp_checkpoint
    meta = json.loads((ck / "stockllm.json").read_text())
    meta["config"]["hidden_size"] = 32
    (ck / "stockllm.json").write_text(json.dumps(meta))
    assert "does not hold" in predict_error(ck, csv, tmp_path, capsys)


def test_truncated_safetensors_is_one_line(mlp_checkpoint, tmp_path, capsys):
    ck, csv = mlp_checkpoint
    path = ck / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    assert "truncated or not a safetensors file" in predict_error(ck, csv, tmp_path, capsys)


def test_llm_head_that_does_not_match_stockllm_json_is_one_line(flags, tmp_path, capsys):
    ck = tmp_path / "ck"
    assert main([*flags, "--max_steps", "1", "--save_dir", str(ck)]) == 0
    meta = json.loads((ck / "stockllm.json").read_text())
    meta["data"]["horizon"] = 2
    (ck / "stockllm.json").write_text(json.dumps(meta))
    csv = Path(flags[flags.index("--data") + 1])
    assert "does not match stockllm.json" in predict_error(ck, csv, tmp_path, capsys)
    meta["data"]["horizon"] = 3
    (ck / "stockllm.json").write_text(json.dumps(meta))
    head = ck / "head.safetensors"
    head.write_bytes(head.read_bytes()[:50])
    assert "truncated" in predict_error(ck, csv, tmp_path, capsys)


# --- the MLP and LSTM on the same loop ------------------------------------------------------------------------
@pytest.fixture
def mlp_flags(tmp_path):
    csv = write_csv(periodic(400), tmp_path / "m.csv")
    # 16-window batches: 20 steps per epoch, a state every epoch; patience too long to stop early.
    return ["train", "--model", "mlp", "--data", str(csv), "--window_size", "10", "--hidden_size", "16",
            "--batch_size", "16", "--learning_rate", "3e-3", "--epochs", "20", "--patience", "100", "--quiet"]


def mlp_weights(save_dir: Path) -> dict:
    return load_file(str(save_dir / "model.safetensors"))


@pytest.mark.integration
def test_sigkilled_mlp_run_resumes_to_the_same_weights_and_history(mlp_flags, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([*mlp_flags, "--save_dir", str(a)]) == 0  # fit runs on one thread, as the subprocess does
    proc = start([*mlp_flags, "--save_dir", str(b)])
    wait_for_state(proc, b)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    meta_a = json.loads((a / "stockllm.json").read_text())["fit"]
    killed_at = int(state_dirs(b)[-1].name.split("-")[1])
    assert killed_at < meta_a["steps"]  # it really stopped part-way
    assert (b / "stockllm.json").is_file()  # a usable best checkpoint once the first state was saved
    assert main([*mlp_flags, "--save_dir", str(b), "--resume"]) == 0  # in-process: one start-up less
    wa, wb = mlp_weights(a), mlp_weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=1e-4, atol=1e-6, msg=key)
    meta_b = json.loads((b / "stockllm.json").read_text())["fit"]
    ha, hb = meta_a["history"], meta_b["history"]
    assert [h["epoch"] for h in ha] == [h["epoch"] for h in hb] == list(range(1, 21))  # one validation per epoch
    np.testing.assert_allclose([h["val_loss"] for h in hb], [h["val_loss"] for h in ha], rtol=1e-4)
    np.testing.assert_allclose([h["train_loss"] for h in hb], [h["train_loss"] for h in ha], rtol=1e-4)
    assert meta_b["best_epoch"] == meta_a["best_epoch"] >= 1 and meta_b["epochs_run"] == meta_a["epochs_run"] == 20
    assert meta_b["best_val_loss"] < meta_b["naive_val_loss"]
    assert meta_b["resumed_state"] and len(state_dirs(b)) == 2


@pytest.mark.integration
def test_sigint_stops_the_lstm_with_its_state_and_resumes_it_exactly(mlp_flags, tmp_path):
    flags = [*mlp_flags, "--model", "lstm"]
    ref, ck = tmp_path / "ref", tmp_path / "ck"
    assert main([*flags, "--save_dir", str(ref)]) == 0
    proc = start([*flags, "--save_dir", str(ck)])
    wait_for_state(proc, ck)
    proc.send_signal(signal.SIGINT)  # most likely mid-epoch: the state then holds the position in the epoch
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    step = int(state_dirs(ck)[-1].name.split("-")[1])
    assert f"interrupted at step {step}; training state saved in {state_dirs(ck)[-1]}" in err
    command = err.split("resume with: ", 1)[1].strip()
    assert command.startswith("stockllm train --model mlp") and "--model lstm" in command
    assert command.endswith("--save_dir " + str(ck) + " --resume")
    assert not [p for p in (ck / "state").iterdir() if p.name.startswith(".")]  # nothing half-written
    from stockllm.models import load_forecaster

    model = load_forecaster(ck)  # the best checkpoint so far is usable
    assert model.kind == "lstm" and model.fit_info["steps"] == step
    model.predict_quantiles(periodic(400), np.array([390]))
    assert main([*flags, "--save_dir", str(ck), "--resume"]) == 0
    wa, wb = mlp_weights(ref), mlp_weights(ck)
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=1e-4, atol=1e-6, msg=key)
    ha, hb = history(ref), history(ck)
    np.testing.assert_allclose([h["val_loss"] for h in hb], [h["val_loss"] for h in ha], rtol=1e-4)


def test_mlp_resume_refuses_changed_settings(mlp_flags, tmp_path, capsys):
    ck = tmp_path / "ck"
    base = [*mlp_flags, "--epochs", "2", "--save_dir", str(ck)]
    assert main(base) == 0
    capsys.readouterr()
    for change in (["--window_size", "12"], ["--horizon", "2"], ["--quantiles", "0.1,0.5,0.9"],
                   ["--hidden_size", "8"], ["--features", "rsi"], ["--batch_size", "8"]):
        assert main([*base, *change, "--resume"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and change[0] in err and "differs from" in err, err
    assert main([*base, "--model", "lstm", "--resume"]) == 1
    assert "comes from a --model mlp run" in capsys.readouterr().err
    assert main([*base, "--resume", str(ck)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is for --model lora" in err
    # Per-run limits may change; the run had finished, so resuming it only writes its checkpoint again.
    assert main([*base, "--patience", "5", "--resume"]) == 0
    assert json.loads((ck / "stockllm.json").read_text())["fit"]["epochs_run"] == 2


def test_mlp_save_every_zero_writes_no_state(mlp_flags, tmp_path):
    ck = tmp_path / "ck"
    assert main([*mlp_flags, "--epochs", "2", "--save_every", "0", "--save_dir", str(ck)]) == 0
    assert sorted(p.name for p in ck.iterdir() if not p.name.startswith(".")) == ["model.safetensors", "stockllm.json"]


def test_mlp_progress_in_a_log_is_a_few_lines_not_one_per_step(mlp_flags, tmp_path, capsys):
    flags = [f for f in mlp_flags if f != "--quiet"]
    assert main([*flags, "--epochs", "3", "--save_dir", str(tmp_path / "ck")]) == 0  # 60 steps
    out, err = capsys.readouterr()
    assert 1 <= sum(line.startswith("mlp:") for line in err.splitlines()) <= 4, err
    steps = [line.removeprefix("mlp: ").split(":")[0] for line in out.splitlines() if "(epoch" in line]
    assert steps == ["step 20 (epoch 1)", "step 40 (epoch 2)", "step 60 (epoch 3)"]


@pytest.mark.slow
def test_compile_trains_the_same_parameters_and_saves_a_loadable_checkpoint(tiny_model_dir, tmp_path):
    """--compile (torch.compile in place): training still moves the weights, the checkpoint keeps its parameter
    names (no _orig_mod prefix) and predicts the same after loading in an eager process."""
    import numpy as np

    from conftest import make_ohlcv, write_csv
    from stockllm.cli import main
    from stockllm.models import load_forecaster

    csv = write_csv(make_ohlcv(200, seed=3), tmp_path / "p.csv")
    ck = tmp_path / "ck"
    assert main(["train", "--model", "lora", "--model_path", str(tiny_model_dir), "--data", str(csv),
                 "--window_size", "20", "--chunk_days", "40", "--max_steps", "2", "--learning_rate", "3e-3",
                 "--compile", "--save_dir", str(ck), "--quiet"]) == 0
    from safetensors import safe_open

    for f in ck.glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            assert not any("_orig_mod" in k for k in st.keys()), f
    loaded = load_forecaster(ck)
    frame = __import__("stockllm").data.load_ohlcv(csv)
    q = loaded.predict_quantiles(frame, np.arange(150, 160))
    assert np.isfinite(q).all() and loaded.fit_info["steps"] == 2
    head = dict(loaded.model.head.named_parameters())
    assert any(float(p.abs().sum()) > 0 for p in head.values())  # the zero-initialised head moved: it trained


def test_a_run_stopped_by_its_budget_goes_on_with_a_larger_one(flags, tmp_path, capsys):
    """--max_steps 2 ends the run on its budget; --resume with --max_steps 4 trains steps 3 and 4 and says why it
    stopped each time (stockllm.json's fit record and the output)."""
    ck = tmp_path / "ck"
    flags = [*flags, "--patience", "50"]  # the budget, not early stopping, ends these runs
    assert main([*flags, "--max_steps", "2", "--save_every", "1", "--save_dir", str(ck)]) == 0
    fit = json.loads((ck / "stockllm.json").read_text())["fit"]
    assert fit["steps"] == 2 and fit["stop_reason"] == "max_steps"
    import shutil
    shutil.copytree(ck / "state" / "step-00000002", tmp_path / "kept" / "step-00000002")  # kept: 2 states only
    capsys.readouterr()
    assert main([*flags, "--max_steps", "4", "--save_every", "1", "--save_dir", str(ck), "--resume"]) == 0
    fit = json.loads((ck / "stockllm.json").read_text())["fit"]
    assert fit["steps"] == 4 and fit["stop_reason"] == "max_steps" and fit["train_tokens_seen"] > 0
    # Step 3 trains at the new schedule's rate, not at the old cosine's final 0: its weights moved.
    step2 = load_file(str(tmp_path / "kept" / "step-00000002" / "model.safetensors"))
    step3 = load_file(str(ck / "state" / "step-00000003" / "model.safetensors"))
    assert any(not torch.equal(step2[k], step3[k]) for k in step2)
    assert re.search(r"training stopped at step 4 \([\d.]+ epochs?\): the --max_steps budget was reached",
                     capsys.readouterr().out)
    assert not any("--max_steps 2" in note for note in fit["notes"])  # the first run's budget note is gone
    assert any("--max_steps 4" in note for note in fit["notes"])
    # The same budget again: nothing is left to do, and the run stays as it was.
    assert main([*flags, "--max_steps", "4", "--save_every", "1", "--save_dir", str(ck), "--resume"]) == 0
    assert json.loads((ck / "stockllm.json").read_text())["fit"]["steps"] == 4
