"""``stockllm serve``: forecasts over HTTP (a FastAPI application run by uvicorn; ``pip install 'stockllm[serve]'``).

Models are loaded once, at start (``--checkpoint DIR`` repeated, ``--model naive|drift``); a request names one of
them by name, never by path. Endpoints:

- ``GET /health``: ``{"status": "ok", "models": [...]}``.
- ``GET /models``: name, kind, levels, horizon, window, trained-until date and checkpoint id of each model.
- ``POST /forecast``: a JSON object ``{"model": NAME?, "tickers": [...] | "AAPL,MSFT", "rows": {TICKER: [bars]},
  "levels": [0.1, 0.5, 0.9]?, "calendar": CODE?}`` with tickers (fetched through the server's source, cached for
  the day) or rows (bars as objects with date, open, high, low, close, volume in any case); answers
  ``{"model", "kind", "checkpoint", "levels", "forecasts": [predict_df's rows]}``.
- ``GET /scores`` (with ``--ledger``): the ledger's forecasts whose dates have passed, scored per model and
  horizon: forecasts scored, MAE and WQL ÷ naive, coverage of the 80% interval, since when.
- ``GET /``: a watchlist page: a form (tickers, model, levels), per ticker a table (last close, median and 80% band
  per horizon, change in %, the model) and its forecast fan (plotly, served by the app itself from
  ``GET /plotly.js``: no CDN, works offline), and with a ledger a live-score panel filled from ``GET /scores``.
- ``GET /docs`` and ``GET /openapi.json``: FastAPI's OpenAPI description.

Every refusal is a 4xx with ``{"detail": "<one line>"}``: 400 body not JSON, 404 unknown model, 413 body too
large, 422 anything else the request got wrong (too few rows, bad levels, too many tickers, a bad bar). A data
source that cannot be reached answers 503 with the line the CLI prints. A request never names a file; the
server writes only to ``--ledger``, if given; when that fails (the file was replaced by a folder, a FIFO or a
foreign CSV, the disk is full), the forecast is still answered, with a ``warning`` field saying it was not
recorded, and the same line goes to the server's stderr.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations (Request) at runtime.
import asyncio
import html
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from .errors import StockLLMError
from .models.pipeline import min_history
from .sources import SourceUnavailable

MAX_TICKERS = 100
MAX_ROWS = 20_000  # bars per series in a request body
MAX_BODY_BYTES = 8 * 1024 * 1024
CACHE_SIZE = 512  # ticker histories kept (each for the day it was fetched)
SHUTDOWN_SECONDS = 3  # after SIGTERM/SIGINT, how long requests may finish before they are abandoned
HISTORY_DAYS = 60  # closes drawn before the fan on the watchlist page
REQUEST_FIELDS = ("model", "tickers", "rows", "levels", "calendar")
_TICKER = re.compile(r"[A-Za-z0-9^=._\-]{1,32}")  # used with fullmatch: "A\n" is no name ($ would pass it)


class RequestError(Exception):
    """A request the server refuses: ``status`` (4xx or 503) and a one-line ``detail``."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class ServedModel:
    """One loaded model and what ``GET /models`` says about it."""

    name: str
    model: object
    checkpoint: str = ""  # content id of its folder (ledger.checkpoint_id); "" for naive and drift
    lock: threading.Lock = field(default_factory=threading.Lock)

    def describe(self) -> dict:
        """The model's entry in ``GET /models``."""
        from .backtest import trained_until

        until = trained_until(self.model)
        return {"name": self.name, "kind": self.model.kind, "levels": list(self.model.quantiles),
                "horizon": self.model.horizon, "window_size": self.model.window_size,
                "min_rows": min_history(self.model)[0], "any_levels": self.model.any_levels,
                "trained_until": None if until is None else f"{until:%Y-%m-%d}", "checkpoint": self.checkpoint}


