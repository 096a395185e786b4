"""Seeds and test examples both random: the difference of two arms on new data from the same distribution.

Every seed of both arms is scored on the same N test examples, so the per-example differences
``x[s, i] = 100 (correct_A[s, i] - correct_B[s, i])`` (points) form a crossed two-way design
without replication: seeds by examples. Treating the examples as fixed answers a question about
this test set only (Clark 1973, "the language-as-fixed-effect fallacy"); with both random the
interval covers what a new draw of seeds *and* of test examples would give (Bouthillier et al.
2021). :func:`crossed_design` gives the ANOVA mean squares and the interval with Satterthwaite's
degrees of freedom; :func:`paired_bootstrap` resamples seeds and, jointly for every run, test
examples. The procedure with its references: docs/statistics.md (``ablate.report.procedure``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

from ablate.stats.exact import exact_units, permutation_p

__all__ = ["CrossedDesign", "crossed_design", "paired_bootstrap", "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED"]

# 2,000 resamples put the Monte-Carlo error of a 2.5% percentile at about 0.35% of the
# distribution, below the 1/S steps of a share of S seeds; seeded, so comparisons.csv regenerates
# byte for byte.
BOOTSTRAP_RESAMPLES = 2_000
BOOTSTRAP_SEED = 0
_CHUNK = 200  # resamples drawn at once: 200 x 10,000 test examples of counts is 16 MB


@dataclass(frozen=True)
class CrossedDesign:
    """The mean difference A - B (points) over ``seeds`` x ``examples`` with seeds and examples random.

    ``ms_*``: the two-way ANOVA mean squares without replication; ``se``: the standard error of
    the mean (:func:`crossed_design`); ``df``: Satterthwaite's; ``ci_low``/``ci_high``: the 95% t
    interval; ``p``: two-sided t at ``df``;
    ``sd_test_sampling``: the sd the test examples alone add to the mean,
    ``sqrt(max(0, MS_example - MS_residual) / (S N))``. Undefined values are NaN.
    """

    seeds: int
    examples: int
    mean: float
    ms_seed: float
    ms_example: float
    ms_residual: float
    se: float
    df: float
    ci_low: float
    ci_high: float
    p: float
    sd_test_sampling: float


def _mean_squares(x: np.ndarray) -> tuple[float, float, float]:
    """MS_seed, MS_example, MS_residual of a two-way layout without replication (rows: seeds)."""
    s, n = x.shape
    grand = x.mean()
    row = x.mean(axis=1)
    col = x.mean(axis=0)
    ms_seed = n * float(np.sum((row - grand) ** 2)) / (s - 1)
    ms_example = s * float(np.sum((col - grand) ** 2)) / (n - 1)
    residual = x - row[:, None] - col[None, :] + grand
    ms_residual = float(np.sum(residual**2)) / ((s - 1) * (n - 1))
    return ms_seed, ms_example, ms_residual


def crossed_design(x: np.ndarray, confidence: float = 0.95) -> CrossedDesign:
    """Mean, interval and test of the difference on new data, from ``x`` (seeds x examples, points).

    With S seeds and N examples, Var(mean) = sigma2_seed / S + sigma2_example / N +
    sigma2_residual / (S N), each component estimated from the mean squares and truncated at zero
    (a negative estimate is no evidence of a negative variance; Searle, Casella and McCulloch
    1992): S N Var(mean) = MS_residual + max(MS_seed - MS_residual, 0) + max(MS_example -
    MS_residual, 0). With both excesses positive this is (MS_seed + MS_example - MS_residual), on
    Satterthwaite's (1946) degrees of freedom ``(MS_seed + MS_example - MS_residual)**2 /
    (MS_seed**2 / (S - 1) + MS_example**2 / (N - 1) + MS_residual**2 / ((S - 1)(N - 1)))``; with
    neither, MS_residual alone on its ``(S - 1)(N - 1)`` df; with the examples' negative, MS_seed
    alone on S - 1 df, which is the interval over seeds alone; with the seeds' negative, MS_example
    alone on N - 1 df. So the standard error for new data is never below this test set's,
    sqrt(MS_seed / (S N)) (without the truncation it was, when the examples' estimate came out
    negative). The interval can still be narrower than this test set's where its df exceed S - 1
    and the t quantile falls: chiefly when the seeds' component is truncated at zero (MS_seed <
    MS_residual), so the variance is MS_example on N - 1 df (MS_residual on (S - 1)(N - 1) df when
    the examples' is truncated too), not much above MS_seed while t(S - 1) falls to nearly the
    normal quantile; with both components positive Satterthwaite's df can exceed S - 1 too. The interval and the two-sided p come from Student's t at that df
    (``scipy.stats.t``). When every x is the same the spread is
    zero, which is no evidence of a zero-variance effect: no interval, and p is the exact
    sign-flip test of the per-seed differences (:func:`ablate.stats.permutation_p`). Fewer than 2
    seeds or 2 examples: everything but the mean is NaN.
    """
    x = np.asarray(x, dtype=float)
    s, n = x.shape
    nan = math.nan
    mean = float(x.mean()) if x.size else nan
    if s < 2 or n < 2:
        return CrossedDesign(s, n, mean, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    ms_seed, ms_example, ms_residual = _mean_squares(x)
    sd_test = math.sqrt(max(0.0, ms_example - ms_residual) / (s * n))
    if np.all(x == x.flat[0]):  # zero spread: no interval, the exact sign-flip test of the seeds
        return CrossedDesign(s, n, mean, ms_seed, ms_example, ms_residual, 0.0, nan, nan, nan,
                             permutation_p(x.mean(axis=1)), sd_test)
    variance, df = _truncated_components(ms_seed, ms_example, ms_residual, s, n)
    se = math.sqrt(variance / (s * n))
    half = float(st.t.isf((1.0 - confidence) / 2.0, df)) * se
    p = float(2.0 * st.t.sf(abs(mean) / se, df))
    return CrossedDesign(s, n, mean, ms_seed, ms_example, ms_residual, se, float(df), mean - half, mean + half, p,
                         sd_test)


def _truncated_components(ms_seed: float, ms_example: float, ms_residual: float, s: int, n: int) -> tuple[float, float]:
    """S N Var(mean) with each variance component truncated at zero, and its Satterthwaite df: the
    linear combination a MS_seed + b MS_example + c MS_residual, a and b 1 where that component's
    excess over MS_residual is positive, c = 1 - a - b (see :func:`crossed_design`)."""
    a = 1.0 if ms_seed > ms_residual else 0.0
    b = 1.0 if ms_example > ms_residual else 0.0
    c = 1.0 - a - b
    variance = a * ms_seed + b * ms_example + c * ms_residual
    dof = (a * ms_seed) ** 2 / (s - 1) + (b * ms_example) ** 2 / (n - 1) + (c * ms_residual) ** 2 / ((s - 1) * (n - 1))
    return variance, variance**2 / dof


def paired_bootstrap(
    x: np.ndarray, *, examples: bool, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap the mean difference and the share of seeds where A wins, resampling seeds and examples.

    ``x``: seeds x examples of differences A - B in points (one column, ``examples=False``, for
    per-seed differences). Each resample draws S seeds with replacement and, with ``examples``,
    N test examples with replacement, the same examples for every run (Owen 2007's pigeonhole
    bootstrap of a crossed design); a seed's difference is the mean of its row over the drawn
    examples. Seeded (``numpy.random.default_rng(seed)``), so the same ``x`` gives the same draws.

    Returns:
        ``(means, shares)``, one per resample: the mean difference, and the share of the drawn
        seeds whose difference is above 0, ties (equal in 1e-9 points) counting one half.
    """
    x = np.asarray(x, dtype=float)
    s, n = x.shape
    # Only examples on which some run's difference is not 0 move a mean; their counts are drawn as the
    # marginal of the multinomial over all n (Binomial(n, k/n) draws land on them, spread uniformly).
    informative = x[:, np.any(x != 0, axis=0)] if examples else x
    k = informative.shape[1]
    rng = np.random.default_rng(seed)
    means, shares = [], []
    for start in range(0, resamples, _CHUNK):
        b = min(_CHUNK, resamples - start)
        seed_counts = _counts(rng, b, s, s)  # (b, S)
        example_counts = _counts(rng, b, n, k) if examples else np.ones((b, n), dtype=np.int64)
        per_seed = (example_counts @ informative.T) / n  # (b, S): each seed's difference over the drawn examples
        q = exact_units(per_seed)
        score = np.where(q > 0, 1.0, np.where(q == 0, 0.5, 0.0))
        means.append(np.sum(seed_counts * per_seed, axis=1) / s)
        shares.append(np.sum(seed_counts * score, axis=1) / s)
    return np.concatenate(means), np.concatenate(shares)


def _counts(rng: np.random.Generator, b: int, n: int, k: int) -> np.ndarray:
    """``b`` draws of n items with replacement out of n, as counts of the first k items (b, k)."""
    totals = rng.binomial(n, k / n, size=b) if k < n else np.full(b, n)
    picks = rng.integers(0, k, size=int(totals.sum())) + np.repeat(np.arange(b) * k, totals)
    return np.bincount(picks, minlength=b * k).reshape(b, k)
