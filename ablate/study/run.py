"""``run_study``: the phases of a study in order, each to its end, as Optuna's ``optimize`` holds
its loop. A study file gives up to three phases: the search, the seeded repeats and the report;
the report is written from the storage by whoever runs this (the report layer sits above)."""

from __future__ import annotations

from collections.abc import Callable

from ablate.config import StudyConfig
from ablate.errors import ConfigError
from ablate.study.cells import repeat_cells
from ablate.study.events import Events, QuietEvents
from ablate.study.paths import StudyPaths
from ablate.study.repeats import repeats_progress, run_repeats
from ablate.study.search import run_searches, searches
from ablate.study.storage import open_storage, repeats_study

__all__ = ["PHASES", "TRAINING_PHASES", "study_phases", "phase_trials", "planned_repeats", "run_study"]

PHASES = ("search", "repeats", "report")
TRAINING_PHASES = ("search", "repeats")


def study_phases(cfg: StudyConfig, phase: str, where: str = "study") -> tuple[str, ...]:
    """The phases ``--phase PHASE`` (or ``all``) runs for this study: a study without repeats
    has its search only.

    Raises:
        ConfigError: ``repeats`` or ``report`` asked of a study file without a repeats section.
    """
    phases = PHASES if phase == "all" else (phase,)
    if cfg.repeats is None:
        if phase in ("repeats", "report"):
            raise ConfigError(f"{where}: --phase {phase}: the study file has no 'repeats' section")
        phases = tuple(p for p in phases if p == "search")
    return phases


def planned_repeats(cfg: StudyConfig, paths: StudyPaths) -> int:
    """The repeat cells planned: all of a fixed design, the looks reached by a sequential one."""
    assert cfg.repeats is not None
    if not cfg.repeats.sequential:  # every seed is planned at once: no need to read the storage
        return len(repeat_cells(cfg))
    trials = repeats_study(cfg, open_storage(paths.storage)).get_trials(deepcopy=False)
    return len(repeat_cells(cfg, repeats_progress(cfg, trials).seeds))


def phase_trials(cfg: StudyConfig, phase: str) -> int:
    """The trials a training phase runs at most: every search's budget; every repeat cell."""
    if phase == "search":
        return cfg.search.n_trials * len(searches(cfg))
    return len(repeat_cells(cfg))


def run_study(cfg: StudyConfig, paths: StudyPaths, phases: tuple[str, ...], *, events: Events | None = None,
              max_trials: int | None = None, run_phase: Callable[[str], None] | None = None) -> None:
    """Run the training phases among ``phases`` (search, then repeats), each to its end.

    ``run_phase`` runs a phase elsewhere and returns once it is done (``ablate run --workers``
    starts worker processes, each of which calls this without it); by default it runs here.
    ``max_trials`` caps the trials of each phase run here (tests: stop early).
    """
    events = events or QuietEvents()
    for phase in (p for p in TRAINING_PHASES if p in phases):
        if run_phase is not None:
            run_phase(phase)
            continue
        events.phase(phase, phase_trials(cfg, phase))
        if phase == "search":
            run_searches(cfg, paths, events, max_trials=max_trials)
        else:
            run_repeats(cfg, paths, events, max_trials=max_trials)
