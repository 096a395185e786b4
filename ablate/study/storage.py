"""Opening a study's Optuna storage and the Optuna studies a study file gives.

A study file gives Optuna studies in one storage: the hyperparameter search (``<name>``, or
with ``repeats.params: per-arm`` one ``<name>:search:<arm>`` per arm) and ``<name>:repeats``
(every arm x data set x seed cell, enqueued once each).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import optuna

from ablate.config import StudyConfig
from ablate.errors import StorageError
from ablate.study import adapter
from ablate.study.paths import redact, storage_kind
from ablate.study.samplers import make_pruner, make_sampler

__all__ = ["HEARTBEAT_INTERVAL", "GRACE_PERIOD", "open_storage", "search_study", "confirm_study", "repeats_study",
           "search_study_name", "confirm_study_name", "repeats_study_name", "sampler_seed"]

# Seconds between a running trial's heartbeats (RDB storages), and how long without one makes
# a trial stale. ABLATE_HEARTBEAT_INTERVAL / ABLATE_GRACE_PERIOD override them (the kill tests
# use 1 and 4 s); a grace period must outlast the longest pause of a live worker.
HEARTBEAT_INTERVAL = int(os.environ.get("ABLATE_HEARTBEAT_INTERVAL", 10))
GRACE_PERIOD = int(os.environ.get("ABLATE_GRACE_PERIOD", 30))


def open_storage(url: str, *, max_retry: int = 2) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; creates the folder of a file-based storage.

    RDB servers get a heartbeat so that a dead worker's trial is failed and enqueued again.

    Raises:
        StorageError: a missing driver or a storage that cannot be opened (one line, no secrets).
    """
    adapter.check_once()
    kind = storage_kind(url)
    try:
        if kind == "journal":
            path = Path(url[len("journal:///") - 1:])
            path.parent.mkdir(parents=True, exist_ok=True)
            backend = optuna.storages.journal.JournalFileBackend(
                str(path), lock_obj=optuna.storages.journal.JournalFileOpenLock(str(path) + ".lock")
            )
            return optuna.storages.JournalStorage(backend)
        if kind == "sqlite":
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=HEARTBEAT_INTERVAL,
            grace_period=GRACE_PERIOD,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
            engine_kwargs={"pool_pre_ping": True},
        )
    except (ImportError, ModuleNotFoundError) as exc:
        raise StorageError(f"storage {redact(url)}: missing driver ({exc}); pip install 'psycopg[binary]'") from None
    except Exception as exc:  # sqlalchemy.exc.OperationalError and friends: one line, no secrets
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError(f"storage {redact(url)}: cannot open ({redact(first)})") from None


def search_study_name(cfg: StudyConfig, arm: str | None = None, replicate: int = 0) -> str:
    """``<name>`` (one search for the study) or ``<name>:search:<arm>``; ``:r<k>`` for replicate k > 0."""
    name = cfg.name if arm is None else f"{cfg.name}:search:{arm}"
    return name if replicate == 0 else f"{name}:r{replicate}"


def confirm_study_name(cfg: StudyConfig, arm: str | None = None, replicate: int = 0) -> str:
    """``<name>:confirm`` or ``<name>:confirm:<arm>``; ``:r<k>`` for replicate k > 0."""
    name = f"{cfg.name}:confirm" if arm is None else f"{cfg.name}:confirm:{arm}"
    return name if replicate == 0 else f"{name}:r{replicate}"


def sampler_seed(cfg: StudyConfig, replicate: int) -> int:
    """The sampler seed of search replicate ``replicate``: ``search.sampler.seed`` for the first,
    for the others a seed derived from it (NumPy's SeedSequence), so a study file still fixes
    every search and no two replicates share a seed."""
    if replicate == 0:
        return cfg.search.sampler.seed
    return int(np.random.SeedSequence(cfg.search.sampler.seed, spawn_key=(replicate,)).generate_state(1)[0])


def repeats_study_name(cfg: StudyConfig) -> str:
    return f"{cfg.name}:repeats"


def search_study(cfg: StudyConfig, storage: optuna.storages.BaseStorage, arm: str | None = None,
                 replicate: int = 0) -> optuna.Study:
    """The search of the whole study (``arm=None``), or of one arm with per-arm tuning; of one of
    ``search.replicates`` independent searches."""
    return _study(search_study_name(cfg, arm, replicate), storage, make_sampler(cfg, sampler_seed(cfg, replicate)),
                  make_pruner(cfg))


def confirm_study(cfg: StudyConfig, storage: optuna.storages.BaseStorage, arm: str | None = None,
                  replicate: int = 0) -> optuna.Study:
    """The confirmation runs of a search's best trials: every one enqueued, none pruned."""
    return _study(confirm_study_name(cfg, arm, replicate), storage, optuna.samplers.RandomSampler(seed=0),
                  optuna.pruners.NopPruner())


def repeats_study(cfg: StudyConfig, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """``<name>:repeats``: its sampler never samples (every cell is enqueued) and nothing is pruned
    (repeats train every epoch, by design)."""
    return _study(repeats_study_name(cfg), storage, optuna.samplers.RandomSampler(seed=0),
                  optuna.pruners.NopPruner())


def _study(name: str, storage: optuna.storages.BaseStorage, sampler: optuna.samplers.BaseSampler,
           pruner: optuna.pruners.BasePruner) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                direction="maximize", load_if_exists=True)
    study.set_metric_names(["validation accuracy"])  # optuna-dashboard's axis label
    return study
