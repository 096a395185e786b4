"""Two arms on one dataset, paired by seed: estimate, tests, effect sizes, ROPE, planning figures.

:func:`paired_comparison` computes one row of the comparisons table from the seeds alone (the
figures for *this test set*); :func:`ablate.stats.compare` adds the figures for new data where
predictions exist, adjusts the p-values by Holm over the whole table and sets each verdict. The
procedure, step by step with its references, is docs/statistics.md (generated from
``ablate.report.procedure``, which also writes the report's Procedure section). Degenerate inputs
never raise: a statistic that is undefined is NaN.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as st
from statsmodels.stats.weightstats import ttost_paired

from ablate.stats._common import quiet
from ablate.stats.crossed import paired_bootstrap
from ablate.stats.exact import (permutation_p, share_a_better, sign_flip_tost_p, sign_test_p, smallest_permutation_p,
                                zero_spread)
from ablate.stats.power import mde_80, seeds_for_power

__all__ = [
    "COMPARISON_COLUMNS",
    "Comparison",
    "d_z",
    "paired_p",
    "share_interval",
    "equivalence_attainable",
    "rope_probabilities",
    "paired_comparison",
]

_FEW_SEEDS = 5


@dataclass(frozen=True)
class Comparison:
    """Arm A vs arm B on one dataset, paired by seed; differences are A - B in points.

    The columns without a suffix are for *this test set* (seeds random, the test examples fixed);
    those ending in ``_new_data`` treat the test examples as a sample too (NaN without
    predictions). ``*_holm``, ``too_short`` and ``verdict`` need the whole table, so
    :func:`paired_comparison` leaves them NaN / "" and :func:`ablate.stats.compare` fills them in,
    with ``confounded_by`` and ``still_rising``, by :func:`dataclasses.replace`.
    """

    dataset: str
    arm_a: str
    arm_b: str
    n: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_paired: float
    p_welch: float
    p_permutation: float
    p_holm: float
    n_examples: float
    ci_low_new_data: float
    ci_high_new_data: float
    df_new_data: float
    p_new_data: float
    p_new_data_holm: float
    sd_test_sampling: float
    d_z: float
    share_a_better: float
    share_ci_low: float
    share_ci_high: float
    p_sign: float
    rope: float
    rope_below: float
    rope_inside: float
    rope_above: float
    p_tost: float
    p_tost_holm: float
    p_tost_new_data: float
    p_tost_new_data_holm: float
    equivalence_attainable: bool
    mde_80: float
    seeds_for_smallest_effect: float
    sd_diff: float
    confounded_by: str
    still_rising: str
    too_short: str
    verdict: str
    warnings: tuple[str, ...]
    # smallest p the permutation test can reach with these differences (not a CSV column)
    min_p_permutation: float = dataclasses.field(default=math.nan, metadata={"csv": False})
    # the Holm-adjusted p and TOST p the verdict uses (not CSV columns: ablate.stats.verdict_holm
    # recomputes them from a comparisons table)
    p_verdict_holm: float = dataclasses.field(default=math.nan, metadata={"csv": False})
    p_tost_verdict_holm: float = dataclasses.field(default=math.nan, metadata={"csv": False})

    @property
    def new_data(self) -> bool:
        """Whether the verdict rests on the new-data test (predictions for every one of 2 or more paired seeds)."""
        return math.isfinite(self.p_new_data)


COMPARISON_COLUMNS = tuple(f.name for f in dataclasses.fields(Comparison) if f.metadata.get("csv", True))


def _small_sample_factor(m: int) -> float:
    """J(m) = Gamma(m/2) / (sqrt(m/2) Gamma((m-1)/2)), the exact bias correction of a standardized mean."""
    return math.exp(special.gammaln(m / 2) - special.gammaln((m - 1) / 2)) / math.sqrt(m / 2)


def d_z(d: Sequence[float] | np.ndarray) -> float:
    """Standardized mean of paired differences, ``mean(d) / sd(d) * J(n - 1)`` (Lakens 2013).

    NaN below 3 pairs (J(1) is 0: one degree of freedom carries no usable sd) and when the
    differences have no spread.
    """
    d = np.asarray(d, dtype=float)
    n = d.size
    if n < 3 or zero_spread(d):
        return math.nan
    sd = float(np.std(d, ddof=1))
    if sd == 0.0 or not math.isfinite(sd):
        return math.nan
    return float(np.mean(d) / sd * _small_sample_factor(n - 1))


def paired_p(d: Sequence[float] | np.ndarray) -> float:
    """Two-sided p of the paired differences ``d``: Student's paired t (``scipy.stats.ttest_1samp``).

    Where every difference is the same (:func:`ablate.stats.zero_spread`) the t statistic is
    infinite or 0/0 and says nothing: p is then the exact sign-flip test's, 1 when all are 0 and
    ``2 / 2**n`` for a constant nonzero difference. NaN below 2 differences.
    """
    d = np.asarray(d, dtype=float)
    if d.size < 2:
        return math.nan
    if zero_spread(d):
        return permutation_p(d)
    with quiet():
        return float(st.ttest_1samp(d, 0.0).pvalue)


def share_interval(x: np.ndarray, *, examples: bool, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the share of seeds where A wins, by :func:`ablate.stats.paired_bootstrap`.

    ``x``: seeds x examples (``examples=True``) or one column of per-seed differences (points).
    NaN below 2 seeds.
    """
    x = np.asarray(x, dtype=float)
    if x.shape[0] < 2:
        return (math.nan, math.nan)
    _, shares = paired_bootstrap(x, examples=examples)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(shares, [tail, 1.0 - tail])
    return (float(low), float(high))


