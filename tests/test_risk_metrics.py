"""The tests a risk desk runs (crps, Kupiec, Christoffersen, PIT, reliability), against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from stockllm.metrics import (christoffersen_p, coverage_tests, crps_from_quantiles, kupiec_p, leaderboard, metrics,
                              pit_histogram, reliability)
from stockllm.quantiles import pinball


def test_crps_on_a_hand_case():
    """y = 100, quantiles 90/100/110 at 0.1/0.5/0.9: pinball losses 1, 0, 1 → CRPS ≈ 2 · mean = 4/3."""
    loss = pinball(np.array([100.0]), np.array([[90.0, 100.0, 110.0]]), [0.1, 0.5, 0.9])
    np.testing.assert_allclose(loss, [[1.0, 0.0, 1.0]])
    assert math.isclose(crps_from_quantiles(loss), 4 / 3)


def test_crps_from_dense_quantiles_matches_the_gaussian_closed_form():
    """With 100 midpoint levels the approximation is within 1% of CRPS(N(0, 1), 0) = 2φ(0) − 1/√π."""
    levels = (np.arange(100) + 0.5) / 100
    loss = pinball(np.zeros(1), stats.norm.ppf(levels)[None, :], levels)
    exact = 2 * stats.norm.pdf(0) - 1 / math.sqrt(math.pi)
    assert abs(crps_from_quantiles(loss) / exact - 1) < 0.01


def test_kupiec_by_hand():
    """4 violations in 10 at p = 0.2: LR = −2[4 ln .2 + 6 ln .8 − 4 ln .4 − 6 ln .6], χ²₁ tail = erfc(√(LR/2))."""
    v = np.array([1, 0, 0, 1, 0, 1, 0, 0, 1, 0], dtype=bool)
    lr = -2 * (4 * math.log(0.2) + 6 * math.log(0.8) - 4 * math.log(0.4) - 6 * math.log(0.6))
    assert math.isclose(kupiec_p(v, 0.2), math.erfc(math.sqrt(lr / 2)), rel_tol=1e-12)
    assert math.isclose(kupiec_p(np.array([1, 0, 0, 0, 0], dtype=bool), 0.2), 1.0)  # exactly the expected rate
    # no violation at all: π̂ = 0, log L(π̂) = 0
    lr0 = -2 * 10 * math.log(0.8)
    assert math.isclose(kupiec_p(np.zeros(10, dtype=bool), 0.2), math.erfc(math.sqrt(lr0 / 2)), rel_tol=1e-12)
    assert math.isnan(kupiec_p(np.zeros(0, dtype=bool), 0.2))


def test_christoffersen_by_hand():
    """0001110000: transitions n00 5, n01 1, n11 2, n10 1; LR_cc = LR_uc + LR_ind, χ²₂ tail = exp(−LR/2)."""
    v = np.array([0, 0, 0, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    ln = math.log
    lr_uc = -2 * (3 * ln(0.2) + 7 * ln(0.8) - 3 * ln(0.3) - 7 * ln(0.7))
    pi, p01, p11 = 3 / 9, 1 / 6, 2 / 3
    l_single = 3 * ln(pi) + 6 * ln(1 - pi)
    l_markov = 5 * ln(1 - p01) + 1 * ln(p01) + 1 * ln(1 - p11) + 2 * ln(p11)
    lr_ind = -2 * (l_single - l_markov)
    assert math.isclose(christoffersen_p(v, 0.2), math.exp(-(lr_uc + lr_ind) / 2), rel_tol=1e-12)
    # spread-out violations at the right rate pass; the same number in one cluster fails
    spread = np.zeros(200, dtype=bool)
    spread[::5] = True
    clustered = np.zeros(200, dtype=bool)
    clustered[:40] = True
    assert christoffersen_p(spread, 0.2) > christoffersen_p(clustered, 0.2)
    assert christoffersen_p(clustered, 0.2) < 1e-6 and kupiec_p(clustered, 0.2) == 1.0


def test_coverage_tests_use_non_overlapping_origins_beyond_one_day():
    inside = np.array([1, 0, 1, 1, 0, 1, 1, 1, np.nan, 1.0])
    h2 = coverage_tests(inside, 2)
    kept = np.array([1, 1, 0, 1, 1.0])  # every 2nd known value
    assert h2["kupiec_p"] == kupiec_p(kept < 0.5, 0.2)
    assert h2["christoffersen_p"] == christoffersen_p(kept < 0.5, 0.2)


def _forecasts(n=60, horizons=(1,), seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for model, width in (("naive", 1.0), ("narrow", 0.3)):
        for h in horizons:
            y = 100 + rng.normal(size=n)
            z = stats.norm.ppf([0.1, 0.5, 0.9])
            rows.append(pd.DataFrame({
                "series": "s", "model": model, "origin": [f"2020-01-{i:03d}" for i in range(n)], "horizon": h,
                "last_close": 100.0, "actual": y, "predicted": 100.0, "sigma": 0.01,
                "q0.1": 100 + width * z[0], "q0.5": 100.0, "q0.9": 100 + width * z[2]}))
    return pd.concat(rows, ignore_index=True)


def test_metrics_and_leaderboard_have_the_risk_columns():
    f = _forecasts(horizons=(1, 2))
    table = metrics(f)
    for col in ("crps", "kupiec_p", "christoffersen_p"):
        assert col in table.columns and table[col].notna().all()
    row = table[(table["model"] == "narrow") & (table["horizon"] == 1)].iloc[0]
    g = f[(f["model"] == "narrow") & (f["horizon"] == 1)]
    loss = pinball(g["actual"].to_numpy(), g[["q0.1", "q0.5", "q0.9"]].to_numpy(), [0.1, 0.5, 0.9])
    assert math.isclose(row["crps"], 2 * loss.mean(), rel_tol=1e-12)
    outside = (g["actual"] < g["q0.1"]) | (g["actual"] > g["q0.9"])
    assert math.isclose(row["kupiec_p"], kupiec_p(outside.to_numpy(), 0.2), rel_tol=1e-12)
    assert row["kupiec_p"] < 0.01  # a band 0.3 × too narrow misses far more than 20%
    board = leaderboard(table.assign(protocol="no fit"))
    assert {"crps", "kupiec_p", "christoffersen_p"} <= set(board.columns)
    narrow = table[table["model"] == "narrow"]
    assert math.isclose(board.set_index("model").loc["narrow", "kupiec_p"], narrow["kupiec_p"].median())


def test_pit_histogram_and_reliability():
    """Actuals in known places: the histogram's shares and the reliability curve count them."""
    f = pd.DataFrame({"model": "m", "actual": [0.5, 1.5, 2.5, 3.5, 1.2],
                      "q0.25": 1.0, "q0.5": 2.0, "q0.75": 3.0})
    hist = pit_histogram(f)
    np.testing.assert_allclose(hist["share"], [0.2, 0.4, 0.2, 0.2])
    np.testing.assert_allclose(hist["expected"], [0.25, 0.25, 0.25, 0.25])
    rel = reliability(f)
    np.testing.assert_allclose(rel["observed"], [0.2, 0.6, 0.8])
    np.testing.assert_allclose(rel["level"], [0.25, 0.5, 0.75])
