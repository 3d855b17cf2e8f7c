"""The LLM's quantile head starts at FHS of its training part (--head_base fhs), and keeps that base on reload."""

from __future__ import annotations

import numpy as np
from conftest import make_ohlcv

from stockllm.config import DataConfig, LoRAConfig
from stockllm.features import date_split
from stockllm.models import load_forecaster
from stockllm.models.fhs import FHSForecaster
from stockllm.models.llm import LoRAForecaster

DATA = DataConfig(window_size=20, horizon=3)


def _config(tiny_model_dir, **kw):
    return LoRAConfig.from_flags(**{**dict(model_path=str(tiny_model_dir), chunk_days=48, epochs=1, batch_size=4,
                                learning_rate=1e-3, max_val_windows=48, max_steps=1), **kw})


def test_untrained_llm_head_equals_fhs_of_the_training_part(tiny_model_dir):
    frame = make_ohlcv(300, seed=4)
    model = LoRAForecaster(DATA, _config(tiny_model_dir))
    model._build(trainable=True)
    model._training_samples([frame])  # sets the head's base from the training origins
    train, _ = date_split([frame], DATA.window_size, DATA.horizon, 0.2)[0]
    ref = FHSForecaster(DATA).fit([frame.iloc[: train[-1] + DATA.horizon + 1]])
    origins = np.arange(40, 80)
    np.testing.assert_allclose(model.predict_quantiles(frame, origins), ref.predict_quantiles(frame, origins),
                               rtol=1e-5, atol=1e-9)


def test_llm_fit_records_its_start_and_reload_keeps_the_base(tiny_model_dir, tmp_path):
    frame = make_ohlcv(300, seed=5)
    model = LoRAForecaster(DATA, _config(tiny_model_dir)).fit([frame], progress=False)
    assert model.fit_info["start"] == "fhs"
    model.save(tmp_path / "ck")
    back = load_forecaster(tmp_path / "ck")
    np.testing.assert_array_equal(back._start_z, model._start_z)
    origins = np.arange(40, 60)
    np.testing.assert_array_equal(back.predict_quantiles(frame, origins), model.predict_quantiles(frame, origins))


def test_gaussian_base_llm_starts_at_naive(tiny_model_dir):
    frame = make_ohlcv(300, seed=6)
    model = LoRAForecaster(DATA, _config(tiny_model_dir, head_base="gaussian"))
    model._build(trainable=True)
    model._training_samples([frame])
    from stockllm.models import NaiveForecaster

    origins = np.arange(40, 60)
    np.testing.assert_allclose(model.predict_quantiles(frame, origins),
                               NaiveForecaster(DATA).predict_quantiles(frame, origins), rtol=1e-5)


def test_llm_base_uses_every_training_origin_even_with_max_train_windows(tiny_model_dir):
    """--max_train_windows bounds what the LLM reads, not the FHS start, which is FHS of the whole training part."""
    frame = make_ohlcv(300, seed=7)
    bounded = LoRAForecaster(DATA, _config(tiny_model_dir, max_train_windows=40))
    bounded._build(trainable=True)
    bounded._training_samples([frame])
    train, _ = date_split([frame], DATA.window_size, DATA.horizon, 0.2)[0]
    ref = FHSForecaster(DATA).fit([frame.iloc[: train[-1] + DATA.horizon + 1]])
    np.testing.assert_allclose(bounded._start_z, ref.z)
