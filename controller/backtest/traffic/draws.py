"""The random draws of a traffic backtest: a pure function of (seed, request, attempt, stream).

The reference judge fixes every draw as ``draw(seed, i, k, stream) = (h >> 11) / 2**53`` with
``h = splitmix64(splitmix64(splitmix64(splitmix64(seed) ^ i) ^ k) ^ stream)``, so no draw depends
on event order or on how many draws came before: any simulator that follows the same rules makes
the same choices. This module only computes draws; it must not keep state between calls.

The first attempts' draws (k = 0) are computed for all requests at once with numpy (uint64
arithmetic wraps modulo 2**64, as splitmix64 needs); retries use the scalar function.
"""

from __future__ import annotations

import numpy as np

MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_UNIT = 2.0**-53

# Streams: what each draw of an attempt decides.
SUBSET_STREAM = 0
FIRST_PICK_STREAM = 1
SECOND_PICK_STREAM = 2
ERROR_STREAM = 3
STREAMS = (SUBSET_STREAM, FIRST_PICK_STREAM, SECOND_PICK_STREAM, ERROR_STREAM)


def splitmix64(x: int) -> int:
    x = (x + _GOLDEN) & MASK64
    x = ((x ^ (x >> 30)) * _MIX1) & MASK64
    x = ((x ^ (x >> 27)) * _MIX2) & MASK64
    return x ^ (x >> 31)


def request_key(seed: int, request: int) -> int:
    """The part of the hash shared by every draw of one request."""
    return splitmix64(splitmix64(seed & MASK64) ^ request)


def draw_from_key(key: int, attempt: int, stream: int) -> float:
    return (splitmix64(splitmix64(key ^ attempt) ^ stream) >> 11) * _UNIT


def draw(seed: int, request: int, attempt: int, stream: int) -> float:
    """A uniform draw in [0, 1) for one decision of one attempt of one request."""
    return draw_from_key(request_key(seed, request), attempt, stream)


def _splitmix64_array(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(_GOLDEN)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(_MIX1)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(_MIX2)
    mixed: np.ndarray = x ^ (x >> np.uint64(31))
    return mixed


def first_attempt_draws(seed: int, requests: int) -> np.ndarray:
    """Draws of attempt 0 for requests ``0 .. requests-1``: shape (len(STREAMS), requests)."""
    index = np.arange(requests, dtype=np.uint64)
    keys = _splitmix64_array(np.uint64(splitmix64(seed & MASK64)) ^ index)
    attempt = _splitmix64_array(keys ^ np.uint64(0))
    out = np.empty((len(STREAMS), requests), dtype=np.float64)
    for stream in STREAMS:
        hashed = _splitmix64_array(attempt ^ np.uint64(stream))
        out[stream] = (hashed >> np.uint64(11)).astype(np.float64) * _UNIT
    return out
