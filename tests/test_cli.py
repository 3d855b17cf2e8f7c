"""Tests for the ``stockllm`` command: train, predict, evaluate, download, errors, and the installed entry points."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import stockllm
from conftest import make_ohlcv, write_csv
from stockllm import data as data_module
from stockllm.cli import main
from stockllm.data import load_ohlcv
from stockllm.calendars import next_sessions

PREDICTION_COLUMNS = ["date", "horizon", "predicted_close", "last_close", "model"]


# --- helpers and shared files ---------------------------------------------------------------------------------

def ok(capsys, argv) -> str:
    """Run the CLI, require exit 0 and no error line; return stdout."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "stockllm: error" not in err
    assert "Traceback" not in out + err
    return out


def fails(capsys, argv) -> str:
    """Run the CLI, require a non-zero exit with exactly one error line and no traceback; return that line."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc != 0
    errors = [line for line in err.splitlines() if line.startswith("stockllm: error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in out + err
    return errors[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """Shared inputs and one MLP checkpoint trained through the CLI (3 epochs)."""
    root = tmp_path_factory.mktemp("cli")
    paths = {
        "root": root,
        "a": write_csv(make_ohlcv(260, seed=1), root / "a.csv"),
        "b": write_csv(make_ohlcv(200, seed=2, start="2020-03-02"), root / "b.csv"),
        "short": write_csv(make_ohlcv(20, seed=3), root / "short.csv"),
        "checkpoint": root / "ckpt",
    }
    assert main(["train", "--model", "mlp", "--data", str(paths["a"]), "--epochs", "3", "--quiet",
                 "--save_dir", str(paths["checkpoint"])]) == 0
    return paths


def check_predictions(out: str, csv: Path, frame: pd.DataFrame, horizon: int, model: str) -> pd.DataFrame:
    assert "trainable parameters:" in out
    assert "peak memory" in out
    dates = list(next_sessions(frame.index[-1], horizon, "XNYS").strftime("%Y-%m-%d"))  # a.csv, b.csv: no suffix
    for h, date in enumerate(dates, start=1):
        assert f"{date}  +{h}d" in out
    table = pd.read_csv(csv)
    assert list(table.columns[:5]) == PREDICTION_COLUMNS
    assert len(table) == horizon
    assert list(table["date"]) == dates
    assert list(table["horizon"]) == list(range(1, horizon + 1))
    assert (table["model"] == model).all()
    np.testing.assert_allclose(table["last_close"], frame["Close"].iloc[-1], rtol=1e-12)
    assert np.isfinite(table["predicted_close"]).all()
    return table


# --- train and predict ----------------------------------------------------------------------------------------

def test_train_writes_a_checkpoint_and_reports(files, capsys, tmp_path):
    out = ok(capsys, ["train", "--model", "mlp", "--data", files["a"], "--epochs", "3", "--quiet",
                      "--save_dir", tmp_path / "ck"])
    assert "trainable parameters: 11,419" in out  # 150*64 + 64 + 64*27 + 27 (H 3 × Q 9 outputs)
    assert "peak memory" in out
    assert "val_loss" in out and "FHS start" in out
    # The training state (saved every epoch by default) sits beside the checkpoint.
    assert sorted(p.name for p in (tmp_path / "ck").iterdir() if not p.name.startswith(".")) == ["model.safetensors", "state", "stockllm.json"]


def test_predict_with_checkpoint(files, capsys, tmp_path):
    output = tmp_path / "predictions.csv"
    out = ok(capsys, ["predict", "--checkpoint", files["checkpoint"], "--data", files["a"], "--output", output])
    table = check_predictions(out, output, load_ohlcv(files["a"]), 3, "mlp")
    assert "trainable parameters: 11,419" in out
    # The saved model, loaded in-process, forecasts the same closes.
    from stockllm.models import load_forecaster

    expected = load_forecaster(files["checkpoint"]).forecast(load_ohlcv(files["a"]))
    np.testing.assert_allclose(table["predicted_close"], expected["predicted_close"], rtol=1e-12)


def test_predict_with_seed_aliases(files, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = ok(capsys, ["predict", "--model_path", files["checkpoint"], "--test_csv", files["a"]])
    # --output defaults to predictions.csv in the working folder.
    check_predictions(out, tmp_path / "predictions.csv", load_ohlcv(files["a"]), 3, "mlp")


def test_predict_several_files(files, capsys, tmp_path):
    output = tmp_path / "p.csv"
    ok(capsys, ["predict", "--checkpoint", files["checkpoint"], "--data", files["a"], files["b"], "--output", output])
    table = pd.read_csv(output)
    assert len(table) == 6
    assert list(table["series"].unique()) == ["a", "b"]


def test_predict_naive_needs_no_checkpoint(files, capsys, tmp_path):
    output = tmp_path / "naive.csv"
    out = ok(capsys, ["predict", "--model", "naive", "--data", files["a"], "--output", output])
    table = check_predictions(out, output, load_ohlcv(files["a"]), 3, "naive")
    assert (table["predicted_close"] == table["last_close"]).all()
    assert "trainable parameters: 0" in out


def test_seed_flag_names(files, capsys, tmp_path):
    ck = tmp_path / "seed_ck"
    ok(capsys, ["train", "--data", files["a"], "--epochs", "2", "--batch_size", "16", "--learning_rate", "0.005",
                "--window_size", "12", "--horizon", "2", "--save_dir", ck, "--quiet"])
    meta = json.loads((ck / "stockllm.json").read_text())
    assert meta["kind"] == "mlp"
    assert meta["data"] == {"window_size": 12, "horizon": 2, "quantiles": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
                            "features": []}
    assert meta["config"]["train"]["epochs"] == 2
    assert meta["config"]["train"]["batch_size"] == 16
    assert meta["config"]["train"]["learning_rate"] == 0.005
    assert meta["fit"]["epochs_run"] <= 2
    output = tmp_path / "out.csv"
    out = ok(capsys, ["predict", "--checkpoint", ck, "--data", files["a"], "--output", output])
    check_predictions(out, output, load_ohlcv(files["a"]), 2, "mlp")  # window and horizon come from the folder


def test_predict_quantile_columns_interval_and_levels_the_checkpoint_cannot_give(files, capsys, tmp_path):
    output = tmp_path / "q.csv"
    out = ok(capsys, ["predict", "--checkpoint", files["checkpoint"], "--data", files["a"], "--output", output,
                      "--quantiles", "0.1,0.5,0.9"])
    table = pd.read_csv(output)
    assert list(table.columns[-3:]) == ["q0.1", "q0.5", "q0.9"]
    assert (table["q0.1"] <= table["q0.5"]).all() and (table["q0.5"] <= table["q0.9"]).all()
    np.testing.assert_allclose(table["q0.5"], table["predicted_close"], rtol=1e-12)
    first = table.iloc[0]
    assert f"80% [{first['q0.1']:.2f}, {first['q0.9']:.2f}]" in out
    # The default: every level the checkpoint knows.
    ok(capsys, ["predict", "--checkpoint", files["checkpoint"], "--data", files["a"], "--output", output])
    assert [c for c in pd.read_csv(output).columns if c.startswith("q")] == [f"q0.{i}" for i in range(1, 10)]
    line = fails(capsys, ["predict", "--checkpoint", files["checkpoint"], "--data", files["a"], "--output",
                          tmp_path / "no.csv", "--quantiles", "0.05,0.5,0.95"])
    assert "0.05,0.95" in line and "trained for" in line
    assert not (tmp_path / "no.csv").exists()
    line = fails(capsys, ["predict", "--model", "naive", "--data", files["a"], "--quantiles", "0.1,0.2"])
    assert "--quantiles" in line and "0.5" in line


def test_predict_plot_draws_the_fan(files, capsys, tmp_path):
    out = ok(capsys, ["predict", "--checkpoint", files["checkpoint"], "--data", files["a"], files["b"], "--output",
                      tmp_path / "p.csv", "--plot", tmp_path / "fan.png"])
    assert (tmp_path / "fan.png").read_bytes().startswith(b"\x89PNG")
    assert "fan.png" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fan.png", "p.csv"]  # no temporary file left
    for bad in (tmp_path / "fan.jpg", tmp_path / "nowhere" / "fan.png", tmp_path):
        line = fails(capsys, ["predict", "--model", "naive", "--data", files["a"], "--output", tmp_path / "x.csv",
                              "--plot", bad])
        assert "--plot" in line
    assert not (tmp_path / "x.csv").exists()


def test_train_records_its_quantile_levels(files, capsys, tmp_path):
    ok(capsys, ["train", "--data", files["a"], "--epochs", "1", "--quantiles", "0.05,0.5,0.95", "--save_dir",
                tmp_path / "ck", "--quiet"])
    assert json.loads((tmp_path / "ck" / "stockllm.json").read_text())["data"]["quantiles"] == [0.05, 0.5, 0.95]
    ok(capsys, ["predict", "--checkpoint", tmp_path / "ck", "--data", files["a"], "--output", tmp_path / "p.csv",
                "--quantiles", "0.05,0.95"])
    assert [c for c in pd.read_csv(tmp_path / "p.csv").columns if c.startswith("q")] == ["q0.05", "q0.95"]


# --- evaluate --------------------------------------------------------------------------------------------------

def test_evaluate_writes_metrics_forecasts_and_plot(files, capsys, tmp_path):
    out_dir = tmp_path / "eval"
    out = ok(capsys, ["evaluate", "--data", files["a"], files["b"], "--models", "naive,drift,mlp", "--epochs", "3",
                      "--window_size", "10", "--output_dir", out_dir, "--quiet"])
    assert sorted(p.name for p in out_dir.iterdir() if not p.name.startswith(".")) == ["forecasts.csv", "leaderboard.csv", "metrics.csv",
                                                          "plot.png", "report.html"]
    board = pd.read_csv(out_dir / "leaderboard.csv")
    assert list(board.columns) == ["model", "protocol", "series", "mae_vs_naive", "wql_vs_naive", "coverage_80",
                                   "crps", "kupiec_p", "christoffersen_p", "mean_rank", "pairs", "wql_dm_better", "wql_dm_worse", "dm_better", "dm_worse"]
    assert set(board["model"]) == {"naive", "drift", "mlp"} and (board["series"] == 2).all()
    assert "leaderboard over 2 series and 3 horizons" in out
    table = pd.read_csv(out_dir / "metrics.csv")
    for column in ["series", "model", "horizon", "mae", "rmse", "mape", "mae_vs_naive", "dir_acc", "dm_pvalue"]:
        assert column in table.columns
    assert set(table["model"]) == {"naive", "drift", "mlp"}
    assert set(table["series"]) == {"a", "b"}
    assert len(table) == 3 * 2 * 3
    assert (table.loc[table["model"] == "naive", "mae_vs_naive"] == 1.0).all()
    forecasts = pd.read_csv(out_dir / "forecasts.csv")
    assert {"series", "model", "origin", "horizon", "target_date", "actual", "predicted"} <= set(forecasts.columns)
    assert (out_dir / "plot.png").read_bytes().startswith(b"\x89PNG")
    for column in ["wql", "wql_vs_naive", "coverage_80", "coverage_20", "width_80"]:
        assert table[column].notna().all(), column
    assert table.loc[table["model"] != "naive", "dm_pvalue_wql"].notna().all()
    assert [c for c in forecasts.columns if c.startswith("q")] == [f"q0.{i}" for i in range(1, 10)]
    # The table is printed, point and distribution scores side by side.
    assert "mae/naive" in out and "wql/naive" in out and "cov80" in out  # the terminal table's short names
    assert "drift" in out and "mlp" in out


def test_evaluate_always_scores_naive(files, capsys, tmp_path):
    ok(capsys, ["evaluate", "--data", files["a"], "--models", "drift", "--window_size", "10",
                "--output_dir", tmp_path, "--quiet"])
    assert set(pd.read_csv(tmp_path / "metrics.csv")["model"]) == {"naive", "drift"}


def test_evaluate_checkpoint_reproduces_predict(files, capsys, tmp_path):
    """A checkpoint is scored without fitting on every origin after its training data, and each backtest
    forecast is exactly what `predict` says on the history up to that origin."""
    frame = load_ohlcv(files["a"])
    head = write_csv(frame.iloc[:180], tmp_path / "head.csv")
    ck = tmp_path / "ck"
    ok(capsys, ["train", "--model", "mlp", "--data", head, "--epochs", "3", "--window_size", "10", "--quiet",
                "--save_dir", ck])
    out_dir = tmp_path / "ev"
    out = ok(capsys, ["evaluate", "--checkpoint", ck, "--data", files["a"], "--models", "drift", "--output_dir",
                      out_dir, "--quiet"])
    assert f"test cutoff {frame.index[180]:%Y-%m-%d}" in out and "checkpoint, no fit" in out
    table = pd.read_csv(out_dir / "metrics.csv")
    assert set(table["model"]) == {"naive", "drift", "mlp"}
    forecasts = pd.read_csv(out_dir / "forecasts.csv")
    mlp = forecasts[forecasts["model"] == "mlp"]
    assert mlp["origin"].min() == f"{frame.index[180]:%Y-%m-%d}"  # the first day after the training data
    for t in (180, 201, 256):
        history = write_csv(frame.iloc[: t + 1], tmp_path / f"h{t}.csv")
        ok(capsys, ["predict", "--checkpoint", ck, "--data", history, "--output", tmp_path / "p.csv"])
        predicted = pd.read_csv(tmp_path / "p.csv")["predicted_close"].to_numpy()
        rows = mlp[mlp["origin"] == f"{frame.index[t]:%Y-%m-%d}"].sort_values("horizon")
        np.testing.assert_array_equal(rows["predicted"].to_numpy(), predicted)
    # Test origins inside the training range are refused, and so are flags that do not apply.
    line = fails(capsys, ["evaluate", "--checkpoint", ck, "--data", files["a"], "--test_start",
                          f"{frame.index[150]:%Y-%m-%d}", "--output_dir", tmp_path / "x", "--quiet"])
    assert "inside the training range" in line and f"{frame.index[179]:%Y-%m-%d}" in line
    line = fails(capsys, ["evaluate", "--checkpoint", ck, "--data", files["a"], "--test_size", "0.3",
                          "--output_dir", tmp_path / "x", "--quiet"])
    assert "--test_size does not apply with --checkpoint" in line
    line = fails(capsys, ["evaluate", "--checkpoint", ck, "--data", files["a"], "--models", "mlp",
                          "--output_dir", tmp_path / "x", "--quiet"])
    assert "share one name" in line
    assert not (tmp_path / "x").exists()


def test_evaluate_refits_on_an_expanding_window(files, capsys, tmp_path):
    out = ok(capsys, ["evaluate", "--data", files["a"], "--models", "naive,drift,mlp", "--epochs", "2",
                      "--window_size", "10", "--refit_every", "20", "--output_dir", tmp_path, "--quiet"])
    assert "refitting every 20 test days: 3 fits per model" in out
    table = pd.read_csv(tmp_path / "metrics.csv")
    protocols = dict(zip(table["model"], table["protocol"]))
    assert protocols == {"naive": "no fit", "drift": "no fit",
                         "mlp": "refit every 20 test days (expanding window)"}
    assert len(pd.read_csv(tmp_path / "forecasts.csv").query("model == 'mlp'")) == table["n"].iloc[0] * 3


@pytest.mark.parametrize("models, words", [(["--models", "naive,lora"], "lora takes too long"),
                                           (["--models", "naive,ensemble", "--members", "fhs,lora"],
                                            "lora (an ensemble member) takes too long")])
def test_refit_every_with_a_slow_model_is_refused_before_any_work(files, capsys, tmp_path, models, words):
    rc = main(["evaluate", "--data", str(files["a"]), *models, "--refit_every", "5",
               "--output_dir", str(tmp_path / "ev")])
    out, err = capsys.readouterr()
    assert rc == 1 and words in err and "--refit_every" in err
    assert "cutoff" not in out and "refitting" not in out  # refused before the data were read
    assert not (tmp_path / "ev").exists()


# --- errors for people ---------------------------------------------------------------------------------------

def test_missing_data_file(files, capsys, tmp_path):
    missing = tmp_path / "nope.csv"
    line = fails(capsys, ["predict", "--model", "naive", "--data", missing, "--output", tmp_path / "p.csv"])
    assert "nope.csv" in line
    line = fails(capsys, ["evaluate", "--data", missing, "--output_dir", tmp_path / "ev", "--quiet"])
    assert "nope.csv" in line
    line = fails(capsys, ["train", "--data", missing, "--save_dir", tmp_path / "ck", "--quiet"])
    assert "nope.csv" in line
    assert list(tmp_path.iterdir()) == []


def test_bad_cell_names_row_and_column(files, capsys, tmp_path):
    lines = files["a"].read_text().splitlines()
    cells = lines[4].split(",")
    cells[4] = "abc"  # Close of file row 5 (header = row 1)
    lines[4] = ",".join(cells)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    out_dir = tmp_path / "ev"
    line = fails(capsys, ["evaluate", "--data", bad, "--output_dir", out_dir, "--quiet"])
    assert "bad.csv" in line and "row 5" in line and "column Close" in line and "'abc'" in line
    assert not out_dir.exists()
    line = fails(capsys, ["predict", "--checkpoint", files["checkpoint"], "--data", bad, "--output", tmp_path / "p.csv"])
    assert "row 5" in line and "column Close" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_unknown_model_name(files, capsys, tmp_path):
    out_dir = tmp_path / "ev"
    line = fails(capsys, ["evaluate", "--data", files["a"], "--models", "naive,prophet", "--output_dir", out_dir])
    assert "prophet" in line and "naive" in line
    assert not out_dir.exists()


@pytest.mark.parametrize("size", ["1.5", "0", "-0.2"])
def test_bad_test_size(files, capsys, tmp_path, size):
    out_dir = tmp_path / "ev"
    line = fails(capsys, ["evaluate", "--data", files["a"], "--test_size", size, "--output_dir", out_dir])
    assert "--test_size" in line
    assert not out_dir.exists()


def test_predict_with_a_folder_that_is_not_a_checkpoint(files, capsys, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    output = tmp_path / "p.csv"
    line = fails(capsys, ["predict", "--checkpoint", folder, "--data", files["a"], "--output", output])
    assert "stockllm.json" in line and str(folder) in line
    fails(capsys, ["predict", "--model_path", folder, "--test_csv", files["a"], "--output", output])
    fails(capsys, ["predict", "--checkpoint", tmp_path / "nowhere", "--data", files["a"], "--output", output])
    assert not output.exists()


def test_file_too_short_for_the_window(files, capsys, tmp_path):
    line = fails(capsys, ["train", "--data", files["short"], "--save_dir", tmp_path / "ck", "--quiet"])
    assert "short.csv" in line and "too few rows" in line and "30" in line
    line = fails(capsys, ["predict", "--checkpoint", files["checkpoint"], "--data", files["short"],
                          "--output", tmp_path / "p.csv"])
    assert "short.csv" in line
    fails(capsys, ["evaluate", "--data", files["short"], "--output_dir", tmp_path / "ev", "--quiet"])
    assert list(tmp_path.iterdir()) == []


def test_bad_flag_value_is_a_usage_error(capsys):
    """argparse rejects the value: exit status 2, a usage line naming the flag, no traceback."""
    try:
        code = main(["train", "--data", "x.csv", "--epochs", "many"])
    except SystemExit as exc:  # argparse exits from parse_args
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2
    assert err.splitlines() == ["stockllm train: error: argument --epochs: invalid int value: 'many'; "
                                "see stockllm train --help"]
    assert "Traceback" not in out + err


@pytest.mark.parametrize("argv, words", [
    (["serve", "--epochs", "3"],
     "stockllm serve: error: unrecognized arguments: --epochs 3; see stockllm serve --help"),
    (["predict", "--model", "mlp", "--data", "x.csv"], "invalid choice: 'mlp'"),
])
def test_usage_errors_are_one_line_named_after_the_command(capsys, argv, words):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and words in err
    if "mlp" in argv:
        assert "--checkpoint DIR" in err


def test_test_size_too_small_for_any_forecast(files, capsys, tmp_path):
    out_dir = tmp_path / "ev"
    line = fails(capsys, ["evaluate", "--data", files["b"], "--models", "naive,drift", "--test_size", "0.005",
                          "--output_dir", out_dir, "--quiet"])
    assert "unexpected" not in line
    assert "--test_size" in line or "test part" in line
    assert not out_dir.exists()


def test_evaluate_output_dir_that_is_a_file(files, capsys, tmp_path):
    target = tmp_path / "taken"
    target.write_text("keep me")
    line = fails(capsys, ["evaluate", "--data", files["a"], "--models", "naive", "--output_dir", target, "--quiet"])
    assert "unexpected" not in line and "taken" in line
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("flag, value", [("--batch_size", "0"), ("--learning_rate", "-1"), ("--val_size", "1.5"),
                                         ("--val_size", "-0.5"), ("--epochs", "-1"), ("--hidden_size", "0")])
def test_out_of_range_training_flags(files, capsys, tmp_path, flag, value):
    ck = tmp_path / "ck"
    line = fails(capsys, ["train", "--data", files["b"], "--epochs", "2", flag, value, "--save_dir", ck, "--quiet"])
    assert flag in line and "unexpected" not in line
    assert not ck.exists()


def test_debug_shows_the_traceback(capsys, tmp_path):
    rc = main(["predict", "--model", "naive", "--data", str(tmp_path / "nope.csv"), "--debug"])
    _, err = capsys.readouterr()
    assert rc != 0
    assert "Traceback" in err and "stockllm: error:" in err


# --- download (yfinance replaced) ---------------------------------------------------------------------------

def yahoo_like(ticker: str, n: int = 15) -> pd.DataFrame:
    """What yfinance's Ticker.history(auto_adjust=False) returns: tz-aware index, extra columns."""
    bars = make_ohlcv(n, seed=sum(map(ord, ticker)))
    index = pd.DatetimeIndex(bars.index).tz_localize("America/New_York").rename("Date")
    return pd.DataFrame({
        "Open": bars["Open"].to_numpy(), "High": bars["High"].to_numpy(), "Low": bars["Low"].to_numpy(),
        "Close": bars["Close"].to_numpy(), "Adj Close": bars["Close"].to_numpy() * 0.98,
        "Volume": bars["Volume"].to_numpy().astype(np.int64), "Dividends": 0.0, "Stock Splits": 0.0,
    }, index=index)


