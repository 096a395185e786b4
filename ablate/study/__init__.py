"""The one place that talks to Optuna: storages, claims, the searches, the seeded repeats.

A study file gives Optuna studies in one storage: the hyperparameter search (``<name>``, or
with ``repeats.params: per-arm`` one ``<name>:search:<arm>`` per arm, each with the same
budget, sampler and pruner over the dimensions that apply to that arm) and ``<name>:repeats``
(every arm x data set x seed cell, enqueued once each, with the settings it runs with decided
then and stored on it). Workers on one machine or many share the storage and claim work under a
lock, so that together they run exactly the requested trials (:mod:`ablate.study.claims`).

Modules, in the order data flows through them: ``paths`` (where things live), ``adapter``
(Optuna's private names, behind one check), ``samplers`` (sampler and pruner registries),
``storage``, ``claims``, ``worker`` (the claim-run-tell loop), ``trial`` (one training run in a
trial), ``search``, ``cells`` and ``repeats``, ``rows`` and ``results`` (what a report reads),
``plan`` (``ablate plan``), ``check`` and ``run`` (``run_study``, the phases in order).
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import optuna

from ablate.study.cells import CellSettings, RepeatCell, look_of, repeat_cells
from ablate.study.check import check_study, load_study_file
from ablate.study.claims import claim_lock, pid_alive, requeue_dead_trials, worker_id
from ablate.study.events import Events, QuietEvents
from ablate.study.paths import StudyPaths, redact, resolve_paths, storage_kind
from ablate.study.provenance import git_commit, provenance
from ablate.study.repeats import (RepeatsProgress, cell_settings, fuse_count, repeat_config, repeats_progress,
                                  run_repeats, sequential_settings)
from ablate.study.run import PHASES, phase_trials, planned_repeats, run_study, study_phases
from ablate.study.confirm import confirmation, run_confirm
from ablate.study.search import Search, arm_space, run_search, run_searches, searches
from ablate.study.storage import confirm_study, open_storage, repeats_study, search_study

# What a report or ``ablate plan`` reads, imported on first use: these pull in ablate.stats
# (statsmodels) and pandas, which every worker process and ``ablate check`` would otherwise pay
# for (``import ablate.study`` took 2.8 s with them, 1.6 s without).
_LAZY = {
    "StudyResults": "results", "collect_results": "results", "earlier_results": "results",
    "analysis_settings": "results", "search_summaries": "results", "note_on_dashboard": "results",
    "earlier_sd": "plan", "plan_study": "plan",
}

__all__ = [
    "PHASES", "StudyPaths", "resolve_paths", "redact", "storage_kind", "check_study", "load_study_file",
    "open_storage", "search_study", "confirm_study", "repeats_study", "claim_lock", "pid_alive", "worker_id", "requeue_dead_trials",
    "Events", "QuietEvents", "Search", "searches", "arm_space", "run_search", "run_searches", "run_confirm",
    "confirmation",
    "RepeatCell", "CellSettings", "repeat_cells", "look_of", "cell_settings", "repeat_config", "fuse_count",
    "run_repeats", "sequential_settings", "RepeatsProgress", "repeats_progress",
    "StudyResults", "collect_results", "earlier_results", "analysis_settings", "search_summaries",
    "note_on_dashboard", "earlier_sd", "plan_study", "provenance", "git_commit",
    "study_phases", "phase_trials", "planned_repeats", "run_study",
]

optuna.logging.set_verbosity(optuna.logging.WARNING)
# Heartbeat retries and artifacts are marked experimental; they are exactly what we rely on.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"ablate.study.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ablate.study' has no attribute {name!r}")
