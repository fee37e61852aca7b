"""The traffic backtest's draws and per-host engine: the judge's contract values and exact event times."""

from __future__ import annotations

import pytest

from controller.backtest.engine import EngineParams
from controller.backtest.traffic.draws import STREAMS, draw, first_attempt_draws, splitmix64
from controller.backtest.traffic.engine import QUEUED, Attempt, Host

STEP_1 = 0.012 + 0.00012  # decode step with one sequence at speed 1
STEP_2 = 0.012 + 2 * 0.00012


def test_draws_match_the_contract_test_values() -> None:
    assert splitmix64(0) == 0xE220A8397B1DCDAF
    assert draw(0, 0, 0, 0) == 0.1296456182997474
    assert draw(7, 12345, 2, 1) == 0.27164710612595144


def test_first_attempt_draws_equal_the_scalar_draws() -> None:
    table = first_attempt_draws(seed=7, requests=300)
    for request in (0, 1, 17, 299):
        for stream in STREAMS:
            assert table[stream][request] == draw(7, request, 0, stream)


def _attempt(request: int, prompt: int, output: int) -> Attempt:
    return Attempt(request, 0, 0, prompt, output)


def test_prefill_gives_the_first_token_then_decode_runs_as_a_fluid() -> None:
    host = Host(0, EngineParams())
    a = _attempt(0, prompt=1200, output=11)
    host.admit(a, 0.0)
    assert host.next_event_s() == pytest.approx(0.1)  # 1200 tokens at 12,000 tok/s
    first, finished = host.complete(0.1)
    assert first is a and finished == []
    assert host.next_event_s() == pytest.approx(0.1 + 10 * STEP_1)
    first, finished = host.complete(host.next_event_s())
    assert first is None and finished == [a]
    assert host.next_event_s() == float("inf")


def test_a_prefill_pauses_decoding() -> None:
    host = Host(0, EngineParams())
    a, b = _attempt(0, 1200, 11), _attempt(1, 600, 11)
    host.admit(a, 0.0)
    host.complete(0.1)
    host.admit(b, 0.15)  # a has decoded 0.05 s worth of tokens
    assert host.next_event_s() == pytest.approx(0.2)
    assert host.complete(0.2)[0] is b
    left_a = 10 - 0.05 / STEP_1
    assert host.next_event_s() == pytest.approx(0.2 + left_a * STEP_2)
    assert host.complete(host.next_event_s())[1] == [a]


def test_a_host_prefills_only_while_fewer_than_max_seqs_decode() -> None:
    host = Host(0, EngineParams(max_seqs=2))
    a, b, c = (_attempt(i, 1200, 11) for i in range(3))
    host.admit(a, 0.0)
    host.admit(b, 0.0)
    host.complete(0.1)
    host.complete(0.2)
    host.admit(c, 0.25)  # the queue takes it, but two sequences decode already
    assert c.state == QUEUED and host.running == 2
    # Both decode from 0.2 with 10 tokens to go: they finish together, in admission order.
    assert host.complete(0.2 + 10 * STEP_2) == (None, [a, b])
    assert host.next_event_s() == pytest.approx(0.2 + 10 * STEP_2 + 0.1)


def test_a_sequence_limit_holds_prefills_back_while_it_lasts_and_releases_them_when_it_ends() -> None:
    host = Host(0, EngineParams())
    a, b = _attempt(0, 1200, 11), _attempt(1, 1200, 11)
    host.admit(a, 0.0)
    host.complete(0.1)
    host.set_seq_limit(1, True, 0.12)
    host.admit(b, 0.15)  # one sequence decodes: the limit keeps b waiting, and a keeps decoding
    assert b.state == QUEUED and host.prefilling is None
    assert host.next_event_s() == pytest.approx(0.1 + 10 * STEP_1)
    host.set_seq_limit(1, False, 0.2)  # released: b's prefill starts at once and pauses a
    assert host.prefilling is b
    assert host.next_event_s() == pytest.approx(0.3)


def test_speed_changes_keep_the_work_already_done() -> None:
    host = Host(0, EngineParams())
    a = _attempt(0, 1200, 11)
    host.admit(a, 0.0)
    host.set_slow(2.0, True, 0.05)  # half the prompt done; the other 600 tokens at 6,000 tok/s
    assert host.next_event_s() == pytest.approx(0.15)
    host.complete(0.15)
    host.set_slow(2.0, False, 0.2)  # 0.05 s of decode at a doubled step, the rest at speed 1
    left = 10 - 0.05 / (2 * STEP_1)
    assert host.next_event_s() == pytest.approx(0.2 + left * STEP_1)


def test_subset_speed_divides_the_time_multiplier() -> None:
    host = Host(0, EngineParams(), speed=0.5)
    host.admit(_attempt(0, 1200, 2), 0.0)
    assert host.next_event_s() == pytest.approx(0.2)


def test_a_hang_freezes_the_host_and_decoding_resumes_after_it() -> None:
    host = Host(0, EngineParams())
    a, b = _attempt(0, 1200, 11), _attempt(1, 1200, 11)
    host.admit(a, 0.0)
    host.complete(0.1)
    host.set_hang(True, 0.15)
    host.admit(b, 0.5)
    assert host.next_event_s() == float("inf")
    assert host.prefilling is None and host.queued == 1
    host.drop(b, 0.7)  # the proxy timed b out while the host hung
    host.set_hang(False, 1.15)
    assert host.queued == 0
    assert host.next_event_s() == pytest.approx(0.1 + 10 * STEP_1 + 1.0)


def test_dropping_the_prefilling_attempt_starts_the_next_one() -> None:
    host = Host(0, EngineParams())
    a, b = _attempt(0, 1200, 11), _attempt(1, 2400, 11)
    host.admit(a, 0.0)
    host.admit(b, 0.0)
    host.drop(a, 0.05)
    assert host.prefilling is b
    assert host.next_event_s() == pytest.approx(0.25)