def equivalence_attainable(se: float, df: float, rope: float, alpha: float, *, seeds: int | None = None) -> bool:
    """Whether the equivalence test can pass at all: TOST at ``alpha`` with a mean difference of exactly 0.

    True when ``t_{1 - alpha}(df) * se < rope``. ``alpha`` is Holm's last (most lenient) step,
    so False means no outcome at this n and spread can be called equivalent. With zero spread
    (``se == 0``) the sign-flip TOST decides, whose smallest p is ``1 / 2**seeds``.
    """
    if se == 0.0 and seeds is not None:
        return bool(rope > 0 and 0.5**seeds < alpha)
    if not (math.isfinite(se) and math.isfinite(df) and df > 0):
        return False
    return bool(st.t.isf(alpha, df) * se < rope)


def rope_probabilities(diff: float, scale: float, df: int, rope: float) -> tuple[float, float, float]:
    """P(mean difference < -rope), P(inside), P(> +rope) under a Student t posterior.

    The posterior of the Bayesian paired t-test with a flat prior (Benavoli et al. 2017):
    ``t(df = n - 1, loc = mean(d), scale = sd(d) / sqrt(n))``. NaN with ``scale == 0``: zero
    spread gives no posterior.
    """
    if not (math.isfinite(diff) and math.isfinite(scale)) or df < 1 or scale == 0.0:
        return (math.nan, math.nan, math.nan)
    posterior = st.t(df, loc=diff, scale=scale)
    below = float(posterior.cdf(-rope))
    above = float(posterior.sf(rope))
    return (below, float(posterior.cdf(rope) - posterior.cdf(-rope)), above)


def paired_comparison(
    dataset: str,
    arm_a: str,
    arm_b: str,
    a: pd.Series,
    b: pd.Series,
    *,
    rope: float = 0.1,
    alpha: float = 0.05,
    smallest_effect: float | None = None,
    one_image: float | None = None,
    family: int = 1,
) -> Comparison:
    """Compare two arms on one dataset; ``a`` and ``b`` are accuracies (fractions) indexed by seed.

    Only seeds in both indexes are used. ``one_image`` is one test image in points (100 /
    n_test), used to flag a ROPE finer than that. ``family``: the rows that share ``alpha`` by
    Holm; ``mde_80`` and ``seeds_for_smallest_effect`` are at ``alpha / family``, the level of
    Holm's first step. The Holm columns are left NaN, the new-data columns NaN (``n_examples``
    too), ``verdict``, ``too_short``, ``confounded_by`` and ``still_rising`` empty; the per-row
    warnings are filled in. See docs/statistics.md for every statistic.
    """
    seeds = sorted(set(a.index) & set(b.index))
    dropped = len(set(a.index) ^ set(b.index))
    xa = a.loc[seeds].to_numpy(dtype=float) * 100.0
    xb = b.loc[seeds].to_numpy(dtype=float) * 100.0
    n = len(seeds)
    nan = math.nan
    d = xa - xb
    numbers = dict(mean_a=nan, mean_b=nan, diff=nan) if not n else dict(
        mean_a=float(np.mean(xa)), mean_b=float(np.mean(xb)), diff=float(np.mean(d)))
    numbers.update(share_a_better=share_a_better(d), p_sign=sign_test_p(d))
    if n >= 2:
        with quiet():
            numbers.update(_seed_level(xa, xb, rope, alpha, smallest_effect, alpha / family))
    comparison = Comparison(
        dataset=dataset, arm_a=arm_a, arm_b=arm_b, n=n, rope=float(rope), warnings=(), confounded_by="",
        still_rising="", too_short="", verdict="", **{**_UNSET, **numbers},
    )  # fmt: skip
    return dataclasses.replace(comparison, warnings=_row_warnings(comparison, dropped, alpha, one_image))


