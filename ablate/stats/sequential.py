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
from ablate.stats.design import Design, Look, Walk, batches, sequential_design
from ablate.stats.exact import zero_spread
from ablate.stats.power import seeds_for_power
from ablate.stats.results import (accuracy_by_arm, n_test_by_dataset, resolve_contrasts, row_rope, sort_results,
                                  validate_results)

if TYPE_CHECKING:
    from ablate.analysis import AnalysisSettings, SequentialPlan

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
    done before the first look). ``pairs``: the paired seeds that look was judged on, fewer than
    ``n`` when a cell among its seeds was given up (then "undecided", for good). ``boundary`` is
    "upper" (t >= critical: A better), "lower" (B better), "equivalence", or None. ``interval``
    is the design-adjusted interval of the mean difference at that look (points; NaN where the
    differences have no spread, which decides nothing); ``within_rope`` says whether it lies
    inside (-rope, rope) (true with "A better" means a real but negligible difference).
    """

    decision: str
    look: int
    n: int
    pairs: int
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

    @property
    def settled(self) -> bool:
        """Decided, or undecided for good (the last look done, or a cell of a look given up)."""
        return self.decision != "continue"


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
    paired t-test at ``alpha / m`` needs for the same power (:func:`ablate.stats.seeds_for_power`,
    capped at 0.999; None when no number of seeds gets there). ``mc_se`` is the Monte-Carlo standard error of a rate of ``alpha / m``.
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


def _positions(diffs: Sequence[float] | np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The differences and each one's seed position in the plan (0-based): a Series' index, else 0, 1, ..."""
    if isinstance(diffs, pd.Series):
        return diffs.to_numpy(dtype=float), diffs.index.to_numpy(dtype=np.int64)
    d = np.asarray(diffs, dtype=float)
    return d, np.arange(d.size)


def decide(diffs: Sequence[float] | np.ndarray | pd.Series, design: Design,
           n_seeds_done: int | None = None) -> ContrastDecision:
    """The verdict on one contrast from its paired differences, replaying the looks.

    Args:
        diffs: paired differences A - B in points: a Series indexed by each pair's seed position
            in the plan (0-based; the first ``n_k`` seeds make look k), or an array in seed order
            (positions 0, 1, ...). A seed missing below ``n_seeds_done`` is a cell given up.
        design: from :func:`make_design`.
        n_seeds_done: seeds complete (or given up) for every arm; default one past the last
            position. Only looks with ``n_k <= n_seeds_done`` are evaluated.

    Returns:
        The first look's verdict that crosses a boundary; else "continue" at the latest look
        (or before the first), or "undecided" once the last look is done. Look k is judged on
        the pairs of the first ``n_k`` seeds alone, never filled from a later batch: where a cell
        among them was given up, that look is "undecided", and so is the contrast for good (every
        later look lacks the same pair). A look whose differences are all the same (zero spread)
        decides nothing.

    Raises:
        ValueError: a NaN among the differences used.
    """
    d, pos = _positions(diffs)
    done = (int(pos.max()) + 1 if pos.size else 0) if n_seeds_done is None else int(n_seeds_done)
    if np.isnan(d[pos < done]).any():
        raise ValueError("paired differences contain NaN; pass only seeds complete for both arms")
    latest = None
    for k, look in enumerate(design.looks, start=1):
        if look.n > done:
            break
        x = d[pos < look.n]
        latest = _judge(x, k, look, design)
        if len(x) < look.n or latest.boundary is not None:
            return latest
    if latest is None:
        nan = math.nan
        return ContrastDecision(decision="continue", look=0, n=done, pairs=int(np.sum(pos < done)), boundary=None,
                                mean=nan, sd=nan, t=nan, critical=nan, interval=(nan, nan), within_rope=False)
    return latest


def _judge(x: np.ndarray, k: int, look: Look, design: Design) -> ContrastDecision:
    """Look k on the pairs ``x`` of its seeds: "undecided" when pairs are missing (a cell given up),
    a boundary crossed, or "continue" ("undecided" at the last look)."""
    nan = math.nan
    mean = float(np.mean(x)) if len(x) else nan
    sd = float(np.std(x, ddof=1)) if len(x) >= 2 else nan
    missing = len(x) < look.n
    if missing or zero_spread(x):
        final = missing or k == len(design.looks)
        return ContrastDecision(decision="undecided" if final else "continue", look=k, n=look.n, pairs=len(x),
                                boundary=None, mean=mean, sd=sd if missing else 0.0, t=nan, critical=look.t,
                                interval=(nan, nan), within_rope=False)
    half = look.t * sd / math.sqrt(look.n)
    t_stat = float(stats.ttest_1samp(x, 0.0).statistic)
    boundary, inside = _verdict(mean, half, design.rope)
    decision = _BY_BOUNDARY.get(boundary, "undecided" if k == len(design.looks) else "continue")
    return ContrastDecision(decision=decision, look=k, n=look.n, pairs=len(x), boundary=boundary, mean=mean, sd=sd,
                            t=t_stat, critical=look.t, interval=(mean - half, mean + half), within_rope=inside)


