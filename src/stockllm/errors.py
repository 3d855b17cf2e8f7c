"""Errors and warnings meant for people, not for tracebacks.

One rule names a setting in an error, in the caller's words: a message names it once, as ``--NAME`` (the
command-line flag, whose destination is also the keyword of ``stockllm.evaluate/train/predict``).
``str(error)`` (what Python shows) writes it as the keyword ``NAME``; the CLI prints :func:`as_flags`, the flag
``--NAME``. Command lines quoted in backticks (`` `stockllm forecast --ledger FILE` ``) or in parentheses
(``(stockllm train --model fhs)``) are shown as they are in both.
"""

import re

# A flag (--test_size), not part of a longer option (--no-deps); commands in `backticks` or (stockllm ...) kept.
_FLAG = re.compile(r"`[^`]*`|\(stockllm [^)]*\)|(?<![\w-])--([a-z][a-z0-9_]*)(?![\w-])")


def as_keywords(message: str) -> str:
    """A message with every ``--NAME`` written as the keyword ``NAME`` (commands in backticks kept)."""
    return _FLAG.sub(lambda m: m.group(1) if m.group(1) else m.group(0), message)


def as_flags(exc: BaseException) -> str:
    """What the CLI prints for an error: its message with the flags as flags (``--test_size``)."""
    return str(exc.args[0]) if isinstance(exc, StockLLMError) and exc.args else str(exc)


class StockLLMError(Exception):
    """A problem the user can fix. The CLI prints it as one line and exits non-zero.

    Messages follow ``<what> in <file> row <n> column <c>: <how to fix>`` where those parts apply, and name
    settings as flags (``--test_size``); ``str()`` shows them as Python keywords (``test_size``), see the module
    docstring.
    """

    def __str__(self) -> str:
        return as_keywords(str(self.args[0])) if self.args else ""


class DataError(StockLLMError):
    """A data file (or downloaded data) that cannot be used as OHLCV history."""


class DataWarning(UserWarning):
    """Data were accepted but changed: rows reordered, dropped or filled."""


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT/SIGTERM. ``state`` is the saved state folder (None when nothing was saved);
    the CLI prints how to resume and exits with 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, signum: int, state, step: int | None):
        super().__init__(f"interrupted by signal {signum}")
        self.signum, self.state, self.step = signum, state, step


class Terminated(BaseException):
    """SIGTERM, raised as an exception (as SIGINT raises KeyboardInterrupt) so that temporary files and folders are
    removed on the way out; the CLI exits with 143."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


# The way round a source that cannot be reached, in words true for every command and for Python.
USE_A_FILE = ("use a CSV file instead (`--data FILE.csv` for train, predict, forecast and evaluate; a path in "
              "Python)")
