"""The fault-injection run: two operator replicas, a seeded schedule of faults, and the invariants judged afterwards.

:class:`ChaosRun` drives one run against real processes: two ``infercast run`` replicas with
leader election behind the API fault proxy, a real Prometheus behind the Prometheus fault proxy
(which also demands the policy's bearer token), and a load that changes every few seconds so
that the policy keeps scaling up and down. Every ``step_s`` seconds it injects one fault, drawn
from a seeded random generator:

* ``kill``: SIGKILL of the leader (or the standby) at a random point of its cycle: at once, or
  right after its next scale write, status write or metric query reached the server (before it
  saw the answer); the replica is started again after a pause, as the kubelet would;
* ``api``: for a few seconds, one class of API request (target reads, scale writes, status
  writes, policy reads, watches, Events, the Lease) answered 409, 410, 429, 500, 503, 403, or slowly;
* ``api-persistent``: 403 or 500 on every read of the target for three cycles (a condition must say so);
* ``prometheus``: for a few seconds, queries answered with a drip, slowly, with garbage, or 401;
  ``prometheus-401``: 401 for three cycles (``MetricsAvailable=False`` must say so).

A replica that exits (a leader that lost its Lease steps down and exits 1) is started again too.
:meth:`ChaosRun.judge` then checks every invariant of :mod:`tests.harness.invariants` on the
proxies' records and the operators' logs, and :class:`Report` counts faults and breaks.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.harness.faultproxy import FaultProxy, Request, Rule
from tests.harness.invariants import (
    blind_scale_down_breaks,
    one_writer_breaks,
    rate_limit_breaks,
    replica_bounds_breaks,
    scale_changes,
    secret_breaks,
    unreported_fault_breaks,
)
from tests.harness.replicas import Replicas, Workload

API_STATUSES = (409, 410, 429, 500, 503, 403)
PROMETHEUS_FAULTS = ("drip", "slow", "garbage", "401")
KILL_POINTS = ("at once", "after a scale write", "after a status write", "after a metric query")


@dataclass(frozen=True)
class ChaosPlan:
    """How long, how often, and with which seed; the policy's bounds and rate limits the invariants check."""

    duration_s: float
    step_s: tuple[float, float]
    seed: int
    kill_weight: float = 0.45
    min_kills: int = 0
    """The run goes on past ``duration_s`` until this many kills were injected."""
    min_replicas: int = 1
    max_replicas: int = 8
    initial_replicas: int = 2
    up_pods: int = 2
    down_pods: int = 1
    period_s: int = 20
    interval_s: int = 5

    def behavior(self) -> dict[str, Any]:
        return {
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Pods", "value": self.up_pods, "periodSeconds": self.period_s}],
            },
            "scaleDown": {
                "stabilizationWindowSeconds": 10,
                "policies": [{"type": "Pods", "value": self.down_pods, "periodSeconds": self.period_s}],
            },
        }


@dataclass
class Report:
    """Faults injected by kind, and invariant breaks by invariant."""

    faults: Counter[str] = field(default_factory=Counter)
    breaks: dict[str, list[str]] = field(default_factory=dict)
    scale_writes: int = 0
    reported_windows: int = 0
    """Three-cycle faults injected, each of which a condition had to report."""
    judged_windows: int = 0
    """Those during which a leader wrote the status at all (the others cannot be judged)."""
    scale_downs: int = 0
    leader_changes: int = 0
    duration_s: float = 0.0

    def table(self) -> str:
        lines = ["| fault injected | count |", "|---|---|"]
        lines += [f"| {kind} | {count} |" for kind, count in sorted(self.faults.items())]
        lines += ["", "| invariant | breaks |", "|---|---|"]
        lines += [f"| {name} | {len(found)} |" for name, found in self.breaks.items()]
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(
            {
                "faults": dict(self.faults),
                "breaks": self.breaks,
                "scale_writes": self.scale_writes,
                "reported_windows": self.reported_windows,
                "judged_windows": self.judged_windows,
                "scale_downs": self.scale_downs,
                "leader_changes": self.leader_changes,
                "duration_s": round(self.duration_s, 1),
            },
            indent=2,
        )