def next_action(design: Design, diffs_per_contrast: Mapping[Hashable, Sequence[float] | np.ndarray | pd.Series],
                n_seeds_done: int, ropes: Mapping[Hashable, float] | None = None) -> LookResult:
    """The verdict per contrast after ``n_seeds_done`` seeds, and whether to run another batch.

    The single entry point for the repeats loop: it is stateless (verdicts are replayed from
    the differences, so it can be recomputed from the storage by any worker at any time).

    Args:
        design: from :func:`make_design`, with ``comparisons`` = the number of keys here.
        diffs_per_contrast: per contrast key (e.g. ``(dataset, arm_a, arm_b)``), the paired
            differences A - B in points as :func:`decide` takes them (a Series indexed by seed
            position, or an array in seed order), for seeds complete in both arms. A contrast
            short of a pair among a look's seeds (a cell given up after its retries) is
            "undecided" from that look on: never decided on seeds it lacks, nor on a later batch's.
        n_seeds_done: seeds complete (or given up) for every arm and data set (the first
            ``n_seeds_done`` seeds of the plan).
        ropes: per contrast key, a ROPE (points) in place of ``design.rope``; the boundaries do
            not depend on it.

    Returns:
        A :class:`LookResult`: ``stop`` when every contrast is settled (decided, or undecided
        for good) or the last look is done, else ``next_seeds`` (the next look's cumulative
        count) and ``batch`` (seeds to add).
    """
    def design_for(key: Hashable) -> Design:
        if ropes is None or key not in ropes:
            return design
        return dataclasses.replace(design, rope=float(ropes[key]))

    decisions = {key: decide(d, design_for(key), n_seeds_done) for key, d in diffs_per_contrast.items()}
    past = [k for k, look in enumerate(design.looks, start=1) if look.n <= n_seeds_done]
    look = past[-1] if past else 0
    n_at = design.looks[look - 1].n if look else 0
    stop = look == len(design.looks) or (look > 0 and all(c.settled for c in decisions.values()))
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
        fixed_seeds=(design.max_seeds if not design.sequential else _fixed_seeds(effect, sd, a, power)),
        simulations=int(studies), seed=int(seed),
        mc_se=math.sqrt(a * (1 - a) / studies),
    )


def _fixed_seeds(effect: float, sd: float, alpha: float, power: float) -> int | None:
    """Seeds of the fixed paired t-test at ``alpha`` with the same power (capped); None when it never gets there."""
    if power <= 0:
        return None
    seeds = seeds_for_power(effect, sd, alpha, min(power, _POWER_CAP))
    return int(seeds) if math.isfinite(seeds) else None


# ---------------------------------------------------------------------------------------------
# On a results table

SEQUENTIAL_COLUMNS = (
    "dataset", "arm_a", "arm_b", "decision", "look", "n", "pairs", "boundary", "critical", "diff", "interval_low",
    "interval_high", "rope", "seeds_run", "sd_diff", "effect", "effect_source", "power", "expected_seeds",
    "fixed_seeds_same_power",
)  # fmt: skip
# The Procedure section and README name these as not shown for a sequential study: they are
# fixed-sample figures (Holm over one look at a fixed n, power at a fixed n).
FIXED_ONLY_COLUMNS = ("p_holm", "p_tost_holm", "p_new_data_holm", "p_tost_new_data_holm", "mde_80")

Key = tuple[str, str, str]  # (dataset, arm_a, arm_b)


