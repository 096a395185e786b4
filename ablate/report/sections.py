"""The report's later sections: head similarity, warnings, evidence across data sets, provenance."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

import pandas as pd

from ablate.analysis import is_finite
from ablate.report.formatting import NA, figure_links, format_p, format_points, format_signed, table, warnings_of
from ablate.stats import AcrossDifference, Aggregate, FriedmanResult

__all__ = [
    "AGGREGATE_FIGURES",
    "similarity_section",
    "disagreement_section",
    "warning_section",
    "aggregate_section",
    "provenance_section",
]

# key of ``figures`` for figures about all datasets together (the CD diagram)
AGGREGATE_FIGURES = "all datasets"


def similarity_section(similarity: pd.DataFrame | None) -> list[str]:
    """Mean head similarity per data set and arm (:func:`ablate.stats.summarize_similarity`)."""
    if similarity is None or similarity.empty:
        return []
    lines = [
        "## Head similarity",
        "",
        "Mean cosine similarity of the two heads' feature maps on the test split (along channels at",
        "every location), per DueHeadNet run: the FMCE penalty is meant to push it down.",
        "",
        "| dataset | arm | n | mean | sd |",
        "|---|---|---|---|---|",
    ]
    for row in similarity.itertuples(index=False):
        sd = "–" if pd.isna(row.sd) else f"{row.sd:.3f}"
        lines.append(f"| {row.dataset} | {row.arm} | {row.n} | {row.mean:.3f} | {sd} |")
    return lines + [""]


def disagreement_section(disagreement: pd.DataFrame | None, comparisons: pd.DataFrame) -> list[str]:
    """Per data set and contrast, the share of test examples on which exactly one arm is right
    (:func:`ablate.stats.disagreement`) beside ``sd_test_sampling``, what that disagreement adds
    to the new-data interval; nothing without predictions."""
    if disagreement is None or disagreement.empty:
        return []
    lines = [
        "## Per-example disagreement",
        "",
        "The share of test images on which exactly one of the two arms is right, per seed (mean and range "
        "over the seeds both arms have predictions for): where two arms are right and wrong on the same "
        "images, drawing another test set moves both alike and cancels in A − B; where they disagree, it "
        "does not. sd test sampling is what the test images alone add to the sd of the mean difference "
        "(points), from the mean squares of the new-data test.",
        "",
    ]
    sd = {(r["dataset"], r["arm_a"], r["arm_b"]): r.get("sd_test_sampling") for r in comparisons.to_dict("records")}
    rows = []
    for (dataset, arm_a, arm_b), g in disagreement.groupby(["dataset", "arm_a", "arm_b"], sort=False):
        share = 100.0 * g["disagree"]
        rows.append([dataset, f"{arm_a} vs {arm_b}", len(g), f"{format_points(share.mean())}%",
                     f"{format_points(share.min())}–{format_points(share.max())}%",
                     format_points(sd.get((dataset, arm_a, arm_b), math.nan))])
    return lines + table(["data set", "contrast (A vs B)", "seeds", "one arm right", "range", "sd test sampling"],
                         rows) + [""]


def warning_section(comparisons: pd.DataFrame, aggregate: Aggregate | None, missing: Sequence[str]) -> list[str]:
    """Missing runs, every comparison's warnings and the notes across data sets; "None." if none."""
    items = []
    if missing:
        items.append(f"- {len(missing)} planned run(s) have no result: {', '.join(missing)}")
    for row in comparisons.to_dict("records"):
        for w in warnings_of(row):
            items.append(f"- {row['dataset']}, {row['arm_a']} vs {row['arm_b']}: {w}")
    if aggregate is not None:
        items += [f"- across datasets: {note}" for note in aggregate.notes]
        if aggregate.n_datasets >= 2:
            items += [f"- across datasets, {d.arm_a} vs {d.arm_b}: {d.notes}" for d in aggregate.across if d.notes]
    return ["## Warnings", ""] + (items or ["None."]) + [""]


