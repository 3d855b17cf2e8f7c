"""The inputs people bring: suspended A-share days, indices without volume, day-first and German dates."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import cli_error_line, make_ohlcv, run_cli, write_csv
from stockllm.data import load_ohlcv, ohlcv_from_frame
from stockllm.errors import DataError, DataWarning
from stockllm.models import MLPForecaster, NaiveForecaster
from stockllm.config import DataConfig, MLPConfig, from_flat


def suspended(frame: pd.DataFrame, rows) -> pd.DataFrame:
    """Mark ``rows`` as BaoStock and AKShare mark a suspended day: volume 0, open = high = low = close."""
    out = frame.copy()
    for i in rows:
        close = out["Close"].iloc[i - 1]
        out.iloc[i, :4] = close
        out.iloc[i, 4] = 0.0
    return out


def test_suspended_days_are_dropped_with_one_warning_naming_the_dates(tmp_path):
    frame = suspended(make_ohlcv(100, seed=1), [40, 41, 42, 70])
    path = write_csv(frame, tmp_path / "600000.SS.csv")
    with pytest.warns(DataWarning) as caught:
        loaded = load_ohlcv(path)
    notes = [str(w.message) for w in caught if "suspended" in str(w.message)]
    assert len(notes) == 1 and "4 suspended days" in notes[0]
    assert f"{frame.index[40]:%Y-%m-%d}" in notes[0]
    assert len(loaded) == 96 and not frame.index[40] in loaded.index


def test_a_flat_day_that_traded_is_kept():
    frame = make_ohlcv(50, seed=2)
    frame.iloc[10, :4] = frame["Close"].iloc[10]  # no move, but volume: a real (if dull) day
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(ohlcv_from_frame(frame)) == 50


def test_an_index_without_volume_keeps_its_rows_and_forecasts():
    frame = make_ohlcv(300, seed=4)
    frame["Volume"] = 0.0
    frame.iloc[100, :4] = frame["Close"].iloc[100]  # flat and volume 0, like every day here: not a suspension
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checked = ohlcv_from_frame(frame, "000001.SS")
    assert len(checked) == 300
    data = DataConfig(window_size=20, horizon=2)
    model = MLPForecaster(data, from_flat(MLPConfig, {"epochs": 1})).fit([checked], progress=False)
    table = model.forecast(checked, calendar="business")
    assert np.isfinite(table["predicted_close"]).all()
    assert np.isfinite(NaiveForecaster(data).forecast(checked, calendar="business")["q0.9"]).all()


GERMAN = """Datum;Eröffnung;Hoch;Tief;Schluss;Volumen
19.10.2017;13.010,50;13.050,00;12.950,25;13.000,75;1.234.567
20.10.2017;13.000,75;13.100,00;12.990,00;13.050,00;1.300.000
23.10.2017;13.050,00;13.080,00;13.001,00;13.010,00;1.100.000
"""
COLUMNS = "Date=Datum,Open=Eröffnung,High=Hoch,Low=Tief,Close=Schluss,Volume=Volumen"


def test_a_german_export_reads_with_date_format_and_decimal_comma(tmp_path):
    path = tmp_path / "dax.csv"
    path.write_text(GERMAN, encoding="utf-8")
    from stockllm.data import parse_columns

    frame = load_ohlcv(path, columns=parse_columns(COLUMNS), decimal=",", date_format="%d.%m.%Y")
    assert list(frame.index.strftime("%Y-%m-%d")) == ["2017-10-19", "2017-10-20", "2017-10-23"]
    assert frame["Close"].iloc[0] == 13000.75 and frame["Volume"].iloc[0] == 1234567
    with pytest.raises(DataError, match="pass date_format"):  # str() names the keyword; the CLI, the flag
        load_ohlcv(path, columns=parse_columns(COLUMNS), decimal=",")  # without it, 19.10.2017 is refused


def test_predict_reads_a_german_export_from_the_command_line(tmp_path, capsys):
    rows = make_ohlcv(60, seed=6)
    lines = ["Datum;Eröffnung;Hoch;Tief;Schluss;Volumen"] + [
        f"{d:%d.%m.%Y};" + ";".join(f"{v:.2f}".replace(".", ",") for v in r[:4]) + f";{int(r[4])}"
        for d, r in zip(rows.index, rows.to_numpy())]
    path = tmp_path / "dax.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "p.csv"
    rc, stdout, err = run_cli(capsys, ["predict", "--data", path, "--decimal", ",", "--date_format", "%d.%m.%Y",
                                       "--columns", COLUMNS, "--model", "naive", "--output", out, "--calendar",
                                       "XETR"])
    assert rc == 0, err
    assert (pd.read_csv(out)["model"] == "naive").all() and "model naive" in stdout
    line = cli_error_line(capsys, ["predict", "--data", path, "--decimal", ",", "--date_format", "%Y-%m-%d",
                                   "--columns", COLUMNS, "--model", "naive", "--output", out])
    assert "does not match --date_format %Y-%m-%d" in line and "row 2 column Date" in line
    line = cli_error_line(capsys, ["predict", "--data", path, "--date_format", "dd.mm.yyyy", "--model", "naive"])
    assert "strptime codes" in line


def test_day_first_slash_dates_are_detected_with_a_warning(tmp_path):
    path = tmp_path / "uk.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n12/10/2017,10,11,9,10,5\n20/10/2017,10,11,9,10.5,6\n"
                    "01/11/2017,10,11,9,10.2,7\n", encoding="utf-8")
    with pytest.warns(DataWarning, match="day/month/year"):
        frame = load_ohlcv(path)
    assert list(frame.index.strftime("%Y-%m-%d")) == ["2017-10-12", "2017-10-20", "2017-11-01"]


def test_month_first_slash_dates_stay_month_first(tmp_path):
    path = tmp_path / "yahoo.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n10/12/2017,10,11,9,10,5\n10/20/2017,10,11,9,10.5,6\n",
                    encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = load_ohlcv(path)
    assert list(frame.index.strftime("%Y-%m-%d")) == ["2017-10-12", "2017-10-20"]


def test_date_format_is_refused_for_downloads(capsys):
    line = cli_error_line(capsys, ["forecast", "--ticker", "AAPL", "--model", "naive", "--date_format", "%d.%m.%Y"])
    assert "--date_format" in line and "drop them" in line


def test_a_bad_date_format_names_itself():
    from stockllm.data import check_date_format

    with pytest.raises(DataError, match="strptime"):
        check_date_format("DD.MM.YYYY")
    assert check_date_format(None) is None
