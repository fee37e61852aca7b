"""A stand-in for the Deployment controller and kubelet: there are none behind the emulated API server.

:class:`ReadyFollower` makes a Deployment's ``status`` follow its ``spec.replicas`` (all replicas
ready, optionally after a delay), the way a real cluster reports pods that came up;
:class:`PodFollower` does it with Pod objects too, for what is learned from pods (lead time).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Self

from kubernetes import client
from kubernetes.client.exceptions import ApiException


class _Follower:
    """Calls ``_sync`` every 0.2 s on a daemon thread for the length of a ``with`` block.

    An API error (a conflict with the operator's own write, a namespace being deleted) skips
    that turn: the next one reads the Deployment afresh, as a real controller's resync would.
    """

    def __init__(self, thread_name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self._sync()
            except ApiException:
                continue

    def _sync(self) -> None:
        raise NotImplementedError


class ReadyFollower(_Follower):
    def __init__(self, apps: client.AppsV1Api, namespace: str, name: str, *, delay_s: float = 0.0) -> None:
        super().__init__(f"ready-{name}")
        self.apps = apps
        self.namespace = namespace
        self.name = name
        self.delay_s = delay_s
        self.paused = False
        self._changed_at, self._last_spec = time.monotonic(), -1

    def _sync(self) -> None:
        deployment = self.apps.read_namespaced_deployment(self.name, self.namespace)
        spec = deployment.spec.replicas or 0
        if spec != self._last_spec:
            self._changed_at, self._last_spec = time.monotonic(), spec
        ready = deployment.status.ready_replicas if deployment.status else None
        if self.paused or time.monotonic() - self._changed_at < self.delay_s or ready == spec:
            return
        self.apps.patch_namespaced_deployment_status(
            self.name,
            self.namespace,
            {"status": {"replicas": spec, "readyReplicas": spec, "availableReplicas": spec}},
        )


class PodFollower(_Follower):
    """A Deployment controller and kubelet that make Pod objects: one per replica, Ready ``delay_s`` after creation.

    The API server stamps each Pod's ``creationTimestamp``; the ``Ready`` condition's
    ``lastTransitionTime`` is written when the delay is over, so an operator measuring start-ups
    from pods sees ``delay_s`` (to the second, the precision of Kubernetes timestamps).
    Scale-downs delete the newest pods; the Deployment's ``readyReplicas`` follows the Ready pods.
    """

    def __init__(
        self, core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str, name: str, *, delay_s: float
    ) -> None:
        super().__init__(f"pods-{name}")
        self.core = core
        self.apps = apps
        self.namespace = namespace
        self.name = name
        self.delay_s = delay_s
        self._created: dict[str, float] = {}  # pod name -> monotonic creation time
        self._ready: set[str] = set()
        self._next = 0

    def _sync(self) -> None:
        deployment = self.apps.read_namespaced_deployment(self.name, self.namespace)
        labels = dict(deployment.spec.selector.match_labels or {})
        wanted = deployment.spec.replicas or 0
        while len(self._created) < wanted:
            pod = f"{self.name}-7d4b9c6f5d-{self._next:05d}"
            self._next += 1
            body = client.V1Pod(
                metadata=client.V1ObjectMeta(name=pod, labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="server", image="vllm")]),
            )
            self.core.create_namespaced_pod(self.namespace, body)
            self._created[pod] = time.monotonic()
        for pod in sorted(self._created)[wanted:]:
            self.core.delete_namespaced_pod(pod, self.namespace)
            del self._created[pod]
            self._ready.discard(pod)
        for pod, created in self._created.items():
            if pod not in self._ready and time.monotonic() - created >= self.delay_s:
                now = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                condition = {"type": "Ready", "status": "True", "lastTransitionTime": now}
                self.core.patch_namespaced_pod_status(pod, self.namespace, {"status": {"conditions": [condition]}})
                self._ready.add(pod)
        ready = len(self._ready)
        self.apps.patch_namespaced_deployment_status(
            self.name,
            self.namespace,
            {"status": {"replicas": wanted, "readyReplicas": ready, "availableReplicas": ready}},
        )
