"""Online recalibration (--calibrate aci): causal, backtest ≡ predict, coverage pulled to its level."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_ohlcv, write_csv

from stockllm.calibration import Calibrated, track_offsets
from stockllm.cli import main
from stockllm.config import CalibrationConfig
from stockllm.errors import StockLLMError
from stockllm.backtest import backtest
from stockllm.models.baselines import NaiveForecaster


def test_calibration_is_causal():
    """Changing every row after t leaves the recalibrated forecast at t unchanged."""
    frame = make_ohlcv(800, seed=1)
    model = Calibrated(NaiveForecaster())
    t = 500
    a = model.predict_quantiles(frame, np.array([t]))
    changed = frame.copy()
    changed.iloc[t + 1:, :4] *= np.exp(np.random.default_rng(0).normal(0, 0.2, (len(frame) - t - 1, 1)))
    np.testing.assert_array_equal(model.predict_quantiles(changed, np.array([t])), a)
    # and the outcomes up to t do matter: the offsets are not zero
    assert not np.allclose(a, NaiveForecaster().predict_quantiles(frame, np.array([t])))


def test_backtest_equals_predict_with_calibration(tmp_path, capsys):
    """The forecast `stockllm predict --calibrate aci` writes for a file cut at row t equals the backtest's row t."""
    frame = make_ohlcv(400, seed=2)
    model = Calibrated(NaiveForecaster())
    origins = np.arange(300, 396)
    table = backtest(model, "naive+aci", "s", frame, origins)
    t = 350
    csv = write_csv(frame.iloc[: t + 1], tmp_path / "cut.csv")
    assert main(["predict", "--model", "naive", "--calibrate", "aci", "--data", str(csv), "--calendar", "business",
                 "--output", str(tmp_path / "p.csv"), "--quiet"]) == 0
    pred = pd.read_csv(tmp_path / "p.csv")
    assert set(pred["model"]) == {"naive+aci"}
    row = table[table["origin"] == frame.index[t].strftime("%Y-%m-%d")]
    np.testing.assert_allclose(pred["q0.1"].to_numpy(), row["q0.1"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(pred["q0.9"].to_numpy(), row["q0.9"].to_numpy(), rtol=1e-12)


def test_tracker_fixes_a_too_narrow_model():
    """A model whose quantiles are half as wide as the truth covers ~49% of an 80% interval; recalibrated, ~80%."""
    rng = np.random.default_rng(3)
    n, levels = 4000, np.array([0.1, 0.5, 0.9])
    from scipy import stats

    y = rng.normal(size=(n, 1))
    q = np.broadcast_to(0.5 * stats.norm.ppf(levels), (n, 1, 3)).copy()
    offsets = track_offsets(q, y, levels, 0.01)
    adjusted = q + offsets
    late = slice(1000, None)
    inside = (y[late, 0] >= adjusted[late, 0, 0]) & (y[late, 0] <= adjusted[late, 0, 2])
    assert 0.76 < inside.mean() < 0.84
    raw = (y[late, 0] >= q[late, 0, 0]) & (y[late, 0] <= q[late, 0, 2])
    assert raw.mean() < 0.6


def test_offset_at_i_uses_only_outcomes_known_at_i():
    """The offset in force at origin i for horizon h moves only after outcome i − h is known."""
    q = np.zeros((6, 2, 1))
    y = np.full((6, 2), -1.0)  # every outcome below the quantile
    off = track_offsets(q, y, [0.5], 0.1)
    assert np.allclose(off[:, 0, 0], [0, -0.05, -0.1, -0.15, -0.2, -0.25])  # h = 1: one step behind
    assert np.allclose(off[:, 1, 0], [0, 0, -0.05, -0.1, -0.15, -0.2])  # h = 2: two steps behind


def test_calibration_flags_are_checked(tmp_path, capsys):
    with pytest.raises(StockLLMError, match="calibrate"):
        CalibrationConfig(method="bogus")
    csv = write_csv(make_ohlcv(200, seed=4), tmp_path / "s.csv")
    assert main(["predict", "--model", "naive", "--calibration_step", "0.01", "--data", str(csv), "--quiet",
                 "--output", str(tmp_path / "p.csv")]) == 1
    assert "--calibration_step is for --calibrate aci" in capsys.readouterr().err
    assert main(["predict", "--model", "naive", "--calibrate", "aci", "--calibration_step", "2", "--data", str(csv),
                 "--quiet", "--output", str(tmp_path / "p.csv")]) == 1
    assert "between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_evaluate_adds_calibrated_rows_and_tercile_coverage(tmp_path):
    frames = make_ohlcv(700, seed=5)
    csv = write_csv(frames, tmp_path / "s.csv")
    assert main(["evaluate", "--data", str(csv), "--models", "naive,fhs", "--calibrate", "aci", "--quiet",
                 "--output_dir", str(tmp_path / "ev")]) == 0
    metrics = pd.read_csv(tmp_path / "ev" / "metrics.csv")
    assert {"naive", "fhs", "naive+aci", "fhs+aci"} == set(metrics["model"])
    for col in ("coverage_80_lowvol", "coverage_80_midvol", "coverage_80_highvol"):
        assert metrics[col].between(0, 1).all()
    board = pd.read_csv(tmp_path / "ev" / "leaderboard.csv")
    assert list(board["wql_vs_naive"]) == sorted(board["wql_vs_naive"])  # sorted by WQL
    assert "online recalibration" in board.loc[board["model"] == "fhs+aci", "protocol"].iloc[0]


def test_tercile_coverage_splits_origins_by_volatility():
    """A model that covers every calm origin and no stormy one shows it per tercile, not in the marginal."""
    from stockllm.backtest import metrics

    n = 90
    sigma = np.arange(n, dtype=float)
    actual = np.full(n, 100.0)
    inside = sigma < 30  # only the calm third is covered
    f = pd.DataFrame({"series": "s", "model": "m", "origin": [f"d{i}" for i in range(n)], "horizon": 1,
                      "last_close": 100.0, "actual": actual, "predicted": 100.0, "sigma": sigma,
                      "q0.1": np.where(inside, 99.0, 101.0), "q0.5": np.where(inside, 100.0, 102.0),
                      "q0.9": np.where(inside, 101.0, 103.0)})
    row = metrics(f).iloc[0]
    assert row["coverage_80_lowvol"] == 1.0 and row["coverage_80_midvol"] == 0.0 and row["coverage_80_highvol"] == 0.0
    assert abs(row["coverage_80"] - 1 / 3) < 1e-12


def test_each_volatility_regime_tracks_its_own_offsets():
    """Outcomes of regime 0 move regime 0's offset only; an origin in regime 1 keeps regime 1's."""
    q = np.zeros((6, 1, 1))
    y = np.array([[-1.0], [5.0], [-1.0], [5.0], [-1.0], [5.0]])
    regime = np.array([0, 1, 0, 1, 0, 1])
    off = track_offsets(q, y, [0.5], 0.1, regime)[:, 0, 0]
    # origin i sees outcomes of origins < i; regime 0's outcomes fall below (offset −0.05 each), regime 1's above
    assert np.allclose(off, [0, 0, -0.05, 0.05, -0.1, 0.1])


class _Narrow(NaiveForecaster):
    """The naive walk with its spread halved: an 80% band that covers about half the outcomes."""

    def predict_quantiles(self, frame, origins):
        return 0.5 * super().predict_quantiles(frame, origins)


def test_offsets_start_from_validation_residuals():
    """With an anchor, the first test origins are already covered near 80%; from zero they are not."""
    frame = make_ohlcv(1500, seed=7)
    anchor = frame.index[1200]
    origins = np.arange(1200, 1300)  # the first 100 origins after the anchor
    y = np.log(frame["Close"].to_numpy()[origins + 1] / frame["Close"].to_numpy()[origins])

    def coverage(model):
        q = model.predict_quantiles(frame, origins)[:, 0]
        return float(((y >= q[:, 0]) & (y <= q[:, -1])).mean())

    levels = (0.1, 0.5, 0.9)
    from stockllm.config import DataConfig

    narrow = _Narrow(DataConfig(quantiles=levels))
    assert coverage(narrow) < 0.65
    warm = Calibrated(narrow, CalibrationConfig(warmup=0, boost=1), until=anchor)
    assert 0.72 <= coverage(warm) <= 0.88
    # The start is the τ-quantile of the validation residuals: on the validation origins themselves, exact.
    lo, hi = warm._warmup(frame, narrow.window_size - 1)
    assert hi == 1200 - narrow.horizon and hi - lo == round(0.2 * (hi - narrow.window_size + 1))


def test_anchor_comes_from_the_fit_record():
    from stockllm.calibration import anchor_date
    from stockllm.models.fhs import FHSForecaster

    frame = make_ohlcv(600, seed=8)
    model = FHSForecaster().fit([frame.iloc[:400]])
    assert anchor_date(model, "1990-01-01") == frame.index[399] + pd.Timedelta(days=1)
    assert anchor_date(NaiveForecaster(), "2001-02-03") == pd.Timestamp("2001-02-03")
    assert anchor_date(NaiveForecaster()) is None


def test_backtest_equals_predict_with_a_boost_after_the_anchor(tmp_path):
    """evaluate --checkpoint --calibrate aci and predict --checkpoint --calibrate aci agree at every cut, with the
    step boosted after the checkpoint's training end."""
    frame = make_ohlcv(700, seed=9)
    train_csv = write_csv(frame.iloc[:500], tmp_path / "train.csv")
    ck = tmp_path / "ck"
    assert main(["train", "--model", "fhs", "--data", str(train_csv), "--save_dir", str(ck), "--quiet"]) == 0
    full = write_csv(frame, tmp_path / "full.csv")
    assert main(["evaluate", "--checkpoint", str(ck), "--data", str(full), "--calibrate", "aci", "--quiet",
                 "--output_dir", str(tmp_path / "ev")]) == 0
    table = pd.read_csv(tmp_path / "ev" / "forecasts.csv")
    table = table[table["model"] == "fhs+aci"]
    from stockllm.models import load_forecaster

    steps = Calibrated(load_forecaster(ck))._steps(frame, np.arange(29, 700))
    assert steps[500 - 29] == 0.05 and steps[0] == steps[499 - 29] == 0.01  # the boost after the anchor is in use
    for t in (500, 503, 640):
        csv = write_csv(frame.iloc[: t + 1], tmp_path / f"cut{t}.csv")
        assert main(["predict", "--checkpoint", str(ck), "--calibrate", "aci", "--data", str(csv), "--quiet",
                     "--calendar", "business", "--output", str(tmp_path / "p.csv")]) == 0
        pred = pd.read_csv(tmp_path / "p.csv")
        row = table[table["origin"] == frame.index[t].strftime("%Y-%m-%d")]
        np.testing.assert_allclose(pred["q0.1"].to_numpy(), row["q0.1"].to_numpy(), rtol=1e-12)
        np.testing.assert_allclose(pred["q0.9"].to_numpy(), row["q0.9"].to_numpy(), rtol=1e-12)


def test_the_step_is_boosted_after_the_anchor_and_decays():
    """γ_k = γ·(1 + (boost − 1)·e^(−k/N)) for the k-th origin after the anchor, γ before it and without an anchor;
    the boosted tracker moves the offsets of a too-narrow model further in its first outcomes after the anchor."""
    frame = make_ohlcv(900, seed=13)
    anchor = frame.index[600]
    model = Calibrated(_Narrow(), CalibrationConfig(gamma=0.01, boost=4, boost_origins=50), until=anchor)
    every = np.arange(29, 900)
    steps = model._steps(frame, every)
    k = np.arange(0, 300)
    np.testing.assert_allclose(steps[600 - 29:], 0.01 * (1 + 3 * np.exp(-k / 50)))
    assert np.all(steps[: 600 - 29] == 0.01)
    assert np.all(Calibrated(_Narrow(), CalibrationConfig(boost=4))._steps(frame, every) == 0.01)
    plain = Calibrated(_Narrow(), CalibrationConfig(gamma=0.01, boost=1), until=anchor)
    origins = np.arange(600, 700)
    width = lambda m: np.mean(np.diff(m.predict_quantiles(frame, origins)[:, 0, [0, -1]], axis=1))  # noqa: E731
    assert width(model) > width(plain)
    with pytest.raises(StockLLMError, match="boost"):
        CalibrationConfig(boost=0.5)
    with pytest.raises(StockLLMError, match="warmup"):
        CalibrationConfig(warmup=2)
