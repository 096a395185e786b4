"""Planning figures of a paired t-test: its power, the smallest difference n seeds detect, the seeds an
effect needs.

One power function, :func:`fixed_design_power` (scipy's noncentral t), serves all three, and the
comparisons table and the sequential design's "fixed design with the same power" both call
:func:`seeds_for_power`. Planning, not post-hoc power: there is deliberately no "observed power"
(Hoenig and Heisey 2001); see docs/statistics.md (generated from ``ablate.report.procedure``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from scipy import optimize, stats

from ablate.analysis import is_finite

__all__ = [
    "TARGET_POWER",
    "fixed_design_power",
    "mde_80",
    "seeds_for_power",
]

TARGET_POWER = 0.8
_MAX_SEEDS = 2**40  # beyond this "needed" means "never" in practice


def fixed_design_power(effect: float, sd: float, n: int, alpha: float) -> float:
    """Power of a two-sided paired t-test at ``alpha`` with ``n`` pairs to find the difference in
    the direction of ``effect`` (points; ``sd`` the sd of the paired differences).

    ``P(T > t_{1 - alpha/2, n - 1})`` for T noncentral t with ``n - 1`` df and noncentrality
    ``effect / sd * sqrt(n)`` (``scipy.stats.nct``). Rejections in the wrong direction are not
    detections and do not count; at 80% power they would add less than 1e-5. Only the upper tail
    is evaluated: scipy 1.17's noncentral t returns NaN far in the lower tail (df = 1, nc = 8,
    x = -12.7).
    """
    crit = stats.t.isf(alpha / 2.0, n - 1)
    return float(stats.nct.sf(crit, n - 1, effect / sd * math.sqrt(n)))


def mde_80(sd_d: float, n: int, alpha: float) -> float:
    """Smallest difference (points) that :func:`fixed_design_power` at ``alpha`` finds with 80% power
    at ``n`` pairs, from the sd of the paired differences ``sd_d``.

    NaN when ``sd_d`` is 0 or not finite, or ``n < 2``. The comparisons table passes the level a
    contrast must pass at Holm's first step, ``alpha / m``.
    """
    if n < 2 or sd_d == 0.0 or not math.isfinite(sd_d):
        return math.nan
    reaches = lambda size: fixed_design_power(size, 1.0, n, alpha) - TARGET_POWER  # noqa: E731
    high = 1.0
    while reaches(high) < 0:
        high *= 2.0
    return float(optimize.brentq(reaches, 0.0, high, xtol=1e-12)) * sd_d


def seeds_for_power(effect: float | None, sd: float, alpha: float, power: float = TARGET_POWER) -> float:
    """Seeds a two-sided paired t-test at ``alpha`` needs to find ``effect`` points with ``power``.

    The smallest integer n >= 2 at which :func:`fixed_design_power` of ``|effect|`` reaches
    ``power`` (the integers are searched by doubling, then bisection). NaN without an effect or
    with ``sd`` 0 or not finite; inf for a zero effect or beyond 2**40 seeds.
    """
    if effect is None or not is_finite(effect) or not is_finite(sd) or sd == 0.0:
        return math.nan
    size = abs(float(effect)) / abs(float(sd))
    if size == 0.0:
        return math.inf

    def enough(n: int) -> bool:
        return fixed_design_power(size, 1.0, n, alpha) >= power

    if enough(2):
        return 2.0
    lo, hi = 2, 4  # not enough(lo), and enough(hi) once the doubling stops
    while not enough(hi):
        if hi >= _MAX_SEEDS:
            return math.inf
        lo, hi = hi, hi * 2
    return float(_first_reaching(enough, lo, hi))


def _first_reaching(enough: Callable[[int], bool], lo: int, hi: int) -> int:
    """The smallest n in (lo, hi] with ``enough(n)``, given not ``enough(lo)`` and ``enough(hi)``
    and that power grows with n (bisection)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi
