"""How good a search was, and how much a result depends on it.

* :func:`expected_max` and :func:`tuning_curve`: the expected best validation accuracy after n
  search trials (Dodge et al. 2019) with a simultaneous, distribution-free confidence band from
  the ``opda`` package (Lourie et al. 2024).
* :func:`replicate_rows` and :func:`replicate_verdicts`: a study that ran R independent searches
  per arm (``replicate`` in the results) is read at replicate 0, and each contrast's verdict is
  checked against the settings of every replicate (Bouthillier et al. 2021 count the search
  among the sources of variance).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from opda.nonparametric import EmpiricalDistribution

from ablate.stats.contrasts import compare
from ablate.stats.results import sort_results, validate_results

__all__ = [
    "BAND_CONFIDENCE",
    "TuningCurve",
    "expected_max",
    "tuning_curve",
    "replicate_ids",
    "replicate_rows",
    "verdict_decision",
    "replicate_verdicts",
]

BAND_CONFIDENCE = 0.95  # as every interval of the report
_BAND_SEED = 0  # the Learned-Miller-DeStefano band's critical value is simulated: seeded, so reports repeat
# opda simulates the band from 100,000 sorted samples of n uniforms (n x 0.8 MB, about 4 s at n = 100
# and 9 s at n = 200 here); beyond 200 trials the Kolmogorov-Smirnov band, exact in closed form and
# as wide in the middle but looser in the tails, costs nothing.
_LD_MAX_TRIALS = 200


@dataclass(frozen=True)
class TuningCurve:
    """An arm's tuning curve over the search trials that ran, as fractions; index i is n = i + 1.

    ``expected``: the expected best validation accuracy after n trials; ``low``/``high``: the
    simultaneous ``confidence`` band of that curve (opda's ``band`` method); ``trials``: trials
    run, ``pruned`` of them counted at their last reported value.
    """

    trials: int
    pruned: int
    expected: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    confidence: float
    band: str


def expected_max(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Expected best of n search trials, n = 1..N, from N trials' values (Dodge et al. 2019).

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


def tuning_curve(
    values: Sequence[float] | np.ndarray,
    pruned: Sequence[bool] | None = None,
    *,
    confidence: float = BAND_CONFIDENCE,
) -> TuningCurve:
    """The expected best validation accuracy after n = 1..N trials run, with its confidence band.

    Procedure: every trial that ran counts, a pruned one at its last reported validation
    accuracy (what the search had of it), so n is the number of trials run. The curve is
    :func:`expected_max` (Dodge et al. 2019). The band is opda's (Lourie et al. 2024): a
    simultaneous band for the distribution function of one trial's value, the
    Learned-Miller-DeStefano band with equal-tailed beta intervals (Kolmogorov-Smirnov beyond
    200 trials), on the support [0, 1] of an accuracy; the distributions at its two edges give
    the lowest and highest expected best of n, for every n at once. The band holds with
    probability ``confidence`` when the trials are independent draws from one distribution
    (random search); it is exact for continuous values and conservative with ties. TPE's trials
    depend on the earlier ones, and a pruner's cut on the others, so there it is an
    approximation. Few trials give a band that spans most of [0, 1]: that is the honest answer.

    Args:
        values: the validation accuracy (fraction) of every trial that ran, in trial order.
        pruned: whether each trial was pruned; None: none was.
        confidence: the band's simultaneous coverage.

    Returns:
        The curve; empty tuples for no values.

    Raises:
        ValueError: ``pruned`` is not as long as ``values``, or a value is not in [0, 1].
    """
    ys = np.asarray(values, dtype=float)
    flags = [False] * ys.size if pruned is None else [bool(p) for p in pruned]
    if len(flags) != ys.size:
        raise ValueError(f"pruned has {len(flags)} entries for {ys.size} values")
    if not np.all(np.isfinite(ys) & (ys >= 0.0) & (ys <= 1.0)):
        raise ValueError("values must be accuracies in [0, 1]")
    band = "ld_equal_tailed" if ys.size <= _LD_MAX_TRIALS else "ks"
    if ys.size == 0:
        return TuningCurve(0, 0, (), (), (), confidence, band)
    with warnings.catch_warnings():
        # opda warns that ties (equal accuracies are common: they count images) make the band
        # conservative rather than exact; the docstring and the report say so.
        warnings.simplefilter("ignore", RuntimeWarning)
        cdf_low, _, cdf_high = EmpiricalDistribution.confidence_bands(
            ys, confidence, a=0.0, b=1.0, generator=np.random.default_rng(_BAND_SEED), method=band, n_jobs=1,
        )  # fmt: skip
    ns = np.arange(1, ys.size + 1)
    # The highest distribution function is the stochastically smallest value: the lowest curve.
    return TuningCurve(
        trials=int(ys.size),
        pruned=int(sum(flags)),
        expected=_floats(expected_max(ys)),
        low=_floats(cdf_high.average_tuning_curve(ns)),
        high=_floats(cdf_low.average_tuning_curve(ns)),
        confidence=float(confidence),
        band=band,
    )


def _floats(x: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in x)


def replicate_ids(results: pd.DataFrame) -> list[int]:
    """The replicates (independent searches) a results table holds: [0] without a ``replicate`` column."""
    if "replicate" not in results.columns:
        return [0]
    return sorted({int(r) for r in results["replicate"].fillna(0)})


def replicate_rows(results: pd.DataFrame, replicate: int = 0) -> pd.DataFrame:
    """The rows run with the settings of search ``replicate`` (an empty cell counts as 0).

    Every statistic of a report's main tables uses the rows of replicate 0; a table without a
    ``replicate`` column is all replicate 0 and comes back whole.
    """
    if "replicate" not in results.columns:
        return results
    return results[results["replicate"].fillna(0).astype("int64") == replicate].reset_index(drop=True)


def verdict_decision(verdict: str) -> str:
    """What a verdict decides, without its notes: "significant: fmce better (within ROPE); still
    rising: fmce" decides "significant: fmce better"."""
    return verdict.split(";")[0].split(" (")[0].strip()


def replicate_verdicts(
    results: pd.DataFrame, compare_rows: Callable[[pd.DataFrame], pd.DataFrame] = compare
) -> pd.DataFrame:
    """Each contrast's verdict with the settings of every replicate search.

    Procedure: the rows of each replicate are compared on their own by ``compare_rows`` (Holm's
    family is the replicate's comparisons); a verdict *holds* when every replicate ran the
    contrast and reached the same decision (:func:`verdict_decision`). Bouthillier et al. (2021)
    count the hyperparameter search among the sources of variance of a benchmark: a verdict
    that flips with the search's seed rests on that search.

    Args:
        results: results table with a ``replicate`` column (absent: one search).
        compare_rows: one replicate's rows to its comparisons: :func:`compare`, by default with
            its defaults; a report passes ``functools.partial(compare, contrasts=..., rope=...)``
            with its own settings.

    Returns:
        One row per data set, contrast and replicate (replicates ascending, contrasts in
        replicate 0's order), with columns ``dataset, arm_a, arm_b, replicate, n, diff, p_holm,
        verdict, holds``; empty with fewer than two replicates.
    """
    columns = ["dataset", "arm_a", "arm_b", "replicate", "n", "diff", "p_holm", "verdict", "holds"]
    results = sort_results(validate_results(results))
    ids = replicate_ids(results)
    if len(ids) < 2:
        return pd.DataFrame(columns=columns)
    frames = []
    for r in ids:
        frames.append(compare_rows(replicate_rows(results, r)).assign(replicate=r))
    long = pd.concat(frames, ignore_index=True)
    key = ["dataset", "arm_a", "arm_b"]
    decisions = long.assign(_decision=long["verdict"].map(verdict_decision)).groupby(key, sort=False)["_decision"]
    holds = decisions.agg(lambda d: d.nunique() == 1 and len(d) == len(ids)).rename("holds").reset_index()
    first = long[long["replicate"] == ids[0]][key]  # replicate 0's order: data set, then contrast
    order = {tuple(k): i for i, k in enumerate(first.itertuples(index=False))}
    long = long.merge(holds, on=key, how="left")
    long["_order"] = [order.get(tuple(k), math.inf) for k in long[key].itertuples(index=False)]
    long = long.sort_values(["_order", "replicate"], kind="stable").reset_index(drop=True)
    return long[columns]
