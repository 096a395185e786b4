"""Results tables: read, check and order them; which arms, contrasts and ROPE they imply.

A *results table* has one row per (dataset, arm, seed) with the test ``accuracy`` as a
fraction in [0, 1], and optionally what each run cost (:data:`OPTIONAL_COLUMNS`). Every
statistic downstream reads the table through :func:`validate_results` and
:func:`sort_results`, so the same rows in any order give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from ablate.analysis import is_finite
from ablate.errors import ConfigError, DataError
from ablate.stats._common import median

__all__ = [
    "RESULT_COLUMNS",
    "OPTIONAL_COLUMNS",
    "DEFAULT_CONTRASTS",
    "load_results",
    "validate_results",
    "sort_results",
    "default_contrasts",
    "default_rope",
    "row_rope",
    "missing_arms",
]

RESULT_COLUMNS = ("dataset", "arm", "seed", "accuracy")
# What a run cost and how it ended, as the study layer records it; a table from elsewhere may
# have none of them. Integers may be empty (unknown); written to results.csv in this order.
# ``split``: the seed a run's train / validation partition was drawn from; ``replicate``: which of
# the study's independent searches chose the run's settings (0, the primary one, when absent).
OPTIONAL_COLUMNS = (
    "params", "trainable_params", "train_images", "n_test", "val_gain_last_quarter", "wall_time", "look",
    "split", "replicate",
)  # fmt: skip
_INTEGER_COLUMNS = frozenset({"params", "trainable_params", "train_images", "n_test", "look", "split", "replicate"})

# The FMCE study's arms, in the order a reader asks about them.
DEFAULT_CONTRASTS: tuple[tuple[str, str], ...] = (("fmce", "nfmce"), ("nfmce", "single"), ("fmce", "single"))

MIN_ROPE = 0.1  # points; also the stand-in for one test image when n_test is unknown


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
    out["seed"] = out["seed"].astype("int64")
    out["accuracy"] = out["accuracy"].astype("float64")
    for name in OPTIONAL_COLUMNS:
        if name in results.columns:
            out[name] = _optional_column(results[name], name)
    key = ["dataset", "arm", "seed"] + (["replicate"] if "replicate" in out.columns else [])
    dup = out.duplicated(subset=key, keep="first")
    if dup.any():
        i = _first(dup)
        row = out.iloc[i - 1]
        raise ConfigError(f"row {i}: duplicate ({', '.join(key)}) = ({', '.join(str(row[k]) for k in key)})")
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
    datasets = dataset_order(results)
    arms = arm_order(results)
    keyed = results.assign(
        _d=results["dataset"].map({d: i for i, d in enumerate(datasets)}),
        _a=results["arm"].map({a: i for i, a in enumerate(arms)}),
    )
    ordered = keyed.sort_values(["_d", "_a", "seed"], kind="stable")
    return ordered.drop(columns=["_d", "_a"]).reset_index(drop=True)


def dataset_order(results: pd.DataFrame) -> list[str]:
    """The datasets in order of first appearance."""
    return list(pd.unique(results["dataset"]))


def arm_order(results: pd.DataFrame) -> list[str]:
    """The arms in order of first appearance when the rows are read dataset by dataset."""
    rank = {d: i for i, d in enumerate(dataset_order(results))}
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


def resolve_contrasts(results: pd.DataFrame, contrasts: Sequence[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """``contrasts`` checked against the arms of ``results``; None: :func:`default_contrasts`.

    Raises:
        ConfigError: a contrast that does not name two arms, names an arm without results, or
            compares an arm with itself.
    """
    arms = arm_order(results)
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


def default_rope(n_test: float | None) -> float:
    """The default ROPE in points: the larger of 0.1 and one test image, ``100 / n_test``."""
    if n_test is None or not is_finite(n_test) or n_test <= 0:
        return MIN_ROPE
    return max(MIN_ROPE, 100.0 / float(n_test))


def row_rope(rope: float | None, smallest_effect: float | None, n_test: float | None) -> float:
    """The ROPE of one data set's rows, in points: ``rope`` where given, else the smallest effect of
    interest where given, else :func:`default_rope` of the data set's test-split size.

    With the one-image floor alone, 6 seeds at a paired sd of 0.6 points can never pass the
    equivalence test (issue 16); the smallest effect of interest is the difference the study
    says matters, so differences inside it are practically zero.
    """
    if rope is not None:
        return float(rope)
    if smallest_effect is not None:
        return float(smallest_effect)
    return default_rope(n_test)


def missing_arms(results: pd.DataFrame) -> list[tuple[str, str]]:
    """(dataset, arm) pairs where an arm run elsewhere has no result, in canonical order."""
    results = sort_results(validate_results(results))
    arms = arm_order(results)
    out = []
    for dataset, group in results.groupby("dataset", sort=False):
        present = set(group["arm"])
        out += [(dataset, arm) for arm in arms if arm not in present]
    return out


def n_test_by_dataset(results: pd.DataFrame) -> dict[str, float]:
    """The median test-split size of each dataset's runs; empty without an ``n_test`` column."""
    if "n_test" not in results.columns:
        return {}
    return {d: median(g["n_test"]) for d, g in results.groupby("dataset", sort=False)}


def accuracy_by_arm(group: pd.DataFrame) -> dict[str, pd.Series]:
    """Per arm of one dataset's rows, its accuracies (fractions) indexed by seed."""
    return {arm: g.set_index("seed")["accuracy"] for arm, g in group.groupby("arm", sort=False)}
