"""Statistics of an ablation study: which arm beats which, by how much, and how sure we are.

Input is a *results table*: one row per (dataset, arm, seed) with the test ``accuracy`` as a
fraction in [0, 1], and optionally what each run cost (:data:`OPTIONAL_COLUMNS`). Every
number this module returns is in **percentage points** (``accuracy * 100``). Results are
frozen dataclasses; :func:`compare`, :func:`summarize`, :func:`profile_arms` and
:func:`across_frame` flatten them into DataFrames for reports and CSV files.

Decision procedure for one contrast (arm A vs arm B on one dataset), written out so a reader
can check it (autorank's docstrings are the model):

1. **Pair by seed.** Only seeds run for both arms count; ``n`` is the number of pairs. A seed
   fixes data order and initialisation, so the paired difference ``d = A - B`` removes the
   seed-to-seed variance that both arms share.
2. **Estimate.** ``diff = mean(d)`` with the 95% Student t interval of a paired mean
   (Student 1908; ``scipy.stats.ttest_rel``).
3. **Test.** ``p_paired`` is the two-sided paired t-test; ``p_welch`` the unpaired Welch test
   (Welch 1947) on the same seeds, shown for readers used to unpaired comparisons;
   ``p_permutation`` the sign-flip permutation test of ``d`` (``scipy.stats.permutation_test``;
   all ``2**n`` flips when ``n <= 16``, else 9,999 Monte-Carlo flips with a fixed seed), which
   does not assume normality. Accuracies are counts over a test split, so two seeds that
   differ by the same number of test images must tie exactly under every flip: ``d`` is
   rounded to integer multiples of 1e-9 points before flipping (float noise from ``x100`` is
   ~1e-14) and the flipped sums are compared as integers. With ``m`` zero differences its
   smallest attainable p is ``2 / 2**(n - m)``.
4. **Correct for multiplicity.** ``p_holm`` is Holm's (1979) step-down adjustment of
   ``p_paired`` over *every* row of the comparisons table (all contrasts on all datasets), so
   the family-wise error rate is at most ``alpha`` however many rows there are; ``p_tost_holm``
   adjusts ``p_tost`` the same way. Rows whose p is undefined (NaN) are left out of the family.
5. **Effect sizes.** ``d_z``: the mean of the paired differences over their sd, times the exact
   small-sample factor ``J(n - 1)`` with ``J(m) = Gamma(m/2) / (sqrt(m/2) Gamma((m - 1)/2))``
   (Lakens 2013; NaN below 3 pairs, where J is 0 or undefined). ``share_a_better``: the share
   of seeds at which A beats B, ties counted one half; ``p_sign`` the exact two-sided sign test
   of those wins (``scipy.stats.binomtest``) with tied seeds dropped (1 when every seed ties).
6. **Practical relevance.** A region of practical equivalence (ROPE) of ``rope`` points, per
   row: by default the larger of 0.1 and one test image, ``100 / n_test`` points (``n_test``
   the median test-split size of the dataset's runs; 0.1 without it). A ROPE finer than one
   test image cannot be told apart from noise of a single image and is flagged.
   ``rope_below/rope_inside/rope_above`` are the posterior probabilities that the mean
   difference lies below ``-rope``, inside, or above ``+rope`` under the Bayesian paired
   t-test of Benavoli et al. (2017): a Student t posterior with ``n - 1`` degrees of freedom,
   location ``mean(d)`` and scale ``sd(d) / sqrt(n)``. ``p_tost`` is Schuirmann's (1987) two
   one-sided tests for equivalence within +/-rope.
7. **Planning, not post-hoc power.** ``mde_80``: the smallest difference (points) a two-sided
   paired t-test at ``alpha`` detects with 80% power at this ``n``, from the observed
   ``sd(d)`` (statsmodels' ``TTestPower``). ``seeds_for_smallest_effect``: the number of seeds
   a paired t-test needs for 80% power against the smallest effect of interest the study
   names (``smallest_effect`` points), at the same sd. There is deliberately no "observed
   power" and no "seeds needed for the observed difference": both are functions of the
   p-value and add nothing to it (Hoenig and Heisey 2001).
8. **Context.** ``confounded_by``: what differs between the arms besides the named factor:
   "parameters" when the per-arm median ``params`` differ by more than 10%
   (``|a - b| / min(a, b) > 0.10``), "compute" when the median ``train_images`` do, both, or
   "unknown" without those columns. ``still_rising``: the arms of the row whose median
   validation-accuracy gain over the last quarter of their epochs exceeds ``still_rising``
   points: they were stopped while still learning, so the comparison may change with longer
   training.
9. **Verdict**, in this order: ``n < 2`` -> "insufficient data"; ``p_holm < alpha`` ->
   "significant: <arm> better" (with "(within ROPE)" when ``p_tost_holm < alpha`` too: real
   but too small to matter, and with "paired t only: ..." when the permutation test cannot
   reach ``alpha`` at this ``n``); else ``p_tost_holm < alpha`` -> "practically equivalent";
   else "not significant". An arm still rising is named after the verdict.

Degenerate inputs never raise; a statistic that is undefined is NaN:

* ``n < 2``: every test, interval and effect size is NaN (means, ``share_a_better`` and
  ``p_sign`` are still given for n = 1).
* all differences equal (``sd(d) == 0``): the interval collapses to ``[diff, diff]``; if the
  differences are all 0 the t statistic is 0/0, so ``p_paired`` and ``p_holm`` are NaN,
  ``p_permutation`` is 1, ``p_tost`` is 0 (equivalent); if they are a nonzero constant,
  ``p_paired`` is 0. ``d_z``, ``mde_80`` and ``seeds_for_smallest_effect`` are NaN (no
  variance to plan from), and the ROPE probabilities are those of a point mass at ``diff``.
* both arms constant and equal: ``p_welch`` is NaN (0/0).

Across datasets (Demsar 2006; :func:`aggregate`), per contrast, over the datasets that ran
both arms:

* **Datasets as the units**: the number of datasets where A is ahead (mean paired difference
  > 0), the exact sign test over datasets (ties dropped) and the Wilcoxon signed-rank test of
  the per-dataset mean differences (``scipy.stats.wilcoxon``), with the smallest p that this
  many datasets can reach, ``2 / 2**k``. This is all a table with one run per cell supports.
* **Random effects**, when at least 2 datasets have 2 or more paired seeds: the per-dataset
  mean differences with their within-dataset variances ``sd(d)**2 / n`` combined by
  statsmodels' ``combine_effects(..., use_t=True)``: Paule-Mandel tau^2 (its default
  "iterated" method) and the Hartung-Knapp-Sidik-Jonkman interval on t with k - 1 degrees of
  freedom (its "random effect wls" row), because the normal interval under-covers with 3 to 5
  datasets. I^2 is truncated at 0. From 3 datasets on, the prediction interval for the
  difference on a new dataset is ``mean +/- t(k - 2) * sqrt(tau^2 + SE^2)`` with SE that of
  the HKSJ row (Higgins et al. 2009). A dataset whose differences have zero variance gets a
  floor of one test image squared over n, ``(100 / n_test)**2 / n`` points^2 (``n_test``
  unknown: 0.1 points, the default ROPE), instead of infinite weight.
* **Friedman**, with at least 5 datasets and 3 arms run on all of them: the Friedman test on
  per-dataset mean accuracies, read through the Iman-Davenport F (Iman and Davenport 1980),
  ``F = (N - 1) chi2 / (N (k - 1) - chi2)`` on ``k - 1`` and ``(k - 1)(N - 1)`` degrees of
  freedom, the average rank of each arm (rank 1 = best) and the Nemenyi critical difference,
  drawn as a CD diagram only when the F test rejects. Arms missing on a dataset are named.

Sequential seeds (:func:`sequential_look`, :func:`sequential_frame`): the same paired
differences, in seed order, judged look by look by :mod:`ablate.sequential` (Bonferroni over
contrasts x data sets, Lan-DeMets spending, t boundaries calibrated by simulation, the
design-adjusted interval of Jennison and Turnbull 1989). After such a study the fixed-sample
``p_holm``, ``p_tost_holm`` and ``mde_80`` are emptied and the verdict is the design's
(:func:`mark_sequential`); the repeats loop and the report call the same function on the same
table, so they reach the same verdicts.

Tuning (:func:`expected_max`): the expected best validation accuracy of ``n`` search trials,
estimated from the ``N`` completed trials' values as the expected maximum of ``n`` draws with
replacement from their empirical distribution (Dodge et al. 2019).

References:
    Student (1908). The probable error of a mean. Biometrika 6(1).
    Welch, B. L. (1947). The generalization of "Student's" problem when several different
        population variances are involved. Biometrika 34(1-2).
    Holm, S. (1979). A simple sequentially rejective multiple test procedure.
        Scandinavian Journal of Statistics 6(2).
    Iman, R. L., Davenport, J. M. (1980). Approximations of the critical region of the
        Friedman statistic. Communications in Statistics - Theory and Methods 9(6).
    Schuirmann, D. J. (1987). A comparison of the two one-sided tests procedure and the power
        approach for assessing the equivalence of average bioavailability. J. Pharmacokinetics
        and Biopharmaceutics 15(6).
    Hoenig, J. M., Heisey, D. M. (2001). The abuse of power: the pervasive fallacy of power
        calculations for data analysis. The American Statistician 55(1).
    Demsar, J. (2006). Statistical comparisons of classifiers over multiple data sets. JMLR 7.
    Higgins, J. P. T., Thompson, S. G., Spiegelhalter, D. J. (2009). A re-evaluation of
        random-effects meta-analysis. JRSS A 172(1).
    Lakens, D. (2013). Calculating and reporting effect sizes to facilitate cumulative
        science: a practical primer for t-tests and ANOVAs. Frontiers in Psychology 4:863.
    Benavoli, A., Corani, G., Demsar, J., Zaffalon, M. (2017). Time for a change: a tutorial
        for comparing multiple classifiers through Bayesian analysis. JMLR 18(77).
    Dodge, J., Gururangan, S., Card, D., Schwartz, R., Smith, N. A. (2019). Show your work:
        improved reporting of experimental results. EMNLP.
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
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired
from statsmodels.tools.sm_exceptions import ConvergenceWarning, InvalidTestWarning

from ablate import sequential as sq
from ablate.errors import ConfigError, DataError

__all__ = [
    "RESULT_COLUMNS",
    "OPTIONAL_COLUMNS",
    "COMPARISON_COLUMNS",
    "SUMMARY_COLUMNS",
    "PROFILE_COLUMNS",
    "ACROSS_COLUMNS",
    "DEFAULT_CONTRASTS",
    "ArmSummary",
    "ArmProfile",
    "Comparison",
    "FriedmanResult",
    "AcrossDifference",
    "Aggregate",
    "load_results",
    "validate_results",
    "sort_results",
    "default_contrasts",
    "default_rope",
    "summarize_arm",
    "summarize",
    "summarize_similarity",
    "profile_arms",
    "missing_arms",
    "d_z",
    "share_a_better",
    "sign_test_p",
    "permutation_p",
    "smallest_permutation_p",
    "rope_probabilities",
    "seeds_for_effect",
    "confounded_by",
    "paired_comparison",
    "verdict",
    "compare",
    "single_recipe_too_short",
    "across_datasets",
    "across_frame",
    "aggregate",
    "iman_davenport",
    "expected_max",
    "SEQUENTIAL_COLUMNS",
    "FIXED_ONLY_COLUMNS",
    "sequential_design",
    "sequential_look",
    "sequential_frame",
    "sequential_verdict",
    "mark_sequential",
    "pooled_difference_sd",
]

RESULT_COLUMNS = ("dataset", "arm", "seed", "accuracy")
# What a run cost and how it ended, as the study layer records it; a table from elsewhere may
# have none of them. Integers may be empty (unknown); written to results.csv in this order.
OPTIONAL_COLUMNS = (
    "params", "trainable_params", "train_images", "n_test", "val_gain_last_quarter", "wall_time", "look",
)  # fmt: skip
_INTEGER_COLUMNS = frozenset({"params", "trainable_params", "train_images", "n_test", "look"})

# The FMCE study's arms, in the order a reader asks about them.
DEFAULT_CONTRASTS: tuple[tuple[str, str], ...] = (("fmce", "nfmce"), ("nfmce", "single"), ("fmce", "single"))

# sign-flip test: 2**16 = 65,536 flips is exact and still takes milliseconds; beyond that,
# 9,999 Monte-Carlo flips give a p-value with standard error < 0.005 at p = 0.05.
_EXACT_PERMUTATION_MAX_N = 16
_MONTE_CARLO_RESAMPLES = 9_999
_RANDOM_SEED = 0
_TARGET_POWER = 0.8
_FEW_SEEDS = 5
_MIN_DATASETS_FOR_FRIEDMAN = 5
# Differences are compared in integer units of 1e-9 points: far below one test image of any
# split (100 / 10**6 points for a million images) and far above the ~1e-14 noise of x100.
_EXACT_UNITS_PER_POINT = 10**9
_MIN_ROPE = 0.1  # points; also the stand-in for one test image when n_test is unknown
_CONFOUND_RATIO = 0.10
_CONFOUNDS = (("params", "parameters"), ("train_images", "compute"))


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
class ArmProfile:
    """What one arm on one dataset cost and whether it had finished learning (medians over seeds).

    ``late_gain`` is the median validation-accuracy gain over the last quarter of the epochs,
    in points; ``still_rising`` is None when that is unknown. Missing columns give NaN.
    """

    dataset: str
    arm: str
    n: int
    params: float
    trainable_params: float
    train_images: float
    wall_time: float
    n_test: float
    late_gain: float
    still_rising: bool | None


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
SUMMARY_COLUMNS = tuple(f.name for f in dataclasses.fields(ArmSummary))
PROFILE_COLUMNS = tuple(f.name for f in dataclasses.fields(ArmProfile))


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


# --------------------------------------------------------------------------- input


def load_results(path: str | Path) -> pd.DataFrame:
    """Read and validate a results CSV with columns ``dataset,arm,seed,accuracy`` (and optional ones).

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
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a results file") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: cannot read results CSV ({str(exc).splitlines()[0]})") from None
    try:
        return validate_results(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def validate_results(results: pd.DataFrame) -> pd.DataFrame:
    """Check a results table and return a clean copy.

    The required columns come back as str, str, int64, float64; the optional columns of
    :data:`OPTIONAL_COLUMNS` that are present follow in that order, integers as pandas'
    nullable ``Int64`` and the rest as float64, an empty cell meaning unknown. Other
    columns are dropped.

    Raises:
        ConfigError: a column is missing, the table is empty, a dataset or arm name is empty,
            a seed is not an integer, an accuracy is not a number in [0, 1], an optional
            column holds something other than a number (an integer >= 0 for counts), or a
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
    for name in OPTIONAL_COLUMNS:
        if name in results.columns:
            out[name] = _optional_column(results[name], name)
    return out


def _optional_column(col: pd.Series, name: str) -> pd.Series:
    integer = name in _INTEGER_COLUMNS
    values: list[object] = []
    for i, v in enumerate(col.tolist(), start=1):
        if _is_missing(v) or (isinstance(v, str) and not v.strip()) or v is pd.NA:
            values.append(pd.NA if integer else math.nan)
            continue
        try:
            x = _as_int(v) if integer else _as_float(v)
        except (TypeError, ValueError, OverflowError):
            kind = "an integer" if integer else "a number"
            raise ConfigError(f"row {i}: {name} {v!r} is not {kind}") from None
        if integer and x < (1 if name == "n_test" else 0):
            raise ConfigError(f"row {i}: {name} {v!r} must be {'at least 1' if name == 'n_test' else '>= 0'}")
        if not integer and not math.isfinite(x):
            raise ConfigError(f"row {i}: {name} {v!r} is not a finite number")
        values.append(x)
    return pd.Series(values, dtype="Int64" if integer else "float64")


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


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


def default_rope(n_test: float | None) -> float:
    """The default ROPE in points: the larger of 0.1 and one test image, ``100 / n_test``."""
    if n_test is None or not _finite(n_test) or n_test <= 0:
        return _MIN_ROPE
    return max(_MIN_ROPE, 100.0 / float(n_test))


def missing_arms(results: pd.DataFrame) -> list[tuple[str, str]]:
    """(dataset, arm) pairs where an arm run elsewhere has no result, in canonical order."""
    results = sort_results(validate_results(results))
    arms = _arm_order(results)
    out = []
    for dataset, group in results.groupby("dataset", sort=False):
        present = set(group["arm"])
        out += [(dataset, arm) for arm in arms if arm not in present]
    return out


def _finite(x: object) -> bool:
    try:
        return math.isfinite(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _median(values: pd.Series) -> float:
    x = pd.to_numeric(values, errors="coerce").astype("float64").dropna()
    return float(np.median(x)) if len(x) else math.nan


def _n_test_by_dataset(results: pd.DataFrame) -> dict[str, float]:
    if "n_test" not in results.columns:
        return {}
    return {d: _median(g["n_test"]) for d, g in results.groupby("dataset", sort=False)}


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


def profile_arms(results: pd.DataFrame, still_rising: float = 2.0) -> pd.DataFrame:
    """One row per dataset x arm with the columns of :class:`ArmProfile` (medians over seeds).

    ``late_gain`` is the median of ``val_gain_last_quarter * 100``; the arm is still rising
    when it exceeds ``still_rising`` points (None when the column is missing or empty).
    """
    results = sort_results(validate_results(results))
    rows = []
    for (dataset, arm), g in results.groupby(["dataset", "arm"], sort=False):
        col = {c: (_median(g[c]) if c in g.columns else math.nan) for c in OPTIONAL_COLUMNS}
        gain = col["val_gain_last_quarter"] * 100.0
        rows.append(
            ArmProfile(
                dataset=dataset, arm=arm, n=len(g), params=col["params"],
                trainable_params=col["trainable_params"], train_images=col["train_images"],
                wall_time=col["wall_time"], n_test=col["n_test"], late_gain=gain,
                still_rising=bool(gain > still_rising) if math.isfinite(gain) else None,
            )
        )  # fmt: skip
    return _frame(rows, PROFILE_COLUMNS)


# --------------------------------------------------------------------------- two arms


def _exact_units(d: np.ndarray) -> np.ndarray:
    """Differences in points as integer multiples of 1e-9 points, so equal counts tie exactly."""
    return np.rint(np.asarray(d, dtype=float) * _EXACT_UNITS_PER_POINT).astype(np.int64)


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
    q = _exact_units(d)
    if q.size == 0:
        return math.nan
    return float((np.sum(q > 0) + 0.5 * np.sum(q == 0)) / q.size)


def sign_test_p(d: Sequence[float] | np.ndarray) -> float:
    """Exact two-sided sign test of ``d`` (``scipy.stats.binomtest``), ties dropped; 1 if all tie."""
    q = _exact_units(d)
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
    q = _exact_units(d)
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
    q = _exact_units(d)
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
    in. See the module docstring for every statistic.
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
    with _quiet():
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
                mde_80=_mde_80(sd_d, n, alpha),
                seeds_for_smallest_effect=seeds_for_effect(smallest_effect, sd_d, alpha),
            )
    comparison = Comparison(
        dataset=dataset, arm_a=arm_a, arm_b=arm_b, n=n, mean_a=mean_a, mean_b=mean_b, diff=diff,
        rope=float(rope), p_holm=nan, p_tost_holm=nan, confounded_by="", still_rising="", verdict="",
        warnings=(), **stats_,
    )  # fmt: skip
    return dataclasses.replace(comparison, warnings=_row_warnings(comparison, dropped, alpha, one_image))


def _mde_80(sd_d: float, n: int, alpha: float) -> float:
    """Smallest difference (points) a paired t-test at alpha detects with 80% power at n pairs."""
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
    effect = analysis.solve_power(effect_size=None, nobs=n, alpha=alpha, power=_TARGET_POWER)
    if not np.isfinite(effect):
        effect = analysis.solve_power(
            effect_size=None, nobs=n, alpha=alpha / 2, power=_TARGET_POWER, alternative="larger"
        )
    return float(np.asarray(effect).squeeze())


_MAX_SEEDS = 2**40  # beyond this "needed" means "never" in practice


def seeds_for_effect(effect: float | None, sd_d: float, alpha: float) -> float:
    """Seeds a two-sided paired t-test needs for 80% power against ``effect`` points at ``sd_d``.

    The smallest integer n >= 2 whose power (statsmodels' ``TTestPower``) reaches 80%, i.e.
    ``ceil`` of ``solve_power(nobs=None)``; searching the integers avoids its root finder,
    which fails when the answer is below 2. NaN without an effect or with ``sd_d`` 0 or NaN;
    inf for a zero effect or beyond 2**40 seeds.
    """
    if effect is None or not _finite(effect) or not _finite(sd_d) or sd_d == 0.0:
        return math.nan
    size = abs(float(effect)) / sd_d
    if size == 0.0:
        return math.inf
    if _paired_power(size, 2, alpha) >= _TARGET_POWER:
        return 2.0
    lo, hi = 2, 4  # power(lo) < target <= power(hi) once the doubling stops
    while _paired_power(size, hi, alpha) < _TARGET_POWER:
        if hi >= _MAX_SEEDS:
            return math.inf
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _paired_power(size, mid, alpha) >= _TARGET_POWER else (mid, hi)
    return float(hi)


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
    """The verdict of a comparison whose Holm p-values are set (module docstring, step 9)."""
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
        if not (_finite(x) and _finite(y)):
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
    return _frame(_comparisons(results, contrasts, rope, alpha, smallest_effect, still_rising), COMPARISON_COLUMNS)


def _check_settings(rope: float | None, alpha: float, smallest_effect: float | None, still_rising: float) -> None:
    if rope is not None and not (_finite(rope) and rope >= 0):
        raise ConfigError(f"rope must be a finite number of points >= 0, got {rope!r}")
    if not (_finite(alpha) and 0 < alpha < 1):
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")
    if smallest_effect is not None and not (_finite(smallest_effect) and smallest_effect > 0):
        raise ConfigError(f"smallest effect must be a finite number of points > 0, got {smallest_effect!r}")
    if not _finite(still_rising):
        raise ConfigError(f"still_rising must be a finite number of points, got {still_rising!r}")


def _comparisons(
    results: pd.DataFrame,
    contrasts: Sequence[tuple[str, str]] | None,
    rope: float | None,
    alpha: float,
    smallest_effect: float | None,
    still_rising: float,
) -> list[Comparison]:
    _check_settings(rope, alpha, smallest_effect, still_rising)
    results = sort_results(validate_results(results))
    contrasts = _resolve_contrasts(results, contrasts)
    n_test = _n_test_by_dataset(results)
    profiles = {(p.dataset, p.arm): p for p in _profiles(results, still_rising)}
    rows: list[Comparison] = []
    for dataset, group in results.groupby("dataset", sort=False):
        by_arm = {arm: g.set_index("seed")["accuracy"] for arm, g in group.groupby("arm", sort=False)}
        tests = n_test.get(dataset, math.nan)
        one_image = 100.0 / tests if _finite(tests) and tests > 0 else None
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


def _profiles(results: pd.DataFrame, still_rising: float) -> list[ArmProfile]:
    frame = profile_arms(results, still_rising)
    return [ArmProfile(**{k: (None if k == "still_rising" and v is None else v) for k, v in r.items()})
            for r in frame.to_dict("records")]


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
        by_arm = {arm: g.set_index("seed")["accuracy"] for arm, g in group.groupby("arm", sort=False)}
        row = paired_comparison(dataset, "single-long", "single", by_arm["single-long"], by_arm["single"], alpha=alpha)
        if math.isfinite(row.p_paired) and row.p_paired < alpha and row.diff > 0:
            out.append({"dataset": dataset, "diff": row.diff, "p": row.p_paired, "source": "paired t"})
    return out


# --------------------------------------------------------------------------- across datasets


def across_datasets(
    results: pd.DataFrame,
    contrasts: Sequence[tuple[str, str]] | None = None,
    alpha: float = 0.05,
) -> list[AcrossDifference]:
    """Each contrast across datasets: datasets as the units, and random effects (module docstring).

    Per dataset, the mean paired difference A - B over the seeds run for both arms
    (points; a dataset without a paired seed is left out and named in ``notes``).

    * ``a_ahead``/``b_ahead``, ``p_sign_datasets`` (``scipy.stats.binomtest``, ties
      dropped), ``p_wilcoxon_datasets`` (``scipy.stats.wilcoxon``, its defaults: zero
      differences dropped, exact distribution when there are no ties) and
      ``min_p_datasets = 2 / 2**k`` over the k datasets that are not tied; NaN below 2
      datasets.
    * random effects over the datasets with >= 2 paired seeds, when there are >= 2 of them:
      ``combine_effects(effect, sd**2 / n, use_t=True, alpha=alpha)``, row "random effect
      wls" (Paule-Mandel tau^2, HKSJ interval on t(k - 1)); ``i2`` truncated at 0; from 3
      datasets the prediction interval ``re_diff +/- t_{1-alpha/2}(k - 2) sqrt(tau2 + re_se**2)``.
      A zero-variance dataset's variance is ``(100 / n_test)**2 / n`` (n_test unknown:
      ``0.1**2 / n``).
    """
    results = sort_results(validate_results(results))
    contrasts = _resolve_contrasts(results, contrasts)
    n_test = _n_test_by_dataset(results)
    by_dataset = {
        dataset: {arm: g.set_index("seed")["accuracy"] for arm, g in group.groupby("arm", sort=False)}
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
            q = _exact_units(d)
            if np.all(q == q[0]):  # zero variance: one test image's difference squared over n
                tests = n_test.get(dataset, nan)
                image = 100.0 / tests if _finite(tests) and tests > 0 else _MIN_ROPE
                if not (_finite(tests) and tests > 0):
                    floor_unknown.append(dataset)
                variances.append(image**2 / n)
            else:
                variances.append(float(np.var(d, ddof=1)) / n)
            re_names.append(dataset)
    if floor_unknown:
        notes.append(
            f"zero-variance differences on {', '.join(floor_unknown)} without n_test: "
            f"variance floor of {_MIN_ROPE:g} points squared over n used"
        )
    k = len(names)
    units = dict(a_ahead=0, b_ahead=0, p_sign_datasets=nan, p_wilcoxon_datasets=nan, min_p_datasets=nan)
    if k:
        q = _exact_units(np.array(means))
        units.update(a_ahead=int(np.sum(q > 0)), b_ahead=int(np.sum(q < 0)))
    if k >= 2:
        exact = _exact_units(np.array(means)) / _EXACT_UNITS_PER_POINT
        units.update(
            p_sign_datasets=sign_test_p(exact),
            p_wilcoxon_datasets=_wilcoxon_p(exact),
            min_p_datasets=smallest_permutation_p(exact),
        )
    re = dict(re_datasets=len(re_names), re_diff=nan, re_se=nan, re_ci_low=nan, re_ci_high=nan, tau2=nan,
              i2=nan, pi_low=nan, pi_high=nan)  # fmt: skip
    if len(re_names) >= 2:
        re_means = [m for name, m in zip(names, means) if name in re_names]
        re.update(_random_effects(np.array(re_means), np.array(variances), alpha))
    elif k >= 2:
        notes.append("random effects need 2 or more datasets with 2 or more paired seeds")
    return AcrossDifference(
        arm_a=arm_a, arm_b=arm_b, n_datasets=k, datasets=", ".join(names), notes="; ".join(notes), **units, **re
    )


def _wilcoxon_p(d: np.ndarray) -> float:
    if not np.any(d != 0):
        return 1.0
    with _quiet():
        return float(st.wilcoxon(d).pvalue)


def _random_effects(effect: np.ndarray, variance: np.ndarray, alpha: float) -> dict[str, float]:
    k = effect.size
    with _quiet():
        res = combine_effects(effect, variance, use_t=True, alpha=alpha)
        row = res.summary_frame(alpha=alpha).loc["random effect wls"]
    tau2 = float(res.tau2)
    i2 = float(res.i2)
    out = dict(
        re_diff=float(row["eff"]), re_se=float(row["sd_eff"]), re_ci_low=float(row["ci_low"]),
        re_ci_high=float(row["ci_upp"]), tau2=tau2, i2=max(0.0, i2) if math.isfinite(i2) else 0.0,
        pi_low=math.nan, pi_high=math.nan,
    )  # fmt: skip
    if k >= 3:
        half = st.t.ppf(1 - alpha / 2, k - 2) * math.sqrt(tau2 + out["re_se"] ** 2)
        out.update(pi_low=out["re_diff"] - half, pi_high=out["re_diff"] + half)
    return out


def across_frame(differences: Sequence[AcrossDifference]) -> pd.DataFrame:
    """The rows of :func:`across_datasets` as a DataFrame with :data:`ACROSS_COLUMNS`."""
    frame = _frame(differences, ACROSS_COLUMNS)
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
    datasets = _dataset_order(results)
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
    means = means[[a for a in _arm_order(results) if a in means.columns]].dropna(axis=1)
    arms = tuple(means.columns)
    k, n = len(arms), len(means)
    if k < 3:
        return None
    table = means.to_numpy() * 100.0  # (datasets, arms)
    with _quiet():  # all arms tied on every dataset: 0/0, NaN statistic
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


# --------------------------------------------------------------------------- tuning


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


# --------------------------------------------------------------------------- sequential seeds

SEQUENTIAL_COLUMNS = (
    "dataset", "arm_a", "arm_b", "decision", "look", "n", "boundary", "critical", "diff", "interval_low",
    "interval_high", "rope", "seeds_run", "sd_diff", "effect", "effect_source", "power", "expected_seeds",
    "fixed_seeds_same_power",
)  # fmt: skip
# The Procedure section and README name these as not shown for a sequential study: they are
# fixed-sample figures (Holm over one look at a fixed n, power at a fixed n).
FIXED_ONLY_COLUMNS = ("p_holm", "p_tost_holm", "mde_80")


def sequential_design(looks: Sequence[int], alpha: float, comparisons: int, spending: str) -> sq.Design:
    """The design of a sequential study (its ROPE is set per contrast, see :func:`sequential_look`)."""
    return sq.make_design(looks, alpha=alpha, comparisons=comparisons, spending=spending, rope=0.0)


def _paired_differences(
    results: pd.DataFrame, contrasts: Sequence[tuple[str, str]] | None, rope: float | None
) -> tuple[dict[tuple[str, str, str], np.ndarray], dict[tuple[str, str, str], float]]:
    """Per (dataset, arm_a, arm_b): A - B in points over the seeds both arms ran, in seed order,
    and the row's ROPE (as :func:`compare` sets it)."""
    results = sort_results(validate_results(results))
    contrasts = _resolve_contrasts(results, contrasts)
    n_test = _n_test_by_dataset(results)
    diffs, ropes = {}, {}
    for dataset, group in results.groupby("dataset", sort=False):
        by_arm = {arm: g.set_index("seed")["accuracy"] for arm, g in group.groupby("arm", sort=False)}
        for arm_a, arm_b in contrasts:
            if arm_a not in by_arm or arm_b not in by_arm:
                continue
            a, b = by_arm[arm_a], by_arm[arm_b]
            seeds = sorted(set(a.index) & set(b.index))
            # the same arithmetic as paired_comparison, so both see the same doubles
            d = a.loc[seeds].to_numpy(dtype=float) * 100.0 - b.loc[seeds].to_numpy(dtype=float) * 100.0
            diffs[(dataset, arm_a, arm_b)] = d
            ropes[(dataset, arm_a, arm_b)] = default_rope(n_test.get(dataset)) if rope is None else float(rope)
    return diffs, ropes


def sequential_look(
    results: pd.DataFrame,
    *,
    looks: Sequence[int],
    spending: str,
    comparisons: int,
    alpha: float = 0.05,
    contrasts: Sequence[tuple[str, str]] | None = None,
    rope: float | None = None,
    n_seeds_done: int | None = None,
) -> sq.LookResult:
    """The verdict per contrast and data set after the seeds in ``results``, and what to run next.

    The repeats loop calls this after every look on the cells finished so far, and the report
    on the whole table: both replay the looks from the same differences
    (:func:`ablate.sequential.next_action`), so they reach the same verdicts.

    Args:
        results: results table; only seeds run for both arms of a contrast pair up.
        looks: cumulative seed counts of the design; spending: its Lan-DeMets family.
        comparisons: contrasts x data sets sharing ``alpha`` (from the study file, so a cell
            given up does not change the design).
        contrasts, rope: as in :func:`compare` (rope None: one test image per data set, at
            least 0.1 points).
        n_seeds_done: seeds complete for every arm and data set; default the number of distinct
            seeds in ``results`` (a look still running is not evaluated: its contrasts lack pairs).

    Returns:
        :class:`ablate.sequential.LookResult` keyed by ``(dataset, arm_a, arm_b)``.
    """
    diffs, ropes = _paired_differences(results, contrasts, rope)
    done = int(results["seed"].nunique()) if n_seeds_done is None else int(n_seeds_done)
    design = sequential_design(looks, alpha, comparisons, spending)
    with _quiet():  # nearly constant differences: scipy's precision warning, the verdict stands
        return sq.next_action(design, diffs, done, ropes=ropes)


def sequential_frame(
    results: pd.DataFrame,
    *,
    looks: Sequence[int],
    spending: str,
    comparisons: int,
    alpha: float = 0.05,
    contrasts: Sequence[tuple[str, str]] | None = None,
    rope: float | None = None,
    smallest_effect: float | None = None,
) -> pd.DataFrame:
    """One row per (dataset, contrast) of a sequential study, :data:`SEQUENTIAL_COLUMNS`.

    ``decision``, ``look``, ``n``, ``boundary``, ``critical`` (the calibrated |t| of that look),
    ``diff`` and ``interval_low/high`` (the design-adjusted interval) are those of
    :func:`ablate.sequential.decide` at the look that decided the contrast (or the latest look).
    ``seeds_run`` is the number of paired seeds the arms ran in all (more than ``n`` when another
    contrast kept them going); ``sd_diff`` the sd of those differences. ``power`` and
    ``expected_seeds`` are the design's, by simulation (:func:`ablate.sequential.operating_characteristics`,
    seeded) at that sd against ``effect`` points, the smallest effect of interest or else 3 x
    the row's ROPE (``effect_source`` says which); ``fixed_seeds_same_power`` the seeds a fixed
    paired t-test at ``alpha / comparisons`` needs for that power (inf beyond 100,000; NaN
    without a positive sd or with zero power).
    """
    diffs, ropes = _paired_differences(results, contrasts, rope)
    design = sequential_design(looks, alpha, comparisons, spending)
    with _quiet():
        verdicts = sq.next_action(design, diffs, max((len(d) for d in diffs.values()), default=0), ropes=ropes)
    rows = []
    for key, d in diffs.items():
        c = verdicts.decisions[key]
        row_rope = ropes[key]
        effect, source = ((float(smallest_effect), "smallest_effect") if smallest_effect is not None
                          else (3.0 * row_rope, "3 x rope"))
        sd_d = float(np.std(d, ddof=1)) if len(d) >= 2 else math.nan
        power = expected = fixed = math.nan
        if _finite(sd_d) and sd_d > 0 and effect > 0:
            oc = sq.operating_characteristics(dataclasses.replace(design, rope=row_rope), sd=sd_d, effect=effect)
            power, expected = oc.power, oc.expected_seeds
            fixed = float(oc.fixed_seeds) if oc.fixed_seeds is not None else (math.inf if oc.power > 0 else math.nan)
        rows.append({
            "dataset": key[0], "arm_a": key[1], "arm_b": key[2], "decision": c.decision, "look": c.look, "n": c.n,
            "boundary": c.boundary or "", "critical": c.critical, "diff": c.mean, "interval_low": c.interval[0],
            "interval_high": c.interval[1], "rope": row_rope, "seeds_run": len(d), "sd_diff": sd_d,
            "effect": effect, "effect_source": source, "power": power, "expected_seeds": expected,
            "fixed_seeds_same_power": fixed,
        })  # fmt: skip
    return pd.DataFrame.from_records(rows, columns=list(SEQUENTIAL_COLUMNS))


def pooled_difference_sd(
    results: pd.DataFrame, contrasts: Sequence[tuple[str, str]] | None = None
) -> tuple[float, int, int]:
    """The sd of the paired differences A - B (points), pooled over every contrast x data set.

    ``sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1))`` over the rows with at least 2 paired seeds,
    ``s_i`` the sd of row i's differences: the within-row variance, whatever each row's mean.
    Returns ``(sd, rows pooled, pairs)``; ``(nan, 0, 0)`` when no row has 2 pairs.
    """
    diffs, _ = _paired_differences(results, contrasts, None)
    used = [d for d in diffs.values() if len(d) >= 2]
    if not used:
        return math.nan, 0, 0
    dof = sum(len(d) - 1 for d in used)
    pooled = sum((len(d) - 1) * float(np.var(d, ddof=1)) for d in used) / dof
    return math.sqrt(pooled), len(used), sum(len(d) for d in used)


def sequential_verdict(row: Mapping[str, object], still_rising: str = "") -> str:
    """A row of :func:`sequential_frame` as the ``verdict`` of its comparison, in the words of
    :func:`verdict`: "significant: <arm> better (sequential, look 2)", "practically equivalent
    (sequential, look 3)", "undecided after 30 seeds", "open after look 1" (a study still running)."""
    decision, look, n = row["decision"], int(row["look"]), int(row["n"])
    if decision in ("A better", "B better"):
        better = row["arm_a"] if decision == "A better" else row["arm_b"]
        rope = float(row["rope"])
        inside = abs(float(row["interval_low"])) < rope and abs(float(row["interval_high"])) < rope
        text = f"significant: {better} better (sequential, look {look})" + (" (within ROPE)" if inside else "")
    elif decision == "equivalent":
        text = f"practically equivalent (sequential, look {look})"
    elif decision == "undecided":
        text = f"undecided after {n} seeds"
    else:
        text = f"open after look {look}" if look else "open: no look complete"
    return text + (f"; still rising: {still_rising}" if still_rising else "")


def mark_sequential(comparisons: pd.DataFrame, sequential: pd.DataFrame) -> pd.DataFrame:
    """``comparisons`` of a sequential study: :data:`FIXED_ONLY_COLUMNS` emptied (NaN) and each
    verdict replaced by the sequential one (:func:`sequential_verdict`)."""
    out = comparisons.copy()
    for column in FIXED_ONLY_COLUMNS:
        out[column] = math.nan
    by_key = {(r["dataset"], r["arm_a"], r["arm_b"]): r for r in sequential.to_dict("records")}
    verdicts = []
    for r in out.to_dict("records"):
        seq = by_key.get((r["dataset"], r["arm_a"], r["arm_b"]))
        rising = r.get("still_rising") if isinstance(r.get("still_rising"), str) else ""
        verdicts.append(r["verdict"] if seq is None else sequential_verdict(seq, rising))
    out["verdict"] = verdicts
    return out


# --------------------------------------------------------------------------- helpers


def _frame(rows: Sequence[object], columns: Sequence[str]) -> pd.DataFrame:
    records = []
    for row in rows:
        record = {name: getattr(row, name) for name in columns}
        if isinstance(record.get("warnings"), tuple):
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
        warnings.simplefilter("ignore", InvalidTestWarning)  # combine_effects' per-sample CIs, unused
        for name in ("DegenerateDataWarning", "SmallSampleWarning"):  # scipy >= 1.11 / 1.14
            category = getattr(st, name, None)
            if category is not None:
                warnings.simplefilter("ignore", category)
        yield