def load_models(checkpoints=(), baselines=(), data=None, overrides: dict | None = None) -> dict[str, ServedModel]:
    """Load the served models: ``checkpoints`` are folders, or ``NAME=folder`` to choose the name; ``baselines``
    are naive / drift with the DataConfig ``data``. A checkpoint is named after its kind (``mlp``) unless two
    share one, then after its folder. Raises StockLLMError for a bad folder or a repeated name."""
    from pathlib import Path

    from .config import DataConfig
    from .ledger import checkpoint_id
    from .models import load_forecaster, model_class

    from .checkpoint import read_meta
    from .models import REGISTRY

    entries, used = [], set()
    for spec in checkpoints:
        name, _, folder = spec.rpartition("=") if "=" in spec else ("", "", spec)
        takes = getattr(REGISTRY.get(read_meta(folder).get("kind")), "overrides", ())
        used |= set(takes)
        # --device and the like reach the checkpoints that take them (the LLM), not an MLP beside it
        entries.append((name, folder, load_forecaster(folder, **{k: v for k, v in (overrides or {}).items()
                                                                    if k in takes})))
    stray = [k for k, v in (overrides or {}).items() if v is not None and k not in used]
    if stray:
        raise StockLLMError(f"--{stray[0]} applies to LLM checkpoints only, and none is served: drop it")
    kinds = [m.kind for _, _, m in entries]
    served: dict[str, ServedModel] = {}

    def add(name, model, ck=""):
        if name in served:
            raise StockLLMError(f"two served models are named {name!r}: name them with --checkpoint NAME=DIR")
        served[name] = ServedModel(name, model, ck)

    for name, folder, model in entries:
        add(name or (model.kind if kinds.count(model.kind) == 1 else Path(folder).resolve().name), model,
            checkpoint_id(folder))
    for kind in baselines:
        add(kind, model_class(kind)(data or DataConfig()))
    if not served:
        raise StockLLMError("nothing to serve: pass --checkpoint DIR (from stockllm train) or --model naive")
    return served