_UNSET = dict(
    ci_low=math.nan, ci_high=math.nan, p_paired=math.nan, p_welch=math.nan, p_permutation=math.nan, p_holm=math.nan,
    n_examples=math.nan, ci_low_new_data=math.nan, ci_high_new_data=math.nan, df_new_data=math.nan,
    p_new_data=math.nan, p_new_data_holm=math.nan, sd_test_sampling=math.nan, d_z=math.nan, share_ci_low=math.nan,
    share_ci_high=math.nan, rope_below=math.nan, rope_inside=math.nan, rope_above=math.nan, p_tost=math.nan,
    p_tost_holm=math.nan, p_tost_new_data=math.nan, p_tost_new_data_holm=math.nan, equivalence_attainable=False,
    mde_80=math.nan, seeds_for_smallest_effect=math.nan, sd_diff=math.nan, min_p_permutation=math.nan,
)  # fmt: skip


def _seed_level(xa: np.ndarray, xb: np.ndarray, rope: float, alpha: float, smallest_effect: float | None,
                planning_alpha: float) -> dict[str, object]:
    """The seed-level statistics of 2 or more pairs (points): interval, tests, ROPE, planning."""
    d = xa - xb
    n = d.size
    diff = float(np.mean(d))
    constant = zero_spread(d)
    sd_d = 0.0 if constant else float(np.std(d, ddof=1))
    out: dict[str, object] = dict(
        p_paired=paired_p(d), p_welch=float(st.ttest_ind(xa, xb, equal_var=False).pvalue),
        p_permutation=permutation_p(d), min_p_permutation=smallest_permutation_p(d), d_z=d_z(d), sd_diff=sd_d,
        mde_80=mde_80(sd_d, n, planning_alpha),
        seeds_for_smallest_effect=seeds_for_power(smallest_effect, sd_d, planning_alpha),
    )  # fmt: skip
    out.update(zip(("share_ci_low", "share_ci_high"), share_interval(d[:, None], examples=False)))
    if constant:  # no interval and no posterior from zero spread; the TOST by sign flips
        out.update(p_tost=sign_flip_tost_p(d, rope),
                   equivalence_attainable=equivalence_attainable(0.0, math.nan, rope, alpha, seeds=n))
        return out
    ci = st.ttest_1samp(d, 0.0).confidence_interval(0.95)
    below, inside, above = rope_probabilities(diff, sd_d / math.sqrt(n), n - 1, rope)
    out.update(
        ci_low=float(ci.low), ci_high=float(ci.high), rope_below=below, rope_inside=inside, rope_above=above,
        p_tost=float(ttost_paired(xa, xb, -rope, rope)[0]),
        equivalence_attainable=equivalence_attainable(sd_d / math.sqrt(n), n - 1, rope, alpha),
    )  # fmt: skip
    return out


def _row_warnings(c: Comparison, dropped: int, alpha: float, one_image: float | None) -> tuple[str, ...]:
    out = []
    if dropped:
        out.append(f"{dropped} seed(s) run for only one arm were left out of the pairing")
    if one_image is not None and c.rope < one_image * (1 - 1e-12):
        out.append(
            f"the ROPE of ±{c.rope:g} points is finer than one test image here ({one_image:.3g} points): "
            "it cannot be told apart from a single image"
        )
    if c.n < 2:
        out.append(f"only {c.n} paired seed(s): no test is possible")
        return tuple(out)
    if c.n < _FEW_SEEDS:
        out.append(f"only n = {c.n} paired seeds (fewer than {_FEW_SEEDS})")
    if c.min_p_permutation > alpha:
        out.append(
            f"the exact sign-flip permutation test cannot reach p < {alpha:g} with n = {c.n} "
            f"(smallest attainable p = 2/2^{_nonzero(c)} = {c.min_p_permutation:.4g})"
        )
    if c.sd_diff == 0.0:
        out.append("every paired difference is the same: zero spread is no evidence of a zero-variance effect, "
                   "so there is no t interval and p paired and p TOST come from the exact sign-flip tests")
    return tuple(out)


def _nonzero(c: Comparison) -> int:
    """n - m of a comparison: the number of nonzero differences behind its smallest p."""
    return int(round(math.log2(2.0 / c.min_p_permutation)))
