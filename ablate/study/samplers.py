"""The samplers and pruners a study file can name: one registry each, one decorator.

``search.sampler.name`` and ``search.pruner.name`` are checked against the names the study
file allows (``ablate.config``); every allowed name has a builder here, and a name without one
fails with the list of the valid ones (``tests/test_study.py`` runs over every entry).
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from ablate.config import Choices, StudyConfig
from ablate.errors import ConfigError

__all__ = ["SAMPLERS", "PRUNERS", "register_sampler", "register_pruner", "make_sampler", "make_pruner"]

SamplerBuilder = Callable[[StudyConfig, int], optuna.samplers.BaseSampler]  # (study, sampler seed)
PrunerBuilder = Callable[[StudyConfig], optuna.pruners.BasePruner]
SAMPLERS: dict[str, SamplerBuilder] = {}
PRUNERS: dict[str, PrunerBuilder] = {}


def register_sampler(name: str) -> Callable[[SamplerBuilder], SamplerBuilder]:
    def wrap(fn: SamplerBuilder) -> SamplerBuilder:
        SAMPLERS[name] = fn
        return fn

    return wrap


def register_pruner(name: str) -> Callable[[PrunerBuilder], PrunerBuilder]:
    def wrap(fn: PrunerBuilder) -> PrunerBuilder:
        PRUNERS[name] = fn
        return fn

    return wrap


def _lookup(registry: dict, name: str, what: str):
    if name not in registry:
        raise ConfigError(f"search.{what}.name: unknown {what} {name!r}; expected one of: {', '.join(sorted(registry))}")
    return registry[name]


def make_sampler(cfg: StudyConfig, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded by ``seed`` (default ``search.sampler.seed``)."""
    return _lookup(SAMPLERS, cfg.search.sampler.name, "sampler")(cfg, cfg.search.sampler.seed if seed is None else seed)


def make_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    return _lookup(PRUNERS, cfg.search.pruner.name, "pruner")(cfg)


@register_sampler("tpe")
def _tpe(cfg: StudyConfig, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed)


@register_sampler("random")
def _random(cfg: StudyConfig, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


class _ClaimedGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, without its stop at the end of the grid.

    ``GridSampler.after_trial`` calls ``study.stop()`` once every point has been tried, which
    Optuna allows only inside ``Study.optimize``; ablate's workers claim and count their trials
    themselves (``ablate.study.worker``) and stop at ``search.n_trials``, so the stop is not needed,
    and it raised as soon as a search's budget covered its grid. Past the end of the grid the
    sampler tries points again, as Optuna's does.
    """

    def after_trial(self, study, trial, state, values) -> None:
        pass


@register_sampler("grid")
def _grid(cfg: StudyConfig, seed: int) -> optuna.samplers.BaseSampler:
    space = {p: list(d.choices) for p, d in cfg.search.space.items() if isinstance(d, Choices)}
    return _ClaimedGridSampler(space, seed=seed)


@register_pruner("median")
def _median(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    p = cfg.search.pruner
    return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_epochs)


@register_pruner("hyperband")
def _hyperband(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    p = cfg.search.pruner
    return optuna.pruners.HyperbandPruner(min_resource=max(1, p.warmup_epochs), max_resource=cfg.train.epochs)


@register_pruner("none")
def _none(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner()
