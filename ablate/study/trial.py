"""One training run inside an Optuna trial, and what it leaves on the trial.

Training knows nothing of Optuna: it gets a plain ``on_epoch`` callback, which reports to the
trial and raises ``optuna.TrialPruned`` when the pruner says so; the exception passes through
training untouched. Everything a user needs is stored beside the trial's value.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import optuna

from ablate.config import RunConfig, config_hash
from ablate.errors import AblateError, TrainingError
from ablate.records import EpochStats, TrialResult
from ablate.study.events import Events
from ablate.study.paths import StudyPaths
from ablate.study.provenance import versions
from ablate.train import resolve_precision, train_fused, train_run

__all__ = ["run_trial", "run_fused_trials", "start_trial", "epoch_reporter", "failure", "record_result", "upload_curve",
           "PREDICTIONS_ATTR"]

Outcome = float | BaseException  # a trial's value, or what ended it


def start_trial(trial: optuna.Trial, run_cfg: RunConfig, events: Events, study_label: str) -> RunConfig:
    """Store the resolved config beside the trial before it trains; returns that config (with
    ``train.precision`` resolved on this machine, for a search trial whose config says auto)."""
    run_cfg = resolve_precision(run_cfg)
    trial.set_user_attr("config", run_cfg.model_dump(mode="json"))
    trial.set_user_attr("config_hash", config_hash(run_cfg))
    trial.set_user_attr("seed", run_cfg.train.seed)
    trial.set_user_attr("arm_kind", run_cfg.model.arm)
    trial.set_user_attr("versions", versions())
    events.trial_started(study_label, trial.number, dict(trial.params))
    return run_cfg


def epoch_reporter(trial: optuna.Trial, run_cfg: RunConfig, events: Events, study_label: str,
                   prune: bool) -> Callable[[EpochStats], None]:
    """The ``on_epoch`` callback of a trial: progress, ``trial.report``, and pruning when asked."""
    def on_epoch(stats: EpochStats) -> None:
        events.epoch_done(study_label, trial.number, stats, run_cfg.train.epochs)
        trial.report(stats.val_accuracy, stats.epoch)
        if prune and trial.should_prune():
            trial.set_user_attr("pruned_reason", f"median rule after epoch {stats.epoch} (val {stats.val_accuracy:.4f})")
            raise optuna.TrialPruned(f"pruned after epoch {stats.epoch}")

    return on_epoch


def failure(trial: optuna.Trial, exc: BaseException) -> BaseException:
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


def run_trial(trial: optuna.Trial, run_cfg: RunConfig, paths: StudyPaths, events: Events, study_label: str,
              prune: bool, keep_predictions: bool = False) -> float:
    """Train one config inside an Optuna trial; store everything a user needs beside the number
    (with ``keep_predictions``, also its prediction for every test example: the repeats')."""
    run_cfg = start_trial(trial, run_cfg, events, study_label)
    try:
        result = train_run(run_cfg, base=paths.base, cache_dir=paths.checkpoints,
                           on_epoch=epoch_reporter(trial, run_cfg, events, study_label, prune), log=events.message)
    except (KeyboardInterrupt, Exception) as exc:
        raised = failure(trial, exc)
        if raised is exc:
            raise
        raise raised from None
    record_result(trial, result, keep_predictions)
    upload_curve(trial, result, paths)
    return result.val_accuracy


def run_fused_trials(trials: list[optuna.Trial], run_cfgs: list[RunConfig], paths: StudyPaths, events: Events,
                     study_label: str) -> list[Outcome]:
    """Train K cells that differ only in seed as one fused model (``ablate.train.train_fused``).

    Each cell stays its own trial with its own curves, attributes and artifact; a seed that
    fails (NaN loss) fails alone. Returns, per trial, its value or the exception that ended it.
    """
    run_cfgs = [start_trial(t, c, events, study_label) for t, c in zip(trials, run_cfgs)]
    reporters = [epoch_reporter(t, c, events, study_label, prune=False) for t, c in zip(trials, run_cfgs)]
    try:
        outcomes = train_fused(run_cfgs, base=paths.base, cache_dir=paths.checkpoints, on_epoch=reporters,
                               log=events.message)
    except (KeyboardInterrupt, Exception) as exc:
        for t in trials:
            raised = failure(t, exc)
        if raised is exc:
            raise
        raise raised from None
    values: list[Outcome] = []
    for trial, outcome in zip(trials, outcomes):
        if isinstance(outcome, BaseException):
            values.append(failure(trial, outcome))
            continue
        record_result(trial, outcome, keep_predictions=True)  # fused runs are repeats
        upload_curve(trial, outcome, paths)
        values.append(outcome.val_accuracy)
    return values


PREDICTIONS_ATTR = "test_predictions"


def record_result(trial: optuna.Trial, result: TrialResult, keep_predictions: bool = False) -> None:
    """The user attributes of a finished run (a report reads them back). Predictions go in the
    storage, not in a local artifact, so that a report written on any machine can read them."""
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
    if keep_predictions and result.predictions is not None:
        trial.set_user_attr(PREDICTIONS_ATTR, result.predictions.as_dict())


def upload_curve(trial: optuna.Trial, result: TrialResult, paths: StudyPaths) -> None:
    """The learning curve as a PNG artifact, shown by optuna-dashboard (--artifact-dir)."""
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    from ablate.plots import trial_curve  # matplotlib: 0.4 s that `ablate check` and idle workers skip

    paths.artifacts.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        png = trial_curve(result.curves_dict(), Path(tmp) / f"trial-{trial.number}-curve.png",
                          title=f"trial {trial.number}")
        upload_artifact(artifact_store=FileSystemArtifactStore(paths.artifacts), file_path=str(png),
                        study_or_trial=trial, mimetype="image/png")
