"""The report's "Results per dataset": per data set the arms, the contrasts paired by seed, what
else differs between the arms, and the figures."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from ablate.report.formatting import (NA, figure_links, format_count, format_p, format_points, format_prob,
                                      format_seconds, format_signed, format_thousands, table)

__all__ = ["dataset_section"]

# Fixed-sample figures a sequential study does not show (empty in its comparisons.csv).
_FIXED_ONLY_HEADERS = {"p Holm", "p TOST Holm", "MDE 80%"}
# The profile columns that say whether the results record cost and late gains at all.
_RECORDED = ["params", "trainable_params", "train_images", "wall_time", "late_gain"]


def dataset_section(
    dataset: str,
    comparisons: pd.DataFrame,
    summaries: pd.DataFrame,
    profiles: pd.DataFrame,
    figures: Mapping[str, Sequence[str]],
    still_rising: float,
    sequential: bool = False,
) -> list[str]:
    """One data set: accuracy per arm, the contrast tables (without the fixed-sample columns
    after sequential seeds), the arms' cost and late gain, and the data set's figures."""
    lines = [f"### {dataset}", ""]
    arms = summaries[summaries["dataset"].astype(str) == dataset] if not summaries.empty else summaries
    if not arms.empty:
        lines += ["Accuracy (%) per arm over seeds:", ""] + _arm_table(arms) + [""]
    prof = profiles[profiles["dataset"].astype(str) == dataset] if not profiles.empty else profiles
    rows = comparisons[comparisons["dataset"].astype(str) == dataset] if not comparisons.empty else comparisons
    if not rows.empty:
        lines += ["Contrasts, paired by seed:", ""] + _contrast_tables(rows, prof, sequential) + [""]
    if not prof.empty and prof[_RECORDED].apply(pd.to_numeric, errors="coerce").isna().all().all():
        lines += [
            "The results record no parameter counts, training images or late validation gains for "
            "this data set: what else differs between the arms, and whether they were still learning, "
            "is unknown.",
            "",
        ]
    if not prof.empty and not prof[_RECORDED].apply(pd.to_numeric, errors="coerce").isna().all().all():
        lines += [
            "Per arm, medians over seeds: size, compute, and the validation-accuracy gain over the last "
            "quarter of the epochs (late gain), next to the learning curves:",
            "",
        ] + _profile_table(prof, still_rising) + [""]
    lines += figure_links(figures.get(dataset, ()))
    return lines


def _arm_table(summaries: pd.DataFrame) -> list[str]:
    rows = [
        [
            r["arm"], int(r["n"]), format_points(r["mean"]), format_points(r["sd"]),
            f"[{format_points(r['ci_low'])}, {format_points(r['ci_high'])}]",
            format_points(r["median"]), format_points(r["min"]), format_points(r["max"]),
        ]
        for r in summaries.to_dict("records")
    ]  # fmt: skip
    return table(["arm", "n", "mean", "sd", "95% CI", "median", "min", "max"], rows)


def _profile_table(profiles: pd.DataFrame, still_rising: float) -> list[str]:
    rows = []
    for r in profiles.to_dict("records"):
        rising = r.get("still_rising")
        mark = NA if rising is None or (isinstance(rising, float) and math.isnan(rising)) else ("yes" if rising else "no")
        rows.append([
            r["arm"], format_thousands(r["params"]), format_thousands(r["trainable_params"]),
            format_thousands(r["train_images"]), format_seconds(r["wall_time"]), format_signed(r["late_gain"]), mark,
        ])  # fmt: skip
    return table(
        ["arm", "parameters", "trainable", "training images", "wall time (s)", "late gain (points)",
         f"still rising (> {format_points(still_rising)})"],
        rows,
    )  # fmt: skip


def _without(header: list[str], rows: list[list[object]], drop: set[str]) -> tuple[list[str], list[list[object]]]:
    keep = [i for i, h in enumerate(header) if h not in drop]
    return [header[i] for i in keep], [[row[i] for i in keep] for row in rows]


def _contrast_tables(comparisons: pd.DataFrame, profiles: pd.DataFrame, sequential: bool = False) -> list[str]:
    records = comparisons.to_dict("records")
    drop = _FIXED_ONLY_HEADERS if sequential else set()
    lines = table(*_without(*_tests_table(records), drop)) + [""] + table(*_without(*_effects_table(records), drop))
    if not profiles.empty and not profiles[["params", "train_images"]].apply(pd.to_numeric, errors="coerce").isna().all().all():
        lines += [
            "",
            "What differs besides the named factor (medians per arm, A / B; wall time for information only):",
            "",
        ] + _cost_table(records, profiles)
    return lines


def _tests_table(records: list[dict]) -> tuple[list[str], list[list[object]]]:
    rows = [
        [
            f"{r['arm_a']} vs {r['arm_b']}", int(r["n"]), format_points(r["mean_a"]), format_points(r["mean_b"]),
            format_signed(r["diff"]), f"[{format_signed(r['ci_low'])}, {format_signed(r['ci_high'])}]",
            format_p(r["p_paired"]), format_p(r["p_welch"]), format_p(r["p_permutation"]),
            format_p(r["p_holm"]), r["verdict"], r.get("confounded_by", ""),
        ]
        for r in records
    ]  # fmt: skip
    header = ["contrast (A vs B)", "n", "mean A", "mean B", "A − B", "95% CI", "p paired", "p Welch",
              "p perm.", "p Holm", "verdict", "confounded by"]  # fmt: skip
    return header, rows


def _effects_table(records: list[dict]) -> tuple[list[str], list[list[object]]]:
    rows = [
        [
            f"{r['arm_a']} vs {r['arm_b']}", format_prob(r["d_z"]), format_prob(r["share_a_better"]),
            format_p(r["p_sign"]), format_points(r["rope"]), format_prob(r["rope_below"]),
            format_prob(r["rope_inside"]), format_prob(r["rope_above"]), format_p(r["p_tost"]),
            format_p(r["p_tost_holm"]), format_points(r["mde_80"]), format_count(r["seeds_for_smallest_effect"]),
        ]
        for r in records
    ]  # fmt: skip
    header = ["contrast (A vs B)", "d_z", "share A better", "p sign", "ROPE ±", "P(below)", "P(inside)",
              "P(above)", "p TOST", "p TOST Holm", "MDE 80%", "seeds for smallest effect"]  # fmt: skip
    return header, rows


def _cost_table(records: list[dict], profiles: pd.DataFrame) -> list[str]:
    by_arm = {r["arm"]: r for r in profiles.to_dict("records")}
    cost = []
    for r in records:
        a, b = by_arm.get(r["arm_a"], {}), by_arm.get(r["arm_b"], {})
        pair = lambda key, fmt: f"{fmt(a.get(key))} / {fmt(b.get(key))}"  # noqa: E731
        cost.append([
            f"{r['arm_a']} vs {r['arm_b']}", pair("params", format_thousands),
            pair("trainable_params", format_thousands), pair("train_images", format_thousands),
            pair("wall_time", format_seconds), r.get("confounded_by", ""),
        ])  # fmt: skip
    return table(
        ["contrast (A vs B)", "parameters", "trainable", "training images", "wall time (s)", "confounded by"],
        cost,
    )
