"""Configs that compose: the loop settings nested in each trainable model's config, flat names for flags and
keywords, old flat stockllm.json files still read, and CLI flags generated from the fields."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pytest
from conftest import make_ohlcv

from stockllm.cli import _build_parser
from stockllm.config import (ChronosConfig, DataConfig, EnsembleConfig, LoRAConfig, MLPConfig, TrainConfig, field_docs,
                             flat_dict, flat_fields, from_dict, to_dict)
from stockllm.errors import StockLLMError

CONFIGS = (TrainConfig, MLPConfig, LoRAConfig, EnsembleConfig, ChronosConfig)


def test_each_trainable_config_holds_its_own_loop_defaults():
    mlp, lora = MLPConfig(), LoRAConfig()
    assert isinstance(mlp.train, TrainConfig) and isinstance(lora.train, TrainConfig)
    assert (mlp.train.epochs, mlp.train.patience, mlp.train.lr_scheduler, mlp.train.eval_every) == \
        (100, 10, "constant", None)
    assert (lora.train.epochs, lora.train.patience, lora.train.lr_scheduler, lora.train.eval_every) == \
        (20, 3, "cosine", 50)
    assert MLPConfig().train is not MLPConfig().train  # no shared mutable default


def test_from_flags_puts_each_setting_where_it_belongs_and_refuses_unknown_ones():
    cfg = MLPConfig.from_flags(epochs=3, hidden_size=8, seed=4)
    assert (cfg.hidden_size, cfg.train.epochs, cfg.train.seed, cfg.train.learning_rate) == (8, 3, 4, 1e-3)
    assert LoRAConfig.from_flags(max_steps=2, lora_rank=4).train.max_steps == 2
    with pytest.raises(StockLLMError, match="no setting epoch .*valid: .*epochs"):
        MLPConfig.from_flags(epoch=3)
    with pytest.raises(StockLLMError, match="^patience 0 must be greater than 0"):
        MLPConfig.from_flags(patience=0)


def test_the_readme_spelled_out_config_equals_from_flags():
    # README "Python": a bare TrainConfig() holds the LLM's loop defaults, so the spelled-out form starts from .train
    spelled = MLPConfig(hidden_size=32, train=dataclasses.replace(MLPConfig().train, epochs=3))
    assert spelled == MLPConfig.from_flags(epochs=3, hidden_size=32)
    assert MLPConfig().train != TrainConfig()


def test_flat_names_are_unique_and_round_trip():
    for cls in (MLPConfig, LoRAConfig):
        names = flat_fields(cls)
        assert len(names) == len(set(names)), cls
        cfg = cls.from_flags(epochs=7, seed=3)
        assert cls.from_flags(**flat_dict(cfg)) == cfg
        assert from_dict(cls, json.loads(json.dumps(to_dict(cfg))), source="ck") == cfg


def test_an_old_flat_mlp_config_reads_as_it_was_trained():
    old = {"hidden_size": 16, "epochs": 7, "batch_size": 8, "learning_rate": 0.01, "weight_decay": 0.0,
           "patience": 2, "val_size": 0.25, "seed": 5, "save_every": 1, "head_base": "gaussian"}
    cfg = from_dict(MLPConfig, old, source="old-ck")
    assert (cfg.hidden_size, cfg.val_size, cfg.head_base) == (16, 0.25, "gaussian")
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.learning_rate, cfg.train.patience, cfg.train.seed) == \
        (7, 8, 0.01, 2, 5)
    assert cfg.train.lr_scheduler == "constant"  # the MLP's own loop defaults fill what old files lack


def test_an_old_flat_lora_config_keeps_its_settings_but_not_its_step_counted_save_every():
    old = {"model_path": "m", "lora_rank": 4, "epochs": 2, "max_steps": 9, "seed": 1, "eval_every": None,
           "save_every": 50, "device": "cpu"}
    cfg = from_dict(LoRAConfig, old, source="old-ck")
    assert (cfg.model_path, cfg.lora_rank, cfg.device) == ("m", 4, "cpu")
    assert (cfg.train.epochs, cfg.train.max_steps, cfg.train.seed) == (2, 9, 1)
    # save_every counted steps and counts validations now; eval_every None meant "epoch or 50 steps".
    assert (cfg.train.save_every, cfg.train.eval_every) == (1, 50)


def test_an_old_flat_mlp_checkpoint_predicts_as_before(tmp_path):
    from stockllm.models import load_forecaster
    from stockllm.models.mlp import MLPForecaster

    frame = make_ohlcv(160)
    model = MLPForecaster(DataConfig(window_size=10, horizon=2), MLPConfig.from_flags(epochs=2, hidden_size=8))
    model.fit([frame], progress=False)
    folder = model.save(tmp_path / "ck")
    meta = json.loads((folder / "stockllm.json").read_text())
    nested = meta["config"]
    meta["config"] = {**{k: v for k, v in nested.items() if k != "train"}, **nested["train"]}  # as 0.4 wrote it
    (folder / "stockllm.json").write_text(json.dumps(meta))
    back = load_forecaster(folder)
    assert back.config == model.config
    origins = np.arange(20, 150)
    np.testing.assert_array_equal(back.predict_quantiles(frame, origins), model.predict_quantiles(frame, origins))


def test_every_field_is_documented_in_its_docstring():
    for cls in CONFIGS:
        docs = field_docs(cls)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in docs]
        assert not missing, (cls.__name__, missing)


def _actions(command: str) -> dict[str, argparse.Action]:
    sub = next(a for a in _build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices[command]._actions}


def test_training_flags_are_the_config_fields_with_their_docs_and_defaults():
    train, evaluate = _actions("train"), _actions("evaluate")
    for name in {*flat_fields(MLPConfig), *flat_fields(LoRAConfig), "members"}:
        assert name in train, name
        assert name in evaluate or name == "save_every", name  # evaluate keeps no training state
        assert train[name].default is None  # not given = not set: a resumed run takes it from its state
    assert "save_every" not in evaluate
    help_of = lambda n: " ".join(train[n].help.split())  # noqa: E731
    assert "default: mlp, lstm 100; lora 20" in help_of("epochs")
    assert "validations in a row" in help_of("patience")
    assert help_of("lr_scheduler").endswith("(default: mlp, lstm constant; lora cosine)")
    assert train["lr_scheduler"].choices == ("cosine", "linear", "constant")
    assert train["compile"].nargs == 0 and "(default off)" in help_of("compile")
    assert "(default 0.2)" in help_of("val_size")
    chronos = " ".join(evaluate["chronos_context"].help.split())
    assert chronos.startswith("days of history Chronos reads") and chronos.endswith("(default 512)")
    assert evaluate["chronos_context"].type is int and "chronos_device" not in evaluate
