"""Helpers shared by the statistics modules: warnings of degenerate samples, medians, frames."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
from scipy import stats as st
from statsmodels.tools.sm_exceptions import ConvergenceWarning, InvalidTestWarning


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the divide-by-zero, precision and convergence warnings of degenerate samples.

    Their outcome is documented in docs/statistics.md and shows up as NaN or a row warning.
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


def median(values: pd.Series) -> float:
    """The median of the numbers in ``values`` (empty cells left out); NaN when there are none."""
    x = pd.to_numeric(values, errors="coerce").astype("float64").dropna()
    return float(np.median(x)) if len(x) else math.nan


def as_frame(rows: Sequence[object], columns: Sequence[str]) -> pd.DataFrame:
    """Records (dataclasses) as a DataFrame of ``columns``; a ``warnings`` tuple joined with "; "."""
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
