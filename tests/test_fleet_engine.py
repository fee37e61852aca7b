"""The simulated vLLM fleet's pure core: engine timings, routing, scaling, and the trace replay.

Expected times are derived from the model's definition (prefill tokens / prefill rate, decode step
= base + per-sequence cost), never read back from the implementation.
"""

from __future__ import annotations

import gzip
import pathlib
import random
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from controller.backtest.engine import (
    EngineEvent,
    EngineParams,
    Finished,
    FirstToken,
    FleetEngine,
    ReplicaGone,
    ReplicaPhase,
    Request,
)
from devtools.fleet import GpuNodes, TraceSlice, pod_name, read_trace, split_evenly

PARAMS = EngineParams(cold_start_s=10.0)
PREFILL_TPS = PARAMS.prefill_tokens_per_s


def step_s(decoding: int) -> float:
    return PARAMS.step_base_s + PARAMS.step_per_seq_s * decoding


def first_tokens(events: list[EngineEvent]) -> dict[Request, float]:
    return {e.request: e.ttft_s for e in events if isinstance(e, FirstToken)}


def finishes(events: list[EngineEvent]) -> dict[Request, float]:
    return {e.request: e.e2e_s for e in events if isinstance(e, Finished)}


def burst(count: int, spacing_s: float, prompt: int = 1000, output: int = 200, start_s: float = 0.0) -> list[Request]:
    return [Request(start_s + i * spacing_s, prompt, output) for i in range(count)]


# -- one replica -----------------------------------------------------------------------------------


def test_a_lone_request_takes_its_prefill_then_one_step_per_token() -> None:
    engine = FleetEngine(PARAMS, initial_replicas=1)
    request = Request(1.0, prompt_tokens=1200, output_tokens=11)
    events = engine.advance(30.0, [request])
    ttft = 1200 / PREFILL_TPS
    assert first_tokens(events)[request] == pytest.approx(ttft)
    assert finishes(events)[request] == pytest.approx(ttft + 10 * step_s(1))


def test_a_one_token_output_finishes_at_its_first_token() -> None:
    engine = FleetEngine(PARAMS, initial_replicas=1)
    request = Request(0.0, prompt_tokens=600, output_tokens=1)
    events = engine.advance(5.0, [request])
    assert finishes(events)[request] == pytest.approx(600 / PREFILL_TPS)


def test_prefill_is_fifo_and_pauses_decoding() -> None:
    engine = FleetEngine(PARAMS, initial_replicas=1)
    first = Request(0.0, prompt_tokens=1200, output_tokens=101)
    second = Request(0.0, prompt_tokens=2400, output_tokens=101)
    events = engine.advance(60.0, [first, second])
    assert first_tokens(events)[first] == pytest.approx(0.1)
    assert first_tokens(events)[second] == pytest.approx(0.3)
    # The first request did not decode during the second prefill: both then decode together.
    assert finishes(events)[first] == pytest.approx(0.3 + 100 * step_s(2))
    assert finishes(events)[second] == pytest.approx(0.3 + 100 * step_s(2))


def test_the_decode_step_slows_down_with_the_batch() -> None:
    lone = FleetEngine(PARAMS, initial_replicas=1)
    crowd = FleetEngine(PARAMS, initial_replicas=1)
    probe = Request(0.0, prompt_tokens=12, output_tokens=500)
    others = [Request(0.0, prompt_tokens=12, output_tokens=500) for _ in range(63)]
    lone_e2e = finishes(lone.advance(100.0, [probe]))[probe]
    crowd_e2e = finishes(crowd.advance(100.0, [probe, *others]))[probe]
    assert lone_e2e == pytest.approx(0.001 + 499 * step_s(1))
    # 64 one-millisecond prefills, then 499 steps at a batch of 64.
    assert crowd_e2e == pytest.approx(64 * 0.001 + 499 * step_s(64))


def test_a_full_replica_leaves_requests_waiting_at_the_router() -> None:
    engine = FleetEngine(EngineParams(max_seqs=2), initial_replicas=1)
    requests = burst(3, spacing_s=0.0, output=1000)
    engine.advance(0.5, requests)
    snapshot = engine.snapshot()
    assert snapshot.router_waiting == 1
    assert snapshot.replicas[0].running == 2
    events = engine.advance(60.0)
    # The third starts only when a slot frees, after 999 decode steps of the first two.
    assert first_tokens(events)[requests[2]] > 999 * step_s(2)


# -- the fleet -------------------------------------------------------------------------------------


def run_load(replicas: int, requests: list[Request], until_s: float) -> tuple[list[float], int]:
    """TTFTs and the largest number of requests seen waiting (router + awaiting prefill)."""
    engine = FleetEngine(PARAMS, initial_replicas=replicas)
    pending = sorted(requests, key=lambda r: r.arrival_s)
    ttfts: list[float] = []
    most_waiting = 0
    now = 0.0
    while now < until_s:
        now = round(now + 0.5, 6)
        arrived = [r for r in pending if r.arrival_s <= now]
        pending = pending[len(arrived) :]
        ttfts += first_tokens(engine.advance(now, arrived)).values()
        snapshot = engine.snapshot()
        waiting = snapshot.router_waiting + sum(r.awaiting_prefill for r in snapshot.replicas)
        most_waiting = max(most_waiting, waiting)
    return ttfts, most_waiting


