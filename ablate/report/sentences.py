"""The report's plain-language verdicts: one sentence per comparison, sequential row or contrast
across data sets, with the numbers of the CSV files."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ablate.analysis import is_finite
from ablate.report.formatting import (format_count, format_interval, format_p, format_points, format_prob,
                                      format_signed, format_thousands)

__all__ = ["confound_text", "verdict_sentence", "sequential_sentence", "across_sentence", "variance_sentence"]


def confound_text(row: Mapping[str, object]) -> str:
    """What else differs between the arms of a comparisons row, in words; "" when nothing."""
    confound = row.get("confounded_by", "")
    if not isinstance(confound, str) or not confound:
        return ""
    if confound == "unknown":
        return "confounded by: unknown (no parameter or training-image counts)"
    return f"confounded by: {confound}"


def verdict_sentence(row: Mapping[str, object], alpha: float = 0.05, family: int | None = None) -> str:
    """One row of ``comparisons`` as a sentence, e.g.

    "fmce vs nfmce on digits: +0.40 points [−0.10, +0.90] on this test set, Holm p = 0.210: not
    significant; smallest difference these 5 seeds detect with 80% power: 1.68 points."

    With the new-data columns the verdict's interval and Holm p come first, this test set's beside
    them. ``family``: the rows sharing alpha by Holm, named with the planning figures (which are at
    ``alpha / family``, Holm's first step).
    """
    head = f"**{row['arm_a']} vs {row['arm_b']}** on {row['dataset']}"
    n = int(row["n"])
    confound = confound_text(row)
    tail = f"; {confound}" if confound else ""
    if n < 2:
        single = f"; A − B = {format_signed(row['diff'])} points from one seed" if n == 1 else ""
        return f"{head}: {row['verdict']} (n = {n} paired seeds){single}{tail}."
    return f"{head}: {_numbers(row)}: {row['verdict']}{tail}; {_planning(row, alpha, family)}."



def _numbers(row: Mapping[str, object]) -> str:
    """The difference, its intervals and Holm p, the verdict's first."""
    diff = f"{format_signed(row['diff'])} points"
    this = (f"{format_interval(row['ci_low'], row['ci_high'])} on this test set" if is_finite(row.get("ci_low"))
            else "on this test set the same at every seed (zero spread: no interval; p from the exact sign-flip test)")
    if is_finite(row.get("p_new_data")):
        new = (format_interval(row["ci_low_new_data"], row["ci_high_new_data"]) if is_finite(row.get("ci_low_new_data"))
               else "(zero spread: no interval)")
        return (f"{diff}, {new} on new data (seeds and test images random), Holm p = "
                f"{format_p(row.get('p_new_data_holm', math.nan))}; {this}, Holm p = {format_p(row['p_holm'])}")
    # the verdict's Holm p: this test set's p adjusted with the other rows' deciding p-values
    # (equal to p_holm unless some rows decide on new data)
    deciding = row.get("p_verdict_holm", math.nan)
    return f"{diff} {this}, Holm p = {format_p(deciding if is_finite(deciding) else row['p_holm'])}"


def _planning(row: Mapping[str, object], alpha: float, family: int | None) -> str:
    n = int(row["n"])
    level = f" at Holm's first step (α = {alpha:g}/{family})" if family else ""
    mde = row.get("mde_80", math.nan)
    if is_finite(mde):
        plan = f"smallest difference these {n} seeds detect with 80% power{level}: {format_points(mde)} points"
    else:
        plan = f"n = {n}"
    seeds = row.get("seeds_for_smallest_effect", math.nan)
    if is_finite(seeds) or (isinstance(seeds, float) and math.isinf(seeds)):
        plan += f"; {format_count(seeds)} seeds give 80% power for the smallest effect of interest"
        plan += "" if is_finite(mde) else level
    if is_finite(row.get("p_new_data")) and plan != f"n = {n}":
        # the planning figures are the paired t's over seeds, not the new-data test the verdict uses
        plan = (f"for the paired t on this test set (seed-to-seed variance only; more seeds never remove "
                f"test-set sampling), {plan}")
    return plan


def sequential_sentence(seq: Mapping[str, object], row: Mapping[str, object] | None = None) -> str:
    """One row of ``sequential.csv`` as a sentence, e.g.

    "good vs starved on digits: +52.78 points, design-adjusted interval [+40.12, +65.44]:
    significant: good better (sequential, look 1), decided at look 1 (3 seeds), |t| = 14.50 above
    6.53 (upper boundary); 3 seeds run, where a fixed design with the same power (0.99 against
    5.00 points = 3 x rope, sd 6.30 points) needs 5."
    """
    head = f"**{seq['arm_a']} vs {seq['arm_b']}** on {seq['dataset']}"
    verdict = (row or {}).get("verdict") or str(seq["decision"])
    confound = confound_text(row or {})
    tail = f"; {confound}" if confound else ""
    look, n = int(seq["look"]), int(seq["n"])
    if look == 0:
        return f"{head}: {verdict}{tail} (no look complete yet)."
    if is_finite(seq["interval_low"]):
        interval = f"design-adjusted interval {format_interval(seq['interval_low'], seq['interval_high'])}"
    else:
        interval = "no design-adjusted interval (the look's differences have zero spread or lack a pair)"
    text = f"{head}: {format_signed(seq['diff'])} points, {interval}: {verdict}{tail}"
    if seq["boundary"]:
        text += f"; decided at look {look} ({n} seeds), {str(seq['boundary'])} boundary"
    else:
        text += f"; latest look {look} ({n} seeds)"
    text += f"; {int(seq['seeds_run'])} seeds run"
    if seq["boundary"]:
        text += "; decided by the design's seed-level test, whose boundaries are calibrated for it (this test set)"
        if row is not None and is_finite(row.get("p_new_data")) and is_finite(row.get("ci_low_new_data")):
            text += (f"; for new data (seeds and test images random, all {int(row['n'])} seeds run) "
                     f"{format_interval(row['ci_low_new_data'], row['ci_high_new_data'])}")
    fixed = seq.get("fixed_seeds_same_power", math.nan)
    if is_finite(seq.get("power")) and (is_finite(fixed) or (isinstance(fixed, float) and math.isinf(fixed))):
        source = "3 × rope" if seq["effect_source"] == "3 x rope" else "the smallest effect of interest"
        text += (
            f", where a fixed design with the same power ({format_prob(seq['power'])} against "
            f"{format_points(seq['effect'])} points = {source}, at the observed sd "
            f"{format_points(seq['sd_diff'])}) needs {format_count(fixed)}"
        )
    return text + "."


def across_sentence(d: Mapping[str, object], alpha: float = 0.05) -> str:
    """One row of ``across.csv`` in words: data sets as units, then random effects if computed.

    e.g. "fmce ahead on 3 of 3 data sets (sign test p = 0.250, Wilcoxon p = 0.250); with 3
    data sets no sign or rank test can reach p < 0.05."
    """
    a, b, k = d["arm_a"], d["arm_b"], int(d["n_datasets"])
    text = f"**{a} vs {b}** across data sets: {a} ahead on {int(d['a_ahead'])} of {k} data sets"
    if int(d["b_ahead"]):
        text += f", {b} on {int(d['b_ahead'])}"
    text += f" (sign test p = {format_p(d['p_sign_datasets'])}, Wilcoxon p = {format_p(d['p_wilcoxon_datasets'])})"
    min_p = d.get("min_p_datasets", math.nan)
    if is_finite(min_p) and float(min_p) >= alpha:
        text += (
            f"; with {k} data sets no sign or rank test can reach p < {alpha:g} "
            f"(smallest attainable p = {float(min_p):.3g})"
        )
    if is_finite(d.get("re_diff")):
        text += (
            f"; random effects over {int(d['re_datasets'])} data sets: {format_signed(d['re_diff'])} points "
            f"[{format_signed(d['re_ci_low'])}, {format_signed(d['re_ci_high'])}] (HKSJ {100 * (1 - alpha):g}%), "
            f"tau² = {float(d['tau2']):.3g}, I² = {100 * float(d['i2']):.0f}%"
        )
        if is_finite(d.get("pi_low")):
            text += f", on a new data set [{format_signed(d['pi_low'])}, {format_signed(d['pi_high'])}]"
    return text + "."


_SOURCES = {"init": "initialisation", "order": "data order", "augment": "augmentation",
            "split": "the train/validation split"}


def _words(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def variance_sentence(vary: Sequence[str] | None, test_images: Mapping[str, float], new_data: bool) -> str:
    """Which sources of variance the report's intervals cover, in words, e.g.

    "What the intervals cover: seeds vary initialisation, data order, augmentation and the
    train/validation split; the 360 test images are a sample too: ..."

    ``vary``: what the seeds varied (``AnalysisSettings.vary``; None: not recorded);
    ``test_images``: per data set the test examples (or the test-split size); ``new_data``:
    whether predictions put the test images into the intervals.
    """
    if vary is None:
        seeds = "what the seeds varied is not recorded"
    else:
        seeds = f"seeds vary {_words([_SOURCES[v] for v in _SOURCES if v in vary])}"
        fixed = [_SOURCES[v] for v in _SOURCES if v not in vary]
        if fixed:
            seeds += f" ({_words(fixed)} {'is' if len(fixed) == 1 else 'are'} the same for every seed)"
    known = {d: int(n) for d, n in test_images.items() if is_finite(n)}
    if len(known) == 1:
        images = f"the {format_thousands(next(iter(known.values())))} test images"
    elif known:
        images = "the test images (" + ", ".join(f"{format_thousands(n)} on {d}" for d, n in known.items()) + ")"
    else:
        images = "the test images"
    if new_data:
        return (f"What the intervals cover: {seeds}; {images} are a sample too: the intervals marked new data, "
                "and the verdicts of the rows that have them, hold for new data from the same distribution; those "
                "marked this test set, and the verdicts of rows without a new-data interval (a paired seed lacks "
                "predictions), hold for these test images only.")
    return (f"What the intervals cover: {seeds}; {images} are held fixed: no per-example predictions were given, "
            "so every interval and verdict holds for this test set only, not for new data from the same distribution.")
