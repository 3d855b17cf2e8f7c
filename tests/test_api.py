"""The Python API: lazy top-level names, load, predict_df in the habits of Nixtla and Chronos, evaluate, and the
README's Python example run as written."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import stockllm
from conftest import make_ohlcv, write_csv
from stockllm.errors import StockLLMError

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the README's Python section should hold one runnable example"
    return blocks[0]


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    """Every line of the README's Python example runs as written (train, predict, load, predict_df, evaluate)."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_python_example(), "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    forecast, table, result = namespace["forecast"], namespace["table"], namespace["result"]
    assert (tmp_path / "checkpoints" / "mlp" / "stockllm.json").is_file()
    for frame in (forecast, table):
        dates = pd.to_datetime(frame["date"]).dt.strftime("%Y-%m-%d")
        assert list(dates) == ["2019-01-02", "2019-01-03", "2019-01-04"]  # NYSE
        assert {"q0.1", "q0.5", "q0.9"} <= set(frame.columns)
    np.testing.assert_allclose(forecast["predicted_close"], table["predicted_close"])  # one model, one answer
    assert set(result.metrics["model"]) == {"naive", "drift", "fhs", "mlp"}
    assert "mae_vs_naive" in out


def test_every_name_the_readme_calls_on_stockllm_exists():
    """`stockllm.NAME` in the README (code and prose) resolves after a plain ``import stockllm``."""
    text = README.read_text(encoding="utf-8")
    names = set(re.findall(r"\bstockllm\.([A-Za-z_]\w*)", text)) - {"json", "cli"}  # stockllm.json is the manifest
    for name in sorted(names):
        assert hasattr(stockllm, name), f"README names stockllm.{name}, which import stockllm does not give"


def test_import_is_light_and_names_are_lazy():
    code = ("import sys, stockllm; heavy = [m for m in ('torch', 'transformers', 'pandas', 'matplotlib') "
            "if m in sys.modules]; print(heavy); print(stockllm.MLPForecaster.__name__, stockllm.load.__doc__ "
            "is not None); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=README.parent, env={"PYTHONPATH": str(README.parent / "src"), "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "MLPForecaster True", "True"]


def test_public_names_have_docstrings():
    for name in stockllm.__all__:
        if name != "__version__":
            assert getattr(stockllm, name).__doc__, name
    with pytest.raises(AttributeError):
        stockllm.no_such_name  # noqa: B018


def test_evaluate_submodule_does_not_shadow_the_function():
    from stockllm.backtest import backtest  # imports the submodule

    assert callable(backtest)
    assert stockllm.evaluate is stockllm.api.evaluate


def bars(seed: int, n: int = 150, start: str = "2018-07-02") -> pd.DataFrame:
    frame = make_ohlcv(n, seed=seed, start=start)
    frame = frame[frame.index <= "2018-12-31"]
    frame.attrs["source"] = "AAPL"  # a US ticker: NYSE sessions
    return frame


@pytest.mark.parametrize("id_column", ["ticker", "unique_id", "item_id"])
def test_predict_df_long_frame(id_column):
    a, b = bars(1), bars(2)
    long = pd.concat({"AAPL": a, "600519.SS": b}, names=[id_column]).reset_index()
    table = stockllm.NaiveForecaster().predict_df(long)
    assert list(table.columns[:4]) == ["ticker", "date", "horizon", "predicted_close"]
    assert list(table["ticker"]) == ["AAPL"] * 3 + ["600519.SS"] * 3
    assert list(table["horizon"]) == [1, 2, 3, 1, 2, 3]
    # NYSE and Shanghai both reopen on 2019-01-02 after New Year.
    assert list(table["date"].dt.strftime("%Y-%m-%d")) == ["2019-01-02", "2019-01-03", "2019-01-04"] * 2
    np.testing.assert_allclose(table["predicted_close"], [a["Close"].iloc[-1]] * 3 + [b["Close"].iloc[-1]] * 3)
    levels = [c for c in table.columns if c.startswith("q")]
    assert levels == [f"q{q / 10:g}" for q in range(1, 10)]
    assert (np.diff(table[levels].to_numpy(), axis=1) > 0).all()  # a spread that grows with the level
    np.testing.assert_allclose(table["q0.5"], table["predicted_close"])


