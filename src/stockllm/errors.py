"""Errors and warnings meant for people, not for tracebacks."""


class StockLLMError(Exception):
    """A problem the user can fix. The CLI prints it as one line and exits non-zero.

    Messages follow ``<what> in <file> row <n> column <c>: <how to fix>`` where those parts apply.
    """


class DataError(StockLLMError):
    """A data file (or downloaded data) that cannot be used as OHLCV history."""


class DataWarning(UserWarning):
    """Data were accepted but changed: rows reordered, dropped or filled."""