def aggregate_section(aggregate: Aggregate | None, figures: Mapping[str, Sequence[str]], alpha: float) -> list[str]:
    """"Across datasets": datasets as units, random effects, Friedman with average ranks, the CD diagram."""
    lines = ["## Across datasets", ""]
    if aggregate is None:
        return lines + ["Not computed.", ""]
    across = [d for d in aggregate.across if d.n_datasets] if aggregate.n_datasets >= 2 else []
    if across:
        lines += _units_table(across)
        lines += _random_effects_table([d for d in across if is_finite(d.re_diff)], alpha)
    if aggregate.friedman is not None:
        lines += _friedman_lines(aggregate.friedman, alpha)
    if not across and aggregate.friedman is None:
        lines += [note for note in aggregate.notes] or ["Nothing to aggregate."]
        lines += [""]
    lines += figure_links(figures.get(AGGREGATE_FIGURES, ()))
    return lines


def _units_table(across: Sequence[AcrossDifference]) -> list[str]:
    lines = [
        "Data sets as the units (Demšar 2006): per contrast, the number of data sets on which each arm "
        "is ahead (mean paired difference), the exact sign test and the Wilcoxon signed-rank test over "
        "the per-data-set differences, and the smallest p that this many data sets can reach:",
        "",
    ]
    return lines + table(
        ["contrast (A vs B)", "data sets", "A ahead", "B ahead", "p sign", "p Wilcoxon", "smallest p"],
        [
            [f"{d.arm_a} vs {d.arm_b}", d.n_datasets, d.a_ahead, d.b_ahead, format_p(d.p_sign_datasets),
             format_p(d.p_wilcoxon_datasets), f"{d.min_p_datasets:.3g}" if is_finite(d.min_p_datasets) else NA]
            for d in across
        ],
    ) + [""]  # fmt: skip


def _random_effects_table(effects: Sequence[AcrossDifference], alpha: float) -> list[str]:
    if not effects:
        return []
    lines = [
        f"Random effects over the data sets with 2 or more paired seeds: the overall difference A − B "
        f"(points) with its Hartung-Knapp-Sidik-Jonkman {100 * (1 - alpha):g}% interval (its scale truncated "
        "at 1, Röver et al. 2015), the between-data-set variance tau² (Paule-Mandel), I², and, from 3 data "
        "sets, the prediction interval for a new data set (Higgins et al. 2009):",
        "",
    ]
    return lines + table(
        ["contrast (A vs B)", "data sets", "A − B", "interval", "tau²", "I²", "new data set"],
        [
            [f"{d.arm_a} vs {d.arm_b}", d.re_datasets, format_signed(d.re_diff),
             f"[{format_signed(d.re_ci_low)}, {format_signed(d.re_ci_high)}]", f"{d.tau2:.3g}", f"{100 * d.i2:.0f}%",
             f"[{format_signed(d.pi_low)}, {format_signed(d.pi_high)}]" if is_finite(d.pi_low) else NA]
            for d in effects
        ],
    ) + [""]  # fmt: skip


def _friedman_lines(f: FriedmanResult, alpha: float) -> list[str]:
    decision = (
        "it rejects, so the critical-difference diagram below shows which arms differ"
        if f.rejects
        else "it does not reject, so no critical-difference diagram is drawn"
    )
    f_text = "\u221e" if f.f_statistic == math.inf else format_points(f.f_statistic)
    lines = [
        f"Friedman test over {len(f.arms)} arms on {f.n_datasets} datasets (per-dataset mean "
        f"accuracy): χ² = {format_points(f.statistic)}, Iman-Davenport F = {f_text}, "
        f"p = {format_p(f.f_pvalue)}; {decision}. Nemenyi critical difference at α = {alpha:g}: "
        f"CD = {f.cd:.2f}; arms whose average ranks differ by less than CD are not significantly different.",
        "",
    ]
    return lines + table(
        ["arm", "average rank (1 = best)"],
        [[arm, f"{rank:.2f}"] for arm, rank in sorted(f.avg_ranks.items(), key=lambda item: item[1])],
    ) + [""]


def _provenance_value(value: object) -> str:
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return ", ".join(str(v) for v in items)
    return str(value)


# A committed report names no machine: the host name is left out wherever it comes from.
_PRIVATE_PROVENANCE = frozenset({"host", "hostname"})


def provenance_section(provenance: Mapping[str, object] | None) -> list[str]:
    """What produced the numbers, as given and in order, without the host name."""
    lines = ["## Provenance", ""]
    items = [(k, v) for k, v in (provenance or {}).items() if str(k).lower() not in _PRIVATE_PROVENANCE]
    if not items:
        return lines + ["Not recorded.", ""]
    rows = [[key, _provenance_value(value)] for key, value in items]
    return lines + table(["item", "value"], rows) + [""]
