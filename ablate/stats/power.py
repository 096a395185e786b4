"""Planning figures of a paired t-test: the smallest difference n seeds detect, the seeds an effect needs.

Planning, not post-hoc power: there is deliberately no "observed power" (Hoenig and Heisey
2001); see docs/statistics.md (generated from ``ablate.report.procedure``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from statsmodels.stats.power import TTestPower

from ablate.analysis import is_finite

__all__ = [
    "seeds_for_effect",
    "fixed_design_power",
    "fixed_design_seeds",
]

TARGET_POWER = 0.8
_MAX_SEEDS = 2**40  # beyond this "needed" means "never" in practice


def mde_80(sd_d: float, n: int, alpha: float) -> float:
    """Smallest difference (points) a two-sided paired t-test at alpha detects with 80% power at n pairs.

    From the sd of the paired differences ``sd_d``; NaN when it is 0 or not finite.
    """
    if sd_d == 0.0 or not math.isfinite(sd_d):
        return math.nan
    return _detectable_effect(n, alpha) * sd_d


# scipy 1.17's noncentral t CDF (special.nctdtr) returns NaN instead of ~0 far in the lower
# tail (e.g. df = 1, nc = 8, x = -12.7), which makes statsmodels' two-sided power NaN. There
# the lower rejection region's probability is negligible, so the upper one alone (a one-sided
# test at alpha / 2) is the two-sided power to many digits; at n = 5 the two agree to 1e-7.
def _paired_power(effect: float, n: int, alpha: float) -> float:
    analysis = TTestPower()
    power = analysis.power(effect_size=effect, nobs=n, alpha=alpha, alternative="two-sided")
    if not np.isfinite(power):
        power = analysis.power(effect_size=effect, nobs=n, alpha=alpha / 2, alternative="larger")
    return float(power)


def _detectable_effect(n: int, alpha: float) -> float:
    """Smallest d_z a two-sided paired t-test detects with 80% power at n pairs."""
    analysis = TTestPower()
    effect = analysis.solve_power(effect_size=None, nobs=n, alpha=alpha, power=TARGET_POWER)
    if not np.isfinite(effect):
        effect = analysis.solve_power(
            effect_size=None, nobs=n, alpha=alpha / 2, power=TARGET_POWER, alternative="larger"
        )
    return float(np.asarray(effect).squeeze())


def seeds_for_effect(effect: float | None, sd_d: float, alpha: float) -> float:
    """Seeds a two-sided paired t-test needs for 80% power against ``effect`` points at ``sd_d``.

    The smallest integer n >= 2 whose power (statsmodels' ``TTestPower``) reaches 80%, i.e.
    ``ceil`` of ``solve_power(nobs=None)``; searching the integers avoids its root finder,
    which fails when the answer is below 2. NaN without an effect or with ``sd_d`` 0 or NaN;
    inf for a zero effect or beyond 2**40 seeds.
    """
    if effect is None or not is_finite(effect) or not is_finite(sd_d) or sd_d == 0.0:
        return math.nan
    size = abs(float(effect)) / sd_d
    if size == 0.0:
        return math.inf
    if _paired_power(size, 2, alpha) >= TARGET_POWER:
        return 2.0
    lo, hi = 2, 4  # power(lo) < target <= power(hi) once the doubling stops
    while _paired_power(size, hi, alpha) < TARGET_POWER:
        if hi >= _MAX_SEEDS:
            return math.inf
        lo, hi = hi, hi * 2
    return float(_first_reaching(lambda n: _paired_power(size, n, alpha) >= TARGET_POWER, lo, hi))


def fixed_design_power(effect: float, sd: float, n: int, alpha: float) -> float:
    """Power of a fixed two-sided paired t-test at ``alpha`` with ``n`` seeds to find A better.

    Only the correct direction counts (as in the sequential power), from scipy's noncentral t.
    """
    crit = stats.t.isf(alpha / 2.0, n - 1)
    return float(stats.nct.sf(crit, n - 1, effect / sd * math.sqrt(n)))


def fixed_design_seeds(effect: float, sd: float, alpha: float, power: float, limit: int = 100_000) -> int | None:
    """Smallest n >= 2 at which the fixed paired t-test reaches ``power``; None beyond ``limit``."""
    if fixed_design_power(effect, sd, 2, alpha) >= power:
        return 2
    if effect <= 0 or fixed_design_power(effect, sd, limit, alpha) < power:
        return None
    return _first_reaching(lambda n: fixed_design_power(effect, sd, n, alpha) >= power, 2, limit)


def _first_reaching(enough, lo: int, hi: int) -> int:
    """The smallest n in (lo, hi] with ``enough(n)``, given not ``enough(lo)`` and ``enough(hi)``
    and that power grows with n (bisection)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi
