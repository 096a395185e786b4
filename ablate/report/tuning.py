"""The report's tuning sections: how each arm was tuned and how much the result depends on it.

"Tuning" shows per arm the method, the settings, the parameter importances, the tuning curve
with its confidence band (:func:`ablate.stats.tuning_curve`, stored in tuning.json), which trial
won the search and which the confirmation on fresh seeds, and, with several independent
searches, the spread of what they chose. "Verdict per replicate" shows whether each contrast's
verdict holds with the settings of every search (:func:`ablate.stats.replicate_verdicts`).
Both read the tuning record as ``ablate.report.tuning_file`` describes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from ablate.report.formatting import figure_links, format_points, format_signed, plural, table
from ablate.stats import summarize_arm, verdict_decision

__all__ = ["TUNING_FIGURES", "tuning_section", "replicate_section"]

# key of ``figures`` for the tuning curves (one figure per data set searched)
TUNING_FIGURES = "tuning curves"

_TUNING_METHODS = {
    "per-arm": "each arm had its own search with the same budget",
    "best": "every arm used the settings of the one best search trial",
    "fixed": "no search: every arm used the study file's settings",
}
_BANDS = {
    "ld_equal_tailed": "the Learned-Miller-DeStefano band with equal-tailed beta intervals",
    "ks": "the Kolmogorov-Smirnov band",
}
_SHOWN_N = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# A band wider than this (points) at the last trial says little about the arm's search.
_WIDE_BAND = 50.0

Record = Mapping[str, object]


def tuning_section(tuning: Mapping[str, Record] | None, figures: Sequence[str] = ()) -> list[str]:
    """How each arm was tuned; ``tuning`` as tuning.json holds it, curves included.

    Args:
        tuning: per arm its record (``ablate.report.tuning_file``), each with its ``curve``.
        figures: relative paths of the tuning-curve figures.
    """
    if not tuning:
        return []
    methods = sorted({str(t["method"]) for t in tuning.values()})
    lines = [
        "## Tuning",
        "",
        "How each arm's hyperparameters were chosen: "
        + "; ".join(f"{m} ({_TUNING_METHODS.get(m, m)})" for m in methods) + ".",
        "",
    ]
    curves = [t["curve"] for t in tuning.values() if t.get("curve")]
    if curves:
        lines += [_curve_method(curves[0]), ""]
    for arm, t in tuning.items():
        lines += _arm_tuning(arm, t)
    lines += figure_links(figures)
    lines += _replicate_spread(tuning)
    return lines


def _curve_method(curve: Record) -> str:
    confidence = f"{100 * float(curve['confidence']):g}%"
    band = _BANDS.get(str(curve["band"]), str(curve["band"]))
    return (
        "Tuning curve: the expected best validation accuracy after n search trials (Dodge et al. 2019), over "
        "every trial that ran, a pruned trial at its last reported validation accuracy, so n counts trials run. "
        f"Band: a simultaneous {confidence} confidence band for the whole curve from opda (Lourie et al. 2024; "
        f"{band} for the distribution of one trial's validation accuracy on [0, 100]%), distribution-free. It "
        "assumes the trials are independent draws from one distribution, as in random search (exact for "
        "continuous values, conservative with ties); with TPE sampling and pruning each trial depends on the "
        "earlier ones, so there the curve and band are approximations. Few trials give a wide band: the "
        "honest answer to \"was the budget enough?\"."
    )


def _arm_tuning(arm: str, t: Record) -> list[str]:
    lines = [f"### {arm}", "", f"Method: {t['method']}; search trials: {t['n_trials']}.", ""]
    settings = t.get("settings") or {}
    if settings:
        lines += table(["setting", "value"], [[k, _setting(v)] for k, v in settings.items()]) + [""]
    importances = t.get("importances") or {}
    if importances:
        ranked = sorted(importances.items(), key=lambda item: -item[1])
        lines += ["Parameter importances (Optuna):", ""]
        lines += table(["parameter", "importance"], [[k, f"{v:.2f}"] for k, v in ranked]) + [""]
    elif t["method"] != "fixed":
        completed = sum(not p for p in t.get("search_pruned") or [])
        lines += [f"Parameter importances: not computed (Optuna ranks the parameters from enough completed "
                  f"search trials, with a parameter that varied; completed: {completed}).", ""]
    curve = t.get("curve")
    if curve:
        lines += _curve_lines(curve, int(t["n_trials"]))
    elif t["method"] != "fixed":
        lines += ["No search trials recorded.", ""]
    lines += _confirm_lines(t.get("confirm"))
    lines += _shortfall_lines(arm, t)
    return lines


def _curve_lines(curve: Record, n_trials: int) -> list[str]:
    trials, pruned = int(curve["trials"]), int(curve["pruned"])
    expected, low, high = curve["expected"], curve["low"], curve["high"]
    text = f"Tuning curve over {plural(trials, 'search trial')} run ({_pruned_text(pruned)})."
    if n_trials > trials:
        text += (f" {plural(n_trials - trials, 'more finished trial')} without a recorded value (an older "
                 "tuning.json kept completed trials only, so pruned ones are missing and the curve is biased up).")
    shown = sorted({n for n in _SHOWN_N if n <= trials} | {trials})
    confidence = f"{100 * float(curve['confidence']):g}% band (%)"
    lines = [text, ""] + table(
        ["search trials n", "expected best val. accuracy (%)", confidence],
        [[n, format_points(100 * expected[n - 1]),
          f"[{format_points(100 * low[n - 1])}, {format_points(100 * high[n - 1])}]"] for n in shown],
    ) + [""]  # fmt: skip
    width = 100 * (high[-1] - low[-1])
    if width > _WIDE_BAND:
        lines += [f"Too few trials for the band to say much: at n = {trials} it spans {format_points(width)} "
                  "points.", ""]
    return lines


def _pruned_text(pruned: int) -> str:
    if pruned == 0:
        return "none pruned"
    return f"{pruned} pruned, " + ("at its" if pruned == 1 else "each at its") + " last reported validation accuracy"


def _confirm_lines(confirm: Record | None) -> list[str]:
    if not confirm:
        return []
    seeds, candidates = int(confirm["seeds"]), confirm["candidates"]
    by_trial = {int(c["trial"]): c for c in candidates}
    search, chosen = int(confirm["search_winner"]), int(confirm["confirm_winner"])
    lines = [
        f"Confirmation: the {plural(int(confirm['top']), 'best search trial')} each ran on "
        f"{plural(seeds, 'more seed')}; the settings with the best mean validation accuracy were kept.",
        "",
    ]
    role = {search: "search winner", chosen: "confirmation winner"} if search != chosen else {search: "both"}
    lines += table(
        ["trial", "search val. accuracy (%)", f"mean over {plural(seeds, 'seed')} (%)", "won"],
        [[int(c["trial"]), format_points(100 * c["search_value"]),
          "none completed" if c["mean"] is None else format_points(100 * c["mean"]),
          role.get(int(c["trial"]), "")] for c in candidates],
    ) + [""]  # fmt: skip
    paired = confirm.get("paired_seeds")
    if paired is not None and any(len(c["values"]) != len(paired) for c in candidates if c["values"]):
        lines += [f"Not every confirmation run completed: the candidates were compared on the "
                  f"{plural(len(paired), 'seed')} every one of them completed.", ""]
    if search == chosen:
        return lines + [f"The search's winner, trial {search}, also won the confirmation.", ""]
    gap = 100 * (by_trial[chosen]["mean"] - by_trial[search]["mean"])
    return lines + [
        f"The confirmation chose trial {chosen} over the search's winner, trial {search}: their mean validation "
        f"accuracies over the confirmation seeds differ by {format_signed(gap)} points.",
        "",
    ]


def _shortfall_lines(arm: str, t: Record) -> list[str]:
    """A warning when an arm's confirmation ran fewer runs than its budget: fewer than ``top``
    search trials completed (pruned or failed), so the arms did not spend the same."""
    confirm = t.get("confirm")
    if not confirm or not confirm.get("shortfall"):
        return []
    budget, confirmed = int(confirm["budget"]), int(confirm["runs"]) // int(confirm["seeds"])
    return [f"**Warning:** {arm} spent {budget - int(confirm['shortfall'])} of its {budget} runs: only "
            f"{plural(confirmed, 'search trial')} completed, so only {plural(confirmed, 'candidate')} "
            f"{'was' if confirmed == 1 else 'were'} confirmed.", ""]


def _replicate_spread(tuning: Mapping[str, Record]) -> list[str]:
    """Per arm, the validation accuracy of the settings each independent search chose."""
    rows = []
    for arm, t in tuning.items():
        replicates = t.get("replicates") or []
        if len(replicates) < 2:
            continue
        values = [float(r["value"]) for r in replicates]
        s = summarize_arm("", arm, values)
        rows.append([arm, len(values), ", ".join(format_points(100 * v) for v in values),
                     format_points(s.mean), format_points(s.sd), format_points(s.max - s.min)])
    if not rows:
        return []
    return [
        "### Independent searches",
        "",
        "Each arm's search ran again with other sampler seeds, each with the full budget; the validation "
        "accuracy of the settings each search chose, in replicate order (0 first; the tables above use "
        "replicate 0), its mean, sd and range:",
        "",
    ] + table(["arm", "searches", "chosen settings' val. accuracy (%)", "mean", "sd", "max − min"], rows) + [""]


def replicate_section(verdicts: pd.DataFrame | None, sequential: bool = False) -> list[str]:
    """"Verdict per replicate": :func:`ablate.stats.replicate_verdicts` as a table; nothing for
    fewer than two replicates. ``sequential``: the main verdicts are a sequential design's."""
    if verdicts is None or verdicts.empty:
        return []
    ids = sorted({int(r) for r in verdicts["replicate"]})
    lines = [
        "## Verdict per replicate",
        "",
        f"{len(ids)} independent searches per arm each chose settings, and the seeds ran with each. The "
        "tables above use replicate 0; here each replicate's runs are compared on their own, as above (the "
        "new-data test where that replicate's runs have predictions, else the paired comparison; Holm over "
        "that replicate's contrasts) and the cell gives its verdict and A − B in "
        "points. A verdict holds when every replicate reaches the same decision (Bouthillier et al. 2021 "
        "count the hyperparameter search among the sources of variance).",
    ]
    if sequential:
        lines.append("These are fixed-sample verdicts; replicate 0's verdict above is the sequential design's.")
    lines.append("")
    rows = []
    for (dataset, a, b), group in verdicts.groupby(["dataset", "arm_a", "arm_b"], sort=False):
        cells = {int(r.replicate): f"{verdict_decision(r.verdict)} ({format_signed(r.diff)})"
                 for r in group.itertuples(index=False)}
        holds = "yes" if bool(group["holds"].iloc[0]) else "no"
        rows.append([dataset, f"{a} vs {b}", *[cells.get(r, "not run") for r in ids], holds])
    return lines + table(["dataset", "contrast (A vs B)", *[f"replicate {r}" for r in ids], "holds"], rows) + [""]


def _setting(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
