"""Errors and warnings meant for people, not for tracebacks."""


class StockLLMError(Exception):
    """A problem the user can fix. The CLI prints it as one line and exits non-zero.

    Messages follow ``<what> in <file> row <n> column <c>: <how to fix>`` where those parts apply.
    """


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
