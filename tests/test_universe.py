"""The universe path: the cheap models as (series × time) arrays, metrics in one pass, streamed forecasts, fast
reading of clean files, and series sharded over processes; always the numbers of the per-series path."""

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_ohlcv, one_and_two_processes, run_cli, write_csv

from stockllm.config import DataConfig
from stockllm.backtest import evaluate, leaderboard
from stockllm.metrics import diebold_mariano
from stockllm.models import model_class
from stockllm.quantiles import ewma_sigma

CHEAP = ("naive", "drift", "fhs", "garch")
KEY = ["model", "series", "origin", "horizon"]


def _frames():
    return {f"s{i}": make_ohlcv(420 + 60 * i, seed=i, vol=0.01 + 0.004 * i, start=f"2019-0{i + 1}-01")
            for i in range(4)}


def _factories(data=None):
    data = data or DataConfig(window_size=20)
    return {m: (lambda m=m: model_class(m)(data)) for m in CHEAP}


@pytest.fixture(scope="module")
def both():
    """(per-series result, universe result) on the same four series of different lengths and dates."""
    from stockllm.universe import MemorySink, evaluate_universe

    frames = _frames()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, forecasts = evaluate(frames, _factories(), log=lambda *_: None, progress=False)
        sink = MemorySink()
        new_table, new_board, *_ = evaluate_universe(frames, _factories(), sink=sink, log=lambda *_: None)
    return (table, forecasts, leaderboard(table, forecasts)), (new_table, sink.frame(), new_board)


def _assert_close(old: pd.DataFrame, new: pd.DataFrame, rtol: float = 1e-10) -> None:
    assert list(old.columns) == list(new.columns)
    for c in old.columns:
        if old[c].dtype == object:
            assert (old[c].to_numpy() == new[c].to_numpy()).all(), c
        else:
            np.testing.assert_allclose(new[c].to_numpy(float), old[c].to_numpy(float), rtol=rtol, atol=1e-300,
                                       equal_nan=True, err_msg=c)


def test_vectorised_forecasts_equal_the_per_series_path(both):
    (_, old, _), (_, new, _) = both
    assert len(old) == len(new) and set(old["model"]) == set(CHEAP)
    _assert_close(old.sort_values(KEY).reset_index(drop=True), new.sort_values(KEY).reset_index(drop=True))


def test_one_pass_metrics_and_leaderboard_equal_the_per_series_path(both):
    (old_table, _, old_board), (new_table, _, new_board) = both
    _assert_close(old_table, new_table)  # same rows, same order, same columns
    _assert_close(old_board, new_board)


def test_ewma_and_garch_recurrences_over_series_and_time():
    from stockllm.vectorised import ewma_sigma_panel, garch_variance_panel, make_block

    frames = _frames()
    block = make_block(frames, pd.Timestamp("2019-01-01"), 20, 3)
    sigma = ewma_sigma_panel(block.close)
    garch = model_class("garch")(DataConfig(window_size=20)).fit(list(frames.values()))
    variance = garch_variance_panel(block.close, garch.params)
    for i, frame in enumerate(frames.values()):
        n = len(frame)
        np.testing.assert_array_equal(sigma[i, :n], ewma_sigma(frame["Close"].to_numpy()))
        np.testing.assert_allclose(variance[i, :n], garch.conditional_variance(frame), rtol=1e-12)


def test_grouped_diebold_mariano_equals_one_test_per_group():
    from stockllm.groupmetrics import diebold_mariano_groups

    rng = np.random.default_rng(3)
    sizes, horizons = [40, 2, 75, 9], np.array([1, 3, 2, 4])
    group = np.concatenate([np.full(n, g) for g, n in enumerate(sizes)])
    a, b = rng.gamma(2, 1, len(group)), rng.gamma(2, 1, len(group))
    b[group == 3] = a[group == 3]  # the same forecast: NaN, as metrics.diebold_mariano says
    got = diebold_mariano_groups(group, a, b, horizons, len(sizes))
    want = [diebold_mariano(a[group == g], b[group == g], int(horizons[g])) for g in range(len(sizes))]
    np.testing.assert_allclose(got, want, rtol=1e-10, equal_nan=True)
    assert np.isnan(got[1]) and np.isnan(got[3])


