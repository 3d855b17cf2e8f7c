"""The contract every registered model keeps: the registry agrees with the classes; save→load gives identical
forecasts; the forecast at t ignores rows after t; quantiles never cross; a fitted model refuses levels it lacks."""

from __future__ import annotations

import numpy as np
import pytest

import stockllm.models.base
from conftest import make_ohlcv

from stockllm.config import DataConfig, EnsembleConfig, MLPConfig
from stockllm.errors import StockLLMError
from stockllm.models import MODEL_NAMES, REGISTRY, load_forecaster, model_class

CHEAP = ("naive", "drift", "fhs", "garch", "mlp", "lstm", "ensemble")


def _model(name):
    data = DataConfig(window_size=20)
    if name in ("mlp", "lstm"):
        return model_class(name)(data, MLPConfig.from_flags(epochs=2, hidden_size=8))
    if name == "ensemble":
        return model_class(name)(data, EnsembleConfig(members=("fhs", "garch", "naive")))
    return model_class(name)(data)


def test_capabilities_are_declared_once_in_the_registry():
    """Each class reads its capabilities from its registry entry; none declares them again in its own body (a
    property that computes one, as the ensemble's refit, is behaviour, not a declaration)."""
    import ast
    import inspect

    from stockllm.models.base import CAPABILITIES

    assert MODEL_NAMES == tuple(REGISTRY)
    for name, spec in REGISTRY.items():
        if spec.extra == "chronos":
            continue  # importing the class needs chronos-forecasting only when it is built
        cls = spec.load_class()
        assert cls.kind == name
        for klass in cls.__mro__[:cls.__mro__.index(stockllm.models.base.Forecaster)]:
            body = ast.parse(inspect.getsource(klass).lstrip()).body[0].body
            assigned = {t.id for node in body if isinstance(node, (ast.Assign, ast.AnnAssign))
                        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                        if isinstance(t, ast.Name)}
            assert not assigned & set(CAPABILITIES), (name, klass.__name__, sorted(assigned & set(CAPABILITIES)))
        for attr, field in CAPABILITIES.items():
            if not isinstance(cls.__dict__.get(attr), property):
                assert getattr(cls, attr) == getattr(spec, field), (name, attr)


def test_model_sets_come_from_the_registry():
    from stockllm.models import TRAINABLE, TRAINED, UNFITTED, WINDOW_NETS

    assert WINDOW_NETS == ("mlp", "lstm") and TRAINED == ("mlp", "lstm", "lora")
    assert UNFITTED == ("naive", "drift") and "ensemble" in TRAINABLE and "theta" not in TRAINABLE


@pytest.mark.parametrize("name", CHEAP)
def test_contract(name, tmp_path):
    frames = [make_ohlcv(420, seed=11), make_ohlcv(300, seed=12, vol=0.02)]
    model = _model(name)
    model.fit(frames, progress=False)
    origins = np.arange(60, 400, 7)
    q = model.predict_quantiles(frames[0], origins)
    assert q.shape == (len(origins), model.horizon, len(model.quantiles))
    assert np.isfinite(q).all() and np.all(np.diff(q, axis=-1) >= 0)
    # causal: rows after t change nothing at t
    t = 250
    changed = frames[0].copy()
    changed.iloc[t + 1:, :4] *= 1.7
    np.testing.assert_array_equal(model.predict_quantiles(changed, np.array([t])),
                                  model.predict_quantiles(frames[0], np.array([t])))
    # one origin alone equals it among many
    np.testing.assert_array_equal(model.predict_quantiles(frames[0], origins[3:4]), q[3:4])
    model.save(tmp_path / "ck")
    back = load_forecaster(tmp_path / "ck")
    assert type(back) is type(model)
    np.testing.assert_array_equal(back.predict_quantiles(frames[0], origins), q)
    if model.needs_fit:
        with pytest.raises(StockLLMError, match="gives only the levels"):
            back.check_levels([0.05, 0.5])
    with pytest.raises(StockLLMError, match="does not take"):
        load_forecaster(tmp_path / "ck", bogus=1)


def test_saved_chronos_keeps_its_model_and_context(tmp_path):
    """A saved chronos-2 with context 64 comes back as itself, not as the default chronos-bolt-small, 512."""
    pytest.importorskip("chronos")
    from stockllm.config import ChronosConfig
    from stockllm.models.peers import ChronosPeer

    model = ChronosPeer(DataConfig(), ChronosConfig(model_path="amazon/chronos-2", context_days=64, batch_size=8))
    model.save(tmp_path / "ck")
    back = load_forecaster(tmp_path / "ck", device="cpu")
    assert (back.config.model_path, back.config.context_days, back.config.batch_size) == ("amazon/chronos-2", 64, 8)
    assert back.config.device == "cpu"


def test_load_refuses_unknown_overrides_naming_the_valid_ones(tmp_path):
    model = _model("fhs").fit([make_ohlcv(300, seed=1)])
    model.save(tmp_path / "ck")
    with pytest.raises(StockLLMError, match=r"load\(\) got bogus.*valid: none"):
        load_forecaster(tmp_path / "ck", bogus=1)
    import stockllm

    with pytest.raises(StockLLMError, match="valid: none"):
        stockllm.load(tmp_path / "ck", device="cpu")


def test_diebold_mariano_null_at_h3_is_roughly_uniform():
    """Loss differences that are MA(2) with mean 0 (what 3-day forecasts from overlapping origins give): about 5% of
    p-values fall below 0.05, and about half below 0.5."""
    from stockllm.backtest import diebold_mariano

    rng = np.random.default_rng(0)
    ps = []
    for _ in range(400):
        e = rng.normal(size=502)
        d = e[2:] + e[1:-1] + e[:-2]  # MA(2)
        ps.append(diebold_mariano(d, np.zeros_like(d), 3))
    ps = np.array(ps)
    assert 0.02 < (ps < 0.05).mean() < 0.09
    assert 0.4 < (ps < 0.5).mean() < 0.6
