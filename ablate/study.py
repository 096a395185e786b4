"""The one place that talks to Optuna: storages, the search, the seeded repeats.

A study file gives Optuna studies in one storage: the hyperparameter search (``<name>``, or
with ``repeats.params: per-arm`` one ``<name>:search:<arm>`` per arm, each with the same
budget, sampler and pruner over the dimensions that apply to that arm) and ``<name>:repeats``
(every arm x data set x seed cell, enqueued once each, with the settings it runs with decided
then and stored on it). Workers on one
machine or many share the storage; each claims work under a lock (a PostgreSQL advisory lock,
or a lock file beside a journal or SQLite file), so together they run exactly the requested
trials. A worker that dies leaves a RUNNING trial behind: RDB storages fail it through Optuna's
heartbeat and ``RetryHeartbeatStaleTrialCallback`` enqueues it again with the same parameters;
journal and SQLite files do the same for trials whose worker process on this host is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import filelock
import optuna
import psutil
from optuna.trial import FrozenTrial, TrialState

import ablate
from ablate import _optuna
from ablate.config import (Choices, Dimension, RunConfig, StudyConfig, arm_overrides, base_run, config_hash, get_path,
                           with_overrides)
from ablate.data import check_dataset
from ablate.errors import AblateError, ConfigError, StorageError, TrainingError
from ablate.models import check_backbone
from ablate.records import EpochStats, TrialResult, late_gain
from ablate.train import resolve_device, resolve_precision, train_run

__all__ = [
    "StudyPaths",
    "Events",
    "resolve_paths",
    "check_study",
    "redact",
    "open_storage",
    "search_study",
    "repeats_study",
    "search_names",
    "arm_space",
    "run_search",
    "run_searches",
    "run_repeats",
    "repeat_cells",
    "look_of",
    "sequential_settings",
    "RepeatsProgress",
    "repeats_progress",
    "earlier_results",
    "repeat_config",
    "cell_settings",
    "fuse_count",
    "collect_results",
    "requeue_dead_trials",
    "provenance",
    "git_commit",
]

optuna.logging.set_verbosity(optuna.logging.WARNING)
# Heartbeat retries and artifacts are marked experimental; they are exactly what we rely on.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

# Seconds between a running trial's heartbeats (RDB storages), and how long without one makes
# a trial stale. ABLATE_HEARTBEAT_INTERVAL / ABLATE_GRACE_PERIOD override them (the kill tests
# use 1 and 4 s); a grace period must outlast the longest pause of a live worker.
HEARTBEAT_INTERVAL = int(os.environ.get("ABLATE_HEARTBEAT_INTERVAL", 10))
GRACE_PERIOD = int(os.environ.get("ABLATE_GRACE_PERIOD", 30))
POLL_SECONDS = 2.0  # how often an idle worker looks for work while others still run trials
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class StudyPaths:
    study_file: Path
    base: Path  # the study file's folder: relative paths are resolved against it
    storage: str  # a URL, secrets included: never print it, print redact(storage)
    run_dir: Path  # runs/<name>: checkpoints, artifacts
    report_dir: Path  # reports/<name> under the working directory

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def artifacts(self) -> Path:
        return self.run_dir / "artifacts"


class Events(Protocol):
    """What a worker tells whoever shows progress (the CLI); all methods optional in spirit."""

    def trial_started(self, study: str, number: int, params: dict[str, Any]) -> None: ...
    def epoch_done(self, study: str, number: int, stats: EpochStats, epochs: int) -> None: ...
    def trial_finished(self, study: str, trial: FrozenTrial) -> None: ...
    def message(self, text: str) -> None: ...


class QuietEvents:
    def trial_started(self, study: str, number: int, params: dict[str, Any]) -> None:
        pass

    def epoch_done(self, study: str, number: int, stats: EpochStats, epochs: int) -> None:
        pass

    def trial_finished(self, study: str, trial: FrozenTrial) -> None:
        pass

    def message(self, text: str) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# Paths, storages, checks


def resolve_paths(cfg: StudyConfig, study_file: Path, base: Path | None = None, *,
                  storage_override: str | None = None) -> StudyPaths:
    """Where a study keeps its storage, runs and report. Creates nothing.

    Relative paths are resolved against ``base``, by default the study file's folder; a
    ``storage_override`` (``--storage`` or ``ABLATE_STORAGE``) replaces the file's ``storage``
    and its relative path is resolved against the current working folder, like any path typed
    on a command line.
    """
    study_file = Path(study_file).absolute()
    base = Path(base).absolute() if base is not None else study_file.parent
    if storage_override:
        storage, storage_base = storage_override, Path.cwd()
    else:
        storage, storage_base = cfg.storage or f"sqlite:///{base / 'runs' / (cfg.name + '.db')}", base
    if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
        rel = storage[len("sqlite:///"):]
        if rel != ":memory:":
            storage = f"sqlite:///{storage_base / rel}"
    elif storage.startswith("journal:///") and not storage.startswith("journal:////"):
        storage = f"journal:///{storage_base / storage[len('journal:///'):]}"
    # Runs (storage, checkpoints, artifacts) live beside the study file; the report, like any
    # command's output, goes under reports/ of the folder the command runs in.
    return StudyPaths(study_file, base, storage, base / "runs" / cfg.name, Path.cwd() / "reports" / cfg.name)


def redact(url: str) -> str:
    """The storage URL with any password masked, fit for logs, reports and user attributes."""
    if "://" not in url or "@" not in url:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL: mask everything between '://' and '@'
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def storage_kind(url: str) -> str:
    if url.startswith("journal:///"):
        return "journal"
    if url.startswith("sqlite:"):
        return "sqlite"
    return "rdb"


def check_study(cfg: StudyConfig, paths: StudyPaths, workers: int = 1) -> None:
    """Everything that needs torch or timm to check, before any file or folder is created.

    Raises:
        ModelError / ConfigError / DataError: an unknown backbone or data set anywhere in the
            file (base settings, search choices, repeat arms), or a data root with no files.
        StorageError: SQLite asked to serve several workers.
    """
    run = cfg.run
    variants = [run]
    for path, dim in cfg.search.space.items():
        if isinstance(dim, Choices):
            variants += [with_overrides(run, {path: v}, f"search.space.{path}") for v in dim.choices]
    if cfg.repeats is not None:
        for name in cfg.repeats.datasets:
            variants.append(with_overrides(run, {"dataset.name": name}, "repeats.datasets"))
        for arm in cfg.repeats.arms:
            variants.append(with_overrides(run, arm_overrides(cfg, arm), f"repeats.arms.{arm}"))
    for backbone in sorted({v.model.backbone for v in variants}):
        check_backbone(backbone)
    seen = set()
    for v in variants:
        if (v.dataset.name, v.dataset.root, v.dataset.download) not in seen:
            seen.add((v.dataset.name, v.dataset.root, v.dataset.download))
            check_dataset(v.dataset, paths.base)
    if workers > 1 and storage_kind(paths.storage) == "sqlite":
        raise StorageError(
            f"storage {redact(paths.storage)}: SQLite cannot serve {workers} parallel workers safely; "
            f"use storage: journal:///runs/{cfg.name}.journal on one machine or a postgresql:// URL across machines"
        )


def open_storage(url: str, *, max_retry: int = 2) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; creates the folder of a file-based storage.

    RDB servers get a heartbeat so that a dead worker's trial is failed and enqueued again.
    """
    _optuna.check_once()
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