def test_download_offline_is_one_line_and_writes_nothing(capsys, tmp_path, monkeypatch):
    def offline(ticker, **kwargs):
        raise OSError("Could not resolve host: query2.finance.yahoo.com")

    monkeypatch.setattr(data_module, "fetch_yahoo", offline)
    monkeypatch.chdir(tmp_path)
    rc = main(["download", "--ticker", "AAA"])
    out, err = capsys.readouterr()
    assert rc == 1
    errors = [line for line in err.splitlines() if line.startswith("stockllm: error:")]
    assert len(errors) == 1 and "could not reach Yahoo Finance" in errors[0]
    assert "--data" in errors[0]
    assert "Traceback" not in out + err
    assert list(tmp_path.iterdir()) == []


def test_download_several_tickers_to_a_folder(capsys, tmp_path, monkeypatch):
    calls = []

    def fake(ticker, **kwargs):
        calls.append(ticker)
        return yahoo_like(ticker)

    monkeypatch.setattr(data_module, "fetch_yahoo", fake)
    out_dir = tmp_path / "bars"
    ok(capsys, ["download", "--ticker", "AAA,BBB", "--output", out_dir])
    assert calls == ["AAA", "BBB"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["AAA.csv", "BBB.csv"]
    for ticker in ("AAA", "BBB"):
        path = out_dir / f"{ticker}.csv"
        assert path.read_text().splitlines()[0] == "Date,Open,High,Low,Close,Volume"
        raw = yahoo_like(ticker)
        frame = load_ohlcv(path)
        # Exchange-local calendar dates; Close adjusted for splits and dividends (--adjust full, the default).
        assert list(frame.index.strftime("%Y-%m-%d")) == list(raw.index.strftime("%Y-%m-%d"))
        np.testing.assert_allclose(frame["Close"], raw["Adj Close"], rtol=1e-12)
        np.testing.assert_array_equal(frame["Volume"], raw["Volume"].astype(float))


def test_download_one_ticker_to_a_file(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "fetch_yahoo", lambda ticker, **kwargs: yahoo_like(ticker))
    output = tmp_path / "x.csv"
    ok(capsys, ["download", "--ticker", "AAA", "--output", output])
    assert output.read_text().splitlines()[0] == "Date,Open,High,Low,Close,Volume"
    assert len(load_ohlcv(output)) == 15


def test_download_one_bad_ticker_writes_nothing(capsys, tmp_path, monkeypatch):
    def fake(ticker, **kwargs):
        if ticker == "BBB":
            return yahoo_like(ticker).iloc[:0]
        return yahoo_like(ticker)

    monkeypatch.setattr(data_module, "fetch_yahoo", fake)
    out_dir = tmp_path / "bars"
    line = fails(capsys, ["download", "--ticker", "AAA,BBB", "--output", out_dir])
    assert "BBB" in line
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


# --- installed entry points (real processes) ---------------------------------------------------------------

def test_python_m_stockllm_help():
    result = subprocess.run([sys.executable, "-m", "stockllm", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: stockllm" in result.stdout
    for command in ("download", "train", "predict", "evaluate"):
        assert command in result.stdout


def test_console_script_version():
    script = shutil.which("stockllm") or str(Path(sys.executable).with_name("stockllm"))
    if not Path(script).exists():
        pytest.fail("the stockllm console script is not installed (pip install -e .)")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"stockllm {stockllm.__version__}"


# --- acceptance on real data ----------------------------------------------------------------------------------

def test_nasdaq_mlp_is_not_worse_than_naive(nasdaq_path, capsys, tmp_path):
    out_dir = tmp_path / "nasdaq"
    out = ok(capsys, ["evaluate", "--data", nasdaq_path, "--models", "naive,drift,mlp", "--output_dir", out_dir,
                      "--quiet"])
    table = pd.read_csv(out_dir / "metrics.csv")
    mlp = table[table["model"] == "mlp"].set_index("horizon")
    assert sorted(mlp.index) == [1, 2, 3]
    assert (mlp["mae_vs_naive"] <= 1.02).all(), mlp[["mae", "mae_vs_naive"]].to_string()
    assert "nasdaq" in out


def test_save_dir_that_holds_other_files_is_refused_before_training(files, capsys, tmp_path):
    folder = tmp_path / "mydata"
    folder.mkdir()
    (folder / "precious.csv").write_text("keep me\n")
    line = fails(capsys, ["train", "--data", files["a"], "--save_dir", folder, "--epochs", "1", "--quiet"])
    assert "precious.csv, which stockllm did not write" in line
    assert (folder / "precious.csv").read_text() == "keep me\n" and sorted(p.name for p in folder.iterdir()) == [
        "precious.csv"]
    not_a_dir = tmp_path / "afile"
    not_a_dir.write_text("x")
    assert "is a file" in fails(capsys, ["train", "--data", files["a"], "--save_dir", not_a_dir, "--quiet"])
