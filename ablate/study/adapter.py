"""Every private Optuna name that ablate relies on, in one place, each behind one function.

ablate claims trials itself (count, then ``ask``, under a lock) instead of calling
``Study.optimize``, so it needs a few things that Optuna keeps to itself. Each function below
says why the public API does not serve. ``check()`` tries them all on an in-memory study and
raises :class:`OptunaChanged`, naming the missing name and this module, when an Optuna release
has moved one: ``open_storage`` calls it once per process, so an upgrade fails loudly at the
first study instead of quietly running a cell twice. pyproject.toml caps ``optuna`` below the
first minor release that the tests have not seen.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from ablate.errors import AblateError

__all__ = ["OptunaChanged", "cell_params", "check", "check_once", "enqueued_params", "heartbeat", "rdb_engine",
           "record_heartbeat", "storage_of", "trial_id"]

MODULE = "ablate/study/adapter.py"


class OptunaChanged(AblateError):
    """The installed Optuna lacks a private name that ablate relies on."""


def _changed(name: str, why: str = "") -> OptunaChanged:
    return OptunaChanged(
        f"optuna {optuna.__version__} has no {name}, which {MODULE} relies on{why}; "
        f"install the Optuna that pyproject.toml allows (pip install 'optuna<5.1') or adapt {MODULE}"
    )


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study writes to (``Study._storage``).

    Why private: ``Study`` exposes no storage, and the trial-level writes ablate needs outside
    a running trial (failing a dead worker's trial, tagging a claimed trial with its worker)
    exist only on the storage (``set_trial_state_values``, ``set_trial_system_attr``).
    """
    try:
        return study._storage
    except AttributeError:
        raise _changed("Study._storage") from None


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (``_trial_id``), which every storage method takes.

    Why private: the public ``number`` counts within a study; storages are addressed by id and
    Optuna offers no public way from one to the other.
    """
    try:
        return trial._trial_id
    except AttributeError:
        raise _changed(f"{type(trial).__name__}._trial_id") from None


def heartbeat(study: optuna.Study, trial: optuna.Trial) -> contextlib.AbstractContextManager:
    """Beat a trial's heart while it runs, as ``Study.optimize`` does (a no-op without heartbeat).

    Why private: the heartbeat thread is started only inside ``Study.optimize``; ablate asks
    for its trials itself (to count and claim them under a lock), so it starts the thread itself
    through ``optuna.storages._heartbeat.get_heartbeat_thread``.
    """
    try:
        from optuna.storages._heartbeat import get_heartbeat_thread
    except ImportError:
        raise _changed("optuna.storages._heartbeat.get_heartbeat_thread") from None
    return get_heartbeat_thread(trial_id(trial), storage_of(study))


def record_heartbeat(study: optuna.Study, trial: optuna.Trial) -> None:
    """Record one heartbeat now, where the storage keeps them (RDB storages); else nothing.

    Why: Optuna's stale-trial check skips a RUNNING trial that has never beaten, so a worker
    killed between ``ask`` and the heartbeat thread's first beat would leave its trial RUNNING
    forever. ``record_heartbeat`` is public on RDBStorage; the study's wrapper is reached
    through :func:`storage_of`.
    """
    storage = storage_of(study)
    if getattr(storage, "get_heartbeat_interval", lambda: None)() is not None:
        storage.record_heartbeat(trial_id(trial))


def enqueued_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters a trial was enqueued with (the ``fixed_params`` system attribute).

    Why private: a WAITING trial, or a RUNNING one before its first ``suggest``, has empty
    ``params``; ``Study.enqueue_trial`` keeps what it was given only in this system attribute,
    and ``RetryHeartbeatStaleTrialCallback`` carries it over to the retry.
    """
    return dict(trial.system_attrs.get("fixed_params", {}))


def cell_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters that name a trial's cell: those it was enqueued with, which a retry carries
    too; ``params`` only for a trial never enqueued.

    Not ``params`` first: they fill in one suggest at a time, so a worker killed between its
    suggests leaves a trial (and a retry copying it) with part of them, and reading that as the
    cell made the cell look missing and be enqueued and run again (the kill soak found such a
    cell run twice).
    """
    return enqueued_params(trial) or dict(trial.params)


def rdb_engine(storage: optuna.storages.BaseStorage) -> Any:
    """The SQLAlchemy engine of an RDB storage, also when a study wraps it (``_backend``).

    Why private: PostgreSQL advisory locks need a connection of their own; ``RDBStorage.engine``
    is public, but a study wraps its RDBStorage in a private cache whose ``_backend`` is the only
    way back to it.
    """
    rdb = getattr(storage, "_backend", storage)
    if not hasattr(rdb, "engine"):
        raise _changed(f"{type(storage).__name__}._backend", " to reach the RDBStorage under a study")
    return rdb.engine


def check() -> None:
    """Try every private name above on an in-memory study; raise OptunaChanged on the first gone.

    Raises:
        OptunaChanged: naming the missing name and this module.
    """
    try:
        from optuna.storages import _heartbeat
    except ImportError:
        raise _changed("optuna.storages._heartbeat") from None
    if not callable(getattr(_heartbeat, "get_heartbeat_thread", None)):
        raise _changed("optuna.storages._heartbeat.get_heartbeat_thread")
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    try:
        study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    finally:
        optuna.logging.set_verbosity(verbosity)
    storage = storage_of(study)
    study.enqueue_trial({"x": 1})
    frozen = study.get_trials(deepcopy=False)[0]
    if enqueued_params(frozen) != {"x": 1}:
        raise _changed("'fixed_params' system attribute", " to find an enqueued trial's parameters")
    trial = study.ask()
    if storage.get_trial(trial_id(trial)).number != trial.number or trial_id(frozen) != trial_id(trial):
        raise _changed("a trial id shared by Trial._trial_id and FrozenTrial._trial_id")
    with heartbeat(study, trial):
        pass
    study.tell(trial, 1.0)
    try:
        from optuna.storages._cached_storage import _CachedStorage
    except ImportError:
        raise _changed("optuna.storages._cached_storage._CachedStorage", " (the RDB wrapper with _backend)") from None
    if not hasattr(_CachedStorage(optuna.storages.InMemoryStorage()), "_backend"):  # type: ignore[arg-type]
        raise _changed("_CachedStorage._backend", " to reach the RDBStorage under a study")


@functools.cache
def check_once() -> None:
    """:func:`check`, once per process (about 5 ms)."""
    check()

