"""The Hungarian assignment against every possible matching of small matrices."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.typing import NDArray

from backend.pipeline.assignment import max_weight_matching


def best_total(weights: NDArray[np.float64], min_weight: float) -> float:
    rows, columns = weights.shape
    best = 0.0
    for size in range(min(rows, columns) + 1):
        for chosen in itertools.combinations(range(rows), size):
            for targets in itertools.permutations(range(columns), size):
                pairs = [weights[r, c] for r, c in zip(chosen, targets, strict=True)]
                if all(w >= min_weight for w in pairs):
                    best = max(best, sum(pairs))
    return best


@pytest.mark.parametrize("seed", range(40))
def test_matching_is_optimal_and_one_to_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows, columns = rng.integers(0, 5, 2)
    weights = rng.random((rows, columns)) * (rng.random((rows, columns)) < 0.6)
    matches = max_weight_matching(weights, 0.3)
    assert len(set(matches.values())) == len(matches)
    assert all(weights[r, c] >= 0.3 for r, c in matches.items())
    total = sum(weights[r, c] for r, c in matches.items())
    assert total == pytest.approx(best_total(weights, 0.3))


def test_the_second_best_pair_for_one_lets_both_match() -> None:
    weights = np.array([[0.6, 0.5], [0.55, 0.0]])  # greedy would give row 0 column 0 and stop
    assert max_weight_matching(weights, 0.2) == {0: 1, 1: 0}
