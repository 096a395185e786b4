"""Two arms on one dataset, paired by seed: estimate, tests, effect sizes, ROPE, verdict.

:func:`compare` runs :func:`paired_comparison` for every contrast on every dataset, adjusts the
p-values by Holm over the whole table and sets each verdict. The procedure, step by step with
its references, is docs/statistics.md (generated from ``ablate.report.procedure``, which also
writes the report's Procedure section). Degenerate inputs never raise: a statistic that is
undefined is NaN.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ttost_paired

from ablate.analysis import check_settings, is_finite
from ablate.stats._common import as_frame, quiet
from ablate.stats.arms import ArmProfile, arm_profiles
from ablate.stats.power import mde_80, seeds_for_effect
from ablate.stats.results import (accuracy_by_arm, default_rope, n_test_by_dataset, resolve_contrasts, sort_results,
                                  validate_results)

__all__ = [
    "COMPARISON_COLUMNS",
    "Comparison",
    "d_z",
    "share_a_better",
    "sign_test_p",
    "permutation_p",
    "smallest_permutation_p",
    "rope_probabilities",
    "confounded_by",
    "paired_comparison",
    "verdict",
    "compare",
    "single_recipe_too_short",
]

# sign-flip test: 2**16 = 65,536 flips is exact and still takes milliseconds; beyond that,
# 9,999 Monte-Carlo flips give a p-value with standard error < 0.005 at p = 0.05.
_EXACT_PERMUTATION_MAX_N = 16
_MONTE_CARLO_RESAMPLES = 9_999
_RANDOM_SEED = 0
_FEW_SEEDS = 5
# Differences are compared in integer units of 1e-9 points: far below one test image of any
# split (100 / 10**6 points for a million images) and far above the ~1e-14 noise of x100.
EXACT_UNITS_PER_POINT = 10**9
_CONFOUND_RATIO = 0.10
_CONFOUNDS = (("params", "parameters"), ("train_images", "compute"))


@dataclass(frozen=True)
class Comparison:
    """Arm A vs arm B on one dataset, paired by seed; differences are A - B in points.

    ``p_holm``, ``p_tost_holm`` and ``verdict`` need the whole table, so
    :func:`paired_comparison` leaves them NaN / "" and :func:`compare` fills them in, with
    ``confounded_by`` and ``still_rising``, by :func:`dataclasses.replace`.
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
    d_z: float
    share_a_better: float
    p_sign: float
    rope: float
    rope_below: float
    rope_inside: float
    rope_above: float
    p_tost: float
    p_tost_holm: float
    mde_80: float
    seeds_for_smallest_effect: float
    sd_diff: float
    confounded_by: str
    still_rising: str
    verdict: str
    warnings: tuple[str, ...]
    # smallest p the permutation test can reach with these differences (not a CSV column)
    min_p_permutation: float = dataclasses.field(default=math.nan, metadata={"csv": False})


COMPARISON_COLUMNS = tuple(f.name for f in dataclasses.fields(Comparison) if f.metadata.get("csv", True))


def exact_units(d: np.ndarray) -> np.ndarray:
    """Differences in points as integer multiples of 1e-9 points, so equal counts tie exactly."""
    return np.rint(np.asarray(d, dtype=float) * EXACT_UNITS_PER_POINT).astype(np.int64)


def _small_sample_factor(m: int) -> float:
    """J(m) = Gamma(m/2) / (sqrt(m/2) Gamma((m-1)/2)), the exact bias correction of a standardized mean."""
    return math.exp(special.gammaln(m / 2) - special.gammaln((m - 1) / 2)) / math.sqrt(m / 2)


def d_z(d: Sequence[float] | np.ndarray) -> float:
    """Standardized mean of paired differences, ``mean(d) / sd(d) * J(n - 1)`` (Lakens 2013).

    NaN below 3 pairs (J(1) is 0: one degree of freedom carries no usable sd) and when
    ``sd(d)`` is 0.
    """
    d = np.asarray(d, dtype=float)
    n = d.size
    if n < 3:
        return math.nan
    sd = float(np.std(d, ddof=1))
    if sd == 0.0 or not math.isfinite(sd):
        return math.nan
    return float(np.mean(d) / sd * _small_sample_factor(n - 1))


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