def search_study(cfg: StudyConfig, storage: optuna.storages.BaseStorage, arm: str | None = None) -> optuna.Study:
    """The search of the whole study (``arm=None``), or of one arm with per-arm tuning."""
    study = optuna.create_study(
        study_name=cfg.name if arm is None else f"{cfg.name}:search:{arm}",
        storage=storage,
        sampler=_sampler(cfg),
        pruner=_pruner(cfg),
        direction="maximize",
        load_if_exists=True,
    )
    study.set_metric_names(["validation accuracy"])  # optuna-dashboard's axis label
    return study


def repeats_study(cfg: StudyConfig, storage: optuna.storages.BaseStorage) -> optuna.Study:
    study = optuna.create_study(
        study_name=f"{cfg.name}:repeats",
        storage=storage,
        sampler=optuna.samplers.RandomSampler(seed=0),  # never samples: every cell is enqueued
        pruner=optuna.pruners.NopPruner(),  # repeats train every epoch, by design
        direction="maximize",
        load_if_exists=True,
    )
    study.set_metric_names(["validation accuracy"])  # optuna-dashboard's axis label
    return study


def _sampler(cfg: StudyConfig) -> optuna.samplers.BaseSampler:
    s = cfg.search.sampler
    if s.name == "tpe":
        return optuna.samplers.TPESampler(seed=s.seed)
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    space = {p: list(d.choices) for p, d in cfg.search.space.items() if isinstance(d, Choices)}
    return optuna.samplers.GridSampler(space, seed=s.seed)


def _pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    p = cfg.search.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_epochs)
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, p.warmup_epochs), max_resource=cfg.train.epochs)
    return optuna.pruners.NopPruner()


# ---------------------------------------------------------------------------------------------
# Claiming work: exact counts with many workers


@contextlib.contextmanager
def _claim_lock(storage: optuna.storages.BaseStorage, url: str, name: str) -> Iterator[None]:
    """Serialise 'count the trials, then ask for one' across every worker of a study.

    Both locks die with their holder, so a worker killed inside never blocks the others:
    PostgreSQL drops a session's advisory lock when its connection closes, and the kernel drops
    a flock (filelock's FileLock on Linux and macOS) when its process exits.
    """
    kind = storage_kind(url)
    if kind == "rdb" and url.startswith("postgresql"):
        from sqlalchemy import text

        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        with _optuna.rdb_engine(storage).connect() as conn:
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


def _holds_claim_lock(url: str) -> bool:
    """Whether ``_claim_lock`` really locks for this storage (see there)."""
    return storage_kind(url) != "rdb" or url.startswith("postgresql")


def _pause_in_claim_for_tests(study: optuna.Study) -> None:
    """Test hook (the kill soak): ABLATE_TEST_PAUSE_IN_CLAIM=seconds holds the claim lock that
    long with a trial asked for but not yet tagged, so a test can kill a worker right there."""
    seconds = float(os.environ.get("ABLATE_TEST_PAUSE_IN_CLAIM", 0) or 0)
    if seconds > 0:
        print(f"ablate-test: pid {os.getpid()} holds the claim lock of {study.study_name}", file=sys.stderr, flush=True)
        time.sleep(seconds)


