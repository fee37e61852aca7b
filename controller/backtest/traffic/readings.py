"""What Prometheus would show of a simulated backend: the operator's per-backend readings.

In a cluster the traffic policies read each backend from Prometheus over their ``rateWindow``
(:func:`controller.clients.servers.backend_queries`): Istio's destination telemetry gives the request
rate and the 5xx fraction, vLLM's histograms the p95 TTFT and TPOT. This module computes the same
readings from the simulator's :class:`~controller.backtest.traffic.observe.Observation` windows, so
that the backtest feeds the operator's decide step (:mod:`controller.traffic.decide`) exactly what
it would get in a cluster, and nothing the cluster would not show:

* ``request_rate``: responses of the backend's hosts per second (first tokens and host failures:
  what ``istio_requests_total{reporter="destination"}`` counts), over the window;
* ``error_rate``: the 5xx share of those responses; missing when there were none (``0/0``);
* ``stalled_replicas``: hosts holding requests (running or waiting) at both ends of the policy's last
  interval and no token generated in it (:func:`controller.clients.servers.stalled`, from vLLM's
  ``num_requests_running`` and ``num_requests_waiting`` gauges and ``generation_tokens_total``
  counter, read at the ends of the observation windows as scrapes read them); missing until a whole
  interval has been observed;
* ``failing_replicas``: hosts failing on their own: the stalled ones, and those whose own 5xx share
  is at least the policy's error limit and
  :data:`~controller.clients.servers.FAILING_POD_FACTOR` times the median host's, among the hosts
  that answered over the last :data:`~controller.clients.servers.FAILING_POD_WINDOW`
  (:func:`controller.clients.servers.failing_pods`, per pod). A host timeout counts
  as the host's 504 here, as Envoy's outlier detection counts it; a cluster's destination
  telemetry does not see a hung pod's timeouts (the client's proxy ends the request), which is
  why a hang is seen by its stall;
* ``ttft_s``, ``tpot_s``: ``histogram_quantile(0.95, ...)`` over vLLM's own bucket bounds of the
  server-side TTFT (from when the host got the attempt) and TPOT samples of the window: the same
  bucket resolution and linear interpolation Prometheus gives (one TPOT observation per request);
  missing when the window has no sample;
* ``ready_replicas``: the subset's hosts (ejection does not make a pod unready).

Not modelled, so missing as when a query returns nothing: ``latency_ms`` (Istio's end-to-end
duration) and ``saturation`` (KV-cache usage; the judge's engine has no KV cache). The proxy's own
503s (overflow, no healthy upstream) never reach a host, so they are in no reading, as in Istio's
destination telemetry.

The window is the policy's ``rateWindow`` over whole observation windows: at time ``t`` the
observations ending in ``(t - window, t]``, divided by the whole window even while the run is
younger than it (``rate()`` does not extrapolate a series to a range it did not cover), so that a
rate times the window is the number of requests actually seen.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence

from controller.backtest.traffic.observe import Observation, SubsetWindow
from controller.clients.servers import FAILING_POD_FACTOR, FAILING_POD_WINDOW, stalled
from controller.traffic.signals import BackendReading
from controller.traffic.spec import window_seconds

#: vLLM's bucket bounds of ``vllm:time_to_first_token_seconds`` and ``vllm:time_per_output_token_seconds``.
TTFT_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
TPOT_BUCKETS_S = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
#: The quantile of the operator's latency queries.
QUANTILE = 0.95


def histogram_quantile(q: float, samples: Sequence[float], bounds: Sequence[float]) -> float | None:
    """Prometheus' ``histogram_quantile`` of ``samples`` counted into buckets with upper ``bounds``.

    The rank ``q x count`` is found in the cumulative counts and interpolated linearly inside its
    bucket (from 0 for the first one); a rank in the ``+Inf`` bucket gives the highest finite bound.
    ``None`` for no samples (Prometheus' NaN, which the operator reads as missing).
    """
    if not samples:
        return None
    counts = [0] * (len(bounds) + 1)
    for value in samples:
        counts[_bucket(value, bounds)] += 1
    rank = q * len(samples)
    cumulative = 0
    for index, count in enumerate(counts):
        if cumulative + count >= rank and count > 0:
            if index == len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index > 0 else 0.0
            return lower + (bounds[index] - lower) * (rank - cumulative) / count
        cumulative += count
    return bounds[-1]


def _bucket(value: float, bounds: Sequence[float]) -> int:
    """Index of the first bucket whose upper bound is >= value (``le`` semantics)."""
    low, high = 0, len(bounds)
    while low < high:
        middle = (low + high) // 2
        if value <= bounds[middle]:
            high = middle
        else:
            low = middle + 1
    return low


class PrometheusView:
    """The recent observations of a run, read as the operator's queries read a cluster."""

    def __init__(self, longest_window_s: float) -> None:
        if not longest_window_s > 0:
            raise ValueError(f"a rate window must be > 0 s, got {longest_window_s}")
        self.longest_window_s = max(longest_window_s, window_seconds(FAILING_POD_WINDOW))
        self.observations: deque[Observation] = deque()

    def add(self, observation: Observation) -> None:
        """Keep ``observation``; forget those no window can reach any more."""
        self.observations.append(observation)
        while self.observations and self.observations[0].end_s <= observation.end_s - self.longest_window_s:
            self.observations.popleft()

    def reading(
        self, backend: str, subset: str, window_s: float, error_limit: float, interval_s: float
    ) -> BackendReading:
        """Backend ``backend`` (serving ``subset``) over the last ``window_s`` seconds; ``error_limit``
        is the least 5xx share of a failing host, ``interval_s`` the policy's interval (the stall's window)."""
        if not self.observations:
            raise ValueError("nothing observed yet")
        now = self.observations[-1].end_s
        windows = [o.subset(subset) for o in self.observations if o.end_s > now - window_s + 1e-9]
        responses = sum(w.responses for w in windows)
        errors = sum(w.errors_5xx for w in windows)
        values: dict[str, float | None] = {
            "request_rate": responses / window_s,
            "error_rate": errors / responses if responses else None,
            "latency_ms": None,
            "ttft_s": histogram_quantile(QUANTILE, _samples(windows, "ttft"), TTFT_BUCKETS_S),
            "tpot_s": histogram_quantile(QUANTILE, _samples(windows, "tpot"), TPOT_BUCKETS_S),
            "saturation": None,
        }
        failing_window_s = window_seconds(FAILING_POD_WINDOW)
        longer = [o.subset(subset) for o in self.observations if o.end_s > now - failing_window_s + 1e-9]
        stalled_hosts = self._stalled_hosts(subset, now, interval_s)
        values["stalled_replicas"] = None if stalled_hosts is None else float(len(stalled_hosts))
        values["failing_replicas"] = float(len(_failing_hosts(longer, error_limit) | (stalled_hosts or set())))
        hosts = len(windows[-1].hosts) if windows else None
        return BackendReading(backend, values, hosts)

    def _stalled_hosts(self, subset: str, now: float, interval_s: float) -> set[int] | None:
        """The hosts stalled over ``(now - interval_s, now]``; ``None`` before an observation ends at its start."""
        start = next((o for o in self.observations if abs(o.end_s - (now - interval_s)) < 1e-6), None)
        if start is None:
            return None
        before = {h.host: h for h in start.subset(subset).hosts}
        return {
            h.host
            for h in self.observations[-1].subset(subset).hosts
            if (b := before.get(h.host)) is not None
            and stalled((b.running, h.running), (b.waiting, h.waiting), (b.generated_tokens, h.generated_tokens))
        }


def _failing_hosts(windows: Sequence[SubsetWindow], error_limit: float) -> set[int]:
    responses: dict[int, int] = {}
    errors: dict[int, int] = {}
    for window in windows:
        for host in window.hosts:
            responses[host.host] = responses.get(host.host, 0) + host.responses
            errors[host.host] = errors.get(host.host, 0) + host.errors_5xx
    shares = {h: errors[h] / n for h, n in responses.items() if n > 0}
    if not shares:
        return set()
    threshold = max(FAILING_POD_FACTOR * statistics.median(shares.values()), error_limit)
    return {h for h, share in shares.items() if share >= threshold}


def _samples(windows: Sequence[SubsetWindow], which: str) -> list[float]:
    samples: list[float] = []
    for window in windows:
        for host in window.hosts:
            samples.extend(host.ttft_s if which == "ttft" else host.tpot_s)
    return [s for s in samples if math.isfinite(s)]
