"""The forecast ledger: forecast --ledger appends, score --ledger scores what has come to pass; appends are locked
against each other and survive a SIGKILL mid-write."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_ohlcv, write_csv
from stockllm import ledger as ledger_module
from stockllm.cli import main
from stockllm.errors import StockLLMError
from stockllm.ledger import append_forecasts, checkpoint_id, read_ledger, score

SRC = Path(__file__).resolve().parents[1] / "src"


def run(capsys, argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def table(ticker="AAA", n_h=3, levels=(0.1, 0.5, 0.9), last="2024-01-05", model="naive") -> pd.DataFrame:
    """A predict_df-like forecast table."""
    dates = pd.bdate_range(pd.Timestamp(last) + pd.offsets.BDay(1), periods=n_h)
    t = pd.DataFrame({"ticker": ticker, "date": dates, "horizon": np.arange(1, n_h + 1),
                      "predicted_close": 100.0 + np.arange(n_h)})
    for lv in levels:
        t[f"q{lv:g}"] = 100.0 + (lv - 0.5) * 10
    t["last_close"], t["last_date"], t["model"] = 100.0, pd.Timestamp(last), model
    return t


def test_forecast_twice_then_score_scores_the_right_rows(capsys, tmp_path):
    full = make_ohlcv(300, seed=7)
    full.attrs = {}
    ledger = tmp_path / "ledger.csv"
    for model, n in (("naive", 250), ("drift", 250), ("drift", 260)):
        folder = tmp_path / f"run{n}"
        folder.mkdir(exist_ok=True)
        path = write_csv(full.iloc[:n], folder / "AAA.csv")
        rc, out, err = run(capsys, ["forecast", "--data", path, "--model", model, "--calendar", "business",
                                    "--ledger", ledger, "--output", folder / "p.csv", "--quiet"])
        assert rc == 0, err
        assert f"appended 3 rows to the ledger {ledger}" in out
    rows, notes = read_ledger(ledger)
    assert notes == [] and len(rows) == 9 and rows["run_id"].nunique() == 3
    assert set(rows["checkpoint"]) == {""} and set(rows["source"]) == {"data"}
    assert (rows["last_date"].iloc[:3] == full.index[249]).all()

    actual = write_csv(full.iloc[:252], tmp_path / "AAA.csv")  # the closes of rows 250 and 251 have come
    out_csv = tmp_path / "score.csv"
    rc, out, err = run(capsys, ["score", "--ledger", ledger, "--data", actual, "--output", out_csv])
    assert rc == 0, err
    assert "4 forecasts scored; 5 still ahead of the data's last date" in out
    metrics = pd.read_csv(out_csv)
    assert sorted(set(metrics["model"])) == ["drift", "naive"]
    assert sorted(metrics["horizon"].unique()) == [1, 2] and (metrics["n"] == 1).all()
    drift = rows[(rows["model"] == "drift") & (rows["last_date"] == full.index[249])].set_index("horizon")
    for h in (1, 2):
        got = metrics[(metrics["model"] == "drift") & (metrics["horizon"] == h)].iloc[0]
        want = abs(drift.loc[h, "predicted_close"] - full["Close"].iloc[249 + h])
        assert got["mae"] == pytest.approx(want)
        assert got["mae_vs_naive"] == pytest.approx(want / abs(full["Close"].iloc[249] - full["Close"].iloc[249 + h]))
        naive = metrics[(metrics["model"] == "naive") & (metrics["horizon"] == h)].iloc[0]
        assert naive["mae_vs_naive"] == pytest.approx(1.0) and naive["wql_vs_naive"] == pytest.approx(1.0)
        assert np.isfinite(got["wql_vs_naive"]) and got["coverage_80"] in (0.0, 1.0)


def test_score_recomputes_naive_at_the_ledger_levels():
    frame = make_ohlcv(120, seed=1)
    last = frame.index[99]
    t = table(last=f"{last:%Y-%m-%d}", model="mlp")
    t["date"] = frame.index[100:103]
    t["last_close"] = frame["Close"].iloc[99]
    led = t.assign(run_id="r1", run_time="2024-01-01T00:00:00Z", run_rows=3, checkpoint="abc123", source="data")
    metrics, forecasts, counts = score(led, {"AAA": frame})
    assert counts["scored"] == 3 and set(forecasts["model"]) == {"naive", "mlp@abc123"}
    naive = forecasts[forecasts["model"] == "naive"]
    np.testing.assert_allclose(naive["predicted"], frame["Close"].iloc[99])
    # the random walk's 10% and 90% quantiles are symmetric in log space around the last close
    np.testing.assert_allclose(np.log(naive["q0.1"] / naive["predicted"]), -np.log(naive["q0.9"] / naive["predicted"]))
    assert set(metrics["model"]) == {"naive", "mlp@abc123"}


def test_a_later_run_gives_some_of_the_ledgers_levels(tmp_path):
    path = tmp_path / "l.csv"
    append_forecasts(path, table())
    with pytest.raises(StockLLMError, match=r"holds the quantile levels 0.1,0.5,0.9 and this run gives 0.2,0.5,0.8"):
        append_forecasts(path, table(levels=(0.2, 0.5, 0.8)))
    append_forecasts(path, table(levels=(0.5,), model="drift"))  # a subset: the other cells stay empty
    rows, _ = read_ledger(path)
    assert len(rows) == 6 and rows["q0.1"].iloc[3:].isna().all() and rows["q0.5"].notna().all()


def test_models_with_other_levels_are_scored_apart():
    frame = make_ohlcv(120, seed=1)
    parts = []
    for model, levels in (("mlp", (0.1, 0.5, 0.9)), ("drift", (0.5,))):
        t = table(last=f"{frame.index[99]:%Y-%m-%d}", model=model, levels=levels)
        t["date"], t["last_close"] = frame.index[100:103], frame["Close"].iloc[99]
        parts.append(t.assign(run_id=model, run_time="2024-01-01T00:00:00Z", run_rows=3, checkpoint="",
                              source="data"))
    led = pd.concat(parts, ignore_index=True)
    metrics, forecasts, counts = score(led, {"AAA": frame})
    assert set(metrics["model"]) == {"mlp", "drift", "naive (q0.1,q0.5,q0.9)", "naive (q0.5)"}
    assert metrics.loc[metrics["model"] == "mlp", "wql_vs_naive"].notna().all()


def test_ledger_refuses_a_folder_and_a_foreign_csv(tmp_path):
    with pytest.raises(StockLLMError, match="not a regular file"):
        append_forecasts(tmp_path, table())
    other = tmp_path / "other.csv"
    other.write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,1,1,1,1,1\n")
    with pytest.raises(StockLLMError, match="not a stockllm forecast ledger"):
        append_forecasts(other, table())
    assert other.read_text().count("\n") == 2  # untouched


def test_a_torn_last_line_is_ignored_and_the_next_run_starts_clean(tmp_path):
    path = tmp_path / "l.csv"
    append_forecasts(path, table())
    with open(path, "ab") as handle:
        handle.write(b"deadbeef0000,2024-01-0")  # a crash mid-line
    rows, notes = read_ledger(path)
    assert len(rows) == 3 and any("torn" in n for n in notes)
    append_forecasts(path, table(ticker="BBB"))
    rows, notes = read_ledger(path)
    assert list(rows["ticker"]) == ["AAA"] * 3 + ["BBB"] * 3 and any("torn" in n for n in notes)


def test_a_header_torn_by_a_crash_is_started_again(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("run_id,run_ti")
    append_forecasts(path, table())
    rows, notes = read_ledger(path)
    assert len(rows) == 3 and notes == []


@pytest.mark.integration
def test_two_processes_appending_at_once(tmp_path):
    path = tmp_path / "l.csv"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_ledger import table
        from stockllm.ledger import append_forecasts
        for i in range(15):
            append_forecasts({str(path)!r}, table(ticker=sys.argv[1], n_h=40))
    """)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    procs = [subprocess.Popen([sys.executable, "-c", script, t], env=env) for t in ("AAA", "BBB")]
    assert [p.wait(timeout=240) for p in procs] == [0, 0]
    rows, notes = read_ledger(path)
    assert notes == [] and len(rows) == 2 * 15 * 40 and rows["run_id"].nunique() == 30
    assert path.read_text().count("run_id,") == 1  # one header
    assert (rows.groupby("run_id")["ticker"].nunique() == 1).all()  # no run interleaved with another


