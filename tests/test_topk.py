"""LoRA on the top K blocks over cached hidden states (``models.topk``): the same loss and gradients as the full
model, a cache keyed on what it depends on, and training that learns and reloads exactly."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_ohlcv

from stockllm.config import DataConfig, LoRAConfig
from stockllm.errors import StockLLMError
from stockllm.models import load_forecaster
from stockllm.models.llm import LoRAForecaster, _collate, batch_loss, cached_loss
from stockllm.models.topk import cache_key, collate_cached, split_model

DATA = DataConfig(window_size=20, horizon=3)
# fp32 on both paths; the top blocks see the very tensor the full model computes, so only the order of float
# operations can differ (SDPA on a shorter graph): 1e-5 relative is far below any learning signal.
RTOL, ATOL = 1e-5, 1e-7


@pytest.fixture(scope="module")
def four_layer_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny random Qwen3 of conftest with 4 blocks instead of 2 (same tokenizer)."""
    from transformers import Qwen3Config, Qwen3Model

    folder = tmp_path_factory.mktemp("tiny-qwen3-4")
    for f in Path(tiny_model_dir).iterdir():
        if f.name.startswith(("tokenizer", "special")):
            shutil.copy(f, folder)
    config = Qwen3Config.from_pretrained(tiny_model_dir)
    config.num_hidden_layers = 4
    config.layer_types = None
    torch.manual_seed(1)
    Qwen3Model(Qwen3Config(**{**config.to_dict(), "num_hidden_layers": 4, "layer_types": None})).save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STOCKLLM_CACHE", str(tmp_path / "cache"))


def periodic(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return make_ohlcv(n, seed=seed, returns=0.02 * np.sin(np.arange(n) * 2 * np.pi / 7) + rng.normal(0, 0.002, n))


def forecaster(folder, **kw) -> LoRAForecaster:
    base = dict(model_path=str(folder), chunk_days=48, epochs=6, batch_size=4, learning_rate=5e-3,
                max_val_windows=48, lora_dropout=0.0, min_delta=0.0)
    return LoRAForecaster(DATA, LoRAConfig.from_flags(**{**base, **kw}))


def built_samples(f: LoRAForecaster, frame, days=np.arange(19, 200)):
    f.build(trainable=True)
    f._freeze_adapter()
    torch.manual_seed(3)
    with torch.no_grad():  # B = 0 would give LoRA A no gradient: make every adapter do something
        for name, p in f.model.named_parameters():
            if "lora_B" in name or "head.linear" in name:
                p.normal_(0, 0.05)
    y = np.random.default_rng(0).normal(size=(len(frame), DATA.horizon))
    return f.samples(frame, days, y)


def grads(module) -> dict:
    return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("k", ["2", "0"])
def test_cached_path_gives_the_loss_and_gradients_of_the_full_model(four_layer_dir, k):
    f = forecaster(four_layer_dir, lora_layers=k)
    samples = built_samples(f, periodic())[:3]
    full_loss, _ = batch_loss(f.model, _collate(samples, f._pad_id()), f.quantiles)
    full_loss.backward()
    full = {n.replace("backbone.base_model.model.", ""): g for n, g in grads(f.model).items()}
    f.model.zero_grad(set_to_none=True)
    f.attach_hidden(samples)
    top = f.top_head()
    loss, _ = cached_loss(top, collate_cached(samples), f.quantiles)
    loss.backward()
    cached = {n.replace("top.", "").replace("layers.0.", "layers.2.", 1).replace("layers.1.", "layers.3.", 1): g
              for n, g in grads(top).items()}
    torch.testing.assert_close(loss, full_loss, rtol=RTOL, atol=ATOL)
    assert set(cached) == set(full) and len(full) == 2 + 14 * int(k)  # 7 linear layers × (A, B) per block
    for name in full:
        torch.testing.assert_close(cached[name], full[name], rtol=RTOL, atol=ATOL, msg=name)


def test_split_parts_reproduce_the_full_model(four_layer_dir):
    f = forecaster(four_layer_dir)
    samples = built_samples(f, periodic())[:1]
    base = f.model.backbone.get_base_model()
    ids = torch.from_numpy(samples[0]["ids"])[None]
    with torch.no_grad():
        want = base(input_ids=ids, use_cache=False).last_hidden_state
        mid = split_model(base, 0, 2, norm=False)(input_ids=ids, use_cache=False).last_hidden_state
        hooked = []
        handle = base.layers[2].register_forward_pre_hook(lambda m, a, kw: hooked.append(a[0] if a else
                                                                                          kw["hidden_states"]),
                                                          with_kwargs=True)
        base(input_ids=ids, use_cache=False)
        handle.remove()
        got = split_model(base, 2, 4)(inputs_embeds=mid, use_cache=False).last_hidden_state
    assert torch.equal(mid, hooked[0])
    torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)
    assert all(not p.is_meta for p in base.parameters())  # building the parts left the base as it was


