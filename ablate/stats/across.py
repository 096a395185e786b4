"""Evidence across datasets (Demsar 2006): each contrast with datasets as the units, random
effects over datasets with seeds, and, from 5 datasets, Friedman's test with average ranks.

The procedure with its references is docs/statistics.md (generated from
``ablate.report.procedure``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st
from statsmodels.stats.meta_analysis import combine_effects

from ablate.analysis import is_finite
from ablate.stats._common import as_frame, quiet
from ablate.stats.exact import EXACT_UNITS_PER_POINT, exact_units, sign_test_p, smallest_permutation_p
from ablate.stats.results import (MIN_ROPE, accuracy_by_arm, arm_order, dataset_order, missing_arms,
                                  n_test_by_dataset, resolve_contrasts, sort_results, validate_results)

__all__ = [
    "ACROSS_COLUMNS",
    "FriedmanResult",
    "AcrossDifference",
    "Aggregate",
    "across_datasets",
    "across_frame",
    "aggregate",
    "iman_davenport",
    "random_effects",
]

_MIN_DATASETS_FOR_FRIEDMAN = 5


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman test over arms across datasets, with what a CD diagram needs (Demsar 2006).

    ``statistic``/``pvalue`` are Friedman's chi-square; ``f_statistic``/``f_pvalue`` the
    Iman-Davenport F, which decides (``rejects``) whether the CD diagram is drawn.
    """

    arms: tuple[str, ...]
    n_datasets: int
    statistic: float
    pvalue: float
    f_statistic: float
    f_pvalue: float
    rejects: bool
    avg_ranks: Mapping[str, float]  # rank 1 = highest mean accuracy
    cd: float  # Nemenyi critical difference of average ranks at alpha


@dataclass(frozen=True)
class AcrossDifference:
    """One contrast across datasets, in points: datasets as units, and random effects.

    ``n_datasets``: datasets with at least one paired seed; ``a_ahead``/``b_ahead``: datasets
    where the mean paired difference is above/below 0. ``re_*``, ``tau2``, ``i2`` are NaN
    unless ``re_datasets >= 2``; ``pi_*`` unless ``re_datasets >= 3``.
    """

    arm_a: str
    arm_b: str
    n_datasets: int
    a_ahead: int
    b_ahead: int
    p_sign_datasets: float
    p_wilcoxon_datasets: float
    min_p_datasets: float
    re_datasets: int
    re_diff: float
    re_se: float
    re_ci_low: float
    re_ci_high: float
    tau2: float
    i2: float
    pi_low: float
    pi_high: float
    datasets: str
    notes: str


ACROSS_COLUMNS = tuple(f.name for f in dataclasses.fields(AcrossDifference))


@dataclass(frozen=True)
class Aggregate:
    """Evidence across datasets: per-contrast differences, a Friedman test, and notes."""

    n_datasets: int
    friedman: FriedmanResult | None
    across: tuple[AcrossDifference, ...]
    notes: tuple[str, ...]


def across_datasets(
    results: pd.DataFrame,
    contrasts: Sequence[tuple[str, str]] | None = None,
    alpha: float = 0.05,
) -> list[AcrossDifference]:
    """Each contrast across datasets: datasets as the units, and random effects (docs/statistics.md).

    Per dataset, the mean paired difference A - B over the seeds run for both arms
    (points; a dataset without a paired seed is left out and named in ``notes``).

    * ``a_ahead``/``b_ahead``, ``p_sign_datasets`` (``scipy.stats.binomtest``, ties
      dropped), ``p_wilcoxon_datasets`` (``scipy.stats.wilcoxon``, its defaults: zero
      differences dropped, exact distribution when there are no ties) and
      ``min_p_datasets = 2 / 2**k`` over the k datasets that are not tied; NaN below 2
      datasets.
    * random effects over the datasets with >= 2 paired seeds, when there are >= 2 of them:
      :func:`random_effects` of the mean differences with variances ``sd**2 / n`` (Paule-Mandel
      tau^2, HKSJ interval with the max(1, q) truncation, Higgins et al.'s prediction interval
      from 3 datasets). A zero-variance dataset's variance is ``(100 / n_test)**2 / n``
      (n_test unknown: ``0.1**2 / n``).
    """
    results = sort_results(validate_results(results))
    contrasts = resolve_contrasts(results, contrasts)
    n_test = n_test_by_dataset(results)
    by_dataset = {
        dataset: accuracy_by_arm(group)
        for dataset, group in results.groupby("dataset", sort=False)
    }
    return [_across_one(by_dataset, n_test, a, b, alpha) for a, b in contrasts]