def paired_differences(
    results: pd.DataFrame, contrasts: Sequence[tuple[str, str]] | None, rope: float | None,
    smallest_effect: float | None = None, seeds: Sequence[int] | None = None,
) -> tuple[dict[Key, pd.Series], dict[Key, float]]:
    """Per (dataset, arm_a, arm_b): A - B in points over the seeds both arms ran, indexed by each
    seed's position in ``seeds`` (the plan's seeds in order; default the distinct seeds of
    ``results``, sorted), and the row's ROPE (:func:`ablate.stats.row_rope`, as
    :func:`ablate.stats.compare` sets it). Seeds outside ``seeds`` are left out."""
    results = sort_results(validate_results(results))
    contrasts = resolve_contrasts(results, contrasts)
    n_test = n_test_by_dataset(results)
    plan_seeds = sorted(set(results["seed"])) if seeds is None else [int(s) for s in seeds]
    position = {seed: i for i, seed in enumerate(plan_seeds)}
    diffs, ropes = {}, {}
    for dataset, group in results.groupby("dataset", sort=False):
        by_arm = accuracy_by_arm(group)
        for arm_a, arm_b in contrasts:
            if arm_a not in by_arm or arm_b not in by_arm:
                continue
            a, b = by_arm[arm_a], by_arm[arm_b]
            paired = sorted(s for s in set(a.index) & set(b.index) if s in position)
            # the same arithmetic as paired_comparison, so both see the same doubles
            d = a.loc[paired].to_numpy(dtype=float) * 100.0 - b.loc[paired].to_numpy(dtype=float) * 100.0
            diffs[(dataset, arm_a, arm_b)] = pd.Series(d, index=[position[s] for s in paired], dtype=float)
            ropes[(dataset, arm_a, arm_b)] = row_rope(rope, smallest_effect, n_test.get(dataset))
    return diffs, ropes


@dataclass(frozen=True)
class _Replay:
    design: Design
    diffs: dict[Key, pd.Series]
    ropes: dict[Key, float]
    look: LookResult


def _replayed(results: pd.DataFrame, plan: SequentialPlan, alpha: float, contrasts: Sequence[tuple[str, str]] | None,
              rope: float | None, smallest_effect: float | None, seeds: Sequence[int] | None,
              n_seeds_done: int | None) -> _Replay:
    """The design, the paired differences and ROPEs, and the looks replayed on them
    (``n_seeds_done`` None: every seed in ``seeds``, else in ``results``, is done)."""
    diffs, ropes = paired_differences(results, contrasts, rope, smallest_effect, seeds)
    design = sequential_design(plan, alpha)
    known = len(seeds) if seeds is not None else int(results["seed"].nunique())
    done = known if n_seeds_done is None else int(n_seeds_done)
    with quiet():  # nearly constant differences: scipy's precision warning, the verdict stands
        return _Replay(design, diffs, ropes, next_action(design, diffs, done, ropes=ropes))


