"""The worker loop: claim trials under the study's lock, run them, tell Optuna how they ended.

Optuna's ``Study.optimize`` holds this loop for a single process; ablate asks for its trials
itself, so that many workers on one storage run exactly the trials asked for
(:mod:`ablate.study.claims`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from ablate.errors import TrainingError
from ablate.study import adapter
from ablate.study.claims import claim_lock, requeue_dead_trials, tag_claimed
from ablate.study.events import Events
from ablate.study.paths import StudyPaths

__all__ = ["FINISHED", "POLL_SECONDS", "work", "claim", "tell"]

POLL_SECONDS = 2.0  # how often an idle worker looks for work while others still run trials
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

Outcome = float | BaseException
Objective = Callable[[optuna.Trial], float]
FusedObjective = Callable[[list[optuna.Trial]], list[Outcome]]
GroupKey = Callable[[FrozenTrial], tuple]  # trials with equal keys may train together


def claim(study: optuna.Study, paths: StudyPaths, want: int, *, only_waiting: bool, max_retry: int,
          group: tuple[GroupKey, Callable[[FrozenTrial], int]] | None = None) -> list[optuna.Trial] | None | bool:
    """Under the study's lock: trials to run, None to wait for others, False when all is done.

    One trial, or with ``group`` = (key, limit) (the fused repeats) up to ``limit(first)``
    WAITING trials in a row whose key equals the first's: Optuna hands out WAITING trials in
    the order they were enqueued, so asking that many times under the lock claims exactly them.
    """
    with claim_lock(adapter.storage_of(study), paths.storage, study.study_name):
        requeue_dead_trials(study, paths.storage, max_retry)
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state in FINISHED for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        waiting = sorted((t for t in trials if t.state == TrialState.WAITING), key=lambda t: t.number)
        if done >= want:
            return False
        if not waiting and (only_waiting or done + running >= want):
            return None if running else False
        claimed = []
        for _ in range(_group_size(waiting, group)):
            trial = study.ask()
            tag_claimed(study, trial)  # before the lock is let go: see claims.half_claimed
            claimed.append(trial)
        return claimed


def _group_size(waiting: list[FrozenTrial], group: tuple[GroupKey, Callable[[FrozenTrial], int]] | None) -> int:
    if group is None or not waiting:
        return 1
    key, limit = group
    first, count = key(waiting[0]), 1
    while count < min(limit(waiting[0]), len(waiting)) and key(waiting[count]) == first:
        count += 1
    return count


def work(study: optuna.Study, paths: StudyPaths, want: int, objective: Objective, events: Events, *,
         only_waiting: bool, max_retry: int, max_trials: int | None = None, label: str = "",
         fused: FusedObjective | None = None, group: tuple[GroupKey, Callable[[FrozenTrial], int]] | None = None) -> int:
    """Claim and run trials until the study holds ``want`` finished trials. Returns how many ran here.

    With ``fused`` and ``group``, claimed groups of more than one trial train together.
    """
    ran = 0
    while max_trials is None or ran < max_trials:
        claimed = claim(study, paths, want, only_waiting=only_waiting, max_retry=max_retry, group=group)
        if claimed is False:
            break
        if claimed is None:
            time.sleep(POLL_SECONDS)
            continue
        ran += len(claimed)
        outcomes = _run_claimed(study, claimed, objective, fused)
        for trial, outcome in zip(claimed, outcomes):
            tell(study, trial, outcome, want, events)
            events.trial_finished(label or study.study_name,
                                  adapter.storage_of(study).get_trial(adapter.trial_id(trial)))
    return ran


def _run_claimed(study: optuna.Study, claimed: list[optuna.Trial], objective: Objective,
                 fused: FusedObjective | None) -> list[Outcome]:
    """Run claimed trials with their hearts beating; a failure that is not the trial's own fault
    (Ctrl-C, a bug) fails them and is raised."""
    with contextlib.ExitStack() as beats:
        # Optuna's optimize() beats the heart of its trials the same way; we ask() ourselves
        # (to count and claim under a lock), so we start the beats ourselves.
        for trial in claimed:
            beats.enter_context(adapter.heartbeat(study, trial))
        try:
            if len(claimed) > 1:
                assert fused is not None
                return fused(claimed)
            try:
                return [objective(claimed[0])]
            except (optuna.TrialPruned, TrainingError) as exc:
                return [exc]
        except BaseException:
            for trial in claimed:
                study.tell(trial, state=TrialState.FAIL)
            raise


def tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome, want: int, events: Events) -> None:
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
