"""The inputs people have (issue 18): common exports read as they are, impossible values refused with row and
column, special files refused without hanging, stray launcher variables ignored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_ohlcv, write_csv
from stockllm.cli import main
from stockllm.data import load_ohlcv, ohlcv_from_frame
from stockllm.errors import DataError, DataWarning

SRC = str(Path(__file__).resolve().parents[1] / "src")
HEADER = "Date,Open,High,Low,Close,Volume"
ROWS = ["2024-01-02,10,11,9,10.5,1000", "2024-01-03,10.5,11.5,10,11,1200", "2024-01-04,11,12,10.5,11.5,900"]


def write(tmp_path: Path, text: str, name: str = "bars.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def refused(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_ohlcv(path, **kwargs)
    from stockllm.errors import as_flags

    message = as_flags(info.value)  # in the CLI's words; str() names the keyword (decimal) instead of the flag
    assert "\n" not in message
    return message


def csv_text(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


# --- refused, with row and column --------------------------------------------------------------------------

@pytest.mark.parametrize("row, start", [
    ("2024-01-03,10.5,11.5,10,12,1200", "Close 12 above High 11.5 in {path} row 3 column Close: "),
    ("2024-01-03,10.5,11.5,10,9.5,1200", "Close 9.5 below Low 10 in {path} row 3 column Close: "),
    ("2024-01-03,10.5,11.5,10,11,1e308", "Volume 1e308 out of range in {path} row 3 column Volume: "),
    ("2024-01-03,10.5,11.5,10,1.7e308,1200", "Close 1.7e308 out of range in {path} row 3 column Close: "),
    ("2024-01-03 99:99,10.5,11.5,10,11,1200", "impossible time of day in date '2024-01-03 99:99' in {path} row 3 "
                                              "column Date: "),
    ("1600-01-03,10.5,11.5,10,11,1200", "date '1600-01-03' out of range in {path} row 3 column Date: "),
    ("2300-01-03,10.5,11.5,10,11,1200", "date '2300-01-03' out of range in {path} row 3 column Date: "),
])
def test_impossible_values_are_refused_with_row_and_column(tmp_path, row, start):
    path = write(tmp_path, csv_text(ROWS[0], row, ROWS[2]))
    assert refused(path).startswith(start.format(path=path))


def test_a_time_of_day_that_exists_is_still_accepted(tmp_path):
    path = write(tmp_path, csv_text("2024-01-02 16:00:00,10,11,9,10.5,1000", "2024-01-03 23:59,10.5,11.5,10,11,1"))
    assert list(load_ohlcv(path).index.strftime("%Y-%m-%d")) == ["2024-01-02", "2024-01-03"]


def test_utf32_is_called_utf32(tmp_path):
    path = write(tmp_path, "\ufeff" + csv_text(*ROWS), encoding="utf-32")
    assert refused(path).startswith(f"UTF-32 text in {path}")


def test_an_unclosed_quote_is_reported_where_it_opens(tmp_path):
    rows = [f"2024-01-{d:02d},10,11,9,10.5,1000" for d in range(2, 30)]
    rows[5] = '2024-01-07,"10,11,9,10.5,1000'
    path = write(tmp_path, csv_text(*rows))
    assert f"{path} row 7" in refused(path)


def test_a_frame_with_both_close_and_close_is_refused():
    frame = make_ohlcv(40)
    frame["close"] = frame["Close"] * 2
    with pytest.raises(DataError, match="'Close' and 'close' .* both name Close"):
        ohlcv_from_frame(frame)


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_a_fifo_or_a_device_as_data_is_refused_without_hanging(tmp_path, special):
    if special == "fifo":
        special = tmp_path / "pipe.csv"
        os.mkfifo(special)
    # A subprocess with a timeout: a regression would block on the FIFO (or read /dev/zero for ever).
    run = subprocess.run([sys.executable, "-m", "stockllm", "predict", "--model", "naive", "--data", str(special),
                          "--output", str(tmp_path / "p.csv")], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": SRC})
    assert run.returncode == 1
    assert "is a FIFO" in run.stderr or "device or special file" in run.stderr
    assert "Traceback" not in run.stderr


# --- accepted --------------------------------------------------------------------------------------------

def test_all_empty_null_rows_are_dropped_with_a_warning(tmp_path):
    rows = [*ROWS, "2024-01-05,null,null,null,null,null", "2024-01-08,11.5,12,11,11.8,700"]
    path = write(tmp_path, csv_text(*rows))
    with pytest.warns(DataWarning, match=r"dropped 1 row without any values .* row 5"):
        frame = load_ohlcv(path)
    assert len(frame) == 4 and np.isfinite(frame.to_numpy()).all()


def test_a_german_excel_export_with_columns_and_decimal_comma(tmp_path):
    text = ("Datum;Eröffnung;Hoch;Tief;Schluss;Volumen\n"
            "2024-01-02;1.234,50;1.240,00;1.230,25;1.238,75;1000\n"
            "2024-01-03;1.238,75;1.250,00;1.235,00;1.245,10;1200\n")
    path = write(tmp_path, text)
    columns = {"Date": "Datum", "Open": "Eröffnung", "High": "Hoch", "Low": "Tief", "Close": "Schluss",
               "Volume": "Volumen"}
    frame = load_ohlcv(path, columns=columns, decimal=",")
    assert frame["Close"].tolist() == [1238.75, 1245.10] and frame["Open"].iloc[0] == 1234.5
    assert "--decimal ," in refused(path, columns=columns)  # decimal commas without --decimal: a hint


def test_the_cli_reads_columns_and_decimal(tmp_path, capsys):
    frame = make_ohlcv(60)
    body = frame.reset_index()
    body["Date"] = body["Date"].dt.strftime("%Y-%m-%d")
    for c in ("Open", "High", "Low", "Close"):
        body[c] = body[c].map(lambda v: f"{v:.4f}".replace(".", ","))
    body.columns = ["Datum", "Eröffnung", "Hoch", "Tief", "Schluss", "Volumen"]
    path = tmp_path / "dax.csv"
    body.to_csv(path, sep=";", index=False)
    out = tmp_path / "p.csv"
    rc = main(["predict", "--model", "naive", "--data", str(path), "--decimal", ",", "--output", str(out),
               "--columns", "Date=Datum,Open=Eröffnung,High=Hoch,Low=Tief,Close=Schluss,Volume=Volumen"])
    assert rc == 0, capsys.readouterr().err
    assert pd.read_csv(out)["last_close"].iloc[0] == pytest.approx(frame["Close"].iloc[-1], abs=1e-4)
    assert main(["predict", "--model", "naive", "--data", str(path), "--columns", "Schluss"]) == 1
    assert "NAME=HEADER" in capsys.readouterr().err


def test_a_nasdaq_com_export(tmp_path):
    text = ('Date,Close/Last,Volume,Open,High,Low\n'
            '01/04/2024,$181.91,71983570,$182.15,$183.0872,$180.88\n'
            '01/03/2024,$184.25,58414460,$184.22,$185.88,$183.43\n')
    with pytest.warns(DataWarning, match="sorted"):
        frame = load_ohlcv(write(tmp_path, text))
    assert frame["Close"].tolist() == [184.25, 181.91] and frame["Volume"].iloc[0] == 58414460


def test_an_investing_com_export(tmp_path):
    text = ('"Date","Price","Open","High","Low","Vol.","Change %"\n'
            '"01/03/2024","4,704.81","4,725.07","4,729.29","4,699.71","2.45B","-0.80%"\n'
            '"01/04/2024","4,688.68","4,697.42","4,726.78","4,687.53","834.50K","-0.34%"\n')
    frame = load_ohlcv(write(tmp_path, text))
    assert frame["Close"].tolist() == [4704.81, 4688.68]
    assert frame["Volume"].tolist() == [2.45e9, 834.5e3]


def test_a_comma_is_never_silently_dropped_from_a_decimal(tmp_path):
    path = write(tmp_path, csv_text("2024-01-02;10;11;9;\"10,5\";1000".replace(";", ","), ROWS[1]))
    assert "--decimal ," in refused(path)


# --- environment ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variables", [{"RANK": "1"}, {"WORLD_SIZE": "2", "RANK": "0"}])
def test_stray_rank_or_world_size_without_a_launcher_is_ignored(tmp_path, variables):
    data = write_csv(make_ohlcv(80), tmp_path / "a.csv")
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    run = subprocess.run([sys.executable, "-m", "stockllm", "evaluate", "--data", str(data), "--models", "naive",
                          "--window_size", "10", "--quiet", "--output_dir", str(tmp_path / "ev")],
                         capture_output=True, text=True, timeout=300, env={**env, **variables, "PYTHONPATH": SRC})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ignoring" in run.stderr and (tmp_path / "ev" / "metrics.csv").is_file()


# --- close-only files ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("header", ["Date,Close", "ds,y", "timestamp,target"])
def test_a_close_only_file_serves_the_models_that_read_closes_only(tmp_path, capsys, header):
    frame = make_ohlcv(120, seed=9)
    body = frame["Close"].rename_axis("Date").reset_index()
    body.columns = header.split(",")
    path = tmp_path / "closes.csv"
    body.to_csv(path, index=False, date_format="%Y-%m-%d")
    loaded = load_ohlcv(path)
    assert loaded.attrs["close_only"] and (loaded["High"] == loaded["Close"]).all()
    rc = main(["evaluate", "--data", str(path), "--models", "naive,drift", "--window_size", "10", "--quiet",
               "--output_dir", str(tmp_path / "ev")])
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["train", "--data", str(path), "--window_size", "10", "--save_dir", str(tmp_path / "ck")]) == 1
    err = capsys.readouterr().err
    assert "has closes only" in err and "which mlp needs" in err and "naive" in err
    assert not (tmp_path / "ck").exists()


def test_an_unadjusted_split_is_warned_at_its_row(tmp_path):
    rows = [*ROWS, "2024-01-05,5.8,6,5.6,5.9,2000"]  # opens at half the previous close of 11.5: a 2:1 split
    path = write(tmp_path, csv_text(*rows))
    with pytest.warns(DataWarning, match=r"row 5 \(2024-01-05\) matches a 2:1 stock split"):
        load_ohlcv(path)


def test_a_split_in_a_frame_names_its_row_and_date_once():
    frame = make_ohlcv(60, seed=3)
    day = frame.index[40]
    frame.loc[day:, ["Open", "High", "Low", "Close"]] /= 2  # unadjusted 2:1 split
    with pytest.warns(DataWarning) as caught:
        ohlcv_from_frame(frame, "MSFT")
    (message,) = [str(w.message) for w in caught if "stock split" in str(w.message)]
    assert f"MSFT row 41 ({day:%Y-%m-%d}) matches a 2:1 stock split" in message
    assert message.count(f"{day:%Y-%m-%d}") == 1


def test_ordinary_days_give_no_split_warning(recwarn):
    ohlcv_from_frame(make_ohlcv(2000, seed=3))
    assert not [w for w in recwarn if "split" in str(w.message)]
