"""Sequential seeds: run repeats in batches and stop each contrast once it is decided.

A *design* fixes, before anything is trained, the looks (cumulative seed counts, e.g. 6, 12,
..., 30), the study's alpha and how many comparisons (contrasts x data sets) share it, an
alpha-spending family, and the region of practical equivalence (ROPE, in points). At every
look each undecided contrast is judged from the paired differences ``d = A - B`` (points) of
the seeds run so far. Pure numpy/scipy: no torch, no Optuna, no I/O.

Procedure, written out so a reader can check it:

1. **Split alpha.** Each of the ``m`` comparisons gets ``alpha / m`` (Bonferroni), so the
   family-wise error over all contrasts, data sets and looks is at most ``alpha`` whatever
   the correlation between contrasts that share an arm. (Holm applied afresh at every look
   would not be; see issue 9.)
2. **Spend it over the looks** (Lan & DeMets 1983) at information fractions
   ``t_k = n_k / n_max``, ``alpha / 2`` on each side as ld98, ldbounds and gsDesign do:
   O'Brien-Fleming-type ``a(t) = 2 (2 - 2 Phi(z_{1-alpha/4} / sqrt t))`` (almost nothing
   early, nearly the whole alpha at the last look) or Pocock-type
   ``a(t) = alpha log(1 + (e - 1) t)`` (about equal at every look). The z-scale boundaries
   ``c_k`` solve ``P(|Z_j| < c_j, j < k; |Z_k| >= c_k) = a(t_k) - a(t_{k-1})`` for the
   canonical joint normal ``corr(Z_j, Z_k) = sqrt(t_j / t_k)``, by the recursive numerical
   integration of Armitage, McPherson & Rowe (1969) (Jennison & Turnbull 2000, ch. 19).
3. **Calibrate for t.** Seeds are few, so the statistic is the paired t with ``n_k - 1``
   degrees of freedom, not z. Using the z boundaries on t gives a false-positive rate of about
   0.088 instead of 0.05 (looks at 5/10/15/20, issue 9), and converting each to its nominal
   p-value (Jennison & Turnbull 2000, sec. 3.8) still gives about 0.053. So the t boundaries
   are calibrated by simulation to the same spending: the first look's is exact (``T_1`` is
   Student t), and each later look's is the quantile of ``|T_k|`` among the simulated null
   studies that have not yet crossed, so that the share crossing first at look k equals the
   spent increment. Where an increment is too small to resolve (fewer than
   ``_MIN_EVENTS`` expected crossings) the marginal Student t quantile is used instead: it
   spends at most the increment, so it errs on the safe side. The null studies are drawn
   from the sufficient statistics of each batch (a normal batch sum and a chi-square
   within-batch sum of squares, combined with Chan et al.'s update), with a fixed seed, so a
   design is reproducible and a million studies take about a second. The t statistic does not
   depend on the scale of ``d``, so one calibration serves every sd; it assumes ``d`` is
   normal, as the paired t-test does.
4. **Decide from one interval.** At look k the design-adjusted (repeated) confidence interval
   is ``mean(d) +/- c_k sd(d) / sqrt(n_k)`` (Jennison & Turnbull 1989). Its lower end above 0
   -> "A better"; its upper end below 0 -> "B better"; both ends inside ``(-rope, +rope)`` ->
   "equivalent" (a TOST at the look's level); otherwise "continue", and at the last look
   "undecided". A contrast keeps the verdict of the first look at which it was decided.
   Centred at the true difference, the same t statistics have the null distribution, so the
   intervals of all looks cover it simultaneously with probability ``1 - alpha / m``; every
   false verdict ("better" when the arms are equal, "equivalent" when the true difference is
   at or beyond the ROPE's edge) needs a miss, so the chance of *any* false verdict in the
   study is at most ``alpha``. Stopping a contrast early, for either reason, only removes
   chances to err. The equivalence test is two one-sided tests at ``alpha / (2m)`` each, so
   it is conservative; :func:`operating_characteristics` measures it.

Operating characteristics (false-positive and false-equivalence rates, power, expected seeds)
are simulated per comparison by the same vectorised sampler, with their own fixed seed.

References:
    Armitage, P., McPherson, C. K., Rowe, B. C. (1969). Repeated significance tests on
        accumulating data. JRSS A 132(2).
    Pocock, S. J. (1977). Group sequential methods in the design and analysis of clinical
        trials. Biometrika 64(2).
    O'Brien, P. C., Fleming, T. R. (1979). A multiple testing procedure for clinical trials.
        Biometrics 35(3).
    Chan, T. F., Golub, G. H., LeVeque, R. J. (1979). Updating formulae and a pairwise
        algorithm for computing sample variances. Stanford CS report STAN-CS-79-773.
    Lan, K. K. G., DeMets, D. L. (1983). Discrete sequential boundaries for clinical trials.
        Biometrika 70(3).
    Jennison, C., Turnbull, B. W. (1989). Interim analyses: the repeated confidence interval
        approach. JRSS B 51(3).
    Jennison, C., Turnbull, B. W. (2000). Group Sequential Methods with Applications to
        Clinical Trials. Chapman & Hall/CRC.
    Reboussin, D. M., DeMets, D. L., Kim, K., Lan, K. K. G. (2000). Computations for group
        sequential boundaries using the Lan-DeMets spending function method. Controlled
        Clinical Trials 21(3). (ld98; R package ldbounds)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import integrate, optimize, stats

__all__ = [
    "SPENDING",
    "DECISIONS",
    "Look",
    "Design",
    "ContrastDecision",
    "LookResult",
    "OperatingCharacteristics",
    "spent_alpha",
    "z_boundaries",
    "crossing_probability",
    "make_design",
    "decide",
    "next_action",
    "simulate_decisions",
    "operating_characteristics",
    "fixed_design_power",
    "fixed_design_seeds",
]

SPENDING = ("obrien-fleming", "pocock")
DECISIONS = ("A better", "B better", "equivalent", "continue", "undecided")

_GRID = 1201  # points of the recursive-integration grid; 4-decimal boundaries need ~400
_MIN_EVENTS = 200  # fewer expected crossings than this: use the (conservative) marginal quantile
_CALIBRATION_STUDIES = 1_000_000  # MC error of the calibrated rate: sqrt(alpha / N) ~ 0.0002
_CALIBRATION_SEED = 20240901
_OC_STUDIES = 200_000
_OC_SEED = 1
# Above this the simulated power is 1 to within its Monte-Carlo error, and the fixed design
# "with the same power" would be set by noise (one more seed per lucky study in 100,000).
_POWER_CAP = 0.999


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Look:
    """One planned look of a design, for one comparison (its alpha is ``alpha / m``).

    ``spent`` is the cumulative alpha spent by this look; ``z`` the Lan-DeMets boundary on the
    z scale; ``t`` the calibrated critical value of the paired t statistic (``n - 1`` df) and
    ``nominal_p`` the two-sided p-value a paired t-test must be below at this look
    (``2 * t.sf(t, n - 1)``). ``t`` is ``inf`` where nothing can be decided.
    """

    n: int
    fraction: float
    spent: float
    z: float
    t: float
    nominal_p: float


@dataclass(frozen=True)
class Design:
    """A sequential (or, with one look, fixed) design; build it with :func:`make_design`."""

    looks: tuple[Look, ...]
    alpha: float  # for the whole study, two-sided
    comparisons: int  # contrasts x data sets sharing alpha
    spending: str
    rope: float  # points
    calibration_studies: int
    calibration_seed: int

    @property
    def alpha_per_comparison(self) -> float:
        return self.alpha / self.comparisons

    @property
    def seeds(self) -> tuple[int, ...]:
        """Cumulative seed counts at the looks."""
        return tuple(look.n for look in self.looks)

    @property
    def max_seeds(self) -> int:
        return self.looks[-1].n

    @property
    def sequential(self) -> bool:
        return len(self.looks) > 1


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
# z-scale boundaries


def spent_alpha(fractions: Sequence[float] | np.ndarray, alpha: float, spending: str) -> np.ndarray:
    """Cumulative two-sided alpha spent at information fractions ``t`` (Lan & DeMets 1983).

    Raises:
        ValueError: an unknown spending family (the message lists the valid ones).
    """
    t = np.asarray(fractions, dtype=float)
    if spending == "obrien-fleming":  # alpha / 2 per side, as ld98, ldbounds and gsDesign do
        with np.errstate(divide="ignore"):
            return 4.0 * stats.norm.sf(stats.norm.isf(alpha / 4.0) / np.sqrt(t))
    if spending == "pocock":
        return alpha * np.log1p((math.e - 1.0) * t)
    raise ValueError(f"unknown spending {spending!r}, expected one of {', '.join(SPENDING)}")


def _grid(half_width: float, sd: float) -> np.ndarray:
    # Beyond 9 sd the density is below 1e-18: an open continuation region is cut there.
    b = min(half_width, 9.0 * sd)
    return np.linspace(-b, b, _GRID)


def _crossing(w: np.ndarray, f: np.ndarray, step_sd: float, b: float) -> float:
    """P(|W_prev + X| >= b, W_prev in the continuation region), X ~ N(0, step_sd^2)."""
    tail = stats.norm.cdf((-b - w) / step_sd) + stats.norm.sf((b - w) / step_sd)
    return float(integrate.simpson(f * tail, x=w))


def _advance(w: np.ndarray, f: np.ndarray, step_sd: float, w_new: np.ndarray) -> np.ndarray:
    """Sub-density of W at the next look on ``w_new``: f convolved with N(0, step_sd^2)."""
    kernel = stats.norm.pdf((w_new[:, None] - w[None, :]) / step_sd) / step_sd  # (new, old)
    return integrate.simpson(kernel * f[None, :], x=w, axis=1)


def crossing_probability(z_bounds: Sequence[float], fractions: Sequence[float]) -> np.ndarray:
    """P(first |Z_k| >= c_k at look k) for each k, for two-sided z boundaries (no drift).

    The recursive numerical integration of Armitage et al. (1969) on the Brownian scale
    ``W_k = Z_k sqrt(t_k)``, whose increments are independent ``N(0, t_k - t_{k-1})``.
    """
    t = np.asarray(fractions, dtype=float)
    c = np.asarray(z_bounds, dtype=float)
    out = np.empty(len(t))
    out[0] = 2.0 * stats.norm.sf(c[0])
    w = _grid(c[0] * math.sqrt(t[0]), math.sqrt(t[0]))
    f = stats.norm.pdf(w, scale=math.sqrt(t[0]))
    for k in range(1, len(t)):
        s = math.sqrt(t[k] - t[k - 1])
        b = c[k] * math.sqrt(t[k])
        out[k] = _crossing(w, f, s, b) if math.isfinite(b) else 0.0
        w_new = _grid(b, math.sqrt(t[k]))
        f, w = _advance(w, f, s, w_new), w_new
    return out


@functools.lru_cache(maxsize=64)
def _z_boundaries(fractions: tuple[float, ...], alpha: float, spending: str) -> tuple[float, ...]:
    t = np.asarray(fractions)
    spent = spent_alpha(t, alpha, spending)
    increments = np.diff(spent, prepend=0.0)
    c = [float(stats.norm.isf(increments[0] / 2.0))]
    w = _grid(c[0] * math.sqrt(t[0]), math.sqrt(t[0]))
    f = stats.norm.pdf(w, scale=math.sqrt(t[0]))
    for k in range(1, len(t)):
        s = math.sqrt(t[k] - t[k - 1])
        target = increments[k]
        if target <= 0.0:
            b = math.inf
        else:  # the crossing probability falls from (mass still alive) at b = 0 to 0
            b = optimize.brentq(lambda b: _crossing(w, f, s, b) - target, 1e-9, 40.0, xtol=1e-10)
        c.append(b / math.sqrt(t[k]))
        w_new = _grid(b, math.sqrt(t[k]))
        f, w = _advance(w, f, s, w_new), w_new
    return tuple(c)


def z_boundaries(fractions: Sequence[float], alpha: float, spending: str = "obrien-fleming") -> np.ndarray:
    """Two-sided Lan-DeMets boundaries on the z scale at increasing information fractions.

    Args:
        fractions: ``t_k`` in (0, 1], increasing, the last normally 1.
        alpha: two-sided level spent in all.
        spending: "obrien-fleming" or "pocock" (Lan-DeMets types).

    Returns:
        ``c_k`` such that a standard normal process crosses first at look k with probability
        ``a(t_k) - a(t_{k-1})``; ``inf`` where the increment is 0.
    """
    spent_alpha([1.0], alpha, spending)  # checks the name
    t = tuple(float(x) for x in fractions)
    if any(b <= a for a, b in zip(t, t[1:])) or t[0] <= 0 or t[-1] > 1:
        raise ValueError(f"fractions must increase within (0, 1] (got {t})")
    return np.array(_z_boundaries(t, float(alpha), spending))


# ---------------------------------------------------------------------------------------------
# Simulated paired t statistics, one look at a time


class _Walk:
    """Running paired-difference statistics of many simulated studies, batch by batch.

    Each batch of ``m`` differences ~ N(mean, sd^2) is drawn as its sufficient statistics: the
    batch mean ~ N(mean, sd^2 / m) and the within-batch sum of squares ~ sd^2 chi2(m - 1);
    Chan et al.'s update merges them into the running count, mean and sum of squares. Exact
    for normal differences, and two draws per study and batch instead of m.
    """

    def __init__(self, studies: int, mean: float, sd: float, rng: np.random.Generator):
        self.mean_d, self.sd_d, self.rng = mean, sd, rng
        self.n = 0
        self.mean = np.zeros(studies)
        self.m2 = np.zeros(studies)

    def add(self, m: int) -> None:
        k = len(self.mean)
        batch_mean = self.rng.normal(self.mean_d, self.sd_d / math.sqrt(m), size=k)
        batch_m2 = self.sd_d**2 * self.rng.chisquare(m - 1, size=k) if m > 1 else np.zeros(k)
        n = self.n + m
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (m / n)
        self.m2 = self.m2 + batch_m2 + delta**2 * (self.n * m / n)
        self.n = n

    def se(self) -> np.ndarray:
        return np.sqrt(self.m2 / (self.n - 1) / self.n)


def _batches(looks: Sequence[int]) -> list[int]:
    return [b - a for a, b in zip((0, *looks), looks)]


@functools.lru_cache(maxsize=64)
def _t_boundaries(looks: tuple[int, ...], alpha: float, spending: str, studies: int, seed: int) -> tuple[float, ...]:
    spent = spent_alpha(np.asarray(looks) / looks[-1], alpha, spending)
    increments = np.diff(spent, prepend=0.0)
    rng = np.random.default_rng(seed)
    walk = _Walk(studies, 0.0, 1.0, rng)
    alive = np.ones(studies, dtype=bool)
    out: list[float] = []
    for k, m in enumerate(_batches(looks)):
        walk.add(m)
        df = looks[k] - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            t_abs = np.abs(walk.mean / walk.se())
        events = increments[k] * studies
        if k == 0 or events < _MIN_EVENTS:
            # Exact at the first look (T_1 is Student t); later, the marginal quantile spends
            # at most the increment, because crossing first at k implies |T_k| >= c.
            c = float(stats.t.isf(increments[k] / 2.0, df)) if increments[k] > 0 else math.inf
        else:
            r = int(round(events))
            alive_t = np.sort(t_abs[alive])[::-1]
            c = float((alive_t[r - 1] + alive_t[r]) / 2.0)  # exactly r alive studies at or above
        out.append(c)
        alive &= ~(t_abs >= c)
    return tuple(out)


def make_design(
    looks: Sequence[int],
    *,
    alpha: float = 0.05,
    comparisons: int = 1,
    spending: str = "obrien-fleming",
    rope: float = 0.1,
    calibration_studies: int = _CALIBRATION_STUDIES,
    calibration_seed: int = _CALIBRATION_SEED,
) -> Design:
    """The design for these looks: z boundaries, then t boundaries calibrated by simulation.

    Args:
        looks: cumulative seed counts, increasing, the first at least 2 (one look = fixed design:
            the ordinary paired t-test at ``alpha / comparisons``).
        alpha: two-sided family-wise level of the whole study.
        comparisons: contrasts x data sets that share ``alpha`` (Bonferroni).
        spending: "obrien-fleming" or "pocock".
        rope: half-width of the region of practical equivalence, points.
        calibration_studies, calibration_seed: the null simulation of step 3 (cached).

    Raises:
        ValueError: looks not increasing or below 2 seeds, alpha outside (0, 1), comparisons < 1,
            a negative rope or an unknown spending family.
    """
    looks_t = tuple(int(n) for n in looks)
    if not looks_t or looks_t[0] < 2 or any(b <= a for a, b in zip(looks_t, looks_t[1:])):
        raise ValueError(f"looks must be increasing seed counts, the first at least 2 (got {list(looks_t)})")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1) (got {alpha})")
    if comparisons < 1:
        raise ValueError(f"comparisons must be at least 1 (got {comparisons})")
    if rope < 0:
        raise ValueError(f"rope must be >= 0 (got {rope})")
    a = alpha / comparisons
    fractions = np.asarray(looks_t) / looks_t[-1]
    z = z_boundaries(fractions, a, spending)
    t = _t_boundaries(looks_t, a, spending, int(calibration_studies), int(calibration_seed))
    spent = spent_alpha(fractions, a, spending)
    records = tuple(
        Look(n=n, fraction=float(fr), spent=float(sp), z=float(zk), t=float(tk),
             nominal_p=float(2.0 * stats.t.sf(tk, n - 1)))
        for n, fr, sp, zk, tk in zip(looks_t, fractions, spent, z, t)
    )
    return Design(looks=records, alpha=float(alpha), comparisons=int(comparisons), spending=spending,
                  rope=float(rope), calibration_studies=int(calibration_studies),
                  calibration_seed=int(calibration_seed))


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
    walk = _Walk(studies, mean, sd, rng)
    decision = np.full(studies, DECISIONS.index("undecided"), dtype=np.int8)
    n_run = np.full(studies, design.max_seeds, dtype=np.int64)
    alive = np.ones(studies, dtype=bool)
    for look, m in zip(design.looks, _batches(design.seeds)):
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


def fixed_design_power(effect: float, sd: float, n: int, alpha: float) -> float:
    """Power of a fixed two-sided paired t-test at ``alpha`` with ``n`` seeds to find A better.

    Only the correct direction counts (as in the sequential power), from scipy's noncentral t.
    """
    crit = stats.t.isf(alpha / 2.0, n - 1)
    return float(stats.nct.sf(crit, n - 1, effect / sd * math.sqrt(n)))


def fixed_design_seeds(effect: float, sd: float, alpha: float, power: float, limit: int = 100_000) -> int | None:
    """Smallest n >= 2 at which the fixed paired t-test reaches ``power``; None beyond ``limit``."""
    if fixed_design_power(effect, sd, 2, alpha) >= power:
        return 2
    if effect <= 0 or fixed_design_power(effect, sd, limit, alpha) < power:
        return None
    lo, hi = 2, limit  # power(lo) < power <= power(hi); power grows with n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fixed_design_power(effect, sd, mid, alpha) >= power else (mid, hi)
    return hi


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
