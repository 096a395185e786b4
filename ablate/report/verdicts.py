"""The report's opening: the verdicts in words, what they rest on, and the sequential design's table."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import pandas as pd

from ablate.analysis import AnalysisSettings, SequentialPlan, is_finite
from ablate.report.formatting import (NA, format_count, format_points, format_prob, format_signed, plural,
                                      table)
from ablate.report.procedure import template_values
from ablate.report.sentences import across_sentence, sequential_sentence, variance_sentence, verdict_sentence
from ablate.stats import Aggregate, TooShort, verdict_holm

__all__ = ["verdict_section", "sequential_section", "has_new_data"]


def verdict_section(
    comparisons: pd.DataFrame,
    aggregate: Aggregate | None,
    settings: AnalysisSettings,
    *,
    provenance: Mapping[str, object] | None,
    too_short: Sequence[TooShort],
    sequential: pd.DataFrame | None = None,
    plan: SequentialPlan | None = None,
    test_images: Mapping[str, float] | None = None,
) -> list[str]:
    """The "Verdict" section: the note, a dirty working tree, which sources of variance the
    intervals cover (``settings.vary``, and whether predictions put the test images in:
    ``test_images`` per data set), one sentence per comparison (the design's after sequential
    seeds: ``sequential`` is the frame and ``plan`` its design) and per contrast across data sets,
    a recipe that may be too short, the confounded contrasts, and how to read the verdicts."""
    lines = ["## Verdict", ""]
    if settings.note:
        lines += [f"> {line}" if line else ">" for line in settings.note.strip().splitlines()] + [""]
    dirty = _dirty(provenance)
    if dirty:
        lines += [dirty, ""]
    lines += [variance_sentence(settings.vary, test_images or {}, has_new_data(comparisons)), ""]
    per_dataset = _per_dataset_verdicts(comparisons, sequential, settings.alpha)
    across: list[str] = []
    if aggregate is not None and aggregate.n_datasets >= 2 and aggregate.across:
        across += [f"- {across_sentence(dataclasses.asdict(d), settings.alpha)}"
                   for d in aggregate.across if d.n_datasets]
        across += [""] if across else []
    # With one run per cell the data sets are the only units there are: that verdict comes first.
    one_run_each = not comparisons.empty and bool((comparisons["n"].astype(int) < 2).all())
    lines += across + per_dataset if one_run_each else per_dataset + across
    lines += _too_short(too_short)
    if not comparisons.empty:
        lines += _confounded(comparisons)
        lines += _how_to_read(comparisons, settings, plan)
    return lines


def _dirty(provenance: Mapping[str, object] | None) -> str | None:
    for key, what, it in (("git_commit", "these numbers were made", "them"),
                          ("report written at git_commit", "this report was written", "it")):
        commit = (provenance or {}).get(key)
        if isinstance(commit, str) and commit.endswith("+dirty"):
            return (
                f"**The working tree had uncommitted changes** when {what} "
                f"(git commit {commit}): the code that produced {it} is not exactly that commit."
            )
    return None


def has_new_data(comparisons: pd.DataFrame) -> bool:
    """Whether any row of ``comparisons`` has the new-data test (predictions for 2 or more seeds)."""
    return "p_new_data" in comparisons.columns and bool(pd.to_numeric(comparisons["p_new_data"]).notna().any())


def _per_dataset_verdicts(comparisons: pd.DataFrame, sequential: pd.DataFrame | None, alpha: float) -> list[str]:
    if comparisons.empty:
        return ["No contrast could be computed: no dataset has both arms of any contrast.", ""]
    if sequential is not None:
        by_key = {(r["dataset"], r["arm_a"], r["arm_b"]): r for r in comparisons.to_dict("records")}
        return [f"- {sequential_sentence(r, by_key.get((r['dataset'], r['arm_a'], r['arm_b'])))}"
                for r in sequential.to_dict("records")] + [""]
    family = int((comparisons["n"].astype(int) >= 2).sum())
    if set(_DECIDING) <= set(comparisons.columns):
        comparisons = comparisons.assign(**verdict_holm(comparisons, alpha))
    return [f"- {verdict_sentence(row, alpha, family)}" for row in comparisons.to_dict("records")] + [""]


# The columns the verdict's Holm p-values come from (ablate.stats.verdict_holm).
_DECIDING = ("p_new_data", "p_paired", "p_tost_new_data", "p_tost")


def _too_short(too_short: Sequence[TooShort]) -> list[str]:
    lines = []
    for item in too_short:
        where = "for new data" if item.new_data else "on this test set"
        interval = (f"[{format_signed(item.ci_low)}, {format_signed(item.ci_high)}] {where}" if is_finite(item.ci_low)
                    else "the same at every seed")
        threshold = "the smallest effect of interest" if item.threshold_source == "smallest effect" else "the ROPE"
        lines += [
            f"On {item.dataset}, single-long − {item.arm} = {format_signed(item.diff)} points {interval} over "
            f"{item.n} seeds: that reaches above {threshold} ({format_points(item.threshold)} points), so {item.arm} "
            "may be too short, significant or not; a small late validation gain does not show otherwise, because "
            "a cosine schedule flattens every curve in its last quarter. Every verdict involving it says so.",
            "",
        ]
    return lines


def _confounded(comparisons: pd.DataFrame) -> list[str]:
    confounded = [
        f"{r['arm_a']} vs {r['arm_b']} on {r['dataset']} ({r['confounded_by']})"
        for r in comparisons.to_dict("records")
        if isinstance(r.get("confounded_by"), str) and r["confounded_by"] not in ("", "unknown")
    ]
    if not confounded:
        return []
    return [
        "Confounded contrasts (the arms differ by more than 10% in parameters or in training "
        f"images besides the named factor): {'; '.join(confounded)}.",
        "",
    ]


def _how_to_read(comparisons: pd.DataFrame, settings: AnalysisSettings, plan: SequentialPlan | None) -> list[str]:
    alpha = settings.alpha
    rope_text = template_values(settings, plan)["rope"]  # as the Procedure section words it
    if plan is not None:
        return [
            f"Sequential seeds (looks at {', '.join(str(n) for n in plan.looks)} seeds, "
            f"{plan.spending} spending): differences are A − B in accuracy points at the look that "
            f"decided the contrast, with the design-adjusted interval of that look; \"significant\" means "
            f"the interval excludes 0 and \"practically equivalent\" that it lies within {rope_text}, with "
            f"alpha {alpha:g} kept over all looks and {plural(plan.comparisons, 'comparison')} "
            "(Bonferroni, then Lan-DeMets spending, boundaries calibrated for t). The design's test is over "
            "seeds, on this test set: its boundaries were calibrated for it."
            + (" Beside each decided contrast is its interval for new data (seeds and test images random, "
               "over all the seeds run), which decides nothing." if has_new_data(comparisons) else ""),
            "",
        ]
    if has_new_data(comparisons):
        return [
            f"Differences are A − B in accuracy points. Where every paired seed has predictions the verdict "
            f"uses the test for new data: seeds and test images both random (a crossed two-way design, "
            f"Satterthwaite's degrees of freedom); elsewhere this test set's paired t. Each row's deciding p is "
            f"Holm-adjusted once over all {len(comparisons)} rows together: \"significant\" means that "
            f"Holm-adjusted p < {alpha:g}, and \"practically equivalent\" that the Holm-adjusted equivalence test "
            f"(TOST) of the same test puts the difference within {rope_text} at p < {alpha:g}. The 95% paired-t "
            "intervals over seeds alone are given beside them as \"this test set\": they leave out test-set "
            "sampling.",
            "",
        ]
    return [
        f"Differences are A − B in accuracy points with 95% paired-t intervals over seeds, for this test set "
        f"only; \"significant\" means Holm-adjusted p < {alpha:g} over all {len(comparisons)} rows; "
        f"\"practically equivalent\" means the Holm-adjusted equivalence test (TOST) puts the "
        f"difference within {rope_text} at p < {alpha:g}.",
        "",
    ]


_DECISION_WORDS = {"A better": "{a} better", "B better": "{b} better"}


def sequential_section(sequential: pd.DataFrame | None, plan: SequentialPlan | None, alpha: float) -> list[str]:
    """The "Sequential seeds" section: the design in words and one row per contrast of
    ``sequential.csv``; nothing for a fixed design."""
    if sequential is None or plan is None:
        return []
    m = plan.comparisons
    lines = [
        "## Sequential seeds",
        "",
        f"Seeds ran in batches, every arm the same seeds, with a look after {', '.join(map(str, plan.looks))} seeds; "
        f"alpha {alpha:g} split over {plural(m, 'comparison')} (contrasts × data sets), "
        f"{alpha / m:.4g} each, spent over the looks by {plan.spending}-type Lan-DeMets spending. "
        "Per contrast: the look that decided it (or the latest), the boundary its design-adjusted interval "
        "crossed, the |t| it had to exceed there, that interval, the seeds the arms ran in all, and the "
        "seeds a fixed design with the same power would need (from the observed sd of the differences, "
        "against the effect named in the column).",
        "",
    ]
    rows = []
    for r in sequential.to_dict("records"):
        look = int(r["look"])
        source = "3 × rope" if r["effect_source"] == "3 x rope" else "smallest effect"
        rows.append([
            r["dataset"], f"{r['arm_a']} vs {r['arm_b']}",
            _DECISION_WORDS.get(str(r["decision"]), "{d}").format(a=r["arm_a"], b=r["arm_b"], d=r["decision"]),
            f"{look} ({int(r['n'])} seeds)" if look else "none yet", r["boundary"] or "none",
            format_points(r["critical"]) if is_finite(r["critical"]) else NA,
            f"[{format_signed(r['interval_low'])}, {format_signed(r['interval_high'])}]",
            int(r["seeds_run"]), format_points(r["sd_diff"]),
            f"{format_points(r['effect'])} ({source})", format_prob(r["power"]),
            format_count(r["fixed_seeds_same_power"]),
        ])  # fmt: skip
    lines += table(
        ["data set", "contrast (A vs B)", "decision", "look", "boundary", "|t| above", "design-adjusted interval",
         "seeds run", "sd of A − B", "effect", "power", "fixed design, same power"],
        rows,
    ) + [""]
    return lines