class Service:
    """What the endpoints do, without HTTP: fetch (cached) or read the bars, forecast, append to the ledger.

    models: name → ServedModel (the first is the default). fetch: ``(ticker, period) -> OHLCV frame`` (the source,
    e.g. ``sources.download`` with the server's source and adjustment); files: named series loaded at start,
    answered without fetching. watch: the tickers of ``GET /``. ledger: a path or None. source, adjust: where
    fetched closes come from and their adjustment (recorded in the ledger). calendar: the default calendar (None:
    from each ticker). price_limits: "auto", "off" or a fraction (``stockllm.limits``). today: the cache's clock.
    """

    def __init__(self, models: dict[str, ServedModel], fetch: Callable | None = None, *, files=None, watch=(),
                 ledger=None, source: str = "yahoo", adjust: str = "", calendar: str | None = None,
                 price_limits: str | float = "auto", max_tickers: int = MAX_TICKERS,
                 max_rows: int = MAX_ROWS, cache_size: int = CACHE_SIZE, today: Callable[[], date] = date.today):
        self.models, self.fetch, self.files = models, fetch, dict(files or {})
        self.watch = list(watch) or list(self.files)
        self.ledger, self.source, self.adjust, self.calendar = ledger, source, adjust, calendar
        self.price_limits = price_limits
        self.max_tickers, self.max_rows, self.cache_size, self.today = max_tickers, max_rows, cache_size, today
        self.ledger_levels = self._ledger_levels() if ledger is not None else []
        self._cache: OrderedDict = OrderedDict()
        self._cache_lock = threading.Lock()
        self._ledger_lock = threading.Lock()

    def _ledger_levels(self) -> list[float]:
        """The levels the ledger records: the file's, which must hold every served model's, or (a new file)
        the union of the served models' levels."""
        from .ledger import ledger_levels

        wanted = sorted({lv for m in self.models.values() for lv in m.model.quantiles})
        have = ledger_levels(self.ledger)
        if have is None:
            return wanted
        missing = [lv for lv in wanted if not any(abs(lv - h) < 1e-9 for h in have)]
        if missing:
            raise StockLLMError(f"--ledger {self.ledger} records the levels {','.join(f'{q:g}' for q in have)}, "
                                f"and the served models also give {','.join(f'{q:g}' for q in missing)}: use "
                                "another ledger file")
        return have

    # --- inputs --------------------------------------------------------------------------------------------
    def pick(self, name) -> ServedModel:
        """The served model called ``name`` (None: the first), or a 404."""
        if name is None:
            return next(iter(self.models.values()))
        if not isinstance(name, str) or name not in self.models:
            raise RequestError(404, f"unknown model {str(name)[:64]!r}: this server has {', '.join(self.models)} "
                                    "(GET /models)")
        return self.models[name]

    def history(self, ticker: str, min_rows: int) -> pd.DataFrame:
        """A ticker's bars: a file loaded at start, or the source's (fetched once a day, then cached)."""
        if ticker in self.files:
            return self.files[ticker]
        named = next((f for name, f in self.files.items() if name.lower() == ticker.lower()), None)
        if named is not None:
            return named
        if self.fetch is None:
            raise RequestError(422, f"unknown ticker {ticker!r}: this server has no data source, only "
                                    f"{', '.join(self.files) or 'rows sent in the body'}")
        period = f"{max(2, math.ceil(min_rows / 200) + 1)}y"
        ticker = ticker.upper()  # symbols are case-blind at every source: one cache entry for aapl and AAPL
        key, today = (ticker, period), self.today()
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == today:
                self._cache.move_to_end(key)
                return hit[1]
        frame = self.fetch(ticker, period)  # outside the lock: one slow source does not hold up the others
        with self._cache_lock:
            self._cache[key] = (today, frame)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return frame

    def parse(self, body) -> dict:
        """Check a POST /forecast body (decoded JSON); returns {model, tickers | rows, levels, calendar}."""
        if not isinstance(body, dict):
            raise RequestError(422, "the body must be a JSON object such as {\"tickers\": [\"AAPL\"]} or "
                                    "{\"rows\": {\"AAPL\": [{\"date\": ..., \"open\": ...}, ...]}}")
        stray = [k for k in body if k not in REQUEST_FIELDS]
        if stray:
            raise RequestError(422, f"unknown field {str(stray[0])[:40]!r}: the body takes "
                                    f"{', '.join(REQUEST_FIELDS)}")
        tickers, rows = body.get("tickers"), body.get("rows")
        if (tickers is None) == (rows is None):
            raise RequestError(422, "pass either tickers (fetched by the server) or rows (bars in the body), not "
                                    f"{'both' if tickers is not None else 'neither'}")
        out = {"model": body.get("model"), "levels": body.get("levels"), "calendar": body.get("calendar")}
        if tickers is not None:
            if isinstance(tickers, str):
                tickers = [t for t in tickers.split(",") if t.strip()]
            if not isinstance(tickers, list) or not tickers or not all(isinstance(t, str) for t in tickers):
                raise RequestError(422, "tickers must be a non-empty list of symbols such as [\"AAPL\", \"600519.SS\"]")
            self._check_count(len(tickers), "tickers")
            tickers = list(dict.fromkeys(t.strip() for t in tickers))
            bad = next((t for t in tickers if not _TICKER.fullmatch(t)), None)
            if bad is not None:
                raise RequestError(422, f"ticker {bad[:40]!r} is not a symbol: use letters, digits and . ^ = - _ "
                                        "(at most 32)")
            out["tickers"] = tickers
        else:
            if not isinstance(rows, dict) or not rows:
                raise RequestError(422, "rows must be an object {ticker: [bars]}, each bar an object with date, "
                                        "open, high, low, close and volume")
            self._check_count(len(rows), "series in rows")
            for name, bars in rows.items():
                if not _TICKER.fullmatch(name):
                    raise RequestError(422, f"series name {name[:40]!r} in rows: use letters, digits and . ^ = - _ "
                                            "(at most 32)")
                if not isinstance(bars, list) or not bars or not all(isinstance(b, dict) for b in bars):
                    raise RequestError(422, f"rows[{name!r}] must be a non-empty list of bars (objects with date, "
                                            "open, high, low, close and volume)")
                if len(bars) > self.max_rows:
                    raise RequestError(413, f"rows[{name!r}] has {len(bars)} bars, over this server's "
                                            f"{self.max_rows}: send the most recent ones only")
                _check_numbers(name, bars)
            out["rows"] = rows
        if out["calendar"] is not None and not isinstance(out["calendar"], str):
            raise RequestError(422, "calendar must be an exchange_calendars code such as \"XNYS\", or \"business\"")
        return out

    def _check_count(self, n: int, what: str) -> None:
        if n > self.max_tickers:
            raise RequestError(422, f"too many {what}: {n}, this server takes at most {self.max_tickers} per "
                                    "request; split them over several requests")

    def _levels(self, served: ServedModel, levels):
        from .quantiles import check_quantiles, missing_levels

        if levels is None:
            return None
        if not isinstance(levels, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in levels):
            raise RequestError(422, "levels must be a list of numbers such as [0.1, 0.5, 0.9]")
        try:
            levels = check_quantiles(levels, "levels")
        except StockLLMError as exc:
            raise RequestError(422, str(exc)) from None
        missing = missing_levels(served.model.quantiles, levels)
        if not served.model.any_levels and missing:
            raise RequestError(422, f"levels {','.join(f'{q:g}' for q in missing)}: model {served.name} gives "
                                    f"only {','.join(f'{q:g}' for q in served.model.quantiles)}, the levels it "
                                    "was trained for")
        return levels

    # --- the work ------------------------------------------------------------------------------------------
    def forecast(self, body, record: bool = True) -> dict:
        """POST /forecast's answer for a decoded JSON body; raises RequestError for anything refused. ``record``:
        append the rows to the ledger (when the server has one)."""
        from .models.pipeline import predict_df
        from .errors import DataError

        req = self.parse(body)
        served = self.pick(req["model"])
        levels = self._levels(served, req["levels"])
        model = served.model
        try:
            if "tickers" in req:
                data = {t: self.history(t, min_history(model)[0]) for t in req["tickers"]}
            else:
                data = {name: pd.DataFrame(bars) for name, bars in req["rows"].items()}
            calendar = req["calendar"] or self.calendar
            with served.lock:
                table = predict_df(model, data, quantiles=levels, calendar=calendar, price_limits=self.price_limits)
        except SourceUnavailable as exc:
            raise RequestError(503, str(exc)) from None
        except (DataError, StockLLMError) as exc:
            raise RequestError(422, str(exc)) from None
        answer = {"model": served.name, "kind": model.kind, "checkpoint": served.checkpoint,
                  "levels": list(levels or model.quantiles), "forecasts": records(table)}
        if record and self.ledger is not None:
            warning = self._record(table, served, "tickers" in req)
            if warning:
                answer["warning"] = warning
        return answer

    def _record(self, table: pd.DataFrame, served: ServedModel, fetched: bool) -> str | None:
        """Append a forecast to the ledger; None when done, else the one line that says why not (also printed
        on the server's stderr). The forecast is answered either way: a ledger replaced or broken under the
        running server (a folder, a FIFO, a foreign CSV, a full disk) costs the record, not the answer."""
        import sys

        from .errors import DataError
        from .ledger import append_forecasts
        from .quantiles import column, level_of

        kept = {column(lv) for lv in self.ledger_levels}  # levels a request added beyond them are not recorded
        rows = table[[c for c in table.columns if level_of(c) is None or c in kept]]
        try:
            with self._ledger_lock:
                append_forecasts(self.ledger, rows, checkpoint=served.checkpoint, levels=self.ledger_levels,
                                 source=self.source if fetched else "request",
                                 adjust=self.adjust if fetched else "")
        except (StockLLMError, DataError, OSError) as exc:
            line = (f"not recorded in the ledger: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                    "the server's operator should fix or replace the --ledger file")
            print(f"stockllm serve: warning: {line}", file=sys.stderr, flush=True)
            return line
        return None

    def scores(self) -> dict:
        """GET /scores: the ledger's forecasts whose target date has passed, scored against the closes the server
        reads (its files, or its source, cached for the day) per model and horizon (see :func:`live_scores`)."""
        from pathlib import Path

        from .errors import DataError
        from .ledger import read_ledger, score

        if self.ledger is None:
            raise RequestError(404, "this server keeps no ledger: start it with --ledger FILE to score its forecasts")
        if not Path(self.ledger).exists():
            return {"scored": 0, "pending": 0, "since": None, "scores": []}
        ledger, _ = read_ledger(self.ledger)
        frames = {}
        for ticker in dict.fromkeys(ledger["ticker"]):
            try:
                frames[ticker] = self.history(ticker, 1)
            except (RequestError, DataError, StockLLMError):  # rows sent in a body, an unreachable source
                continue
        _, forecasts, counts = score(ledger, frames) if frames else (None, None, {"scored": 0, "pending": 0})
        rows = live_scores(forecasts)
        return {"scored": counts["scored"], "pending": counts["pending"],
                "since": min((r["since"] for r in rows), default=None), "scores": rows}

    def page(self, tickers: list[str] | None = None, model: str | None = None, levels=None) -> str:
        """The watchlist page (HTML): the form, then per ticker its table and forecast fan (or the line that says
        why not), then the live-score panel when the server keeps a ledger."""
        served = self.pick(model)
        self._levels(served, levels)  # a bad level is the page's 422, not one line per ticker
        tickers = (tickers or self.watch)[: self.max_tickers]
        parts = [f"<h1>stockllm watchlist</h1>{self._form(tickers, served.name, levels)}<p class=note>Model "
                 f"<b>{html.escape(served.name)}</b> ({html.escape(served.model.kind)}), next "
                 f"{served.model.horizon} sessions; the last {HISTORY_DAYS} closes and the median with its central "
                 "intervals.</p>"]
        if not tickers:
            parts.append("<p>No tickers: type some above, start the server with --watch AAPL,MSFT or --data "
                         "FILE.csv, or open /?tickers=AAPL,MSFT</p>")
        for i, ticker in enumerate(tickers):
            parts.append(f"<h2>{html.escape(ticker)}</h2>")
            try:
                answer = self.forecast({"tickers": [ticker], "model": served.name, "levels": levels}, record=False)
                frame = self.history(ticker, min_history(served.model)[0])
                table = pd.DataFrame(answer["forecasts"])
                parts.append(forecast_table_html(table, served.name, i))
                fig = fan_figure(frame, table, ticker, served.name)
                parts.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{i}",
                                         config={"displaylogo": False}))
            except RequestError as exc:
                parts.append(f"<p class=error>{html.escape(exc.detail)}</p>")
            except Exception as exc:  # noqa: BLE001 - one ticker's failure leaves the others on the page
                parts.append(f"<p class=error>unexpected {html.escape(type(exc).__name__)}: "
                             f"{html.escape(str(exc)[:200])}</p>")
        if self.ledger is not None:
            parts.append(_SCORES_PANEL)
        return _PAGE.format(body="\n".join(parts))

    def _form(self, tickers: list[str], model: str, levels) -> str:
        """The page's form: tickers, model and levels, submitted as GET / with those parameters."""
        options = "".join(f"<option value=\"{html.escape(n)}\"{' selected' if n == model else ''}>{html.escape(n)}"
                          f"</option>" for n in self.models)
        shown = ",".join(f"{q:g}" for q in levels) if levels else ""
        return (f'<form id="watch" method="get" action="/"><label>Tickers <input name="tickers" size="32" '
                f'value="{html.escape(",".join(tickers))}" placeholder="AAPL,600519.SS"></label> <label>Model '
                f'<select name="model">{options}</select></label> <label>Levels <input name="levels" size="18" '
                f'value="{html.escape(shown)}" placeholder="0.1,0.5,0.9"></label> <button type="submit">Forecast'
                "</button></form>")


