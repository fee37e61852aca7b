"""Turn a scraped metric series into the regular, finite series every forecaster assumes.

Prometheus data is rarely clean: scrapes jitter and go missing, targets restart (counters drop
to zero), exporters emit NaN, two queries get concatenated out of order. Each defect below has
exactly one documented handling, and everything that cannot be repaired honestly raises
:class:`ForecastInputError` instead of returning garbage:

==========================  ===================================================================
defect                      handling
==========================  ===================================================================
not a Series / no time      ``ForecastInputError``
index, non-numeric values
unsorted timestamps         sorted (stable)
NaN, +Inf, -Inf             dropped, then the slot is treated as a gap
duplicate timestamps        values landing on one grid slot are averaged (jittered scrapes
                            land there too)
counter resets              only with ``counter=True``: a decrease is a restart, the increase
                            across it is the value after the restart (Prometheus ``rate()``
                            semantics); the result is the per-second rate
irregular / jittered times  snapped to the nearest slot of a grid anchored at the first sample;
                            ``step`` (unless given) is the median spacing, rounded to the usual
                            scrape interval within 20% of it (jitter must not make a 66 s step)
gap <= ``max_gap_steps``    filled by linear interpolation (counted in ``n_filled``)
longer gap                  history before it is dropped: a long outage means the service
                            restarted, and interpolating hours is fabrication
                            (counted in ``n_dropped``)
fewer than ``min_points``   ``ForecastInputError``
constant series             kept; ``constant`` is true so callers can skip pointless work
==========================  ===================================================================
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecasting.base import ForecastInputError


@dataclass(frozen=True)
class RegularSeries:
    """A series on a regular grid with only finite values, and a record of what was repaired."""

    values: pd.Series
    step: pd.Timedelta
    n_nonfinite: int = 0
    n_duplicates: int = 0
    n_resets: int = 0
    n_filled: int = 0
    n_dropped: int = 0

    @property
    def constant(self) -> bool:
        array = self.values.to_numpy()
        return bool(np.all(array == array[0]))

    @property
    def span(self) -> pd.Timedelta:
        """Time covered by the history, counting the last step (``n`` points cover ``n`` steps)."""
        return self.step * len(self.values)


def regularize(
    y: pd.Series,
    *,
    counter: bool = False,
    step: pd.Timedelta | None = None,
    max_gap_steps: int = 60,
    min_points: int = 3,
) -> RegularSeries:
    """Apply the table of the module docstring to ``y``; see there for each rule."""
    if not isinstance(y, pd.Series) or not isinstance(y.index, pd.DatetimeIndex):
        raise ForecastInputError("expected a pandas Series with a DatetimeIndex")
    if not counter and step is None:
        regular = _already_regular(y, min_points)
        if regular is not None:
            return regular
    try:
        raw = y.astype(float)
    except (TypeError, ValueError) as error:
        raise ForecastInputError(f"values are not numeric: {error}") from error
    # pandas keeps the resolution it was given (s, ms, us, ns); integer arithmetic below needs one.
    raw.index = pd.DatetimeIndex(y.index).as_unit("ns")
    if not raw.index.is_monotonic_increasing:  # the usual input is sorted: no copy for it
        raw = raw.sort_index(kind="stable")
    if step is None:
        # From every timestamp, NaN rows included: a missing value is still a scrape that happened.
        spacing = np.diff(pd.DatetimeIndex(raw.index).asi8)
        positive = spacing[spacing > 0]
        if len(positive) == 0:
            raise ForecastInputError("all samples share one timestamp; the step cannot be inferred")
        step = nominal_step(pd.Timedelta(int(np.median(positive)), unit="ns"))
    if step <= pd.Timedelta(0):
        raise ForecastInputError(f"step must be positive, got {step}")
    finite = np.isfinite(raw.to_numpy())
    n_nonfinite = int((~finite).sum())
    if n_nonfinite:
        raw = raw[finite]
    if len(raw) < 2:
        raise ForecastInputError(f"only {len(raw)} finite value(s); need at least {max(min_points, 2)}")

    n_resets = 0
    if counter:
        raw, n_resets = _counter_rate(raw)

    times = pd.DatetimeIndex(raw.index)
    origin = times[0]
    slots = np.rint((times.asi8 - origin.value) / step.value).astype(np.int64)
    filled, grid, n_duplicates, n_dropped, n_filled = _onto_grid(raw.to_numpy(), slots, max_gap_steps)

    if len(filled) < min_points:
        raise ForecastInputError(
            f"{len(filled)} usable points after cleaning; need at least {min_points}"
            + (f" ({n_dropped} dropped before a gap longer than {max_gap_steps} steps)" if n_dropped else "")
        )
    index = pd.date_range(origin + step * int(grid[0]), periods=len(grid), freq=step, name=y.index.name)
    return RegularSeries(
        values=pd.Series(filled, index=index, name=y.name),
        step=step,
        n_nonfinite=n_nonfinite,
        n_duplicates=n_duplicates,
        n_resets=n_resets,
        n_filled=n_filled,
        n_dropped=n_dropped,
    )


def _already_regular(y: pd.Series, min_points: int) -> RegularSeries | None:
    """``y`` as :func:`regularize` would return it when nothing in it needs repair, else ``None``.

    A series made on a ``date_range`` (the controller's history, a backtest's prefix of a cleaned
    series) carries its spacing as the index's ``freq``: if that is a nominal step and every value
    is a finite float, every rule of the table leaves it as it is, and the general path only costs
    pandas overhead (a model selection cleans about sixty such prefixes).
    """
    index = y.index
    assert isinstance(index, pd.DatetimeIndex)
    freq = index.freq
    if freq is None or not isinstance(freq, pd.offsets.Tick) or y.dtype != np.float64 or len(y) < max(min_points, 2):
        return None
    step = pd.Timedelta(freq)
    values = y.to_numpy()
    if not needs_no_repair(values, step):
        return None
    return RegularSeries(values=pd.Series(values, index=index.as_unit("ns"), name=y.name), step=step)


def needs_no_repair(values: np.ndarray, step: pd.Timedelta) -> bool:
    """Whether samples ``step`` apart are left as they are by :func:`regularize`: a positive step that
    is its own nominal step (no re-gridding) and finite values (nothing to fill or drop)."""
    return step > pd.Timedelta(0) and nominal_step(step) == step and bool(np.isfinite(values).all())


#: Scrape and aggregation intervals people actually configure.
NOMINAL_STEPS = tuple(
    pd.Timedelta(step)
    for step in ("1s", "5s", "10s", "15s", "30s", "1min", "2min", "5min", "10min", "15min", "30min", "1h")
)


@functools.lru_cache(maxsize=64)
def nominal_step(median: pd.Timedelta) -> pd.Timedelta:
    """The step :func:`regularize` infers from a median spacing: the usual interval within 20 % of it,
    else the median itself. Samples ``step`` apart are on their own grid when this returns ``step``."""
    nearest = min(NOMINAL_STEPS, key=lambda step: abs(step - median))
    return nearest if abs(nearest - median) <= 0.2 * nearest else median


def _counter_rate(counter: pd.Series) -> tuple[pd.Series, int]:
    """Per-second rate of a cumulative counter, stamped at the later sample of each pair."""
    values = counter.to_numpy()
    seconds = np.diff(pd.DatetimeIndex(counter.index).asi8) / 1e9
    increase = np.diff(values)
    resets = increase < 0
    increase[resets] = values[1:][resets]
    keep = seconds > 0  # a duplicate timestamp carries no time, so no rate
    rate = pd.Series(increase[keep] / seconds[keep], index=counter.index[1:][keep])
    return rate, int(resets.sum())


def _onto_grid(
    values: np.ndarray, slots: np.ndarray, max_gap_steps: int
) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """Values on the slots ``grid[0]..grid[-1]``: duplicates averaged, gaps filled, history before a
    long gap dropped; returns ``(values, grid, n_duplicates, n_dropped, n_filled)``."""
    if slots[-1] == len(slots) - 1 and np.all(np.diff(slots) == 1):
        # Already one value per slot, the usual case for a Prometheus range query: grouping and
        # interpolating would copy it through pandas for nothing (half the cost of a backtest).
        return values, slots, 0, 0, 0
    grouped = pd.Series(values, index=slots).groupby(level=0).mean()
    n_duplicates = len(values) - len(grouped)
    grid = np.arange(int(grouped.index[-1]) + 1)
    present = np.zeros(len(grid), dtype=bool)
    present[grouped.index.to_numpy()] = True
    n_dropped = 0
    gap_ends = _long_gap_ends(grouped.index.to_numpy(), max_gap_steps)
    if len(gap_ends):
        first_kept = int(gap_ends[-1])
        n_dropped = int(present[:first_kept].sum())
        grid = grid[first_kept:]
        grouped = grouped.loc[first_kept:]
    filled = grouped.reindex(grid).interpolate(method="index", limit_area="inside")
    return filled.to_numpy(), grid, n_duplicates, n_dropped, len(filled) - len(grouped)


def _long_gap_ends(slots: np.ndarray, max_gap_steps: int) -> np.ndarray:
    """Slots that start a new segment after more than ``max_gap_steps`` missing slots."""
    missing = np.diff(slots) - 1
    return slots[1:][missing > max_gap_steps]
