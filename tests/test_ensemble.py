"""The ensemble: simplex weights fitted on validation, a checkpoint folder holding its members."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_ohlcv

from stockllm.cli import main
from stockllm.config import DataConfig, EnsembleConfig, MLPConfig
from stockllm.errors import StockLLMError
from stockllm.models import load_forecaster
from stockllm.models.ensemble import EnsembleForecaster, fit_weights
from stockllm.quantiles import pinball


def test_fit_weights_finds_the_better_member_and_the_optimum():
    """Member 0 is the true quantiles, member 1 is shifted: the LP puts (nearly) all weight on member 0, and no
    simplex point on a grid does better."""
    rng = np.random.default_rng(0)
    levels = np.array([0.1, 0.5, 0.9])
    y = rng.normal(size=(2000, 2))
    from scipy import stats

    true = np.broadcast_to(stats.norm.ppf(levels), (2000, 2, 3))
    preds = np.stack([true, true + 1.0, true * 0.2])
    w = fit_weights(preds, y, levels, np.ones(2000))
    assert w.shape == (3,) and np.all(w >= 0) and abs(w.sum() - 1) < 1e-12
    loss = lambda v: pinball(y, np.tensordot(v, preds, axes=1), levels).mean()  # noqa: E731
    grid = [np.array([a, b, 1 - a - b]) for a in np.linspace(0, 1, 21) for b in np.linspace(0, 1 - a, 21)]
    assert loss(w) <= min(loss(g) for g in grid) + 1e-9
    assert w[0] > 0.8


def test_ensemble_weights_are_valid_and_survive_save_load(tmp_path):
    frames = [make_ohlcv(600, seed=1), make_ohlcv(400, seed=2, vol=0.02)]
    model = EnsembleForecaster(DataConfig(), EnsembleConfig(members=("fhs", "garch", "naive", "mlp")),
                               {"mlp": MLPConfig.from_flags(epochs=2)}).fit(frames, progress=False)
    w = model.weights
    assert np.all(w >= 0) and abs(w.sum() - 1) < 1e-9
    origins = np.arange(100, 140)
    q = model.predict_quantiles(frames[0], origins)
    direct = sum(wi * model.members[n].predict_quantiles(frames[0], origins) for n, wi in model.weight_dict().items())
    np.testing.assert_allclose(q, direct)
    assert np.all(np.diff(q, axis=-1) >= 0)
    model.save(tmp_path / "ck")
    assert sorted(p.name for p in (tmp_path / "ck" / "members").iterdir()) == ["fhs", "garch", "mlp", "naive"]
    back = load_forecaster(tmp_path / "ck")
    assert back.weight_dict() == model.weight_dict()
    assert np.array_equal(back.predict_quantiles(frames[0], origins), q)
    meta = json.loads((tmp_path / "ck" / "stockllm.json").read_text())
    meta["ensemble"]["weights"]["fhs"] = -0.5
    (tmp_path / "ck" / "stockllm.json").write_text(json.dumps(meta))
    with pytest.raises(StockLLMError, match="lacks valid ensemble weights"):
        load_forecaster(tmp_path / "ck")


def test_members_flag_is_checked():
    with pytest.raises(StockLLMError, match="unknown members entry"):
        EnsembleConfig(members="fhs,bogus")
    with pytest.raises(StockLLMError, match="twice"):
        EnsembleConfig(members="fhs,fhs")
    with pytest.raises(StockLLMError, match="val_size 0"):
        EnsembleConfig(val_size=0)


def test_cli_train_and_evaluate_ensemble(tmp_path, capsys):
    from conftest import write_csv

    csv = write_csv(make_ohlcv(500, seed=3), tmp_path / "s.csv")
    assert main(["train", "--model", "ensemble", "--members", "fhs,garch", "--data", str(csv), "--quiet",
                 "--save_dir", str(tmp_path / "ck")]) == 0
    assert "ensemble weights" in capsys.readouterr().out
    assert main(["evaluate", "--data", str(csv), "--models", "fhs,ensemble", "--members", "fhs,drift", "--quiet",
                 "--output_dir", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "weights" in out
    # --members without an ensemble is refused, not ignored
    assert main(["evaluate", "--data", str(csv), "--models", "fhs", "--members", "fhs", "--quiet",
                 "--output_dir", str(tmp_path / "ev2")]) == 1
    assert "--members is for the ensemble" in capsys.readouterr().err


def test_weights_are_fold_means_shrunk_towards_equal():
    frames = [make_ohlcv(600, seed=4), make_ohlcv(500, seed=5, vol=0.02)]
    cfg = EnsembleConfig(members=("fhs", "garch", "naive"), folds=3, shrinkage=0.4)
    model = EnsembleForecaster(DataConfig(), cfg).fit(frames, progress=False)
    info = model.fit_info
    assert len(info["fold_weights"]) == 3
    folds = np.array([list(w.values()) for w in info["fold_weights"]])
    np.testing.assert_allclose(list(info["fitted_weights"].values()), folds.mean(axis=0))
    np.testing.assert_allclose(model.weights, 0.4 / 3 + 0.6 * folds.mean(axis=0))
    assert abs(model.weights.sum() - 1) < 1e-12 and model.weights.min() >= 0.4 / 3 - 1e-12
    equal = EnsembleForecaster(DataConfig(), EnsembleConfig(members=("fhs", "naive"), shrinkage=1.0))
    np.testing.assert_allclose(equal.fit(frames, progress=False).weights, [0.5, 0.5])
    with pytest.raises(StockLLMError, match="shrinkage"):
        EnsembleConfig(shrinkage=1.5)


def test_fold_blocks_cut_the_union_of_dates():
    import pandas as pd

    from stockllm.models.ensemble import fold_blocks

    d1, d2 = pd.bdate_range("2020-01-01", periods=8), pd.bdate_range("2020-01-07", periods=4)
    p1, p2 = np.zeros((2, 8, 1, 1)), np.ones((2, 4, 1, 1))
    blocks = list(fold_blocks([p1, p2], [np.zeros((8, 1)), np.ones((4, 1))], [d1, d2], 2))
    assert len(blocks) == 2
    (pa, ya, wa), (pb, yb, wb) = blocks
    assert pa.shape[1] == 4 and wa.sum() == 1.0  # the first 4 dates: series 1 only
    assert pb.shape[1] == 8 and np.isclose(wb.sum(), 2.0)  # each series weighs 1 in the block


def test_evaluate_reuses_fitted_members_and_names_each_training(tmp_path):
    """evaluate --models mlp,ensemble trains the MLP once for the ensemble's refit (the same model is reused),
    and each training log line names its model."""
    from stockllm.backtest import evaluate

    frame = make_ohlcv(700, seed=6)
    mlp_cfg = MLPConfig.from_flags(epochs=2)
    data = DataConfig()
    fits = []

    class Counting(EnsembleForecaster):
        def _fit_member(self, name, frames, progress, label):
            fits.append(label)
            return super()._fit_member(name, frames, progress, label)

    from stockllm.models import model_class

    lines = []
    table, forecasts = evaluate({"s": frame}, {
        "naive": lambda: model_class("naive")(data),
        "ensemble": lambda: Counting(data, EnsembleConfig(members=("fhs", "mlp")), {"mlp": mlp_cfg}),
        "mlp": lambda: model_class("mlp")(data, mlp_cfg),
        "fhs": lambda: model_class("fhs")(data)}, progress=False, log=lines.append)
    assert fits == ["ensemble member fhs (before " + fits[0].split("(before ")[1], fits[1]]  # the early fits only
    assert any("reused the fhs, mlp" in line for line in lines)
    f = forecasts.set_index(["model", "origin", "horizon"])
    assert set(table["model"]) == {"naive", "ensemble", "mlp", "fhs"}
    assert f.loc["ensemble"].shape == f.loc["mlp"].shape


def test_member_training_lines_name_the_member(capsys):
    frames = [make_ohlcv(500, seed=7)]
    EnsembleForecaster(DataConfig(), EnsembleConfig(members=("fhs", "mlp")),
                       {"mlp": MLPConfig.from_flags(epochs=1)}).fit(frames, progress=True)
    err = capsys.readouterr()
    text = err.out + err.err
    assert "ensemble member mlp (before" in text and "ensemble member mlp:" in text
