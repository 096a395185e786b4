"""The markdown report of an ablation study, as a string (no I/O, no torch, no Optuna).

The report opens with a note on where the numbers come from (when given), a warning when the
working tree was dirty, one plain-language verdict per dataset and contrast (with what else
differs between the arms and whether one was still learning) and one per contrast across data
sets; then the tables behind them, how each arm was tuned, the warnings, the evidence across
datasets, the figures, the procedure with its references, and the provenance (never the host). Every number is printed by the ``format_*`` helpers
below, so the text shows exactly the values of ``comparisons.csv``, rounded the same way
everywhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from ablate.stats import Aggregate

__all__ = [
    "AGGREGATE_FIGURES",
    "format_points",
    "format_p",
    "format_prob",
    "format_count",
    "verdict_sentence",
    "sequential_sentence",
    "across_sentence",
    "render_report",
]

# key of ``figures`` for figures about all datasets together (the CD diagram)
AGGREGATE_FIGURES = "all datasets"

_MINUS = "\u2212"  # a real minus sign; "-" reads as a hyphen in prose
_NA = "n/a"


# --------------------------------------------------------------------------- numbers


def _finite(x: object) -> bool:
    try:
        return math.isfinite(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def format_points(x: float, signed: bool = False, digits: int = 2) -> str:
    """A value in percentage points: ``+0.40``, ``−0.10``, ``91.23``; ``n/a`` when NaN."""
    if not _finite(x):
        return _NA
    text = f"{float(x):+.{digits}f}" if signed else f"{float(x):.{digits}f}"
    if float(text) == 0.0:  # no "+0.00" or "-0.00"
        text = f"{0.0:.{digits}f}"
    return text.replace("-", _MINUS)


def format_p(p: float) -> str:
    """A p-value or probability tested against alpha: ``0.021``, ``< 0.001``; ``n/a`` when NaN."""
    if not _finite(p):
        return _NA
    return "< 0.001" if float(p) < 0.001 else f"{float(p):.3f}"


def format_prob(x: float) -> str:
    """A probability or effect size shown to two decimals (``0.97``, ``−1.20``)."""
    return format_points(x, digits=2)


def format_count(x: float) -> str:
    """A count such as seeds needed: ``23``, ``∞``, or ``n/a``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return _NA
    if math.isinf(float(x)):
        return "\u221e"
    return str(int(x))


