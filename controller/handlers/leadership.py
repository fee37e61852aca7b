"""The operator as one replica among several: only the holder of the Lease runs Kopf and writes.

A replica starts as a candidate (:class:`~controller.clients.leases.LeaderElector`) and runs
nothing else: no watch, no daemon, no write. Once it holds the Lease it starts the Kopf operator,
whose every policy reads its state from the API on its first cycle (nothing is inherited from a
previous leader's memory), and keeps renewing. If a renewal does not succeed within the renew
deadline, every write of the operator is refused at once (the Kubernetes client's ``fence``),
Kopf is stopped, and the process exits with status 1, as client-go's operators do: a fresh start
campaigns again with a clean memory. A clean stop (SIGTERM) releases the Lease, so that a standby
takes over within one retry period instead of one lease duration.

While a candidate waits, it answers the liveness probe itself (Kopf's endpoint exists only once
Kopf runs), so that a healthy standby is not restarted by its kubelet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp.web
import kopf

from controller.clients.kube import Kube, load_configuration
from controller.clients.leases import ElectionSettings, LeaderElector

logger = logging.getLogger(__name__)

#: Exit status of a replica that lost the Lease: its supervisor (the kubelet) starts it again as a candidate.
LOST_LEADERSHIP = 1
KOPF_STOP_TIMEOUT_S = 30.0


async def run_elected(
    election: ElectionSettings,
    *,
    namespaces: Collection[str],
    liveness: str | None,
    memo: Mapping[str, Any],
) -> int:
    """Campaign, run the operator while leading, step down on a lost renewal; the process's exit status."""
    # The election's own client is never fenced: the lease is what it writes.
    async with Kube(load_configuration()) as kube:
        return await _campaign(LeaderElector(kube, election), namespaces=namespaces, liveness=liveness, memo=memo)


async def _campaign(
    elector: LeaderElector, *, namespaces: Collection[str], liveness: str | None, memo: Mapping[str, Any]
) -> int:
    election = elector.settings
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    async with _standby_liveness(liveness):
        if not await elector.acquire(stopped):
            return 0
    logger.info("%s held by this replica (%s): starting the operator", elector.describe, election.identity)
    kopf_stop = asyncio.Event()
    keeper = asyncio.create_task(elector.keep_leading(stopped), name="lease renewal")
    operator = asyncio.create_task(
        kopf.operator(
            standalone=True,  # the Lease, not Kopf's peering, decides who runs
            clusterwide=not namespaces,
            namespaces=tuple(namespaces),
            liveness_endpoint=liveness,
            memo=kopf.Memo(**memo, fence=elector.fence),
            stop_flag=kopf_stop,
        ),
        name="operator",
    )
    await asyncio.wait({keeper, operator}, return_when=asyncio.FIRST_COMPLETED)
    lost = keeper.done() and not keeper.result()
    kopf_stop.set()
    # Kopf replaced our signal handlers with its own; a stop of Kopf by a signal ends the renewal too.
    stopped.set()
    await asyncio.wait({operator}, timeout=KOPF_STOP_TIMEOUT_S)
    await keeper
    failed = operator.done() and not operator.cancelled() and operator.exception() is not None
    if failed:
        logger.error("the operator failed", exc_info=operator.exception())
    if lost or failed:
        logger.error("%s lost: the operator stopped; exiting so that a fresh start campaigns again", elector.describe)
        return LOST_LEADERSHIP
    await elector.release()
    return 0


@contextlib.asynccontextmanager
async def _standby_liveness(url: str | None) -> AsyncIterator[None]:
    """Answer the liveness probe at ``url`` while this replica is a candidate."""
    if not url:
        yield
        return
    parts = urlsplit(url)

    async def healthy(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"role": "candidate"})

    app = aiohttp.web.Application()
    app.router.add_get(parts.path or "/", healthy)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await aiohttp.web.TCPSite(runner, parts.hostname, parts.port or 80, reuse_address=True).start()
        yield
    finally:
        await runner.cleanup()
