"""Every contrast on every data set: the comparisons table, its Holm adjustments and the verdicts.

:func:`compare` runs :func:`ablate.stats.paired_comparison` (this test set) for every contrast on
every data set, adds the figures for new data where predictions exist
(:func:`ablate.stats.crossed_design`), marks an arm whose recipe may be too short
(:func:`too_short_recipes`), adjusts the p-values by Holm over the whole table and sets each
verdict (each row's deciding p, new data where it has it, adjusted once over all rows). The
procedure with its references: docs/statistics.md (``ablate.report.procedure``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from ablate.analysis import check_settings, is_finite
from ablate.stats._common import as_frame, quiet
from ablate.stats.arms import ArmProfile, arm_profiles
from ablate.stats.crossed import crossed_design
from ablate.stats.exact import sign_flip_tost_p
from ablate.stats.paired import COMPARISON_COLUMNS, Comparison, equivalence_attainable, paired_comparison, share_interval
from ablate.stats.predictions import correct_by_arm, matching_runs, validate_predictions
from ablate.stats.results import (accuracy_by_arm, n_test_by_dataset, resolve_contrasts, row_rope, sort_results,
                                  validate_results)

__all__ = ["TooShort", "compare", "verdict", "verdict_holm", "confounded_by", "too_short_recipes", "with_new_data"]

_CONFOUND_RATIO = 0.10
_CONFOUNDS = (("params", "parameters"), ("train_images", "compute"))
# The control pair that says whether the single-head recipe trained long enough.
_LONG, _SHORT = "single-long", "single"


@dataclass(frozen=True)
class TooShort:
    """On ``dataset``, the ``single`` recipe may be too short: single-long's interval over it
    (``ci_low``, ``ci_high``, points; for new data where ``new_data``) reaches above ``threshold``
    (the smallest effect of interest, else the data set's ROPE: ``threshold_source``)."""

    dataset: str
    arm: str
    n: int
    diff: float
    ci_low: float
    ci_high: float
    new_data: bool
    threshold: float
    threshold_source: str


def compare(
    results: pd.DataFrame,
    contrasts: Sequence[tuple[str, str]] | None = None,
    rope: float | None = None,
    alpha: float = 0.05,
    smallest_effect: float | None = None,
    still_rising: float = 2.0,
    *,
    predictions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Compare arms pairwise on every dataset; one row per (dataset, contrast).

    Args:
        results: results table (``dataset, arm, seed, accuracy``; accuracy a fraction; the
            optional columns feed ``rope``, ``confounded_by`` and ``still_rising``).
        contrasts: ``(arm_a, arm_b)`` pairs; differences are A - B. Default:
            :func:`default_contrasts` of the arms in order of first appearance. A contrast
            whose arms are not both run on a dataset is skipped there (see
            :func:`missing_arms`).
        rope: half-width of the region of practical equivalence, in points; None:
            :func:`ablate.stats.row_rope` (the smallest effect of interest, else one test image).
        alpha: significance level for the Holm-adjusted verdict, TOST and planning figures
            (these at ``alpha / m``, Holm's first step over the m rows with 2 or more pairs).
        smallest_effect: smallest difference of interest in points, for
            ``seeds_for_smallest_effect``, the default ROPE and the too-short mark.
        still_rising: late validation gain in points above which an arm is still rising.
        predictions: a predictions table (:data:`ablate.stats.PREDICTION_COLUMNS`); where a row
            has predictions for every one of its 2 or more paired seeds, its new-data columns are
            filled and its verdict uses them (Holm over every row, :func:`_with_holm`). Predictions of runs not in ``results`` are left out
            (:func:`ablate.stats.matching_runs`).

    Returns:
        A DataFrame with :data:`COMPARISON_COLUMNS` (``warnings`` joined with "; "), rows in
        dataset order then contrast order.

    Raises:
        ConfigError: bad results or predictions table, a contrast naming an arm that no dataset
            has, a contrast of an arm with itself, or ``rope``/``alpha``/``smallest_effect``/
            ``still_rising`` out of range.
    """
    rows = _comparisons(results, contrasts, rope, alpha, smallest_effect, still_rising, predictions)
    frame = as_frame(rows, COMPARISON_COLUMNS)
    frame["n_examples"] = frame["n_examples"].astype("Int64")
    return frame


def _comparisons(
    results: pd.DataFrame,
    contrasts: Sequence[tuple[str, str]] | None,
    rope: float | None,
    alpha: float,
    smallest_effect: float | None,
    still_rising: float,
    predictions: pd.DataFrame | None,
) -> list[Comparison]:
    check_settings(rope, alpha, smallest_effect, still_rising)
    results = sort_results(validate_results(results))
    predictions = None if predictions is None else validate_predictions(matching_runs(predictions, results), results)
    contrasts = resolve_contrasts(results, contrasts)
    n_test = n_test_by_dataset(results)
    profiles = {(p.dataset, p.arm): p for p in arm_profiles(results, still_rising)}
    cells = []
    for dataset, group in results.groupby("dataset", sort=False):
        by_arm = accuracy_by_arm(group)
        right = correct_by_arm(predictions, dataset) if predictions is not None else {}
        cells += [(dataset, a, b, by_arm, right) for a, b in contrasts if a in by_arm and b in by_arm]
    family = max(1, sum(len(set(by_arm[a].index) & set(by_arm[b].index)) >= 2 for _, a, b, by_arm, _ in cells))
    short = {s.dataset: s.arm for s in _too_short(results, predictions, rope, smallest_effect)}
    rows: list[Comparison] = []
    for dataset, arm_a, arm_b, by_arm, right in cells:
        tests = n_test.get(dataset, math.nan)
        one_image = 100.0 / tests if is_finite(tests) and tests > 0 else None
        row = paired_comparison(
            dataset, arm_a, arm_b, by_arm[arm_a], by_arm[arm_b], rope=row_rope(rope, smallest_effect, tests),
            alpha=alpha, smallest_effect=smallest_effect, one_image=one_image, family=family,
        )  # fmt: skip
        if predictions is not None:
            row = with_new_data(row, right.get(arm_a), right.get(arm_b), alpha)
        pa, pb = profiles[(dataset, arm_a)], profiles[(dataset, arm_b)]
        rising = ", ".join(p.arm for p in (pa, pb) if p.still_rising)
        marked = short.get(dataset, "") if short.get(dataset) in (arm_a, arm_b) else ""
        rows.append(dataclasses.replace(row, confounded_by=confounded_by(pa, pb), still_rising=rising,
                                        too_short=marked))
    return _with_holm(rows, alpha)


def with_new_data(row: Comparison, right_a: pd.DataFrame | None, right_b: pd.DataFrame | None,
                  alpha: float) -> Comparison:
    """``row`` with its new-data columns, from each arm's right/wrong table (seeds x test examples,
    :func:`ablate.stats.correct_by_arm`; None: the arm has no predictions).

    Only where every paired seed of the row (all ``row.n``) has predictions of both arms, so that
    the new-data figures describe the same difference as ``diff``, over those S seeds: ``n_examples``, the interval, df, p and
    ``sd_test_sampling`` of :func:`ablate.stats.crossed_design`; ``p_tost_new_data``, the two
    one-sided t-tests at that se and df (the sign-flip TOST of the per-seed differences where
    every x is the same); ``equivalence_attainable`` at that se and df; and the share interval
    bootstrapped over seeds and examples. A paired seed without predictions: a warning, and the row
    as it was (this test set only).
    """
    seeds = sorted(set(right_a.index) & set(right_b.index)) if right_a is not None and right_b is not None else []
    if len(seeds) < row.n or len(seeds) < 2:
        # The difference, its sign and this test set's interval are over all row.n paired seeds; a
        # new-data interval over fewer would describe a different difference, so none is given.
        note = (f"{row.n - len(seeds)} of {row.n} paired seeds lack predictions: no new-data test, "
                "the verdict holds for this test set only")
        return dataclasses.replace(row, warnings=row.warnings + (note,)) if row.n >= 2 else row
    x = 100.0 * (right_a.loc[seeds].to_numpy(dtype=float) - right_b.loc[seeds, right_a.columns].to_numpy(dtype=float))
    design = crossed_design(x)
    if design.se == 0.0:
        p_tost = sign_flip_tost_p(x.mean(axis=1), row.rope)
    else:
        with quiet():
            p_tost = max(float(st.t.sf((design.mean + row.rope) / design.se, design.df)),
                         float(st.t.cdf((design.mean - row.rope) / design.se, design.df)))
    low, high = share_interval(x, examples=True)
    notes = row.warnings
    return dataclasses.replace(
        row, n_examples=float(design.examples), ci_low_new_data=design.ci_low, ci_high_new_data=design.ci_high,
        df_new_data=design.df, p_new_data=design.p, sd_test_sampling=design.sd_test_sampling, p_tost_new_data=p_tost,
        equivalence_attainable=equivalence_attainable(design.se, design.df, row.rope, alpha, seeds=len(seeds)),
        share_ci_low=low, share_ci_high=high, warnings=notes,
    )  # fmt: skip


def _holm(p: Sequence[float], alpha: float) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    finite = np.isfinite(p)
    adjusted = np.full(p.shape, math.nan)
    if finite.any():
        adjusted[finite] = multipletests(p[finite], alpha=alpha, method="holm")[1]
    return adjusted


_SEEDS_ONLY = (("p_holm", "p_paired"), ("p_tost_holm", "p_tost"))


def _deciding_holm(p_new_data: Sequence[float], p_paired: Sequence[float], p_tost_new_data: Sequence[float],
                   p_tost: Sequence[float], alpha: float) -> tuple[np.ndarray, np.ndarray]:
    new = np.isfinite(np.asarray(p_new_data, dtype=float))
    p = np.where(new, np.asarray(p_new_data, dtype=float), np.asarray(p_paired, dtype=float))
    p_tost_ = np.where(new, np.asarray(p_tost_new_data, dtype=float), np.asarray(p_tost, dtype=float))
    return _holm(p, alpha), _holm(p_tost_, alpha)


def verdict_holm(comparisons: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """The Holm-adjusted p and TOST p each verdict of ``comparisons`` (:func:`compare`) uses.

    Each row's deciding p is ``p_new_data`` where the row has the new-data test, else
    ``p_paired`` (its TOST p likewise ``p_tost_new_data``, else ``p_tost``); each is Holm-adjusted
    once over every row, rows with and without predictions together (Holm 1979; statsmodels'
    ``multipletests``), so no row sits in a smaller family because others lack predictions.

    Returns:
        A DataFrame on ``comparisons``' index with columns ``p_verdict_holm, p_tost_verdict_holm``;
        on rows with the new-data test they equal ``p_new_data_holm`` and ``p_tost_new_data_holm``,
        and without any they equal ``p_holm`` and ``p_tost_holm``.
    """
    columns = [pd.to_numeric(comparisons[name], errors="coerce").to_numpy(dtype=float)
               for name in ("p_new_data", "p_paired", "p_tost_new_data", "p_tost")]
    p, p_tost = _deciding_holm(*columns, alpha)
    return pd.DataFrame({"p_verdict_holm": p, "p_tost_verdict_holm": p_tost}, index=comparisons.index)


def _with_holm(rows: list[Comparison], alpha: float) -> list[Comparison]:
    """Holm-adjust over every row (:func:`verdict_holm`), then set each verdict.

    ``p_new_data_holm`` and ``p_tost_new_data_holm`` are the deciding p-values adjusted over the
    whole family, on the rows with the new-data test; ``p_holm`` and ``p_tost_holm`` adjust this
    test set's p-values over every row, for reference.
    """
    adjusted = {name: _holm([getattr(r, source) for r in rows], alpha) for name, source in _SEEDS_ONLY}
    verdict_p, verdict_tost = _deciding_holm([r.p_new_data for r in rows], [r.p_paired for r in rows],
                                             [r.p_tost_new_data for r in rows], [r.p_tost for r in rows], alpha)
    out = []
    for i, row in enumerate(rows):
        new = row.new_data
        row = dataclasses.replace(
            row, **{name: float(values[i]) for name, values in adjusted.items()},
            p_verdict_holm=float(verdict_p[i]), p_tost_verdict_holm=float(verdict_tost[i]),
            p_new_data_holm=float(verdict_p[i]) if new else math.nan,
            p_tost_new_data_holm=float(verdict_tost[i]) if new else math.nan,
        )  # fmt: skip
        out.append(dataclasses.replace(row, verdict=verdict(row, alpha)))
    return out


def verdict(c: Comparison, alpha: float = 0.05) -> str:
    """The verdict of a comparison whose Holm p-values are set (docs/statistics.md, the verdict).

    It uses ``p_verdict_holm`` and ``p_tost_verdict_holm`` (:func:`verdict_holm`): the new-data
    test where the row has it, else the seed-level test of this test set, Holm-adjusted over every
    row of the table.
    """
    if c.n < 2:
        text = "insufficient data"
    else:
        p, p_tost = c.p_verdict_holm, c.p_tost_verdict_holm
        equivalent = math.isfinite(p_tost) and p_tost < alpha
        if math.isfinite(p) and p < alpha:
            better = c.arm_a if c.diff > 0 else c.arm_b
            text = f"significant: {better} better" + (" (within ROPE)" if equivalent else "")
            if c.min_p_permutation > alpha and not c.new_data:
                text += f"; paired t only: the permutation test cannot reach p < {alpha:g} at n = {c.n}"
        elif equivalent:
            text = "practically equivalent"
        else:
            text = "not significant"
    if c.too_short:
        text += f"; may be too short: {c.too_short}"
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


def too_short_recipes(
    results: pd.DataFrame,
    predictions: pd.DataFrame | None = None,
    *,
    rope: float | None = None,
    smallest_effect: float | None = None,
) -> list[TooShort]:
    """Data sets where ``single`` may be too short: single-long's interval over it reaches above the threshold.

    A cosine schedule flattens every curve in its last quarter, so a small late validation gain
    does not show that a recipe trained long enough; the ``single-long`` control does. On every
    data set with both arms and 2 or more paired seeds, the 95% interval of single-long - single
    (for new data where predictions exist, else this test set's paired t; with zero spread the
    difference itself) is compared with the smallest effect of interest, else the data set's
    ROPE: an upper end above it marks ``single``, significant or not.

    Raises:
        ConfigError: bad results or predictions table, or ``rope``/``smallest_effect`` out of range.
    """
    check_settings(rope, 0.05, smallest_effect, 0.0)
    results = sort_results(validate_results(results))
    predictions = None if predictions is None else validate_predictions(matching_runs(predictions, results), results)
    return _too_short(results, predictions, rope, smallest_effect)


def _too_short(results: pd.DataFrame, predictions: pd.DataFrame | None, rope: float | None,
               smallest_effect: float | None) -> list[TooShort]:
    n_test = n_test_by_dataset(results)
    out = []
    for dataset, group in results.groupby("dataset", sort=False):
        by_arm = accuracy_by_arm(group)
        if _LONG not in by_arm or _SHORT not in by_arm:
            continue
        row_rope_ = row_rope(rope, smallest_effect, n_test.get(dataset))
        row = paired_comparison(dataset, _LONG, _SHORT, by_arm[_LONG], by_arm[_SHORT], rope=row_rope_)
        if predictions is not None:
            right = correct_by_arm(predictions, dataset)
            row = with_new_data(row, right.get(_LONG), right.get(_SHORT), 0.05)
        low, high = (row.ci_low_new_data, row.ci_high_new_data) if row.new_data else (row.ci_low, row.ci_high)
        upper = high if math.isfinite(high) else row.diff
        threshold, source = ((float(smallest_effect), "smallest effect") if smallest_effect is not None
                             else (row_rope_, "ROPE"))
        if row.n >= 2 and upper > threshold:
            out.append(TooShort(dataset=dataset, arm=_SHORT, n=row.n, diff=row.diff, ci_low=low, ci_high=high,
                                new_data=row.new_data, threshold=threshold, threshold_source=source))
    return out
