"""Statistics of an ablation study: which arm beats which, by how much, and how sure we are.

Input is a *results table*: one row per (dataset, arm, seed) with the test ``accuracy`` as a
fraction in [0, 1]. Every number this module returns is in **percentage points**
(``accuracy * 100``). Results are frozen dataclasses; :func:`compare` and :func:`summarize`
flatten them into DataFrames for reports and CSV files.

Decision procedure for one contrast (arm A vs arm B on one dataset), written out so a reader
can check it (autorank's docstrings are the model):

1. **Pair by seed.** Only seeds run for both arms count; ``n`` is the number of pairs. A seed
   fixes data order and initialisation, so the paired difference ``d = A - B`` removes the
   seed-to-seed variance that both arms share.
2. **Estimate.** ``diff = mean(d)`` with the 95% Student t interval of a paired mean
   (Student 1908; ``scipy.stats.ttest_rel``).
3. **Test.** ``p_paired`` is the two-sided paired t-test; ``p_welch`` the unpaired Welch test
   (Welch 1947) on the same seeds, shown for readers used to unpaired comparisons;
   ``p_permutation`` the exact sign-flip permutation test of ``d`` (all ``2**n`` sign flips
   when ``n <= 16``, else 9,999 Monte-Carlo flips with a fixed seed), which does not assume
   normality.
4. **Correct for multiplicity.** ``p_holm`` is Holm's (1979) step-down adjustment of
   ``p_paired`` over *every* row of the comparisons table (all contrasts on all datasets), so
   the family-wise error rate is at most ``alpha`` however many rows there are. Rows whose
   ``p_paired`` is undefined (NaN) are not tests and are left out of the family.
5. **Effect sizes.** ``hedges_g``: Cohen's d with the pooled sd, times Hedges' exact
   small-sample correction (Hedges 1981). ``p_superiority``: P(A > B) for a random seed of
   each, the Mann-Whitney U of A divided by ``n_a * n_b`` (ties count one half).
6. **Practical relevance.** A region of practical equivalence (ROPE, default +/-0.1 points).
   ``rope_below/rope_inside/rope_above`` are the posterior probabilities that the mean
   difference lies below ``-rope``, inside, or above ``+rope`` under the Bayesian paired
   t-test of Benavoli et al. (2017): a Student t posterior with ``n - 1`` degrees of freedom,
   location ``mean(d)`` and scale ``sd(d) / sqrt(n)`` (seeds are independent, so the
   correlation correction they use for cross-validation folds is zero). ``p_tost`` is
   Schuirmann's (1987) two one-sided tests for equivalence within +/-rope.
7. **Power.** ``mde_80``: the smallest difference (points) a two-sided paired t-test at
   ``alpha`` detects with 80% power at this ``n`` (effect size d_z from statsmodels'
   ``TTestPower``, times ``sd(d)``). ``seeds_needed``: the number of seeds at which the
   *observed* difference would be detected with 80% power (``inf`` beyond 2**40 seeds).
   ``power``: the power of this ``n`` against the observed difference.
8. **Verdict**, in this order: ``n < 2`` -> "insufficient data"; ``p_holm < alpha`` ->
   "significant: <arm> better" (with "(within ROPE)" appended when ``p_tost < alpha`` too:
   real but too small to matter); else ``p_tost < alpha`` -> "practically equivalent"; else
   "not significant".

Degenerate inputs never raise; a statistic that is undefined is NaN:

* ``n < 2``: every test, interval and effect size is NaN (means are still given for n = 1).
* all differences equal (``sd(d) == 0``): the interval collapses to ``[diff, diff]``; if the
  differences are all 0 the t statistic is 0/0, so ``p_paired`` and ``p_holm`` are NaN,
  ``p_permutation`` is 1, ``p_tost`` is 0 (equivalent); if they are a nonzero constant,
  ``p_paired`` is 0. ``mde_80`` and ``seeds_needed`` are NaN (no variance to plan from), and
  the ROPE probabilities are those of a point mass at ``diff``.
* ``diff == 0`` with ``sd(d) > 0``: ``seeds_needed`` is ``inf`` (no number of seeds detects a
  zero difference).
* both arms constant and equal: ``p_welch`` and ``hedges_g`` are NaN (0/0).

Across datasets (Demsar 2006): with at least 5 datasets and 3 arms run on all of them, the
Friedman test over arms on per-dataset mean accuracies, the average rank of each arm
(rank 1 = best) and the Nemenyi critical difference for a CD diagram. With fewer datasets,
an aggregate mean difference per contrast: the mean over datasets of the per-dataset mean
paired difference, with a 95% percentile bootstrap interval that resamples seeds within each
dataset independently (``scipy.stats.bootstrap``, fixed seed).

References:
    Student (1908). The probable error of a mean. Biometrika 6(1).
    Welch, B. L. (1947). The generalization of "Student's" problem when several different
        population variances are involved. Biometrika 34(1-2).
    Holm, S. (1979). A simple sequentially rejective multiple test procedure.
        Scandinavian Journal of Statistics 6(2).
    Hedges, L. V. (1981). Distribution theory for Glass's estimator of effect size and
        related estimators. Journal of Educational Statistics 6(2).
    Schuirmann, D. J. (1987). A comparison of the two one-sided tests procedure and the power
        approach for assessing the equivalence of average bioavailability. J. Pharmacokinetics
        and Biopharmaceutics 15(6).
    Demsar, J. (2006). Statistical comparisons of classifiers over multiple data sets. JMLR 7.
    Benavoli, A., Corani, G., Demsar, J., Zaffalon, M. (2017). Time for a change: a tutorial
        for comparing multiple classifiers through Bayesian analysis. JMLR 18(77).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from ablate.errors import ConfigError, DataError

__all__ = [
    "summarize_similarity",
    "RESULT_COLUMNS",
    "COMPARISON_COLUMNS",
    "SUMMARY_COLUMNS",
    "DEFAULT_CONTRASTS",
    "ArmSummary",
    "Comparison",
    "FriedmanResult",
    "AggregateDifference",
    "Aggregate",
    "load_results",
    "validate_results",
    "sort_results",
    "default_contrasts",
    "summarize_arm",
    "summarize",
    "paired_comparison",
    "hedges_g",
    "rope_probabilities",
    "verdict",
    "compare",
    "aggregate",
]

RESULT_COLUMNS = ("dataset", "arm", "seed", "accuracy")

# The FMCE study's arms, in the order a reader asks about them.
DEFAULT_CONTRASTS: tuple[tuple[str, str], ...] = (("fmce", "nfmce"), ("nfmce", "single"), ("fmce", "single"))

# sign-flip test: 2**16 = 65,536 flips is exact and still takes milliseconds; beyond that,
# 9,999 Monte-Carlo flips give a p-value with standard error < 0.005 at p = 0.05.
_EXACT_PERMUTATION_MAX_N = 16
_MONTE_CARLO_RESAMPLES = 9_999
_BOOTSTRAP_RESAMPLES = 9_999
_RANDOM_SEED = 0
_TARGET_POWER = 0.8
_FEW_SEEDS = 5
_MIN_DATASETS_FOR_FRIEDMAN = 5


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ArmSummary:
    """One arm on one dataset, in points. ``sd`` and the CI are NaN when ``n < 2``."""

    dataset: str
    arm: str
    n: int
    mean: float
    sd: float
    median: float
    min: float
    max: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Comparison:
    """Arm A vs arm B on one dataset, paired by seed; differences are A - B in points.

    ``p_holm`` and ``verdict`` need the whole table, so :func:`paired_comparison` leaves them
    NaN / "" and :func:`compare` fills them in with :func:`dataclasses.replace`.
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
    hedges_g: float
    p_superiority: float
    rope_below: float
    rope_inside: float
    rope_above: float
    p_tost: float
    verdict: str
    mde_80: float
    seeds_needed: float
    power: float
    sd_diff: float
    warnings: tuple[str, ...]


