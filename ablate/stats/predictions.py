"""Per-example test predictions: read, check against the results table, and turn into right/wrong tables.

A *predictions table* has one row per run and test example: ``dataset, arm, seed, example,
label, predicted`` (integers but dataset and arm; plus ``replicate`` when the results have it),
``example`` the example's index in the data set, the same set of examples for every run of a
data set (the test split is fixed for a study). With it each contrast gets the interval for new
data from the same distribution (:mod:`ablate.stats.crossed`). A file that does not fit its
results table fails here, in one line.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ablate.errors import ConfigError, DataError
from ablate.stats.results import arm_order, dataset_order, resolve_contrasts, sort_results, validate_results

__all__ = [
    "PREDICTION_COLUMNS",
    "load_predictions",
    "validate_predictions",
    "matching_runs",
    "correct_by_arm",
    "disagreement",
]

PREDICTION_COLUMNS = ("dataset", "arm", "seed", "example", "label", "predicted")


def load_predictions(path: str | Path, results: pd.DataFrame) -> pd.DataFrame:
    """Read a predictions CSV (gzip when the name ends in .gz) and check it against ``results``.

    Raises:
        DataError: the file cannot be read.
        ConfigError: the content is not a predictions table of these results
            (:func:`validate_predictions`); one line that starts with the path.
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype={"dataset": str, "arm": str}, keep_default_na=False, low_memory=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such predictions file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a predictions file") from None
    # a damaged gzip raises zlib.error (corrupt data), EOFError (cut short) or gzip.BadGzipFile (an OSError)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: cannot read predictions CSV ({str(exc).splitlines()[0]})") from None
    try:
        return validate_predictions(raw, results)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def validate_predictions(predictions: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Check a predictions table against its results table; return a clean copy in canonical order.

    The columns come back as :data:`PREDICTION_COLUMNS` (``replicate`` after ``seed`` when the
    results have it; other columns dropped), integers as int64, rows in the results' dataset and
    arm order, then seed, replicate and example.

    Raises:
        ConfigError: a column missing, no rows, a value that is not an integer (a count below 0),
            a run twice for one example, a run the results do not have, runs of one data set
            scored on different test examples or labels, or a run whose share of correct
            predictions is not its accuracy in the results (by half a test image or more).
    """
    results = validate_results(results)
    keyed = "replicate" in results.columns
    columns = list(PREDICTION_COLUMNS[:3]) + (["replicate"] if keyed else []) + list(PREDICTION_COLUMNS[3:])
    missing = [c for c in columns if c not in predictions.columns]
    if missing:
        raise ConfigError(f"predictions table lacks column(s) {', '.join(missing)}; expected {','.join(columns)}")
    if len(predictions) == 0:
        raise ConfigError("predictions table has no rows")
    out = pd.DataFrame({name: _names(predictions[name]) for name in ("dataset", "arm")})
    for name in columns[2:]:
        out[name] = _integers(predictions[name], name)
    run = columns[: columns.index("example")]
    dup = out.duplicated(subset=run + ["example"])
    if dup.any():
        row = out[dup].iloc[0]
        raise ConfigError(f"row {int(np.flatnonzero(dup.to_numpy())[0]) + 1}: duplicate prediction of "
                          f"{_run_name(row, run)} for example {row['example']}")
    _check_runs(out, results, run)
    order = {name: {v: i for i, v in enumerate(values)} for name, values in
             (("dataset", dataset_order(results)), ("arm", arm_order(results)))}
    keys = out.assign(_d=out["dataset"].map(order["dataset"]), _a=out["arm"].map(order["arm"]))
    keys = keys.sort_values(["_d", "_a"] + run[2:] + ["example"], kind="stable")
    return keys.drop(columns=["_d", "_a"]).reset_index(drop=True)


def _names(column: pd.Series) -> pd.Series:
    """Data set or arm names as stripped text (each distinct value converted once: tables are large)."""
    codes, uniques = pd.factorize(column.reset_index(drop=True), use_na_sentinel=False)
    return pd.Series(np.array([str(u).strip() for u in uniques], dtype=object)[codes], dtype=object)


def _integers(column: pd.Series, name: str) -> pd.Series:
    column = column.reset_index(drop=True)
    number = column if pd.api.types.is_numeric_dtype(column) else pd.to_numeric(column, errors="coerce")
    unread = number.isna()
    if unread.any():  # text with spaces around the number, say: converted one by one
        number = number.astype("float64")
        number[unread] = pd.to_numeric(column[unread].astype(str).str.strip(), errors="coerce")
    bad = number.isna() | (number != np.floor(number))
    if name != "seed":
        bad |= number < 0
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        kind = "an integer" if name == "seed" else "an integer >= 0"
        raise ConfigError(f"row {i + 1}: {name} {str(column.iloc[i]).strip()!r} is not {kind}")
    return number.astype("int64")


def _run_name(row: pd.Series, run: Sequence[str]) -> str:
    name = f"{row['dataset']}/{row['arm']}/seed {row['seed']}"
    return name + (f"/replicate {row['replicate']}" if "replicate" in run else "")


def _check_runs(out: pd.DataFrame, results: pd.DataFrame, run: list[str]) -> None:
    """Every run is in the results, scored on its data set's examples and labels, at its accuracy."""
    res = results.assign(replicate=results["replicate"].fillna(0).astype("int64")) if "replicate" in run else results
    known = res.set_index(run)["accuracy"]
    scored = out.assign(right=out["label"] == out["predicted"]).groupby(run, sort=False)["right"].mean()
    for key in scored.index:
        if key not in known.index:
            raise ConfigError(f"predictions for {_run_name(pd.Series(dict(zip(run, key))), run)}: "
                              "a run that is not in the results")
    for dataset, rows in out.groupby("dataset", sort=False):
        reference = None
        for key, g in rows.groupby(run, sort=False):
            examples = g.sort_values("example")[["example", "label"]].to_numpy()
            name = _run_name(pd.Series(dict(zip(run, key))), run)
            if reference is None:
                reference = (name, examples)
            elif not np.array_equal(examples[:, 0], reference[1][:, 0]):
                raise ConfigError(f"{dataset}: {name} was scored on other test examples than {reference[0]} "
                                  f"({len(examples)} and {len(reference[1])} examples)")
            elif not np.array_equal(examples[:, 1], reference[1][:, 1]):
                raise ConfigError(f"{dataset}: {name} gives other labels than {reference[0]} for the same examples")
            accuracy, share = float(known.loc[key]), float(scored.loc[key])
            if abs(accuracy - share) * len(examples) >= 0.5:
                raise ConfigError(f"predictions of {name} score {share:.6g}, but the results give accuracy {accuracy:.6g}")


def matching_runs(predictions: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``predictions`` whose run is in ``results`` (replicate 0 where the results carry no
    ``replicate``): the main tables use one replicate, and a table filtered to some runs uses theirs."""
    results = validate_results(results)
    run = ["dataset", "arm", "seed"]
    if "replicate" in predictions.columns:
        if "replicate" in results.columns:
            run.append("replicate")
            results = results.assign(replicate=results["replicate"].fillna(0).astype("int64"))
        else:
            predictions = predictions[pd.to_numeric(predictions["replicate"], errors="coerce") == 0]
    if not set(run) <= set(predictions.columns):
        return predictions  # validate_predictions names what is missing
    keys = results[run].astype({"dataset": str, "arm": str}).drop_duplicates()
    typed = pd.DataFrame({name: _names(predictions[name]) for name in ("dataset", "arm")})
    for name in run[2:]:
        typed[name] = pd.to_numeric(predictions[name].reset_index(drop=True), errors="coerce")
    unreadable = typed[run[2:]].isna().any(axis=1).to_numpy()  # kept, for validate_predictions to name
    known = typed.merge(keys.assign(_in=True), on=run, how="left")["_in"].notna().to_numpy()
    return predictions[known | unreadable]


def correct_by_arm(predictions: pd.DataFrame, dataset: str) -> dict[str, pd.DataFrame]:
    """Per arm of one data set: right (1) or wrong (0) for every seed (rows) and test example (columns).

    ``predictions`` as :func:`validate_predictions` returns them, for the runs of one results
    table (:func:`matching_runs`); an arm without predictions is absent.
    """
    rows = predictions[predictions["dataset"] == dataset]
    out = {}
    for arm, g in rows.groupby("arm", sort=False):
        right = (g["label"] == g["predicted"]).astype("int8")
        out[str(arm)] = pd.DataFrame({"seed": g["seed"], "example": g["example"], "right": right}).pivot(
            index="seed", columns="example", values="right").sort_index()
    return out


def disagreement(predictions: pd.DataFrame, results: pd.DataFrame,
                 contrasts: Sequence[tuple[str, str]] | None = None) -> pd.DataFrame:
    """Per data set, contrast and seed: the share of test examples on which exactly one arm is right.

    What drives the examples' mean square of the crossed design: where two arms are right and
    wrong on the same examples, test-set sampling moves both alike and cancels in A - B. Columns
    ``dataset, arm_a, arm_b, seed, disagree`` (a fraction), over the seeds both arms have
    predictions for, for the runs of ``results``.

    Raises:
        ConfigError: a bad results or predictions table, or a contrast naming an arm without results.
    """
    results = sort_results(validate_results(results))
    contrasts = resolve_contrasts(results, contrasts)
    predictions = validate_predictions(matching_runs(predictions, results), results)
    rows = []
    for dataset in dataset_order(results):
        right = correct_by_arm(predictions, dataset)
        for arm_a, arm_b in contrasts:
            if arm_a not in right or arm_b not in right:
                continue
            a, b = right[arm_a], right[arm_b]
            for seed in sorted(set(a.index) & set(b.index)):
                share = float(np.mean(a.loc[seed].to_numpy() != b.loc[seed, a.columns].to_numpy()))
                rows.append((dataset, arm_a, arm_b, int(seed), share))
    return pd.DataFrame(rows, columns=["dataset", "arm_a", "arm_b", "seed", "disagree"])