def _worker_id() -> dict[str, Any]:
    """Who runs a trial: host, pid and the process's start time (a reused pid starts later)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}


def _pid_alive(pid: int, started: float | None = None) -> bool:
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


def _half_claimed(trial: FrozenTrial) -> bool:
    """A RUNNING trial whose claim never finished: ``_claim`` tags each trial with its worker and
    number last, under the claim lock, so a trial seen untagged by the holder of that lock
    belongs to a worker that died inside it (a retry carries its dead predecessor's tag, with
    the predecessor's number). On PostgreSQL such a trial never beat, so Optuna's heartbeat
    check would leave it RUNNING forever."""
    return (trial.system_attrs.get("ablate:worker") or {}).get("trial") != trial.number


def requeue_dead_trials(study: optuna.Study, url: str, max_retry: int) -> list[int]:
    """Fail RUNNING trials whose worker is dead and enqueue each again with the same parameters.

    RDB servers: Optuna's heartbeat decides (``fail_stale_trials``). Journal and SQLite files
    have no heartbeat: a trial is dead when its worker ran on this host and that process is gone.
    On every storage that ``_claim_lock`` locks, the caller holds that lock, and a trial whose
    claim never finished is dead too (``_half_claimed``).
    Returns the numbers of the trials failed here.
    """
    failed = []
    if storage_kind(url) == "rdb":
        # Optuna fails them and its callback enqueues the retries (which record the failed
        # trial's number as the system attribute 'failed_trial').
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        optuna.storages.fail_stale_trials(study)
        after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        failed = sorted(before - after)
    host = socket.gethostname()
    storage = _optuna.storage_of(study)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.system_attrs.get("ablate:worker") or {}
        if _holds_claim_lock(url) and _half_claimed(t):
            reason = f"worker {worker.get('pid')} on {worker.get('host')} died while claiming it"
        elif (storage_kind(url) != "rdb" and worker.get("host") == host
              and not _pid_alive(int(worker.get("pid", -1)), worker.get("started"))):
            reason = f"worker {worker.get('pid')} on {host} died"
        else:
            continue
        try:
            storage.set_trial_user_attr(_optuna.trial_id(t), "fail_reason", reason)
            storage.set_trial_state_values(_optuna.trial_id(t), TrialState.FAIL)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker got there first
        failed.append(t.number)
        # ``t`` was read while the trial ran, so its retry does not inherit the fail_reason.
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, t)
    return failed


# ---------------------------------------------------------------------------------------------
# Provenance


def git_commit(folder: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = out.stdout.strip() if out.returncode == 0 else "unknown"
    if commit != "unknown":
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        commit += "+dirty" if dirty else ""
    return commit


def provenance(paths: StudyPaths) -> dict[str, str]:
    """Versions, commit and the study file's hash: saved beside every number."""
    import timm
    import torch

    return {
        "study_file": str(paths.study_file),
        "study_sha256": hashlib.sha256(paths.study_file.read_bytes()).hexdigest()[:16],
        "git_commit": git_commit(Path(ablate.__file__).parent),
        "ablate": ablate.__version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "optuna": optuna.__version__,
        "python": platform.python_version(),
        "host": socket.gethostname(),
    }


# ---------------------------------------------------------------------------------------------
# One trial


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
    fixed = arm_overrides(cfg, arm)
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


def _start_trial(trial: optuna.Trial, run_cfg: RunConfig, events: Events, study_label: str) -> RunConfig:
    """Store the resolved config beside the trial before it trains; returns that config."""
    import torch

    if run_cfg.train.precision == "auto":  # a search trial: resolved by the worker that runs it
        run_cfg = resolve_precision(run_cfg)
    trial.set_user_attr("config", run_cfg.model_dump(mode="json"))
    trial.set_user_attr("config_hash", config_hash(run_cfg))
    trial.set_user_attr("seed", run_cfg.train.seed)
    trial.set_user_attr("arm_kind", run_cfg.model.arm)
    trial.set_user_attr("versions", {"ablate": ablate.__version__, "torch": torch.__version__, "timm": _timm_version()})
    events.trial_started(study_label, trial.number, dict(trial.params))
    return run_cfg


def _epoch_reporter(trial: optuna.Trial, run_cfg: RunConfig, events: Events, study_label: str,
                    prune: bool) -> Callable[[EpochStats], None]:
    def on_epoch(stats: EpochStats) -> None:
        events.epoch_done(study_label, trial.number, stats, run_cfg.train.epochs)
        trial.report(stats.val_accuracy, stats.epoch)
        if prune and trial.should_prune():
            trial.set_user_attr("pruned_reason", f"median rule after epoch {stats.epoch} (val {stats.val_accuracy:.4f})")
            raise optuna.TrialPruned(f"pruned after epoch {stats.epoch}")

    return on_epoch


def _failure(trial: optuna.Trial, exc: BaseException) -> BaseException:
    """Record why a trial's training stopped; returns the exception to raise for it."""
    import torch

    if isinstance(exc, KeyboardInterrupt):
        trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
    elif isinstance(exc, torch.OutOfMemoryError):
        trial.set_user_attr("fail_reason", f"out of memory: {str(exc).splitlines()[0]}")
        return TrainingError(f"trial {trial.number}: out of memory")
    elif isinstance(exc, AblateError):
        trial.set_user_attr("fail_reason", str(exc))
    return exc


def _run_trial(
    trial: optuna.Trial,
    run_cfg: RunConfig,
    paths: StudyPaths,
    events: Events,
    study_label: str,
    prune: bool,
) -> float:
    """Train one config inside an Optuna trial; store everything a user needs beside the number."""
    run_cfg = _start_trial(trial, run_cfg, events, study_label)
    try:
        result = train_run(run_cfg, base=paths.base, cache_dir=paths.checkpoints,
                           on_epoch=_epoch_reporter(trial, run_cfg, events, study_label, prune), log=events.message)
    except (KeyboardInterrupt, Exception) as exc:
        raised = _failure(trial, exc)
        if raised is exc:
            raise
        raise raised from None
    _record(trial, result)
    _upload_curve(trial, result, paths)
    return result.val_accuracy


def _run_fused_trials(trials: list[optuna.Trial], run_cfgs: list[RunConfig], paths: StudyPaths, events: Events,
                      study_label: str) -> list[float | BaseException]:
    """Train K cells that differ only in seed as one fused model (``ablate.fused.train_fused``).

    Each cell stays its own trial with its own curves, attributes and artifact; a seed that
    fails (NaN loss) fails alone. Returns, per trial, its value or the exception that ended it.
    """
    from ablate.train import train_fused

    run_cfgs = [_start_trial(t, c, events, study_label) for t, c in zip(trials, run_cfgs)]
    reporters = [_epoch_reporter(t, c, events, study_label, prune=False) for t, c in zip(trials, run_cfgs)]
    try:
        outcomes = train_fused(run_cfgs, base=paths.base, cache_dir=paths.checkpoints, on_epoch=reporters,
                               log=events.message)
    except (KeyboardInterrupt, Exception) as exc:
        for t in trials:
            raised = _failure(t, exc)
        if raised is exc:
            raise
        raise raised from None
    values: list[float | BaseException] = []
    for trial, outcome in zip(trials, outcomes):
        if isinstance(outcome, BaseException):
            values.append(_failure(trial, outcome))
            continue
        _record(trial, outcome)
        _upload_curve(trial, outcome, paths)
        values.append(outcome.val_accuracy)
    return values


def _timm_version() -> str:
    import timm

    return timm.__version__


def _record(trial: optuna.Trial, result: TrialResult) -> None:
    trial.set_user_attr("val_accuracy", result.val_accuracy)
    trial.set_user_attr("test_accuracy", result.test_accuracy)
    trial.set_user_attr("best_epoch", result.best_epoch)
    trial.set_user_attr("head_similarity", result.head_similarity)
    trial.set_user_attr("curves", result.curves_dict())
    trial.set_user_attr("n_params", result.n_params)
    trial.set_user_attr("n_trainable", result.n_trainable)
    trial.set_user_attr("wall_time", round(result.wall_time, 3))
    trial.set_user_attr("device", result.device)
    trial.set_user_attr("images_per_second", round(result.images_per_second, 2))
    trial.set_user_attr("train_images", result.train_images)
    trial.set_user_attr("n_test", result.n_test)
    trial.set_user_attr("val_gain_last_quarter", result.val_gain_last_quarter)
    if result.extras:
        trial.set_user_attr("extras", result.extras)


def _upload_curve(trial: optuna.Trial, result: TrialResult, paths: StudyPaths) -> None:
    """The learning curve as a PNG artifact, shown by optuna-dashboard (--artifact-dir)."""
    import tempfile

    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    from ablate.figures import trial_curve

    paths.artifacts.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        png = trial_curve(result.curves_dict(), Path(tmp) / f"trial-{trial.number}-curve.png",
                          title=f"trial {trial.number}")
        upload_artifact(artifact_store=FileSystemArtifactStore(paths.artifacts), file_path=str(png),
                        study_or_trial=trial, mimetype="image/png")


def _claim(study: optuna.Study, paths: StudyPaths, want: int, *, only_waiting: bool, max_retry: int,
           group: Callable[[FrozenTrial], int] | None = None) -> list[optuna.Trial] | None | bool:
    """Under the study's lock: trials to run, None to wait for others, False when all is done.

    One trial, or with ``group`` (the fused repeats) up to ``group(first)`` WAITING trials in a
    row that hold the same arm and data set as the first: Optuna hands out WAITING trials in
    the order they were enqueued, so asking that many times under the lock claims exactly them.
    """
    with _claim_lock(_optuna.storage_of(study), paths.storage, study.study_name):
        requeue_dead_trials(study, paths.storage, max_retry)
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state in FINISHED for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        waiting = sorted((t for t in trials if t.state == TrialState.WAITING), key=lambda t: t.number)
        if done >= want:
            return False
        if not waiting and (only_waiting or done + running >= want):
            return None if running else False
        count = 1
        if group is not None and waiting:
            first, limit = _cell_key(waiting[0])[:2], group(waiting[0])
            while count < min(limit, len(waiting)) and _cell_key(waiting[count])[:2] == first:
                count += 1
        claimed = []
        for _ in range(count):
            trial = study.ask()
            _pause_in_claim_for_tests(study)
            # First beat, then the tag, both before the lock is let go: see _half_claimed.
            _optuna.record_heartbeat(study, trial)
            _optuna.storage_of(study).set_trial_system_attr(_optuna.trial_id(trial), "ablate:worker",
                                                            {**_worker_id(), "trial": trial.number})
            claimed.append(trial)
        return claimed


def _work(study: optuna.Study, paths: StudyPaths, want: int, objective: Callable[[optuna.Trial], float],
          events: Events, *, only_waiting: bool, max_retry: int, max_trials: int | None = None,
          label: str = "", fused: Callable[[list[optuna.Trial]], list[float | BaseException]] | None = None,
          group: Callable[[FrozenTrial], int] | None = None) -> int:
    """Claim and run trials until the study holds ``want`` finished trials. Returns how many ran here.

    With ``fused`` and ``group``, claimed groups of more than one trial train together.
    """
    ran = 0
    while max_trials is None or ran < max_trials:
        claimed = _claim(study, paths, want, only_waiting=only_waiting, max_retry=max_retry, group=group)
        if claimed is False:
            break
        if claimed is None:
            time.sleep(POLL_SECONDS)
            continue
        ran += len(claimed)
        with contextlib.ExitStack() as beats:
            # Optuna's optimize() beats the heart of its trials the same way; we ask() ourselves
            # (to count and claim under a lock), so we start the beats ourselves.
            for trial in claimed:
                beats.enter_context(_optuna.heartbeat(study, trial))
            if len(claimed) == 1:
                try:
                    outcomes: list[float | BaseException] = [objective(claimed[0])]
                except optuna.TrialPruned as exc:
                    outcomes = [exc]
                except TrainingError as exc:
                    outcomes = [exc]
                except BaseException:
                    study.tell(claimed[0], state=TrialState.FAIL)
                    raise
            else:
                assert fused is not None
                try:
                    outcomes = fused(claimed)
                except BaseException:
                    for trial in claimed:
                        study.tell(trial, state=TrialState.FAIL)
                    raise
        for trial, outcome in zip(claimed, outcomes):
            _tell(study, trial, outcome, want, events)
            events.trial_finished(label or study.study_name,
                                  _optuna.storage_of(study).get_trial(_optuna.trial_id(trial)))
    return ran


def _tell(study: optuna.Study, trial: optuna.Trial, outcome: float | BaseException, want: int, events: Events) -> None:
    """Finish a trial by what its training ended with: a value, pruning, or a failure that is
    the trial's own fault (the study goes on until twice the trials asked for have failed)."""
    if isinstance(outcome, optuna.TrialPruned):
        study.tell(trial, state=TrialState.PRUNED)
    elif isinstance(outcome, TrainingError):
        study.tell(trial, state=TrialState.FAIL)
        events.message(f"trial {trial.number} failed: {outcome}")
        failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        if failed >= 2 * max(want, 1):
            raise TrainingError(f"study {study.study_name}: {failed} trials failed, twice the "
                                f"{want} asked for; stopping (see each trial's fail_reason)") from None
    elif isinstance(outcome, BaseException):
        study.tell(trial, state=TrialState.FAIL)
        raise outcome
    else:
        study.tell(trial, outcome)


# ---------------------------------------------------------------------------------------------
# Phases


def search_names(cfg: StudyConfig) -> list[str | None]:
    """The searches a study runs: one per arm with per-arm tuning, else one (``None``)."""
    if cfg.search.n_trials == 0:
        return []
    if cfg.tuning == "per-arm":
        assert cfg.repeats is not None
        return list(cfg.repeats.arms)
    return [None]


def run_search(cfg: StudyConfig, paths: StudyPaths, events: Events | None = None,
               max_trials: int | None = None, arm: str | None = None) -> optuna.Study:
    """Run search trials until ``search.n_trials`` of them have finished (complete or pruned).

    With ``arm``, the search of that arm alone (``<name>:search:<arm>``): the study's settings
    with the arm's own, over the dimensions that apply to it (``arm_space``). Failed trials
    (NaN loss, out of memory) are recorded with their reason and do not count; re-running a
    finished study runs nothing.
    """
    events = events or QuietEvents()
    storage = open_storage(paths.storage)
    study = search_study(cfg, storage, arm)
    study.set_user_attr("ablate:provenance", provenance(paths))
    base = base_run(cfg)
    if arm is not None:
        base = with_overrides(base, arm_overrides(cfg, arm), f"repeats.arms.{arm}")
    space = arm_space(cfg, arm)

    def objective(trial: optuna.Trial) -> float:
        overrides = _suggest(trial, base, space)
        run_cfg = with_overrides(base, overrides, f"trial {trial.number}")
        if arm is not None:
            trial.set_user_attr("arm", arm)
        return _run_trial(trial, run_cfg, paths, events, study.study_name, prune=True)

    _work(study, paths, cfg.search.n_trials, objective, events, only_waiting=False,
          max_retry=2, max_trials=max_trials, label="search" if arm is None else f"search {arm}")
    return study


def run_searches(cfg: StudyConfig, paths: StudyPaths, events: Events | None = None,
                 max_trials: int | None = None) -> dict[str | None, optuna.Study]:
    """Every search of the study (``search_names``), one after the other, each to its budget.

    ``max_trials`` caps the trials run by this call over all of them (tests: stop early).
    """
    studies: dict[str | None, optuna.Study] = {}
    left = max_trials
    for arm in search_names(cfg):
        if left is not None and left <= 0:
            break
        before = _ran_here(studies)
        studies[arm] = run_search(cfg, paths, events, max_trials=left, arm=arm)
        if left is not None:
            left -= _ran_here(studies) - before
    return studies


def _ran_here(studies: dict) -> int:
    return sum(len(s.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))
               for s in studies.values())


