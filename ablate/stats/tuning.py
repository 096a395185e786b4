"""How good a search of n trials is expected to be: the expected best of n trials (Dodge et al. 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["expected_max"]


def expected_max(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Expected best of n search trials, n = 1..N, from N completed trials' values (Dodge et al. 2019).

    The expected maximum of n draws with replacement from the empirical distribution of
    ``values``: with ``v`` sorted ascending,
    ``E[max_n] = sum_i v_(i) [(i / N)**n - ((i - 1) / N)**n]``. Trials chosen by TPE and cut
    short by a pruner are not independent draws, so this is an approximation there. Returns
    an empty array for no values.
    """
    v = np.sort(np.asarray(values, dtype=float))
    big_n = v.size
    if big_n == 0:
        return np.array([], dtype=float)
    i = np.arange(1, big_n + 1, dtype=float)
    n = np.arange(1, big_n + 1, dtype=float)[:, None]
    weights = (i / big_n) ** n - ((i - 1) / big_n) ** n  # (n, i); each row sums to 1
    return weights @ v
