"""Paired differences compared exactly: ties in test images, the sign test and the sign-flip tests.

Accuracies are counts over a test split, so two seeds that differ by the same number of test
images must tie exactly, and a table whose differences are all the same has *no* spread (not a
tiny one from the float noise of x100). Differences are compared in integer units of 1e-9
points (:func:`exact_units`); the sign-flip permutation tests run on those integers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as st

__all__ = [
    "EXACT_UNITS_PER_POINT",
    "exact_units",
    "zero_spread",
    "share_a_better",
    "sign_test_p",
    "permutation_p",
    "smallest_permutation_p",
    "sign_flip_tost_p",
]

# Differences are compared in integer units of 1e-9 points: far below one test image of any
# split (100 / 10**6 points for a million images) and far above the ~1e-14 noise of x100.
EXACT_UNITS_PER_POINT = 10**9
# sign-flip test: 2**16 = 65,536 flips is exact and still takes milliseconds; beyond that,
# 9,999 Monte-Carlo flips give a p-value with standard error < 0.005 at p = 0.05.
_EXACT_PERMUTATION_MAX_N = 16
_MONTE_CARLO_RESAMPLES = 9_999
_RANDOM_SEED = 0


def exact_units(d: np.ndarray) -> np.ndarray:
    """Differences in points as integer multiples of 1e-9 points, so equal counts tie exactly."""
    return np.rint(np.asarray(d, dtype=float) * EXACT_UNITS_PER_POINT).astype(np.int64)


def zero_spread(d: Sequence[float] | np.ndarray) -> bool:
    """True when there are 2 or more differences and all are the same (in 1e-9 points).

    Whole-image accuracies make this likely at 2 or 3 seeds; a constant difference is no
    evidence of a zero-variance effect, so no interval or boundary is computed from it.
    """
    q = exact_units(d)
    return bool(q.size >= 2 and np.all(q == q[0]))


def share_a_better(d: Sequence[float] | np.ndarray) -> float:
    """Share of pairs with ``d > 0``, ties (exactly equal counts) counting one half; NaN if empty."""
    q = exact_units(d)
    if q.size == 0:
        return math.nan
    return float((np.sum(q > 0) + 0.5 * np.sum(q == 0)) / q.size)


def sign_test_p(d: Sequence[float] | np.ndarray) -> float:
    """Exact two-sided sign test of ``d`` (``scipy.stats.binomtest``), ties dropped; 1 if all tie."""
    q = exact_units(d)
    if q.size == 0:
        return math.nan
    wins, losses = int(np.sum(q > 0)), int(np.sum(q < 0))
    if wins + losses == 0:
        return 1.0
    return float(st.binomtest(wins, wins + losses, 0.5).pvalue)


def _sum_along(x: np.ndarray, axis: int) -> np.ndarray:
    return np.sum(x, axis=axis)


def permutation_p(d: Sequence[float] | np.ndarray, alternative: str = "two-sided") -> float:
    """Sign-flip permutation p of paired differences ``d`` (points), ties exact.

    ``d`` is rounded to integer units of 1e-9 points and the statistic is the integer sum of
    the flipped differences (for fixed n the same ordering as their mean), so that flips that
    give equal sums on the exact counts compare equal; ``scipy.stats.permutation_test``
    enumerates all ``2**n`` flips when ``n <= 16``, else draws 9,999 with a fixed seed.
    ``alternative``: "two-sided", "greater" (the mean is above 0) or "less". 1 when every
    difference is 0.
    """
    q = exact_units(d)
    if q.size == 0:
        return math.nan
    if not np.any(q):
        return 1.0
    exact = q.size <= _EXACT_PERMUTATION_MAX_N
    result = st.permutation_test(
        (q,),
        _sum_along,
        vectorized=True,
        permutation_type="samples",  # one sample: the null flips the sign of each difference
        n_resamples=np.inf if exact else _MONTE_CARLO_RESAMPLES,
        alternative=alternative,
        rng=np.random.default_rng(_RANDOM_SEED),
    )
    return float(result.pvalue)


def smallest_permutation_p(d: Sequence[float] | np.ndarray) -> float:
    """Smallest two-sided p the sign-flip test can reach: ``2 / 2**(n - m)``, m zero differences."""
    q = exact_units(d)
    nonzero = int(np.count_nonzero(q))
    return min(1.0, 2.0 / 2.0**nonzero)


def sign_flip_tost_p(d: Sequence[float] | np.ndarray, rope: float) -> float:
    """Two one-sided sign-flip tests for equivalence within ``±rope`` (Schuirmann's TOST, by flips).

    The larger of the one-sided p of ``d + rope`` above 0 and of ``d - rope`` below 0
    (:func:`permutation_p`). Used where the differences have zero spread and the t-based TOST
    would give p = 0: with all n differences inside the ROPE it is ``1 / 2**n``.
    """
    d = np.asarray(d, dtype=float)
    if d.size == 0:
        return math.nan
    return max(permutation_p(d + rope, "greater"), permutation_p(d - rope, "less"))
