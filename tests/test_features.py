"""Tests for stockllm.features: scale-free windows, log-return targets, their inverse and the splits."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_ohlcv
from stockllm.features import (
    N_FEATURES,
    date_split,
    origins_with_targets,
    targets,
    to_prices,
    window_inputs,
)

W, H = 10, 3


@pytest.fixture
def frame():
    return make_ohlcv(80, seed=3)


def test_window_inputs_shape_and_dtype(frame):
    origins = np.array([W - 1, 20, 50, len(frame) - 1])
    x = window_inputs(frame, W, origins)
    assert x.shape == (len(origins), W, N_FEATURES) == (4, 10, 5)
    assert x.dtype == np.float32
    assert np.isfinite(x).all()


def test_window_inputs_empty_origins(frame):
    assert window_inputs(frame, W, np.array([], dtype=np.int64)).shape == (0, W, N_FEATURES)


def test_last_close_feature_is_exactly_zero(frame):
    x = window_inputs(frame, W, origins_with_targets(len(frame), W, H))
    assert (x[:, -1, 3] == 0.0).all()  # log(C_t / C_t)
    # And it is not trivially zero elsewhere.
    assert (x[:, :-1, 3] != 0).any()


def test_window_inputs_are_relative_to_the_origin_close(frame):
    t = 40
    x = window_inputs(frame, W, np.array([t]))[0]
    rows = frame.iloc[t - W + 1: t + 1]
    last = frame["Close"].iloc[t]
    for j, col in enumerate(["Open", "High", "Low", "Close"]):
        np.testing.assert_allclose(x[:, j], np.log(rows[col].to_numpy() / last), rtol=1e-6, atol=1e-7)
    v = rows["Volume"].to_numpy()
    np.testing.assert_allclose(x[:, 4], np.log1p(v) - np.log1p(v.mean()), rtol=1e-6, atol=1e-7)


def test_window_inputs_use_only_rows_up_to_the_origin(frame):
    t = 40
    before = window_inputs(frame, W, np.array([t]))
    changed = frame.copy()
    changed.iloc[t + 1:, :] *= 1.7  # the future changes
    np.testing.assert_array_equal(window_inputs(changed, W, np.array([t])), before)


def test_window_inputs_are_scale_free(frame):
    origins = origins_with_targets(len(frame), W, H)
    scaled = frame.copy()
    scaled[["Open", "High", "Low", "Close"]] *= 10
    scaled["Volume"] *= 3
    a, b = window_inputs(frame, W, origins), window_inputs(scaled, W, origins)
    # The four price features are identical.
    np.testing.assert_array_equal(a[..., :4], b[..., :4])
    # Volume uses log1p (so that zero volumes work), which is scale-free up to ~1/volume: ~1e-7 here.
    np.testing.assert_allclose(a[..., 4], b[..., 4], rtol=0, atol=1e-6)


def test_window_inputs_reject_origins_without_a_full_window(frame):
    with pytest.raises(ValueError):
        window_inputs(frame, W, np.array([W - 2]))
    with pytest.raises(ValueError):
        window_inputs(frame, W, np.array([len(frame)]))


def test_targets_are_log_returns_and_nan_past_the_end(frame):
    close = frame["Close"].to_numpy()
    n = len(frame)
    origins = np.array([W - 1, 30, n - 3, n - 2, n - 1])
    y = targets(frame, H, origins)
    assert y.shape == (len(origins), H)
    assert y.dtype == np.float64
    for i, t in enumerate(origins):
        for h in range(1, H + 1):
            if t + h < n:
                assert y[i, h - 1] == pytest.approx(np.log(close[t + h] / close[t]), rel=1e-15, abs=0)
            else:
                assert np.isnan(y[i, h - 1])
    assert np.isnan(y[-1]).all()
    assert np.isnan(y[-2]).tolist() == [False, True, True]
    assert np.isnan(y[2]).tolist() == [False, False, True]
    assert not np.isnan(y[:2]).any()


def test_to_prices_inverts_targets(frame):
    close = frame["Close"].to_numpy()
    origins = origins_with_targets(len(frame), W, H)
    y = targets(frame, H, origins)
    prices = to_prices(close[origins], y)
    actual = np.stack([close[origins + h] for h in range(1, H + 1)], axis=1)
    np.testing.assert_allclose(prices, actual, rtol=1e-13, atol=0)
    # Zero log-return is exactly the last close (what naive predicts).
    np.testing.assert_array_equal(to_prices(close[origins], np.zeros_like(y)), np.repeat(close[origins][:, None], H, 1))


def test_origins_with_targets_bounds():
    o = origins_with_targets(100, W, H)
    assert o[0] == W - 1
    assert o[-1] == 100 - H - 1
    np.testing.assert_array_equal(o, np.arange(W - 1, 100 - H))
    # start raises the first origin but never below a full window.
    assert origins_with_targets(100, W, H, start=50)[0] == 50
    assert origins_with_targets(100, W, H, start=2)[0] == W - 1
    # Too short for one window with its targets: nothing.
    assert len(origins_with_targets(W + H - 1, W, H)) == 0
    assert len(origins_with_targets(W + H, W, H)) == 1


def test_date_split_on_one_series_is_the_last_share_after_a_gap():
    frame = make_ohlcv(200)
    origins = origins_with_targets(200, W, H)
    ((train, val),) = date_split([frame], W, H, 0.2)
    n_val = int(round(len(origins) * 0.2))  # the last 20% of the windows
    np.testing.assert_array_equal(val, origins[-n_val:])
    # Training targets end before validation starts: H origins are dropped between the parts.
    np.testing.assert_array_equal(train, origins[: len(origins) - n_val - H])
    assert val[0] - train[-1] == H + 1


def test_date_split_without_validation():
    frame = make_ohlcv(200)
    ((train, val),) = date_split([frame], W, H, 0.0)
    np.testing.assert_array_equal(train, origins_with_targets(200, W, H))
    assert len(val) == 0
