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

SamplerBuilder = Callable[[StudyConfig], optuna.samplers.BaseSampler]
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


def make_sampler(cfg: StudyConfig) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded by ``search.sampler.seed``."""
    return _lookup(SAMPLERS, cfg.search.sampler.name, "sampler")(cfg)


def make_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    return _lookup(PRUNERS, cfg.search.pruner.name, "pruner")(cfg)


@register_sampler("tpe")
def _tpe(cfg: StudyConfig) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=cfg.search.sampler.seed)


@register_sampler("random")
def _random(cfg: StudyConfig) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=cfg.search.sampler.seed)


@register_sampler("grid")
def _grid(cfg: StudyConfig) -> optuna.samplers.BaseSampler:
    space = {p: list(d.choices) for p, d in cfg.search.space.items() if isinstance(d, Choices)}
    return optuna.samplers.GridSampler(space, seed=cfg.search.sampler.seed)


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
