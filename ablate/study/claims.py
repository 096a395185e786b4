"""Claiming work with many workers on one storage: a lock that dies with its holder, and the
trials of dead workers failed and enqueued again.

Workers on one machine or many share the storage; each claims work under a lock (a PostgreSQL
advisory lock, or a lock file beside a journal or SQLite file), so together they run exactly the
requested trials. A worker that dies leaves a RUNNING trial behind: RDB storages fail it through
Optuna's heartbeat and ``RetryHeartbeatStaleTrialCallback`` enqueues it again with the same
parameters; journal and SQLite files do the same for trials whose worker process on this host is
gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from collections.abc import Iterator
from typing import Any

import filelock
import optuna
import psutil
from optuna.trial import FrozenTrial, TrialState

from ablate.study import adapter
from ablate.study.paths import storage_kind

__all__ = ["claim_lock", "holds_claim_lock", "worker_id", "tag_claimed", "pid_alive", "half_claimed",
           "requeue_dead_trials"]

WORKER_TAG = "ablate:worker"  # system attribute: who runs a trial


@contextlib.contextmanager
def claim_lock(storage: optuna.storages.BaseStorage | None, url: str, name: str) -> Iterator[None]:
    """Serialise 'count the trials, then ask for one' across every worker of a study.

    Both locks die with their holder, so a worker killed inside never blocks the others:
    PostgreSQL drops a session's advisory lock when its connection closes, and the kernel drops
    a flock (filelock's FileLock on Linux and macOS) when its process exits.
    """
    kind = storage_kind(url)
    if kind == "rdb" and url.startswith("postgresql"):
        from sqlalchemy import text

        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        with adapter.rdb_engine(storage).connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    if kind in ("journal", "sqlite"):
        path = url.split(":///", 1)[1] + f".{hashlib.sha256(name.encode()).hexdigest()[:8]}.claim"
        with filelock.FileLock(path):
            yield
        return
    yield  # another RDB (MySQL, ...): Optuna's own transactions only


def holds_claim_lock(url: str) -> bool:
    """Whether :func:`claim_lock` really locks for this storage (see there)."""
    return storage_kind(url) != "rdb" or url.startswith("postgresql")


def worker_id() -> dict[str, Any]:
    """Who runs a trial: host, pid and the process's start time (a reused pid starts later)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}


def tag_claimed(study: optuna.Study, trial: optuna.Trial) -> None:
    """Beat once, then tag the trial with its worker and number, both before the claim lock is let
    go (see :func:`half_claimed`)."""
    adapter.record_heartbeat(study, trial)
    adapter.storage_of(study).set_trial_system_attr(adapter.trial_id(trial), WORKER_TAG,
                                                    {**worker_id(), "trial": trial.number})


def pid_alive(pid: int, started: float | None = None) -> bool:
    """Whether process ``pid`` on this host runs and, given ``started``, is the one that started
    then; a zombie (killed, not yet reaped by its parent) is dead."""
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 0.01
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def half_claimed(trial: FrozenTrial) -> bool:
    """A RUNNING trial whose claim never finished: :func:`tag_claimed` tags each trial with its
    worker and number last, under the claim lock, so a trial seen untagged by the holder of that
    lock belongs to a worker that died inside it (a retry carries its dead predecessor's tag, with
    the predecessor's number). On PostgreSQL such a trial never beat, so Optuna's heartbeat check
    would leave it RUNNING forever."""
    return (trial.system_attrs.get(WORKER_TAG) or {}).get("trial") != trial.number


def requeue_dead_trials(study: optuna.Study, url: str, max_retry: int) -> list[int]:
    """Fail RUNNING trials whose worker is dead and enqueue each again with the same parameters.

    RDB servers: Optuna's heartbeat decides (``fail_stale_trials``). Journal and SQLite files
    have no heartbeat: a trial is dead when its worker ran on this host and that process is gone.
    On every storage that :func:`claim_lock` locks, the caller holds that lock, and a trial whose
    claim never finished is dead too (:func:`half_claimed`).
    Returns the numbers of the trials failed here.
    """
    failed = _failed_by_heartbeat(study) if storage_kind(url) == "rdb" else []
    storage = adapter.storage_of(study)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _death(t, url)
        if reason is None:
            continue
        try:
            storage.set_trial_user_attr(adapter.trial_id(t), "fail_reason", reason)
            storage.set_trial_state_values(adapter.trial_id(t), TrialState.FAIL)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker got there first
        failed.append(t.number)
        # ``t`` was read while the trial ran, so its retry does not inherit the fail_reason.
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, t)
    return failed


def _failed_by_heartbeat(study: optuna.Study) -> list[int]:
    """Optuna fails stale trials and its callback enqueues the retries (which record the failed
    trial's number as the system attribute 'failed_trial')."""
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    optuna.storages.fail_stale_trials(study)
    after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return sorted(before - after)


def _death(trial: FrozenTrial, url: str) -> str | None:
    """Why a RUNNING trial's worker is known dead, or None when it may be alive."""
    worker = trial.system_attrs.get(WORKER_TAG) or {}
    if holds_claim_lock(url) and half_claimed(trial):
        return f"worker {worker.get('pid')} on {worker.get('host')} died while claiming it"
    host = socket.gethostname()
    if (storage_kind(url) != "rdb" and worker.get("host") == host
            and not pid_alive(int(worker.get("pid", -1)), worker.get("started"))):
        return f"worker {worker.get('pid')} on {host} died"
    return None
