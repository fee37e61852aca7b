"""The load signal the predictive policy scales on: burst-aware prefill demand in tokens/s.

An LLM replica of this kind is prefill-bound: a prompt waits behind every prompt routed before
it, so what breaks the TTFT SLO is a burst of prompt tokens, not the average rate. The rate a
fleet must sustain so that the tokens that arrived in the last ``w`` seconds are all prefilled
within ``w + ttft_slo`` seconds is ``tokens(w) / (w + ttft_slo)``; the signal is the highest of
these over windows from one second to a few minutes, so it equals the average rate on smooth
load and rises with a burst as soon as the burst is seen. Divided by a replica's prefill rate
times its target utilization (the headroom that keeps decoding within the TPOT SLO, since
decoding pauses during prefill), it gives replicas.

It lives here, not with the controller, because it is pure signal processing on a series: the
operator's forecasting loop and the backtester both derive their load from it.
"""

from __future__ import annotations

import numpy as np

#: Burst windows, seconds: from a single second (one long prompt) to the sustained rate.
BURST_WINDOWS_S = (1, 2, 4, 8, 15, 30, 60, 120)


def burst_load(prompt_tokens: np.ndarray, ttft_slo_s: float, windows: tuple[int, ...] = BURST_WINDOWS_S) -> np.ndarray:
    """Per second ``t``: the highest ``tokens(t - w, t] / (w + ttft_slo_s)`` over ``windows``.

    ``prompt_tokens[t]`` is the prompt tokens that arrived during second ``t``; the result at
    ``t`` uses only seconds up to and including ``t``.
    """
    tokens = np.asarray(prompt_tokens, dtype=float)
    n = len(tokens)
    cumulative = np.concatenate(([0.0], np.cumsum(tokens)))
    load = np.zeros(n)
    arrived = np.empty(n)
    for window in windows:
        # tokens(t - w, t] = cumulative[t + 1] - cumulative[max(t + 1 - w, 0)], by slices.
        head = min(max(window - 1, 0), n)
        np.subtract(cumulative[1 : head + 1], cumulative[0], out=arrived[:head])
        np.subtract(cumulative[head + 1 :], cumulative[head + 1 - window : n + 1 - window], out=arrived[head:])
        np.divide(arrived, window + ttft_slo_s, out=arrived)
        np.maximum(load, arrived, out=load)
    return load
