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


def test_hedge_weights_by_hand():
    """Two members, one horizon: the weight at origin i uses the losses of origins start .. i − 1 only, discounted
    by ρ per origin; η = 0 and rows with nothing known keep the prior exactly; a member with prior 0 stays 0."""
    from stockllm.models.ensemble import hedge_weights

    loss = np.array([[[1.0], [0.0], [2.0], [np.nan], [1.0]], [[0.0], [1.0], [0.0], [0.0], [0.0]]])  # [M=2, n=5, H=1]
    prior = np.array([0.7, 0.3])
    eta, rho = 0.5, 0.9
    w = hedge_weights(loss, prior, eta, rho, start=1)
    assert w.shape == (5, 1, 2)
    np.testing.assert_array_equal(w[:2, 0], [prior, prior])  # origins 0, 1: no outcome since start known yet
    for i, cum in ((2, [0.0, 1.0]), (3, [2.0, 0.9]), (4, [1.8, 0.81])):  # origin 3's NaN: no update, still discounts
        expect = prior * np.exp(-eta * np.array(cum))
        np.testing.assert_allclose(w[i, 0], expect / expect.sum(), rtol=1e-12)
    np.testing.assert_array_equal(hedge_weights(loss, prior, 0.0, rho), np.broadcast_to(prior, (5, 1, 2)))
    assert np.all(hedge_weights(loss, np.array([1.0, 0.0]), 3.0)[..., 1] == 0)
    # horizon 2 outcomes are known one origin later
    two = hedge_weights(np.repeat(loss, 2, axis=2), prior, eta, 1.0)
    np.testing.assert_allclose(two[2, 1], two[1, 0], rtol=1e-12)


def test_hedge_follows_the_better_member():
    """Member 0 is right for the first half, member 1 for the second: with a discount the weights follow the
    member that is better lately, and the combined loss is near the better member's over the whole run."""
    from stockllm.models.ensemble import hedge_weights

    n = 2000
    loss = np.ones((2, n, 1))
    loss[0, : n // 2], loss[1, n // 2:] = 0.5, 0.5
    w = hedge_weights(loss, np.array([0.5, 0.5]), eta=2.0, discount=0.98)
    assert w[n // 2 - 1, 0, 0] > 0.99 and w[-1, 0, 1] > 0.99
    mixed = (w[:, 0, :] * loss[:, :, 0].T).sum(axis=1).sum()
    assert mixed <= 0.5 * n + 100  # each switch costs a few dozen origins


def _tracking(frame, eta=4.0):
    return EnsembleForecaster(DataConfig(), EnsembleConfig(members=("fhs", "garch", "naive"), eta=eta,
                                                           discount=0.99, shrinkage=0.3)).fit([frame], progress=False)


def test_tracked_weights_are_causal_and_do_not_depend_on_other_origins(tmp_path):
    """backtest ≡ predict for the tracking ensemble: the forecast at t is the same asked alone, among many
    origins, from a file cut at t, and after save/load; rows after t do not change it; the weights do move."""
    from stockllm.backtest import backtest

    frame = make_ohlcv(700, seed=11)
    model = _tracking(frame.iloc[:450])
    origins = np.arange(430, 690)
    table = backtest(model, "ensemble", "s", frame, origins)
    many = model.predict_quantiles(frame, origins)
    model.save(tmp_path / "ck")
    back = load_forecaster(tmp_path / "ck")
    for t in (440, 455, 600, 689):
        alone = model.predict_quantiles(frame.iloc[: t + 1], np.array([t]))
        np.testing.assert_allclose(alone[0], many[t - 430], rtol=1e-12)
        np.testing.assert_allclose(back.predict_quantiles(frame.iloc[: t + 1], np.array([t]))[0], alone[0], rtol=1e-12)
        row = table[table["origin"] == frame.index[t].strftime("%Y-%m-%d")].sort_values("horizon")
        np.testing.assert_allclose(row["q0.9"].to_numpy(), frame["Close"].iloc[t] * np.exp(alone[0, :, -1]),
                                   rtol=1e-12)
    fixed = _tracking(frame.iloc[:450], eta=0.0).predict_quantiles(frame, origins)
    np.testing.assert_allclose(many[:21], fixed[:21], rtol=1e-12)  # up to the anchor: the prior weights
    assert not np.allclose(many[-50:], fixed[-50:])


def test_checkpoint_without_eta_keeps_fixed_weights(tmp_path):
    """A checkpoint saved before the weights tracked (no eta in its config) loads with fixed weights."""
    frame = make_ohlcv(600, seed=12)
    model = _tracking(frame.iloc[:400])
    model.save(tmp_path / "ck")
    meta_path = tmp_path / "ck" / "stockllm.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["eta"], meta["config"]["discount"]
    meta_path.write_text(json.dumps(meta))
    old = load_forecaster(tmp_path / "ck")
    assert old.config.eta == 0
    origins = np.arange(420, 590)
    direct = sum(w * old.members[n].predict_quantiles(frame, origins) for n, w in old.weight_dict().items())
    np.testing.assert_allclose(old.predict_quantiles(frame, origins), direct, rtol=1e-12)
    with pytest.raises(StockLLMError, match="eta"):
        EnsembleConfig(eta=-1)
    with pytest.raises(StockLLMError, match="discount"):
        EnsembleConfig(discount=0)


def test_shared_weights_sum_the_horizons_losses():
    """With shared weights every horizon gets the same weights, from the losses summed over the horizons known at
    each origin (horizon h's outcome of origin s from origin s + h on)."""
    from stockllm.models.ensemble import hedge_weights

    rng = np.random.default_rng(5)
    loss = rng.uniform(0, 1, size=(3, 12, 2))
    prior = np.array([0.5, 0.3, 0.2])
    w = hedge_weights(loss, prior, 1.5, 0.9, start=2, shared=True)
    np.testing.assert_array_equal(w[:, 0], w[:, 1])
    np.testing.assert_array_equal(w[:3, 0], np.broadcast_to(prior, (3, 3)))  # nothing known before origin 3
    i = 7
    total = sum(0.9 ** (i - 1 - s) * loss[:, s, 0] for s in range(2, i)) + sum(
        0.9 ** (i - 2 - s) * loss[:, s, 1] for s in range(2, i - 1))
    expect = prior * np.exp(-1.5 * total)
    np.testing.assert_allclose(w[i, 0], expect / expect.sum(), rtol=1e-12)
