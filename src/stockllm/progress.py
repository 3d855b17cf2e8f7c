"""Progress for long steps: a tqdm bar on a terminal; in a log (stderr not a terminal) a plain line at most every
``LOG_INTERVAL`` seconds, so a log file gets readable lines instead of carriage-return redraws."""

from __future__ import annotations

import sys

LOG_INTERVAL = 30.0  # seconds between plain lines in a log

#: Off with the CLI's --quiet; API users get bars unless they pass enabled=False.
enabled = True


class _Lines:
    """A file for tqdm that turns each redraw ('\\r' + status) into one line."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 enabled: bool | None = None, **kwargs):
    """``tqdm`` over ``iterable`` (or a manual bar of ``total`` steps) on stderr, shaped for where stderr goes.

    ``enabled`` None follows the module switch (the CLI's --quiet turns it off). Extra keyword arguments go to
    tqdm (``leave``, ``position`` ...).
    """
    from tqdm.auto import tqdm

    on = globals()["enabled"] if enabled is None else enabled
    stream = sys.stderr
    if on and not (hasattr(stream, "isatty") and stream.isatty()):
        kwargs = {"file": _Lines(stream), "mininterval": LOG_INTERVAL, "maxinterval": LOG_INTERVAL * 10,
                  "ascii": True, **kwargs}
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not on, **kwargs)


def status(message: str) -> None:
    """One status line on stderr before a silent step (a model load, a conversion), unless progress is off."""
    if enabled:
        print(message, file=sys.stderr, flush=True)


def epochs_words(n: float) -> str:
    """How many epochs a run trained, in words: '1 epoch', '0.52 epochs', '3 epochs'."""
    return f"{n:g} epoch" + ("" if n == 1 else "s")
