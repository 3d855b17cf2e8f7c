"""Technical indicators (--features): causal, scale-free, in the MLP's inputs and the compact codec, saved."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_ohlcv, write_csv

from stockllm.cli import main
from stockllm.codec import Codec, SeriesTokens
from stockllm.config import DataConfig, MLPConfig
from stockllm.errors import StockLLMError
from stockllm.features import window_inputs
from stockllm.indicators import INDICATORS, indicator_integers, indicator_values, parse_features, warmup_rows
from stockllm.models import load_forecaster
from stockllm.models.mlp import MLPForecaster

ALL = tuple(INDICATORS)


def test_values_use_only_rows_up_to_each_day():
    frame = make_ohlcv(200, seed=4)
    before = indicator_values(frame, ALL)
    t = 120
    changed = frame.copy()
    rng = np.random.default_rng(9)
    changed.iloc[t + 1:, :4] *= np.exp(rng.normal(0, 0.05, (len(frame) - t - 1, 1)))  # every later price moves
    after = indicator_values(changed, ALL)
    np.testing.assert_array_equal(after[: t + 1], before[: t + 1])
    assert not np.allclose(after[t + 1:], before[t + 1:])  # the test can fail: later rows do change


def test_values_are_scale_free_finite_and_neutral_during_warm_up():
    frame = make_ohlcv(150, seed=5)
    scaled = frame.copy()
    scaled[["Open", "High", "Low", "Close"]] *= 37.0
    a, b = indicator_values(frame, ALL), indicator_values(scaled, ALL)
    np.testing.assert_allclose(a, b, atol=1e-12)
    assert np.isfinite(a).all()
    for j, name in enumerate(ALL):
        warm = INDICATORS[name].warmup
        assert (a[:warm, j] == 0).all() and (a[warm:, j] != 0).any(), name
    assert warmup_rows(ALL) == 25 and warmup_rows(()) == 0
    # Bounded oscillators stay in their ranges.
    assert (np.abs(a[:, ALL.index("rsi")]) <= 0.5).all() and (a[:, ALL.index("atr")] >= 0).all()


def test_parse_features():
    assert parse_features(" rsi, macd ,rsi,") == ("rsi", "macd")
    assert parse_features(None) == parse_features("") == ()
    assert parse_features(["atr"]) == ("atr",)
    with pytest.raises(StockLLMError, match="unknown indicator 'rsx'.*sma_ratio,rsi,macd,bbp,atr"):
        parse_features("rsi,rsx")
    assert DataConfig(features="rsi,bbp").features == ("rsi", "bbp")
    assert DataConfig(features=["rsi"]).features == ("rsi",)  # as read back from JSON


def test_window_inputs_gain_one_column_per_indicator_and_stay_causal():
    frame = make_ohlcv(120, seed=6)
    origins = np.array([40, 80, 100])
    plain = window_inputs(frame, 20, origins)
    x = window_inputs(frame, 20, origins, ("rsi", "atr"))
    assert x.shape == (3, 20, 7) and x.dtype == np.float32
    np.testing.assert_array_equal(x[..., :5], plain)
    values = indicator_values(frame, ("rsi", "atr"))
    np.testing.assert_allclose(x[1, -1, 5:], values[80], rtol=1e-6)
    changed = frame.copy()
    changed.iloc[81:, :4] *= 1.3
    np.testing.assert_array_equal(window_inputs(changed, 20, origins[:2], ("rsi", "atr")), x[:2])


def test_compact_codec_round_trips_with_extra_integers():
    frame = make_ohlcv(90, seed=7)
    codec = Codec("compact", features=("sma_ratio", "rsi", "macd"))
    q = codec.quantize(frame)
    assert q.shape == (90, 7) and q.dtype == np.int64
    np.testing.assert_array_equal(q[:, :4], Codec("compact").quantize(frame))
    np.testing.assert_array_equal(q[:, 4:], indicator_integers(frame, codec.features, codec.clip))
    texts = codec.day_texts(frame, 30, 90)
    assert all(len(t.split()) == 7 and t.endswith("\n") for t in texts)
    np.testing.assert_array_equal(codec.decode("".join(texts)), q[30:90])
    assert (np.abs(q[:, 4:]) <= codec.clip).all() and (q[40:, 4:] != 0).any()
    # Causal like the rest of the codec: a chunk is a slice of the whole series' tokens.
    expected = q[25][4:]
    assert codec.day_texts(frame, 25, 26)[0].split()[4:] == [str(v) for v in expected]


def test_codec_features_survive_json_and_refuse_verbose():
    from dataclasses import asdict

    codec = Codec("compact", features=("bbp",))
    assert Codec(**json.loads(json.dumps(asdict(codec)))) == codec
    with pytest.raises(StockLLMError, match="compact codec only"):
        Codec("verbose", features=("rsi",))


def test_series_tokens_carry_the_indicators(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    frame = make_ohlcv(80, seed=8)
    plain = SeriesTokens(Codec("compact"), tokenizer, frame)
    rich = SeriesTokens(Codec("compact", features=("rsi", "atr")), tokenizer, frame)
    assert len(rich.ids) > len(plain.ids) and len(rich.day_end) == len(plain.day_end) == 80
    ids, _ = rich.chunk(40, 50)
    texts = Codec("compact", features=("rsi", "atr")).day_texts(frame, 40, 50)
    assert ids.tolist() == [t for text in texts for t in tokenizer(text, add_special_tokens=False)["input_ids"]]


@pytest.fixture(scope="module")
def mlp_pair():
    frame = make_ohlcv(400, seed=11)
    cfg = MLPConfig.from_flags(epochs=3, seed=0)
    rich = MLPForecaster(DataConfig(window_size=20, horizon=2, features=("sma_ratio", "rsi", "macd", "bbp", "atr")),
                         cfg).fit([frame], progress=False)
    return rich, frame


def test_mlp_reads_the_indicators(mlp_pair):
    rich, frame = mlp_pair
    assert rich.num_trainable_parameters() == 20 * 10 * 64 + 64 + 64 * 2 * 9 + 2 * 9  # H 2 × Q 9 outputs
    assert rich.x_mean.shape == (10,)
    origins = np.arange(300, 390)
    base = rich.predict_returns(frame, origins)
    # Zeroing the indicator inputs' first-layer weights changes the forecasts: the net really reads them.
    import torch

    weight = rich.net.fc1.weight.detach().clone()
    with torch.no_grad():
        rich.net.fc1.weight.view(64, 20, 10)[:, :, 5:] = 0
    try:
        if rich.fit_info["best_epoch"] > 0:
            assert not np.allclose(rich.predict_returns(frame, origins), base)
    finally:
        with torch.no_grad():
            rich.net.fc1.weight.copy_(weight)


def test_mlp_with_features_save_load_reproduces_predictions(mlp_pair, tmp_path):
    rich, frame = mlp_pair
    rich.save(tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "stockllm.json").read_text())
    assert meta["data"]["features"] == ["sma_ratio", "rsi", "macd", "bbp", "atr"]
    loaded = load_forecaster(tmp_path / "ck")
    assert loaded.data.features == rich.data.features
    origins = np.arange(100, 398)
    np.testing.assert_array_equal(loaded.predict_returns(frame, origins), rich.predict_returns(frame, origins))


def test_old_checkpoint_without_features_still_loads(tmp_path):
    frame = make_ohlcv(200, seed=12)
    model = MLPForecaster(DataConfig(window_size=10, horizon=2), MLPConfig.from_flags(epochs=1)).fit([frame], progress=False)
    model.save(tmp_path / "ck")
    path = tmp_path / "ck" / "stockllm.json"
    meta = json.loads(path.read_text())
    del meta["data"]["features"]
    path.write_text(json.dumps(meta))
    assert load_forecaster(tmp_path / "ck").data.features == ()


def test_cli_features_train_predict_and_clear_errors(tmp_path, capsys):
    data = write_csv(make_ohlcv(260, seed=13), tmp_path / "a.csv")
    ck = tmp_path / "ck"
    assert main(["train", "--model", "mlp", "--data", str(data), "--epochs", "2", "--quiet", "--window_size", "10",
                 "--features", "rsi,macd", "--save_dir", str(ck)]) == 0
    assert "trainable parameters: 6,299" in capsys.readouterr().out  # 10 days × 7 inputs × 64 + 64 + 64×27 + 27
    assert main(["predict", "--checkpoint", str(ck), "--data", str(data), "--output", str(tmp_path / "p.csv")]) == 0
    expected = load_forecaster(ck).forecast(__import__("stockllm.data", fromlist=["x"]).load_ohlcv(data))
    import pandas as pd

    np.testing.assert_allclose(pd.read_csv(tmp_path / "p.csv")["predicted_close"], expected["predicted_close"])
    capsys.readouterr()
    # predict needs the indicators' warm-up before the window: 10 + 25 rows
    short = write_csv(make_ohlcv(30, seed=14), tmp_path / "short.csv")
    assert main(["predict", "--checkpoint", str(ck), "--data", str(short)]) == 1
    assert "35" in capsys.readouterr().err
    for argv, message in [
        (["train", "--data", str(data), "--features", "rsi,nope"], "unknown indicator 'nope'"),
        (["evaluate", "--data", str(data), "--models", "naive,drift", "--features", "rsi"], "mlp, lstm and lora models only"),
        (["train", "--model", "lora", "--prompt_format", "verbose", "--data", str(data), "--features", "rsi"],
         "compact codec only"),
    ]:
        assert main([*argv, "--save_dir" if argv[0] == "train" else "--output_dir", str(tmp_path / "x")]) == 1
        err = capsys.readouterr().err
        assert err.count("stockllm: error:") == 1 and message in err, err
    assert not (tmp_path / "x").exists()


def test_lora_with_features_saves_its_codec_and_reloads_exactly(tiny_model_dir, tmp_path):
    from stockllm.config import LoRAConfig
    from stockllm.models.llm import LoRAForecaster

    frame = make_ohlcv(200, seed=15)
    cfg = LoRAConfig.from_flags(model_path=str(tiny_model_dir), chunk_days=48, max_steps=2, batch_size=2, max_val_windows=16,
                     lora_dropout=0.0)
    model = LoRAForecaster(DataConfig(window_size=20, horizon=2, features=("rsi", "bbp")), cfg)
    assert model.codec.features == ("rsi", "bbp")
    model.fit([frame], progress=False).save(tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "stockllm.json").read_text())
    assert meta["codec"]["features"] == ["rsi", "bbp"] and meta["data"]["features"] == ["rsi", "bbp"]
    loaded = load_forecaster(tmp_path / "ck")
    assert loaded.codec == model.codec
    origins = np.arange(150, 198)
    np.testing.assert_allclose(loaded.predict_returns(frame, origins), model.predict_returns(frame, origins),
                               rtol=1e-5, atol=1e-7)


def test_python_api_evaluate_takes_features():
    import stockllm

    frame = make_ohlcv(240, seed=16)
    result = stockllm.evaluate({"s": frame}, "mlp", window_size=10, features="rsi,atr", epochs=1)
    assert set(result.metrics["model"]) == {"naive", "mlp"}
    with pytest.raises(StockLLMError, match="unknown indicator"):
        stockllm.evaluate({"s": frame}, "mlp", features="nope")
