"""What the operator and Envoy see of a simulated backend: readings per tick, and consecutive-5xx alarms.

The operator reads each backend from Prometheus every ``interval`` over its rate window
(:func:`controller.clients.servers.backend_queries`, ``health.rateWindow``, ``1m`` by default).
:class:`Recorder` is a closed-loop controller of the traffic simulator that changes nothing and, at
each tick, computes those readings from the simulator's observations of the last window, for the
backend (the subset, what the operator reads today) and for each pod (a host) alone:

* ``error_rate``: Istio's destination telemetry, 5xx responses over requests. The proxy's
  first-token timeouts are requests in it but not 5xx: the pod never answered them, and the
  destination sidecar records a request the client reset with code 0. ``None`` without requests;
* ``source_error_rate``: the same with the timeouts as 5xx, as the client's proxy (Istio's
  ``reporter="source"`` series, Envoy's outlier detection) counts them;
* ``ttft_s``, ``tpot_s``: ``histogram_quantile(0.95, ...)`` over vLLM's own bucket bounds of the
  server-side TTFT and TPOT samples of the window, as Prometheus interpolates them; ``None`` without
  samples;
* ``waiting``: vLLM's ``num_requests_waiting`` at the tick, summed over the pods read (a gauge: no
  window), which the traffic policies do not read today;
* ``requests``, ``ttft_samples``, ``tpot_samples``: how many requests, TTFT and TPOT observations the
  window holds (the request rate times the window; the histograms' ``_count`` increases).

Per pod and tick the recording also keeps vLLM's ``num_requests_running`` gauge and its
``generation_tokens_total`` counter as a scrape at the tick reads them: with ``waiting``, whether a
pod stalled over an interval (:func:`controller.clients.servers.stalled`) follows from two
consecutive ticks.

Not simulated, so missing as a query without data is: ``latency_ms`` (Istio's request duration) and
``saturation`` (KV-cache usage: the engine has no KV cache). The observations' windows end at the
ticks, so the window is a whole number of intervals.

:class:`ConsecutiveErrors` counts every host's responses in order, as Envoy's outlier detection
does: a 5xx adds one, anything else resets, and reaching N is an ejection (which resets the count).
It records, for N = 1..5, every time a host reaches N; with outlier detection off in the simulation
the first of them is exactly when ``consecutive5xxErrors: N`` would have ejected.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from controller.backtest.traffic.observe import HostWindow, Observation
from controller.backtest.traffic.scenario import Scenario
from controller.backtest.traffic.simulator import Simulation
from controller.backtest.traffic.timeline import SettingUpdate, Timeline
from devtools.fleet import TTFT_BUCKETS

#: vLLM's bucket bounds of ``vllm:time_per_output_token_seconds`` (vllm/engine/metrics.py).
TPOT_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
QUANTILE = 0.95
CONSECUTIVE = (1, 2, 3, 4, 5)


def histogram_quantile(q: float, samples: Sequence[float], bounds: Sequence[float]) -> float | None:
    """Prometheus' ``histogram_quantile(q, ...)`` of ``samples`` counted into buckets with upper ``bounds``.

    The rank q x count falls into one bucket of the cumulative counts and is interpolated linearly
    inside it (the first bucket starts at 0); a rank in the ``+Inf`` bucket gives the highest finite
    bound. ``None`` without samples (Prometheus' NaN).
    """
    if not samples:
        return None
    counts = [0] * (len(bounds) + 1)
    for sample in samples:
        counts[bisect.bisect_left(bounds, sample)] += 1
    rank = q * len(samples)
    below = 0
    for bucket, count in enumerate(counts):
        if count and below + count >= rank:
            if bucket == len(bounds):
                return float(bounds[-1])
            lower = bounds[bucket - 1] if bucket else 0.0
            return float(lower + (bounds[bucket] - lower) * (rank - below) / count)
        below += count
    return float(bounds[-1])


@dataclass(frozen=True)
class Reading:
    """One backend's or pod's signals at one tick; ``None`` is missing."""

    error_rate: float | None
    source_error_rate: float | None
    ttft_s: float | None
    tpot_s: float | None
    waiting: float
    requests: int
    ttft_samples: int
    tpot_samples: int


def read(ticks: Sequence[Sequence[HostWindow]]) -> Reading:
    """The reading of some pods over the window: ``ticks`` holds their windows of each tick, oldest first."""
    hosts = [h for tick in ticks for h in tick]
    requests = sum(h.responses for h in hosts)
    errors = sum(h.errors_5xx for h in hosts)
    timeouts = sum(h.timeouts for h in hosts)
    ttft = [x for h in hosts for x in h.ttft_s]
    tpot = [x for h in hosts for x in h.tpot_s]
    return Reading(
        error_rate=(errors - timeouts) / requests if requests else None,
        source_error_rate=errors / requests if requests else None,
        ttft_s=histogram_quantile(QUANTILE, ttft, TTFT_BUCKETS),
        tpot_s=histogram_quantile(QUANTILE, tpot, TPOT_BUCKETS),
        waiting=float(sum(h.waiting for h in ticks[-1])),
        requests=requests,
        ttft_samples=len(ttft),
        tpot_samples=len(tpot),
    )


@dataclass
class Recording:
    """Per tick: its time, the backend's reading, each pod's reading, running sequences and tokens generated."""

    times: list[float] = field(default_factory=list)
    backend: list[Reading] = field(default_factory=list)
    pods: list[tuple[Reading, ...]] = field(default_factory=list)
    running: list[tuple[int, ...]] = field(default_factory=list)
    generated: list[tuple[float, ...]] = field(default_factory=list)


class Recorder:
    """A controller that changes nothing and records the readings of one subset at every tick."""

    def __init__(self, subset: str, interval_s: float, window_s: float) -> None:
        windows = window_s / interval_s
        if interval_s <= 0 or windows < 1 or not math.isclose(windows, round(windows)):
            raise ValueError(f"the window ({window_s} s) must be a whole number of intervals ({interval_s} s)")
        self.subset = subset
        self._interval_s = interval_s
        self.recent: deque[tuple[HostWindow, ...]] = deque(maxlen=round(windows))
        self.recording = Recording()

    @property
    def interval_s(self) -> float:
        return self._interval_s

    def decide(self, observation: Observation) -> Sequence[SettingUpdate]:
        hosts = observation.subset(self.subset).hosts
        self.recent.append(hosts)
        self.recording.times.append(observation.end_s)
        self.recording.backend.append(read(self.recent))
        self.recording.pods.append(tuple(read([(tick[h],) for tick in self.recent]) for h in range(len(hosts))))
        self.recording.running.append(tuple(h.running for h in hosts))
        self.recording.generated.append(tuple(h.generated_tokens for h in hosts))
        return ()


class ConsecutiveErrors:
    """Envoy's consecutive-5xx counters of every host, for each N of ``CONSECUTIVE`` at once."""

    def __init__(self) -> None:
        self.counts: dict[tuple[int, int], list[int]] = {}
        self.alarms: dict[int, list[tuple[float, int, int]]] = {n: [] for n in CONSECUTIVE}

    def __call__(self, time_s: float, subset: int, host: int, status: int) -> None:
        counts = self.counts.setdefault((subset, host), [0] * len(CONSECUTIVE))
        if status < 500:
            counts[:] = [0] * len(CONSECUTIVE)
            return
        for index, n in enumerate(CONSECUTIVE):
            counts[index] += 1
            if counts[index] >= n:
                counts[index] = 0
                self.alarms[n].append((time_s, subset, host))


def record(scenario: Scenario, subset: str, interval_s: float, window_s: float) -> tuple[Recording, ConsecutiveErrors]:
    """Simulate ``scenario`` with nothing changing its settings; what the operator and Envoy saw."""
    recorder = Recorder(subset, interval_s, window_s)
    envoy = ConsecutiveErrors()
    Simulation(scenario, Timeline(()), recorder, on_response=envoy).run()
    return recorder.recording, envoy
