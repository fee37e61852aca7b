"""The safety invariants of the operator, judged from the fault proxies' records alone (never from the operator's word).

Each checker returns the list of breaks it found (empty: the invariant held), each a sentence a
person can act on. They read :class:`~tests.harness.faultproxy.Exchange` records: what reached
the API server (or Prometheus), from which operator process, when, and what was answered.

* :func:`one_writer_breaks`: every write an operator process sent reached the API server while the
  Lease named that process (by the last successful Lease write before it);
* :func:`replica_bounds_breaks` and :func:`rate_limit_breaks`: every count written lies within
  the bounds, and the counts moved no faster than the ``Pods`` rules allow over any period, kills
  and changes of leader included;
* :func:`blind_scale_down_breaks`: no scale-down followed a cycle whose metric reads failed;
* :func:`secret_breaks`: a secret value appears in no operator log line, Event or status written;
* :func:`unreported_fault_breaks`: a fault that lasted several cycles shows in a condition.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tests.harness.faultproxy import Exchange

LEASES = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/[^/]+/leases")


def _object(body: Any) -> dict[str, Any]:
    """A JSON body as an object; a JSON patch (a list) or nothing as an empty one."""
    return body if isinstance(body, dict) else {}


@dataclass(frozen=True)
class LeaseWrite:
    time: float
    client: str
    holder: str


def lease_writes(exchanges: Iterable[Exchange]) -> list[LeaseWrite]:
    """The successful Lease writes (creates, renewals, take-overs, releases), in order of arrival."""
    writes = [
        LeaseWrite(e.received, e.client, str((_object(e.body).get("spec") or {}).get("holderIdentity") or ""))
        for e in exchanges
        if LEASES.match(e.path) and e.writes and e.forwarded and e.status < 300
    ]
    return sorted(writes, key=lambda w: w.time)


def operator_writes(exchanges: Iterable[Exchange]) -> list[Exchange]:
    """Every write but the Lease's that reached the API server, whatever it answered."""
    return [e for e in exchanges if e.writes and e.forwarded and not LEASES.match(e.path)]


def one_writer_breaks(exchanges: Sequence[Exchange]) -> list[str]:
    """A write by a process while the Lease (by its last successful write) named another or nobody."""
    leases = lease_writes(exchanges)
    breaks = []
    for write in operator_writes(exchanges):
        before = [lease for lease in leases if lease.time <= write.received]
        holder = before[-1] if before else None
        if holder is None or holder.client != write.client or not holder.holder:
            who = f"{holder.client} ({holder.holder or 'released'})" if holder else "nobody"
            breaks.append(
                f"{write.client} wrote {write.method} {write.path} at {write.received:.3f} while {who} held the Lease"
            )
    return breaks


@dataclass(frozen=True)
class ScaleChange:
    time: float
    replicas: int


def scale_changes(exchanges: Iterable[Exchange], namespace: str, name: str) -> list[ScaleChange]:
    """The counts the API server accepted through ``/scale`` of one Deployment, in order of arrival."""
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"
    changes = [
        ScaleChange(e.received, int((_object(e.answer).get("spec") or {}).get("replicas") or 0))
        for e in exchanges
        if e.path == path and e.writes and e.forwarded and e.status == 200
    ]
    return sorted(changes, key=lambda c: c.time)


def replica_bounds_breaks(changes: Sequence[ScaleChange], low: int, high: int) -> list[str]:
    return [
        f"{c.replicas} replicas written at {c.time:.3f}, outside [{low}, {high}]"
        for c in changes
        if not low <= c.replicas <= high
    ]