def test_predict_df_accepts_dict_index_and_lower_case_columns():
    a = bars(1)
    lower = a.rename(columns=str.lower).rename_axis("ds").reset_index()  # Nixtla's ds, lower-case names
    model = stockllm.DriftForecaster()
    by_dict = model.predict_df({"AAPL": a})
    by_column = model.predict_df(lower.assign(unique_id="AAPL"))
    pd.testing.assert_frame_equal(by_dict, by_column)
    by_index = model.predict_df(pd.concat({"AAPL": a}, names=["unique_id"]))  # MultiIndex (id, date)
    pd.testing.assert_frame_equal(by_dict, by_index)


def test_predict_df_checks_the_bars():
    a = bars(1)
    a.iloc[5, a.columns.get_loc("High")] = a["Low"].iloc[5] / 2
    with pytest.raises(StockLLMError, match="High"):
        stockllm.NaiveForecaster().predict_df(a)
    with pytest.raises(StockLLMError, match="too few rows"):
        stockllm.NaiveForecaster().predict_df(bars(1).iloc[:10])


def test_predict_df_quantile_levels():
    a = bars(1)
    table = stockllm.NaiveForecaster().predict_df(a, quantiles=(0.05, 0.5, 0.95))  # naive gives any levels
    assert [c for c in table.columns if c.startswith("q")] == ["q0.05", "q0.5", "q0.95"]
    assert (table["q0.05"] < table["predicted_close"]).all() and (table["predicted_close"] < table["q0.95"]).all()
    with pytest.raises(StockLLMError, match="increasing order"):
        stockllm.NaiveForecaster().predict_df(a, quantiles=(0.9, 0.1))
    mlp = stockllm.MLPForecaster(stockllm.DataConfig(window_size=10, horizon=2), stockllm.MLPConfig.from_flags(epochs=1))
    mlp.fit([a], progress=False)
    with pytest.raises(StockLLMError, match="trained for"):
        mlp.predict_df(a, quantiles=(0.05, 0.5, 0.95))  # a trained model gives only the levels it learnt
    assert list(mlp.predict_df(a, quantiles=(0.1, 0.9)).columns[4:6]) == ["q0.1", "q0.9"]


def test_load_returns_the_saved_forecaster(tmp_path):
    a = bars(1, n=300, start="2017-10-01")
    model = stockllm.MLPForecaster(stockllm.DataConfig(window_size=10, horizon=2), stockllm.MLPConfig.from_flags(epochs=2))
    model.fit([a], progress=False).save(tmp_path / "ck")
    loaded = stockllm.load(tmp_path / "ck")
    assert isinstance(loaded, stockllm.MLPForecaster)
    pd.testing.assert_frame_equal(loaded.predict_df(a), model.predict_df(a))


def test_evaluate_on_frames_with_training_settings():
    frames = {"A": make_ohlcv(200, seed=1), "B": make_ohlcv(200, seed=2)}
    result = stockllm.evaluate(frames, models=["mlp"], window_size=10, horizon=2, epochs=2)
    assert set(result.metrics["model"]) == {"naive", "mlp"}
    assert set(result.metrics["series"]) == {"A", "B"}
    assert {"origin", "actual", "predicted"} <= set(result.forecasts.columns)
    with pytest.raises(TypeError, match="epoch"):
        stockllm.evaluate(frames, models="naive", epoch=3)
    with pytest.raises(StockLLMError, match="unknown model"):
        stockllm.evaluate(frames, models="naive,arima")


def test_predict_df_asks_for_the_indicators_warm_up_rows():
    """With --features, a window alone would give the indicators their neutral start values, unlike training:
    predict_df asks for the warm-up rows too, as `stockllm predict` does."""
    from stockllm.config import DataConfig
    from stockllm.indicators import warmup_rows

    model = stockllm.MLPForecaster(DataConfig(window_size=10, features=("macd",)))
    need = 10 + warmup_rows(["macd"])
    with pytest.raises(StockLLMError, match="warm up"):
        model.predict_df(bars(1).iloc[:need - 1])
    assert len(model.predict_df(bars(1).iloc[:need])) == model.horizon