def test_streamed_csv_reads_back_as_the_frame(tmp_path):
    import pyarrow as pa

    from stockllm.universe import FileSink

    frame = pd.DataFrame({"series": ["a", "b,c", "d"], "model": "naive", "origin": ["2020-01-02"] * 3,
                          "horizon": [1, 2, 3], "actual": [1.0 / 3, 1e-7, 123456.789]})
    sink = FileSink(tmp_path / "forecasts.csv", "csv")
    sink.write(pa.Table.from_pandas(frame.iloc[:1], preserve_index=False))  # plain cells: pandas' text exactly
    sink.write(pa.Table.from_pandas(frame.iloc[1:], preserve_index=False))  # a comma: that block quotes text
    sink.close()
    text = (tmp_path / "forecasts.csv").read_text()
    assert text.splitlines()[:2] == frame.iloc[:1].to_csv(index=False).splitlines()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "forecasts.csv"), frame)


def _universe(folder: Path, n: int, days: int = 400) -> Path:
    folder.mkdir()
    for i in range(n):
        write_csv(make_ohlcv(days, seed=100 + i, vol=0.008 + 0.001 * (i % 7)), folder / f"T{i:02d}.csv")
    return folder


def test_cli_universe_streams_forecasts_and_reports_the_distribution(capsys, tmp_path):
    import stockllm

    data = _universe(tmp_path / "data", 13, days=300)
    out = tmp_path / "out"
    rc, stdout, _ = run_cli(capsys, ["evaluate", "--data", data, "--models", "naive,fhs", "--window_size", "20",
                                     "--output_dir", out, "--quiet", "--format", "parquet"])
    assert rc == 0
    assert "metrics of 13 series" in stdout and "forecasts.parquet" in stdout
    forecasts = pd.read_parquet(out / "forecasts.parquet")
    metrics = pd.read_csv(out / "metrics.csv")
    assert forecasts["series"].nunique() == 13 and len(metrics) == 13 * 2 * 3
    assert not (out / "forecasts.csv").exists()
    page = (out / "report.html").read_text()
    assert "Across the universe" in page and "wql_vs_naive per series" in page and page.count("<h3>") == 6
    assert (out / "plot.png").stat().st_size > 10_000
    # the library call without a folder keeps the same forecasts in memory
    result = stockllm.evaluate(str(data), "naive,fhs", window_size=20)
    _assert_close(forecasts, result.forecasts)
    _assert_close(metrics, result.metrics)


def test_fast_reading_equals_the_careful_path(tmp_path, monkeypatch):
    import stockllm.series as series_module
    from stockllm.data import load_ohlcv
    from stockllm.series import load_series

    data = _universe(tmp_path / "data", 3, days=120)
    long = pd.concat([make_ohlcv(90, seed=s).assign(ticker=f"X{s}") for s in (5, 6)]).reset_index()
    long.to_csv(tmp_path / "long.csv", index=False)
    fast = load_series([data, tmp_path / "long.csv"])
    one = load_ohlcv(data / "T00.csv")
    monkeypatch.setattr(series_module, "read_clean", lambda *a, **k: None)
    careful = load_series([data, tmp_path / "long.csv"])
    assert list(fast) == list(careful) == ["T00", "T01", "T02", "X5", "X6"]
    for name in careful:
        pd.testing.assert_frame_equal(fast[name], careful[name], check_exact=True)
        assert fast[name].attrs == careful[name].attrs
    pd.testing.assert_frame_equal(one, fast["T00"], check_exact=True)


