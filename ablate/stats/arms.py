"""One arm on one dataset: its accuracies summarized, and what it cost (in points, medians over seeds)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

from ablate.stats._common import as_frame, median, quiet
from ablate.stats.results import OPTIONAL_COLUMNS, sort_results, validate_results

__all__ = [
    "SUMMARY_COLUMNS",
    "PROFILE_COLUMNS",
    "ArmSummary",
    "ArmProfile",
    "summarize_arm",
    "summarize",
    "summarize_similarity",
    "profile_arms",
]


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


SUMMARY_COLUMNS = tuple(f.name for f in dataclasses.fields(ArmSummary))
PROFILE_COLUMNS = tuple(f.name for f in dataclasses.fields(ArmProfile))


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
        with quiet():
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
    return as_frame(rows, SUMMARY_COLUMNS)


def profile_arms(results: pd.DataFrame, still_rising: float = 2.0) -> pd.DataFrame:
    """One row per dataset x arm with the columns of :class:`ArmProfile` (medians over seeds).

    ``late_gain`` is the median of ``val_gain_last_quarter * 100``; the arm is still rising
    when it exceeds ``still_rising`` points (None when the column is missing or empty).
    """
    results = sort_results(validate_results(results))
    rows = []
    for (dataset, arm), g in results.groupby(["dataset", "arm"], sort=False):
        col = {c: (median(g[c]) if c in g.columns else math.nan) for c in OPTIONAL_COLUMNS}
        gain = col["val_gain_last_quarter"] * 100.0
        rows.append(
            ArmProfile(
                dataset=dataset, arm=arm, n=len(g), params=col["params"],
                trainable_params=col["trainable_params"], train_images=col["train_images"],
                wall_time=col["wall_time"], n_test=col["n_test"], late_gain=gain,
                still_rising=bool(gain > still_rising) if math.isfinite(gain) else None,
            )
        )  # fmt: skip
    return as_frame(rows, PROFILE_COLUMNS)


def arm_profiles(results: pd.DataFrame, still_rising: float) -> list[ArmProfile]:
    """The rows of :func:`profile_arms` as records."""
    frame = profile_arms(results, still_rising)
    return [ArmProfile(**{k: (None if k == "still_rising" and v is None else v) for k, v in r.items()})
            for r in frame.to_dict("records")]