def live_scores(forecasts: pd.DataFrame | None) -> list[dict]:
    """Per model and horizon, over every ticker: forecasts (scored), mae_vs_naive (Σ|error| ÷ naive's on the same
    forecasts), wql_vs_naive (Σ pinball ÷ naive's, over the model's levels), coverage_80 (share of closes inside the
    80% interval; None without levels 0.1 and 0.9) and since (the first last-date scored). ``forecasts``: the scored
    rows of :func:`stockllm.ledger.score`, where naive is recomputed at each model's levels."""
    from .metrics import pinball, quantile_columns

    if forecasts is None or forecasts.empty:
        return []
    keys = ["series", "origin", "horizon"]
    out = []
    for (model, horizon), g in forecasts.groupby(["model", "horizon"], sort=True):
        qcols = [(c, lv) for c, lv in quantile_columns(g) if g[c].notna().all()]
        names, levels = [c for c, _ in qcols], [lv for _, lv in qcols]
        ref = forecasts[forecasts["model"].str.startswith("naive") & forecasts[names].notna().all(axis=1)
                        & (forecasts["horizon"] == horizon)].drop_duplicates(keys).set_index(keys)
        base = ref.reindex(pd.MultiIndex.from_frame(g[keys]))

        def loss(rows):
            return float(pinball(rows["actual"].to_numpy(), rows[names].to_numpy(), levels).sum()) if names else 0.0

        row = {"model": model, "horizon": int(horizon), "forecasts": len(g), "since": g["origin"].min(),
               "mae_vs_naive": _ratio((g["predicted"] - g["actual"]).abs().sum(),
                                      (base["last_close"] - base["actual"]).abs().sum()),
               "wql_vs_naive": _ratio(loss(g), loss(base)) if names else None, "coverage_80": None}
        if "q0.1" in names and "q0.9" in names:
            row["coverage_80"] = float(((g["actual"] >= g["q0.1"]) & (g["actual"] <= g["q0.9"])).mean())
        out.append(row)
    return out


