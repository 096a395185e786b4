"""``ablate plan``: a study's design before it is run: boundaries per look, error rates, seeds.

The sd of the paired differences, the ROPE and the effect to find come from the command line,
else from the study's own earlier repeats or its file, and each says where it came from.
"""

from __future__ import annotations

from typing import Any

from ablate.config import StudyConfig
from ablate.errors import ConfigError
from ablate.stats import default_contrasts, default_rope, make_design, operating_characteristics, pooled_difference_sd
from ablate.study.cost import study_cost
from ablate.study.paths import StudyPaths
from ablate.study.results import earlier_results

__all__ = ["earlier_sd", "plan_rope", "plan_study"]


def earlier_sd(cfg: StudyConfig, paths: StudyPaths) -> tuple[float, str] | None:
    """The sd of paired differences from the study's own earlier repeats, and where it came from.

    Pooled over every contrast x data set (``ablate.stats.pooled_difference_sd``: the
    within-contrast variances weighted by their degrees of freedom, so a large difference
    between two arms does not count as noise). None when the storage holds no two paired seeds.
    """
    assert cfg.repeats is not None
    results = earlier_results(cfg, paths)
    if results is None:
        return None
    sd, rows, pairs = pooled_difference_sd(results, cfg.repeats.contrasts)
    if rows == 0 or not sd > 0:
        return None
    return sd, (f"earlier repeats: pooled over {rows} contrast x data set row{'s' if rows != 1 else ''}, "
                f"{pairs} paired seeds")


def plan_rope(cfg: StudyConfig, paths: StudyPaths) -> tuple[float, str]:
    """The ROPE the report will use (``ablate.stats.row_rope``): ``repeats.rope``, else
    ``repeats.smallest_effect``, else one test image of the earlier repeats (at least 0.1), else 0.1."""
    assert cfg.repeats is not None
    if cfg.repeats.rope is not None:
        return float(cfg.repeats.rope), "repeats.rope"
    if cfg.repeats.smallest_effect is not None:
        return float(cfg.repeats.smallest_effect), "repeats.smallest_effect"
    results = earlier_results(cfg, paths)
    n_test = results["n_test"].dropna() if results is not None else []
    if len(n_test):
        median = float(n_test.median())
        return default_rope(median), f"one test image of the earlier repeats ({median:g} test images), at least 0.1"
    return default_rope(None), "0.1, the smallest default ROPE (no repeats yet to count test images; set repeats.rope)"


def _effect(cfg: StudyConfig, effect: float | None, rope: float, rope_source: str, where: str) -> tuple[float, str]:
    """The difference to find: ``--effect``, else ``repeats.smallest_effect``, else 3 x rope."""
    if effect is not None:
        return effect, "--effect"
    if cfg.repeats.smallest_effect is not None:
        return float(cfg.repeats.smallest_effect), "repeats.smallest_effect"
    if rope <= 0:
        raise ConfigError(f"{where}: repeats.rope is 0, so there is no default effect; pass --effect POINTS")
    return 3 * rope, "3 x repeats.rope" if rope_source == "repeats.rope" else "3 x rope"


def plan_study(cfg: StudyConfig, paths: StudyPaths, sd: float | None = None, effect: float | None = None,
               *, where: str | None = None) -> dict[str, Any]:
    """The design of ``cfg``'s repeats, its simulated operating characteristics and what the whole
    study will cost (``ablate.study.cost``), as one JSON-ready dict (``ablate plan --json``). ``where`` names the study file in errors
    (default: its path).

    Raises:
        ConfigError: no ``repeats`` section, or no effect to plan for (ROPE 0 and no --effect).
    """
    rep = cfg.repeats
    where = where or str(paths.study_file)
    if rep is None:
        raise ConfigError(f"{where}: the study file has no 'repeats' section, so there is nothing to plan")
    contrasts = rep.contrasts or default_contrasts(list(rep.arms))
    datasets = rep.datasets or [cfg.dataset.name]
    sd_source = "--sd"
    if sd is None:
        sd, sd_source = earlier_sd(cfg, paths) or (1.0, "assumed: no --sd and no earlier repeats to read")
    rope, rope_source = plan_rope(cfg, paths)
    effect, effect_source = _effect(cfg, effect, rope, rope_source, where)
    design = make_design(rep.looks, alpha=rep.alpha, comparisons=len(contrasts) * len(datasets),
                         spending=rep.spending, rope=rope)
    oc = operating_characteristics(design, sd=sd, effect=effect)
    finite = lambda x: x if x < float("inf") else None  # noqa: E731 - JSON has no inf
    return {
        "study": cfg.name, "looks": list(design.seeds),
        "spending": design.spending if design.sequential else "none (fixed design)",
        "alpha": design.alpha, "comparisons": design.comparisons,
        "contrasts": [f"{a} vs {b}" for a, b in contrasts], "datasets": list(datasets),
        "alpha_per_comparison": design.alpha_per_comparison,
        "rope": design.rope, "rope_source": rope_source,
        "sd": sd, "sd_source": sd_source,
        "effect": effect, "effect_source": effect_source,
        "boundaries": [
            {"n": look.n, "spent": look.spent, "z": finite(look.z), "t": finite(look.t), "nominal_p": look.nominal_p,
             "half_width": finite(look.t * sd / look.n**0.5)}
            for look in design.looks
        ],
        "false_positive_rate": oc.false_positive_rate,
        "familywise_false_positive_bound": oc.familywise_false_positive_bound,
        "false_equivalence_rate": oc.false_equivalence_rate,
        "power": oc.power, "expected_seeds": oc.expected_seeds,
        "expected_seeds_equal_arms": oc.expected_seeds_equal, "max_seeds": oc.max_seeds,
        "fixed_seeds_same_power": oc.fixed_seeds,
        "simulations": oc.simulations, "simulation_seed": oc.seed, "mc_se": oc.mc_se,
        "cost": study_cost(cfg, paths.base).as_dict(),
    }