def _best_trial(study: optuna.Study, what: str) -> FrozenTrial:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ConfigError(
            f"repeats.params: {what}: the search {study.study_name!r} has no completed trial yet; "
            f"run the search first (ablate run STUDY --phase search) or set repeats.params: fixed"
        )
    return max(complete, key=lambda t: (t.value, -t.number))


def cell_settings(cfg: StudyConfig, paths: StudyPaths, arm: str) -> dict[str, Any]:
    """What every repeat cell of ``arm`` runs with, decided once, when its first cell is enqueued.

    ``settings``: the searched values (the arm's own best trial with per-arm tuning, the one
    best trial of the study with ``best``, none with ``fixed``); ``precision``: ``train.precision``
    resolved on this machine; ``tuning``: where the settings came from.
    """
    method = cfg.tuning
    settings: dict[str, Any] = {}
    source = "the study file's settings"
    if method != "fixed":
        study = search_study(cfg, open_storage(paths.storage), arm if method == "per-arm" else None)
        best = _best_trial(study, method)
        settings = dict(best.params)
        source = f"{study.study_name} trial {best.number} (validation accuracy {best.value:.4f})"
    run = repeat_config(cfg, {"settings": settings, "precision": "auto"},
                        {"arm": arm, "dataset": cfg.dataset.name, "seed": cfg.train.seed})
    precision = resolve_precision(run).train.precision
    return {"settings": settings, "precision": precision, "tuning": {"method": method, "source": source}}


