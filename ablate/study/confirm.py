"""The winner of a search confirmed on fresh seeds (``search.confirm: {top: K, seeds: M}``).

A search's best trial is the luckiest of many noisy runs: its validation accuracy overstates
what its settings give on another seed (the winner's curse). After an arm's search, its K best
completed trials are each run again on the same M confirmation seeds, as trials of
``<name>:confirm:<arm>`` (enqueued once each, claimed and retried like every other trial, so they
show in the dashboard and survive a killed worker); the arm's repeats then run with the settings
whose mean validation accuracy over those M runs is best. The search trial's own value is not in
that mean: it is the biased one. The confirmation runs are part of the arm's budget
(``search.n_trials``), so every arm spends the same. Confirmation seeds lie far from every seed
the study runs otherwise (``ablate.seeding``; the study file is refused where they meet), so no
search, repeat or ensemble member run is a confirmation run.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ablate.config import StudyConfig, with_overrides
from ablate.errors import ConfigError
from ablate.seeding import confirmation_seeds
from ablate.study import adapter
from ablate.study.cells import cell_states
from ablate.study.claims import claim_lock, requeue_dead_trials
from ablate.study.events import Events, QuietEvents
from ablate.study.paths import StudyPaths
from ablate.study.provenance import provenance
from ablate.study.search import Search, search_base
from ablate.study.storage import confirm_study, open_storage, search_study
from ablate.study.trial import run_trial
from ablate.study.worker import work

__all__ = ["confirm_seeds", "Candidate", "Confirmation", "run_confirm", "confirmation"]


def confirm_seeds(cfg: StudyConfig) -> list[int]:
    """The M confirmation seeds, the same for every candidate (their runs pair by seed); the
    study file was refused if any other run of the study has one of them (``StudyConfig``)."""
    assert cfg.search.confirm is not None
    return list(confirmation_seeds(cfg.search.confirm.seeds))


# Failures of one confirmation run before it is given up, as for a search trial.
MAX_RETRY = 2


@dataclass(frozen=True)
class Candidate:
    """One of a search's best trials and its confirmation runs' validation accuracies."""

    trial: int  # its number in the search
    params: dict[str, Any]
    search_value: float
    values: tuple[float, ...]  # one per confirmation seed that completed, in seed order
    seeds: tuple[int, ...] = ()  # the seed of each value

    @property
    def mean(self) -> float:
        """Over every completed confirmation run; NaN without any."""
        return statistics.fmean(self.values) if self.values else float("nan")

    def mean_over(self, seeds: tuple[int, ...]) -> float:
        """Over the runs of ``seeds`` alone (each of which it completed); NaN for none."""
        chosen = [v for v, s in zip(self.values, self.seeds) if s in seeds]
        return statistics.fmean(chosen) if chosen else float("nan")


@dataclass(frozen=True)
class Confirmation:
    """A search's candidates (best search value first) and the one confirmed."""

    candidates: tuple[Candidate, ...]
    seeds: int

    @property
    def paired_seeds(self) -> tuple[int, ...]:
        """The seeds that every candidate with a completed run completed: the winner is chosen on
        these alone, since a mean over other seeds would compare the seeds' luck, not the settings."""
        ran = [set(c.seeds) for c in self.candidates if c.values]
        return tuple(sorted(set.intersection(*ran))) if ran else ()

    @property
    def winner(self) -> Candidate:
        """Best mean over the paired seeds (:attr:`paired_seeds`); among equal means the better
        search trial. When the candidates share no seed the confirmation decides nothing and the
        search's order stands.

        Raises:
            ConfigError: no confirmation run completed.
        """
        ran = [c for c in self.candidates if c.values]
        if not ran:
            raise ConfigError("search.confirm: no confirmation run completed; run the search phase again")
        paired = self.paired_seeds
        return max(ran, key=lambda c: (c.mean_over(paired) if paired else 0.0, -self.candidates.index(c)))

    def record(self, top: int, budget: int) -> dict[str, Any]:
        """As ``tuning.json`` keeps it (its ``confirm`` key). ``budget``: the search's whole budget
        (``search.n_trials``); ``runs``: the confirmation runs planned (candidates x seeds);
        ``shortfall``: the runs of the budget never made because fewer than ``top`` search
        trials completed (each arm should spend the same)."""
        winner = self.winner.trial  # raises first when no run completed
        runs = len(self.candidates) * self.seeds
        return {"top": top, "seeds": self.seeds,
                "candidates": [{"trial": c.trial, "search_value": c.search_value, "values": list(c.values),
                                "seeds": list(c.seeds), "mean": c.mean if c.values else None}
                               for c in self.candidates],
                "paired_seeds": list(self.paired_seeds), "budget": budget, "runs": runs,
                "shortfall": top * self.seeds - runs,
                "search_winner": self.candidates[0].trial, "confirm_winner": winner}


