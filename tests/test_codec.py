"""The codec is a unit: golden texts for both formats, round trips, causality and token positions."""

import numpy as np
import pandas as pd
import pytest
from conftest import make_ohlcv

from stockllm.codec import Codec, SeriesTokens


def _frame(rows):
    index = pd.DatetimeIndex(pd.to_datetime([r[0] for r in rows]), name="Date")
    return pd.DataFrame([r[1:] for r in rows], columns=["Open", "High", "Low", "Close", "Volume"], index=index,
                        dtype=float)


GOLDEN = _frame([
    ("2024-01-02", 100.50, 102.30, 99.80, 101.20, 1_000_000),
    ("2024-01-03", 101.00, 103.00, 100.00, 102.50, 1_500_000),
    ("2024-01-04", 102.00, 102.60, 99.00, 100.00, 500_000),
])


def test_verbose_is_the_seeds_format_exactly():
    assert Codec("verbose").day_texts(GOLDEN, 0, 3) == [
        "Day 1: Open=100.50, High=102.30, Low=99.80, Close=101.20, Volume=1000000\n",
        "Day 2: Open=101.00, High=103.00, Low=100.00, Close=102.50, Volume=1500000\n",
        "Day 3: Open=102.00, High=102.60, Low=99.00, Close=100.00, Volume=500000\n",
    ]
    # Days are numbered from the start of the sequence.
    assert Codec("verbose").day_texts(GOLDEN, 1, 3)[0].startswith("Day 1: Open=101.00")


def test_compact_golden():
    # r = log(C/Cprev) in 0.1%, h = log(H/C), l = log(C/L), v = volume / mean of previous 20 days, in tenths.
    assert Codec("compact").day_texts(GOLDEN, 0, 3) == ["0 11 14 10\n", "13 5 25 15\n", "-25 26 10 4\n"]


def test_round_trips():
    frame = make_ohlcv(80, seed=3)
    compact = Codec("compact")
    assert np.array_equal(compact.decode("".join(compact.day_texts(frame, 0, 80))), compact.quantize(frame))
    verbose = Codec("verbose")
    decoded = verbose.decode("".join(verbose.day_texts(frame, 0, 80)))
    np.testing.assert_allclose(decoded[:, :4], frame[["Open", "High", "Low", "Close"]].to_numpy(), atol=0.005)
    np.testing.assert_allclose(decoded[:, 4], frame["Volume"].round().to_numpy())


def test_compact_is_causal_and_scale_free():
    frame = make_ohlcv(120, seed=4)
    codec = Codec("compact")
    full = codec.day_texts(frame, 0, 120)
    assert codec.day_texts(frame.iloc[:70], 0, 70) == full[:70]  # later days never change earlier text
    scaled = frame.assign(**{c: frame[c] * 37.0 for c in ("Open", "High", "Low", "Close")}, Volume=frame.Volume * 3)
    assert codec.day_texts(scaled, 0, 120) == full


def test_compact_clips_extreme_moves():
    frame = _frame([("2024-01-02", 10, 10, 10, 10, 100), ("2024-01-03", 30, 30, 30, 30, 100_000)])
    r, h, lo, v = Codec("compact").quantize(frame)[1]
    assert r == 99 and v == 99


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="compact, verbose"):
        Codec("json")


@pytest.mark.parametrize("name", ["compact", "verbose"])
def test_encode_marks_each_days_last_token(tiny_model_dir, name):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    frame = make_ohlcv(60, seed=5)
    codec = Codec(name)
    ids, day_end = codec.encode(tok, frame, 10, 40)
    assert len(day_end) == 30 and day_end[-1] == len(ids) - 1
    assert all(tok.convert_ids_to_tokens(int(ids[i])) == "\n" for i in day_end)
    # A chunk cut from the whole-series tokens equals encoding that chunk on its own.
    chunk_ids, chunk_end = SeriesTokens(codec, tok, frame).chunk(10, 40)
    assert np.array_equal(chunk_ids, ids) and np.array_equal(chunk_end, day_end)