def test_a_ticker_that_needs_a_warning_does_not_send_the_whole_long_file_down_the_slow_path(tmp_path, monkeypatch):
    """One ticker with a split-like overnight move, one with suspended days: the fast reader checks only those two
    carefully (same frames, same warnings with the file's line numbers) and reads the rest in its one parse."""
    import stockllm.data as data_module
    import stockllm.fastload as fastload
    import stockllm.series as series_module
    from stockllm.series import load_series

    parts = [make_ohlcv(80, seed=s).assign(ticker=f"X{s}") for s in range(4)]
    split, idle = parts[1], parts[2]
    split.iloc[40:, :4] = split.iloc[40:, :4] / 2  # a 2:1 split left unadjusted: rows 40.. halve overnight
    idle.iloc[30, :4] = idle["Close"].iloc[29]
    idle.iloc[30, 4] = 0  # suspended: no volume, open = high = low = close
    path = tmp_path / "long.csv"
    pd.concat(parts).reset_index().to_csv(path, index=False)
    careful_calls = []
    monkeypatch.setattr(fastload, "_checked", lambda raw, *a, **k: careful_calls.append(len(raw))
                        or data_module._checked(raw, *a, **k))
    with warnings.catch_warnings(record=True) as fast_notes:
        warnings.simplefilter("always")
        fast = load_series([path])
    assert careful_calls == [80, 80]  # only X1 and X2 took the careful checks
    monkeypatch.setattr(series_module, "read_clean", lambda *a, **k: None)
    with warnings.catch_warnings(record=True) as careful_notes:
        warnings.simplefilter("always")
        careful = load_series([path])
    assert [str(w.message) for w in fast_notes] == [str(w.message) for w in careful_notes]
    assert any("long.csv row 122 " in str(w.message) for w in fast_notes)  # X1's 41st row: line 1 + 80 + 41
    assert len(fast["X2"]) == 79 and list(fast) == list(careful)
    for name in careful:
        pd.testing.assert_frame_equal(fast[name], careful[name], check_exact=True)
        assert fast[name].attrs == careful[name].attrs


def test_each_process_reads_only_its_share_of_the_files(tmp_path, monkeypatch):
    import stockllm.series as series_module
    from stockllm.series import load_series

    data = _universe(tmp_path / "data", 5, days=80)
    read = []
    real = series_module.load_file_series
    monkeypatch.setattr(series_module, "load_file_series", lambda path, **k: read.append(Path(path).name)
                        or real(path, **k))
    everything = load_series([data])
    shares = [load_series([data], shard=(rank, 2)) for rank in (0, 1)]
    assert read[5:] == ["T00.csv", "T01.csv", "T02.csv", "T03.csv", "T04.csv"]  # each file read by one process
    assert [list(s) for s in shares] == [["T00", "T01", "T02"], ["T03", "T04"]]
    for name, frame in {**shares[0], **shares[1]}.items():
        pd.testing.assert_frame_equal(frame, everything[name])
    long = pd.concat([make_ohlcv(60, seed=s).assign(ticker=f"X{s}") for s in range(3)]).reset_index()
    long.to_csv(tmp_path / "long.csv", index=False)  # one file, 2 processes: each keeps its share of the series
    assert [list(load_series([tmp_path / "long.csv"], shard=(r, 2))) for r in (0, 1)] == [["X0", "X1"], ["X2"]]
    from stockllm.options import DataOptions

    in_memory = DataOptions(data={f"M{s}": make_ohlcv(60, seed=s) for s in range(3)})  # stockllm.evaluate(frames)
    assert [list(in_memory.load(30, "", shard=(r, 2))) for r in (0, 1)] == [["M0", "M1"], ["M2"]]


@pytest.mark.parametrize("bad, where", [
    (lambda t: t.replace("2020-01-07,", "2020-01-32,", 1), "row 6 column Date"),
    (lambda t: t.replace("\n", "\nx,", 1).replace("Date,", "ticker,Date,", 1), None),
])
def test_a_bad_row_in_a_clean_looking_file_is_still_named(tmp_path, capsys, bad, where):
    from stockllm.errors import DataError
    from stockllm.series import load_series

    path = write_csv(make_ohlcv(60, seed=1), tmp_path / "a.csv")
    path.write_text(bad(path.read_text()))
    if where is None:  # a long file whose second row has a ticker cell too few: the careful path says which
        with pytest.raises(DataError, match=r"in .*a\.csv row 3"):
            load_series([path])
        return
    with pytest.raises(DataError, match=where):
        load_series([path])


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_two_processes_shard_the_series_and_rank_zero_writes_the_merge(tmp_path):
    data = _universe(tmp_path / "data", 5, days=300)
    args = ["evaluate", "--data", str(data), "--models", "naive,drift,fhs", "--window_size", "20", "--quiet"]
    _, two = one_and_two_processes(args, tmp_path)
    assert two.stdout.count("wrote ") == 1 and "each backtests 1/2 of the series" in two.stdout
    assert "each read and checked 1/2 of the data (3 series here)" in two.stdout
    for name in ("metrics.csv", "leaderboard.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "two" / name), pd.read_csv(tmp_path / "one" / name))
    one_fc, two_fc = (pd.read_csv(tmp_path / d / "forecasts.csv").sort_values(KEY).reset_index(drop=True)
                      for d in ("one", "two"))
    pd.testing.assert_frame_equal(two_fc, one_fc)