def repeat_cells(cfg: StudyConfig, n_seeds: int | None = None) -> list[dict[str, Any]]:
    """Every (arm, dataset, seed) cell of the repeats, in the order they are run.

    Seed by seed, so an interrupted run leaves complete pairs; single-head arms first within a
    seed, so that a single run whose recipe is the stage-1 recipe serves as model1 (init:
    stage1) of the DueHeadNet arms of the same seed instead of a second training. ``n_seeds``:
    the first that many seeds only (default ``repeats.max_seeds``; with sequential seeds, the
    cells planned so far are :func:`repeats_progress`'s).
    """
    assert cfg.repeats is not None
    datasets = cfg.repeats.datasets or [cfg.dataset.name]
    count = cfg.repeats.max_seeds if n_seeds is None else n_seeds
    seeds = range(cfg.repeats.first_seed, cfg.repeats.first_seed + count)
    kinds = {a: with_overrides(cfg.run, arm_overrides(cfg, a)).model.kind for a in cfg.repeats.arms}
    arms = sorted(cfg.repeats.arms, key=lambda a: kinds[a] != "single")
    return [{"arm": a, "dataset": d, "seed": s} for d in datasets for s in seeds for a in arms]


def look_of(cfg: StudyConfig, seed: int) -> int:
    """The look (1-based) a seed belongs to: 1 for every seed of a fixed design."""
    assert cfg.repeats is not None
    index = seed - cfg.repeats.first_seed
    return next(k for k, n in enumerate(cfg.repeats.looks, start=1) if index < n)


def sequential_settings(cfg: StudyConfig) -> dict[str, Any] | None:
    """The design of sequential repeats as the report saves it (``analysis.json``): the looks,
    the spending family and the comparisons sharing alpha (contrasts x data sets, from the study
    file); None for a fixed design."""
    from ablate.stats import default_contrasts

    rep = cfg.repeats
    if rep is None or not rep.sequential:
        return None
    contrasts = rep.contrasts or default_contrasts(list(rep.arms))
    datasets = rep.datasets or [cfg.dataset.name]
    return {"looks": list(rep.looks), "spending": rep.spending, "comparisons": len(contrasts) * len(datasets)}


@dataclass(frozen=True)
class RepeatsProgress:
    """Where the repeats stand, recomputed from the storage (nothing else is kept anywhere).

    ``seeds``: the cells of the first ``seeds`` seeds are planned (all of a fixed design; with
    sequential seeds, up to the look the design has reached). ``look``: the verdicts of the
    latest complete look (None for a fixed design or before the first look is done).
    ``stopped``: every contrast is decided or the last look is done; no further batch.
    """

    seeds: int
    look: Any  # ablate.sequential.LookResult | None
    stopped: bool