def _across_one(
    by_dataset: Mapping[str, Mapping[str, pd.Series]], n_test: Mapping[str, float], arm_a: str, arm_b: str, alpha: float
) -> AcrossDifference:
    nan = math.nan
    names, means, variances, re_names, notes = [], [], [], [], []
    floor_unknown = []
    for dataset, arms in by_dataset.items():
        if arm_a not in arms or arm_b not in arms:
            absent = [arm for arm in (arm_a, arm_b) if arm not in arms]
            notes.append(f"{dataset} left out: no results for {' and '.join(absent)}")
            continue
        seeds = sorted(set(arms[arm_a].index) & set(arms[arm_b].index))
        if not seeds:
            notes.append(f"{dataset} left out: no seed run for both arms")
            continue
        d = (arms[arm_a].loc[seeds].to_numpy(dtype=float) - arms[arm_b].loc[seeds].to_numpy(dtype=float)) * 100.0
        names.append(dataset)
        means.append(float(np.mean(d)))
        n = len(seeds)
        if n >= 2:
            q = exact_units(d)
            if np.all(q == q[0]):  # zero variance: one test image's difference squared over n
                tests = n_test.get(dataset, nan)
                image = 100.0 / tests if is_finite(tests) and tests > 0 else MIN_ROPE
                if not (is_finite(tests) and tests > 0):
                    floor_unknown.append(dataset)
                variances.append(image**2 / n)
            else:
                variances.append(float(np.var(d, ddof=1)) / n)
            re_names.append(dataset)
    if floor_unknown:
        notes.append(
            f"zero-variance differences on {', '.join(floor_unknown)} without n_test: "
            f"variance floor of {MIN_ROPE:g} points squared over n used"
        )
    k = len(names)
    units = _datasets_as_units(means)
    re = dict(re_datasets=len(re_names), re_diff=nan, re_se=nan, re_ci_low=nan, re_ci_high=nan, tau2=nan,
              i2=nan, pi_low=nan, pi_high=nan)  # fmt: skip
    if len(re_names) >= 2:
        re_means = [m for name, m in zip(names, means) if name in re_names]
        re.update(random_effects(np.array(re_means), np.array(variances), alpha))
    elif k >= 2:
        notes.append("random effects need 2 or more datasets with 2 or more paired seeds")
    return AcrossDifference(
        arm_a=arm_a, arm_b=arm_b, n_datasets=k, datasets=", ".join(names), notes="; ".join(notes), **units, **re
    )


def _datasets_as_units(means: Sequence[float]) -> dict[str, float]:
    """Datasets ahead each way, the sign and Wilcoxon tests over them, the smallest reachable p."""
    nan = math.nan
    units = dict(a_ahead=0, b_ahead=0, p_sign_datasets=nan, p_wilcoxon_datasets=nan, min_p_datasets=nan)
    if len(means):
        q = exact_units(np.array(means))
        units.update(a_ahead=int(np.sum(q > 0)), b_ahead=int(np.sum(q < 0)))
    if len(means) >= 2:
        exact = exact_units(np.array(means)) / EXACT_UNITS_PER_POINT
        units.update(
            p_sign_datasets=sign_test_p(exact),
            p_wilcoxon_datasets=_wilcoxon_p(exact),
            min_p_datasets=smallest_permutation_p(exact),
        )
    return units


def _wilcoxon_p(d: np.ndarray) -> float:
    if not np.any(d != 0):
        return 1.0
    with quiet():
        return float(st.wilcoxon(d).pvalue)


def random_effects(effect: np.ndarray, variance: np.ndarray, alpha: float = 0.05) -> dict[str, float]:
    """Random-effects summary of per-data-set differences ``effect`` with within-data-set ``variance``.

    statsmodels' ``combine_effects`` (Paule-Mandel tau^2, its default "iterated" method) gives
    the weights; the interval is Hartung-Knapp-Sidik-Jonkman's on t(k - 1) with the scale
    truncated at 1, ``se = sqrt(max(1, q) / sum(w))``, q the weighted residual mean square
    (Röver et al. 2015): without the truncation the interval covered 0.90 to 0.94 at 3 to 5 data
    sets of 4 to 6 seeds. From 3 data sets the prediction interval for a new data set in Higgins
    et al.'s (2009) form, ``mean +/- t_{1 - alpha/2}(k - 2) sqrt(tau^2 + 1 / sum(w))``. ``i2`` is
    truncated at 0. Keys: ``re_diff, re_se, re_ci_low, re_ci_high, tau2, i2, pi_low, pi_high``.
    """
    effect, variance = np.asarray(effect, dtype=float), np.asarray(variance, dtype=float)
    k = effect.size
    with quiet():
        res = combine_effects(effect, variance, use_t=True, alpha=alpha)
    mean, var_mean, tau2, i2 = float(res.mean_effect_re), float(res.var_eff_w_re), float(res.tau2), float(res.i2)
    se = math.sqrt(max(1.0, float(res.scale_hksj_re)) * var_mean)
    half = float(st.t.isf(alpha / 2, k - 1)) * se
    out = dict(re_diff=mean, re_se=se, re_ci_low=mean - half, re_ci_high=mean + half, tau2=tau2,
               i2=max(0.0, i2) if math.isfinite(i2) else 0.0, pi_low=math.nan, pi_high=math.nan)  # fmt: skip
    if k >= 3:
        half = float(st.t.isf(alpha / 2, k - 2)) * math.sqrt(tau2 + var_mean)
        out.update(pi_low=mean - half, pi_high=mean + half)
    return out


