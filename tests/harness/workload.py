"""A stand-in for the Deployment controller and kubelet: there are none behind the emulated API server.

:class:`ReadyFollower` makes a Deployment's ``status`` follow its ``spec.replicas`` (all replicas
ready, optionally after a delay), the way a real cluster reports pods that came up.
"""

from __future__ import annotations

import threading
import time

from kubernetes import client
from kubernetes.client.exceptions import ApiException


class ReadyFollower:
    def __init__(self, apps: client.AppsV1Api, namespace: str, name: str, *, delay_s: float = 0.0) -> None:
        self.apps = apps
        self.namespace = namespace
        self.name = name
        self.delay_s = delay_s
        self.paused = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ready-{name}", daemon=True)

    def __enter__(self) -> ReadyFollower:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        changed_at, last_spec = time.monotonic(), -1
        while not self._stop.wait(0.2):
            try:
                deployment = self.apps.read_namespaced_deployment(self.name, self.namespace)
            except ApiException:
                continue
            spec = deployment.spec.replicas or 0
            if spec != last_spec:
                changed_at, last_spec = time.monotonic(), spec
            ready = deployment.status.ready_replicas if deployment.status else None
            if self.paused or time.monotonic() - changed_at < self.delay_s or ready == spec:
                continue
            self.apps.patch_namespaced_deployment_status(
                self.name,
                self.namespace,
                {"status": {"replicas": spec, "readyReplicas": spec, "availableReplicas": spec}},
            )
