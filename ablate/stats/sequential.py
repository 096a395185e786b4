"""Sequential seeds: judge each contrast look by look, and stop it once it is decided.

At every look each undecided contrast is judged from the paired differences ``d = A - B``
(points) of the seeds run so far, against a :class:`ablate.stats.Design`: its design-adjusted
(repeated) confidence interval above 0, below 0, or inside the ROPE decides (Jennison and
Turnbull 1989). :func:`next_action` is stateless, so the repeats loop and the report replay the
same looks from the same differences (:func:`sequential_look`, :func:`sequential_frame`) and
reach the same verdicts. Operating characteristics (false-positive and false-equivalence rates,
power, expected seeds) are simulated per comparison with a fixed seed. The procedure, why it
keeps alpha, and its references: docs/statistics.md (generated from ``ablate.report.procedure``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from ablate.analysis import is_finite
from ablate.stats._common import quiet
from ablate.stats.design import Design, Walk, batches, sequential_design
from ablate.stats.power import fixed_design_seeds
from ablate.stats.results import (accuracy_by_arm, default_rope, n_test_by_dataset, resolve_contrasts, sort_results,
                                  validate_results)

if TYPE_CHECKING:
    from ablate.analysis import SequentialPlan

__all__ = [
    "DECISIONS",
    "ContrastDecision",
    "LookResult",
    "OperatingCharacteristics",
    "decide",
    "next_action",
    "simulate_decisions",
    "operating_characteristics",
    "SEQUENTIAL_COLUMNS",
    "FIXED_ONLY_COLUMNS",
    "sequential_look",
    "sequential_frame",
    "sequential_verdict",
    "mark_sequential",
    "pooled_difference_sd",
]

DECISIONS = ("A better", "B better", "equivalent", "continue", "undecided")

_OC_STUDIES = 200_000
_OC_SEED = 1
# Above this the simulated power is 1 to within its Monte-Carlo error, and the fixed design
# "with the same power" would be set by noise (one more seed per lucky study in 100,000).
_POWER_CAP = 0.999


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class ContrastDecision:
    """The verdict on one contrast (A - B) after the looks run so far.

    ``decision`` is one of :data:`DECISIONS`. ``look`` (1-based) and ``n`` are the look at which
    it was decided, or the latest look when it is "continue" / "undecided" (0 and the seeds
    done before the first look). ``boundary`` is "upper" (t >= critical: A better), "lower"
    (B better), "equivalence", or None. ``interval`` is the design-adjusted interval of the
    mean difference at that look (points); ``within_rope`` says whether it lies inside
    (-rope, rope) (true with "A better" means a real but negligible difference).
    """

    decision: str
    look: int
    n: int
    boundary: str | None
    mean: float
    sd: float
    t: float
    critical: float
    interval: tuple[float, float]
    within_rope: bool

    @property
    def decided(self) -> bool:
        return self.decision in ("A better", "B better", "equivalent")


@dataclass(frozen=True)
class LookResult:
    """What to do after ``n_seeds_done`` seeds: the verdict per contrast, and the next batch.

    ``look`` is the latest complete look (1-based; 0 before the first). ``stop`` is true when
    every contrast is decided or the last look is done. Otherwise the repeats go on to
    ``next_seeds`` seeds in all, i.e. ``batch`` more seeds for every arm and data set.
    """

    look: int
    n_seeds: int
    decisions: dict[Hashable, ContrastDecision]
    stop: bool
    next_seeds: int | None
    batch: int


@dataclass(frozen=True)
class OperatingCharacteristics:
    """A design's behaviour by simulation, per comparison unless the name says family.

    ``false_positive_rate``: share of studies with equal arms that end "A better" or
    "B better"; ``familywise_false_positive_bound``: ``m`` times that (Bonferroni: the chance of
    any false "better" in the study is at most this). ``false_equivalence_rate``: share ending
    "equivalent" when the true difference is exactly +rope. ``power``: share ending "A better"
    when the true difference is ``effect`` with paired sd ``sd``. ``expected_seeds`` is under
    that effect, ``expected_seeds_equal`` with equal arms. ``fixed_seeds``: the seeds a fixed
    paired t-test at ``alpha / m`` needs for the same power (capped at 0.999; None when it would
    need more than 100,000). ``mc_se`` is the Monte-Carlo standard error of a rate of ``alpha / m``.
    """

    sd: float
    effect: float
    false_positive_rate: float
    familywise_false_positive_bound: float
    false_equivalence_rate: float
    power: float
    expected_seeds: float
    expected_seeds_equal: float
    max_seeds: int
    fixed_seeds: int | None
    simulations: int
    seed: int
    mc_se: float


# ---------------------------------------------------------------------------------------------
# Decisions on real data


def _verdict(mean: float, half: float, rope: float) -> tuple[str | None, bool]:
    lo, hi = mean - half, mean + half
    inside = -rope < lo and hi < rope
    if lo > 0:
        return "upper", inside
    if hi < 0:
        return "lower", inside
    return ("equivalence" if inside else None), inside


_BY_BOUNDARY = {"upper": "A better", "lower": "B better", "equivalence": "equivalent"}


def decide(diffs: Sequence[float] | np.ndarray, design: Design, n_seeds_done: int | None = None) -> ContrastDecision:
    """The verdict on one contrast from its paired differences, replaying the looks.

    Args:
        diffs: paired differences A - B in points, **in seed order** (look k uses the first
            ``n_k``); at least ``n_seeds_done`` of them.
        design: from :func:`make_design`.
        n_seeds_done: seeds complete for every arm; default ``len(diffs)``. Only looks with
            ``n_k <= n_seeds_done`` are evaluated.

    Returns:
        The first look's verdict that crosses a boundary; else "continue" at the latest look
        (or before the first), or "undecided" once the last look is done.

    Raises:
        ValueError: fewer differences than ``n_seeds_done``, or a NaN among those used.
    """
    d = np.asarray(diffs, dtype=float)
    done = len(d) if n_seeds_done is None else int(n_seeds_done)
    if len(d) < done:
        raise ValueError(f"{len(d)} paired differences for {done} seeds done")
    if np.isnan(d[:done]).any():
        raise ValueError("paired differences contain NaN; pass only seeds complete for both arms")
    latest = None
    for k, look in enumerate(design.looks, start=1):
        if look.n > done:
            break
        x = d[: look.n]
        mean, sd = float(np.mean(x)), float(np.std(x, ddof=1))
        half = look.t * sd / math.sqrt(look.n) if sd > 0 else 0.0  # sd = 0: the point itself
        with np.errstate(divide="ignore", invalid="ignore"):
            t_stat = float(stats.ttest_1samp(x, 0.0).statistic) if sd > 0 else (
                math.copysign(math.inf, mean) if mean != 0 else math.nan)
        boundary, inside = _verdict(mean, half, design.rope)
        decision = _BY_BOUNDARY.get(boundary, "undecided" if k == len(design.looks) else "continue")
        latest = ContrastDecision(decision=decision, look=k, n=look.n, boundary=boundary, mean=mean, sd=sd,
                                  t=t_stat, critical=look.t, interval=(mean - half, mean + half), within_rope=inside)
        if boundary is not None:
            return latest
    if latest is None:
        nan = math.nan
        return ContrastDecision(decision="continue", look=0, n=done, boundary=None, mean=nan, sd=nan, t=nan,
                                critical=nan, interval=(nan, nan), within_rope=False)
    return latest


def next_action(design: Design, diffs_per_contrast: Mapping[Hashable, Sequence[float] | np.ndarray],
                n_seeds_done: int, ropes: Mapping[Hashable, float] | None = None) -> LookResult:
    """The verdict per contrast after ``n_seeds_done`` seeds, and whether to run another batch.

    The single entry point for the repeats loop: it is stateless (verdicts are replayed from
    the differences, so it can be recomputed from the storage by any worker at any time).

    Args:
        design: from :func:`make_design`, with ``comparisons`` = the number of keys here.
        diffs_per_contrast: per contrast key (e.g. ``(dataset, arm_a, arm_b)``), the paired
            differences A - B in points in seed order, for seeds complete in both arms. A
            contrast with fewer (a cell given up after its retries) is judged only at the looks
            its pairs reach: it can stay open, never be decided on seeds it lacks.
        n_seeds_done: seeds complete (or given up) for every arm and data set (the first
            ``n_seeds_done`` seeds of the plan).
        ropes: per contrast key, a ROPE (points) in place of ``design.rope`` (the default ROPE
            is one test image of each data set); the boundaries do not depend on it.

    Returns:
        A :class:`LookResult`: ``stop`` when every contrast is decided or the last look is
        done, else ``next_seeds`` (the next look's cumulative count) and ``batch`` (seeds to add).
    """
    def design_for(key: Hashable) -> Design:
        if ropes is None or key not in ropes:
            return design
        return dataclasses.replace(design, rope=float(ropes[key]))

    decisions = {key: decide(d, design_for(key), min(len(d), n_seeds_done))
                 for key, d in diffs_per_contrast.items()}
    past = [k for k, look in enumerate(design.looks, start=1) if look.n <= n_seeds_done]
    look = past[-1] if past else 0
    n_at = design.looks[look - 1].n if look else 0
    stop = look == len(design.looks) or (look > 0 and all(c.decided for c in decisions.values()))
    next_seeds = None if stop else design.looks[look].n
    return LookResult(look=look, n_seeds=n_at, decisions=decisions, stop=stop, next_seeds=next_seeds,
                      batch=0 if next_seeds is None else next_seeds - n_seeds_done)


# ---------------------------------------------------------------------------------------------
# Operating characteristics by simulation


def simulate_decisions(design: Design, mean: float, sd: float, studies: int = _OC_STUDIES,
                       seed: int | np.random.SeedSequence = _OC_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Simulate one contrast of ``studies`` studies with normal paired differences.

    Returns:
        ``(decision, n)``: per study the index into :data:`DECISIONS` of its final verdict
        ("continue" never occurs) and the seeds it ran.
    """
    rng = np.random.default_rng(seed)
    walk = Walk(studies, mean, sd, rng)
    decision = np.full(studies, DECISIONS.index("undecided"), dtype=np.int8)
    n_run = np.full(studies, design.max_seeds, dtype=np.int64)
    alive = np.ones(studies, dtype=bool)
    for look, m in zip(design.looks, batches(design.seeds)):
        walk.add(m)
        half = look.t * walk.se()
        with np.errstate(invalid="ignore"):
            lo, hi = walk.mean - half, walk.mean + half
        for name, hit in (("A better", lo > 0), ("B better", hi < 0),
                          ("equivalent", (lo > -design.rope) & (hi < design.rope))):
            new = alive & hit
            decision[new] = DECISIONS.index(name)
            n_run[new] = look.n
            alive &= ~new
    return decision, n_run


def operating_characteristics(design: Design, sd: float, effect: float, studies: int = _OC_STUDIES,
                              seed: int = _OC_SEED) -> OperatingCharacteristics:
    """False-positive and false-equivalence rates, power and seeds of one comparison.

    Three simulated scenarios of ``studies`` studies each, normal paired differences with sd
    ``sd`` (points): equal arms (difference 0), a difference at the ROPE's edge (+rope) and a
    difference of ``effect``. Seeded; the three share no random numbers.

    Raises:
        ValueError: ``sd <= 0`` or not finite.
    """
    if not (sd > 0 and math.isfinite(sd)):
        raise ValueError(f"sd must be a positive number of points (got {sd})")
    ss = np.random.SeedSequence(seed).spawn(3)
    null_dec, null_n = simulate_decisions(design, 0.0, sd, studies, ss[0])
    edge_dec, _ = simulate_decisions(design, design.rope, sd, studies, ss[1])
    eff_dec, eff_n = simulate_decisions(design, effect, sd, studies, ss[2])
    better = [DECISIONS.index("A better"), DECISIONS.index("B better")]
    fpr = float(np.isin(null_dec, better).mean())
    power = float((eff_dec == DECISIONS.index("A better")).mean())
    a = design.alpha_per_comparison
    return OperatingCharacteristics(
        sd=float(sd), effect=float(effect),
        false_positive_rate=fpr,
        familywise_false_positive_bound=min(1.0, fpr * design.comparisons),
        false_equivalence_rate=float((edge_dec == DECISIONS.index("equivalent")).mean()),
        power=power,
        expected_seeds=float(eff_n.mean()),
        expected_seeds_equal=float(null_n.mean()),
        max_seeds=design.max_seeds,
        # A fixed design is its own fixed design; comparing its simulated power with the exact
        # one could add a seed by Monte-Carlo noise alone.
        fixed_seeds=(design.max_seeds if not design.sequential
                     else fixed_design_seeds(effect, sd, a, min(power, _POWER_CAP)) if power > 0 else None),
        simulations=int(studies), seed=int(seed),
        mc_se=math.sqrt(a * (1 - a) / studies),
    )


# ---------------------------------------------------------------------------------------------
# On a results table

SEQUENTIAL_COLUMNS = (
    "dataset", "arm_a", "arm_b", "decision", "look", "n", "boundary", "critical", "diff", "interval_low",
    "interval_high", "rope", "seeds_run", "sd_diff", "effect", "effect_source", "power", "expected_seeds",
    "fixed_seeds_same_power",
)  # fmt: skip
# The Procedure section and README name these as not shown for a sequential study: they are
# fixed-sample figures (Holm over one look at a fixed n, power at a fixed n).
FIXED_ONLY_COLUMNS = ("p_holm", "p_tost_holm", "mde_80")

Key = tuple[str, str, str]  # (dataset, arm_a, arm_b)


def paired_differences(
    results: pd.DataFrame, contrasts: Sequence[tuple[str, str]] | None, rope: float | None
) -> tuple[dict[Key, np.ndarray], dict[Key, float]]:
    """Per (dataset, arm_a, arm_b): A - B in points over the seeds both arms ran, in seed order,
    and the row's ROPE (as :func:`ablate.stats.compare` sets it)."""
    results = sort_results(validate_results(results))
    contrasts = resolve_contrasts(results, contrasts)
    n_test = n_test_by_dataset(results)
    diffs, ropes = {}, {}
    for dataset, group in results.groupby("dataset", sort=False):
        by_arm = accuracy_by_arm(group)
        for arm_a, arm_b in contrasts:
            if arm_a not in by_arm or arm_b not in by_arm:
                continue
            a, b = by_arm[arm_a], by_arm[arm_b]
            seeds = sorted(set(a.index) & set(b.index))
            # the same arithmetic as paired_comparison, so both see the same doubles
            d = a.loc[seeds].to_numpy(dtype=float) * 100.0 - b.loc[seeds].to_numpy(dtype=float) * 100.0
            diffs[(dataset, arm_a, arm_b)] = d
            ropes[(dataset, arm_a, arm_b)] = default_rope(n_test.get(dataset)) if rope is None else float(rope)
    return diffs, ropes


def _replayed(
    results: pd.DataFrame, plan: SequentialPlan, alpha: float, contrasts: Sequence[tuple[str, str]] | None,
    rope: float | None, n_seeds_done: int | None,
) -> tuple[Design, dict[Key, np.ndarray], dict[Key, float], LookResult]:
    """The design, the paired differences and ROPEs, and the looks replayed on them
    (``n_seeds_done`` None: as many seeds as the longest contrast has pairs)."""
    diffs, ropes = paired_differences(results, contrasts, rope)
    design = sequential_design(plan, alpha)
    done = max((len(d) for d in diffs.values()), default=0) if n_seeds_done is None else int(n_seeds_done)
    with quiet():  # nearly constant differences: scipy's precision warning, the verdict stands
        return design, diffs, ropes, next_action(design, diffs, done, ropes=ropes)


def sequential_look(
    results: pd.DataFrame,
    plan: SequentialPlan,
    *,
    alpha: float = 0.05,
    contrasts: Sequence[tuple[str, str]] | None = None,
    rope: float | None = None,
    n_seeds_done: int | None = None,
) -> LookResult:
    """The verdict per contrast and data set after the seeds in ``results``, and what to run next.

    The repeats loop calls this after every look on the cells finished so far, and the report
    on the whole table: both replay the looks from the same differences (:func:`next_action`),
    so they reach the same verdicts.

    Args:
        results: results table; only seeds run for both arms of a contrast pair up.
        plan: the design's looks, spending family and comparisons (contrasts x data sets
            sharing ``alpha``, from the study file, so a cell given up does not change it).
        contrasts, rope: as in :func:`ablate.stats.compare` (rope None: one test image per data
            set, at least 0.1 points).
        n_seeds_done: seeds complete for every arm and data set; default the number of distinct
            seeds in ``results`` (a look still running is not evaluated: its contrasts lack pairs).

    Returns:
        :class:`LookResult` keyed by ``(dataset, arm_a, arm_b)``.
    """
    done = int(results["seed"].nunique()) if n_seeds_done is None else int(n_seeds_done)
    return _replayed(results, plan, alpha, contrasts, rope, done)[3]


def sequential_frame(
    results: pd.DataFrame,
    plan: SequentialPlan,
    *,
    alpha: float = 0.05,
    contrasts: Sequence[tuple[str, str]] | None = None,
    rope: float | None = None,
    smallest_effect: float | None = None,
) -> pd.DataFrame:
    """One row per (dataset, contrast) of a sequential study, :data:`SEQUENTIAL_COLUMNS`.

    ``decision``, ``look``, ``n``, ``boundary``, ``critical`` (the calibrated |t| of that look),
    ``diff`` and ``interval_low/high`` (the design-adjusted interval) are those of
    :func:`decide` at the look that decided the contrast (or the latest look). ``seeds_run`` is
    the number of paired seeds the arms ran in all (more than ``n`` when another contrast kept
    them going); ``sd_diff`` the sd of those differences. ``power`` and ``expected_seeds`` are
    the design's, by simulation (:func:`operating_characteristics`, seeded) at that sd against
    ``effect`` points, the smallest effect of interest or else 3 x the row's ROPE
    (``effect_source`` says which); ``fixed_seeds_same_power`` the seeds a fixed paired t-test at
    ``alpha / comparisons`` needs for that power (inf beyond 100,000; NaN without a positive sd
    or with zero power).
    """
    design, diffs, ropes, verdicts = _replayed(results, plan, alpha, contrasts, rope, None)
    rows = [_frame_row(key, d, verdicts.decisions[key], dataclasses.replace(design, rope=ropes[key]), smallest_effect)
            for key, d in diffs.items()]
    return pd.DataFrame.from_records(rows, columns=list(SEQUENTIAL_COLUMNS))


def _frame_row(key: Key, d: np.ndarray, c: ContrastDecision, design: Design,
               smallest_effect: float | None) -> dict[str, object]:
    """One row of :func:`sequential_frame`; ``design`` carries the row's ROPE."""
    effect, source = ((float(smallest_effect), "smallest_effect") if smallest_effect is not None
                      else (3.0 * design.rope, "3 x rope"))
    sd_d = float(np.std(d, ddof=1)) if len(d) >= 2 else math.nan
    power = expected = fixed = math.nan
    if is_finite(sd_d) and sd_d > 0 and effect > 0:
        oc = operating_characteristics(design, sd=sd_d, effect=effect)
        power, expected = oc.power, oc.expected_seeds
        fixed = float(oc.fixed_seeds) if oc.fixed_seeds is not None else (math.inf if oc.power > 0 else math.nan)
    return {
        "dataset": key[0], "arm_a": key[1], "arm_b": key[2], "decision": c.decision, "look": c.look, "n": c.n,
        "boundary": c.boundary or "", "critical": c.critical, "diff": c.mean, "interval_low": c.interval[0],
        "interval_high": c.interval[1], "rope": design.rope, "seeds_run": len(d), "sd_diff": sd_d,
        "effect": effect, "effect_source": source, "power": power, "expected_seeds": expected,
        "fixed_seeds_same_power": fixed,
    }  # fmt: skip


def pooled_difference_sd(
    results: pd.DataFrame, contrasts: Sequence[tuple[str, str]] | None = None
) -> tuple[float, int, int]:
    """The sd of the paired differences A - B (points), pooled over every contrast x data set.

    ``sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1))`` over the rows with at least 2 paired seeds,
    ``s_i`` the sd of row i's differences: the within-row variance, whatever each row's mean.
    Returns ``(sd, rows pooled, pairs)``; ``(nan, 0, 0)`` when no row has 2 pairs.
    """
    diffs, _ = paired_differences(results, contrasts, None)
    used = [d for d in diffs.values() if len(d) >= 2]
    if not used:
        return math.nan, 0, 0
    dof = sum(len(d) - 1 for d in used)
    pooled = sum((len(d) - 1) * float(np.var(d, ddof=1)) for d in used) / dof
    return math.sqrt(pooled), len(used), sum(len(d) for d in used)


def sequential_verdict(row: Mapping[str, object], still_rising: str = "") -> str:
    """A row of :func:`sequential_frame` as the ``verdict`` of its comparison, in the words of
    :func:`verdict`: "significant: <arm> better (sequential, look 2)", "practically equivalent
    (sequential, look 3)", "undecided after 30 seeds", "open after look 1" (a study still running)."""
    decision, look, n = row["decision"], int(row["look"]), int(row["n"])
    if decision in ("A better", "B better"):
        better = row["arm_a"] if decision == "A better" else row["arm_b"]
        rope = float(row["rope"])
        inside = abs(float(row["interval_low"])) < rope and abs(float(row["interval_high"])) < rope
        text = f"significant: {better} better (sequential, look {look})" + (" (within ROPE)" if inside else "")
    elif decision == "equivalent":
        text = f"practically equivalent (sequential, look {look})"
    elif decision == "undecided":
        text = f"undecided after {n} seeds"
    else:
        text = f"open after look {look}" if look else "open: no look complete"
    return text + (f"; still rising: {still_rising}" if still_rising else "")


def mark_sequential(comparisons: pd.DataFrame, sequential: pd.DataFrame) -> pd.DataFrame:
    """``comparisons`` of a sequential study: :data:`FIXED_ONLY_COLUMNS` emptied (NaN) and each
    verdict replaced by the sequential one (:func:`sequential_verdict`)."""
    out = comparisons.copy()
    for column in FIXED_ONLY_COLUMNS:
        out[column] = math.nan
    by_key = {(r["dataset"], r["arm_a"], r["arm_b"]): r for r in sequential.to_dict("records")}
    verdicts = []
    for r in out.to_dict("records"):
        seq = by_key.get((r["dataset"], r["arm_a"], r["arm_b"]))
        rising = r.get("still_rising") if isinstance(r.get("still_rising"), str) else ""
        verdicts.append(r["verdict"] if seq is None else sequential_verdict(seq, rising))
    out["verdict"] = verdicts
    return out