def across_frame(differences: Sequence[AcrossDifference]) -> pd.DataFrame:
    """The rows of :func:`across_datasets` as a DataFrame with :data:`ACROSS_COLUMNS`."""
    frame = as_frame(differences, ACROSS_COLUMNS)
    for name in ("n_datasets", "a_ahead", "b_ahead", "re_datasets"):
        frame[name] = frame[name].astype("int64")
    return frame


def aggregate(
    results: pd.DataFrame,
    contrasts: Sequence[tuple[str, str]] | None = None,
    alpha: float = 0.05,
) -> Aggregate:
    """Evidence across datasets (Demsar 2006): per-contrast differences and, from 5 datasets, Friedman.

    * every contrast: :func:`across_datasets` (datasets as units; random effects with seeds),
      also with one dataset, where it holds only the counts.
    * >= 5 datasets and >= 3 arms run on every dataset: Friedman's test on per-dataset mean
      accuracies (``scipy.stats.friedmanchisquare``), read through the Iman-Davenport F
      (``scipy.stats.f``), average ranks (1 = best, ties averaged) and the Nemenyi critical
      difference ``q_alpha * sqrt(k (k + 1) / (6 N))`` with ``q_alpha`` the studentized range
      quantile over ``sqrt(2)``.
    * arms missing on a dataset are named in ``notes``.
    """
    results = sort_results(validate_results(results))
    datasets = dataset_order(results)
    k = len(datasets)
    notes: list[str] = []
    absent: dict[str, list[str]] = {}
    for dataset, arm in missing_arms(results):
        absent.setdefault(arm, []).append(dataset)
    for arm, where in absent.items():
        notes.append(f"arm {arm} has no results on {', '.join(where)}: contrasts with it are skipped there"
                     + (" and it is left out of the Friedman test" if k >= _MIN_DATASETS_FOR_FRIEDMAN else ""))
    across = tuple(across_datasets(results, contrasts, alpha))
    if k < 2:
        notes.append("one dataset: the per-dataset comparison is the whole evidence")
        return Aggregate(k, None, across, tuple(notes))
    friedman = None
    if k >= _MIN_DATASETS_FOR_FRIEDMAN:
        friedman = _friedman(results, alpha)
        if friedman is None:
            notes.append("Friedman's test needs at least 3 arms run on every dataset")
    return Aggregate(k, friedman, across, tuple(notes))


def iman_davenport(chi2: float, n_datasets: int, k_arms: int) -> tuple[float, float]:
    """Iman-Davenport F of a Friedman chi-square, and its p on (k - 1, (k - 1)(N - 1)) df."""
    n, k = n_datasets, k_arms
    denominator = n * (k - 1) - chi2
    if not math.isfinite(chi2):
        return (math.nan, math.nan)
    if denominator <= 0:  # every dataset ranks the arms the same way: F is infinite
        return (math.inf, 0.0)
    f = (n - 1) * chi2 / denominator
    return (float(f), float(st.f.sf(f, k - 1, (k - 1) * (n - 1))))


def _friedman(results: pd.DataFrame, alpha: float) -> FriedmanResult | None:
    means = results.pivot_table(index="dataset", columns="arm", values="accuracy", aggfunc="mean", sort=False)
    means = means[[a for a in arm_order(results) if a in means.columns]].dropna(axis=1)
    arms = tuple(means.columns)
    k, n = len(arms), len(means)
    if k < 3:
        return None
    table = means.to_numpy() * 100.0  # (datasets, arms)
    with quiet():  # all arms tied on every dataset: 0/0, NaN statistic
        statistic, pvalue = st.friedmanchisquare(*table.T)
    f_statistic, f_pvalue = iman_davenport(float(statistic), n, k)
    ranks = st.rankdata(-table, axis=1).mean(axis=0)
    q_alpha = st.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    cd = q_alpha * math.sqrt(k * (k + 1) / (6.0 * n))
    return FriedmanResult(
        arms=arms,
        n_datasets=n,
        statistic=float(statistic),
        pvalue=float(pvalue),
        f_statistic=f_statistic,
        f_pvalue=f_pvalue,
        rejects=bool(math.isfinite(f_pvalue) and f_pvalue < alpha),
        avg_ranks={a: float(r) for a, r in zip(arms, ranks)},
        cd=float(cd),
    )
