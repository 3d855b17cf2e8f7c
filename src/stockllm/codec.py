"""Codecs: OHLCV days ↔ text, the only way the language model sees the data.

Both codecs write one line per day, and each day's text depends only on that day and earlier days (causal), so
a long chunk of days is the concatenation of its days' texts and the model's hidden state at the last token of
a day has seen exactly the history up to that day. ``encode`` tokenises each day on its own and returns, beside
the token ids, the index of every day's last token: the positions the regression head reads.

- ``verbose``: the seed's text exactly: ``Day 1: Open=100.50, High=102.30, Low=99.80, Close=101.20, Volume=1000000``.
  Not scale-free (raw prices), about 50 tokens a day.
- ``compact`` (default): four scale-free integers a day, ``r h l v``: r = close vs previous close, h = high above
  close, l = close above low, all in ``unit`` (0.1% by default); v = volume ÷ mean of the previous 20 days'
  volume, in tenths. Clipped to ±``clip``. About 10 tokens a day. With ``features`` (technical indicators,
  ``--features``) each line carries one more integer per indicator, in the indicator's own unit
  (``indicators.INDICATORS``), e.g. ``r h l v rsi macd``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import StockLLMError
from .indicators import indicator_integers, parse_features

CODECS = ("compact", "verbose")


@dataclass(frozen=True)
class Codec:
    """A text format for days of OHLCV. ``name`` is compact or verbose; the rest tunes compact.

    features: indicator names written as extra integers per day after ``r h l v`` (compact only).
    """

    name: str = "compact"
    unit: float = 0.001
    clip: int = 99
    volume_days: int = 20
    features: tuple[str, ...] = ()

    def __post_init__(self):
        if self.name not in CODECS:
            raise ValueError(f"unknown prompt format {self.name!r}: choose from {', '.join(CODECS)}")
        object.__setattr__(self, "features", parse_features(self.features))  # a JSON list from a checkpoint too
        if self.features and self.name != "compact":
            raise StockLLMError("--features are written by the compact codec only: drop --prompt_format verbose "
                                "(the seed's text stays exactly as it was) or drop --features")

    # --- text -----------------------------------------------------------------------------------------------
    def day_texts(self, frame: pd.DataFrame, start: int, stop: int) -> list[str]:
        """Text of rows [start, stop) as they appear in a sequence that begins at ``start``.

        Compact reads earlier rows for the previous close and trailing volume (causal); verbose numbers days
        from 1 at ``start``.
        """
        if self.name == "verbose":
            sub = frame.iloc[start:stop]
            return [
                f"Day {i}: Open={o:.2f}, High={h:.2f}, Low={lo:.2f}, Close={c:.2f}, Volume={int(round(v))}\n"
                for i, (o, h, lo, c, v) in enumerate(
                    sub[["Open", "High", "Low", "Close", "Volume"]].itertuples(index=False), start=1)
            ]
        q = self.quantize(frame)[start:stop]
        return [" ".join(map(str, day)) + "\n" for day in q.tolist()]

    def quantize(self, frame: pd.DataFrame) -> np.ndarray:
        """Compact integers int64 [rows, 4 + len(features)] (r, h, l, v, then one per indicator) for every row."""
        c = frame["Close"].to_numpy(dtype=np.float64)
        prev = np.concatenate([c[:1], c[:-1]])  # the first row has no previous close: r = 0
        r = np.rint(np.log(c / prev) / self.unit)
        h = np.rint(np.log(frame["High"].to_numpy(dtype=np.float64) / c) / self.unit)
        lo = np.rint(np.log(c / frame["Low"].to_numpy(dtype=np.float64)) / self.unit)
        vol = frame["Volume"].to_numpy(dtype=np.float64)
        trailing = pd.Series(vol).shift(1).rolling(self.volume_days, min_periods=1).mean().to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(trailing > 0, np.rint(10 * vol / trailing), 10)
        v = np.where(np.isnan(trailing), 10, v)
        out = np.stack([np.clip(r, -self.clip, self.clip), np.clip(h, 0, self.clip), np.clip(lo, 0, self.clip),
                        np.clip(v, 0, self.clip)], axis=1).astype(np.int64)
        if self.features:
            out = np.concatenate([out, indicator_integers(frame, self.features, self.clip)], axis=1)
        return out

    def decode(self, text: str) -> np.ndarray:
        """Parse text written by this codec: compact → int64 [days, 4 + len(features)] (r, h, l, v, indicators);
        verbose → float64 [days, 5] (Open, High, Low, Close, Volume)."""
        rows = []
        for line in text.splitlines():
            if not line.strip():
                continue
            if self.name == "verbose":
                body = line.split(":", 1)[1]
                rows.append([float(part.split("=")[1]) for part in body.split(",")])
            else:
                rows.append([int(part) for part in line.split()])
        return np.array(rows, dtype=np.float64 if self.name == "verbose" else np.int64)

    # --- tokens ---------------------------------------------------------------------------------------------
    def encode(self, tokenizer, frame: pd.DataFrame, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids int64 [tokens] for rows [start, stop), and int64 [stop-start] index of each day's last token."""
        pieces = tokenizer(self.day_texts(frame, start, stop), add_special_tokens=False)["input_ids"]
        lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
        ids = np.fromiter((t for p in pieces for t in p), dtype=np.int64, count=int(lengths.sum()))
        return ids, np.cumsum(lengths) - 1


class SeriesTokens:
    """All days of one series tokenised once (compact is causal and position-free, so any chunk is a slice);
    verbose numbers days per sequence, so its chunks are encoded on demand."""

    def __init__(self, codec: Codec, tokenizer, frame: pd.DataFrame):
        self.codec, self.tokenizer, self.frame = codec, tokenizer, frame
        if codec.name == "compact":
            self.ids, self.day_end = codec.encode(tokenizer, frame, 0, len(frame))
            self.day_start = np.concatenate([[0], self.day_end[:-1] + 1])

    def chunk(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, day_end) for rows [start, stop), with day_end relative to the chunk's first token."""
        if self.codec.name != "compact":
            return self.codec.encode(self.tokenizer, self.frame, start, stop)
        first = self.day_start[start]
        return self.ids[first:self.day_end[stop - 1] + 1], self.day_end[start:stop] - first
