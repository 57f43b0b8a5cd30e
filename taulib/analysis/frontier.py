"""Metrics read at exactly matched sparsity, off each arm's metric-vs-L0 frontier.

Calibration (taulib.sweep.calibration) lands a run only near its L0 target, and every seed of an arm
reuses the calibrated λ, so two arms can differ by a fixed L0 offset that no seed interval sees.
Because reconstruction, orthogonality and probing all move with L0, such an offset alone would read
as a difference between arms. So a comparison at target T never takes "the run calibrated for T"
as it is: per arm and seed, the runs at the sweep's targets form that seed's frontier (metric
against log L0), and the metric at T is interpolated linearly in log L0 between the two runs whose
achieved L0 bracket T. Where no pair brackets T (T is the sweep's sparsest or densest target and the
seed's run landed inside it), the value is extrapolated from the two nearest runs only if the
nearest is within `MATCH_TOLERANCE` of T in L0 — a distance over which the frontier's curvature is
negligible next to seed noise; otherwise the cell is unmatched and reported as such, never used. Nor is a
target read across a missing run: every arm and seed plans one run per target, and a reading whose two
runs are not neighbours on that grid (the run between failed or was removed) is a "gap", unmatched, however
close the runs around it happen to be.

`shape="quadratic"` reads the same cells (the same matched/unmatched decision) off a parabola in
log L0 through the three runs nearest the target instead of the line: the report's sensitivity
check that the frontier's curvature does not decide a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd

MATCH_TOLERANCE = 0.02  # |L0 / T − 1| within which an unbracketed target is still read off the frontier
FrontierShape = Literal["linear", "quadratic"]


@dataclass(frozen=True)
class FrontierReading:
    value: float
    status: str  # "bracketed" | "near" (unbracketed, nearest run within tolerance) | "unmatched" | "gap" (a planned run missing between)
    lower_l0: float  # the achieved L0 of the two runs it was read between (or extrapolated from)
    upper_l0: float


def read_at_l0(
    l0s: Sequence[float],
    values: Sequence[float],
    target: float,
    tolerance: float = MATCH_TOLERANCE,
    shape: FrontierShape = "linear",
    slots: Sequence[float] | None = None,
    grid: Sequence[float] | None = None,
) -> FrontierReading:
    """The metric at L0 = `target` on the frontier through the points (l0s[i], values[i]).

    `slots` and `grid`: each point's place on the planned grid (its run's L0 target) and the grid itself (every target a
    run was planned for). A reading between two runs whose slots are not neighbours on the grid has a planned run missing
    between them (failed, removed, never calibrated): it is not read across the gap, whatever the gap's width, but
    reported with status "gap"."""
    l0, value = np.asarray(l0s, dtype=float), np.asarray(values, dtype=float)
    slot = np.asarray(slots, dtype=float) if slots is not None else np.full(len(l0), math.nan)
    # runs are placed by their L0 alone; a run without a value stays in place, and a reading that
    # needs it is unmatched (never read across it from the runs around it)
    keep = np.isfinite(l0) & (l0 > 0)
    l0, value, slot = l0[keep], value[keep], slot[keep]
    if len(l0) == 0 or not target > 0:
        return FrontierReading(math.nan, "unmatched", math.nan, math.nan)
    order = np.argsort(l0, kind="stable")
    x, y, at = np.log(l0[order]), value[order], math.log(target)
    below, above = np.flatnonzero(x <= at), np.flatnonzero(x >= at)
    if len(below) and len(above):
        i, j = below[-1], above[0]
        reading = FrontierReading(float(y[i]) if i == j else _line(x[i], y[i], x[j], y[j], at), "bracketed", float(l0[order][i]), float(l0[order][j]))
    else:
        nearest = int(np.argmin(np.abs(x - at)))
        if abs(math.exp(x[nearest] - at) - 1) > tolerance:
            return FrontierReading(math.nan, "unmatched", float(l0[order][nearest]), float(l0[order][nearest]))
        i, j = (nearest, nearest) if len(x) == 1 else ((0, 1) if nearest == 0 else (len(x) - 2, len(x) - 1))
        reading = FrontierReading(float(y[i]) if i == j else _line(x[i], y[i], x[j], y[j], at), "near", float(l0[order][i]), float(l0[order][j]))
    if slots is not None and grid is not None and _skips_a_slot(slot[order], i, j, grid):
        return FrontierReading(math.nan, "gap", reading.lower_l0, reading.upper_l0)
    if not math.isfinite(reading.value):  # a run it is read from has no value for this metric
        return FrontierReading(math.nan, "unmatched", reading.lower_l0, reading.upper_l0)
    finite = np.flatnonzero(np.isfinite(y))
    if shape == "quadratic" and len(finite) >= 3:  # fewer runs with a value: the line is all there is
        nearest = finite[np.argsort(np.abs(x[finite] - at), kind="stable")[:3]]
        if len(np.unique(x[nearest])) == 3:
            return replace(reading, value=float(np.polyval(np.polyfit(x[nearest], y[nearest], 2), at)))
    return reading


def _skips_a_slot(ordered_slots: np.ndarray, i: int, j: int, grid: Sequence[float]) -> bool:
    """Whether the two runs a reading comes from are further apart on the planned grid than neighbours."""
    planned = sorted(set(float(g) for g in grid))
    a, b = ordered_slots[i], ordered_slots[j]
    if not (math.isfinite(a) and math.isfinite(b)) or a not in planned or b not in planned:
        return False
    return abs(planned.index(a) - planned.index(b)) > 1


def _line(x0: float, y0: float, x1: float, y1: float, at: float) -> float:
    if x1 == x0:
        return float((y0 + y1) / 2)
    return float(y0 + (y1 - y0) * (at - x0) / (x1 - x0))


def matched_table(
    runs: pd.DataFrame, columns: Sequence[str], l0_column: str = "final_l0", tolerance: float = MATCH_TOLERANCE, shape: FrontierShape = "linear"
) -> pd.DataFrame:
    """One row per (arm, seed, L0 target): each column of `runs` (a run table: arm, seed, l0_target
    and the columns) read at exactly the target off that arm and seed's frontier, with the reading's
    status and the achieved L0 of the runs it came from. A column's value is NaN where unmatched."""
    rows = []
    targets = sorted(float(t) for t in runs["l0_target"].dropna().unique())
    for (arm, seed), frontier in runs.groupby(["arm", "seed"], sort=False):
        l0s = frontier[l0_column].to_numpy(dtype=float)
        # each run's slot on the planned grid: its own L0 target (every arm and seed plans one run per target)
        slots = frontier["l0_target"].to_numpy(dtype=float)
        for target in targets:
            own = frontier.loc[np.isclose(frontier["l0_target"], target), l0_column]
            row: dict[str, float | str | int] = {"arm": arm, "seed": int(seed), "l0_target": target, "run_l0": float(own.iloc[0]) if len(own) else math.nan}
            reading = read_at_l0(l0s, l0s, target, tolerance, slots=slots, grid=targets)  # where the L0 axis itself is read: the status
            row |= {"match": reading.status, "lower_l0": reading.lower_l0, "upper_l0": reading.upper_l0}
            for column in columns:
                row[column] = read_at_l0(l0s, frontier[column].to_numpy(dtype=float), target, tolerance, shape, slots, targets).value if column in frontier else math.nan
            rows.append(row)
    return pd.DataFrame(rows)