def permutation_p(d: Sequence[float] | np.ndarray) -> float:
    """Two-sided sign-flip permutation p of paired differences ``d`` (points), ties exact.

    ``d`` is rounded to integer units of 1e-9 points and the statistic is the integer sum of
    the flipped differences (for fixed n the same ordering as their mean), so that flips that
    give equal sums on the exact counts compare equal; ``scipy.stats.permutation_test``
    enumerates all ``2**n`` flips when ``n <= 16``, else draws 9,999 with a fixed seed.
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
        alternative="two-sided",
        rng=np.random.default_rng(_RANDOM_SEED),
    )
    return float(result.pvalue)


def smallest_permutation_p(d: Sequence[float] | np.ndarray) -> float:
    """Smallest two-sided p the sign-flip test can reach: ``2 / 2**(n - m)``, m zero differences."""
    q = exact_units(d)
    nonzero = int(np.count_nonzero(q))
    return min(1.0, 2.0 / 2.0**nonzero)


def rope_probabilities(diff: float, scale: float, df: int, rope: float) -> tuple[float, float, float]:
    """P(mean difference < -rope), P(inside), P(> +rope) under a Student t posterior.

    The posterior of the Bayesian paired t-test with a flat prior (Benavoli et al. 2017):
    ``t(df = n - 1, loc = mean(d), scale = sd(d) / sqrt(n))``. With ``scale == 0`` the
    posterior is a point mass at ``diff`` (a point on a bound counts as inside).
    """
    if not (math.isfinite(diff) and math.isfinite(scale)) or df < 1:
        return (math.nan, math.nan, math.nan)
    if scale == 0.0:
        below, above = float(diff < -rope), float(diff > rope)
        return (below, 1.0 - below - above, above)
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
) -> Comparison:
    """Compare two arms on one dataset; ``a`` and ``b`` are accuracies (fractions) indexed by seed.

    Only seeds in both indexes are used. ``one_image`` is one test image in points (100 /
    n_test), used to flag a ROPE finer than that. ``p_holm``, ``p_tost_holm`` are left NaN,
    ``verdict``, ``confounded_by`` and ``still_rising`` empty; the per-row warnings are filled
    in. See docs/statistics.md for every statistic.
    """
    seeds = sorted(set(a.index) & set(b.index))
    dropped = len(set(a.index) ^ set(b.index))
    xa = a.loc[seeds].to_numpy(dtype=float) * 100.0
    xb = b.loc[seeds].to_numpy(dtype=float) * 100.0
    n = len(seeds)
    nan = math.nan
    mean_a = float(np.mean(xa)) if n else nan
    mean_b = float(np.mean(xb)) if n else nan
    d = xa - xb
    diff = float(np.mean(d)) if n else nan
    stats_ = dict(
        ci_low=nan, ci_high=nan, p_paired=nan, p_welch=nan, p_permutation=nan, d_z=nan,
        share_a_better=nan, p_sign=nan, rope_below=nan, rope_inside=nan, rope_above=nan, p_tost=nan,
        mde_80=nan, seeds_for_smallest_effect=nan, sd_diff=nan, min_p_permutation=nan,
    )  # fmt: skip
    with quiet():
        if n >= 1:
            stats_.update(share_a_better=share_a_better(d), p_sign=sign_test_p(d))
        if n >= 2:
            paired = st.ttest_rel(xa, xb)
            ci = paired.confidence_interval(0.95)
            sd_d = float(np.std(d, ddof=1))
            below, inside, above = rope_probabilities(diff, sd_d / math.sqrt(n), n - 1, rope)
            stats_.update(
                ci_low=float(ci.low),
                ci_high=float(ci.high),
                p_paired=float(paired.pvalue),
                p_welch=float(st.ttest_ind(xa, xb, equal_var=False).pvalue),
                p_permutation=permutation_p(d),
                min_p_permutation=smallest_permutation_p(d),
                d_z=d_z(d),
                rope_below=below,
                rope_inside=inside,
                rope_above=above,
                p_tost=float(ttost_paired(xa, xb, -rope, rope)[0]),
                sd_diff=sd_d,
                mde_80=mde_80(sd_d, n, alpha),
                seeds_for_smallest_effect=seeds_for_effect(smallest_effect, sd_d, alpha),
            )
    comparison = Comparison(
        dataset=dataset, arm_a=arm_a, arm_b=arm_b, n=n, mean_a=mean_a, mean_b=mean_b, diff=diff,
        rope=float(rope), p_holm=nan, p_tost_holm=nan, confounded_by="", still_rising="", verdict="",
        warnings=(), **stats_,
    )  # fmt: skip
    return dataclasses.replace(comparison, warnings=_row_warnings(comparison, dropped, alpha, one_image))


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
        out.append("paired differences have zero variance; tests are degenerate")
    return tuple(out)


def _nonzero(c: Comparison) -> int:
    """n - m of a comparison: the number of nonzero differences behind its smallest p."""
    return int(round(math.log2(2.0 / c.min_p_permutation)))


def verdict(c: Comparison, alpha: float = 0.05) -> str:
    """The verdict of a comparison whose Holm p-values are set (docs/statistics.md, the verdict)."""
    if c.n < 2:
        text = "insufficient data"
    else:
        equivalent = math.isfinite(c.p_tost_holm) and c.p_tost_holm < alpha
        if math.isfinite(c.p_holm) and c.p_holm < alpha:
            better = c.arm_a if c.diff > 0 else c.arm_b
            text = f"significant: {better} better" + (" (within ROPE)" if equivalent else "")
            if c.min_p_permutation > alpha:
                text += (
                    f"; paired t only: the permutation test cannot reach p < {alpha:g} at n = {c.n}"
                )
        elif equivalent:
            text = "practically equivalent"
        else:
            text = "not significant"
    if c.still_rising:
        text += f"; still rising: {c.still_rising}"
    return text


def confounded_by(a: ArmProfile | Mapping[str, float], b: ArmProfile | Mapping[str, float]) -> str:
    """What differs by more than 10% between two arms besides the named factor.

    "parameters" (median ``params``), "compute" (median ``train_images``), both joined by
    ", ", "" when neither, "unknown" when neither is known; a factor that is unknown while
    the other is confounded is named as, e.g., "compute unknown".
    """
    get = (lambda p, k: getattr(p, k)) if isinstance(a, ArmProfile) else (lambda p, k: p.get(k, math.nan))
    parts, unknown = [], []
    for column, label in _CONFOUNDS:
        x, y = get(a, column), get(b, column)
        if not (is_finite(x) and is_finite(y)):
            unknown.append(label)
            continue
        x, y = float(x), float(y)
        low = min(x, y)
        if (low == 0.0 and x != y) or (low > 0 and abs(x - y) / low > _CONFOUND_RATIO):
            parts.append(label)
    if len(unknown) == len(_CONFOUNDS):
        return "unknown"
    return ", ".join(parts + [f"{label} unknown" for label in unknown])


def compare(
    results: pd.DataFrame,
    contrasts: Sequence[tuple[str, str]] | None = None,
    rope: float | None = None,
    alpha: float = 0.05,
    smallest_effect: float | None = None,
    still_rising: float = 2.0,
) -> pd.DataFrame:
    """Compare arms pairwise on every dataset; one row per (dataset, contrast).

    Args:
        results: results table (``dataset, arm, seed, accuracy``; accuracy a fraction; the
            optional columns feed ``rope``, ``confounded_by`` and ``still_rising``).
        contrasts: ``(arm_a, arm_b)`` pairs; differences are A - B. Default:
            :func:`default_contrasts` of the arms in order of first appearance. A contrast
            whose arms are not both run on a dataset is skipped there (see
            :func:`missing_arms`).
        rope: half-width of the region of practical equivalence, in points; None: per
            dataset :func:`default_rope` of its median ``n_test``.
        alpha: significance level for the Holm-adjusted verdict, TOST and planning figures.
        smallest_effect: smallest difference of interest in points, for
            ``seeds_for_smallest_effect``; None leaves that column NaN.
        still_rising: late validation gain in points above which an arm is still rising.

    Returns:
        A DataFrame with :data:`COMPARISON_COLUMNS` (``warnings`` joined with "; "), rows in
        dataset order then contrast order.

    Raises:
        ConfigError: bad results table, a contrast naming an arm that no dataset has, a
            contrast of an arm with itself, or ``rope``/``alpha``/``smallest_effect``/
            ``still_rising`` out of range.
    """
    return as_frame(_comparisons(results, contrasts, rope, alpha, smallest_effect, still_rising), COMPARISON_COLUMNS)


def _comparisons(
    results: pd.DataFrame,
    contrasts: Sequence[tuple[str, str]] | None,
    rope: float | None,
    alpha: float,
    smallest_effect: float | None,
    still_rising: float,
) -> list[Comparison]:
    check_settings(rope, alpha, smallest_effect, still_rising)
    results = sort_results(validate_results(results))
    contrasts = resolve_contrasts(results, contrasts)
    n_test = n_test_by_dataset(results)
    profiles = {(p.dataset, p.arm): p for p in arm_profiles(results, still_rising)}
    rows: list[Comparison] = []
    for dataset, group in results.groupby("dataset", sort=False):
        by_arm = accuracy_by_arm(group)
        tests = n_test.get(dataset, math.nan)
        one_image = 100.0 / tests if is_finite(tests) and tests > 0 else None
        row_rope = default_rope(tests) if rope is None else float(rope)
        for arm_a, arm_b in contrasts:
            if arm_a not in by_arm or arm_b not in by_arm:
                continue
            row = paired_comparison(
                dataset, arm_a, arm_b, by_arm[arm_a], by_arm[arm_b], rope=row_rope, alpha=alpha,
                smallest_effect=smallest_effect, one_image=one_image,
            )  # fmt: skip
            pa, pb = profiles[(dataset, arm_a)], profiles[(dataset, arm_b)]
            rising = ", ".join(p.arm for p in (pa, pb) if p.still_rising)
            rows.append(dataclasses.replace(row, confounded_by=confounded_by(pa, pb), still_rising=rising))
    return _with_holm(rows, alpha)


def _holm(p: np.ndarray, alpha: float) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    finite = np.isfinite(p)
    adjusted = np.full(p.shape, math.nan)
    if finite.any():
        adjusted[finite] = multipletests(p[finite], alpha=alpha, method="holm")[1]
    return adjusted


def _with_holm(rows: list[Comparison], alpha: float) -> list[Comparison]:
    """Holm-adjust p_paired and p_tost over every row with a defined p-value, then set each verdict."""
    p_holm = _holm(np.array([r.p_paired for r in rows], dtype=float), alpha)
    p_tost_holm = _holm(np.array([r.p_tost for r in rows], dtype=float), alpha)
    out = []
    for row, ph, pt in zip(rows, p_holm, p_tost_holm):
        row = dataclasses.replace(row, p_holm=float(ph), p_tost_holm=float(pt))
        out.append(dataclasses.replace(row, verdict=verdict(row, alpha)))
    return out


def single_recipe_too_short(
    results: pd.DataFrame, comparisons: pd.DataFrame, alpha: float = 0.05
) -> list[dict[str, object]]:
    """Datasets where ``single-long`` is significantly better than ``single``.

    A contrast row of the two arms decides (its Holm verdict); on a dataset without such a
    row, a paired t-test of single-long vs single at ``alpha`` is computed for the purpose.
    Returns one ``{"dataset", "diff", "p", "source"}`` per such dataset ("contrast" or
    "paired t").
    """
    results = sort_results(validate_results(results))
    out: list[dict[str, object]] = []
    for dataset, group in results.groupby("dataset", sort=False):
        arms = set(group["arm"])
        if not {"single", "single-long"} <= arms:
            continue
        rows = comparisons[
            (comparisons["dataset"].astype(str) == dataset)
            & (comparisons[["arm_a", "arm_b"]].astype(str).apply(frozenset, axis=1) == frozenset({"single", "single-long"}))
        ] if not comparisons.empty else comparisons
        if len(rows):
            r = rows.iloc[0]
            sign = 1.0 if r["arm_a"] == "single-long" else -1.0
            if str(r["verdict"]).startswith("significant: single-long better"):
                out.append({"dataset": dataset, "diff": sign * float(r["diff"]), "p": float(r["p_holm"]),
                            "source": "contrast"})
            continue
        by_arm = accuracy_by_arm(group)
        row = paired_comparison(dataset, "single-long", "single", by_arm["single-long"], by_arm["single"], alpha=alpha)
        if math.isfinite(row.p_paired) and row.p_paired < alpha and row.diff > 0:
            out.append({"dataset": dataset, "diff": row.diff, "p": row.p_paired, "source": "paired t"})
    return out
