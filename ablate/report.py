"""The markdown report of an ablation study, as a string (no I/O, no torch, no Optuna).

The report opens with one plain-language verdict per dataset and contrast, then gives the
tables behind it, the warnings, the evidence across datasets, the figures, the procedure with
its references, and the provenance. Every number is printed by the ``format_*`` helpers
below, so the text shows exactly the values of ``comparisons.csv``, rounded the same way
everywhere.
"""

from __future__ import annotations

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


def verdict_sentence(row: Mapping[str, object]) -> str:
    """One row of ``comparisons`` as a sentence, e.g.

    "fmce vs nfmce on digits: +0.40 points [−0.10, +0.90], Holm p = 0.210: not significant;
    23 seeds would be needed to detect a difference this size with 80% power (n = 5)."
    """
    head = f"**{row['arm_a']} vs {row['arm_b']}** on {row['dataset']}"
    n = int(row["n"])
    if n < 2:
        return f"{head}: {row['verdict']} (n = {n} paired seeds)."
    numbers = (
        f"{format_points(row['diff'], signed=True)} points "
        f"[{format_points(row['ci_low'], signed=True)}, {format_points(row['ci_high'], signed=True)}], "
        f"Holm p = {format_p(row['p_holm'])}"
    )
    needed = row.get("seeds_needed", math.nan)
    if _finite(needed) and float(needed) > n:
        plan = (
            f"{format_count(needed)} seeds would be needed to detect a difference this size "
            f"with 80% power (n = {n})"
        )
    elif _finite(needed):
        plan = f"n = {n} seeds give at least 80% power for a difference this size"
    elif _finite(row["diff"]) and _finite(row.get("sd_diff")) and float(row.get("sd_diff")) > 0:
        plan = f"no realistic number of seeds would detect a difference this small (n = {n})"
    else:
        plan = f"n = {n}"
    return f"{head}: {numbers}: {row['verdict']}; {plan}."


# --------------------------------------------------------------------------- sections


def _datasets(comparisons: pd.DataFrame, summaries: pd.DataFrame) -> list[str]:
    seen: dict[str, None] = {}
    for frame in (summaries, comparisons):
        if "dataset" in frame.columns:
            seen.update(dict.fromkeys(str(d) for d in frame["dataset"]))
    return list(seen)


def _verdict_section(comparisons: pd.DataFrame, rope: float, alpha: float) -> list[str]:
    lines = ["## Verdict", ""]
    if comparisons.empty:
        return lines + ["No contrast could be computed: no dataset has both arms of any contrast.", ""]
    lines += [f"- {verdict_sentence(row)}" for row in comparisons.to_dict("records")]
    lines += [
        "",
        f"Differences are A − B in accuracy points with 95% paired-t intervals; "
        f"\"significant\" means Holm-adjusted p < {alpha:g} over all {len(comparisons)} rows; "
        f"\"practically equivalent\" means the equivalence test (TOST) puts the difference "
        f"within ±{format_points(rope)} points at p < {alpha:g}.",
        "",
    ]
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


def _contrast_tables(comparisons: pd.DataFrame, rope: float) -> list[str]:
    tests = [
        [
            f"{r['arm_a']} vs {r['arm_b']}", int(r["n"]), format_points(r["mean_a"]), format_points(r["mean_b"]),
            format_points(r["diff"], signed=True),
            f"[{format_points(r['ci_low'], signed=True)}, {format_points(r['ci_high'], signed=True)}]",
            format_p(r["p_paired"]), format_p(r["p_welch"]), format_p(r["p_permutation"]),
            format_p(r["p_holm"]), r["verdict"],
        ]
        for r in comparisons.to_dict("records")
    ]  # fmt: skip
    r_ = format_points(rope)
    effects = [
        [
            f"{r['arm_a']} vs {r['arm_b']}", format_prob(r["hedges_g"]), format_prob(r["p_superiority"]),
            format_prob(r["rope_below"]), format_prob(r["rope_inside"]), format_prob(r["rope_above"]),
            format_p(r["p_tost"]), format_points(r.get("mde_80", math.nan)),
            format_count(r.get("seeds_needed", math.nan)), format_prob(r.get("power", math.nan)),
        ]
        for r in comparisons.to_dict("records")
    ]  # fmt: skip
    return (
        _table(
            ["contrast (A vs B)", "n", "mean A", "mean B", "A − B", "95% CI", "p paired", "p Welch",
             "p perm.", "p Holm", "verdict"],
            tests,
        )  # fmt: skip
        + [""]
        + _table(
            ["contrast (A vs B)", "Hedges' g", "P(A > B)", f"P(< −{r_})", f"P(±{r_})", f"P(> +{r_})",
             "p TOST", "MDE 80%", "seeds for 80%", "power"],
            effects,
        )  # fmt: skip
    )


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
    figures: Mapping[str, Sequence[str]],
    rope: float,
) -> list[str]:
    lines = [f"### {dataset}", ""]
    arms = summaries[summaries["dataset"].astype(str) == dataset] if not summaries.empty else summaries
    if not arms.empty:
        lines += ["Accuracy (%) per arm over seeds:", ""] + _arm_table(arms) + [""]
    rows = comparisons[comparisons["dataset"].astype(str) == dataset] if not comparisons.empty else comparisons
    if not rows.empty:
        lines += ["Contrasts, paired by seed:", ""] + _contrast_tables(rows, rope) + [""]
    lines += _figure_links(figures.get(dataset, ()))
    return lines


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
    return ["## Warnings", ""] + (items or ["None."]) + [""]


