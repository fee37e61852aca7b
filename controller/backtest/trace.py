"""Request traces: the Azure LLM CSV schema, or requests synthesized from a rate series.

The Azure schema is ``TIMESTAMP,ContextTokens,GeneratedTokens`` with one request per row.
Time 0 is the first request; a token count of 0 counts as 1, as the reference judge does, so
that a run here and the judge's replay of its decisions see the same requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from controller.backtest.engine import Request
from controller.errors import InputError


@dataclass(frozen=True)
class Trace:
    """Requests sorted by arrival; arrays of equal length."""

    name: str
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival_s)

    def horizon_s(self, window_s: float) -> float:
        """The end of the last SLO window that holds a request: every policy is scored up to it."""
        if not len(self):
            return 0.0
        return float((np.floor(self.arrival_s[-1] / window_s) + 1) * window_s)

    def requests(self) -> list[Request]:
        return [
            Request(float(a), int(p), int(o))
            for a, p, o in zip(self.arrival_s, self.prompt_tokens, self.output_tokens, strict=True)
        ]

    def with_arrivals_before(self, end_s: float) -> Trace:
        keep = self.arrival_s < end_s
        return Trace(self.name, self.arrival_s[keep], self.prompt_tokens[keep], self.output_tokens[keep])


#: The columns of the Azure LLM trace schema.
TRACE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def load_trace(path: str | Path) -> Trace:
    """Read an Azure LLM trace (plain or gzipped CSV); :class:`InputError` when the file cannot be one."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError("UnreadableTrace", f"cannot read the trace {path}: {exc}") from exc
    missing = [column for column in TRACE_COLUMNS if column not in frame.columns]
    if missing:
        raise InputError("NotATrace", f"{path} is not an Azure LLM trace: it lacks the column(s) {', '.join(missing)}")
    if frame.empty:
        raise InputError("EmptyTrace", f"{path}: no requests")
    try:
        stamps = pd.to_datetime(frame["TIMESTAMP"], format="mixed")
        frame["ContextTokens"].to_numpy(dtype=np.int64)
        frame["GeneratedTokens"].to_numpy(dtype=np.int64)
    except (ValueError, TypeError) as exc:
        raise InputError("NotATrace", f"{path}: a TIMESTAMP or token count is not readable: {exc}") from exc
    seconds = (stamps - stamps.iloc[0]).dt.total_seconds().to_numpy(dtype=float)
    order = np.argsort(seconds, kind="stable")
    name = path.name.removesuffix(".gz").removesuffix(".csv")
    return Trace(
        name=name,
        arrival_s=seconds[order],
        prompt_tokens=np.maximum(frame["ContextTokens"].to_numpy(dtype=np.int64), 1)[order],
        output_tokens=np.maximum(frame["GeneratedTokens"].to_numpy(dtype=np.int64), 1)[order],
    )


@dataclass(frozen=True)
class TokenProfile:
    """Where synthesized requests take their token counts from.

    ``source`` is a trace whose (prompt, output) pairs are drawn with replacement; without one,
    prompts are log-normal around ``prompt_median`` and outputs around ``output_median`` (the
    medians of the Azure conversation trace).
    """

    source: Trace | None = None
    prompt_median: float = 1020.0
    prompt_sigma: float = 0.8
    output_median: float = 130.0
    output_sigma: float = 1.0
    max_tokens: int = 16_384

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.source is not None and len(self.source):
            picks = rng.integers(0, len(self.source), n)
            return self.source.prompt_tokens[picks], self.source.output_tokens[picks]
        prompts = rng.lognormal(np.log(self.prompt_median), self.prompt_sigma, n)
        outputs = rng.lognormal(np.log(self.output_median), self.output_sigma, n)
        clip = (1, self.max_tokens)
        return np.clip(prompts, *clip).astype(np.int64), np.clip(outputs, *clip).astype(np.int64)


def synthesize(name: str, step_s: float, rates: np.ndarray, tokens: TokenProfile, seed: int = 0) -> Trace:
    """A trace whose arrivals are a Poisson process following ``rates`` (requests/s per step).

    Each step of ``step_s`` seconds draws its count from a Poisson law with mean rate x step and
    spreads the arrivals uniformly in the step; missing (NaN) or negative rates count as zero.
    The seed makes the trace, hence the whole backtest, reproducible.
    """
    rng = np.random.default_rng(seed)
    clean = np.where(np.isfinite(rates) & (rates > 0), rates, 0.0)
    counts = rng.poisson(clean * step_s)
    starts = np.repeat(np.arange(len(clean)) * step_s, counts)
    arrivals = np.sort(starts + rng.uniform(0.0, step_s, len(starts)))
    prompts, outputs = tokens.draw(rng, len(arrivals))
    if len(arrivals):
        arrivals -= arrivals[0]
    return Trace(name, arrivals, np.maximum(prompts, 1), np.maximum(outputs, 1))
