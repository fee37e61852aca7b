"""Session-wide dev cluster for the tests: API server, Prometheus and a test exporter, all on loopback.

Each of them is one process (or thread) for the whole session; tests isolate themselves by working in
their own namespace (the ``namespace`` fixture) and by labelling their metrics with it. Operators are
started per test with the ``operator`` factory. See docs/testing.md.
"""

from __future__ import annotations

import pathlib
import re
import secrets
import sys
from collections.abc import Iterator, Mapping, Sequence

import pytest
from hypothesis import settings
from kubernetes import client

from devtools.apiserver import start_apiserver, write_kubeconfig
from devtools.processes import ManagedProcess, start_process
from devtools.prometheus_server import Prometheus
from tests.harness.exporter import Exporter
from tests.harness.kube import api_client

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPORTER_JOB = "exporter"
#: Who the operators started by the tests are, in the API server's audit log: the service account
#: deploy/ binds its RBAC to (tests/test_rbac_evidence.py compares the two).
OPERATOR_USER = "system:serviceaccount:infercast-system:infercast"

# `make chaos` runs the property tests with this profile (--hypothesis-profile=chaos): >= 10,000
# examples per property; the default profile stays fast (tests/harness/properties.py).
settings.register_profile("chaos", max_examples=10_000, deadline=None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``after_e2e`` judge what the whole session recorded: they run last."""
    items.sort(key=lambda item: item.get_closest_marker("after_e2e") is not None)


@pytest.fixture(scope="session")
def devcluster_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Where the session's servers keep their logs and data (kept after the run for debugging)."""
    return tmp_path_factory.mktemp("devcluster")


@pytest.fixture(scope="session")
def audit_log(devcluster_dir: pathlib.Path) -> pathlib.Path:
    """The session API server's record of every request, one JSON line each (devtools.apiserver.audit_entry)."""
    return devcluster_dir / "apiserver" / "audit.jsonl"


@pytest.fixture(scope="session")
def apiserver(devcluster_dir: pathlib.Path, audit_log: pathlib.Path) -> Iterator[str]:
    """The URL of the emulated API server, with the project's CRDs (crds/) already registered."""
    server = start_apiserver(devcluster_dir / "apiserver", crds=[REPO_ROOT / "crds"], audit_log=audit_log)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kubeconfig(apiserver: str, devcluster_dir: pathlib.Path) -> pathlib.Path:
    """A kubeconfig file for the API server; operators get it as $KUBECONFIG."""
    return write_kubeconfig(apiserver, devcluster_dir / "kubeconfig")


@pytest.fixture(scope="session")
def operator_kubeconfig(apiserver: str, devcluster_dir: pathlib.Path) -> pathlib.Path:
    """The kubeconfig operators run with: the API server knows them as OPERATOR_USER."""
    return write_kubeconfig(apiserver, devcluster_dir / "operator-kubeconfig", user=OPERATOR_USER)


@pytest.fixture(scope="session")
def kube(kubeconfig: pathlib.Path) -> Iterator[client.ApiClient]:
    """A ``kubernetes`` ApiClient for the tests' own reads and writes."""
    with api_client(kubeconfig) as api:
        yield api


@pytest.fixture(scope="session")
def exporter() -> Iterator[Exporter]:
    """A test-controlled exporter scraped by the session's Prometheus as job ``exporter``."""
    server = Exporter().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prometheus(exporter: Exporter, devcluster_dir: pathlib.Path) -> Iterator[Prometheus]:
    """A real Prometheus scraping the exporter every second, already past its first scrape."""
    server = Prometheus({EXPORTER_JOB: [exporter.address]}, workdir=devcluster_dir / "prometheus")
    with server:
        # Pay the ~6 s until the first sample is queryable once per session, not once per test.
        server.wait_for_series(f'up{{job="{EXPORTER_JOB}"}} == 1', timeout=20)
        yield server


@pytest.fixture
def namespace(kube: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].rstrip("-")
    name = f"{slug}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


class OperatorFactory:
    """Starts operator commands with $KUBECONFIG set; stops them all when the test ends.

    ``argv`` is any command, e.g. ``["infercast", "run", "--namespace", ns]`` or
    ``[sys.executable, "-m", "kopf", "run", "tests/harness/echo_operator.py", "--standalone", "-n", ns]``;
    it runs from the repository root, its output goes to ``<tmp_path>/<name>-<n>.log``. Its
    kubeconfig is the operator's (``OPERATOR_USER``) unless ``kubeconfig`` names another: the
    API server's audit log then tells the operator's calls from the tests' own.
    """

    def __init__(self, kubeconfig: pathlib.Path, log_dir: pathlib.Path, *, dev_kubeconfig: pathlib.Path) -> None:
        self.kubeconfig = kubeconfig
        self.dev_kubeconfig = dev_kubeconfig
        self.log_dir = log_dir
        self.started: list[ManagedProcess] = []

    def __call__(
        self,
        argv: Sequence[str],
        *,
        name: str = "operator",
        env: Mapping[str, str] | None = None,
        kubeconfig: pathlib.Path | None = None,
    ) -> ManagedProcess:
        log_path = self.log_dir / f"{name}-{len(self.started)}.log"
        config = kubeconfig or self.kubeconfig
        process = start_process(argv, log_path=log_path, env={"KUBECONFIG": str(config), **(env or {})}, cwd=REPO_ROOT)
        self.started.append(process)
        return process

    def kopf(self, path: str, namespace: str, *extra: str) -> ManagedProcess:
        """A Kopf operator module or file, standalone (no peering), limited to one namespace."""
        argv = [sys.executable, "-m", "kopf", "run", path, "--standalone", "--namespace", namespace, *extra]
        return self(argv, name=pathlib.Path(path).stem, kubeconfig=self.dev_kubeconfig)

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()


@pytest.fixture
def operator(
    operator_kubeconfig: pathlib.Path, kubeconfig: pathlib.Path, tmp_path: pathlib.Path
) -> Iterator[OperatorFactory]:
    """A factory of operator subprocesses; every process it started is stopped at teardown.

    On failure, the tail of each operator log is printed (pytest shows it with the failure).
    """
    factory = OperatorFactory(operator_kubeconfig, tmp_path, dev_kubeconfig=kubeconfig)
    try:
        yield factory
    finally:
        factory.stop_all()
        for process in factory.started:
            print(f"--- {process.log_path} (exit {process.popen.returncode}) ---\n{process.log_tail(60)}")