def _best_trials(study: optuna.Study, top: int) -> list[FrozenTrial]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(complete, key=lambda t: (-t.value, t.number))[:top]


def _cell(trial: FrozenTrial) -> tuple[Any, Any]:
    """(candidate, seed) of a confirmation trial (:func:`ablate.study.adapter.cell_params`)."""
    p = adapter.cell_params(trial)
    return p.get("candidate"), p.get("seed")


def _enqueue(study: optuna.Study, paths: StudyPaths, best: list[FrozenTrial], seeds: list[int]) -> tuple[int, int]:
    """Enqueue each (candidate, seed) not yet COMPLETE, RUNNING or WAITING, unless it failed more
    than MAX_RETRY times; returns how many cells there are and how many were given up on."""
    with claim_lock(adapter.storage_of(study), paths.storage, study.study_name):
        requeue_dead_trials(study, paths.storage, max_retry=MAX_RETRY)
        states = cell_states(study.get_trials(deepcopy=False), key=_cell)
        given_up = 0
        for t in best:
            for seed in seeds:
                if (t.number, seed) in states.live:
                    continue
                if states.given_up((t.number, seed), MAX_RETRY):
                    given_up += 1
                    continue
                study.enqueue_trial({"candidate": t.number, "seed": seed},
                                    user_attrs={"settings": dict(t.params), "search_value": t.value})
    return len(best) * len(seeds), given_up


def run_confirm(cfg: StudyConfig, paths: StudyPaths, events: Events | None = None, max_trials: int | None = None,
                arm: str | None = None, replicate: int = 0) -> optuna.Study:
    """Run the confirmation of a finished search until each of its candidates has run on every
    confirmation seed, a failed run enqueued again until it has failed more than MAX_RETRY times
    (as the repeats do). The search must be finished (``run_search`` returns only then)."""
    events = events or QuietEvents()
    storage = open_storage(paths.storage)
    search = search_study(cfg, storage, arm, replicate)
    study = confirm_study(cfg, storage, arm, replicate)
    study.set_user_attr("ablate:provenance", provenance(paths))
    assert cfg.search.confirm is not None
    best = _best_trials(search, cfg.search.confirm.top)
    seeds = confirm_seeds(cfg)
    base = search_base(cfg, arm)
    numbers = [t.number for t in best]

    def objective(trial: optuna.Trial) -> float:
        candidate = trial.suggest_categorical("candidate", numbers)
        seed = trial.suggest_categorical("seed", seeds)
        run_cfg = with_overrides(base, trial.user_attrs["settings"], f"confirm trial {trial.number}")
        run_cfg = with_overrides(run_cfg, {"train.seed": seed}, "confirmation seed")
        trial.set_user_attr("candidate", candidate)
        return run_trial(trial, run_cfg, paths, events, study.study_name, prune=False)

    label = Search(arm, replicate).label().replace("search", "confirm", 1)
    planned = None
    while True:
        cells, given_up = _enqueue(study, paths, best, seeds)
        # Waits while others run confirmation runs; returns once none is waiting or running.
        ran = work(study, paths, cells - given_up, objective, events, only_waiting=True, max_retry=MAX_RETRY,
                   max_trials=max_trials, label=label)
        if max_trials is not None or (ran == 0 and given_up == planned):
            break  # nothing ran and nothing more was given up: no failed run left to retry
        planned = given_up
    return study


def confirmation(cfg: StudyConfig, paths: StudyPaths, arm: str | None = None, replicate: int = 0) -> Confirmation:
    """What a search's confirmation found, read from the storage (recomputed, never kept)."""
    assert cfg.search.confirm is not None
    storage = open_storage(paths.storage)
    best = _best_trials(search_study(cfg, storage, arm, replicate), cfg.search.confirm.top)
    complete = cell_states(confirm_study(cfg, storage, arm, replicate).get_trials(deepcopy=False), key=_cell).complete
    seeds = confirm_seeds(cfg)

    def candidate(t: FrozenTrial) -> Candidate:
        ran = tuple(s for s in seeds if (t.number, s) in complete)
        values = tuple(float(complete[(t.number, s)].value) for s in ran)
        return Candidate(t.number, dict(t.params), float(t.value), values, ran)

    return Confirmation(tuple(candidate(t) for t in best), cfg.search.confirm.seeds)
