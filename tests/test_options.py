"""Typed options between the CLI and the core: the library speaks Python (keywords, errors naming them), the CLI
speaks flags, both run the same functions with the same options, and the code stays readable (short functions,
no argparse below the CLI)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import stockllm
from conftest import make_ohlcv, write_csv
from stockllm.cli import main
from stockllm.errors import StockLLMError, as_flags
from stockllm.options import EvaluateOptions, PredictOptions, TrainOptions, from_keywords
from test_layout import import_graph

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "stockllm"
MAX_LINES = 100  # a screen or two: a function a reader can hold


def test_no_function_in_the_package_is_longer_than_a_screen():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_argparse_and_namespaces_stay_in_the_cli():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "cli.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert "argparse" not in {a.name for a in node.names}, path
            if isinstance(node, ast.ImportFrom):
                assert node.module != "argparse", path
            if isinstance(node, ast.Attribute):
                assert node.attr != "Namespace", path


def test_the_library_never_reaches_the_cli():
    graph = import_graph()
    seen, todo = set(), ["stockllm.api", "stockllm.options", "stockllm.evaluation", "stockllm.training",
                         "stockllm.prediction"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph.get(module, ())
    assert "stockllm.cli" not in seen


def test_options_are_frozen_and_built_from_keywords():
    opts = from_keywords(EvaluateOptions, models="naive,fhs", quantiles=[0.1, 0.5, 0.9], epochs=3, test_size=0.3)
    assert opts.models == ("naive", "fhs") and opts.data.quantiles == (0.1, 0.5, 0.9)
    assert opts.settings.get("epochs") == 3 and opts.test_size == 0.3
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.test_size = 0.5
    assert from_keywords(TrainOptions, model="lstm", hidden_size=8).settings.given(stockllm.MLPConfig) == {
        "hidden_size": 8}
    assert from_keywords(PredictOptions, ticker="aapl, msft").ticker == ("AAPL", "MSFT")
    with pytest.raises(TypeError, match="unknown option.*'epoch'.*valid options are"):
        from_keywords(TrainOptions, epoch=3)
    with pytest.raises(TypeError, match="unknown option"):
        from_keywords(PredictOptions, epochs=3)  # predict trains nothing


def test_an_error_names_the_keyword_in_python_and_the_flag_on_the_command_line(capsys):
    frames = {"A": make_ohlcv(200, seed=1)}
    with pytest.raises(StockLLMError) as info:
        stockllm.evaluate(frames, models="naive", test_size=2.5)
    assert str(info.value) == "test_size 2.5 must be between 0 and 1 (e.g. 0.2)"
    assert as_flags(info.value) == "--test_size 2.5 must be between 0 and 1 (e.g. 0.2)"
    with pytest.raises(StockLLMError, match="^hidden_size 0 must be greater than 0$"):
        stockllm.train(frames["A"], model="mlp", hidden_size=0)
    assert main(["evaluate", "--models", "naive", "--test_size", "2.5"]) == 1
    assert capsys.readouterr().err.strip() == ("stockllm: error: --test_size 2.5 must be between 0 and 1 "
                                               "(e.g. 0.2)")


def test_library_train_and_predict_match_the_cli(tmp_path, capsys):
    """stockllm.train and stockllm.predict run what `stockllm train` and `stockllm predict` run: the same checkpoint
    predictions, byte for byte."""
    csv = write_csv(make_ohlcv(300, seed=5), tmp_path / "s.csv")
    flags = ["--window_size", "10", "--horizon", "2", "--epochs", "2", "--hidden_size", "8"]
    assert main(["train", "--data", str(csv), *flags, "--save_dir", str(tmp_path / "cli"), "--quiet"]) == 0
    model = stockllm.train(str(csv), "mlp", save_dir=str(tmp_path / "lib"), window_size=10, horizon=2, epochs=2,
                           hidden_size=8)
    assert model.config.hidden_size == 8 and model.config.train.epochs == 2
    assert main(["predict", "--checkpoint", str(tmp_path / "cli"), "--data", str(csv), "--output",
                 str(tmp_path / "cli.csv"), "--quiet"]) == 0
    table = stockllm.predict(str(csv), checkpoint=str(tmp_path / "lib"), output=str(tmp_path / "lib.csv"))
    assert (tmp_path / "cli.csv").read_bytes() == (tmp_path / "lib.csv").read_bytes()
    assert list(table["horizon"]) == [1, 2]
    baseline = stockllm.predict(make_ohlcv(100, seed=6), model="naive", quantiles=[0.25, 0.5, 0.75])
    assert {"q0.25", "q0.75"} <= set(baseline.columns) and len(baseline) == 3
    with pytest.raises(StockLLMError, match="^window_size applies to model naive"):
        stockllm.predict(str(csv), checkpoint=str(tmp_path / "lib"), window_size=5)


def test_resume_policy_is_reachable_from_python(tmp_path):
    """An exact resume takes the settings the run was started with; a changed one is refused by its name."""
    frame = make_ohlcv(300, seed=7)
    stockllm.train(frame, "mlp", save_dir=str(tmp_path / "ck"), window_size=10, horizon=2, epochs=1, hidden_size=8,
                   save_every=1)
    with pytest.raises(StockLLMError, match="^hidden_size 16 differs from 8 recorded in"):
        stockllm.train(frame, "mlp", save_dir=str(tmp_path / "ck"), resume=True, hidden_size=16)
    model = stockllm.train(frame, "mlp", save_dir=str(tmp_path / "ck"), resume=True, epochs=2)
    assert model.config.hidden_size == 8 and model.data.window_size == 10  # from the saved state
    with pytest.raises(StockLLMError, match="resume continues the run saved in save_dir"):
        stockllm.train(frame, "mlp", resume=True)
