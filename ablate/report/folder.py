"""Write a report folder: statistics, figures, ``report.md`` and the files behind them.

Layout of ``out_dir``::

    report.md          the report (ablate.report.render_report)
    results.csv        dataset,arm,seed,accuracy (+ the optional columns present) in canonical
                       order, floats at full precision; every replicate's rows (the other
                       tables use replicate 0's: ablate.stats.replicate_rows)
    analysis.json      the settings of the analysis (ablate.analysis.AnalysisSettings): title,
                       contrasts, rope, alpha, smallest_effect, still_rising, note, and for
                       sequential seeds the design (sequential: looks, spending, comparisons)
    tuning.json        per arm: how it was tuned and its tuning curve with its band (only when
                       given; ablate.report.tuning_file)
    predictions.csv.gz only with predictions: dataset,arm,seed(,replicate),example,label,predicted,
                       one row per run and test example (ablate.stats.validate_predictions),
                       gzip with mtime 0, so rewriting it gives the same bytes
    comparisons.csv    ablate.stats.compare, floats written as shortest round-trip reprs; the
                       columns ending in _new_data (seeds and test examples random) are empty
                       without predictions; after sequential seeds the Holm columns and mde_80
                       are empty and the verdict is the design's (ablate.stats.mark_sequential)
    sequential.csv     sequential seeds only: ablate.stats.sequential_frame, one row per
                       data set and contrast (look decided, boundary, design-adjusted
                       interval, seeds run, fixed-design seeds of the same power)
    across.csv         ablate.stats.across_datasets: one row per contrast; data sets as units,
                       and random effects: Paule-Mandel tau², the Hartung-Knapp-Sidik-Jonkman
                       interval with the max(1, q) truncation (Röver et al. 2015), and the
                       prediction interval for a new data set in Higgins et al.'s (2009) form,
                       mean ± t(k − 2) √(tau² + SE²), SE the random-effects mean's 1/√Σw
    summaries.csv      ablate.stats.summarize
    replicates.csv     several replicate searches only: ablate.stats.replicate_verdicts, each
                       contrast's verdict with every replicate's settings
    figures/*.png      per-dataset arm comparisons, learning curves, head diversity (head
                       similarity, and with predictions the share of test examples on which
                       the arms of each contrast disagree), CD diagram, tuning curves per data
                       set searched

Re-running ``ablate report --results out_dir/results.csv`` reproduces ``comparisons.csv``,
``across.csv`` and ``sequential.csv`` byte for byte: results are written with ``repr`` floats,
read back exactly (``ablate.stats.load_results``), put in the same canonical order, the
analysis settings are read back from ``analysis.json`` (and ``tuning.json``, and the predictions
from ``predictions.csv.gz``), and every random step has a fixed seed. Every file is written into a temporary sibling folder
first and, once all of them (figures and report.md too) are written, moved into place with
``os.replace``, so a reader never sees a half-written file and a failure leaves the previous
report as it was; figures in ``figures/`` that the new report did not draw are then removed, and
files the report never writes (a hand-written README) are kept.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from ablate import stats
from ablate.analysis import AnalysisSettings, json_text
from ablate.report import figures as figs
from ablate.report.markdown import render_report
from ablate.report.sections import AGGREGATE_FIGURES
from ablate.report.tuning import TUNING_FIGURES
from ablate.report.tuning_file import check_tuning, with_curves

__all__ = ["ANALYSIS_FILE", "TUNING_FILE", "PREDICTIONS_FILE", "write_report_dir"]

ANALYSIS_FILE = "analysis.json"
TUNING_FILE = "tuning.json"
PREDICTIONS_FILE = "predictions.csv.gz"
_FIGURE_DIR = "figures"


def write_report_dir(
    results: pd.DataFrame,
    out_dir: Path,
    settings: AnalysisSettings,
    *,
    provenance: Mapping[str, object] | None = None,
    curves: pd.DataFrame | None = None,
    similarity: pd.DataFrame | None = None,
    missing: Sequence[str] = (),
    tuning: Mapping[str, Mapping[str, object]] | None = None,
    predictions: pd.DataFrame | None = None,
) -> Path:
    """Compute the statistics, draw the figures and write the report folder.

    Args:
        results: results table (``dataset, arm, seed, accuracy``; accuracy a fraction), with
            any of :data:`ablate.stats.OPTIONAL_COLUMNS`. With several ``replicate`` searches
            every statistic but the verdict per replicate uses replicate 0's rows.
        out_dir: folder to write into (created if missing; the report's files in it are replaced,
            all at the end, and figures it did not draw are removed; other files are kept).
        settings: the analysis settings, saved as ``analysis.json``; with ``settings.sequential``
            the design's verdicts and ``sequential.csv``.
        provenance: shown in the report as given (a ``host`` key is left out); the SHA-256 of
            ``results.csv`` is added. A ``git_commit`` ending in "+dirty" is called out.
        curves: optional ``arm, seed, epoch, val_accuracy`` (and optionally ``dataset``,
            ``replicate``: replicate 0's are drawn).
        similarity: optional ``arm, seed, head_similarity`` (and optionally ``dataset``,
            ``replicate``).
        missing: planned runs that have no result (e.g. "fmce/digits/seed 3"), listed in the
            report's warnings.
        tuning: per arm its tuning record (``ablate.report.tuning_file``: method, settings,
            n_trials, importances, search_values, search_pruned, confirm, replicates,
            dataset); saved as ``tuning.json`` with each arm's tuning curve added.
        predictions: every run's prediction for every test example
            (:data:`ablate.stats.PREDICTION_COLUMNS`); saved as ``predictions.csv.gz``. With them
            each contrast gets the interval and test for new data (seeds and test examples
            random), and the verdicts use it.

    Returns:
        The path of ``report.md``.

    Raises:
        ConfigError: invalid results, contrasts, tuning or predictions (nothing is written then).
    """
    out_dir = Path(out_dir)
    table = stats.sort_results(stats.validate_results(results))  # every replicate: results.csv
    if predictions is not None:
        predictions = stats.validate_predictions(predictions, table)
    found = _analyse(stats.replicate_rows(table), settings, _replicate_zero(predictions))
    tuning = check_tuning(tuning)
    tuning = with_curves(tuning) if tuning is not None else None
    replicates = _replicate_verdicts(table, settings, predictions)
    curves = stats.replicate_rows(curves) if curves is not None else None
    similarity = stats.replicate_rows(similarity) if similarity is not None else None
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Everything is written to a sibling folder first, so a failure (a figure that cannot be
    # drawn) leaves the previous report whole; only then is each file moved into place.
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        results_csv = _write_tables(staging, table, found, settings, tuning, replicates)
        _write_predictions(staging, predictions)
        figure_paths = _draw_figures(found.results, found.aggregate, staging, curves, similarity, found.disagreement)
        figure_paths.update(_draw_tuning_figures(tuning or {}, staging))
        provenance = dict(provenance or {})
        provenance.setdefault("results.csv sha256", hashlib.sha256(results_csv.encode()).hexdigest())
        text = render_report(
            found.comparisons, found.summaries, found.aggregate, settings, provenance=provenance,
            figures=figure_paths, missing=missing, similarity=_similarity_summary(similarity, found.results),
            profiles=found.profiles, too_short=found.too_short, tuning=tuning, replicate_verdicts=replicates,
            sequential=found.sequential, disagreement=found.disagreement,
        )  # fmt: skip
        _write_atomic(staging / "report.md", text.encode("utf-8"))
        _publish(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir / "report.md"


# Files a report writes only in some analyses: removed from the folder when this one did not write them.
_OPTIONAL_FILES = ("sequential.csv", "replicates.csv", PREDICTIONS_FILE)


def _publish(staging: Path, out_dir: Path) -> None:
    """Move every file written in ``staging`` into ``out_dir`` (``os.replace``: each appears whole),
    then remove what an earlier report wrote and this one did not: its optional files and every
    figure in ``figures/`` not drawn now. Files the report never writes (a README) are kept."""
    written = {path.relative_to(staging) for path in staging.rglob("*") if path.is_file()}
    out_dir.mkdir(exist_ok=True)
    (out_dir / _FIGURE_DIR).mkdir(exist_ok=True)
    for relative in sorted(written):
        os.replace(staging / relative, out_dir / relative)
    for name in _OPTIONAL_FILES:
        if Path(name) not in written:
            (out_dir / name).unlink(missing_ok=True)
    for figure in (out_dir / _FIGURE_DIR).glob("*.png"):
        if Path(_FIGURE_DIR, figure.name) not in written:
            figure.unlink()


@dataclass(frozen=True)
class _Statistics:
    """What the statistics say about one results table, as the report folder holds it."""

    results: pd.DataFrame  # validated, in canonical order
    comparisons: pd.DataFrame
    summaries: pd.DataFrame
    profiles: pd.DataFrame
    aggregate: stats.Aggregate
    sequential: pd.DataFrame | None
    too_short: list[stats.TooShort]
    disagreement: pd.DataFrame | None  # per contrast and seed, with predictions


def _analyse(results: pd.DataFrame, settings: AnalysisSettings, predictions: pd.DataFrame | None) -> _Statistics:
    s = settings
    results = stats.sort_results(stats.validate_results(results))
    comparisons = stats.compare(results, s.contrasts, rope=s.rope, alpha=s.alpha, smallest_effect=s.smallest_effect,
                                still_rising=s.still_rising, predictions=predictions)
    summaries = stats.summarize(results)
    profiles = stats.profile_arms(results, s.still_rising)
    aggregate = stats.aggregate(results, s.contrasts, alpha=s.alpha)
    sequential = None
    if s.sequential is not None:
        sequential = stats.sequential_frame(results, s)
        comparisons = stats.mark_sequential(comparisons, sequential)
    too_short = stats.too_short_recipes(results, predictions, rope=s.rope, smallest_effect=s.smallest_effect)
    disagreement = None if predictions is None else stats.disagreement(predictions, results, s.contrasts)
    return _Statistics(results, comparisons, summaries, profiles, aggregate, sequential, too_short, disagreement)


def _replicate_verdicts(results: pd.DataFrame, settings: AnalysisSettings,
                        predictions: pd.DataFrame | None) -> pd.DataFrame | None:
    """Each contrast's verdict per replicate search, decided as the main table's are (with each
    replicate's own predictions, which ``compare`` picks by run); None with one search."""
    s = settings
    compare = partial(stats.compare, contrasts=s.contrasts, rope=s.rope, alpha=s.alpha,
                      smallest_effect=s.smallest_effect, still_rising=s.still_rising, predictions=predictions)
    verdicts = stats.replicate_verdicts(results, compare)
    return None if verdicts.empty else verdicts


def _write_tables(out_dir: Path, results: pd.DataFrame, found: _Statistics, settings: AnalysisSettings,
                  tuning: Mapping[str, object] | None, replicates: pd.DataFrame | None) -> str:
    """Write the CSV and JSON files; return the text of results.csv (``results``: every replicate)."""
    columns = list(stats.RESULT_COLUMNS) + [c for c in stats.OPTIONAL_COLUMNS if c in results.columns]
    results_csv = _csv(results[columns])
    _write_atomic(out_dir / "results.csv", results_csv.encode())
    _write_atomic(out_dir / ANALYSIS_FILE, settings.to_json().encode())
    if tuning is not None:
        _write_atomic(out_dir / TUNING_FILE, json_text(tuning).encode())
    _write_atomic(out_dir / "comparisons.csv", _csv(found.comparisons).encode())
    _write_atomic(out_dir / "across.csv", _csv(stats.across_frame(found.aggregate.across)).encode())
    if found.sequential is not None:
        _write_atomic(out_dir / "sequential.csv", _csv(found.sequential).encode())
    _write_atomic(out_dir / "summaries.csv", _csv(found.summaries).encode())
    if replicates is not None:
        _write_atomic(out_dir / "replicates.csv", _csv(replicates).encode())
    return results_csv


def _write_predictions(out_dir: Path, predictions: pd.DataFrame | None) -> None:
    """``predictions.csv.gz``: gzip with mtime 0 and no file name, so the same table gives the same
    bytes; none without predictions."""
    target = out_dir / PREDICTIONS_FILE
    if predictions is None:
        return
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as archive:
        archive.write(_csv(predictions).encode())
    _write_atomic(target, buffer.getvalue())


def _replicate_zero(predictions: pd.DataFrame | None) -> pd.DataFrame | None:
    """The predictions of replicate 0's runs, which the main tables analyse (all of them without
    a ``replicate`` column)."""
    return None if predictions is None else stats.replicate_rows(predictions)


def _similarity_summary(similarity: pd.DataFrame | None, results: pd.DataFrame) -> pd.DataFrame | None:
    if similarity is None or similarity.empty:
        return None
    if "dataset" not in similarity.columns:  # one dataset: the results name it
        similarity = similarity.assign(dataset=results["dataset"].iloc[0])
    return stats.summarize_similarity(similarity)


def _csv(frame: pd.DataFrame) -> str:
    # float_format=None writes Python's shortest round-trip repr of each float, so the CSV
    # holds the exact doubles; NaN as an empty field, inf as "inf".
    return frame.to_csv(index=False, lineterminator="\n")


def _draw_figures(
    results: pd.DataFrame,
    aggregate: stats.Aggregate,
    out_dir: Path,
    curves: pd.DataFrame | None,
    similarity: pd.DataFrame | None,
    disagreement: pd.DataFrame | None = None,
) -> dict[str, list[str]]:
    """Draw every figure; return relative paths (posix) per dataset name."""
    fig_dir = out_dir / _FIGURE_DIR
    fig_dir.mkdir(exist_ok=True)
    paths: dict[str, list[str]] = {}

    def draw(key: str, name: str, render: Callable[[Path], Path]) -> None:
        target = fig_dir / name
        _write_atomic_with(target, render)
        paths.setdefault(key, []).append(f"{_FIGURE_DIR}/{name}")

    for dataset, rows in results.groupby("dataset", sort=False):
        slug = _slug(dataset)
        draw(dataset, f"{slug}_arms.png", partial(figs.arm_comparison, rows, title=f"{dataset}: test accuracy per seed"))
        disagree = _for_dataset(disagreement, dataset)
        for extra, suffix, plot, what in _extra_figures(curves, similarity, disagree):
            part = _for_dataset(extra, dataset)
            if part is not None and not part.empty:
                draw(dataset, f"{slug}_{suffix}.png", partial(plot, part, title=f"{dataset}: {what}"))
        if disagree is not None and not disagree.empty and _for_dataset(similarity, dataset) is None:
            draw(dataset, f"{slug}_disagreement.png", partial(figs.head_similarity, None, disagreement=disagree,
                                                              title=f"{dataset}: {_DISAGREE}"))
    for extra, suffix, plot, what in _extra_figures(curves, similarity):
        if extra is not None and not extra.empty and "dataset" not in extra.columns:
            draw(AGGREGATE_FIGURES, f"{suffix}.png", partial(plot, extra, title=what))
    if aggregate.friedman is not None and aggregate.friedman.rejects:  # no diagram without a rejection
        f = aggregate.friedman
        draw(AGGREGATE_FIGURES, "critical_difference.png", partial(figs.critical_difference, f.avg_ranks, f.cd))
    return paths


def _draw_tuning_figures(tuning: Mapping[str, Mapping[str, object]], out_dir: Path) -> dict[str, list[str]]:
    """One figure of tuning curves per data set searched (the records' ``dataset``; unnamed: "search")."""
    by_dataset: dict[str, dict[str, object]] = {}
    for arm, record in tuning.items():
        if record.get("curve"):
            by_dataset.setdefault(str(record.get("dataset") or ""), {})[arm] = record["curve"]
    paths = []
    for dataset, curves in by_dataset.items():
        name = f"{_slug(dataset or 'search')}_tuning.png"
        title = f"{dataset}: tuning curves" if dataset else "Tuning curves (the search's data set)"
        (out_dir / _FIGURE_DIR).mkdir(exist_ok=True)
        _write_atomic_with(out_dir / _FIGURE_DIR / name, partial(figs.tuning_curves, curves, title=title))
        paths.append(f"{_FIGURE_DIR}/{name}")
    return {TUNING_FIGURES: paths} if paths else {}


_DISAGREE = "test examples on which exactly one arm is right, per seed"


def _extra_figures(curves: pd.DataFrame | None, similarity: pd.DataFrame | None,
                   disagree: pd.DataFrame | None = None) -> tuple:
    """The figures drawn per data set, or once for a frame without a ``dataset`` column; the head
    similarity gains a panel of the arms' per-example disagreement where ``disagree`` has rows."""
    if disagree is not None and not disagree.empty:
        head = (partial(figs.head_similarity, disagreement=disagree), f"head similarity and {_DISAGREE}")
    else:
        head = (figs.head_similarity, "head similarity per seed")
    return (
        (curves, "curves", figs.learning_curves, "validation accuracy per epoch"),
        (similarity, "head_similarity", *head),
    )


def _for_dataset(frame: pd.DataFrame | None, dataset: str) -> pd.DataFrame | None:
    """The rows of ``dataset``; None without a frame, a ``dataset`` column or rows of it."""
    if frame is None or "dataset" not in frame.columns:
        return None
    rows = frame[frame["dataset"].astype(str) == dataset]
    return rows if not rows.empty else None


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "dataset"


def _write_atomic(path: Path, data: bytes) -> None:
    def dump(tmp: Path) -> Path:
        tmp.write_bytes(data)
        return tmp

    _write_atomic_with(path, dump)


def _write_atomic_with(path: Path, write: Callable[[Path], object]) -> None:
    """Let ``write`` fill a temporary file next to ``path``, then move it into place."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is meant to be read by others
        with open(tmp, "rb+") as handle:  # make the bytes durable before the rename
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
