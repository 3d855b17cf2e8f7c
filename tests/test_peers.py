"""The field's peers on our contract (statsforecast Theta/AutoETS/AutoARIMA, zero-shot Chronos) and the leaderboard."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from conftest import make_ohlcv, write_csv
from stockllm.cli import main
from stockllm.config import DataConfig
from stockllm.errors import StockLLMError
from stockllm.backtest import evaluate, leaderboard, resolve_cutoff
from stockllm.models import NaiveForecaster, model_class

W, H = 10, 3
DATA = DataConfig(window_size=W, horizon=H)


def quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def frame():
    return make_ohlcv(400, seed=31, drift=0.0005)


@pytest.mark.parametrize("name", ["theta", "autoets", "autoarima"])
def test_statsforecast_peers_follow_the_contract(name, frame):
    """Fitted on the training part only; quantiles non-decreasing; origin t's forecast is the same alone, inside
    a backtest, and with every row after t changed."""
    model = model_class(name)(DATA).fit([frame.iloc[:300]], progress=False)
    origins = np.arange(300, 397)
    q = model.predict_quantiles(frame, origins)
    assert q.shape == (len(origins), H, len(DATA.quantiles)) and np.isfinite(q).all()
    assert (np.diff(q, axis=-1) >= 0).all()
    assert (q[:, :, -1] > q[:, :, 0]).all()  # a real spread from the level= intervals
    for t in (300, 350, 396):
        np.testing.assert_array_equal(model.predict_quantiles(frame, np.array([t]))[0], q[t - 300])
    changed = frame.copy()
    changed.iloc[351:, :4] *= 1.5
    np.testing.assert_array_equal(model.predict_quantiles(changed, origins[:51]), q[:51])
    other = make_ohlcv(400, seed=32)
    other.attrs["source"] = "elsewhere"
    with pytest.raises(StockLLMError, match="fitted per series"):
        model.predict_quantiles(other, origins)


def test_theta_agrees_with_statsforecast_cross_validation(frame):
    """Our theta (one fit before the cutoff, then forward) scores like statsforecast's own
    cross_validation(refit=False) on the same origins: mae_vs_naive within 0.005."""
    from statsforecast import StatsForecast
    from statsforecast.models import Theta

    table, forecasts = evaluate({"s": frame}, {"theta": lambda: model_class("theta")(DATA)}, test_size=0.25,
                                progress=False, log=quiet)
    ours = table[table["model"] == "theta"].set_index("horizon")["mae_vs_naive"]
    origins = sorted(forecasts["origin"].unique())
    df = pd.DataFrame({"unique_id": "s", "ds": frame.index, "y": frame["Close"].to_numpy()})
    cv = StatsForecast(models=[Theta(season_length=1)], freq="B").cross_validation(
        df=df, h=H, n_windows=len(origins), step_size=1, refit=False)
    assert sorted(cv["cutoff"].dt.strftime("%Y-%m-%d").unique()) == origins
    cv["horizon"] = cv.groupby("cutoff").cumcount() + 1
    last = frame["Close"].reindex(cv["cutoff"]).to_numpy()
    cv["naive_err"] = np.abs(cv["y"] - last)
    cv["err"] = np.abs(cv["y"] - cv["Theta"])
    theirs = cv.groupby("horizon").apply(lambda g: g["err"].mean() / g["naive_err"].mean())
    np.testing.assert_allclose(ours.sort_index().to_numpy(), theirs.sort_index().to_numpy(), atol=0.005)


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "statsforecast", None)
    monkeypatch.setitem(sys.modules, "statsforecast.models", None)
    with pytest.raises(StockLLMError, match=r"stockllm\[peers\]"):
        model_class("theta")(DATA)
    monkeypatch.setitem(sys.modules, "chronos", None)
    with pytest.raises(StockLLMError, match=r"stockllm\[chronos\]"):
        model_class("chronos")(DATA)


@pytest.fixture(scope="module")
def tiny_chronos(tmp_path_factory):
    """A tiny random-weight Chronos-Bolt saved as a folder, loaded as a downloaded one would be."""
    import torch
    from chronos.chronos_bolt import ChronosBoltModelForForecasting
    from transformers import T5Config

    folder = tmp_path_factory.mktemp("tiny-chronos")
    config = T5Config(d_model=32, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=16, vocab_size=2,
                      dense_act_fn="relu", feed_forward_proj="relu", pad_token_id=0, decoder_start_token_id=0,
                      chronos_pipeline_class="ChronosBoltPipeline", architectures=["ChronosBoltModelForForecasting"],
                      chronos_config=dict(context_length=64, prediction_length=8, input_patch_size=8,
                                          input_patch_stride=8, quantiles=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8,
                                                                           0.9], use_reg_token=True))
    torch.manual_seed(0)
    ChronosBoltModelForForecasting(config).save_pretrained(folder)
    return folder


def test_chronos_zero_shot_through_the_cli(tiny_chronos, frame, tmp_path, capsys):
    csv = write_csv(frame, tmp_path / "s.csv")
    out_dir = tmp_path / "ev"
    rc = main(["evaluate", "--data", str(csv), "--models", "naive,chronos", "--chronos_model", str(tiny_chronos),
               "--chronos_context", "48", "--window_size", str(W), "--output_dir", str(out_dir), "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    forecasts = pd.read_csv(out_dir / "forecasts.csv")
    chronos = forecasts[forecasts["model"] == "chronos"]
    levels = [c for c in forecasts.columns if c.startswith("q0.")]
    assert len(chronos) and len(levels) == 9 and np.isfinite(chronos[levels].to_numpy()).all()
    assert (np.diff(chronos[levels].to_numpy(), axis=1) >= 0).all()
    table = pd.read_csv(out_dir / "metrics.csv")
    assert (table.loc[table["model"] == "chronos", "protocol"] == "no fit").all()
    assert np.isfinite(table.loc[table["model"] == "chronos", "wql_vs_naive"]).all()
    # Its context is a fixed number of days ending at t: alone equals inside the backtest.
    from stockllm.config import ChronosConfig

    model = model_class("chronos")(DATA, ChronosConfig(model_path=str(tiny_chronos), context_days=48, batch_size=16))
    origins = np.arange(300, 397)
    together = model.predict_quantiles(frame, origins)
    for t in (300, 333, 396):
        np.testing.assert_allclose(model.predict_quantiles(frame, np.array([t]))[0], together[t - 300],
                                   rtol=1e-5, atol=1e-7)


def test_chronos_flags_without_chronos_are_refused(frame, tmp_path, capsys):
    csv = write_csv(frame, tmp_path / "s.csv")
    assert main(["evaluate", "--data", str(csv), "--models", "naive", "--chronos_context", "64", "--output_dir",
                 str(tmp_path / "x"), "--quiet"]) == 1
    assert "--chronos_context is for the chronos model" in capsys.readouterr().err


def test_leaderboard_on_hand_made_metrics():
    rows = []
    for series in ("a", "b"):
        for h in (1, 2):
            rows += [{"series": series, "model": "naive", "horizon": h, "mae": 1.0, "mae_vs_naive": 1.0,
                      "wql_vs_naive": 1.0, "protocol": "no fit"},
                     {"series": series, "model": "good", "horizon": h, "mae": 0.9, "mae_vs_naive": 0.9,
                      "wql_vs_naive": np.nan, "protocol": "one fit"},
                     {"series": series, "model": "mixed", "horizon": h, "mae": 0.8 if series == "a" else 1.25,
                      "mae_vs_naive": 0.8 if series == "a" else 1.25, "wql_vs_naive": 0.5, "protocol": "no fit"}]
    board = leaderboard(pd.DataFrame(rows)).set_index("model")
    assert board.loc["good", "mae_vs_naive"] == pytest.approx(0.9)
    assert board.loc["mixed", "mae_vs_naive"] == pytest.approx(1.0)  # √(0.8 · 1.25)
    assert np.isnan(board.loc["good", "wql_vs_naive"])  # no quantiles: empty, not 0
    assert board.loc["good", "mean_rank"] == pytest.approx(1.5)  # 2nd on a, 1st on b
    assert board.loc["mixed", "mean_rank"] == pytest.approx(2.0)  # 1st on a, 3rd on b
    assert board.loc["naive", "mean_rank"] == pytest.approx(2.5)
    assert list(board.index) == ["mixed", "naive", "good"]  # by WQL; a model without quantiles comes last


def test_leaderboard_counts_diebold_mariano_wins_per_series():
    rng = np.random.default_rng(0)
    frames = {"a": make_ohlcv(500, seed=1), "b": make_ohlcv(500, seed=2)}

    class Oracle(NaiveForecaster):
        """Knows the next close up to a little noise: far better than naive on every series."""

        kind = "oracle"

        def predict_quantiles(self, f, origins):
            from stockllm.features import targets

            y = targets(f, self.horizon, origins) + rng.normal(0, 1e-4, (len(origins), self.horizon))
            return np.repeat(y[:, :, None], len(self.quantiles), axis=2) + np.linspace(-1e-3, 1e-3,
                                                                                      len(self.quantiles))

    table, forecasts = evaluate(frames, {"naive": lambda: NaiveForecaster(DATA), "oracle": lambda: Oracle(DATA)},
                                progress=False, log=quiet)
    board = leaderboard(table, forecasts).set_index("model")
    assert board.loc["oracle", "dm_better"] == 2 and board.loc["oracle", "dm_worse"] == 0
    assert board.loc["naive", "dm_better"] == 0 and board.loc["naive", "dm_worse"] == 0
    assert board.loc["oracle", "series"] == 2 and board.index[0] == "oracle"
    assert resolve_cutoff(frames, 0.2) <= pd.Timestamp(forecasts["origin"].min())
