"""Daily price limits (涨跌停): an A-share cannot close more than its board's limit from the previous close.

The limit comes from the ticker's six-digit code, in any convention (``600000.SS``, ``600000.SH``, ``sh.600000``,
``SH600000``, ``600000``, or a file named after one): main board (60xxxx, 000xxx–003xxx) ±10%, ChiNext (300xxx,
301xxx) and STAR (688xxx, 689xxx) ±20%, Beijing (8xxxxx, 4xxxxx, 920xxx) ±30%. ST names (±5%) cannot be told from
the code: ``--price_limit 0.05`` sets a limit for every series. Other codes (indices such as 000001.SS and
399001.SZ, funds, B shares) and every non-mainland ticker are left alone.

The close h sessions ahead then lies within last close × (1 ± limit)^h, so ``Forecaster.limited_to(setting)``
(``stockllm.models.base.PriceLimited``) clips every quantile (and the point forecast) of a model's log-returns to
h·log(1 ± limit) with :func:`clip`. A row whose quantiles were cut is
marked ``limited``: the mass beyond the limit now sits on it, as it does on a limit-up or limit-down day.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import StockLLMError

MODES = ("auto", "off")
_CODE = re.compile(r"^(?:(?P<pre>sh|sz|bj)\.?)?(?P<code>\d{6})(?:\.(?P<suf>ss|sh|sz|bj))?$", re.IGNORECASE)
# (code prefixes, limit, board) in the order they are tried; an exchange mark, where given, must agree.
_BOARDS = (
    (("688", "689"), 0.20, "STAR", ("sh",)),
    (("60",), 0.10, "main board", ("sh",)),
    (("300", "301"), 0.20, "ChiNext", ("sz",)),
    (("000", "001", "002", "003"), 0.10, "main board", ("sz",)),
    (("920", "8", "4"), 0.30, "Beijing", ("bj",)),
)


def board(ticker: str) -> tuple[float, str] | None:
    """(limit, board name) of a mainland A-share ticker, or None when it is not one (a US ticker, an index such as
    000001.SS or 399001.SZ, a fund). ``ticker`` may be a file path named after the ticker (``data/600000.SS.csv``)."""
    text = Path(str(ticker).strip()).name
    if text.lower().endswith(".csv"):
        text = text[:-4]
    match = _CODE.match(text)
    if not match:
        return None
    code = match["code"]
    marks = {m.lower().replace("ss", "sh") for m in (match["pre"], match["suf"]) if m}
    for prefixes, limit, name, exchanges in _BOARDS:
        if code.startswith(prefixes) and not marks - set(exchanges):
            return limit, name
    return None


def check_limits(mode: str | None = None, limit: float | None = None) -> str | float:
    """``--price_limits`` and ``--price_limit`` as one setting: "auto" (by board), "off", or a fraction for every
    series. Refuses a limit outside (0, 1) and a limit together with ``off``, in one line."""
    mode = (mode or "auto").strip().lower()
    if mode not in MODES:
        raise StockLLMError(f"--price_limits {mode!r}: choose auto (A-share limits from the ticker) or off")
    if limit is None:
        return mode
    if mode == "off":
        raise StockLLMError("--price_limit sets a limit and --price_limits off turns limits off: pass one of them")
    if not 0 < limit < 1:
        raise StockLLMError(f"--price_limit {limit:g} must lie between 0 and 1 (0.05 for ±5%, as for ST names)")
    return float(limit)


def series_limit(name: str, setting: str | float) -> float | None:
    """The daily limit for the series ``name`` under ``setting`` ("auto", "off" or a fraction); None: no limit."""
    if setting == "off":
        return None
    if setting == "auto":
        found = board(name)
        return found[0] if found else None
    return float(setting)


def bounds(limit: float, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) log-returns [H] that the close h = 1..H sessions ahead can reach: h·log(1 ∓ limit)."""
    h = np.arange(1, horizon + 1, dtype=np.float64)
    return h * np.log1p(-limit), h * np.log1p(limit)


def clip(log_returns: np.ndarray, limit: float | None) -> np.ndarray:
    """Log-returns [n, H] or [n, H, Q] clipped to the limit's bounds (unchanged for None)."""
    if limit is None:
        return log_returns
    low, high = bounds(limit, log_returns.shape[1])
    shape = (1, -1) + (1,) * (log_returns.ndim - 2)
    return np.clip(log_returns, low.reshape(shape), high.reshape(shape))


def limited(q: np.ndarray, limit: float | None) -> np.ndarray:
    """bool [n, H]: rows of clipped quantiles [n, H, Q] with a level on a bound (mass the limit cut)."""
    if limit is None:
        return np.zeros(q.shape[:2], dtype=bool)
    low, high = bounds(limit, q.shape[1])
    return ((q <= low[None, :, None]) | (q >= high[None, :, None])).any(axis=-1)


def describe(names, setting: str | float) -> str:
    """The protocol's words for the limits applied to the series ``names`` ('' where none applies)."""
    if setting == "off":
        return ""
    if setting != "auto":
        return f"closes clipped to ±{float(setting):.0%} a day (--price_limit)"
    found = {name: board(name) for name in names}
    parts = [f"{name} ±{b[0]:.0%} ({b[1]})" for name, b in found.items() if b]
    return f"closes clipped to the daily price limit: {', '.join(parts)}" if parts else ""
