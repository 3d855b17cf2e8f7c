"""The GARCH(1,1) baseline: fitted on the training part only, filtered forward with fixed parameters."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_ohlcv
from stockllm.config import DataConfig
from stockllm.backtest import evaluate, split_index
from stockllm.models import load_forecaster
from stockllm.models.garch import GARCHForecaster


def garch_frame(n: int = 1500, seed: int = 0):
    """Returns with GARCH(1,1) volatility clustering (ω 0.02, α 0.1, β 0.85 in percent²)."""
    rng = np.random.default_rng(seed)
    var, r = 0.4, np.empty(n)
    for t in range(n):
        r[t] = np.sqrt(var) * rng.standard_normal()
        var = 0.02 + 0.1 * r[t] ** 2 + 0.85 * var
    return make_ohlcv(n, seed=seed, returns=r / 100)


@pytest.fixture(scope="module")
def fitted():
    frame = garch_frame()
    return frame, GARCHForecaster(DataConfig(window_size=10)).fit([frame.iloc[:1200]], progress=False)


def test_garch_recovers_its_parameters_and_filters_like_arch(fitted):
    frame, model = fitted
    p = model.params
    assert p["alpha"] == pytest.approx(0.1, abs=0.06)
    assert p["beta"] == pytest.approx(0.85, abs=0.08)
    assert model.fit_info["converged"]
    # The fixed-parameter filter agrees with arch's own conditional variance once the start has washed out.
    from arch import arch_model

    returns = 100 * np.diff(np.log(frame["Close"].to_numpy()[:1201]))
    res = arch_model(returns, mean="Zero", vol="GARCH", p=1, q=1, rescale=False).fix(
        [p["omega"], p["alpha"], p["beta"]])
    ours = model.conditional_variance(frame.iloc[:1201])  # ours[t] = σ² of the return on row t + 1
    np.testing.assert_allclose(ours[200:1200], res.conditional_volatility[200:] ** 2, rtol=1e-6)


def test_garch_quantiles_are_student_t_with_the_summed_variance(fitted):
    frame, model = fitted
    q = model.predict_quantiles(frame, np.array([1300]))[0]  # [H, Q]
    p = model.params
    v1 = model.conditional_variance(frame)[1300]
    v2 = p["omega"] + (p["alpha"] + p["beta"]) * v1
    from scipy import stats

    nu = p["nu"]
    assert nu > 8  # the frame's errors are Gaussian: a large ν
    unit_t = lambda level, v: stats.t.ppf(level, v) * np.sqrt((v - 2) / v)  # noqa: E731 - variance 1
    np.testing.assert_allclose(q[0, -1], np.sqrt(v1) / 100 * unit_t(0.9, nu), rtol=1e-12)
    np.testing.assert_allclose(q[1, -1], np.sqrt(v1 + v2) / 100 * unit_t(0.9, 4 + 2 * (nu - 4)), rtol=1e-12)
    assert (q[:, 4] == 0).all()  # driftless median
    assert (np.diff(q, axis=-1) > 0).all()


def test_garch_finds_fat_tails_and_narrows_the_80_interval():
    """Student-t(4) errors: ν is found near 4, and the unit-variance t's 80% interval is narrower than the
    Gaussian's with the same variance (the reason for t errors: a Gaussian over-covers fat-tailed returns)."""
    rng = np.random.default_rng(5)
    n, var, r = 3000, 0.4, np.empty(3000)
    for t in range(n):
        r[t] = np.sqrt(var) * rng.standard_t(4) / np.sqrt(2)  # unit variance
        var = 0.02 + 0.1 * r[t] ** 2 + 0.85 * var
    frame = make_ohlcv(n, seed=5, returns=r / 100)
    model = GARCHForecaster(DataConfig(window_size=10, horizon=1)).fit([frame.iloc[:2500]], progress=False)
    assert 3 < model.params["nu"] < 6
    q = model.predict_quantiles(frame, np.arange(2500, 2990))[:, 0]
    sd = np.sqrt(model.conditional_variance(frame)[2500:2990]) / 100
    from scipy import stats

    assert ((q[:, -1] - q[:, 0]) < 0.95 * 2 * stats.norm.ppf(0.9) * sd).all()


def test_a_gaussian_era_garch_checkpoint_still_loads(fitted, tmp_path):
    """Checkpoints saved before Student-t errors have no nu: they load and forecast Gaussian quantiles."""
    import json

    frame, model = fitted
    model.save(tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "stockllm.json").read_text())
    del meta["garch"]["nu"]
    (tmp_path / "ck" / "stockllm.json").write_text(json.dumps(meta))
    old = load_forecaster(tmp_path / "ck")
    v1 = model.conditional_variance(frame)[1300]
    from scipy import stats

    q = old.predict_quantiles(frame, np.array([1300]))[0]
    np.testing.assert_allclose(q[0, -1], np.sqrt(v1) / 100 * stats.norm.ppf(0.9), rtol=1e-12)


def test_garch_parameters_come_from_the_training_part_only():
    """Poison every test row: the parameters and every quantile before the test part stay the same."""
    frame = garch_frame(800, seed=1)
    split = split_index(len(frame), 0.25)
    poisoned = frame.copy()
    poisoned.iloc[split:, :4] *= np.exp(np.random.default_rng(2).normal(0, 0.1, (len(frame) - split, 1)))
    fitted = []

    def make():
        fitted.append(GARCHForecaster(DataConfig(window_size=10)))
        return fitted[-1]

    evaluate({"s": frame}, {"garch": make}, test_size=0.25, progress=False, log=lambda _: None)
    evaluate({"s": poisoned}, {"garch": make}, test_size=0.25, progress=False, log=lambda _: None)
    a, b = fitted
    assert a.params == b.params
    before = np.arange(9, split)
    np.testing.assert_array_equal(a.predict_quantiles(frame, before), b.predict_quantiles(poisoned, before))
    assert not np.array_equal(a.predict_quantiles(frame, [split + 5]), b.predict_quantiles(poisoned, [split + 5]))


def test_garch_save_load_gives_the_same_quantiles(fitted, tmp_path):
    frame, model = fitted
    model.save(tmp_path / "ck")
    loaded = load_forecaster(tmp_path / "ck")
    origins = np.arange(1200, 1490)
    np.testing.assert_array_equal(loaded.predict_quantiles(frame, origins), model.predict_quantiles(frame, origins))
    assert loaded.quantiles == model.quantiles