def _text(x: object) -> str:
    """Markdown-safe cell text."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(x).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(_text(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_text(c) for c in row) + " |" for row in rows]
    return lines


def _warnings_of(row: Mapping[str, object]) -> list[str]:
    raw = row.get("warnings", "")
    if not isinstance(raw, str) or not raw:
        return []
    return [w for w in raw.split("; ") if w]


# --------------------------------------------------------------------------- verdicts


def _rounded(x: object, digits: int = 2) -> str:
    return format_points(x, signed=True, digits=digits)


def _confound_text(row: Mapping[str, object]) -> str:
    confound = row.get("confounded_by", "")
    if not isinstance(confound, str) or not confound:
        return ""
    if confound == "unknown":
        return "confounded by: unknown (no parameter or training-image counts)"
    return f"confounded by: {confound}"


def verdict_sentence(row: Mapping[str, object]) -> str:
    """One row of ``comparisons`` as a sentence, e.g.

    "fmce vs nfmce on digits: +0.40 points [−0.10, +0.90], Holm p = 0.210: not significant;
    smallest difference these 5 seeds detect with 80% power: 1.68 points."
    """
    head = f"**{row['arm_a']} vs {row['arm_b']}** on {row['dataset']}"
    n = int(row["n"])
    confound = _confound_text(row)
    tail = f"; {confound}" if confound else ""
    if n < 2:
        single = f"; A − B = {_rounded(row['diff'])} points from one seed" if n == 1 else ""
        return f"{head}: {row['verdict']} (n = {n} paired seeds){single}{tail}."
    numbers = (
        f"{_rounded(row['diff'])} points [{_rounded(row['ci_low'])}, {_rounded(row['ci_high'])}], "
        f"Holm p = {format_p(row['p_holm'])}"
    )
    mde = row.get("mde_80", math.nan)
    if _finite(mde):
        plan = f"smallest difference these {n} seeds detect with 80% power: {format_points(mde)} points"
    else:
        plan = f"n = {n}"
    seeds = row.get("seeds_for_smallest_effect", math.nan)
    if _finite(seeds) or (isinstance(seeds, float) and math.isinf(seeds)):
        plan += f"; {format_count(seeds)} seeds give 80% power for the smallest effect of interest"
    return f"{head}: {numbers}: {row['verdict']}{tail}; {plan}."


def sequential_sentence(seq: Mapping[str, object], row: Mapping[str, object] | None = None) -> str:
    """One row of ``sequential.csv`` as a sentence, e.g.

    "good vs starved on digits: +52.78 points, design-adjusted interval [+40.12, +65.44]:
    significant: good better (sequential, look 1), decided at look 1 (3 seeds), |t| = 14.50 above
    6.53 (upper boundary); 3 seeds run, where a fixed design with the same power (0.99 against
    5.00 points = 3 x rope, sd 6.30 points) needs 5."
    """
    head = f"**{seq['arm_a']} vs {seq['arm_b']}** on {seq['dataset']}"
    verdict = (row or {}).get("verdict") or str(seq["decision"])
    confound = _confound_text(row or {})
    tail = f"; {confound}" if confound else ""
    look, n = int(seq["look"]), int(seq["n"])
    if look == 0:
        return f"{head}: {verdict}{tail} (no look complete yet)."
    interval = f"[{_rounded(seq['interval_low'])}, {_rounded(seq['interval_high'])}]"
    text = f"{head}: {_rounded(seq['diff'])} points, design-adjusted interval {interval}: {verdict}{tail}"
    if seq["boundary"]:
        text += f"; decided at look {look} ({n} seeds), {str(seq['boundary'])} boundary"
    else:
        text += f"; latest look {look} ({n} seeds)"
    text += f"; {int(seq['seeds_run'])} seeds run"
    fixed = seq.get("fixed_seeds_same_power", math.nan)
    if _finite(seq.get("power")) and (_finite(fixed) or (isinstance(fixed, float) and math.isinf(fixed))):
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
    if _finite(min_p) and float(min_p) >= alpha:
        text += (
            f"; with {k} data sets no sign or rank test can reach p < {alpha:g} "
            f"(smallest attainable p = {float(min_p):.3g})"
        )
    if _finite(d.get("re_diff")):
        text += (
            f"; random effects over {int(d['re_datasets'])} data sets: {_rounded(d['re_diff'])} points "
            f"[{_rounded(d['re_ci_low'])}, {_rounded(d['re_ci_high'])}] (HKSJ {100 * (1 - alpha):g}%), "
            f"tau² = {float(d['tau2']):.3g}, I² = {100 * float(d['i2']):.0f}%"
        )
        if _finite(d.get("pi_low")):
            text += f", on a new data set [{_rounded(d['pi_low'])}, {_rounded(d['pi_high'])}]"
    return text + "."


# --------------------------------------------------------------------------- sections


def _datasets(comparisons: pd.DataFrame, summaries: pd.DataFrame) -> list[str]:
    seen: dict[str, None] = {}
    for frame in (summaries, comparisons):
        if "dataset" in frame.columns:
            seen.update(dict.fromkeys(str(d) for d in frame["dataset"]))
    return list(seen)


def _dirty(provenance: Mapping[str, object] | None) -> str | None:
    commit = (provenance or {}).get("git_commit")
    if isinstance(commit, str) and commit.endswith("+dirty"):
        return (
            f"**The working tree had uncommitted changes** when these numbers were made "
            f"(git commit {commit}): the code that produced them is not exactly that commit."
        )
    return None


def _verdict_section(
    comparisons: pd.DataFrame,
    aggregate: Aggregate | None,
    rope: float | None,
    alpha: float,
    *,
    note: str | None,
    provenance: Mapping[str, object] | None,
    too_short: Sequence[Mapping[str, object]],
    sequential: pd.DataFrame | None = None,
    design: Mapping[str, object] | None = None,
) -> list[str]:
    lines = ["## Verdict", ""]
    if note:
        lines += [f"> {line}" if line else ">" for line in note.strip().splitlines()] + [""]
    dirty = _dirty(provenance)
    if dirty:
        lines += [dirty, ""]
    per_dataset: list[str] = []
    if comparisons.empty:
        per_dataset += ["No contrast could be computed: no dataset has both arms of any contrast.", ""]
    elif sequential is not None:
        by_key = {(r["dataset"], r["arm_a"], r["arm_b"]): r for r in comparisons.to_dict("records")}
        per_dataset += [f"- {sequential_sentence(r, by_key.get((r['dataset'], r['arm_a'], r['arm_b'])))}"
                        for r in sequential.to_dict("records")] + [""]
    else:
        per_dataset += [f"- {verdict_sentence(row)}" for row in comparisons.to_dict("records")] + [""]
    across: list[str] = []
    if aggregate is not None and aggregate.n_datasets >= 2 and aggregate.across:
        across += [f"- {across_sentence(dataclasses.asdict(d), alpha)}" for d in aggregate.across if d.n_datasets]
        across += [""] if across else []
    # With one run per cell the data sets are the only units there are: that verdict comes first.
    one_run_each = not comparisons.empty and bool((comparisons["n"].astype(int) < 2).all())
    lines += across + per_dataset if one_run_each else per_dataset + across
    for item in too_short:
        if sequential is not None and item["source"] == "contrast":
            evidence = "decided by the sequential design"
        else:
            evidence = f"{'Holm p' if item['source'] == 'contrast' else 'paired t p'} = {format_p(item['p'])}"
        lines += [
            f"On {item['dataset']}, single-long beats single by {_rounded(item['diff'])} points "
            f"({evidence}): evidence that the single recipe was too short.",
            "",
        ]
    if not comparisons.empty:
        confounded = [
            f"{r['arm_a']} vs {r['arm_b']} on {r['dataset']} ({r['confounded_by']})"
            for r in comparisons.to_dict("records")
            if isinstance(r.get("confounded_by"), str) and r["confounded_by"] not in ("", "unknown")
        ]
        if confounded:
            lines += [
                "Confounded contrasts (the arms differ by more than 10% in parameters or in training "
                f"images besides the named factor): {'; '.join(confounded)}.",
                "",
            ]
        rope_text = (
            f"±{format_points(rope)} points" if rope is not None
            else "± the larger of 0.1 points and one test image of that data set (column rope)"
        )
        if sequential is not None and design is not None:
            lines += [
                f"Sequential seeds (looks at {', '.join(str(n) for n in design['looks'])} seeds, "
                f"{design['spending']} spending): differences are A − B in accuracy points at the look that "
                f"decided the contrast, with the design-adjusted interval of that look; \"significant\" means "
                f"the interval excludes 0 and \"practically equivalent\" that it lies within {rope_text}, with "
                f"alpha {alpha:g} kept over all looks and {_plural(int(design['comparisons']), 'comparison')} "
                "(Bonferroni, then Lan-DeMets spending, boundaries calibrated for t).",
                "",
            ]
        else:
            lines += [
                f"Differences are A − B in accuracy points with 95% paired-t intervals; "
                f"\"significant\" means Holm-adjusted p < {alpha:g} over all {len(comparisons)} rows; "
                f"\"practically equivalent\" means the Holm-adjusted equivalence test (TOST) puts the "
                f"difference within {rope_text} at p < {alpha:g}.",
                "",
            ]
    return lines


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


_DECISION_WORDS = {"A better": "{a} better", "B better": "{b} better"}


def _sequential_section(
    sequential: pd.DataFrame | None, design: Mapping[str, object] | None, alpha: float
) -> list[str]:
    if sequential is None or design is None:
        return []
    looks = [int(n) for n in design["looks"]]
    m = int(design["comparisons"])
    lines = [
        "## Sequential seeds",
        "",
        f"Seeds ran in batches, every arm the same seeds, with a look after {', '.join(map(str, looks))} seeds; "
        f"alpha {alpha:g} split over {_plural(m, 'comparison')} (contrasts × data sets), "
        f"{alpha / m:.4g} each, spent over the looks by {design['spending']}-type Lan-DeMets spending. "
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
            format_points(r["critical"]) if _finite(r["critical"]) else _NA,
            f"[{_rounded(r['interval_low'])}, {_rounded(r['interval_high'])}]",
            int(r["seeds_run"]), format_points(r["sd_diff"]),
            f"{format_points(r['effect'])} ({source})", format_prob(r["power"]),
            format_count(r["fixed_seeds_same_power"]),
        ])  # fmt: skip
    lines += _table(
        ["data set", "contrast (A vs B)", "decision", "look", "boundary", "|t| above", "design-adjusted interval",
         "seeds run", "sd of A − B", "effect", "power", "fixed design, same power"],
        rows,
    ) + [""]
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
    return _table(["arm", "n", "mean", "sd", "95% CI", "median", "min", "max"], rows)


def _count(x: object) -> str:
    """A count such as parameters: ``11,172,042``; ``n/a`` when unknown."""
    if not _finite(x):
        return _NA
    return f"{float(x):,.0f}"


def _seconds(x: object) -> str:
    return f"{float(x):.0f}" if _finite(x) else _NA


def _profile_table(profiles: pd.DataFrame, still_rising: float) -> list[str]:
    rows = []
    for r in profiles.to_dict("records"):
        rising = r.get("still_rising")
        mark = _NA if rising is None or (isinstance(rising, float) and math.isnan(rising)) else ("yes" if rising else "no")
        rows.append([
            r["arm"], _count(r["params"]), _count(r["trainable_params"]), _count(r["train_images"]),
            _seconds(r["wall_time"]), _rounded(r["late_gain"]), mark,
        ])  # fmt: skip
    return _table(
        ["arm", "parameters", "trainable", "training images", "wall time (s)", "late gain (points)",
         f"still rising (> {format_points(still_rising)})"],
        rows,
    )  # fmt: skip


def _without(header: list[str], rows: list[list[object]], drop: set[str]) -> tuple[list[str], list[list[object]]]:
    keep = [i for i, h in enumerate(header) if h not in drop]
    return [header[i] for i in keep], [[row[i] for i in keep] for row in rows]


# Fixed-sample figures a sequential study does not show (empty in its comparisons.csv).
_FIXED_ONLY_HEADERS = {"p Holm", "p TOST Holm", "MDE 80%"}


def _contrast_tables(comparisons: pd.DataFrame, profiles: pd.DataFrame, sequential: bool = False) -> list[str]:
    records = comparisons.to_dict("records")
    tests = [
        [
            f"{r['arm_a']} vs {r['arm_b']}", int(r["n"]), format_points(r["mean_a"]), format_points(r["mean_b"]),
            _rounded(r["diff"]), f"[{_rounded(r['ci_low'])}, {_rounded(r['ci_high'])}]",
            format_p(r["p_paired"]), format_p(r["p_welch"]), format_p(r["p_permutation"]),
            format_p(r["p_holm"]), r["verdict"], r.get("confounded_by", ""),
        ]
        for r in records
    ]  # fmt: skip
    effects = [
        [
            f"{r['arm_a']} vs {r['arm_b']}", format_prob(r["d_z"]), format_prob(r["share_a_better"]),
            format_p(r["p_sign"]), format_points(r["rope"]), format_prob(r["rope_below"]),
            format_prob(r["rope_inside"]), format_prob(r["rope_above"]), format_p(r["p_tost"]),
            format_p(r["p_tost_holm"]), format_points(r["mde_80"]), format_count(r["seeds_for_smallest_effect"]),
        ]
        for r in records
    ]  # fmt: skip
    drop = _FIXED_ONLY_HEADERS if sequential else set()
    lines = (
        _table(*_without(
            ["contrast (A vs B)", "n", "mean A", "mean B", "A − B", "95% CI", "p paired", "p Welch",
             "p perm.", "p Holm", "verdict", "confounded by"],
            tests, drop,
        ))  # fmt: skip
        + [""]
        + _table(*_without(
            ["contrast (A vs B)", "d_z", "share A better", "p sign", "ROPE ±", "P(below)", "P(inside)",
             "P(above)", "p TOST", "p TOST Holm", "MDE 80%", "seeds for smallest effect"],
            effects, drop,
        ))  # fmt: skip
    )
    if not profiles.empty and not profiles[["params", "train_images"]].apply(pd.to_numeric, errors="coerce").isna().all().all():
        by_arm = {r["arm"]: r for r in profiles.to_dict("records")}
        cost = []
        for r in records:
            a, b = by_arm.get(r["arm_a"], {}), by_arm.get(r["arm_b"], {})
            pair = lambda key, fmt: f"{fmt(a.get(key))} / {fmt(b.get(key))}"  # noqa: E731
            cost.append([
                f"{r['arm_a']} vs {r['arm_b']}", pair("params", _count), pair("trainable_params", _count),
                pair("train_images", _count), pair("wall_time", _seconds), r.get("confounded_by", ""),
            ])  # fmt: skip
        lines += [
            "",
            "What differs besides the named factor (medians per arm, A / B; wall time for information only):",
            "",
        ] + _table(
            ["contrast (A vs B)", "parameters", "trainable", "training images", "wall time (s)", "confounded by"],
            cost,
        )
    return lines


def _figure_links(paths: Sequence[str]) -> list[str]:
    out = []
    for p in paths:
        posix = PurePosixPath(str(p).replace("\\", "/"))
        out += [f"![{posix.stem.replace('_', ' ')}]({posix.as_posix()})", ""]
    return out


def _dataset_section(
    dataset: str,
    comparisons: pd.DataFrame,
    summaries: pd.DataFrame,
    profiles: pd.DataFrame,
    figures: Mapping[str, Sequence[str]],
    still_rising: float,
    sequential: bool = False,
) -> list[str]:
    lines = [f"### {dataset}", ""]
    arms = summaries[summaries["dataset"].astype(str) == dataset] if not summaries.empty else summaries
    if not arms.empty:
        lines += ["Accuracy (%) per arm over seeds:", ""] + _arm_table(arms) + [""]
    prof = profiles[profiles["dataset"].astype(str) == dataset] if not profiles.empty else profiles
    recorded = ["params", "trainable_params", "train_images", "wall_time", "late_gain"]
    rows = comparisons[comparisons["dataset"].astype(str) == dataset] if not comparisons.empty else comparisons
    if not rows.empty:
        lines += ["Contrasts, paired by seed:", ""] + _contrast_tables(rows, prof, sequential) + [""]
    if not prof.empty and prof[recorded].apply(pd.to_numeric, errors="coerce").isna().all().all():
        lines += [
            "The results record no parameter counts, training images or late validation gains for "
            "this data set: what else differs between the arms, and whether they were still learning, "
            "is unknown.",
            "",
        ]
    if not prof.empty and not prof[recorded].apply(pd.to_numeric, errors="coerce").isna().all().all():
        lines += [
            "Per arm, medians over seeds: size, compute, and the validation-accuracy gain over the last "
            "quarter of the epochs (late gain), next to the learning curves:",
            "",
        ] + _profile_table(prof, still_rising) + [""]
    lines += _figure_links(figures.get(dataset, ()))
    return lines


def _tuning_section(
    tuning: Mapping[str, Mapping[str, object]] | None, expected_best: Mapping[str, Sequence[float]] | None
) -> list[str]:
    if not tuning:
        return []
    methods = sorted({str(t["method"]) for t in tuning.values()})
    explain = {
        "per-arm": "each arm had its own search with the same budget",
        "best": "every arm used the settings of the one best search trial",
        "fixed": "no search: every arm used the study file's settings",
    }
    lines = [
        "## Tuning",
        "",
        "How each arm's hyperparameters were chosen: " + "; ".join(f"{m} ({explain.get(m, m)})" for m in methods) + ".",
        "Expected best validation accuracy after n search trials (Dodge et al. 2019): the expected "
        "maximum of n draws from the arm's completed trials. With TPE sampling and pruning the trials "
        "are not independent draws, so this is an approximation.",
        "",
    ]
    for arm, t in tuning.items():
        lines += [f"### {arm}", "", f"Method: {t['method']}; search trials: {t['n_trials']}.", ""]
        settings = t.get("settings") or {}
        if settings:
            lines += _table(["setting", "value"], [[k, _setting(v)] for k, v in settings.items()]) + [""]
        importances = t.get("importances") or {}
        if importances:
            ranked = sorted(importances.items(), key=lambda item: -item[1])
            lines += ["Parameter importances (Optuna):", ""]
            lines += _table(["parameter", "importance"], [[k, f"{v:.2f}"] for k, v in ranked]) + [""]
        elif t["method"] != "fixed":
            completed = len(t.get("search_values") or [])
            lines += [f"Parameter importances: not computed (too few completed search trials to rank the "
                      f"parameters: {completed}).", ""]
        curve = list((expected_best or {}).get(arm, ()))
        if curve:
            shown = sorted({n for n in (1, 2, 4, 8, 16, 32, 64, 128, 256) if n <= len(curve)} | {len(curve)})
            lines += _table(
                ["search trials n", *[str(n) for n in shown]],
                [["expected best val. accuracy (%)", *[format_points(100 * curve[n - 1]) for n in shown]]],
            ) + [""]
        elif t["method"] != "fixed":
            lines += ["No completed search trials recorded.", ""]
    return lines


def _setting(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _warning_section(
    comparisons: pd.DataFrame, aggregate: Aggregate | None, missing: Sequence[str]
) -> list[str]:
    items = []
    if missing:
        items.append(f"- {len(missing)} planned run(s) have no result: {', '.join(missing)}")
    for row in comparisons.to_dict("records"):
        for w in _warnings_of(row):
            items.append(f"- {row['dataset']}, {row['arm_a']} vs {row['arm_b']}: {w}")
    if aggregate is not None:
        items += [f"- across datasets: {note}" for note in aggregate.notes]
        if aggregate.n_datasets >= 2:
            items += [f"- across datasets, {d.arm_a} vs {d.arm_b}: {d.notes}" for d in aggregate.across if d.notes]
    return ["## Warnings", ""] + (items or ["None."]) + [""]


def _aggregate_section(
    aggregate: Aggregate | None, figures: Mapping[str, Sequence[str]], alpha: float
) -> list[str]:
    lines = ["## Across datasets", ""]
    if aggregate is None:
        return lines + ["Not computed.", ""]
    across = [d for d in aggregate.across if d.n_datasets] if aggregate.n_datasets >= 2 else []
    if across:
        lines += [
            "Data sets as the units (Demšar 2006): per contrast, the number of data sets on which each arm "
            "is ahead (mean paired difference), the exact sign test and the Wilcoxon signed-rank test over "
            "the per-data-set differences, and the smallest p that this many data sets can reach:",
            "",
        ]
        lines += _table(
            ["contrast (A vs B)", "data sets", "A ahead", "B ahead", "p sign", "p Wilcoxon", "smallest p"],
            [
                [f"{d.arm_a} vs {d.arm_b}", d.n_datasets, d.a_ahead, d.b_ahead, format_p(d.p_sign_datasets),
                 format_p(d.p_wilcoxon_datasets), f"{d.min_p_datasets:.3g}" if _finite(d.min_p_datasets) else _NA]
                for d in across
            ],
        ) + [""]  # fmt: skip
        effects = [d for d in across if _finite(d.re_diff)]
        if effects:
            lines += [
                f"Random effects over the data sets with 2 or more paired seeds: the overall difference A − B "
                f"(points) with its Hartung-Knapp-Sidik-Jonkman {100 * (1 - alpha):g}% interval, the between-data-set "
                "variance tau² (Paule-Mandel), I², and, from 3 data sets, the prediction interval for a new data set:",
                "",
            ]
            lines += _table(
                ["contrast (A vs B)", "data sets", "A − B", "interval", "tau²", "I²", "new data set"],
                [
                    [f"{d.arm_a} vs {d.arm_b}", d.re_datasets, _rounded(d.re_diff),
                     f"[{_rounded(d.re_ci_low)}, {_rounded(d.re_ci_high)}]", f"{d.tau2:.3g}", f"{100 * d.i2:.0f}%",
                     f"[{_rounded(d.pi_low)}, {_rounded(d.pi_high)}]" if _finite(d.pi_low) else _NA]
                    for d in effects
                ],
            ) + [""]  # fmt: skip
    if aggregate.friedman is not None:
        f = aggregate.friedman
        decision = (
            "it rejects, so the critical-difference diagram below shows which arms differ"
            if f.rejects
            else "it does not reject, so no critical-difference diagram is drawn"
        )
        f_text = "\u221e" if f.f_statistic == math.inf else format_points(f.f_statistic)
        lines += [
            f"Friedman test over {len(f.arms)} arms on {f.n_datasets} datasets (per-dataset mean "
            f"accuracy): χ² = {format_points(f.statistic)}, Iman-Davenport F = {f_text}, "
            f"p = {format_p(f.f_pvalue)}; {decision}. Nemenyi critical difference at α = {alpha:g}: "
            f"CD = {f.cd:.2f}; arms whose average ranks differ by less than CD are not significantly different.",
            "",
        ]
        lines += _table(
            ["arm", "average rank (1 = best)"],
            [[arm, f"{rank:.2f}"] for arm, rank in sorted(f.avg_ranks.items(), key=lambda item: item[1])],
        ) + [""]
    if not across and aggregate.friedman is None:
        lines += [note for note in aggregate.notes] or ["Nothing to aggregate."]
        lines += [""]
    lines += _figure_links(figures.get(AGGREGATE_FIGURES, ()))
    return lines


def _procedure_section(rope: float | None, alpha: float, still_rising: float, smallest_effect: float | None,
                       design: Mapping[str, object] | None = None) -> list[str]:
    r_ = (
        f"±{format_points(rope)} points (given)" if rope is not None
        else "± the larger of 0.1 points and one test image (100 / n_test points) of each data set"
    )
    effect = (
        f"the smallest effect of interest, {format_points(smallest_effect)} points"
        if smallest_effect is not None else "a smallest effect of interest (none was set, so n/a)"
    )
    steps = [
        "Accuracies are in percentage points. Arms are paired by seed; only seeds run for both "
        "arms of a contrast count, and n is the number of such pairs.",
        "Arm summaries: mean, sd (n − 1), median, range and the 95% Student t interval of the mean.",
        "A − B is the mean paired difference with its 95% paired t interval (Student 1908). "
        "p paired is the two-sided paired t-test; p Welch the unpaired Welch test on the same "
        "seeds (Welch 1947); p perm. the sign-flip permutation test of the paired differences, "
        "exact over all 2^n sign flips for n ≤ 16 (else 9,999 Monte-Carlo flips with a fixed seed), "
        "with the differences rounded to 1e-9 points so that equal test-image counts tie exactly; "
        "with m zero differences its smallest attainable p is 2/2^(n − m).",
        f"p Holm adjusts p paired, and p TOST Holm adjusts p TOST, by Holm's step-down procedure "
        f"(Holm 1979) over every row of the comparisons table; a contrast is significant when "
        f"p Holm < {alpha:g}. When the permutation test cannot reach {alpha:g} at this n, a significant "
        "verdict says it rests on the paired t-test alone.",
        "d_z is the mean paired difference over its sd, times the exact small-sample factor "
        "J(n − 1) = Γ((n − 1)/2) / (√((n − 1)/2) Γ((n − 2)/2)) (Lakens 2013); share A better is the "
        "share of seeds at which A beats B, ties counted half; p sign the exact two-sided sign test "
        "of those wins, tied seeds dropped.",
        f"ROPE: differences within {r_} are treated as practically zero; a ROPE finer than one test "
        "image is flagged. P(below), P(inside), P(above) are posterior probabilities of the mean difference under the "
        "Bayesian paired t-test (Student t posterior with n − 1 df, location the mean difference, "
        "scale sd/√n; Benavoli et al. 2017). p TOST is the two one-sided tests for equivalence "
        f"within the ROPE (Schuirmann 1987); below {alpha:g} after Holm the arms are practically equivalent.",
        f"MDE 80% is the smallest difference a paired t-test at α = {alpha:g} detects with 80% "
        f"power at this n, from the observed sd of the differences; seeds for smallest effect is the "
        f"number of seeds that gives 80% power against {effect}. No \"observed power\" is given: "
        "it is a function of the p-value and adds nothing to it (Hoenig and Heisey 2001).",
        "Verdict: significant (Holm) first; else practically equivalent (TOST, Holm); else not significant.",
        "Confounded by: the arms' median parameter counts (\"parameters\") or training images seen, "
        "stage 1 and ensemble members included (\"compute\"), differ by more than 10% "
        "(|a − b| / min(a, b) > 0.10); \"unknown\" when the results do not record them.",
        f"Late gain: the median over seeds of the validation-accuracy gain over the last quarter of "
        f"the epochs; above {format_points(still_rising)} points the arm is still rising and every "
        "verdict involving it says so.",
        "Across data sets (Demšar 2006): data sets as the units: the sign test and the Wilcoxon "
        "signed-rank test over the per-data-set mean differences; with seeds, a random-effects "
        "meta-analysis of those differences with their within-data-set variances sd²/n "
        "(statsmodels' combine_effects: Paule-Mandel tau², Hartung-Knapp-Sidik-Jonkman interval on "
        "t with k − 1 df), I² truncated at 0, and from 3 data sets the prediction interval "
        "mean ± t(k − 2) √(tau² + SE²) (Higgins et al. 2009); a data set whose differences have zero "
        "variance gets one test image's difference squared over n as its variance. With at least 5 "
        "data sets, the Friedman test read through the Iman-Davenport F (Iman and Davenport 1980), "
        "average ranks and the Nemenyi critical difference, drawn only when F rejects.",
        "Expected best validation accuracy against the number of search trials: the expected maximum "
        "of n draws from the completed trials, Σ v_(i) [(i/N)^n − ((i − 1)/N)^n] (Dodge et al. 2019).",
        "Warnings flag n < 5, sample sizes at which the permutation test cannot reach significance "
        f"(smallest two-sided p = 2/2^(n − m) > {alpha:g}) and ROPEs finer than one test image.",
    ]
    if design is not None:
        looks = ", ".join(str(n) for n in design["looks"])
        steps += [
            f"Sequential seeds: the seeds ran in batches, with looks after {looks} seeds, every arm the same "
            f"seeds. Alpha {alpha:g} is split over the {design['comparisons']} comparisons (contrasts × data "
            f"sets; Bonferroni) and each share is spent over the looks by the Lan-DeMets {design['spending']}-"
            "type function (Lan and DeMets 1983); the z boundaries come from recursive numerical "
            "integration (Armitage et al. 1969), and the critical values of the paired t statistic "
            "(n_k − 1 df) at each look are calibrated by a seeded simulation of a million null studies, "
            "because seeds are few. At look k the design-adjusted interval is mean(d) ± c_k sd(d)/√n_k "
            "(Jennison and Turnbull 1989): above 0, A better; below 0, B better; inside the ROPE, "
            "equivalent; a contrast keeps the verdict of the first look that decided it, and the "
            "repeats stop when every contrast is decided or the last look is done (then undecided). "
            "The intervals of all looks cover the true difference together with probability "
            f"1 − {alpha:g}/{design['comparisons']}, so the chance of any false verdict in the study is at "
            f"most {alpha:g}.",
            "For a sequential study, p Holm, p TOST Holm and MDE 80% are not shown and are empty in "
            "comparisons.csv: they are fixed-sample figures (Holm over a single look at a fixed n, power "
            "at a fixed n) and no longer mean what they say after early stopping; the verdict column "
            "holds the design's verdict. A − B, the 95% interval and p paired, p Welch, p perm., p TOST "
            "are nominal, over all the seeds run, not adjusted for the looks, and decide nothing. "
            "sequential.csv gives per contrast the look, the boundary crossed, the critical |t|, the "
            "design-adjusted interval, the seeds run, and the seeds a fixed paired t-test at alpha/m needs "
            "for the power this design has (simulated, 200,000 studies, seeded) at the observed sd of the "
            "differences against the smallest effect of interest, or else 3 × the ROPE (its "
            "effect_source column says which).",
        ]
    refs = [
        "Student (1908). The probable error of a mean. *Biometrika* 6(1), 1–25.",
        "Welch, B. L. (1947). The generalization of \"Student's\" problem when several different "
        "population variances are involved. *Biometrika* 34(1–2), 28–35.",
        "Holm, S. (1979). A simple sequentially rejective multiple test procedure. "
        "*Scandinavian Journal of Statistics* 6(2), 65–70.",
        "Iman, R. L., Davenport, J. M. (1980). Approximations of the critical region of the Friedman "
        "statistic. *Communications in Statistics – Theory and Methods* 9(6), 571–595.",
        "Schuirmann, D. J. (1987). A comparison of the two one-sided tests procedure and the power "
        "approach for assessing the equivalence of average bioavailability. *Journal of "
        "Pharmacokinetics and Biopharmaceutics* 15(6), 657–680.",
        "Hoenig, J. M., Heisey, D. M. (2001). The abuse of power: the pervasive fallacy of power "
        "calculations for data analysis. *The American Statistician* 55(1), 19–24.",
        "Demšar, J. (2006). Statistical comparisons of classifiers over multiple data sets. "
        "*JMLR* 7, 1–30.",
        "Higgins, J. P. T., Thompson, S. G., Spiegelhalter, D. J. (2009). A re-evaluation of "
        "random-effects meta-analysis. *JRSS A* 172(1), 137–159.",
        "Lakens, D. (2013). Calculating and reporting effect sizes to facilitate cumulative science: "
        "a practical primer for t-tests and ANOVAs. *Frontiers in Psychology* 4, 863.",
        "Benavoli, A., Corani, G., Demšar, J., Zaffalon, M. (2017). Time for a change: a tutorial "
        "for comparing multiple classifiers through Bayesian analysis. *JMLR* 18(77), 1–36.",
        "Dodge, J., Gururangan, S., Card, D., Schwartz, R., Smith, N. A. (2019). Show your work: "
        "improved reporting of experimental results. *EMNLP 2019*, 2185–2194.",
    ]
    if design is not None:
        refs += [
            "Armitage, P., McPherson, C. K., Rowe, B. C. (1969). Repeated significance tests on accumulating "
            "data. *JRSS A* 132(2), 235–244.",
            "Lan, K. K. G., DeMets, D. L. (1983). Discrete sequential boundaries for clinical trials. "
            "*Biometrika* 70(3), 659–663.",
            "Jennison, C., Turnbull, B. W. (1989). Interim analyses: the repeated confidence interval "
            "approach. *JRSS B* 51(3), 305–361.",
        ]
    return (
        ["## Procedure", ""]
        + [f"{i}. {s}" for i, s in enumerate(steps, start=1)]
        + ["", "### References", ""]
        + [f"- {r}" for r in refs]
        + [""]
    )


def _provenance_value(value: object) -> str:
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return ", ".join(str(v) for v in items)
    return str(value)


# A committed report names no machine: the host name is left out wherever it comes from.
_PRIVATE_PROVENANCE = frozenset({"host", "hostname"})


def _provenance_section(provenance: Mapping[str, object] | None) -> list[str]:
    lines = ["## Provenance", ""]
    items = [(k, v) for k, v in (provenance or {}).items() if str(k).lower() not in _PRIVATE_PROVENANCE]
    if not items:
        return lines + ["Not recorded.", ""]
    rows = [[key, _provenance_value(value)] for key, value in items]
    return lines + _table(["item", "value"], rows) + [""]


# --------------------------------------------------------------------------- report


def _similarity_section(similarity: pd.DataFrame | None) -> list[str]:
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


def render_report(
    comparisons: pd.DataFrame,
    summaries: pd.DataFrame,
    aggregate: Aggregate | None = None,
    *,
    title: str = "Ablation report",
    provenance: Mapping[str, object] | None = None,
    figures: Mapping[str, Sequence[str]] | None = None,
    rope: float | None = None,
    alpha: float = 0.05,
    missing: Sequence[str] = (),
    similarity: pd.DataFrame | None = None,
    profiles: pd.DataFrame | None = None,
    still_rising: float = 2.0,
    smallest_effect: float | None = None,
    too_short: Sequence[Mapping[str, object]] = (),
    tuning: Mapping[str, Mapping[str, object]] | None = None,
    expected_best: Mapping[str, Sequence[float]] | None = None,
    note: str | None = None,
    sequential: pd.DataFrame | None = None,
    design: Mapping[str, object] | None = None,
) -> str:
    """Return the markdown report.

    Args:
        comparisons: output of :func:`ablate.stats.compare` (or the same read from CSV).
        summaries: output of :func:`ablate.stats.summarize`.
        aggregate: output of :func:`ablate.stats.aggregate`, or None.
        title: first heading.
        provenance: what produced the numbers (study file and hash, git commit, versions,
            device, seeds, trial numbers, wall time, ...); rendered as given, in order, except
            a ``host`` key. A ``git_commit`` ending in "+dirty" is called out at the top.
        figures: relative figure paths per dataset name; key :data:`AGGREGATE_FIGURES` for
            figures across datasets.
        rope: the ROPE setting in points (None: the per-data-set default; each row's value is
            in its ``rope`` column).
        alpha: significance level used.
        missing: planned runs without a result, listed under the warnings.
        similarity: output of :func:`ablate.stats.summarize_similarity`, or None.
        profiles: output of :func:`ablate.stats.profile_arms`, or None.
        still_rising: the late-gain threshold used, in points.
        smallest_effect: the smallest effect of interest used, in points, or None.
        too_short: output of :func:`ablate.stats.single_recipe_too_short`.
        tuning: per arm, how it was tuned (see :func:`ablate.publish.write_report_dir`).
        expected_best: per arm, :func:`ablate.stats.expected_max` of its search values.
        note: a paragraph shown first under the verdict heading.
        sequential: output of :func:`ablate.stats.sequential_frame` for sequential seeds (then
            ``comparisons`` is :func:`ablate.stats.mark_sequential`'s), with ``design`` its
            ``{"looks", "spending", "comparisons"}``: the verdicts are the design's, a
            "Sequential seeds" section follows the verdict, and the fixed-sample columns
            p Holm, p TOST Holm and MDE 80% are left out.
    """
    figures = figures or {}
    profiles = profiles if profiles is not None else pd.DataFrame(columns=["dataset", "arm"])
    lines = [f"# {title}", ""]
    if sequential is None or design is None:
        sequential, design = None, None
    lines += _verdict_section(
        comparisons, aggregate, rope, alpha, note=note, provenance=provenance, too_short=too_short,
        sequential=sequential, design=design,
    )
    lines += _sequential_section(sequential, design, alpha)
    lines += ["## Results per dataset", ""]
    for dataset in _datasets(comparisons, summaries):
        lines += _dataset_section(dataset, comparisons, summaries, profiles, figures, still_rising,
                                  sequential is not None)
    lines += _tuning_section(tuning, expected_best)
    lines += _similarity_section(similarity)
    lines += _warning_section(comparisons, aggregate, missing)
    lines += _aggregate_section(aggregate, figures, alpha)
    lines += _procedure_section(rope, alpha, still_rising, smallest_effect, design)
    lines += _provenance_section(provenance)
    return "\n".join(lines).rstrip("\n") + "\n"