def _ratio(a: float, b: float):
    return float(a / b) if b and math.isfinite(a / b) else None


def _page_levels(text: str | None):
    """The page's levels parameter ("0.1,0.5,0.9") as numbers, None when empty; a bad one is a 422."""
    if not text or not text.strip():
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise RequestError(422, f"levels {text[:40]!r}: write numbers between 0 and 1 separated by commas, such as "
                                "0.1,0.5,0.9") from None


def forecast_table_html(table: pd.DataFrame, model: str, i: int) -> str:
    """One ticker's forecast as an HTML table: per horizon the date, median, 80% band and change in %."""
    last = float(table["last_close"].iloc[0])
    band = "q0.1" in table and "q0.9" in table and table[["q0.1", "q0.9"]].notna().all(axis=None)
    head = "<tr><th>+h</th><th>date</th><th>median</th>" + ("<th>80% band</th>" if band else "") + "<th>change</th></tr>"
    body = []
    for r in table.to_dict("records"):
        cells = [f"+{r['horizon']}", r["date"], f"{r['predicted_close']:.2f}"]
        if band:
            cells.append(f"{r['q0.1']:.2f} – {r['q0.9']:.2f}" + (" (price limit)" if r.get("limited") else ""))
        cells.append(f"{100 * (r['predicted_close'] / last - 1):+.2f}%")
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    caption = (f"last close {last:.2f} on {html.escape(str(table['last_date'].iloc[0]))}; model "
               f"{html.escape(model)}")
    return (f'<table class="forecast" id="table-{i}"><caption>{caption}</caption>{head}{"".join(body)}'
            "</table>")