def test_more_replicas_give_lower_ttft_and_less_waiting() -> None:
    rng = random.Random(7)
    requests = [Request(rng.uniform(0, 60), rng.randint(200, 3000), rng.randint(20, 400)) for _ in range(900)]
    results = {n: run_load(n, requests, until_s=240.0) for n in (1, 2, 4)}
    for replicas, (ttfts, _) in results.items():
        assert len(ttfts) == len(requests), f"{replicas} replicas did not serve every request"
    p95 = {n: statistics.quantiles(ttfts, n=20)[-1] for n, (ttfts, _) in results.items()}
    waiting = {n: most for n, (_, most) in results.items()}
    assert p95[1] > p95[2] > p95[4]
    assert waiting[1] > waiting[2] >= waiting[4]


def test_requests_go_to_the_least_loaded_ready_replica() -> None:
    engine = FleetEngine(PARAMS, initial_replicas=3)
    engine.advance(0.01, burst(7, spacing_s=0.0, output=1000))
    held = sorted(r.running + r.awaiting_prefill for r in engine.snapshot().replicas)
    assert held == [2, 2, 3]


def test_a_new_replica_takes_requests_only_after_its_cold_start() -> None:
    engine = FleetEngine(EngineParams(max_seqs=1, cold_start_s=10.0), initial_replicas=1)
    engine.advance(2.0)
    engine.scale(2)
    busy, queued = Request(5.0, 12, 5000), Request(5.0, 12, 10)
    events = engine.advance(11.9, [busy, queued])
    assert queued not in first_tokens(events)
    assert engine.snapshot().router_waiting == 1
    assert [r.phase for r in engine.snapshot().replicas] == [ReplicaPhase.READY, ReplicaPhase.STARTING]
    # Ready at 2 + 10 = 12 s: the queued request has waited there since 5 s.
    events = engine.advance(12.5)
    assert [r.phase for r in engine.snapshot().replicas] == [ReplicaPhase.READY, ReplicaPhase.READY]
    assert first_tokens(events)[queued] == pytest.approx(12.0 - 5.0 + 12 / PREFILL_TPS)


def test_scale_down_cancels_cold_starts_before_touching_ready_replicas() -> None:
    engine = FleetEngine(PARAMS, initial_replicas=2)
    engine.advance(1.0)
    engine.scale(4)
    newest = max(r.replica_id for r in engine.snapshot().replicas)
    events = engine.scale(3)
    assert events == [ReplicaGone(newest)]
    phases = [r.phase for r in engine.snapshot().replicas]
    assert phases.count(ReplicaPhase.READY) == 2
    assert phases.count(ReplicaPhase.STARTING) == 1


def test_a_draining_replica_finishes_its_running_requests_and_hands_back_the_rest() -> None:
    engine = FleetEngine(PARAMS, initial_replicas=1)
    engine.advance(1.0)
    engine.scale(2)
    engine.advance(PARAMS.cold_start_s + 1.0)
    # Long prompts keep prompts awaiting prefill on both replicas when the scale-down comes.
    requests = burst(10, spacing_s=0.0, prompt=6000, output=300, start_s=engine.now_s)
    events = engine.advance(engine.now_s + 0.1, requests)
    newest = max(engine.snapshot().replicas, key=lambda r: r.ready_s)
    assert newest.awaiting_prefill > 0
    events += engine.scale(1)
    draining = {r.replica_id: r for r in engine.snapshot().replicas}[newest.replica_id]
    assert draining.phase is ReplicaPhase.DRAINING
    assert draining.awaiting_prefill == 0
    assert draining.running == 1  # the prompt it was prefilling stays
    events += engine.advance(engine.now_s + 120.0)
    assert set(finishes(events)) == set(requests)
    gone_at = [i for i, e in enumerate(events) if e == ReplicaGone(newest.replica_id)]
    last_finish_on_it = max(
        i for i, e in enumerate(events) if isinstance(e, Finished) and e.replica_id == newest.replica_id
    )
    assert gone_at and gone_at[0] > last_finish_on_it
    assert [r.replica_id for r in engine.snapshot().replicas] != [newest.replica_id]
    assert len(engine.snapshot().replicas) == 1