def _aggregate_section(
    aggregate: Aggregate | None, figures: Mapping[str, Sequence[str]], alpha: float
) -> list[str]:
    lines = ["## Across datasets", ""]
    if aggregate is None:
        return lines + ["Not computed.", ""]
    if aggregate.friedman is not None:
        f = aggregate.friedman
        lines += [
            f"Friedman test over {len(f.arms)} arms on {f.n_datasets} datasets (per-dataset mean "
            f"accuracy): χ² = {format_points(f.statistic)}, p = {format_p(f.pvalue)}. Nemenyi critical "
            f"difference at α = {alpha:g}: CD = {f.cd:.2f}; arms whose average ranks differ by less "
            "than CD are not significantly different.",
            "",
        ]
        lines += _table(
            ["arm", "average rank (1 = best)"],
            [[arm, f"{rank:.2f}"] for arm, rank in sorted(f.avg_ranks.items(), key=lambda item: item[1])],
        ) + [""]
    if aggregate.differences:
        lines += [
            f"Mean over {aggregate.n_datasets} datasets of the per-dataset mean difference A − B "
            "(points), with a 95% bootstrap interval that resamples seeds within each dataset:",
            "",
        ]
        lines += _table(
            ["contrast (A vs B)", "datasets", "mean A − B", "95% CI"],
            [
                [
                    f"{d.arm_a} vs {d.arm_b}", len(d.datasets), format_points(d.mean, signed=True),
                    f"[{format_points(d.ci_low, signed=True)}, {format_points(d.ci_high, signed=True)}]",
                ]
                for d in aggregate.differences
            ],
        ) + [""]
    if aggregate.friedman is None and not aggregate.differences:
        lines += [note for note in aggregate.notes] or ["Nothing to aggregate."]
        lines += [""]
    lines += _figure_links(figures.get(AGGREGATE_FIGURES, ()))
    return lines