def _check_numbers(name: str, bars: list) -> None:
    """Refuse (422) a bar whose number lies outside float range (a 401-digit integer) or whose text holds control
    characters, naming the bar and field; the data checks that follow name everything else."""
    for i, bar in enumerate(bars):
        for key, value in bar.items():
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 1.7e308:
                raise RequestError(422, f"rows[{name!r}][{i}].{str(key)[:20]}: a {len(str(abs(value)))}-digit "
                                        "number is outside float range; send prices and volumes as ordinary numbers")
            if isinstance(value, str) and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
                raise RequestError(422, f"rows[{name!r}][{i}].{str(key)[:20]} holds a control character: send plain "
                                        "text such as \"2024-05-02\"")


def records(table: pd.DataFrame) -> list[dict]:
    """predict_df's rows as JSON-ready dicts: dates as YYYY-MM-DD, NaN as null (column by column: a per-cell
    conversion cost as much as the forecast)."""
    names = list(table.columns)
    columns = []
    for name in names:
        values = table[name]
        if name in ("date", "last_date"):
            columns.append(pd.to_datetime(values).dt.strftime("%Y-%m-%d").tolist())
        elif pd.api.types.is_float_dtype(values):
            columns.append([v if math.isfinite(v) else None for v in values.tolist()])
        else:
            columns.append(values.tolist())
    return [dict(zip(names, row)) for row in zip(*columns)]


