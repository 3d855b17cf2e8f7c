"""Nothing lost, round 3 (issue 25): an output is never one of the run's inputs, a symlinked output is refused
unless followed, standard output is a stream, and each case of the second adversarial trial answers in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli_error_line, make_ohlcv, run_cli, write_csv
from stockllm import outputs
from stockllm.errors import StockLLMError

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def prices(tmp_path) -> Path:
    return write_csv(make_ohlcv(80, seed=3), tmp_path / "A.csv")


def forecast(prices, tmp_path, *extra):
    return ["forecast", "--model", "naive", "--data", prices, "--quiet", *extra]


# --- an output is never an input ---------------------------------------------------------------------------

def test_predict_onto_its_own_data_file_is_refused_and_the_file_kept(capsys, prices):
    before = prices.read_bytes()
    line = cli_error_line(capsys, ["predict", "--model", "naive", "--data", prices, "--output", prices])
    assert f"--output {prices} is the same file as --data {prices}" in line and "choose another" in line
    assert prices.read_bytes() == before


def test_a_hard_link_or_a_followed_symlink_to_the_data_is_the_same_file(capsys, prices, tmp_path):
    hard = tmp_path / "hard.csv"
    os.link(prices, hard)
    soft = tmp_path / "soft.csv"
    soft.symlink_to(prices)
    before = prices.read_bytes()
    for out, extra in ((hard, []), (soft, ["--follow_symlinks"])):
        line = cli_error_line(capsys, ["predict", "--model", "naive", "--data", prices, "--output", out, *extra])
        assert "is the same file as --data" in line
    assert prices.read_bytes() == before


def test_a_data_file_found_through_its_folder_is_an_input_too(capsys, prices, tmp_path):
    line = cli_error_line(capsys, ["predict", "--model", "naive", "--data", tmp_path, "--output", prices])
    assert "is the same file as --data" in line


def test_forecast_output_onto_the_ledger_is_refused_before_any_work(capsys, prices, tmp_path):
    ledger = tmp_path / "L.csv"
    assert run_cli(capsys, forecast(prices, tmp_path, "--ledger", ledger, "--output", tmp_path / "p.csv"))[0] == 0
    before = ledger.read_bytes()
    line = cli_error_line(capsys, forecast(prices, tmp_path, "--ledger", ledger, "--output", ledger))
    assert f"--output {ledger} is the same file as --ledger {ledger}" in line
    assert ledger.read_bytes() == before
    line = cli_error_line(capsys, forecast(prices, tmp_path, "--ledger", prices, "--output", tmp_path / "q.csv"))
    assert "--ledger" in line and "--data" in line and prices.read_bytes().startswith(b"Date")


@pytest.mark.parametrize("onto", ["ledger", "data"])
def test_score_output_onto_the_ledger_or_the_actuals_is_refused(capsys, prices, tmp_path, onto):
    ledger = tmp_path / "L.csv"
    assert run_cli(capsys, forecast(prices, tmp_path, "--ledger", ledger, "--output", tmp_path / "p.csv"))[0] == 0
    target = ledger if onto == "ledger" else prices
    before = target.read_bytes()
    line = cli_error_line(capsys, ["score", "--ledger", ledger, "--data", prices, "--output", target])
    assert f"--output {target} is the same file as --{onto}" in line
    assert target.read_bytes() == before


def test_evaluate_output_dir_holding_the_data_is_refused(capsys, tmp_path):
    out = tmp_path / "ev"
    out.mkdir()
    data = write_csv(make_ohlcv(200, seed=3), out / "A.csv")
    outputs._write_manifest(out, {})  # as if stockllm had written the folder: only the input check is left
    line = cli_error_line(capsys, ["evaluate", "--data", data, "--models", "naive", "--quiet", "--output_dir", out])
    assert f"--output_dir {out} holds --data {data}" in line and data.is_file()


def test_check_not_inputs_refuses_a_save_dir_that_is_the_checkpoint_read_and_a_file_inside_it(tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "stockllm.json").write_text("{}")
    with pytest.raises(StockLLMError, match="save_dir .* holds resume"):
        outputs.check_not_inputs([("--resume", ck)], folders=[("--save_dir", ck)])
    with pytest.raises(StockLLMError, match="lies inside checkpoint"):
        outputs.check_not_inputs([("--checkpoint", ck)], files=[("--output", ck / "stockllm.json")])
    outputs.check_not_inputs([("--checkpoint", ck)], files=[("--output", tmp_path / "p.csv")],
                             folders=[("--save_dir", tmp_path / "other")])


# --- symlinks ----------------------------------------------------------------------------------------------

def test_an_output_symlinked_to_a_system_file_is_refused_and_the_file_untouched(capsys, prices, tmp_path):
    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "out").mkdir()
    link = tmp_path / "out" / "x.csv"
    link.symlink_to(victim)
    line = cli_error_line(capsys, ["predict", "--model", "naive", "--data", prices, "--output", link])
    assert f"--output {link} is a symlink to {victim}" in line and "--follow_symlinks" in line
    assert victim.read_text().startswith("root:") and link.is_symlink()
    rc, _, err = run_cli(capsys, ["predict", "--model", "naive", "--data", prices, "--output", link, "--quiet",
                                  "--follow_symlinks"])
    assert rc == 0, err
    assert victim.read_text().startswith("date,horizon") and link.is_symlink()


def test_a_symlinked_ledger_and_output_dir_are_refused(capsys, prices, tmp_path):
    real = tmp_path / "real.csv"
    link = tmp_path / "L.csv"
    link.symlink_to(real)
    line = cli_error_line(capsys, forecast(prices, tmp_path, "--ledger", link, "--output", tmp_path / "p.csv"))
    assert f"--ledger {link} is a symlink" in line and not real.exists()
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev_link").symlink_to(tmp_path / "ev")
    line = cli_error_line(capsys, ["evaluate", "--data", write_csv(make_ohlcv(200), tmp_path / "B.csv"),
                                   "--models", "naive", "--quiet", "--output_dir", tmp_path / "ev_link"])
    assert "is a symlink" in line


# --- standard output ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["-", "/dev/stdout"])
def test_standard_output_is_a_stream_that_appends_to_a_redirected_log(prices, tmp_path, name):
    log = tmp_path / "log.txt"
    log.write_text("kept line\n")
    env = {**os.environ, "PYTHONPATH": SRC}
    with open(log, "a") as handle:
        done = subprocess.run([sys.executable, "-m", "stockllm.cli", "predict", "--model", "naive", "--data",
                               str(prices), "--output", name, "--quiet"], stdout=handle, stderr=subprocess.PIPE,
                              env=env, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == "kept line" and lines[1].startswith("date,horizon") and len(lines) == 5
    assert "last close" in done.stderr  # the messages went to stderr, the CSV alone to stdout


# --- zero volume -------------------------------------------------------------------------------------------

def zero_volume(pattern: str, n: int = 360):
    """Synthetic bars whose volume is zero every day (an index export), or until 70% of the way (then trading)."""
    frame = make_ohlcv(n, seed=11)
    stop = n if pattern == "always" else int(n * 0.7)
    frame.iloc[:stop, frame.columns.get_loc("Volume")] = 0.0
    return frame


@pytest.mark.parametrize("model", ["naive", "drift", "fhs", "garch", "mlp", "lstm", "ensemble"])
@pytest.mark.parametrize("pattern", ["always", "until_test"])
def test_zero_volume_gives_finite_forecasts_for_every_model_with_refits(model, pattern):
    import numpy as np

    import stockllm

    if model == "garch":
        pytest.importorskip("arch")
    trained = {"epochs": 2} if model in ("mlp", "lstm", "ensemble") else {}
    result = stockllm.evaluate({"HSI": zero_volume(pattern)}, [model], refit_every=40, test_size=0.3, **trained,
                               **({"members": "fhs,mlp"} if model == "ensemble" else {}))
    rows = result.forecasts[result.forecasts["model"] == model]
    numbers = rows.select_dtypes("number").drop(columns=["origin", "horizon"], errors="ignore").to_numpy(float)
    assert len(rows) and np.isfinite(numbers).all()


@pytest.mark.parametrize("kind", ["mlp", "lstm"])
def test_an_input_that_never_moved_in_training_keeps_the_scale_1(kind):
    """Volume zero through training, then trading: the first real volume must not become a 10^8 input."""
    import numpy as np

    from stockllm.config import DataConfig, MLPConfig
    from stockllm.features import window_inputs
    from stockllm.models import model_class

    frame = zero_volume("until_test", 300)
    train = frame.iloc[:200]
    model = model_class(kind)(DataConfig(window_size=10), MLPConfig.from_flags(epochs=1))
    model.fit([train], progress=False)
    assert float(model.x_std[4]) == 1.0  # the volume column
    x = model._inputs(window_inputs(frame, 10, np.arange(250, 290)))
    assert np.isfinite(x.numpy()).all() and float(x.abs().max()) < 1e3


# --- ledgers read strictly ---------------------------------------------------------------------------------

@pytest.fixture
def ledger(capsys, prices, tmp_path) -> Path:
    path = tmp_path / "L.csv"
    for _ in range(2):
        assert run_cli(capsys, forecast(prices, tmp_path, "--ledger", path, "--output", tmp_path / "p.csv"))[0] == 0
    return path


def edit_line(path: Path, number: int, change) -> None:
    lines = path.read_text().split("\n")
    cells = lines[number - 1].split(",")
    lines[number - 1] = ",".join(change(cells, lines[0].split(",")))
    path.write_text("\n".join(lines))


def set_cell(name, value):
    def change(cells, header):
        cells[header.index(name)] = value
        return cells
    return change


@pytest.mark.parametrize("name, value, words", [
    ("predicted_close", "inf", "not finite and positive"),
    ("q0.1", "nan", "not finite and positive"),
    ("last_close", "-5", "not finite and positive"),
    ("q0.9", "1e308", "more than 1000 times off the last close"),
    ("q0.2", "1", "quantiles cross"),
])
def test_score_leaves_out_a_hand_broken_row_naming_its_line(ledger, name, value, words):
    from stockllm.ledger import read_ledger

    edit_line(ledger, 3, set_cell(name, value))
    rows, notes = read_ledger(ledger)
    assert len(rows) == 5
    assert any(words in n and "line 3" in n for n in notes), notes
    numbers = rows.select_dtypes("number").to_numpy(float)
    assert (numbers[~pytest.importorskip("numpy").isnan(numbers)] > 0).all()


def test_a_bom_crlf_and_a_stray_carriage_return_are_read(ledger):
    from stockllm.ledger import read_ledger

    text = ledger.read_text()
    ledger.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    rows, notes = read_ledger(ledger)
    assert len(rows) == 6 and notes == []
    lines = text.split("\n")
    lines[2] = lines[2].replace(",", ",\r", 1)
    ledger.write_text("\n".join(lines))
    rows, notes = read_ledger(ledger)
    assert any("unreadable" in n and "line 3" in n for n in notes)
    assert len(rows) == 3  # the damaged run is left out whole, the other scored


def test_repeated_rows_are_named_as_repeats_not_as_a_crash(ledger):
    from stockllm.ledger import read_ledger

    lines = ledger.read_text().rstrip("\n").split("\n")
    ledger.write_text("\n".join([*lines, *lines[1:4]]) + "\n")
    rows, notes = read_ledger(ledger)
    assert len(rows) == 6
    assert notes == [f"left out 3 repeated lines of {ledger} (lines 8, 9, 10): each forecast is counted once"]


@pytest.mark.parametrize("header_edit, words", [
    (lambda h: h + ",comment", "column 'comment' that stockllm's ledgers do not have"),
    (lambda h: h.replace("q0.5", "q0.50"), "which stockllm names q0.5"),
])
def test_a_header_stockllm_did_not_write_is_refused(capsys, ledger, header_edit, words):
    lines = ledger.read_text().split("\n")
    lines[0] = header_edit(lines[0])
    if "comment" in words:
        lines = [lines[0], *(line + ",x" if line else line for line in lines[1:])]
    ledger.write_text("\n".join(lines))
    line = cli_error_line(capsys, ["score", "--ledger", ledger, "--data", ledger.with_name("A.csv")])
    assert words in line


def test_a_series_name_with_a_newline_never_reaches_the_ledger(tmp_path):
    import pandas as pd

    from stockllm.ledger import append_forecasts

    table = pd.DataFrame({"ticker": ["A\n"], "date": [pd.Timestamp("2024-01-02")], "horizon": [1],
                          "predicted_close": [1.0], "last_close": [1.0], "last_date": [pd.Timestamp("2024-01-01")],
                          "model": ["naive"]})
    with pytest.raises(StockLLMError, match="control character"):
        append_forecasts(tmp_path / "L.csv", table)
    assert not (tmp_path / "L.csv").exists()


# --- data quirks -------------------------------------------------------------------------------------------

def test_day_month_dates_that_read_both_ways_are_refused(capsys, tmp_path):
    rows = ["Date,Open,High,Low,Close,Volume"] + [f"{d}/{m}/2024,10,11,9,10.5,100" for m in (1, 2, 3)
                                                   for d in (1, 2, 3, 4)]
    path = tmp_path / "dm.csv"
    path.write_text("\n".join(rows) + "\n")
    line = cli_error_line(capsys, ["predict", "--model", "naive", "--window_size", "3", "--data", path,
                                   "--output", tmp_path / "p.csv"])
    assert "ambiguous dates in" in line and "column Date" in line and "YYYY-MM-DD" in line


def test_one_month_of_m_d_dates_and_the_nasdaq_sample_still_read(tmp_path):
    from stockllm.data import load_ohlcv, sample_path

    rows = ["Date,Open,High,Low,Close,Volume"] + [f"3/{d}/2024,10,11,9,10.5,100" for d in range(1, 10)]
    path = tmp_path / "md.csv"
    path.write_text("\n".join(rows) + "\n")
    assert list(load_ohlcv(path).index.day) == list(range(1, 10))
    assert len(load_ohlcv(sample_path())) == 5031


def test_upper_case_csv_files_in_a_folder_are_read(tmp_path):
    from stockllm.series import load_series

    folder = tmp_path / "prices"
    folder.mkdir()
    write_csv(make_ohlcv(40, seed=1), folder / "AAA.csv")
    write_csv(make_ohlcv(40, seed=2), folder / "BBB.CSV")
    (folder / ".hidden.csv").write_text("not data")
    assert list(load_series([folder])) == ["AAA", "BBB"]


# --- checkpoints checked when loaded ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    from stockllm.cli import main

    root = tmp_path_factory.mktemp("r3-ck")
    data = write_csv(make_ohlcv(260, seed=8), root / "train.csv")
    out = {"data": data}
    for kind, extra in (("fhs", []), ("garch", []), ("ensemble", ["--members", "fhs,naive"])):
        if kind == "garch":
            pytest.importorskip("arch")
        assert main(["train", "--model", kind, "--data", str(data), "--quiet", "--save_dir", str(root / kind),
                     *extra]) == 0
        out[kind] = root / kind
    return out


def copied(checkpoints, kind, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(checkpoints[kind], tmp_path / kind, symlinks=True))


def edit_meta(folder: Path, change) -> None:
    import json

    meta = json.loads((folder / "stockllm.json").read_text())
    change(meta)
    (folder / "stockllm.json").write_text(json.dumps(meta))


def predict_line(capsys, ck, checkpoints, tmp_path) -> str:
    line = cli_error_line(capsys, ["predict", "--checkpoint", ck, "--data", checkpoints["data"], "--output",
                                   tmp_path / "p.csv"])
    assert not (tmp_path / "p.csv").exists()
    return line


@pytest.mark.parametrize("change, words", [
    (lambda g: g.update(alpha=0.3, beta=0.75), "alpha + beta = 1.05"),
    (lambda g: g.update(omega=0.0), "omega 0"),
    (lambda g: g.update(beta=-0.1), "neither may be negative"),
    (lambda g: g.update(nu=2.0), "nu 2"),
])
def test_garch_parameters_are_checked_when_loaded(capsys, checkpoints, tmp_path, change, words):
    ck = copied(checkpoints, "garch", tmp_path)
    edit_meta(ck, lambda m: change(m["garch"]))
    line = predict_line(capsys, ck, checkpoints, tmp_path)
    assert words in line and "GARCH parameters" in line


def test_fhs_quantiles_with_a_tie_are_refused_when_loaded(capsys, checkpoints, tmp_path):
    ck = copied(checkpoints, "fhs", tmp_path)

    def tie(meta):
        meta["fhs"]["z"][0][1] = meta["fhs"]["z"][0][0]

    edit_meta(ck, tie)
    assert "strictly increasing" in predict_line(capsys, ck, checkpoints, tmp_path)


def test_an_ensemble_member_of_another_kind_is_refused(capsys, checkpoints, tmp_path):
    import shutil

    ck = copied(checkpoints, "ensemble", tmp_path)
    shutil.rmtree(ck / "members" / "fhs")
    shutil.copytree(checkpoints["garch"], ck / "members" / "fhs")
    line = predict_line(capsys, ck, checkpoints, tmp_path)
    assert "members/fhs of the ensemble ensemble holds a garch model, not a fhs one" in line


def test_an_ensemble_member_that_links_back_to_the_ensemble_is_refused_in_a_short_line(capsys, checkpoints,
                                                                                       tmp_path):
    import shutil

    ck = copied(checkpoints, "ensemble", tmp_path)
    shutil.rmtree(ck / "members" / "fhs")
    (ck / "members" / "fhs").symlink_to(ck)
    line = predict_line(capsys, ck, checkpoints, tmp_path)
    assert "is a link, not a folder inside the checkpoint" in line and len(line) < 300
