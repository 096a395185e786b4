"""Write a report directory: statistics, figures, ``report.md`` and the CSVs behind them.

Layout of ``out_dir``::

    report.md          the report (ablate.report.render_report)
    results.csv        dataset,arm,seed,accuracy in canonical order, accuracy at full precision
    comparisons.csv    ablate.stats.compare, floats written as shortest round-trip reprs
    summaries.csv      ablate.stats.summarize
    figures/*.png      per-dataset arm comparisons, learning curves, head similarity, CD diagram

Re-running on ``results.csv`` reproduces ``comparisons.csv`` byte for byte: results are
written with ``repr`` floats, read back exactly (``ablate.stats.load_results``), put in the
same canonical order, and every random step (permutation and bootstrap) has a fixed seed.
Every file is written to a temporary name in ``out_dir`` and moved into place with
``os.replace``, so a reader never sees a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from functools import partial
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from ablate import figures as figs
from ablate import stats
from ablate.report import AGGREGATE_FIGURES, render_report

__all__ = ["write_report_dir"]

_FIGURE_DIR = "figures"


def write_report_dir(
    results: pd.DataFrame,
    out_dir: Path,
    *,
    title: str,
    contrasts: Sequence[tuple[str, str]] | None = None,
    rope: float = 0.1,
    alpha: float = 0.05,
    provenance: Mapping[str, object] | None = None,
    curves: pd.DataFrame | None = None,
    similarity: pd.DataFrame | None = None,
    missing: Sequence[str] = (),
) -> Path:
    """Compute the statistics, draw the figures and write the report directory.

    Args:
        results: results table (``dataset, arm, seed, accuracy``; accuracy a fraction).
        out_dir: directory to write into (created if missing; files in it are replaced).
        title: report title.
        contrasts: ``(arm_a, arm_b)`` pairs; default :func:`ablate.stats.default_contrasts`.
        rope: half-width of the region of practical equivalence, in points.
        alpha: significance level.
        provenance: shown in the report as given; the SHA-256 of ``results.csv`` is added.
        curves: optional ``arm, seed, epoch, val_accuracy`` (and optionally ``dataset``).
        similarity: optional ``arm, seed, head_similarity`` (and optionally ``dataset``).
        missing: planned runs that have no result (e.g. "fmce/digits/seed 3"), listed in the
            report's warnings.

    Returns:
        The path of ``report.md``.

    Raises:
        ConfigError: invalid results, contrasts, rope or alpha (nothing is written then).
    """
    out_dir = Path(out_dir)
    results = stats.sort_results(stats.validate_results(results))
    comparisons = stats.compare(results, contrasts, rope=rope, alpha=alpha)
    summaries = stats.summarize(results)
    aggregate = stats.aggregate(results, contrasts, alpha=alpha)

    out_dir.mkdir(parents=True, exist_ok=True)
    results_csv = _csv(results[list(stats.RESULT_COLUMNS)])
    _write_atomic(out_dir / "results.csv", results_csv.encode())
    _write_atomic(out_dir / "comparisons.csv", _csv(comparisons).encode())
    _write_atomic(out_dir / "summaries.csv", _csv(summaries).encode())

    figure_paths = _draw_figures(results, aggregate, out_dir, curves, similarity)
    provenance = dict(provenance or {})
    provenance.setdefault("results.csv sha256", hashlib.sha256(results_csv.encode()).hexdigest())
    text = render_report(
        comparisons,
        summaries,
        aggregate,
        title=title,
        provenance=provenance,
        figures=figure_paths,
        rope=rope,
        alpha=alpha,
        missing=missing,
        similarity=_similarity_summary(similarity, results),
    )
    report = out_dir / "report.md"
    _write_atomic(report, text.encode("utf-8"))
    return report


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
        for extra, suffix, plot, what in _extra_figures(curves, similarity):
            part = _for_dataset(extra, dataset)
            if part is not None and not part.empty:
                draw(dataset, f"{slug}_{suffix}.png", partial(plot, part, title=f"{dataset}: {what}"))
    for extra, suffix, plot, what in _extra_figures(curves, similarity):
        if extra is not None and not extra.empty and "dataset" not in extra.columns:
            draw(AGGREGATE_FIGURES, f"{suffix}.png", partial(plot, extra, title=what))
    if aggregate.friedman is not None:
        f = aggregate.friedman
        draw(AGGREGATE_FIGURES, "critical_difference.png", partial(figs.critical_difference, f.avg_ranks, f.cd))
    return paths


def _extra_figures(curves: pd.DataFrame | None, similarity: pd.DataFrame | None) -> tuple:
    return (
        (curves, "curves", figs.learning_curves, "validation accuracy per epoch"),
        (similarity, "head_similarity", figs.head_similarity, "head similarity per seed"),
    )


def _for_dataset(frame: pd.DataFrame | None, dataset: str) -> pd.DataFrame | None:
    if frame is None or "dataset" not in frame.columns:
        return None
    return frame[frame["dataset"].astype(str) == dataset]


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