@pytest.mark.integration
def test_sigkill_during_an_append_keeps_every_earlier_row(tmp_path):
    path = tmp_path / "l.csv"
    for ticker in ("AAA", "BBB"):
        append_forecasts(path, table(ticker=ticker, n_h=5))
    before = path.read_bytes()
    # The child writes half of its run, says so, and hangs there until it is killed: a crash mid-write.
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_ledger import table
        from stockllm import ledger

        def half(fd, data):
            os.write(fd, data[: len(data) // 2])
            print("half", flush=True)
            time.sleep(120)

        ledger._write_all = half
        ledger.append_forecasts({str(path)!r}, table(ticker="CCC", n_h=50))
    """)
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(SRC)},
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "half"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert path.read_bytes().startswith(before) and len(path.read_bytes()) > len(before)
    rows, notes = read_ledger(path)
    assert list(dict.fromkeys(rows["ticker"])) == ["AAA", "BBB"] and len(rows) == 10
    assert notes  # the torn part is reported, not silently dropped
    append_forecasts(path, table(ticker="DDD"))  # the lock died with the child; the next run appends
    rows, _ = read_ledger(path)
    assert list(dict.fromkeys(rows["ticker"])) == ["AAA", "BBB", "DDD"]


def test_checkpoint_id_follows_the_weights(tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "stockllm.json").write_text('{"kind": "mlp"}')
    (ck / "model.safetensors").write_bytes(b"weights")
    (ck / "state").mkdir()
    (ck / "state" / "optimizer.bin").write_bytes(b"x")
    copy = tmp_path / "copy"
    shutil.copytree(ck, copy)
    (copy / "state" / "optimizer.bin").write_bytes(b"changed training state")
    assert checkpoint_id(ck) == checkpoint_id(copy) and len(checkpoint_id(ck)) == 12
    (copy / "model.safetensors").write_bytes(b"other weights")
    assert checkpoint_id(ck) != checkpoint_id(copy)
    assert checkpoint_id(None) == ""


def test_forecast_with_a_checkpoint_records_its_id(capsys, tmp_path):
    data = write_csv(make_ohlcv(200, seed=2), tmp_path / "AAA.csv")
    ck = tmp_path / "ck"
    assert main(["train", "--data", str(data), "--epochs", "1", "--quiet", "--save_dir", str(ck)]) == 0
    ledger = tmp_path / "l.csv"
    rc, out, err = run(capsys, ["forecast", "--data", data, "--checkpoint", ck, "--ledger", ledger,
                                "--output", tmp_path / "p.csv", "--quiet"])
    assert rc == 0, err
    rows, _ = read_ledger(ledger)
    assert (rows["checkpoint"] == checkpoint_id(ck)).all() and (rows["model"] == "mlp").all()


def test_forecast_bad_ledger_path_fails_before_any_model(capsys, tmp_path):
    data = write_csv(make_ohlcv(100), tmp_path / "AAA.csv")
    rc, out, err = run(capsys, ["forecast", "--data", data, "--model", "naive", "--ledger", tmp_path / "no" / "l.csv",
                                "--output", tmp_path / "p.csv"])
    assert rc == 1 and "does not exist" in err and not (tmp_path / "p.csv").exists()


def test_score_without_a_ledger_is_one_line(capsys, tmp_path):
    rc, out, err = run(capsys, ["score", "--ledger", tmp_path / "none.csv", "--data", "nasdaq"])
    assert rc == 1 and "no ledger" in err and err.count("stockllm: error:") == 1


def test_score_downloads_through_the_ledgers_source(capsys, tmp_path, monkeypatch):
    from stockllm import sources

    frame = make_ohlcv(300, seed=4, start="2018-01-01")
    path = tmp_path / "l.csv"
    t = table(ticker="600519.SS", last=f"{frame.index[200]:%Y-%m-%d}")
    t["date"] = frame.index[201:204]
    append_forecasts(path, t, source="akshare")
    calls = []

    def fake(ticker, **kwargs):
        calls.append((ticker, kwargs))
        return frame

    monkeypatch.setattr(sources, "akshare", fake)
    rc, out, err = run(capsys, ["score", "--ledger", path])
    assert rc == 0, err
    assert calls[0][0] == "600519.SS" and calls[0][1]["adjust"] == "none"
    assert "3 forecasts scored" in out


def test_ledger_records_the_adjustment_and_score_downloads_the_same(capsys, tmp_path, monkeypatch):
    from stockllm import sources

    frame = make_ohlcv(300, seed=4, start="2018-01-01")
    path = tmp_path / "l.csv"
    t = table(ticker="600519.SS", last=f"{frame.index[200]:%Y-%m-%d}")
    t["date"], t["last_close"] = frame.index[201:204], frame["Close"].iloc[200]
    append_forecasts(path, t, source="akshare", adjust="full")
    assert read_ledger(path)[0]["adjust"].eq("full").all()
    calls = []
    monkeypatch.setattr(sources, "akshare", lambda ticker, **kw: calls.append(kw) or frame)
    rc, out, err = run(capsys, ["score", "--ledger", path])
    assert rc == 0, err
    assert calls[0]["adjust"] == "full"
    rc, out, err = run(capsys, ["score", "--ledger", path, "--adjust", "none"])
    assert rc == 1 and "drop --adjust to score like with like" in err and err.count("error:") == 1


def test_score_rebases_adjusted_forecasts_after_a_dividend(tmp_path):
    """A qfq ledger scored after a dividend: every earlier close is rewritten, so the forecast is too."""
    frame = make_ohlcv(300, seed=4, start="2018-01-01")
    t = table(last=f"{frame.index[200]:%Y-%m-%d}")
    t["date"] = frame.index[201:204]
    t["last_close"] = frame["Close"].iloc[200]
    t["predicted_close"] = frame["Close"].iloc[201:204].to_numpy()  # a perfect forecast, in the old adjustment
    path = tmp_path / "l.csv"
    append_forecasts(path, t.assign(model="drift"), adjust="full")
    later = frame.copy()
    later.loc[: frame.index[202], ["Open", "High", "Low", "Close"]] *= 0.97  # a dividend on day 203 rewrites the past
    led, _ = read_ledger(path)
    metrics, forecasts, counts = score(led, {"AAA": later})
    assert counts["rebased"] == 3
    drift = forecasts[forecasts["model"] == "drift"].set_index("horizon")
    assert np.allclose(drift.loc[[1, 2], "predicted"], drift.loc[[1, 2], "actual"])  # like with like again
    raw, _ = read_ledger(path)
    raw["adjust"] = "none"  # as quoted: nothing to rebase
    assert score(raw, {"AAA": later})[2]["rebased"] == 0


def test_a_ticker_forecast_with_two_adjustments_is_refused(tmp_path):
    from stockllm.ledger import adjustments

    path = tmp_path / "l.csv"
    append_forecasts(path, table(), adjust="full")
    append_forecasts(path, table(last="2024-01-08"), adjust="none")
    with pytest.raises(StockLLMError, match="used adjust full and none"):  # str() names the keyword
        adjustments(read_ledger(path)[0])