def fan_figure(frame: pd.DataFrame, forecasts: pd.DataFrame, ticker: str, model: str):
    """A plotly Figure: the last HISTORY_DAYS closes, then the median forecast and its central intervals (as
    ``predict --plot`` draws them), the fan starting at the last close."""
    import plotly.graph_objects as go

    from .quantiles import central_intervals, column, level_of

    past = frame["Close"].iloc[-HISTORY_DAYS:]
    last = float(past.iloc[-1])
    x = [past.index[-1].strftime("%Y-%m-%d"), *forecasts["date"]]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=list(past.index.strftime("%Y-%m-%d")), y=[round(float(v), 6) for v in past],
                             name="close", mode="lines", line={"color": "black", "width": 1.4}))
    levels = sorted(lv for lv in map(level_of, forecasts.columns) if lv is not None)
    intervals = central_intervals(levels)
    for k, (pct, lo, hi) in enumerate(intervals):
        alpha = 0.12 + 0.4 * k / max(len(intervals), 1)
        fig.add_trace(go.Scatter(x=x, y=[last, *forecasts[column(hi)]], mode="lines", line={"width": 0},
                                 showlegend=False, hoverinfo="skip", legendgroup=f"i{pct}"))
        fig.add_trace(go.Scatter(x=x, y=[last, *forecasts[column(lo)]], mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=f"rgba(31,119,180,{alpha:.2f})", name=f"{pct}% interval",
                                 legendgroup=f"i{pct}"))
    fig.add_trace(go.Scatter(x=x, y=[last, *forecasts["predicted_close"]], name=f"median ({model})",
                             line={"color": "#1f77b4", "width": 1.6}, mode="lines+markers"))
    fig.update_layout(title={"text": f"{ticker}: last {len(past)} closes and the next {len(forecasts)}"},
                      template="plotly_white", height=360, margin={"l": 50, "r": 20, "t": 50, "b": 40},
                      xaxis={"type": "date"}, yaxis={"title": {"text": "close"}}, hovermode="x unified")
    return fig


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>stockllm watchlist</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1100px; padding: 0 1rem; }}
p.note {{ color: #555; }} p.error {{ color: #a00; }} h2 {{ font-size: 1.1rem; margin-top: 1.5rem; }}
table {{ border-collapse: collapse; margin: .5rem 0; }} td, th {{ padding: .15rem .6rem; text-align: right; }}
caption {{ text-align: left; color: #555; }} tr:nth-child(even) {{ background: #f4f6f8; }}</style>
<script src="/plotly.js"></script>
</head><body>
{body}
</body></html>
"""


def run_server(app, host: str, port: int, quiet: bool = False) -> None:
    """Serve ``app`` with uvicorn until SIGINT or SIGTERM. Requests still running SHUTDOWN_SECONDS later are
    abandoned: their worker threads would keep the process alive for as long as a forecast or a download takes,
    so the process ends at once (``os._exit``, after flushing), with the signal's exit status."""
    import signal

    import uvicorn

    from .errors import Terminated

    try:
        uvicorn.run(app, host=host, port=port, log_level="warning" if quiet else "info", access_log=not quiet,
                    timeout_graceful_shutdown=SHUTDOWN_SECONDS)
    except KeyboardInterrupt:
        _exit_if_busy(128 + signal.SIGINT)
        raise
    except Terminated as exc:
        _exit_if_busy(128 + exc.signum)
        raise
    _exit_if_busy(0)


def _exit_if_busy(status: int) -> None:
    """End the process now when threads other than this one are still working (a request abandoned at
    shutdown); otherwise return and let the caller exit normally."""
    import os
    import sys

    busy = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    for thread in busy:
        thread.join(timeout=0.2)
    busy = [t for t in busy if t.is_alive()]
    if not busy:
        return
    print(f"stockllm serve: stopped; {len(busy)} request{'s' if len(busy) != 1 else ''} still running "
          "abandoned (nothing half-written: ledger rows go down in one write)", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(status)


# Filled in the browser from GET /scores, and again every five minutes: the page itself stays fast.
_SCORES_PANEL = """<section id="scores"><h2>Live scores: how the past forecasts did</h2>
<div id="scores-table" class="note">loading GET /scores ...</div></section>
<script>
function fmt(v, pct) { return v === null ? "–" : pct ? (100 * v).toFixed(0) + "%" : v.toFixed(3); }
async function loadScores() {
  const box = document.getElementById("scores-table");
  try {
    const answer = await (await fetch("/scores")).json();
    if (!answer.scores || !answer.scores.length) {
      box.textContent = "no forecast in this server's ledger has reached its date yet (" + (answer.pending || 0) +
        " pending)"; return;
    }
    let rows = "<tr><th>model</th><th>+h</th><th>forecasts</th><th>MAE ÷ naive</th><th>WQL ÷ naive</th>" +
      "<th>80% coverage</th><th>since</th></tr>";
    for (const s of answer.scores) {
      rows += "<tr><td>" + s.model + "</td><td>+" + s.horizon + "</td><td>" + s.forecasts + "</td><td>" +
        fmt(s.mae_vs_naive) + "</td><td>" + fmt(s.wql_vs_naive) + "</td><td>" + fmt(s.coverage_80, true) +
        "</td><td>" + s.since + "</td></tr>";
    }
    box.innerHTML = '<table id="scores-grid">' + rows + "</table>";
  } catch (err) { box.textContent = "GET /scores failed: " + err; }
}
loadScores(); setInterval(loadScores, 300000);
</script>"""

# POST /forecast reads its body itself (for the size limit), so its schema is given here for /docs.
_FORECAST_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "properties": {
        "model": {"type": "string", "description": "a served model's name (GET /models); default the first"},
        "tickers": {"type": "array", "items": {"type": "string"}, "example": ["AAPL", "600519.SS"]},
        "rows": {"type": "object", "description": "{ticker: [bars]}, each bar with date and close (and open, high, "
                 "low, volume for the models that read them)"},
        "levels": {"type": "array", "items": {"type": "number"}, "example": [0.1, 0.5, 0.9]},
        "calendar": {"type": "string", "example": "XNYS"}}}}}}}