def _procedure_section(rope: float, alpha: float) -> list[str]:
    r_ = format_points(rope)
    steps = [
        "Accuracies are in percentage points. Arms are paired by seed; only seeds run for both "
        "arms of a contrast count, and n is the number of such pairs.",
        "Arm summaries: mean, sd (n − 1), median, range and the 95% Student t interval of the mean.",
        "A − B is the mean paired difference with its 95% paired t interval (Student 1908). "
        "p paired is the two-sided paired t-test; p Welch the unpaired Welch test on the same "
        "seeds (Welch 1947); p perm. the sign-flip permutation test of the paired differences, "
        "exact over all 2^n sign flips for n ≤ 16, else 9,999 Monte-Carlo flips with a fixed seed.",
        f"p Holm adjusts p paired by Holm's step-down procedure (Holm 1979) over every row of "
        f"the comparisons table; a contrast is significant when p Holm < {alpha:g}.",
        "Hedges' g is the standardized mean difference with the pooled sd and Hedges' "
        "small-sample correction; P(A > B) is the probability that a seed of A beats a seed of "
        "B (Mann-Whitney U / (n_A n_B), ties count one half).",
        f"ROPE: differences within ±{r_} points are treated as practically zero. P(< −{r_}), "
        f"P(±{r_}) and P(> +{r_}) are posterior probabilities of the mean difference under the "
        "Bayesian paired t-test (Student t posterior with n − 1 df, location the mean difference, "
        "scale sd/√n; Benavoli et al. 2017). p TOST is the two one-sided tests for equivalence "
        f"within ±{r_} (Schuirmann 1987); below {alpha:g} the arms are practically equivalent.",
        f"MDE 80% is the smallest difference a paired t-test at α = {alpha:g} detects with 80% "
        "power at this n; seeds for 80% is the number of seeds at which the observed difference "
        "would be detected with 80% power; power is that of this n against the observed difference.",
        "Verdict: significant (Holm) first; else practically equivalent (TOST); else not significant.",
        "Across datasets (Demšar 2006): with at least 5 datasets, the Friedman test on per-dataset "
        "mean accuracies, average ranks and the Nemenyi critical difference; with fewer, the mean "
        "over datasets of the per-dataset mean difference with a bootstrap interval.",
        "Warnings flag n < 5, sample sizes at which a signed-rank test cannot reach significance "
        f"(smallest two-sided p = 2/2^n > {alpha:g}) and power below 80% for the observed difference.",
    ]
    refs = [
        "Student (1908). The probable error of a mean. *Biometrika* 6(1), 1–25.",
        "Welch, B. L. (1947). The generalization of \"Student's\" problem when several different "
        "population variances are involved. *Biometrika* 34(1–2), 28–35.",
        "Holm, S. (1979). A simple sequentially rejective multiple test procedure. "
        "*Scandinavian Journal of Statistics* 6(2), 65–70.",
        "Hedges, L. V. (1981). Distribution theory for Glass's estimator of effect size and "
        "related estimators. *Journal of Educational Statistics* 6(2), 107–128.",
        "Schuirmann, D. J. (1987). A comparison of the two one-sided tests procedure and the power "
        "approach for assessing the equivalence of average bioavailability. *Journal of "
        "Pharmacokinetics and Biopharmaceutics* 15(6), 657–680.",
        "Demšar, J. (2006). Statistical comparisons of classifiers over multiple data sets. "
        "*JMLR* 7, 1–30.",
        "Benavoli, A., Corani, G., Demšar, J., Zaffalon, M. (2017). Time for a change: a tutorial "
        "for comparing multiple classifiers through Bayesian analysis. *JMLR* 18(77), 1–36.",
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


def _provenance_section(provenance: Mapping[str, object] | None) -> list[str]:
    lines = ["## Provenance", ""]
    if not provenance:
        return lines + ["Not recorded.", ""]
    rows = [[key, _provenance_value(value)] for key, value in provenance.items()]
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
    rope: float = 0.1,
    alpha: float = 0.05,
    missing: Sequence[str] = (),
    similarity: pd.DataFrame | None = None,
) -> str:
    """Return the markdown report.

    Args:
        comparisons: output of :func:`ablate.stats.compare` (or the same read from CSV).
        summaries: output of :func:`ablate.stats.summarize`.
        aggregate: output of :func:`ablate.stats.aggregate`, or None.
        title: first heading.
        provenance: what produced the numbers (study file and hash, git commit, versions,
            device, seeds, trial numbers, wall time, ...); rendered as given, in order.
        figures: relative figure paths per dataset name; key :data:`AGGREGATE_FIGURES` for
            figures across datasets.
        rope: half-width of the region of practical equivalence used, in points.
        alpha: significance level used.
        missing: planned runs without a result, listed under the warnings.
        similarity: output of :func:`ablate.stats.summarize_similarity`, or None.
    """
    figures = figures or {}
    lines = [f"# {title}", ""]
    lines += _verdict_section(comparisons, rope, alpha)
    lines += ["## Results per dataset", ""]
    for dataset in _datasets(comparisons, summaries):
        lines += _dataset_section(dataset, comparisons, summaries, figures, rope)
    lines += _similarity_section(similarity)
    lines += _warning_section(comparisons, aggregate, missing)
    lines += _aggregate_section(aggregate, figures, alpha)
    lines += _procedure_section(rope, alpha)
    lines += _provenance_section(provenance)
    return "\n".join(lines).rstrip("\n") + "\n"