def test_the_simulation_is_deterministic() -> None:
    rng = random.Random(3)
    requests = sorted(
        (Request(rng.uniform(0, 30), rng.randint(10, 5000), rng.randint(1, 600)) for _ in range(300)),
        key=lambda r: r.arrival_s,
    )

    def run() -> list[EngineEvent]:
        engine = FleetEngine(PARAMS, initial_replicas=1)
        events: list[EngineEvent] = []
        for tick in range(1, 121):
            now = tick * 0.5
            if tick == 20:
                events += engine.scale(3)
            if tick == 80:
                events += engine.scale(1)
            events += engine.advance(now, [r for r in requests if now - 0.5 < r.arrival_s <= now])
        return events

    assert run() == run()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.scale(-1), "replicas must be >= 0"),
        (lambda e: e.advance(-1.0), "time runs forward"),
    ],
)
def test_invalid_commands_are_refused(change: Callable[[FleetEngine], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        change(FleetEngine(PARAMS))


# -- the workload and the names --------------------------------------------------------------------


@pytest.fixture
def small_trace(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "trace.csv"
    rows = [f"2023-11-16 18:15:{46 + i:02d}.5000000,{100 * (i + 1)},{i}" for i in range(10)]
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("slice_", "expected_arrivals"),
    [
        ({}, [float(i) for i in range(10)]),
        ({"speedup": 2.0}, [i / 2 for i in range(10)]),
        ({"start_offset_s": 4.0}, [float(i) for i in range(6)]),
        ({"start_offset_s": 4.0, "speedup": 4.0}, [i / 4 for i in range(6)]),
    ],
)
def test_the_trace_replays_in_compressed_time(
    small_trace: pathlib.Path, slice_: dict[str, Any], expected_arrivals: list[float]
) -> None:
    requests = read_trace(TraceSlice(small_trace, **slice_))
    assert [r.arrival_s for r in requests] == pytest.approx(expected_arrivals)


def test_a_gzipped_trace_replays_as_the_plain_one(small_trace: pathlib.Path, tmp_path: pathlib.Path) -> None:
    gzipped = tmp_path / "trace.csv.gz"
    gzipped.write_bytes(gzip.compress(small_trace.read_bytes()))
    plain = read_trace(TraceSlice(small_trace, start_offset_s=2.0, load_scale=1.5, seed=3))
    assert len(plain) > 8
    assert read_trace(TraceSlice(gzipped, start_offset_s=2.0, load_scale=1.5, seed=3)) == plain


def test_the_trace_keeps_token_counts_and_counts_zero_as_one(small_trace: pathlib.Path) -> None:
    requests = read_trace(TraceSlice(small_trace))
    assert [(r.prompt_tokens, r.output_tokens) for r in requests[:3]] == [(100, 1), (200, 1), (300, 2)]


def test_the_load_scale_multiplies_the_requests(small_trace: pathlib.Path) -> None:
    assert len(read_trace(TraceSlice(small_trace, load_scale=3.0))) == 30
    assert len(read_trace(TraceSlice(small_trace, load_scale=0.0))) == 0
    thinned = [len(read_trace(TraceSlice(small_trace, load_scale=0.5, seed=seed))) for seed in range(40)]
    assert 3 < statistics.mean(thinned) < 7
    assert read_trace(TraceSlice(small_trace, load_scale=1.5, seed=1)) == read_trace(
        TraceSlice(small_trace, load_scale=1.5, seed=1)
    )


@pytest.mark.parametrize(("total", "parts"), [(0, 3), (7, 3), (2, 5), (128, 1)])
def test_split_evenly(total: int, parts: int) -> None:
    shares = split_evenly(total, parts)
    assert sum(shares) == total
    assert len(shares) == parts
    assert max(shares) - min(shares) <= 1


def test_pod_names_look_like_a_replica_sets() -> None:
    names = {pod_name("vllm", "0123456789", replica_id) for replica_id in range(50)}
    assert len(names) == 50
    for name in names:
        prefix, template_hash, suffix = name.rsplit("-", 2)
        assert (prefix, template_hash) == ("vllm", "0123456789")
        assert len(suffix) == 5 and suffix.isalnum()


def test_time_keeps_moving_after_36_hours_of_simulation() -> None:
    """Past 2**17 s an event a few ulps ahead of ``now`` cannot be reached by adding to it.

    The engine must settle such events instead of looping; the run is a subprocess so that a
    regression fails on the timeout instead of hanging the suite.
    """
    script = (
        "from controller.backtest.engine import EngineParams, FleetEngine, Request\n"
        "e = FleetEngine(EngineParams(), initial_replicas=1)\n"
        "t = 131_000.0\n"
        "e.advance(t)\n"
        "e.advance(t + 1200, [Request(t + i * 0.37, 1000 + i * 37 % 3000, 50 + i * 13 % 400) for i in range(3000)])\n"
        "assert e.now_s == t + 1200\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_gpu_nodes_join_a_provisioning_delay_after_a_pod_asked_and_stay() -> None:
    nodes = GpuNodes(total=2, provisioning_s=30.0)
    assert nodes.free(occupied=2, now_s=0.0) == 0
    nodes.provision(now_s=5.0)
    nodes.provision(now_s=6.0)
    assert nodes.free(occupied=2, now_s=34.9) == 0
    assert nodes.free(occupied=2, now_s=35.0) == 1
    assert nodes.free(occupied=3, now_s=36.0) == 1
    assert nodes.free(occupied=1, now_s=100.0) == 3, "nodes freed by a scale-down stay for the next scale-up"