def create_app(service: Service, max_body_bytes: int = MAX_BODY_BYTES):
    """The FastAPI application over ``service`` (see the module docstring for the endpoints)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from . import __version__

    app = FastAPI(title="stockllm", version=__version__, description="Forecasts of the next daily closes with their "
                  "quantiles (README: stockllm serve)", redoc_url=None)
    plotly_js: list[str] = []

    def refuse(status: int, detail: str):
        return JSONResponse({"detail": detail}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):  # unknown paths and methods: one line too
        return refuse(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc):
        first = (exc.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return refuse(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def unexpected(request, exc):  # the last line of defence: a 500 with one line, the server lives on
        return refuse(500, f"unexpected {type(exc).__name__}: {str(exc)[:200]} (please report it)")

    @app.get("/health")
    def health():
        return {"status": "ok", "version": __version__, "models": list(service.models)}

    @app.get("/models")
    def models():
        return {"models": [m.describe() for m in service.models.values()], "source": service.source}

    @app.get("/scores")
    def scores():
        try:
            return service.scores()
        except RequestError as exc:
            return refuse(exc.status, exc.detail)

    @app.post("/forecast", openapi_extra=_FORECAST_BODY)
    async def forecast(request: Request):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
            return refuse(413, f"request body of {length} bytes is over this server's {max_body_bytes} bytes: send "
                               "fewer tickers or rows per request")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                return refuse(413, f"request body over this server's {max_body_bytes} bytes: send fewer tickers or "
                                   "rows per request")
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks) or b"null")
        except (ValueError, RecursionError) as exc:
            return refuse(400, f"the body is not JSON ({str(exc).splitlines()[0][:120]}): send a JSON object")
        try:
            return await run_in_threadpool(service.forecast, body)
        except RequestError as exc:
            return refuse(exc.status, exc.detail)
        except asyncio.CancelledError:  # the server stops (SIGTERM) while this request is still computing
            return refuse(503, "the server is shutting down: send the request again once it is back")

    @app.get("/", response_class=HTMLResponse)
    def page(tickers: str | None = None, model: str | None = None, levels: str | None = None):
        names = [t.strip() for t in tickers.split(",") if t.strip()] if tickers else None
        try:
            if names:
                service.parse({"tickers": names})
            return HTMLResponse(service.page(names, model or None, _page_levels(levels)))
        except RequestError as exc:
            return HTMLResponse(f"<p>{html.escape(exc.detail)}</p>", status_code=exc.status)

    @app.get("/plotly.js")
    def plotly():
        if not plotly_js:
            from plotly.offline import get_plotlyjs

            plotly_js.append(get_plotlyjs())
        return Response(plotly_js[0], media_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

    return app
