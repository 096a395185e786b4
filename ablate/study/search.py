"""The hyperparameter search: one study (``<name>``), or with per-arm tuning one per arm
(``<name>:search:<arm>``), each with the same budget, sampler and pruner over the dimensions
that apply to that arm. Trials are chosen on validation accuracy only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ablate.config import Choices, Dimension, RunConfig, StudyConfig, base_run, get_path, with_overrides
from ablate.errors import ConfigError
from ablate.study.events import Events, QuietEvents
from ablate.study.paths import StudyPaths
from ablate.study.provenance import provenance
from ablate.study.storage import confirm_study, open_storage, search_study
from ablate.study.trial import run_trial
from ablate.study.worker import work

__all__ = ["Search", "searches", "search_base", "arm_space", "run_search", "run_searches", "best_trial"]


@dataclass(frozen=True)
class Search:
    """One search of a study: of one arm (per-arm tuning) or of the study (``arm`` None), and
    which of the ``search.replicates`` independent searches it is."""

    arm: str | None
    replicate: int = 0

    def label(self) -> str:
        what = "search" if self.arm is None else f"search {self.arm}"
        return what if self.replicate == 0 else f"{what} r{self.replicate}"


def searches(cfg: StudyConfig) -> list[Search]:
    """The searches a study runs: one per arm with per-arm tuning, else one, each
    ``search.replicates`` times; none without a search budget."""
    if cfg.search.n_trials == 0:
        return []
    arms = list(cfg.arms) if cfg.tuning == "per-arm" else [None]
    return [Search(arm, r) for arm in arms for r in range(cfg.search.replicates)]


def search_base(cfg: StudyConfig, arm: str | None) -> RunConfig:
    """What a search's trials start from: the study's base run, with the arm's own settings."""
    return base_run(cfg) if arm is None else cfg.arms[arm].run


def _inactive(path: str, effective: Callable[[str], Any]) -> bool:
    """A setting that cannot matter given what was already chosen is not sampled.

    The constraint's weight and target when the constraint is off; every DueHeadNet-only
    setting for a single-head model.
    """
    dual_only = path.startswith(("model.constraint.", "model.model1.", "model.head"))
    if dual_only and effective("model.kind") in ("single", "ensemble"):
        return True
    return path.startswith("model.constraint.") and path != "model.constraint.on" and not effective("model.constraint.on")


def arm_space(cfg: StudyConfig, arm: str | None) -> dict[str, Dimension]:
    """The search dimensions that apply to an arm: those its own settings do not fix.

    (Dimensions the arm switches off, such as the constraint's weight for NFMCE, are left out
    when sampled: see ``_inactive``.)"""
    if arm is None:
        return dict(cfg.search.space)
    fixed = cfg.arms[arm].overrides
    return {path: dim for path, dim in cfg.search.space.items() if path not in fixed}


def _suggest(trial: optuna.Trial, base: RunConfig, space: dict[str, Dimension]) -> dict[str, Any]:
    chosen: dict[str, Any] = {}

    def effective(path: str) -> Any:
        return chosen[path] if path in chosen else get_path(base, path)

    # Switches first, so that what they switch off is never sampled.
    order = sorted(space, key=lambda p: (p not in ("model.kind", "model.constraint.on"), p))
    for path in order:
        if _inactive(path, effective):
            continue
        dim = space[path]
        if isinstance(dim, Choices):
            chosen[path] = trial.suggest_categorical(path, dim.choices)
        elif isinstance(get_path(base, path), int) and not isinstance(get_path(base, path), bool):
            step = int(dim.step or 1)
            chosen[path] = trial.suggest_int(path, int(dim.low), int(dim.high), step=step, log=dim.log)
        else:
            chosen[path] = trial.suggest_float(path, dim.low, dim.high, step=dim.step, log=dim.log)
    return chosen


def run_search(cfg: StudyConfig, paths: StudyPaths, events: Events | None = None,
               max_trials: int | None = None, arm: str | None = None, replicate: int = 0) -> optuna.Study:
    """Run search trials until ``search.search_trials`` of them have finished (complete or pruned):
    the budget ``search.n_trials`` less the confirmation runs.

    With ``arm``, the search of that arm alone (``<name>:search:<arm>``): the study's settings
    with the arm's own, over the dimensions that apply to it (``arm_space``). ``replicate``: which
    independent search (its sampler seed derives from the study's). Failed trials (NaN loss, out
    of memory) are recorded with their reason and do not count; re-running a finished study runs
    nothing.
    """
    events = events or QuietEvents()
    study = search_study(cfg, open_storage(paths.storage), arm, replicate)
    study.set_user_attr("ablate:provenance", provenance(paths))
    base = search_base(cfg, arm)
    space = arm_space(cfg, arm)

    def objective(trial: optuna.Trial) -> float:
        run_cfg = with_overrides(base, _suggest(trial, base, space), f"trial {trial.number}")
        if arm is not None:
            trial.set_user_attr("arm", arm)
        return run_trial(trial, run_cfg, paths, events, study.study_name, prune=True)

    work(study, paths, cfg.search.search_trials, objective, events, only_waiting=False,
         max_retry=2, max_trials=max_trials, label=Search(arm, replicate).label())
    return study


def run_searches(cfg: StudyConfig, paths: StudyPaths, events: Events | None = None,
                 max_trials: int | None = None) -> dict[Search, optuna.Study]:
    """Every search of the study (:func:`searches`), one after the other, each to its budget,
    each followed by the confirmation of its best trials when the study asks for it.

    ``max_trials`` caps the trials run by this call over all of them (tests: stop early).
    """
    from ablate.study.confirm import run_confirm

    studies: dict[Search, optuna.Study] = {}
    left = max_trials
    storage = open_storage(paths.storage)
    for s in searches(cfg):
        steps = [(run_search, search_study)] + ([(run_confirm, confirm_study)] if cfg.search.confirm else [])
        for step, opened in steps:
            if left is not None and left <= 0:
                return studies
            # counting what ended lists every trial: only for the cap (tests), never on a real run
            before = _ended(opened(cfg, storage, s.arm, s.replicate)) if left is not None else 0
            study = step(cfg, paths, events, max_trials=left, arm=s.arm, replicate=s.replicate)
            studies.setdefault(s, study)
            if left is not None:
                left -= _ended(study) - before
    return studies


def _ended(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))


def best_trial(study: optuna.Study, what: str) -> FrozenTrial:
    """The search's best completed trial (the earliest of equals).

    Raises:
        ConfigError: the search has no completed trial (``what`` is the tuning method named).
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ConfigError(
            f"repeats.params: {what}: the search {study.study_name!r} has no completed trial yet; "
            f"run the search first (ablate run STUDY --phase search) or set repeats.params: fixed"
        )
    return max(complete, key=lambda t: (t.value, -t.number))
