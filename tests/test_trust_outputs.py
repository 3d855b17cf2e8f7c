"""Outputs that cannot hurt (issue 18): special files refused, symlinks followed, foreign files never deleted,
output folders swapped in whole, signals and full disks leave the old outputs intact, every number finite."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import cli_error_line, make_ohlcv, run_cli, write_csv
from stockllm import outputs
from stockllm.cli import main
from stockllm.errors import StockLLMError


run = run_cli
error_line = cli_error_line


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary names (``.NAME.tmp-…``, ``.NAME.old-…``) in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name or ".old-" in p.name)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("trust-out")
    data = write_csv(make_ohlcv(200, seed=4), root / "a.csv")
    ck = root / "ck"
    assert main(["train", "--data", str(data), "--epochs", "2", "--quiet", "--save_dir", str(ck)]) == 0
    return {"root": root, "data": data, "ck": ck}


def copy_checkpoint(ws, tmp_path, name="ck") -> Path:
    target = tmp_path / name
    shutil.copytree(ws["ck"], target, ignore=shutil.ignore_patterns("state"))
    return target


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- single files ------------------------------------------------------------------------------------------

def test_write_atomic_refuses_a_fifo_a_folder_and_a_device(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    for target, kind in ((fifo, "FIFO"), (tmp_path, "folder"), (Path("/dev/null"), "device")):
        with pytest.raises(StockLLMError, match=kind):
            outputs.write_atomic(target, lambda h: h.write("x"), flag="--output")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert leftovers(tmp_path) == []


def test_write_atomic_refuses_a_symlink_unless_asked_to_follow_it(tmp_path):
    real = tmp_path / "real.csv"
    real.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    with pytest.raises(StockLLMError, match=f"symlink to {real}.*follow_symlinks"):
        outputs.write_atomic(link, lambda h: h.write("new"), flag="--output")
    assert real.read_text() == "old"
    with outputs.following_symlinks():
        outputs.write_atomic(link, lambda h: h.write("new"))
    assert link.is_symlink() and real.read_text() == "new"
    assert leftovers(tmp_path) == []


def test_predict_refuses_dev_null_and_an_empty_output_before_the_forecast(ws, capsys):
    line = error_line(capsys, ["predict", "--model", "naive", "--data", ws["data"], "--output", "/dev/null"])
    assert "/dev/null is a device" in line
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    rc, out, err = run(capsys, ["predict", "--model", "naive", "--data", ws["data"], "--output", ""])
    assert rc == 1 and "--output is empty" in err and out == ""  # refused before any forecast is printed


def test_stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "out.csv"
    dead, live = dead_pid(), os.getppid()
    stale = [tmp_path / f".out.csv.tmp-{dead}-abcd1234", tmp_path / f".out.csv.old-{dead}"]
    stale[0].write_text("half")
    stale[1].mkdir()
    kept = tmp_path / f".out.csv.tmp-{live}-abcd1234"
    kept.write_text("another run writing now")
    other = tmp_path / f".other.csv.tmp-{dead}-abcd1234"  # another target's: not ours to judge
    other.write_text("x")
    outputs.write_atomic(target, lambda h: h.write("ok"))
    assert not any(p.exists() for p in stale)
    assert kept.exists() and other.exists() and target.read_text() == "ok"


# --- checkpoint folders ------------------------------------------------------------------------------------

@pytest.mark.parametrize("foreign", ["NOTES.txt", "data/my.csv", "state/mine.txt"])
def test_train_refuses_to_replace_a_folder_with_foreign_files_and_keeps_them(ws, capsys, tmp_path, foreign):
    ck = copy_checkpoint(ws, tmp_path)
    path = ck / foreign
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("mine")
    line = error_line(capsys, ["train", "--data", ws["data"], "--epochs", "1", "--quiet", "--save_dir", ck])
    assert foreign.split("/")[0 if foreign.startswith("data") else -1] in line and "did not write" in line
    assert path.read_text() == "mine"


def test_a_checkpoint_written_by_stockllm_is_replaced_and_lists_its_files(ws, capsys, tmp_path):
    ck = copy_checkpoint(ws, tmp_path)
    rc, _, err = run(capsys, ["train", "--data", ws["data"], "--epochs", "1", "--quiet", "--save_dir", ck])
    assert rc == 0, err
    manifest = json.loads((ck / outputs.MANIFEST).read_text())
    assert set(manifest["files"]) == {"stockllm.json", "model.safetensors"}
    assert leftovers(tmp_path) == []


def test_a_folder_without_a_manifest_is_not_replaced_even_if_it_looks_like_a_checkpoint(ws, capsys, tmp_path):
    ck = copy_checkpoint(ws, tmp_path)
    (ck / outputs.MANIFEST).unlink()
    (ck / "members").mkdir()
    (ck / "members" / "important.txt").write_text("mine")
    line = error_line(capsys, ["train", "--data", ws["data"], "--epochs", "1", "--quiet", "--save_dir", ck])
    assert "has no manifest" in line and " members" in line and "did not write" in line
    assert (ck / "members" / "important.txt").read_text() == "mine" and (ck / "stockllm.json").is_file()


def test_a_file_the_manifest_does_not_list_is_found_at_any_depth(ws, capsys, tmp_path):
    ck = copy_checkpoint(ws, tmp_path)
    (ck / "adapter").mkdir()
    (ck / "adapter" / "notes.txt").write_text("mine")
    line = error_line(capsys, ["train", "--data", ws["data"], "--epochs", "1", "--quiet", "--save_dir", ck])
    assert "adapter" in line and "did not write" in line
    assert (ck / "adapter" / "notes.txt").read_text() == "mine"


def test_a_symlinked_save_dir_is_refused_unless_followed(ws, capsys, tmp_path):
    real = copy_checkpoint(ws, tmp_path, "real")
    link = tmp_path / "ck_link"
    link.symlink_to(real)
    args = ["train", "--data", ws["data"], "--epochs", "3", "--quiet", "--save_dir", link]
    line = error_line(capsys, args)
    assert f"--save_dir {link} is a symlink to {real}" in line and "--follow_symlinks" in line
    rc, _, err = run(capsys, [*args, "--follow_symlinks"])
    assert rc == 0, err
    assert link.is_symlink() and (real / "stockllm.json").is_file() and (real / "state").is_dir()
    assert leftovers(tmp_path) == []


def test_stale_checkpoint_temporaries_are_cleaned_up(ws, capsys, tmp_path):
    ck = copy_checkpoint(ws, tmp_path)
    dead = dead_pid()
    for name in (f".ck.tmp-{dead}-1a2b3c4d", f".ck.old-{dead}"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_text("half")
    rc, _, err = run(capsys, ["train", "--data", ws["data"], "--epochs", "1", "--quiet", "--save_dir", ck])
    assert rc == 0, err
    assert leftovers(tmp_path) == []


# --- evaluate's output folder ------------------------------------------------------------------------------

def evaluate_args(ws, out, *models):
    return ["evaluate", "--data", ws["data"], "--models", ",".join(models or ("naive", "drift")), "--quiet",
            "--output_dir", out]


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_evaluate_swaps_the_whole_set_and_says_it_replaced_one(ws, capsys, tmp_path):
    out = tmp_path / "ev"
    rc, stdout, err = run(capsys, evaluate_args(ws, out))
    assert rc == 0, err
    assert "replacing" not in stdout
    (out / "plot.png").write_bytes(b"an old run's plot")  # the next run must not leave any of this one behind
    rc, stdout, err = run(capsys, evaluate_args(ws, out, "naive"))
    assert rc == 0, err
    assert f"replacing the previous results in {out}" in stdout
    assert (out / "plot.png").read_bytes().startswith(b"\x89PNG")
    assert set(json.loads((out / outputs.MANIFEST).read_text())["files"]) == {
        "metrics.csv", "forecasts.csv", "leaderboard.csv", "plot.png", "report.html"}
    assert leftovers(tmp_path) == []


def test_evaluate_refuses_a_folder_with_foreign_files_before_any_work(ws, capsys, tmp_path):
    out = tmp_path / "ev"
    out.mkdir()
    (out / "thesis.docx").write_text("mine")
    rc, stdout, err = run(capsys, evaluate_args(ws, out))
    assert rc == 1 and "thesis.docx" in err and "did not write" in err
    assert stdout == "" and (out / "thesis.docx").read_text() == "mine"


def test_evaluate_refuses_a_second_writer_while_one_holds_the_lock(ws, capsys, tmp_path):
    out = tmp_path / "ev"
    with open(tmp_path / ".ev.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        line = error_line(capsys, evaluate_args(ws, out))
    assert "another stockllm run is writing" in line
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("failure", ["ENOSPC", "SIGTERM", "SIGINT"])
def test_a_failure_while_writing_leaves_the_old_set_whole_and_no_temporaries(ws, capsys, tmp_path, monkeypatch,
                                                                             failure, sigint_raises):
    out = tmp_path / "ev"
    assert run(capsys, evaluate_args(ws, out))[0] == 0
    before = snapshot(out)
    import stockllm.data

    real = stockllm.data.write_csv_atomic
    calls = []

    def failing(frame, path, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # one file of the new set is already written
            if failure == "ENOSPC":
                raise OSError(errno.ENOSPC, "No space left on device")
            os.kill(os.getpid(), getattr(signal, failure))
        return real(frame, path, **kwargs)

    monkeypatch.setattr(stockllm.data, "write_csv_atomic", failing)
    rc, _, err = run(capsys, evaluate_args(ws, out, "naive"))
    expected = {"ENOSPC": 1, "SIGTERM": 143, "SIGINT": 130}[failure]
    assert rc == expected, err
    assert len(err.strip().splitlines()) == 1
    if failure != "ENOSPC":
        assert f"interrupted by {failure}; {out} is unchanged" in err and "training" not in err
    assert snapshot(out) == before
    assert leftovers(tmp_path) == [] and leftovers(out) == []


def test_atomic_folder_turns_a_library_disk_error_into_one_line(tmp_path):
    target = tmp_path / "ck"
    with pytest.raises(StockLLMError, match="no space left on device"):
        with outputs.atomic_folder(target, flag="--save_dir"):
            raise RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")
    assert not target.exists() and leftovers(tmp_path) == []


# --- finite or refused -------------------------------------------------------------------------------------

def tampered(ws, tmp_path, change) -> Path:
    ck = copy_checkpoint(ws, tmp_path)
    tensors = load_file(str(ck / "model.safetensors"))
    save_file(change(tensors), str(ck / "model.safetensors"))
    return ck


@pytest.mark.parametrize("change, words", [
    (lambda t: {**t, "net.fc1.bias": t["net.fc1.bias"] * float("nan")}, "NaN or infinite values in net.fc1.bias"),
    (lambda t: {k: (v.long() if k == "x_mean" else v) for k, v in t.items()}, "x_mean as int64"),
    (lambda t: {**t, "x_std": t["x_std"] * 0}, "zero or negative x_std"),
    (lambda t: {k: v for k, v in t.items() if k != "x_std"}, "lacks the input scaler"),
])
def test_a_damaged_checkpoint_is_refused_at_load(ws, capsys, tmp_path, change, words):
    ck = tampered(ws, tmp_path, change)
    line = error_line(capsys, ["predict", "--checkpoint", ck, "--data", ws["data"], "--output", tmp_path / "p.csv"])
    assert words in line
    assert not (tmp_path / "p.csv").exists()


def test_huge_weights_give_no_file_instead_of_inf(ws, capsys, tmp_path):
    ck = tampered(ws, tmp_path, lambda t: {k: (torch.full_like(v, 1e38) if k.startswith("net.") else v)
                                           for k, v in t.items()})
    line = error_line(capsys, ["predict", "--checkpoint", ck, "--data", ws["data"], "--output", tmp_path / "p.csv"])
    assert "non-finite forecast" in line and not (tmp_path / "p.csv").exists()
    out, longer = tmp_path / "ev", write_csv(make_ohlcv(300, seed=5), tmp_path / "b.csv")
    line = error_line(capsys, ["evaluate", "--checkpoint", ck, "--data", longer, "--quiet", "--output_dir", out])
    assert "non-finite forecast" in line and not out.exists()


@pytest.mark.parametrize("edit, words", [
    (lambda m: [m], "holds a JSON list, not an object"),
    (lambda m: {**m, "data": {**m["data"], "window_size": 10**30}}, "window_size 10000"),
    (lambda m: {**m, "config": {**m["config"], "train": {**m["config"]["train"], "seed": -1}}},
     "seed -1 must be between 0 and"),
])
def test_a_damaged_stockllm_json_is_refused_in_one_line(ws, capsys, tmp_path, edit, words):
    ck = copy_checkpoint(ws, tmp_path)
    meta = json.loads((ck / "stockllm.json").read_text())
    (ck / "stockllm.json").write_text(json.dumps(edit(meta)))
    line = error_line(capsys, ["predict", "--checkpoint", ck, "--data", ws["data"], "--output", tmp_path / "p.csv"])
    assert words in line and "stockllm.json" in line


# --- many series -------------------------------------------------------------------------------------------

def test_many_series_draw_the_best_and_worst_only(tmp_path):
    import pandas as pd

    from stockllm.plots import MAX_DRAWN_SERIES, drawn_series
    from stockllm.report import render_report

    rows = []
    for i in range(30):  # series i: drift's error is i times naive's, so 0..5 are best and 24..29 worst
        for model, err in (("naive", 1.0), ("drift", float(i + 1))):
            for t in range(5):
                rows.append({"series": f"S{i:02d}", "model": model, "origin": t, "horizon": 1,
                             "target_date": f"2024-01-{t + 2:02d}", "last_close": 100.0, "actual": 100.0,
                             "predicted": 100.0 + err})
    forecasts = pd.DataFrame(rows)
    drawn, note = drawn_series(forecasts)
    assert len(drawn) == MAX_DRAWN_SERIES and "30 series" in note
    assert drawn == [f"S{i:02d}" for i in [*range(6), *range(24, 30)]]
    page = render_report(pd.DataFrame({"series": ["S00"], "model": ["naive"]}), forecasts)
    assert page.count("<h3>") == MAX_DRAWN_SERIES and "30 series" in page
    assert drawn_series(forecasts[forecasts["series"] < "S05"]) == (["S00", "S01", "S02", "S03", "S04"], "")


def test_files_written_into_a_checkpoint_get_the_usual_mode(tmp_path):
    """safetensors writes its files 0600; a checkpoint's files all get what a plain open gives under the umask."""
    import numpy as np
    from safetensors.numpy import save_file

    with outputs.atomic_folder(tmp_path / "ck", flag="--save_dir") as tmp:
        save_file({"w": np.zeros(2, dtype=np.float32)}, str(tmp / "model.safetensors"))
        (tmp / "stockllm.json").write_text("{}")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "ck").iterdir()}
    assert modes["model.safetensors"] == modes["stockllm.json"] == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
