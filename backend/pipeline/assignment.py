"""Optimal one-to-one assignment of tracks to detections (the Hungarian method).

Greedy best-first matching can give the best pair to one track and leave its neighbour with
nothing where a slightly worse pair for each would have matched both: exactly the crossing
and crowding cases where ids switch. This is the shortest-augmenting-path Hungarian method
with potentials, O(n^2 m) for n <= m, vectorised over columns; scipy is not a dependency.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def max_weight_matching(weights: NDArray[np.float64], min_weight: float) -> dict[int, int]:
    """Row -> column pairs of largest total weight, each pair's weight >= `min_weight` > 0.

    Pairs below `min_weight` count as no pair: leaving a row unmatched is never worse
    than matching it below the threshold.
    """
    eligible = np.where(weights >= min_weight, weights, 0.0)
    rows = np.flatnonzero(eligible.any(axis=1))
    columns = np.flatnonzero(eligible.any(axis=0))
    if not len(rows):
        return {}
    sub = eligible[np.ix_(rows, columns)]
    transposed = len(rows) > len(columns)
    pairs = _min_cost_assignment(-(sub.T if transposed else sub))
    matches = {}
    for r, c in pairs:
        row, column = (c, r) if transposed else (r, c)
        if sub[row, column] > 0:
            matches[int(rows[row])] = int(columns[column])
    return matches


def _min_cost_assignment(cost: NDArray[np.float64]) -> list[tuple[int, int]]:
    """Every row of `cost` (n x m, n <= m) to a distinct column, at least total cost."""
    n, m = cost.shape
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=np.int64)  # row (1-based) holding each column; 0: none
    way = np.zeros(m + 1, dtype=np.int64)
    for row in range(1, n + 1):
        owner[0] = row
        column = 0
        slack = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while owner[column]:
            used[column] = True
            current = owner[column]
            free = ~used
            free[0] = False
            reduced = cost[current - 1] - u[current] - v[1:]
            better = free[1:] & (reduced < slack[1:])
            slack[1:][better] = reduced[better]
            way[1:][better] = column
            candidates = np.where(free, slack, np.inf)
            nearest = int(np.argmin(candidates))
            delta = candidates[nearest]
            u[owner[used]] += delta
            v[used] -= delta
            slack[free] -= delta
            column = nearest
        while column:
            previous = int(way[column])
            owner[column] = owner[previous]
            column = previous
    return [(int(owner[c]) - 1, c - 1) for c in range(1, m + 1) if owner[c]]