@dataclass
class ChaosRun:
    plan: ChaosPlan
    replicas: Replicas
    api: FaultProxy
    prometheus: FaultProxy
    workload: Workload
    secret: str
    report: Report = field(default_factory=Report)
    windows: list[tuple[str, float, float, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._random = random.Random(self.plan.seed)
        self._stop = threading.Event()
        self._restart_at: dict[str, float] = {}
        self._lock = threading.Lock()

    # -- driving ---------------------------------------------------------------------------------

    def run(self) -> Report:
        started = time.monotonic()
        for name in ("a", "b"):
            self.replicas.start(name)
        loads = threading.Thread(target=self._vary_load, name="chaos-load", daemon=True)
        loads.start()
        try:
            while time.monotonic() - started < self.plan.duration_s or self._kills() < self.plan.min_kills:
                self._supervise()
                self._inject()
                self._pause(self._random.uniform(*self.plan.step_s))
        finally:
            self._stop.set()
            loads.join(timeout=10)
        self.report.duration_s = time.monotonic() - started
        return self.report

    def _kills(self) -> int:
        return sum(count for kind, count in self.report.faults.items() if kind.startswith("kill"))

    def _pause(self, seconds: float) -> None:
        """Sleep in small steps, starting again every replica that died meanwhile."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._supervise()
            time.sleep(0.2)

    def _supervise(self) -> None:
        now = time.monotonic()
        with self._lock:
            for name, process in list(self.replicas.processes.items()):
                if process.running():
                    continue
                due = self._restart_at.setdefault(name, now + self._random.uniform(0.3, 2.0))
                if now >= due:
                    del self._restart_at[name]
                    self.replicas.start(name)

    def _vary_load(self) -> None:
        loads = random.Random(self.plan.seed + 1)
        while not self._stop.wait(loads.uniform(4, 9)):
            self.workload.set_waiting(loads.choice([5, 15, 25, 40, 60, 90]))

    def _inject(self) -> None:
        """One fault: a kill with the plan's weight; the rest split 45/35/10/10 between short API
        faults, short Prometheus faults, and the three-cycle ones the conditions must report."""
        draw = self._random.random()
        if draw < self.plan.kill_weight:
            self._kill()
            return
        share = (draw - self.plan.kill_weight) / (1 - self.plan.kill_weight)
        if share < 0.45:
            self._api_fault()
        elif share < 0.80:
            self._prometheus_fault()
        elif share < 0.90:
            self._persistent_api_fault()
        else:
            self._persistent_prometheus_fault()

    # -- faults ------------------------------------------------------------------------------------

    def _leader(self) -> str | None:
        """The replica that wrote the Lease last with a holder, if it still runs."""
        for exchange in reversed(self.api.exchanges()):
            body = exchange.body if isinstance(exchange.body, dict) else {}
            spec = body.get("spec") or {} if exchange.writes else {}
            if "leases" in exchange.path and exchange.status < 300 and spec.get("holderIdentity"):
                name = self.replicas.name_of(exchange.client)
                return name if name and self.replicas.processes[name].running() else None
        return None

    def _kill(self) -> None:
        leader = self._leader()
        running = [n for n, p in self.replicas.processes.items() if p.running()]
        if not running:
            return
        victim = leader if leader is not None and self._random.random() < 0.8 else self._random.choice(running)
        point = self._random.choice(KILL_POINTS)
        self.report.faults[f"kill -9 ({point})"] += 1
        if point == "at once":
            self._kill_now(victim)
            return
        client = self.replicas.clients[victim]
        scale_path, status_path = self.workload.scale_path(), self.workload.status_path()
        matches: Callable[[Request], bool] = {
            "after a scale write": lambda r: r.path == scale_path and r.writes,
            "after a status write": lambda r: r.path == status_path and r.writes,
            "after a metric query": lambda r: r.path.startswith("/api/v1/query"),
        }[point]
        proxy = self.prometheus if point == "after a metric query" else self.api
        fired = threading.Event()

        def hook(request: Request, status: int) -> None:
            # A metric query carries no process name: the victim is whichever replica leads then.
            if fired.is_set() or not matches(request):
                return
            if proxy is self.api and request.client != client:
                return
            fired.set()
            self._kill_now(victim)

        proxy.add_hook(hook)
        # The point may not come (the victim is a standby, or holds): kill it anyway after a while.
        deadline = time.monotonic() + 2 * self.plan.interval_s
        while not fired.is_set() and time.monotonic() < deadline:
            self._supervise()
            time.sleep(0.1)
        proxy.remove_hook(hook)
        if not fired.is_set():
            fired.set()
            self._kill_now(victim)

    def _kill_now(self, name: str) -> None:
        with self._lock:
            if self.replicas.processes[name].running():
                self.replicas.kill(name)

    def _api_fault(self) -> None:
        classes: dict[str, Callable[[Request], bool]] = {
            "target reads": lambda r: r.method == "GET" and "/deployments/" in r.path,
            "scale writes": lambda r: r.writes and r.path.endswith("/scale"),
            "status writes": lambda r: r.writes and r.path.endswith("/status"),
            "policy reads": lambda r: r.method == "GET" and "/scalingpolicies/" in r.path,
            "watches": lambda r: r.watch,
            "events": lambda r: r.writes and "/events" in r.path,
            "lease": lambda r: "/leases" in r.path,
        }
        target = self._random.choice(sorted(classes))
        slow = self._random.random() < 0.2
        status = None if slow else self._random.choice(API_STATUSES)
        if status == 410 and target != "watches":
            target = "watches"  # an expired version is a watch's fault
        what = f"API {'slow answer' if slow else status} on {target}"
        self.report.faults[what] += 1
        lasting = self._random.uniform(2, 8)
        self.api.add(
            Rule(
                what,
                classes[target],
                status=status,
                delay_s=self._random.uniform(0.2, 0.8) if slow else 0.0,
                probability=0.6,
                until=time.monotonic() + lasting,
            )
        )

    def _persistent_api_fault(self) -> None:
        status = self._random.choice((403, 500))
        what = f"API {status} on every target read, 3 cycles"
        self.report.faults[what] += 1
        start, lasting = time.time(), 3 * self.plan.interval_s + 2
        scale_path = self.workload.scale_path()
        self.api.add(
            Rule(
                what,
                lambda r: r.method == "GET" and r.path == scale_path,
                status=status,
                until=time.monotonic() + lasting,
            )
        )
        self.windows.append((what, start, start + lasting, "Ready", "False"))
        self._pause(lasting)

    def _prometheus_fault(self) -> None:
        kind = self._random.choice(PROMETHEUS_FAULTS)
        what = f"Prometheus {kind}"
        self.report.faults[what] += 1
        lasting = self._random.uniform(3, 10)
        # Within the policy's 1 s timeout: a longer drip is issue 12's finding 2 (whole-request deadlines).
        self.prometheus.add(
            Rule(
                what,
                lambda r: r.path.startswith("/api/v1/query"),
                status=401 if kind == "401" else None,
                delay_s=0.6 if kind == "slow" else 0.0,
                drip_s=0.6 if kind == "drip" else 0.0,
                garbage=kind == "garbage",
                probability=0.7,
                until=time.monotonic() + lasting,
            )
        )

    def _persistent_prometheus_fault(self) -> None:
        what = "Prometheus 401 on every query, 3 cycles"
        self.report.faults[what] += 1
        start, lasting = time.time(), 3 * self.plan.interval_s + 2
        self.prometheus.add(
            Rule(what, lambda r: r.path.startswith("/api/v1/query"), status=401, until=time.monotonic() + lasting)
        )
        self.windows.append((what, start, start + lasting, "MetricsAvailable", "False"))
        self._pause(lasting)

    # -- judging -----------------------------------------------------------------------------------

    def judge(self) -> Report:
        exchanges = self.api.exchanges()
        changes = scale_changes(exchanges, self.workload.namespace, self.workload.name)
        plan = self.plan
        self.report.scale_writes = len(changes)
        self.report.reported_windows = len(self.windows)
        previous = [plan.initial_replicas] + [c.replicas for c in changes]
        self.report.scale_downs = sum(1 for a, b in itertools.pairwise(previous) if b < a)
        holders = [e for e in exchanges if "leases" in e.path and e.writes and e.status < 300]
        self.report.leader_changes = sum(1 for a, b in itertools.pairwise(holders) if a.client != b.client)
        unreported, self.report.judged_windows = unreported_fault_breaks(
            exchanges, self.workload.status_path(), self.windows, settle_s=plan.interval_s + 1.0
        )
        self.report.breaks = {
            "at most one writer": one_writer_breaks(exchanges),
            "replicas within bounds": replica_bounds_breaks(changes, plan.min_replicas, plan.max_replicas),
            "rate limits across restarts": rate_limit_breaks(
                plan.initial_replicas,
                changes,
                up_pods=plan.up_pods,
                down_pods=plan.down_pods,
                period_s=plan.period_s,
                tolerance_s=3.0,
            ),
            "no scale-down on missing data": blind_scale_down_breaks(
                plan.initial_replicas,
                changes,
                self.prometheus.exchanges(),
                f'namespace=\\"{self.workload.namespace}\\"',
                reads_per_cycle=2,
            ),
            "no secret in logs, Events, status": secret_breaks(self.secret, self.replicas.logs(), exchanges),
            "every error surfaced as a condition": unreported,
        }
        return self.report
