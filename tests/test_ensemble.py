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
