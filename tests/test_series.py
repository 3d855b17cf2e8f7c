"""--data as files, folders, globs and long CSVs with a ticker column; pooled training over them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_ohlcv, write_csv

from stockllm.cli import main
from stockllm.errors import DataError
from stockllm.series import load_series


def _long(frames: dict, path, id_name="ticker"):
    parts = [f.rename_axis("Date").reset_index().assign(**{id_name: k}) for k, f in frames.items()]
    long = pd.concat(parts, ignore_index=True)
    long = long[[id_name, "Date", "Open", "High", "Low", "Close", "Volume"]]
    long.to_csv(path, index=False, date_format="%Y-%m-%d")
    return path


@pytest.fixture
def three(tmp_path):
    frames = {"AAA": make_ohlcv(260, seed=1), "BBB": make_ohlcv(200, seed=2, start="2020-03-02"),
              "CCC.SS": make_ohlcv(230, seed=3)}
    folder = tmp_path / "prices"
    folder.mkdir()
    for k, f in frames.items():
        write_csv(f, folder / f"{k}.csv")
    return frames, folder


@pytest.mark.parametrize("id_name", ["ticker", "unique_id", "Ticker"])
def test_long_file_equals_the_same_series_in_separate_files(three, tmp_path, id_name):
    frames, folder = three
    long = load_series([str(_long(frames, tmp_path / "long.csv", id_name))])
    files = load_series([str(folder)])
    assert list(long) == list(frames) == list(files)
    for k in frames:
        pd.testing.assert_frame_equal(long[k], files[k], check_freq=False)
        assert long[k].attrs["source"] == k  # the calendar is inferred from the ticker, not the file name


def test_glob_and_files(three):
    frames, folder = three
    assert list(load_series([str(folder / "[AB]*.csv")])) == ["AAA", "BBB"]
    assert list(load_series([str(folder / "BBB.csv"), str(folder / "AAA.csv")])) == ["BBB", "AAA"]
    with pytest.raises(DataError, match="no file matches"):
        load_series([str(folder / "Z*.csv")])


def test_errors_name_the_long_files_line(three, tmp_path):
    frames, _ = three
    path = _long(frames, tmp_path / "long.csv")
    lines = path.read_text().splitlines()
    lines[300] = lines[300].replace(lines[300].split(",")[5], "abc")  # a Close cell of BBB's rows
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"long.csv row 301.*Close"):
        load_series([str(path)])


def test_same_series_twice_is_refused(three, tmp_path):
    frames, folder = three
    path = _long(frames, tmp_path / "long.csv")
    with pytest.raises(DataError, match="two series are named AAA"):
        load_series([str(path), str(folder / "AAA.csv")])


def test_evaluate_long_file_matches_separate_files(three, tmp_path):
    """The whole evaluate run gives the same metrics from a long file as from a folder of files."""
    frames, folder = three
    path = _long(frames, tmp_path / "long.csv")
    for name, data in (("a", [str(path)]), ("b", [str(folder)])):
        assert main(["evaluate", "--data", *data, "--models", "naive,fhs,mlp", "--epochs", "2", "--quiet",
                     "--output_dir", str(tmp_path / name)]) == 0
    a = pd.read_csv(tmp_path / "a" / "metrics.csv")
    b = pd.read_csv(tmp_path / "b" / "metrics.csv")
    pd.testing.assert_frame_equal(a, b)
    assert set(a["series"]) == set(frames)
    assert np.isfinite(a["wql_vs_naive"]).all()
