"""The markdown report of an ablation study, as a string (no I/O, no torch, no Optuna).

The report opens with a note on where the numbers come from (when given), a warning when the
working tree was dirty, one plain-language verdict per dataset and contrast (with what else
differs between the arms and whether one was still learning) and one per contrast across data
sets; then the tables behind them, how each arm was tuned (with several searches per arm, the verdict
per replicate), the warnings, the evidence across
datasets, the figures, the procedure with its references (``ablate.report.procedure``), and
the provenance (never the host). Every number is printed by ``ablate.report.formatting``, so
the text shows exactly the values of ``comparisons.csv``, rounded the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from ablate.analysis import AnalysisSettings
from ablate.report.datasets import dataset_section
from ablate.report.procedure import procedure_section
from ablate.report.sections import (aggregate_section, disagreement_section, provenance_section, similarity_section,
                                    warning_section)
from ablate.report.tuning import TUNING_FIGURES, replicate_section, tuning_section
from ablate.report.verdicts import sequential_section, verdict_section
from ablate.stats import Aggregate, TooShort

__all__ = ["render_report"]


def render_report(
    comparisons: pd.DataFrame,
    summaries: pd.DataFrame,
    aggregate: Aggregate | None = None,
    settings: AnalysisSettings | None = None,
    *,
    provenance: Mapping[str, object] | None = None,
    figures: Mapping[str, Sequence[str]] | None = None,
    missing: Sequence[str] = (),
    similarity: pd.DataFrame | None = None,
    profiles: pd.DataFrame | None = None,
    too_short: Sequence[TooShort] = (),
    tuning: Mapping[str, Mapping[str, object]] | None = None,
    replicate_verdicts: pd.DataFrame | None = None,
    sequential: pd.DataFrame | None = None,
    disagreement: pd.DataFrame | None = None,
) -> str:
    """Return the markdown report.

    Args:
        comparisons: output of :func:`ablate.stats.compare` (or the same read from CSV).
        summaries: output of :func:`ablate.stats.summarize`.
        aggregate: output of :func:`ablate.stats.aggregate`, or None.
        settings: the analysis settings used (title, rope, alpha, smallest effect, still-rising
            threshold, note, sequential design); None: the defaults, titled "Ablation report".
        provenance: what produced the numbers (study file and hash, git commit, versions,
            device, seeds, trial numbers, wall time, ...); rendered as given, in order, except
            a ``host`` key. A ``git_commit`` ending in "+dirty" is called out at the top.
        figures: relative figure paths per dataset name; key
            :data:`ablate.report.AGGREGATE_FIGURES` for figures across datasets, key
            :data:`ablate.report.TUNING_FIGURES` for the tuning curves.
        missing: planned runs without a result, listed under the warnings.
        similarity: output of :func:`ablate.stats.summarize_similarity`, or None.
        profiles: output of :func:`ablate.stats.profile_arms`, or None.
        too_short: output of :func:`ablate.stats.too_short_recipes`.
        tuning: per arm, how it was tuned, as tuning.json holds it with each arm's ``curve``
            (``ablate.report.tuning_file``: :func:`~ablate.report.tuning_file.with_curves`).
        replicate_verdicts: :func:`ablate.stats.replicate_verdicts` when the results hold
            several replicate searches (``comparisons`` then are replicate 0's), else None.
        sequential: output of :func:`ablate.stats.sequential_frame` for sequential seeds (then
            ``comparisons`` is :func:`ablate.stats.mark_sequential`'s and ``settings.sequential``
            the design): the verdicts are the design's, a "Sequential seeds" section follows the
            verdict, and the fixed-sample columns (the Holm p-values, MDE 80%) are left out.
        disagreement: output of :func:`ablate.stats.disagreement` where the runs' predictions
            were given (then ``comparisons`` has its new-data columns), or None.

    The opening says which sources of variance the intervals cover: what the seeds varied
    (``settings.vary``) and whether the test images are a sample too (the new-data columns of
    ``comparisons``; their ``n_examples``, else the median ``n_test`` of ``profiles``).
    """
    settings = settings if settings is not None else AnalysisSettings()
    figures = figures or {}
    profiles = profiles if profiles is not None else pd.DataFrame(columns=["dataset", "arm"])
    plan = settings.sequential if sequential is not None else None
    sequential = sequential if plan is not None else None
    lines = [f"# {settings.title or 'Ablation report'}", ""]
    lines += verdict_section(comparisons, aggregate, settings, provenance=provenance, too_short=too_short,
                             sequential=sequential, plan=plan, test_images=_test_images(comparisons, profiles))
    lines += sequential_section(sequential, plan, settings.alpha)
    lines += ["## Results per dataset", ""]
    for dataset in _datasets(comparisons, summaries):
        lines += dataset_section(dataset, comparisons, summaries, profiles, figures, settings.still_rising,
                                 sequential is not None)
    lines += tuning_section(tuning, figures.get(TUNING_FIGURES, ()))
    lines += replicate_section(replicate_verdicts, sequential is not None)
    lines += similarity_section(similarity)
    lines += disagreement_section(disagreement, comparisons)
    lines += warning_section(comparisons, aggregate, missing)
    lines += aggregate_section(aggregate, figures, settings.alpha)
    lines += procedure_section(settings, plan)
    lines += provenance_section(provenance)
    return "\n".join(lines).rstrip("\n") + "\n"


def _datasets(comparisons: pd.DataFrame, summaries: pd.DataFrame) -> list[str]:
    seen: dict[str, None] = {}
    for frame in (summaries, comparisons):
        if "dataset" in frame.columns:
            seen.update(dict.fromkeys(str(d) for d in frame["dataset"]))
    return list(seen)


def _test_images(comparisons: pd.DataFrame, profiles: pd.DataFrame) -> dict[str, float]:
    """Per data set its shared test examples (with predictions), else its median test-split size."""
    if "n_examples" in comparisons.columns:
        known = comparisons.dropna(subset=["n_examples"])
        if not known.empty:
            return {str(d): float(g["n_examples"].max()) for d, g in known.groupby("dataset", sort=False)}
    if "n_test" not in profiles.columns:
        return {}
    sizes = profiles.assign(n_test=pd.to_numeric(profiles["n_test"], errors="coerce")).dropna(subset=["n_test"])
    return {str(d): float(g["n_test"].median()) for d, g in sizes.groupby("dataset", sort=False)}
