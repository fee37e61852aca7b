"""Replay a cluster's own request-rate history from Prometheus as a backtest trace.

A range query (``query_range``) gives the request rate at each step; arrivals are synthesized
as a Poisson process following it (:func:`controller.backtest.trace.synthesize`), and token
counts come from ``--tokens-from`` (a trace whose pairs are drawn with replacement) or a
log-normal default. Prometheus does not keep individual requests, so burst structure below the
query step is not the cluster's own: a step of 15 s or less keeps most of it.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np
import requests

from controller.backtest.trace import TokenProfile, Trace, load_trace, synthesize
from controller.errors import InputError


def _seconds(value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise InputError("BadTime", f"{value!r} is neither Unix seconds nor an RFC 3339 time") from exc


def fetch_rate(url: str, query: str, start: float, end: float, step_s: float, timeout_s: float = 30.0) -> np.ndarray:
    """The query's values on the ``step_s`` grid from ``start`` to ``end``; NaN where Prometheus has none.

    Every way this fails is the user's to fix (the URL, the query), so it is an :class:`InputError`.
    """
    try:
        response = requests.get(
            f"{url.rstrip('/')}/api/v1/query_range",
            params={"query": query, "start": str(start), "end": str(end), "step": str(step_s)},
            timeout=timeout_s,
        )
        body = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise InputError("PrometheusUnreachable", f"no Prometheus API answer from {url}: {type(exc).__name__}") from exc
    if body.get("status") != "success":
        raise InputError("QueryRejected", f"Prometheus refused the query: {body.get('error')}")
    result = body["data"]["result"]
    if len(result) != 1:
        raise InputError("AmbiguousResult", f"the query must return exactly one series (sum it), got {len(result)}")
    grid = np.full(int((end - start) // step_s) + 1, np.nan)
    for stamp, value in result[0]["values"]:
        slot = round((float(stamp) - start) / step_s)
        if 0 <= slot < len(grid):
            grid[slot] = float(value)
    return grid


def trace_from_prometheus(
    url: str,
    query: str,
    *,
    start: str | None = None,
    end: str | None = None,
    step_s: float = 15.0,
    tokens_from: Path | None = None,
    seed: int = 0,
) -> Trace:
    stop = _seconds(end, time.time())
    begin = _seconds(start, stop - 3600.0)
    rates = fetch_rate(url, query, begin, stop, step_s)
    tokens = TokenProfile(source=load_trace(tokens_from) if tokens_from else None)
    return synthesize("prometheus", step_s, rates, tokens, seed)
