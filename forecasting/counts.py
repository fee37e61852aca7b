"""Surprise of a window's error count against the series' own long-run error share.

Why: a detector of the 5xx *share* (:class:`forecasting.detector.StreamingDetector` on a rate) waits
until the share of the window stands out against its recent spread, and a rate window of a minute
dilutes the first errors of a host that has just begun to fail every request. The *count* is
evidence by itself: if the backend fails a share ``p0`` of its requests when healthy, ``k`` or more
failures among ``n`` requests has the binomial probability ``P(X >= k)``. For a backend that has
served thousands of requests without a 5xx, two or three failures in one window are already
improbable, at any load: the speed of Envoy's consecutive-5xx count, with a false-alarm rate that
follows from the probability instead of being tuned.

``p0`` is learned from the series itself: decayed totals of its requests and errors (a half-life of
a day by default) with a Jeffreys prior, so a backend with little history is surprised by nothing
(``p0`` starts at 1/2) and one that errs routinely is not surprised by its usual errors. Windows of a
rate overlap (a one-minute window read every 15 s); each update learns only the share of its window
that is new since the previous one, so overlap does not inflate the history.

The test assumes independent failures, which bursts of a sick backend are not: that is what it
detects. A backend whose healthy errors come in bursts (a client that cancels in batches) learns a
higher ``p0`` from them, and the alert level bounds how often the rest may alarm.

No I/O, no clock: time is the caller's ``now_s``.
"""

from __future__ import annotations

import math

from scipy.stats import binom

LN10 = math.log(10.0)


class ErrorCountTest:
    """``-log10 P(X >= errors)`` of each window under the binomial of its requests and the learned share.

    Parameters:

    half_life_s:
        seconds after which a past request weighs half in the learned share ``p0`` (a day: a share
        learned yesterday still counts, last week's barely).
    prior_errors, prior_requests:
        the pseudo-counts of the share's prior (Jeffreys: half an error in one request, ``p0 = 0.5``
        before anything is seen, so nothing is surprising until there is history).

    Learned state: ``errors_`` and ``requests_`` (decayed totals), ``last_s_`` (time of the last update).
    """

    def __init__(self, half_life_s: float = 86_400.0, prior_errors: float = 0.5, prior_requests: float = 1.0) -> None:
        if not (half_life_s > 0 and 0 < prior_errors < prior_requests):
            raise ValueError("need half_life_s > 0 and 0 < prior_errors < prior_requests")
        self.half_life_s = half_life_s
        self.prior_errors = prior_errors
        self.prior_requests = prior_requests
        self.reset()

    def reset(self) -> None:
        """Forget the learned share (the backend was redeployed or its meaning changed)."""
        self.errors_ = 0.0
        self.requests_ = 0.0
        self.last_s_: float | None = None

    @property
    def share_(self) -> float:
        """The learned healthy error share ``p0``."""
        return (self.errors_ + self.prior_errors) / (self.requests_ + self.prior_requests)

    def surprise(self, requests: float, errors: float) -> float:
        """``-log10 P(X >= errors)`` for ``X ~ Binomial(requests, p0)``; 0 for no errors or no requests."""
        n, k = round(requests), round(errors)
        if n <= 0 or k <= 0:
            return 0.0
        log_tail = float(binom.logsf(min(k, n) - 1, n, self.share_))
        return max(0.0, -log_tail / LN10)

    def update(self, now_s: float, requests: float, errors: float, window_s: float) -> float:
        """The surprise of this window's counts, then learn the part of the window that is new.

        ``requests`` and ``errors`` are the window's totals (a rate times ``window_s``). Invalid
        counts (negative, NaN, errors above requests) score 0 and teach nothing.
        """
        if not (math.isfinite(requests) and math.isfinite(errors) and 0 <= errors <= requests and window_s > 0):
            return 0.0
        surprise = self.surprise(requests, errors)
        elapsed = window_s if self.last_s_ is None else now_s - self.last_s_
        if elapsed > 0:
            decay = 0.5 ** (elapsed / self.half_life_s)
            new = min(1.0, elapsed / window_s)
            self.errors_ = self.errors_ * decay + errors * new
            self.requests_ = self.requests_ * decay + requests * new
            self.last_s_ = now_s
        return surprise