def rate_limit_breaks(
    initial: int,
    changes: Sequence[ScaleChange],
    *,
    up_pods: int,
    down_pods: int,
    period_s: float,
    tolerance_s: float,
) -> list[str]:
    """Moves beyond the ``Pods`` rules, by the HPA's rule: no count more than ``up_pods`` above
    (``down_pods`` below) the count when the period ending with it started.

    The policy dates a move by its decision, the log by its arrival, so the period's start is
    known to within ``tolerance_s``: a move breaks the rule only if it does for every start in
    that range (the count at a period's start is not monotonic in the start).
    """
    counts = [ScaleChange(float("-inf"), initial), *changes]

    def counts_at_start(time: float) -> list[int]:
        earliest, latest = time - period_s - tolerance_s, time - period_s + tolerance_s
        before = [c.replicas for c in counts if c.time <= earliest][-1:]
        return before + [c.replicas for c in counts if earliest < c.time <= latest]

    breaks = []
    for previous, change in itertools.pairwise(counts):
        starts = counts_at_start(change.time)
        if change.replicas > previous.replicas and change.replicas - up_pods > max(starts):
            breaks.append(f"up to {change.replicas} at {change.time:.3f}: {starts} at the period's start, +{up_pods}")
        if change.replicas < previous.replicas and change.replicas + down_pods < min(starts):
            breaks.append(
                f"down to {change.replicas} at {change.time:.3f}: {starts} at the period's start, -{down_pods}"
            )
    return breaks


def blind_scale_down_breaks(
    initial: int, changes: Sequence[ScaleChange], queries: Sequence[Exchange], marker: str, reads_per_cycle: int
) -> list[str]:
    """Scale-downs written after a cycle whose metric reads (the last ``reads_per_cycle`` queries
    containing ``marker`` before the write) did not all come back as Prometheus' own answer (a slow
    or dripped answer is still Prometheus' own)."""
    breaks = []
    counts = [ScaleChange(float("-inf"), initial), *changes]
    relevant = sorted((q for q in queries if marker in json.dumps(q.query)), key=lambda q: q.received)
    for previous, change in itertools.pairwise(counts):
        if change.replicas >= previous.replicas:
            continue
        before = [q for q in relevant if q.received < change.time][-reads_per_cycle:]
        failed = [q for q in before if not q.intact or q.status != 200]
        if failed:
            faults = ", ".join(str(q.fault) for q in failed)
            breaks.append(f"down to {change.replicas} at {change.time:.3f} after failed reads ({faults})")
    return breaks


def secret_breaks(secret: str, logs: Iterable[tuple[str, str]], exchanges: Iterable[Exchange]) -> list[str]:
    """Where ``secret`` appears: in a log (name, text) or in anything written to the API server."""
    breaks = [f"the secret is in the log {name}" for name, text in logs if secret in text]
    for e in operator_writes(exchanges):
        if secret in json.dumps(e.body):
            breaks.append(f"the secret is in {e.method} {e.path} at {e.received:.3f}")
    return breaks


def conditions_written(exchanges: Iterable[Exchange], status_path: str) -> list[tuple[float, dict[str, Any]]]:
    """(arrival, {type: condition}) of every accepted status write of one policy."""
    written = []
    for e in exchanges:
        if e.path == status_path and e.writes and e.forwarded and e.status == 200:
            conditions = (_object(e.body).get("status") or {}).get("conditions") or []
            written.append((e.received, {str(c.get("type")): c for c in conditions}))
    return written


def unreported_fault_breaks(
    exchanges: Sequence[Exchange],
    status_path: str,
    windows: Iterable[tuple[str, float, float, str, str]],
    settle_s: float,
) -> tuple[list[str], int]:
    """Faults that lasted several cycles while the policy's status said nothing of them, and how
    many faults were judged.

    ``windows``: (fault, start, end, condition type, status that reports it), e.g.
    ``("403 on the target", t0, t1, "Ready", "False")``. A window is judged on the status writes
    accepted from ``settle_s`` after its start (a cycle begun before the fault reports the state
    before it) to its end; one without any (no leader then: a kill just before) cannot be judged.
    """
    written = conditions_written(exchanges, status_path)
    breaks, judged = [], 0
    for fault, start, end, type_, status in windows:
        during = [conditions for t, conditions in written if start + settle_s <= t <= end]
        if not during:
            continue
        judged += 1
        if not any(conditions.get(type_, {}).get("status") == status for conditions in during):
            breaks.append(
                f"{fault} from {start:.3f} to {end:.3f}: {len(during)} status writes, none with {type_}={status}"
            )
    return breaks, judged