def sequential_look(
    results: pd.DataFrame,
    plan: SequentialPlan,
    *,
    alpha: float = 0.05,
    contrasts: Sequence[tuple[str, str]] | None = None,
    rope: float | None = None,
    smallest_effect: float | None = None,
    seeds: Sequence[int] | None = None,
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
        contrasts, rope, smallest_effect: as in :func:`ablate.stats.compare` (the ROPE is
            :func:`ablate.stats.row_rope`: ``rope``, else ``smallest_effect``, else one test image).
        seeds: the plan's seeds in order (look k is judged on the first ``n_k``); default the
            distinct seeds of ``results``, sorted.
        n_seeds_done: seeds complete or given up for every arm and data set; default all of
            ``seeds``. A pair missing among them is a cell given up: pass the seeds actually
            finished while a batch is still running.

    Returns:
        :class:`LookResult` keyed by ``(dataset, arm_a, arm_b)``.
    """
    return _replayed(results, plan, alpha, contrasts, rope, smallest_effect, seeds, n_seeds_done).look


def sequential_frame(
    results: pd.DataFrame, settings: AnalysisSettings, *, seeds: Sequence[int] | None = None,
    n_seeds_done: int | None = None,
) -> pd.DataFrame:
    """One row per (dataset, contrast) of a sequential study, :data:`SEQUENTIAL_COLUMNS`.

    ``settings``: the analysis (its ``sequential`` design, alpha, contrasts, ROPE and smallest
    effect); ``seeds`` and ``n_seeds_done`` as in :func:`sequential_look`. ``decision``, ``look``,
    ``n``, ``pairs``, ``boundary``, ``critical`` (the calibrated |t| of that look), ``diff`` and
    ``interval_low/high`` (the design-adjusted interval) are those of :func:`decide` at the look
    that decided the contrast (or the latest look). ``seeds_run`` is the number of paired seeds the
    arms ran in all (more than ``n`` when another contrast kept them going); ``sd_diff`` the sd of
    those differences. ``power`` and ``expected_seeds`` are the design's, by simulation
    (:func:`operating_characteristics`, seeded) at that sd against ``effect`` points, the smallest
    effect of interest or else 3 x the row's ROPE (``effect_source`` says which);
    ``fixed_seeds_same_power`` the seeds a fixed paired t-test at ``alpha / comparisons`` needs for
    that power (inf when none does; NaN without a positive sd or with zero power).

    Raises:
        ValueError: ``settings`` without a sequential design.
    """
    s = settings
    if s.sequential is None:
        raise ValueError("sequential_frame needs settings with a sequential design")
    replay = _replayed(results, s.sequential, s.alpha, s.contrasts, s.rope, s.smallest_effect, seeds, n_seeds_done)
    rows = [_frame_row(key, d.to_numpy(), replay.look.decisions[key],
                       dataclasses.replace(replay.design, rope=replay.ropes[key]), s.smallest_effect)
            for key, d in replay.diffs.items()]
    return pd.DataFrame.from_records(rows, columns=list(SEQUENTIAL_COLUMNS))


def _frame_row(key: Key, d: np.ndarray, c: ContrastDecision, design: Design,
               smallest_effect: float | None) -> dict[str, object]:
    """One row of :func:`sequential_frame`; ``design`` carries the row's ROPE."""
    effect, source = ((float(smallest_effect), "smallest_effect") if smallest_effect is not None
                      else (3.0 * design.rope, "3 x rope"))
    sd_d = float(np.std(d, ddof=1)) if len(d) >= 2 and not zero_spread(d) else (0.0 if len(d) >= 2 else math.nan)
    power = expected = fixed = math.nan
    if is_finite(sd_d) and sd_d > 0 and effect > 0:
        oc = operating_characteristics(design, sd=sd_d, effect=effect)
        power, expected = oc.power, oc.expected_seeds
        fixed = float(oc.fixed_seeds) if oc.fixed_seeds is not None else (math.inf if oc.power > 0 else math.nan)
    return {
        "dataset": key[0], "arm_a": key[1], "arm_b": key[2], "decision": c.decision, "look": c.look, "n": c.n,
        "pairs": c.pairs, "boundary": c.boundary or "", "critical": c.critical, "diff": c.mean,
        "interval_low": c.interval[0], "interval_high": c.interval[1], "rope": design.rope, "seeds_run": len(d),
        "sd_diff": sd_d, "effect": effect, "effect_source": source, "power": power, "expected_seeds": expected,
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
    used = [d.to_numpy() for d in diffs.values() if len(d) >= 2]
    if not used:
        return math.nan, 0, 0
    dof = sum(len(d) - 1 for d in used)
    pooled = sum((len(d) - 1) * float(np.var(d, ddof=1)) for d in used) / dof
    return math.sqrt(pooled), len(used), sum(len(d) for d in used)


def sequential_verdict(row: Mapping[str, object], still_rising: str = "", too_short: str = "") -> str:
    """A row of :func:`sequential_frame` as the ``verdict`` of its comparison, in the words of
    :func:`verdict`: "significant: <arm> better (sequential, look 2)", "practically equivalent
    (sequential, look 3)", "undecided after 30 seeds", "undecided: a run among the first 10 seeds was
    given up", "open after look 1" (a study still running)."""
    decision, look, n = row["decision"], int(row["look"]), int(row["n"])
    if decision in ("A better", "B better"):
        better = row["arm_a"] if decision == "A better" else row["arm_b"]
        rope = float(row["rope"])
        inside = abs(float(row["interval_low"])) < rope and abs(float(row["interval_high"])) < rope
        text = f"significant: {better} better (sequential, look {look})" + (" (within ROPE)" if inside else "")
    elif decision == "equivalent":
        text = f"practically equivalent (sequential, look {look})"
    elif decision == "undecided" and int(row.get("pairs", n)) < n:
        text = f"undecided: a run among the first {n} seeds was given up"
    elif decision == "undecided":
        text = f"undecided after {n} seeds"
    else:
        text = f"open after look {look}" if look else "open: no look complete"
    text += f"; may be too short: {too_short}" if too_short else ""
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
        rising, short = (r.get(k) if isinstance(r.get(k), str) else "" for k in ("still_rising", "too_short"))
        verdicts.append(r["verdict"] if seq is None else sequential_verdict(seq, rising, short))
    out["verdict"] = verdicts
    return out