def _cell_states(trials: list[FrozenTrial]) -> tuple[dict[tuple, FrozenTrial], set[tuple], dict[tuple, int]]:
    """Per cell: its first COMPLETE trial; the cells COMPLETE, RUNNING or WAITING; failures so far."""
    complete: dict[tuple, FrozenTrial] = {}
    live: set[tuple] = set()
    failures: dict[tuple, int] = {}
    for t in sorted(trials, key=lambda t: t.number):
        key = _cell_key(t)
        if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING):
            live.add(key)
        if t.state == TrialState.COMPLETE:
            complete.setdefault(key, t)
        if t.state in (TrialState.FAIL, TrialState.PRUNED):
            failures[key] = failures.get(key, 0) + 1
    return complete, live, failures


def _result_row(t: FrozenTrial) -> dict[str, Any]:
    arm, dataset, seed = _cell_key(t)
    a = t.user_attrs
    return {"dataset": dataset, "arm": arm, "seed": seed, "accuracy": a["test_accuracy"],
            "params": a.get("n_params"), "trainable_params": a.get("n_trainable"),
            "train_images": a.get("train_images"), "n_test": a.get("n_test"),
            "val_gain_last_quarter": _late_gain(a), "wall_time": a.get("wall_time")}


def _late_gain(attrs: dict[str, Any]) -> float | None:
    """The late validation gain of a stored run, from its curves (an ensemble: per member)."""
    curves = attrs.get("curves") or []
    if not curves:
        return attrs.get("val_gain_last_quarter")
    members = len((attrs.get("extras") or {}).get("ensemble", {}).get("member_seeds", [])) or 1
    return late_gain([e["val_accuracy"] for e in curves], members)


def repeats_progress(cfg: StudyConfig, trials: list[FrozenTrial]) -> RepeatsProgress:
    """How many seeds are planned, from the repeat trials alone (stateless, any worker, any time).

    A fixed design plans every seed. Sequential seeds replay the looks: while every cell of the
    first ``n_k`` seeds is finished (COMPLETE, or given up after ``repeats.max_retries``
    failures), the look is evaluated on the paired differences of those seeds
    (:func:`ablate.stats.sequential_look`, comparisons = contrasts x data sets of the study
    file) and, unless the design stops there, the next look's seeds are planned.
    """
    import pandas as pd

    from ablate.stats import sequential_look

    rep = cfg.repeats
    assert rep is not None
    settings = sequential_settings(cfg)
    if settings is None:
        return RepeatsProgress(seeds=rep.max_seeds, look=None, stopped=False)
    complete, live, failures = _cell_states(trials)
    target, latest = rep.looks[0], None
    while True:
        cells = repeat_cells(cfg, target)
        keys = [_cell_key(c) for c in cells]
        if any(k not in complete and (k in live or failures.get(k, 0) <= rep.max_retries) for k in keys):
            return RepeatsProgress(seeds=target, look=latest, stopped=False)  # the look is still running
        rows = [_result_row(complete[_cell_key(c)]) for c in cells if _cell_key(c) in complete]
        if not rows:  # every cell of the look given up: nothing to decide on, nothing more to run
            return RepeatsProgress(seeds=target, look=latest, stopped=True)
        latest = sequential_look(pd.DataFrame(rows), looks=settings["looks"], spending=settings["spending"],
                                 comparisons=settings["comparisons"], alpha=rep.alpha, contrasts=rep.contrasts,
                                 rope=rep.rope, n_seeds_done=target)
        if latest.stop:
            return RepeatsProgress(seeds=target, look=latest, stopped=True)
        target = latest.next_seeds


def repeat_config(cfg: StudyConfig, stored: dict[str, Any], cell: dict[str, Any]) -> RunConfig:
    """The run of one cell: the study's settings (stage-1 recipe written out), then the searched
    values stored on the cell, then the arm's own settings, then the cell's data set and seed,
    and the precision resolved when the cell was enqueued (unless the arm sets one). Arms
    override the search (an NFMCE arm stays NFMCE even if the best trial had the constraint on)."""
    assert cfg.repeats is not None
    run = with_overrides(base_run(cfg), stored.get("settings", {}), "tuned settings")
    run = with_overrides(run, arm_overrides(cfg, cell["arm"]), f"repeats.arms.{cell['arm']}")
    run = with_overrides(run, {"dataset.name": cell["dataset"], "train.seed": cell["seed"]}, "repeat cell")
    if run.train.precision == "auto":
        run = with_overrides(run, {"train.precision": stored.get("precision", "auto")}, "precision")
    return run


def _cell_key(cell: dict[str, Any] | FrozenTrial) -> tuple:
    """(arm, dataset, seed) of a cell, or of a trial: a WAITING trial (or a RUNNING one before
    its first suggest) holds its cell in the 'fixed_params' system attribute, not in params."""
    if isinstance(cell, FrozenTrial):
        cell = cell.params or _optuna.enqueued_params(cell)
    return cell.get("arm"), cell.get("dataset"), cell.get("seed")


_CELL_ATTRS = ("settings", "precision", "tuning")


