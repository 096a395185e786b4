"""Sequential designs: alpha spent over looks, z boundaries, t boundaries calibrated for few seeds.

A *design* fixes, before anything is trained, the looks (cumulative seed counts, e.g. 6, 12,
..., 30), the study's alpha and how many comparisons (contrasts x data sets) share it, an
alpha-spending family, and the region of practical equivalence (ROPE, in points).
:mod:`ablate.stats.sequential` judges contrasts against it. The procedure (Bonferroni over the
comparisons, Lan-DeMets spending, recursive integration for z, a seeded simulation for t),
its evidence and references: docs/statistics.md (generated from ``ablate.report.procedure``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import integrate, optimize, stats

from ablate.analysis import SPENDING

if TYPE_CHECKING:
    from ablate.analysis import SequentialPlan

__all__ = [
    "SPENDING",
    "Look",
    "Design",
    "spent_alpha",
    "z_boundaries",
    "crossing_probability",
    "t_boundaries",
    "make_design",
    "sequential_design",
]

_GRID = 1201  # points of the recursive-integration grid; 4-decimal boundaries need ~400
_MIN_EVENTS = 200  # fewer expected crossings than this: use the (conservative) marginal quantile
_CALIBRATION_STUDIES = 1_000_000  # MC error of the calibrated rate: sqrt(alpha / N) ~ 0.0002
_CALIBRATION_SEED = 20240901


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
    """A sequential (or, with one look, fixed) design; built by :func:`make_design` or
    :func:`sequential_design`."""

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


class Walk:
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


def batches(looks: Sequence[int]) -> list[int]:
    """Seeds added at each look: ``looks`` as increments."""
    return [b - a for a, b in zip((0, *looks), looks)]


@functools.lru_cache(maxsize=64)
def t_boundaries(looks: tuple[int, ...], alpha: float, spending: str, studies: int, seed: int) -> tuple[float, ...]:
    """Critical |t| of the paired t statistic at each look, calibrated by a seeded null simulation.

    The first look's is Student t's quantile; a later look's is the quantile of ``|T_k|`` among
    the ``studies`` simulated null studies not yet stopped, so that the share crossing first
    there equals the alpha spent on it (docs/statistics.md). Cached: one calibration per design.
    """
    spent = spent_alpha(np.asarray(looks) / looks[-1], alpha, spending)
    increments = np.diff(spent, prepend=0.0)
    rng = np.random.default_rng(seed)
    walk = Walk(studies, 0.0, 1.0, rng)
    alive = np.ones(studies, dtype=bool)
    out: list[float] = []
    for k, m in enumerate(batches(looks)):
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
        calibration_studies, calibration_seed: the null simulation that calibrates the t boundaries
            (cached).

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
    t = t_boundaries(looks_t, a, spending, int(calibration_studies), int(calibration_seed))
    spent = spent_alpha(fractions, a, spending)
    records = tuple(
        Look(n=n, fraction=float(fr), spent=float(sp), z=float(zk), t=float(tk),
             nominal_p=float(2.0 * stats.t.sf(tk, n - 1)))
        for n, fr, sp, zk, tk in zip(looks_t, fractions, spent, z, t)
    )
    return Design(looks=records, alpha=float(alpha), comparisons=int(comparisons), spending=spending,
                  rope=float(rope), calibration_studies=int(calibration_studies),
                  calibration_seed=int(calibration_seed))


def sequential_design(plan: SequentialPlan, alpha: float) -> Design:
    """The design of a sequential study at level ``alpha`` (its ROPE is set per contrast, see
    :func:`ablate.stats.sequential_look`)."""
    return make_design(plan.looks, alpha=alpha, comparisons=plan.comparisons, spending=plan.spending, rope=0.0)
