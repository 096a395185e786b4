"""The report's "Results per dataset": per data set the arms, the contrasts paired by seed, what
else differs between the arms, and the figures."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from ablate.analysis import is_finite
from ablate.report.formatting import (NA, figure_links, format_count, format_interval, format_p, format_points,
                                      format_prob, format_seconds, format_signed, format_thousands, table)

__all__ = ["dataset_section"]

# Fixed-sample figures a sequential study does not show (empty in its comparisons.csv).
_FIXED_ONLY_HEADERS = {"p Holm", "p TOST Holm", "p new data Holm", "p TOST new data Holm", "MDE 80% at α/m"}
# Columns that exist only with predictions (the test images as a sample too).
_NEW_DATA_HEADERS = {"95% CI, new data", "p new data", "p new data Holm", "sd test sampling", "p TOST new data",
                     "p TOST new data Holm"}
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


def _contrast_tables(comparisons: pd.DataFrame, profiles: pd.DataFrame, sequential: bool = False) -> list[str]:
    records = comparisons.to_dict("records")
    drop = _FIXED_ONLY_HEADERS if sequential else set()
    if not any(is_finite(r.get("p_new_data")) for r in records):
        drop = drop | _NEW_DATA_HEADERS
    if not any(isinstance(r.get("too_short"), str) and r["too_short"] for r in records):
        drop = drop | {"may be too short"}
    lines = _table_of(records, _TESTS, drop) + [""] + _table_of(records, _EFFECTS, drop)
    if not profiles.empty and not profiles[["params", "train_images"]].apply(pd.to_numeric, errors="coerce").isna().all().all():
        lines += [
            "",
            "What differs besides the named factor (medians per arm, A / B; wall time for information only):",
            "",
        ] + _cost_table(records, profiles)
    return lines


def _table_of(records: list[dict], columns: tuple, drop: set[str]) -> list[str]:
    """A markdown table of ``records`` with the ``(header, cell)`` columns not in ``drop``."""
    kept = [(header, cell) for header, cell in columns if header not in drop]
    return table([header for header, _ in kept], [[cell(r) for _, cell in kept] for r in records])



def _true(value: object) -> bool:
    """A boolean cell, as computed (a bool or numpy bool) or as read back from comparisons.csv ("True")."""
    return str(value) == "True"


def _share(r: dict) -> str:
    low, high = r["share_ci_low"], r["share_ci_high"]
    return format_prob(r["share_a_better"]) + (f" [{format_prob(low)}, {format_prob(high)}]" if is_finite(low) else "")


def _contrast(r: dict) -> str:
    return f"{r['arm_a']} vs {r['arm_b']}"


# The contrast tables, column by column: (header, the cell of one comparisons row).
_TESTS = (
    ("contrast (A vs B)", _contrast), ("n", lambda r: int(r["n"])), ("mean A", lambda r: format_points(r["mean_a"])),
    ("mean B", lambda r: format_points(r["mean_b"])), ("A − B", lambda r: format_signed(r["diff"])),
    ("95% CI, new data", lambda r: format_interval(r["ci_low_new_data"], r["ci_high_new_data"])),
    ("p new data", lambda r: format_p(r["p_new_data"])), ("p new data Holm", lambda r: format_p(r["p_new_data_holm"])),
    ("sd test sampling", lambda r: format_points(r["sd_test_sampling"])),
    ("95% CI, this test set", lambda r: format_interval(r["ci_low"], r["ci_high"])),
    ("p paired", lambda r: format_p(r["p_paired"])), ("p Welch", lambda r: format_p(r["p_welch"])),
    ("p perm.", lambda r: format_p(r["p_permutation"])), ("p Holm", lambda r: format_p(r["p_holm"])),
    ("verdict", lambda r: r["verdict"]), ("confounded by", lambda r: r.get("confounded_by", "")),
)  # fmt: skip
_EFFECTS = (
    ("contrast (A vs B)", _contrast), ("d_z", lambda r: format_prob(r["d_z"])), ("share A better [95% CI]", _share),
    ("p sign", lambda r: format_p(r["p_sign"])), ("ROPE ±", lambda r: format_points(r["rope"])),
    ("P(below)", lambda r: format_prob(r["rope_below"])), ("P(inside)", lambda r: format_prob(r["rope_inside"])),
    ("P(above)", lambda r: format_prob(r["rope_above"])), ("p TOST", lambda r: format_p(r["p_tost"])),
    ("p TOST Holm", lambda r: format_p(r["p_tost_holm"])), ("p TOST new data", lambda r: format_p(r["p_tost_new_data"])),
    ("p TOST new data Holm", lambda r: format_p(r["p_tost_new_data_holm"])),
    ("equivalence attainable", lambda r: "yes" if _true(r["equivalence_attainable"]) else "no"),
    ("MDE 80% at α/m", lambda r: format_points(r["mde_80"])),
    ("seeds for smallest effect", lambda r: format_count(r["seeds_for_smallest_effect"])),
    ("may be too short", lambda r: r.get("too_short", "")),
)  # fmt: skip


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