def test_cache_is_reused_and_invalidated_by_chunks_or_base(four_layer_dir, tiny_model_dir, tmp_path):
    frame = periodic()
    f = forecaster(four_layer_dir)
    samples = built_samples(f, frame)
    assert f.attach_hidden(samples)[1] is False
    again = f.samples(frame, np.arange(19, 200))
    assert f.attach_hidden(again)[1] is True  # same base, same chunks: reused
    assert torch.equal(again[0]["hidden"], samples[0]["hidden"])
    other_plan = f.samples(frame, np.arange(19, 200), chunk_days=40)
    assert f.attach_hidden(other_plan)[1] is False
    assert cache_key({"a": 1}, samples, False) != cache_key({"a": 1}, other_plan, False)
    seeded = forecaster(four_layer_dir, random_init=True, seed=5)
    assert seeded.attach_hidden(built_samples(seeded, frame))[1] is False  # another base: another cache
    assert len(list((tmp_path / "cache" / "hidden").glob("*.bin"))) == 3


def test_top_k_training_learns_moves_only_the_top_blocks_and_reloads_exactly(four_layer_dir, tmp_path):
    frame = periodic(360)
    f = forecaster(four_layer_dir, lora_layers=2, epochs=8, patience=8).fit([frame], progress=False)
    info = f.fit_info
    assert info["best_val_loss"] < 0.9 * info["naive_val_loss"], info["history"]
    assert info["hidden_cache"]["top_layers"] == 2 and info["hidden_cache"]["bytes"] > 0
    names = [n for n, _ in f.model.backbone.named_parameters() if "lora_B" in n]
    assert names and all(".layers.2." in n or ".layers.3." in n for n in names)
    assert any(p.abs().sum() > 0 for n, p in f.model.backbone.named_parameters() if "lora_B" in n)
    assert "top 2 of 4 blocks" in f.trainable_parameters_detail()
    f.save(tmp_path / "ck")
    origins = np.arange(19, 340)
    loaded = load_forecaster(tmp_path / "ck")
    assert np.array_equal(loaded.predict_returns(frame, origins), f.predict_returns(frame, origins))
    assert loaded.config.lora_layers == "2"


def test_probe_trains_the_head_alone_in_seconds(four_layer_dir):
    frame = periodic()
    f = forecaster(four_layer_dir, lora_layers=0, epochs=20, learning_rate=2e-2).fit([frame], progress=False)
    assert f.fit_info["best_val_loss"] < f.fit_info["naive_val_loss"]
    assert f.num_trainable_parameters() == sum(p.numel() for p in f.model.head.parameters())
    assert not any(p.abs().sum() > 0 for n, p in f.model.backbone.named_parameters() if "lora_B" in n)


def test_lora_layers_flag_is_checked():
    with pytest.raises(StockLLMError, match="lora_layers 'two'"):
        LoRAConfig.from_flags(lora_layers="two")
    assert LoRAConfig.from_flags(lora_layers="ALL").top_layers(24) is None
    assert LoRAConfig.from_flags(lora_layers="8").top_layers(4) == 4
    assert LoRAConfig.from_flags(freeze_base=True).top_layers(4) == 0