def test_every_evaluate_flag_is_a_keyword_of_stockllm_evaluate():
    """The library call takes every option the command has (the same destinations), and refuses others."""
    import stockllm
    from stockllm.api import evaluate_options
    from stockllm.cli import _build_parser

    sub = next(a for a in _build_parser()._actions if a.dest == "command")
    # --follow_symlinks is a switch of the whole process, as --debug: the library has outputs.following_symlinks()
    dests = {a.dest for a in sub.choices["evaluate"]._actions} - {"help", "debug", "quiet", "follow_symlinks"}
    assert dests == set(evaluate_options()) - {"progress"}  # the library's progress is the CLI's --quiet
    for must in ("test_start", "refit_every", "quantiles", "checkpoint", "calibrate", "output_dir", "members",
                 "head_base", "test_size"):
        assert must in dests
    with pytest.raises(TypeError, match="valid options are"):
        stockllm.evaluate(bogus=1)


def test_library_evaluate_writes_the_files_the_cli_writes(tmp_path):
    """Same options, same files: metrics, leaderboard and forecasts byte for byte, and the report and plot too."""
    import stockllm
    from stockllm.cli import main

    csv = write_csv(make_ohlcv(420, seed=3), tmp_path / "s.csv")
    opts = ["--models", "naive,fhs,mlp", "--epochs", "2", "--test_start", "2021-01-04", "--quantiles", "0.1,0.5,0.9",
            "--calibrate", "aci"]
    assert main(["evaluate", "--data", str(csv), *opts, "--quiet", "--output_dir", str(tmp_path / "cli")]) == 0
    result = stockllm.evaluate(str(csv), ["naive", "fhs", "mlp"], epochs=2, test_start="2021-01-04",
                               quantiles=[0.1, 0.5, 0.9], calibrate="aci", output_dir=str(tmp_path / "lib"))
    for name in ("metrics.csv", "leaderboard.csv", "forecasts.csv"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "lib" / name).read_bytes(), name
    for name in ("report.html", "plot.png"):
        assert (tmp_path / "lib" / name).stat().st_size > 0
    assert set(result.metrics["model"]) == {"naive", "fhs", "mlp", "naive+aci", "fhs+aci", "mlp+aci"}


@pytest.mark.parametrize("case", ["clean", "int ids", "lower case, extra column", "split-like move", "bad bar"])
def test_a_long_frame_is_read_at_once_and_equals_the_ticker_by_ticker_checks(case, monkeypatch):
    """predict_df's long frames go through one vectorised check (thousands of tickers); what it returns, or the
    error it raises, is the careful path's, which still reads any frame it does not accept."""
    import stockllm.fastload as fastload
    from stockllm.models.pipeline import as_frames

    parts = {k: make_ohlcv(90, seed=s) for s, k in enumerate(["AAPL", "MSFT", "600519.SS"])}
    if case == "int ids":
        parts = {i: f for i, f in enumerate(parts.values())}
    if case == "split-like move":
        parts["MSFT"].iloc[50:, :4] /= 2
    if case == "bad bar":
        parts["MSFT"].iloc[7, 1] = parts["MSFT"]["Low"].iloc[7] / 2
    long = pd.concat(parts, names=["ticker"]).rename_axis(["ticker", "Date"]).reset_index()
    if case == "lower case, extra column":
        long = long.rename(columns=str.lower).assign(note="x")
    fast = fastload.read_clean_frame(long, "ticker", min_rows=30)
    assert (fast is None) == (case == "bad bar")  # a split-like move: only that ticker is checked carefully
    if case == "bad bar":
        with pytest.raises(StockLLMError, match="High"):
            as_frames(long, 30)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = as_frames(long, 30)
        monkeypatch.setattr(fastload, "read_clean_frame", lambda *a, **k: None)
        careful = as_frames(long, 30)
    assert list(got) == list(careful) == [str(k) for k in parts]
    for name in careful:
        pd.testing.assert_frame_equal(got[name], careful[name], check_exact=True)
        assert got[name].attrs == careful[name].attrs
