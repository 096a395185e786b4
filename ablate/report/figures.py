"""The report's figures, drawn with matplotlib's object API (no pyplot state).

Each function takes data and a path, writes one PNG there (``ablate.plots.save_png``) and
returns the path. Accuracies come in as fractions and are drawn in percentage points, like
every number in the report. The figures show every seed: a bar of means with a truncated axis
hides how much seeds disagree, which is exactly what a reader of an ablation needs to see.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from ablate.errors import DataError
from ablate.plots import new_figure, save_png
from ablate.report.formatting import plural
from ablate.stats import summarize_arm

__all__ = ["arm_comparison", "learning_curves", "head_similarity", "critical_difference", "tuning_curves"]

_JITTER = 0.08  # half-width, in arm slots, of the horizontal scatter of seed points


def arm_comparison(results: pd.DataFrame, path: str | Path, title: str, *, seed: int = 0) -> Path:
    """Every arm side by side: one point per seed (jittered), the mean and its 95% t CI.

    Args:
        results: rows of one dataset with columns ``arm, seed, accuracy`` (fraction).
        path: where the PNG goes.
        title: figure title.
        seed: seed of the horizontal jitter, so the same data give the same picture.
    """
    _require(results, ("arm", "seed", "accuracy"), "arm_comparison")
    fig, ax, groups = _seed_strip(results, "accuracy", 100.0, seed)
    for x, arm, acc in groups:
        summary = summarize_arm("", arm, acc)
        _mean_with_ci(ax, x + 0.25, summary.mean, summary.ci_low, summary.ci_high, f"C{x}")
    ax.set_xticks(range(len(groups)), [_arm_label(results, arm) for _, arm, _ in groups])
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.text(
        0.99, 0.01, "points: seeds; bar: mean and 95% t CI", transform=ax.transAxes,
        ha="right", va="bottom", fontsize=7, color="0.4",
    )  # fmt: skip
    return save_png(fig, path)


def learning_curves(curves: pd.DataFrame, path: str | Path, title: str = "Validation accuracy") -> Path:
    """Mean validation accuracy per arm over epochs (bold), each seed's curve faint behind it.

    Args:
        curves: columns ``arm, seed, epoch, val_accuracy`` (fraction).
        path: where the PNG goes.
    """
    _require(curves, ("arm", "seed", "epoch", "val_accuracy"), "learning_curves")
    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    for i, arm in enumerate(pd.unique(curves["arm"])):
        rows = curves[curves["arm"] == arm]
        for _, run in rows.groupby("seed", sort=True):
            run = run.sort_values("epoch")
            ax.plot(run["epoch"], run["val_accuracy"] * 100.0, color=f"C{i}", alpha=0.2, lw=0.8)
        mean = rows.groupby("epoch", sort=True)["val_accuracy"].mean() * 100.0
        n_seeds = rows["seed"].nunique()
        ax.plot(mean.index, mean.to_numpy(), color=f"C{i}", lw=2.0, label=f"{arm} (mean of {n_seeds})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, path)


def head_similarity(
    similarity: pd.DataFrame | None, path: str | Path, title: str = "Head similarity", *, seed: int = 0,
    disagreement: pd.DataFrame | None = None,
) -> Path:
    """Head diversity: one point per seed per arm of the similarity between heads, with each arm's
    mean; and, given ``disagreement``, a panel per contrast of the share of test examples on which
    exactly one of the two arms is right (one point per seed), what drives test-set sampling's
    part of the new-data interval.

    Args:
        similarity: columns ``arm, seed, head_similarity``, or None (the disagreement panel alone).
        path: where the PNG goes.
        disagreement: columns ``arm_a, arm_b, seed, disagree`` (a fraction;
            :func:`ablate.stats.disagreement`), or None.
    """
    panels = [p for p in (similarity, disagreement) if p is not None and not p.empty]
    if not panels:
        raise DataError("head_similarity: neither head similarity nor disagreement to draw")
    fig = new_figure(max(4.0, 5.0 * len(panels)), 4.0)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    if similarity is not None and not similarity.empty:
        _require(similarity, ("arm", "seed", "head_similarity"), "head_similarity")
        ax = axes[0]
        groups = _strip(ax, similarity, "arm", "head_similarity", 1.0, seed)
        for x, _, values in groups:
            if values.size:
                ax.hlines(np.mean(values), x - 0.25, x + 0.25, color=f"C{x}", lw=2.0)
        ax.set_xticks(range(len(groups)), [arm for _, arm, _ in groups])
        ax.set_ylabel("head similarity")
        ax.set_title(title if len(panels) == 1 else "head similarity")
    if disagreement is not None and not disagreement.empty:
        _require(disagreement, ("arm_a", "arm_b", "seed", "disagree"), "head_similarity")
        ax = axes[-1]
        pairs = disagreement.assign(contrast=disagreement["arm_a"] + " vs\n" + disagreement["arm_b"])
        groups = _strip(ax, pairs, "contrast", "disagree", 100.0, seed)
        for x, _, values in groups:
            if values.size:
                ax.hlines(100.0 * np.mean(values), x - 0.25, x + 0.25, color=f"C{x}", lw=2.0)
        ax.set_xticks(range(len(groups)), [name for _, name, _ in groups], fontsize=7)
        ax.set_ylabel("test examples, one arm right (%)")
        ax.set_title("per-example disagreement" if len(panels) > 1 else title)
    if len(panels) > 1:
        fig.suptitle(title)
    return save_png(fig, path)


def critical_difference(avg_ranks: Mapping[str, float], cd: float, path: str | Path) -> Path:
    """A critical-difference diagram (Demsar 2006): average ranks on an axis, 1 = best.

    Arms joined by a thick bar are not significantly different (Nemenyi): their average
    ranks differ by less than ``cd``.
    """
    ranked = sorted(avg_ranks.items(), key=lambda item: item[1])
    k = len(ranked)
    fig = new_figure(7.0, 1.6 + 0.3 * k)
    ax = fig.add_subplot()
    lo, hi = 1, max(k, 2)
    ax.set_xlim(lo - 0.3, hi + 0.3)
    ax.set_ylim(-(k + 1), 2.2)
    ax.hlines(0, lo, hi, color="k", lw=1)
    for r in range(lo, hi + 1):
        ax.vlines(r, 0, 0.15, color="k", lw=1)
        ax.text(r, 0.3, str(r), ha="center", va="bottom", fontsize=8)
    if math.isfinite(cd):
        ax.hlines(1.4, lo, lo + cd, color="k", lw=1.5)
        ax.text(lo + cd / 2, 1.55, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8)
    for i, (arm, rank) in enumerate(ranked):
        y = -(i + 1) * 0.8
        left = i < (k + 1) // 2
        end = lo - 0.2 if left else hi + 0.2
        ax.plot([rank, rank, end], [0, y, y], color="0.3", lw=0.8)
        ax.text(end, y, f"{arm} ({rank:.2f})", ha="right" if left else "left", va="center", fontsize=8)
    for j, (first, last) in enumerate(_cliques([r for _, r in ranked], cd)):
        y = -0.3 - 0.25 * j
        ax.hlines(y, ranked[first][1] - 0.03, ranked[last][1] + 0.03, color="k", lw=3)
    ax.axis("off")
    return save_png(fig, path)


def tuning_curves(curves: Mapping[str, Mapping[str, object]], path: str | Path, title: str = "Tuning curves") -> Path:
    """Every arm's expected best validation accuracy after n search trials, with its band.

    Args:
        curves: per arm a ``curve`` of tuning.json (:func:`ablate.stats.tuning_curve`:
            ``expected``, ``low``, ``high`` as fractions for n = 1..``trials``, ``pruned``,
            ``confidence``); arms without one are left out.
        path: where the PNG goes.
        title: figure title.
    """
    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    drawn = [(arm, c) for arm, c in curves.items() if c]
    confidence = 0.0
    for i, (arm, c) in enumerate(drawn):
        expected, low, high = (100.0 * np.asarray(c[k], dtype=float) for k in ("expected", "low", "high"))
        ns = np.arange(1, expected.size + 1)
        label = f"{arm} ({plural(int(c['trials']), 'trial')}, {c['pruned']} pruned)"
        if expected.size == 1:  # no area to fill: the band as an error bar, side by side with the others
            x = ns + 0.04 * (i - (len(drawn) - 1) / 2)
            ax.errorbar(x, expected, yerr=[expected - low, high - expected], fmt="o", color=f"C{i}",
                        capsize=4, label=label)  # fmt: skip
        else:
            ax.plot(ns, expected, marker="o", ms=3, color=f"C{i}", label=label)
            # the band's edges in the arm's colour: overlapping fills blend into one colour
            ax.fill_between(ns, low, high, color=f"C{i}", alpha=0.10, lw=0)
            ax.plot(ns, low, ns, high, color=f"C{i}", lw=0.8, ls="--")
        confidence = float(c["confidence"])
    ax.set(xlabel="search trials run (n)", ylabel="expected best validation accuracy (%)", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.text(
        0.99, 0.01, f"line: expected best of n (Dodge et al.); band: simultaneous {100 * confidence:g}% (opda)",
        transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.4",
    )  # fmt: skip
    return save_png(fig, path)


def _cliques(ranks: Sequence[float], cd: float) -> list[tuple[int, int]]:
    """Maximal runs (first, last) of sorted ranks whose spread is below cd."""
    runs: list[tuple[int, int]] = []
    for i in range(len(ranks)):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1] - ranks[i] < cd:
            j += 1
        if j > i and not (runs and runs[-1][1] >= j):
            runs.append((i, j))
    return runs


def _seed_strip(frame: pd.DataFrame, column: str, scale: float, seed: int):
    """A figure with one jittered point per seed for every arm, side by side.

    Returns (figure, axes, [(x, arm, values)]) with the values unscaled, for the caller to add
    its summary marks.
    """
    arms = list(pd.unique(frame["arm"]))
    fig = new_figure(max(4.0, 1.3 * len(arms) + 1.5), 4.0)
    ax = fig.add_subplot()
    return fig, ax, _strip(ax, frame, "arm", column, scale, seed)


def _strip(ax, frame: pd.DataFrame, by: str, column: str, scale: float, seed: int) -> list:
    """One jittered point per row of ``frame`` for every value of ``by``, side by side on ``ax``;
    returns [(x, name, values)] with the values unscaled."""
    names = list(pd.unique(frame[by]))
    rng = np.random.default_rng(seed)
    groups = []
    for x, name in enumerate(names):
        values = frame.loc[frame[by] == name, column].to_numpy(dtype=float)
        jitter = rng.uniform(-_JITTER, _JITTER, size=values.size)
        ax.scatter(x + jitter, values * scale, s=18, alpha=0.6, color=f"C{x}", zorder=2)
        groups.append((x, name, values))
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.grid(axis="y", alpha=0.3)
    return groups


def _mean_with_ci(ax, x: float, mean: float, low: float, high: float, color: str) -> None:
    if not math.isfinite(mean):
        return
    if math.isfinite(low) and math.isfinite(high):
        ax.errorbar(x, mean, yerr=[[mean - low], [high - mean]], fmt="o", color=color, ms=6, capsize=4, lw=1.5)
    else:  # n = 1: no interval to draw
        ax.plot(x, mean, "o", color=color, ms=6)


def _arm_label(results: pd.DataFrame, arm: str) -> str:
    return f"{arm}\n(n = {int((results['arm'] == arm).sum())})"


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{what}: data lack column(s) {', '.join(missing)}")