COMPARISON_COLUMNS = tuple(f.name for f in dataclasses.fields(Comparison))
SUMMARY_COLUMNS = tuple(f.name for f in dataclasses.fields(ArmSummary))


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman test over arms across datasets, with what a CD diagram needs (Demsar 2006)."""

    arms: tuple[str, ...]
    n_datasets: int
    statistic: float
    pvalue: float
    avg_ranks: Mapping[str, float]  # rank 1 = highest mean accuracy
    cd: float  # Nemenyi critical difference of average ranks at alpha


@dataclass(frozen=True)
class AggregateDifference:
    """Mean over datasets of the per-dataset mean paired difference A - B, in points."""

    arm_a: str
    arm_b: str
    datasets: tuple[str, ...]
    mean: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Aggregate:
    """Evidence across datasets: a Friedman test, bootstrap differences, or neither (see notes)."""

    n_datasets: int
    friedman: FriedmanResult | None
    differences: tuple[AggregateDifference, ...]
    notes: tuple[str, ...]


# --------------------------------------------------------------------------- input


def load_results(path: str | Path) -> pd.DataFrame:
    """Read and validate a results CSV with columns ``dataset,arm,seed,accuracy``.

    Raises:
        DataError: the file cannot be read.
        ConfigError: the content is not a valid results table (see :func:`validate_results`).
    """
    path = Path(path)
    try:
        # Everything as text first, so that an arm called "NA" stays an arm and a bad number
        # is reported by row instead of silently becoming NaN.
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such results file") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: cannot read results CSV ({str(exc).splitlines()[0]})") from None
    try:
        return validate_results(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def validate_results(results: pd.DataFrame) -> pd.DataFrame:
    """Check a results table and return a clean copy (str, str, int64, float64 columns).

    Columns other than ``dataset, arm, seed, accuracy`` are dropped.

    Raises:
        ConfigError: a column is missing, the table is empty, a dataset or arm name is empty,
            a seed is not an integer, an accuracy is not a number in [0, 1], or a
            (dataset, arm, seed) appears twice. The message names the first offending row
            (1-based, as a spreadsheet shows it after the header).
    """
    missing = [c for c in RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise ConfigError(
            f"results table lacks column(s) {', '.join(missing)}; expected {','.join(RESULT_COLUMNS)}"
        )
    if len(results) == 0:
        raise ConfigError("results table has no rows")
    out = pd.DataFrame(index=pd.RangeIndex(len(results)))
    for name in ("dataset", "arm"):
        col = results[name].reset_index(drop=True)
        text = col.map(lambda v: "" if _is_missing(v) else str(v).strip())
        empty = text == ""
        if empty.any():
            raise ConfigError(f"row {_first(empty)}: empty {name} name")
        out[name] = text.astype(object)
    out["seed"] = _parse_column(results["seed"], "seed", _as_int)
    out["accuracy"] = _parse_column(results["accuracy"], "accuracy", _as_float)
    acc = out["accuracy"]
    bad = ~np.isfinite(acc) | (acc < 0.0) | (acc > 1.0)
    if bad.any():
        i = _first(bad)
        raise ConfigError(
            f"row {i}: accuracy {float(acc.iloc[i - 1])!r} is not a fraction in [0, 1] "
            "(write 0.912, not 91.2)"
        )
    dup = out.duplicated(subset=["dataset", "arm", "seed"], keep="first")
    if dup.any():
        i = _first(dup)
        row = out.iloc[i - 1]
        raise ConfigError(
            f"row {i}: duplicate (dataset, arm, seed) = ({row['dataset']}, {row['arm']}, {row['seed']})"
        )
    out["seed"] = out["seed"].astype("int64")
    out["accuracy"] = out["accuracy"].astype("float64")
    return out


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _first(mask: pd.Series) -> int:
    return int(np.flatnonzero(mask.to_numpy())[0]) + 1


def _as_int(value: object) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise ValueError
    if isinstance(value, (int, np.integer)):
        return int(value)
    number = float(str(value).strip())  # "3" and "3.0" are both seed 3
    if not number.is_integer():
        raise ValueError
    return int(number)


def _as_float(value: object) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise ValueError
    # float() on the text is correctly rounded, so a CSV written with repr() reads back the
    # exact same doubles (needed for byte-identical comparisons.csv on re-runs).
    return float(value) if isinstance(value, (int, float, np.number)) else float(str(value).strip())


def _parse_column(col: pd.Series, name: str, parse) -> pd.Series:
    values = []
    for i, v in enumerate(col.tolist(), start=1):
        try:
            values.append(parse(v))
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"row {i}: {name} {v!r} is not a valid {name}") from None
    return pd.Series(values, dtype="float64" if name == "accuracy" else "int64")


def sort_results(results: pd.DataFrame) -> pd.DataFrame:
    """Return the results in canonical order: dataset, then arm, by first appearance; then seed.

    Arms are ordered by first appearance when rows are read dataset by dataset, so sorting
    is idempotent: sorted results give the same dataset and arm order, hence the same
    comparisons, as the unsorted ones.
    """
    datasets = _dataset_order(results)
    arms = _arm_order(results)
    keyed = results.assign(
        _d=results["dataset"].map({d: i for i, d in enumerate(datasets)}),
        _a=results["arm"].map({a: i for i, a in enumerate(arms)}),
    )
    ordered = keyed.sort_values(["_d", "_a", "seed"], kind="stable")
    return ordered.drop(columns=["_d", "_a"]).reset_index(drop=True)


def _dataset_order(results: pd.DataFrame) -> list[str]:
    return list(pd.unique(results["dataset"]))


def _arm_order(results: pd.DataFrame) -> list[str]:
    rank = {d: i for i, d in enumerate(_dataset_order(results))}
    by_dataset = results.assign(_d=results["dataset"].map(rank)).sort_values("_d", kind="stable")
    return list(pd.unique(by_dataset["arm"]))


def default_contrasts(arms: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair of ``arms``: the FMCE pairs present first, then the rest in the given order.

    With exactly the arms fmce, nfmce, single this is fmce-nfmce, nfmce-single, fmce-single;
    with arbitrary names it is every pair ``(arms[i], arms[j]), i < j``.
    """
    present = set(arms)
    chosen = [(a, b) for a, b in DEFAULT_CONTRASTS if a in present and b in present]
    taken = {frozenset(p) for p in chosen}
    chosen += [(a, b) for a, b in combinations(arms, 2) if frozenset((a, b)) not in taken]
    return chosen


