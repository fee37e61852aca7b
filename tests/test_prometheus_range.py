"""Range queries on real Prometheus: one series' history, gaps never read as zero, the points limit, coalescing."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from controller.clients.prometheus import (
    MAX_RANGE_POINTS,
    Credentials,
    MetricError,
    PrometheusPool,
    parse_range,
    range_step,
)
from devtools.prometheus_server import Prometheus
from tests.harness.exporter import Exporter
from tests.harness.series import spec_for, two_pod_gauge


@pytest.fixture(scope="module")
def series(exporter: Exporter, prometheus: Prometheus) -> str:
    """A gauge unique to the test, exposed for two pods, with a few seconds of history already scraped."""
    return two_pod_gauge(exporter, prometheus, "infercast_range", "count(count_over_time({name}[1m]) >= 6) == 2")


async def test_reads_the_history_of_one_series_on_the_step_grid(series: str, prometheus: Prometheus) -> None:
    end = time.time()
    samples = await PrometheusPool().range_query(
        spec_for(prometheus), Credentials(), f"sum({series})", start=end - 30, end=end, step_s=1
    )
    assert samples.step_s == 1
    assert len(samples.times) >= 3, "the series was scraped for a few seconds"
    assert all(t.is_integer() for t in samples.times), "start and end are moved onto the step grid"
    assert list(samples.times) == sorted(samples.times) and samples.times[-1] <= end
    assert set(samples.values) == {7.5}


async def test_the_points_limit_coarsens_the_step(series: str, prometheus: Prometheus) -> None:
    end = time.time() + 32  # Prometheus answers a step after the newest sample from it: a coarse grid still gets one
    two_days = 2 * 86_400
    samples = await PrometheusPool().range_query(
        spec_for(prometheus), Credentials(), f"sum({series})", start=end - two_days, end=end, step_s=1
    )
    assert samples.step_s == range_step(end - two_days, end, 1) > 1
    assert two_days / samples.step_s < MAX_RANGE_POINTS, "Prometheus accepted the query: it is within its limit"
    assert samples.values and set(samples.values) == {7.5}


@pytest.mark.parametrize(
    ("template", "reason", "rejected"),
    [
        pytest.param("sum({name}{{pod='nobody'}})", "NoData", False, id="empty"),
        pytest.param("{name}", "AmbiguousResult", False, id="two-series"),
        pytest.param("sum({name}) / 0 - sum({name}) / 0", "InvalidValue", False, id="only-nan"),
        pytest.param("sum(rate({name}[1m])", "QueryRejected", True, id="syntax-error"),
    ],
)
async def test_no_history_is_read_as_zero(
    series: str, prometheus: Prometheus, template: str, reason: str, rejected: bool
) -> None:
    end = time.time()
    with pytest.raises(MetricError) as caught:
        await PrometheusPool().range_query(
            spec_for(prometheus), Credentials(), template.format(name=series), start=end - 20, end=end, step_s=1
        )
    assert (caught.value.reason, caught.value.rejected) == (reason, rejected)


async def test_identical_ranges_within_one_step_share_a_request(series: str, prometheus: Prometheus) -> None:
    pool = PrometheusPool(coalesce_s=60.0)
    spec, query = spec_for(prometheus), f"sum({series})"
    # On the grid, so that end + 3 s stays in the same step; the next grid point, not the last one, so
    # that the range holds the series' samples even when it was first scraped a moment ago.
    end = math.ceil(time.time() / 10) * 10
    answers = await asyncio.gather(
        *(
            pool.range_query(spec, Credentials(), query, start=end - 60 + i % 4, end=end + i % 4, step_s=10)
            for i in range(20)
        )
    )
    assert pool.requests_sent == 1, "20 policies asking for the same history within one step send one request"
    assert len({a.times for a in answers}) == 1
    await pool.range_query(spec, Credentials(), query, start=end - 60, end=end + 10, step_s=10)
    assert pool.requests_sent == 2, "the next step is a new request"


def test_gaps_stay_gaps() -> None:
    result = [{"metric": {}, "values": [[10, "1"], [20, "NaN"], [30, "+Inf"], [40, "2.5"]]}]
    samples = parse_range(result, "q", 10)
    assert (samples.times, samples.values) == ((10.0, 40.0), (1.0, 2.5))


@pytest.mark.parametrize(
    ("span", "asked", "expected"),
    [
        pytest.param(3_600, 15, 15, id="fits"),
        pytest.param(10_999, 1, 1, id="exactly-the-limit"),
        pytest.param(11_000, 1, 2, id="one-point-over"),
        pytest.param(172_800, 5, 16, id="two-days"),
    ],
)
def test_range_step(span: float, asked: float, expected: float) -> None:
    assert range_step(1_000.0, 1_000.0 + span, asked) == expected