def _enqueue_missing(study: optuna.Study, cfg: StudyConfig, paths: StudyPaths,
                     max_retry: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Enqueue each planned cell not yet COMPLETE, RUNNING or WAITING, unless it failed too often.

    The planned cells are :func:`repeats_progress`'s, read under the claim lock: every cell of a
    fixed design; with sequential seeds, the looks reached so far, so the worker that finds a
    look finished enqueues the next batch, and every other one finds it there and adds nothing.
    Each cell carries its look (user attribute ``look``). An arm's settings are decided when its
    first cell is enqueued and copied from there to every later cell of the arm (retries, later
    seeds, later looks): a search trial added since changes nothing already decided. Returns the
    planned cells and those given up on (failed more than ``max_retry`` times).
    """
    with _claim_lock(_optuna.storage_of(study), paths.storage, study.study_name):
        requeue_dead_trials(study, paths.storage, max_retry)
        trials = study.get_trials(deepcopy=False)
        _, live, failures = _cell_states(trials)
        decided: dict[str, dict[str, Any]] = {}
        for t in sorted(trials, key=lambda t: t.number):
            arm = _cell_key(t)[0]
            if arm not in decided and "settings" in t.user_attrs:
                decided[arm] = {k: t.user_attrs[k] for k in _CELL_ATTRS if k in t.user_attrs}
        cells = repeat_cells(cfg, repeats_progress(cfg, trials).seeds)
        given_up = []
        order = cells
        if fuse_count(cfg) > 1:  # an arm's seeds in a row, so that a worker can claim K of them together
            arms = list(dict.fromkeys(c["arm"] for c in cells))
            order = sorted(cells, key=lambda c: (c["dataset"], arms.index(c["arm"]), c["seed"]))
        for cell in order:
            key = _cell_key(cell)
            if key in live:
                continue
            if failures.get(key, 0) > max_retry:
                given_up.append(cell)
                continue
            if cell["arm"] not in decided:
                decided[cell["arm"]] = cell_settings(cfg, paths, cell["arm"])
            study.enqueue_trial(cell, user_attrs={**decided[cell["arm"]], "look": look_of(cfg, cell["seed"])})
        return cells, given_up


def fuse_count(cfg: StudyConfig) -> int:
    """How many seeds of one arm a repeats worker trains as one fused model: ``repeats.fuse``,
    else 4 on CUDA (launch-bound steps; HFTA) and 1 on the CPU (4 fused seeds ran at 0.80x one
    seed alone on the 2-core development machine: ``ablate bench --fuse 4``)."""
    assert cfg.repeats is not None
    if cfg.repeats.fuse is not None:
        return cfg.repeats.fuse
    return 4 if resolve_device(cfg.train.device).type == "cuda" else 1


def run_repeats(cfg: StudyConfig, paths: StudyPaths, events: Events | None = None,
                max_trials: int | None = None) -> list[dict[str, Any]]:
    """Run every planned (arm, dataset, seed) cell exactly once as a trial of ``<name>:repeats``.

    Each cell runs with the settings stored on its trial when it was enqueued (read back here,
    never recomputed). With sequential seeds the cells come look by look
    (:func:`repeats_progress`): a worker that runs out of cells waits while others finish the
    look, goes on with the next batch when there is one, and returns once the design has
    stopped. Returns the cells given up on after ``repeats.max_retries`` failures (the report
    names them).
    """
    if cfg.repeats is None:
        return []
    events = events or QuietEvents()
    study = repeats_study(cfg, open_storage(paths.storage, max_retry=cfg.repeats.max_retries))
    study.set_user_attr("ablate:provenance", provenance(paths))
    cells = repeat_cells(cfg)  # every cell the design may run: the choices of each parameter
    arms = list(cfg.repeats.arms)
    datasets = sorted({c["dataset"] for c in cells})
    seeds = sorted({c["seed"] for c in cells})

    def objective(trial: optuna.Trial) -> float:
        cell = {
            "arm": trial.suggest_categorical("arm", arms),
            "dataset": trial.suggest_categorical("dataset", datasets),
            "seed": trial.suggest_categorical("seed", seeds),
        }
        if "settings" not in trial.user_attrs:  # enqueued by an older ablate: cannot say what it ran with
            raise ConfigError(f"repeat trial {trial.number} carries no settings; start a new repeats study")
        run_cfg = repeat_config(cfg, trial.user_attrs, cell)
        trial.set_user_attr("arm", cell["arm"])
        return _run_trial(trial, run_cfg, paths, events, f"{cfg.name}:repeats", prune=False)

    def fused(trials: list[optuna.Trial]) -> list[float | BaseException]:
        run_cfgs = []
        for trial in trials:
            cell = {"arm": trial.suggest_categorical("arm", arms),
                    "dataset": trial.suggest_categorical("dataset", datasets),
                    "seed": trial.suggest_categorical("seed", seeds)}
            trial.set_user_attr("arm", cell["arm"])
            run_cfgs.append(repeat_config(cfg, trial.user_attrs, cell))
        return _run_fused_trials(trials, run_cfgs, paths, events, f"{cfg.name}:repeats")

    k = fuse_count(cfg)
    kinds = {a: with_overrides(cfg.run, arm_overrides(cfg, a)).model.kind for a in arms}

    def group(first: FrozenTrial) -> int:
        # an ensemble trains its two members one after the other: it does not fuse
        return 1 if kinds.get(_cell_key(first)[0]) == "ensemble" else k

    planned = None
    while True:
        cells, given_up = _enqueue_missing(study, cfg, paths, cfg.repeats.max_retries)
        # Waits while others run cells of this look; returns once all of them are finished.
        ran = _work(study, paths, len(cells) - len(given_up), objective, events, only_waiting=True,
                    max_retry=cfg.repeats.max_retries, max_trials=max_trials, label="repeats",
                    fused=fused if k > 1 else None, group=group if k > 1 else None)
        if max_trials is not None:
            break
        if ran == 0 and (len(cells), len(given_up)) == planned:
            break  # nothing ran and nothing new was planned: no failed cell to retry, no look to add
        planned = (len(cells), len(given_up))
    return given_up  # from the last pass, which ran nothing (or was cut short by max_trials)


RESULT_EXTRAS = ("params", "trainable_params", "train_images", "n_test", "val_gain_last_quarter", "wall_time")


def _tuning(cfg: StudyConfig, paths: StudyPaths, trials: list[FrozenTrial]) -> dict[str, dict[str, Any]]:
    """Per arm: how it was tuned, the settings its cells ran with (read from the cells, never
    recomputed), its search's parameter importances and completed validation accuracies."""
    assert cfg.repeats is not None
    stored: dict[str, dict[str, Any]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        arm = _cell_key(t)[0]
        if arm not in stored and "settings" in t.user_attrs:
            stored[arm] = t.user_attrs
    storage = open_storage(paths.storage)
    out: dict[str, dict[str, Any]] = {}
    for arm in cfg.repeats.arms:
        attrs = stored.get(arm, {})
        info: dict[str, Any] = {
            "method": cfg.tuning,
            "settings": dict(attrs.get("settings", {})),
            "precision": attrs.get("precision"),
            "source": (attrs.get("tuning") or {}).get("source", ""),
            "n_trials": 0,
            "importances": {},
            "search_values": [],
        }
        if cfg.tuning != "fixed":
            search = search_study(cfg, storage, arm if cfg.tuning == "per-arm" else None)
            complete = sorted(search.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
            info["n_trials"] = len(search.get_trials(deepcopy=False, states=FINISHED))
            info["search_values"] = [float(t.value) for t in complete]
            info["importances"] = _importances(search)
        out[arm] = info
    return out


# Fewer completed trials than this give importances that say nothing (two trials and two
# parameters split 0.5 / 0.5 whatever happened): the report then says they were not computed.
MIN_TRIALS_FOR_IMPORTANCE = 5


def _importances(study: optuna.Study) -> dict[str, float]:
    """Optuna's parameter importances (its default evaluator) of the searched parameters; empty
    when they cannot be had: fewer than MIN_TRIALS_FOR_IMPORTANCE completed trials (Optuna
    would return equal shares, which read as a finding), or no parameter that varied."""
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            importances = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError, ZeroDivisionError):
            return {}
    if any("too small" in str(w.message) for w in caught):
        return {}
    return {k: round(float(v), 4) for k, v in importances.items()}


def earlier_results(cfg: StudyConfig, paths: StudyPaths) -> Any:
    """The study's completed repeat cells as a results table (pandas), or None when there are
    none; creates nothing (no storage file, no study) and reads an unreachable server as none."""
    import pandas as pd

    kind = storage_kind(paths.storage)
    if kind in ("journal", "sqlite"):
        file = paths.storage.split(":///", 1)[1]
        if file == ":memory:" or not Path(file).is_file():
            return None
    try:
        storage = open_storage(paths.storage)
        storage.get_study_id_from_name(f"{cfg.name}:repeats")
    except (StorageError, KeyError):
        return None
    study = optuna.load_study(study_name=f"{cfg.name}:repeats", storage=storage)
    rows, seen = [], set()
    for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        if _cell_key(t) not in seen:
            seen.add(_cell_key(t))
            rows.append(_result_row(t))
    return pd.DataFrame(rows) if rows else None


def relative_study_file(paths: StudyPaths) -> str:
    """The study file relative to its git repository (or to this folder): no machine paths."""
    import subprocess

    folder = paths.study_file.parent
    try:
        top = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        top = ""
    for root in (Path(top) if top else None, Path.cwd()):
        if root is not None:
            try:
                return paths.study_file.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                continue
    return paths.study_file.name


def shown_storage(paths: StudyPaths) -> str:
    """The storage URL for a report: password redacted, a file relative to the study's folder."""
    url = redact(paths.storage)
    for scheme in ("sqlite:///", "journal:///"):
        if url.startswith(scheme):
            file = Path(url[len(scheme):])  # absolute: resolve_paths made it so
            try:
                return f"{scheme}{file.relative_to(paths.base).as_posix()}"
            except ValueError:
                return f"{scheme}{file.name}"
    return url


def collect_results(cfg: StudyConfig, paths: StudyPaths) -> dict[str, Any]:
    """The repeats as tables for the report: results (with parameters, training images, test
    size and late validation gain per run), curves, head similarity, tuning, provenance, gaps."""
    import pandas as pd

    assert cfg.repeats is not None
    study = repeats_study(cfg, open_storage(paths.storage))
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    rows, curves, sims, numbers, wall = [], [], [], [], 0.0
    seen = set()
    sequential = cfg.repeats.sequential
    for t in sorted(trials, key=lambda t: t.number):
        key = _cell_key(t)
        if key in seen:  # cannot happen through ablate; never count a cell twice
            continue
        seen.add(key)
        arm, dataset, seed = key
        a = t.user_attrs
        rows.append(_result_row(t))
        if sequential:
            rows[-1]["look"] = a.get("look", look_of(cfg, seed))
        for e in a.get("curves", []):
            curves.append({"dataset": dataset, "arm": arm, "seed": seed, "epoch": e["epoch"],
                           "val_accuracy": e["val_accuracy"]})
        if a.get("head_similarity") is not None:
            sims.append({"dataset": dataset, "arm": arm, "seed": seed, "head_similarity": a["head_similarity"]})
        numbers.append(t.number)
        wall += a.get("wall_time", 0.0)
    # Planned cells without a result; with sequential seeds only the looks the design reached.
    all_trials = study.get_trials(deepcopy=False)
    missing = [c for c in repeat_cells(cfg, repeats_progress(cfg, all_trials).seeds) if _cell_key(c) not in seen]
    devices = sorted({t.user_attrs.get("device", "?") for t in trials})
    precisions = sorted({str(t.user_attrs.get("precision")) for t in trials if t.user_attrs.get("precision")})
    prov = {k: v for k, v in study.user_attrs.get("ablate:provenance", {}).items() if k != "host"}
    prov.update({
        "study_file": relative_study_file(paths),
        "storage": shown_storage(paths),
        "repeats study": study.study_name,
        "device": ", ".join(devices),
        "precision": ", ".join(precisions),
        "seeds": ", ".join(str(s) for s in sorted({r["seed"] for r in rows})),
        "trial numbers": f"{min(numbers)}-{max(numbers)} ({len(numbers)} trials)" if numbers else "none",
        "training wall time": f"{wall / 60:.1f} min",
        "tuning": cfg.tuning,
    })
    if sequential:
        progress = repeats_progress(cfg, all_trials)
        state = "stopped" if progress.stopped else "running"
        prov["design"] = (f"sequential: looks at {', '.join(map(str, cfg.repeats.looks))} seeds, "
                          f"{cfg.repeats.spending} spending; {state} at {progress.seeds} seeds")
    return {
        "results": pd.DataFrame(rows, columns=["dataset", "arm", "seed", "accuracy", *RESULT_EXTRAS,
                                               *(["look"] if sequential else [])]),
        "curves": pd.DataFrame(curves, columns=["dataset", "arm", "seed", "epoch", "val_accuracy"]),
        "similarity": pd.DataFrame(sims, columns=["dataset", "arm", "seed", "head_similarity"]),
        "tuning": _tuning(cfg, paths, trials),
        "provenance": prov,
        "missing": missing,
        "study": study,
    }