# --------------------------------------------------------------------------- one arm


def summarize_arm(dataset: str, arm: str, accuracy: Sequence[float] | np.ndarray) -> ArmSummary:
    """Describe one arm's accuracies (fractions) in points, with the 95% t CI of the mean."""
    x = np.asarray(accuracy, dtype=float) * 100.0
    n = int(x.size)
    if n == 0:
        nan = math.nan
        return ArmSummary(dataset, arm, 0, nan, nan, nan, nan, nan, nan, nan)
    ci_low = ci_high = sd = math.nan
    if n >= 2:
        sd = float(np.std(x, ddof=1))
        with _quiet():
            ci = st.ttest_1samp(x, 0.0).confidence_interval(0.95)
        ci_low, ci_high = float(ci.low), float(ci.high)
    return ArmSummary(
        dataset=dataset,
        arm=arm,
        n=n,
        mean=float(np.mean(x)),
        sd=sd,
        median=float(np.median(x)),
        min=float(np.min(x)),
        max=float(np.max(x)),
        ci_low=ci_low,
        ci_high=ci_high,
    )


def summarize_similarity(similarity: pd.DataFrame) -> pd.DataFrame:
    """Mean cosine similarity of the two heads' feature maps per dataset x arm.

    Input columns ``dataset, arm, seed, head_similarity`` (one row per DueHeadNet run); output
    ``dataset, arm, n, mean, sd`` (sd with n - 1; NaN for one run). It tells whether the FMCE
    penalty did what it claims: FMCE's heads should be less alike than NFMCE's.
    """
    grouped = similarity.groupby(["dataset", "arm"], sort=False)["head_similarity"]
    out = grouped.agg(n="count", mean="mean", sd="std").reset_index()
    return out[["dataset", "arm", "n", "mean", "sd"]]


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset x arm (canonical order) with the columns of :class:`ArmSummary`."""
    results = sort_results(validate_results(results))
    rows = [
        summarize_arm(dataset, arm, group["accuracy"].to_numpy())
        for (dataset, arm), group in results.groupby(["dataset", "arm"], sort=False)
    ]
    return _frame(rows, SUMMARY_COLUMNS)


# --------------------------------------------------------------------------- two arms


def hedges_g(a: np.ndarray, b: np.ndarray) -> float:
    """Hedges' g of ``a - b``: Cohen's d with the pooled sd times the exact bias correction.

    ``J(m) = Gamma(m/2) / (sqrt(m/2) Gamma((m-1)/2))`` with ``m = n_a + n_b - 2`` (Hedges 1981);
    ``3/(4m - 1)`` is its usual approximation. NaN when either arm has fewer than 2 values
    or the pooled sd is 0.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = a.size, b.size
    if na < 2 or nb < 2:
        return math.nan
    m = na + nb - 2
    pooled = math.sqrt(((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / m)
    if pooled == 0.0:
        return math.nan
    correction = math.exp(special.gammaln(m / 2) - special.gammaln((m - 1) / 2)) / math.sqrt(m / 2)
    return float((np.mean(a) - np.mean(b)) / pooled * correction)


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


def _mean_along(x: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(x, axis=axis)


def _sign_flip_p(d: np.ndarray) -> float:
    exact = d.size <= _EXACT_PERMUTATION_MAX_N
    result = st.permutation_test(
        (d,),
        _mean_along,
        vectorized=True,
        permutation_type="samples",  # one sample: the null flips the sign of each difference
        n_resamples=np.inf if exact else _MONTE_CARLO_RESAMPLES,
        alternative="two-sided",
        random_state=np.random.default_rng(_RANDOM_SEED),
    )
    return float(result.pvalue)


def paired_comparison(
    dataset: str,
    arm_a: str,
    arm_b: str,
    a: pd.Series,
    b: pd.Series,
    *,
    rope: float = 0.1,
    alpha: float = 0.05,
) -> Comparison:
    """Compare two arms on one dataset; ``a`` and ``b`` are accuracies (fractions) indexed by seed.

    Only seeds in both indexes are used. ``p_holm`` is left NaN and ``verdict`` empty; the
    per-row warnings are filled in. See the module docstring for every statistic.
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
        ci_low=nan, ci_high=nan, p_paired=nan, p_welch=nan, p_permutation=nan, hedges_g=nan,
        p_superiority=nan, rope_below=nan, rope_inside=nan, rope_above=nan, p_tost=nan,
        mde_80=nan, seeds_needed=nan, power=nan, sd_diff=nan,
    )  # fmt: skip
    with _quiet():
        if n >= 1:
            stats_["p_superiority"] = float(st.mannwhitneyu(xa, xb).statistic) / (n * n)
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
                p_permutation=_sign_flip_p(d),
                hedges_g=hedges_g(xa, xb),
                rope_below=below,
                rope_inside=inside,
                rope_above=above,
                p_tost=float(ttost_paired(xa, xb, -rope, rope)[0]),
                sd_diff=sd_d,
                **_power_figures(diff, sd_d, n, alpha),
            )
    comparison = Comparison(
        dataset=dataset, arm_a=arm_a, arm_b=arm_b, n=n, mean_a=mean_a, mean_b=mean_b, diff=diff,
        p_holm=nan, verdict="", warnings=(), **stats_,
    )  # fmt: skip
    return dataclasses.replace(comparison, warnings=_row_warnings(comparison, dropped, alpha))


def _power_figures(diff: float, sd_d: float, n: int, alpha: float) -> dict[str, float]:
    """mde_80, seeds_needed and power of a paired t-test; NaN where sd(d) is 0 (nothing to plan from)."""
    if sd_d == 0.0 or not math.isfinite(sd_d):
        return dict(mde_80=math.nan, seeds_needed=math.nan, power=math.nan)
    effect = abs(diff) / sd_d  # Cohen's d_z of the paired differences
    return dict(
        mde_80=_detectable_effect(n, alpha) * sd_d,
        seeds_needed=_seeds_needed(effect, alpha),
        power=_paired_power(effect, n, alpha),
    )


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
    d_z = analysis.solve_power(effect_size=None, nobs=n, alpha=alpha, power=_TARGET_POWER)
    if not np.isfinite(d_z):
        d_z = analysis.solve_power(
            effect_size=None, nobs=n, alpha=alpha / 2, power=_TARGET_POWER, alternative="larger"
        )
    return float(np.asarray(d_z).squeeze())


_MAX_SEEDS = 2**40  # beyond this "needed" means "never" in practice


def _seeds_needed(effect: float, alpha: float) -> float:
    """Smallest n >= 2 whose power against ``effect`` reaches 80%; inf if none up to 2**40.

    Power grows with n, so this is ``ceil`` of statsmodels' continuous ``solve_power(nobs=None)``;
    searching the integers avoids its root finder, which fails when the answer is below 2.
    """
    if effect == 0.0:
        return math.inf
    if _paired_power(effect, 2, alpha) >= _TARGET_POWER:
        return 2.0
    lo, hi = 2, 4  # power(lo) < target <= power(hi) once the doubling stops
    while _paired_power(effect, hi, alpha) < _TARGET_POWER:
        if hi >= _MAX_SEEDS:
            return math.inf
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _paired_power(effect, mid, alpha) >= _TARGET_POWER else (mid, hi)
    return float(hi)


def _row_warnings(c: Comparison, dropped: int, alpha: float) -> tuple[str, ...]:
    out = []
    if dropped:
        out.append(f"{dropped} seed(s) run for only one arm were left out of the pairing")
    if c.n < 2:
        out.append(f"only {c.n} paired seed(s): no test is possible")
        return tuple(out)
    if c.n < _FEW_SEEDS:
        out.append(f"only n = {c.n} paired seeds (fewer than {_FEW_SEEDS})")
    # The exact Wilcoxon signed-rank test's smallest two-sided p is 2 / 2**n (all differences
    # of one sign): 0.0625 at n = 5, so a rank test cannot reject at 0.05 below n = 6.
    smallest = 2.0 / 2.0**c.n
    if smallest > alpha:
        out.append(
            f"a rank test cannot reach p < {alpha:g} with n = {c.n} (smallest possible p = {smallest:.4g})"
        )
    if c.sd_diff == 0.0:
        out.append("paired differences have zero variance; tests and power are degenerate")
    elif math.isfinite(c.power) and c.power < _TARGET_POWER:
        out.append(f"power {c.power:.2f} < {_TARGET_POWER:g} to detect the observed difference")
    return tuple(out)


def verdict(c: Comparison, alpha: float = 0.05) -> str:
    """The one-phrase verdict of a comparison whose ``p_holm`` is set (module docstring, step 8)."""
    if c.n < 2:
        return "insufficient data"
    equivalent = math.isfinite(c.p_tost) and c.p_tost < alpha
    if math.isfinite(c.p_holm) and c.p_holm < alpha:
        better = c.arm_a if c.diff > 0 else c.arm_b
        return f"significant: {better} better" + (" (within ROPE)" if equivalent else "")
    if equivalent:
        return "practically equivalent"
    return "not significant"


def compare(
    results: pd.DataFrame,
    contrasts: Sequence[tuple[str, str]] | None = None,
    rope: float = 0.1,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Compare arms pairwise on every dataset; one row per (dataset, contrast).

    Args:
        results: results table (``dataset, arm, seed, accuracy``; accuracy a fraction).
        contrasts: ``(arm_a, arm_b)`` pairs; differences are A - B. Default:
            :func:`default_contrasts` of the arms in order of first appearance. A contrast
            whose arms are not both run on a dataset is skipped for that dataset.
        rope: half-width of the region of practical equivalence, in points.
        alpha: significance level for the Holm-adjusted verdict, TOST and power.

    Returns:
        A DataFrame with :data:`COMPARISON_COLUMNS` (``warnings`` joined with "; "), rows in
        dataset order then contrast order.

    Raises:
        ConfigError: bad results table, a contrast naming an arm that no dataset has, a
            contrast of an arm with itself, or ``rope``/``alpha`` out of range.
    """
    if not (rope >= 0 and math.isfinite(rope)):
        raise ConfigError(f"rope must be a finite number of points >= 0, got {rope!r}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")
    results = sort_results(validate_results(results))
    contrasts = _resolve_contrasts(results, contrasts)
    rows: list[Comparison] = []
    for dataset, group in results.groupby("dataset", sort=False):
        by_arm = {arm: g.set_index("seed")["accuracy"] for arm, g in group.groupby("arm", sort=False)}
        for arm_a, arm_b in contrasts:
            if arm_a in by_arm and arm_b in by_arm:
                rows.append(
                    paired_comparison(
                        dataset, arm_a, arm_b, by_arm[arm_a], by_arm[arm_b], rope=rope, alpha=alpha
                    )
                )
    rows = _with_holm(rows, alpha)
    return _frame(rows, COMPARISON_COLUMNS)


def _resolve_contrasts(
    results: pd.DataFrame, contrasts: Sequence[tuple[str, str]] | None
) -> list[tuple[str, str]]:
    arms = _arm_order(results)
    if contrasts is None:
        return default_contrasts(arms)
    resolved = []
    for pair in contrasts:
        if len(pair) != 2:
            raise ConfigError(f"contrast {pair!r} must name two arms")
        a, b = str(pair[0]), str(pair[1])
        for arm in (a, b):
            if arm not in arms:
                raise ConfigError(f"contrast {a} vs {b}: no results for arm {arm!r}; arms are {', '.join(arms)}")
        if a == b:
            raise ConfigError(f"contrast {a} vs {b} compares an arm with itself")
        resolved.append((a, b))
    return resolved


def _with_holm(rows: list[Comparison], alpha: float) -> list[Comparison]:
    """Holm-adjust p_paired over every row with a defined p-value, then set each verdict."""
    p = np.array([r.p_paired for r in rows], dtype=float)
    finite = np.isfinite(p)
    adjusted = np.full(p.shape, math.nan)
    if finite.any():
        adjusted[finite] = multipletests(p[finite], alpha=alpha, method="holm")[1]
    out = []
    for row, p_holm in zip(rows, adjusted):
        row = dataclasses.replace(row, p_holm=float(p_holm))
        out.append(dataclasses.replace(row, verdict=verdict(row, alpha)))
    return out


# --------------------------------------------------------------------------- across datasets


def aggregate(
    results: pd.DataFrame,
    contrasts: Sequence[tuple[str, str]] | None = None,
    alpha: float = 0.05,
) -> Aggregate:
    """Evidence across datasets (Demsar 2006), chosen by how many datasets there are.

    * >= 5 datasets and >= 3 arms run on every dataset: Friedman's test on per-dataset mean
      accuracies (``scipy.stats.friedmanchisquare``), average ranks (1 = best, ties
      averaged) and the Nemenyi critical difference
      ``q_alpha * sqrt(k (k + 1) / (6 N))`` with ``q_alpha`` the studentized range quantile
      over ``sqrt(2)``.
    * otherwise, with >= 2 datasets: per contrast, the mean over datasets of the per-dataset
      mean paired difference (points), with a 95% percentile bootstrap CI
      (``scipy.stats.bootstrap``, one sample of paired differences per dataset, resampled
      independently, 9,999 resamples, fixed seed). Datasets with fewer than 2 paired seeds
      are left out. The percentile method is used because BCa's jackknife is undefined when
      a dataset's differences are constant.
    * one dataset: nothing beyond the per-dataset comparison.
    """
    results = sort_results(validate_results(results))
    datasets = _dataset_order(results)
    k = len(datasets)
    notes: list[str] = []
    if k < 2:
        return Aggregate(k, None, (), ("one dataset: the per-dataset comparison is the whole evidence",))
    if k >= _MIN_DATASETS_FOR_FRIEDMAN:
        friedman = _friedman(results, alpha)
        if friedman is not None:
            return Aggregate(k, friedman, (), ())
        notes.append("Friedman's test needs at least 3 arms run on every dataset; bootstrap differences instead")
    contrasts = _resolve_contrasts(results, contrasts)
    differences = []
    for arm_a, arm_b in contrasts:
        diff = _bootstrap_difference(results, arm_a, arm_b)
        if diff is None:
            notes.append(f"{arm_a} vs {arm_b}: no dataset with 2 or more paired seeds")
        else:
            differences.append(diff)
    return Aggregate(k, None, tuple(differences), tuple(notes))


def _friedman(results: pd.DataFrame, alpha: float) -> FriedmanResult | None:
    means = results.pivot_table(index="dataset", columns="arm", values="accuracy", aggfunc="mean", sort=False)
    means = means[[a for a in _arm_order(results) if a in means.columns]].dropna(axis=1)
    arms = tuple(means.columns)
    k, n = len(arms), len(means)
    if k < 3:
        return None
    table = means.to_numpy() * 100.0  # (datasets, arms)
    with _quiet():  # all arms tied on every dataset: 0/0, NaN statistic
        statistic, pvalue = st.friedmanchisquare(*table.T)
    ranks = st.rankdata(-table, axis=1).mean(axis=0)
    q_alpha = st.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    cd = q_alpha * math.sqrt(k * (k + 1) / (6.0 * n))
    return FriedmanResult(
        arms=arms,
        n_datasets=n,
        statistic=float(statistic),
        pvalue=float(pvalue),
        avg_ranks={a: float(r) for a, r in zip(arms, ranks)},
        cd=float(cd),
    )


def _mean_of_means(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean([np.mean(s, axis=axis) for s in samples], axis=0)


def _bootstrap_difference(results: pd.DataFrame, arm_a: str, arm_b: str) -> AggregateDifference | None:
    samples, used = [], []
    for dataset, group in results.groupby("dataset", sort=False):
        by_arm = {arm: g.set_index("seed")["accuracy"] for arm, g in group.groupby("arm", sort=False)}
        if arm_a not in by_arm or arm_b not in by_arm:
            continue
        seeds = sorted(set(by_arm[arm_a].index) & set(by_arm[arm_b].index))
        if len(seeds) < 2:
            continue
        samples.append((by_arm[arm_a].loc[seeds].to_numpy() - by_arm[arm_b].loc[seeds].to_numpy()) * 100.0)
        used.append(dataset)
    if not samples:
        return None
    estimate = float(_mean_of_means(*samples))
    with _quiet():
        boot = st.bootstrap(
            tuple(samples),
            _mean_of_means,
            n_resamples=_BOOTSTRAP_RESAMPLES,
            vectorized=True,
            paired=False,
            confidence_level=0.95,
            method="percentile",
            random_state=np.random.default_rng(_RANDOM_SEED),
        )
    ci = boot.confidence_interval
    return AggregateDifference(arm_a, arm_b, tuple(used), estimate, float(ci.low), float(ci.high))


# --------------------------------------------------------------------------- helpers


def _frame(rows: Sequence[object], columns: Sequence[str]) -> pd.DataFrame:
    records = []
    for row in rows:
        record = dataclasses.asdict(row)
        if "warnings" in record:
            record["warnings"] = "; ".join(record["warnings"])
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=list(columns))
    if "n" in frame.columns:
        frame["n"] = frame["n"].astype("int64")
    return frame


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the divide-by-zero, precision and convergence warnings of degenerate samples.

    Their outcome is documented in the module docstring and shows up as NaN or a row warning.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name in ("DegenerateDataWarning", "SmallSampleWarning"):  # scipy >= 1.11 / 1.14
            category = getattr(st, name, None)
            if category is not None:
                warnings.simplefilter("ignore", category)
        yield
