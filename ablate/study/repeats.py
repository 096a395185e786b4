"""The seeded repeats: every arm x data set x seed cell one trial of ``<name>:repeats``.

Each cell is enqueued exactly once, with the settings it runs with decided when the arm's first
cell is enqueued and stored on it (:class:`CellSettings`): a search trial added later changes
nothing already decided. With sequential seeds the cells come look by look
(:func:`repeats_progress`), planned from the storage alone, so any worker at any time reaches
the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial

from ablate.analysis import SequentialPlan
from ablate.config import RunConfig, StudyConfig, base_run, with_overrides
from ablate.errors import ConfigError, TrainingError
from ablate.study import adapter
from ablate.study.cells import CellSettings, RepeatCell, cell_states, look_of, repeat_cells
from ablate.study.claims import claim_lock, requeue_dead_trials
from ablate.study.events import Events, QuietEvents
from ablate.study.paths import StudyPaths
from ablate.study.provenance import provenance
from ablate.study.rows import result_row
from ablate.study.search import best_trial
from ablate.study.confirm import confirmation
from ablate.study.storage import confirm_study_name, open_storage, repeats_study, search_study
from ablate.study.trial import run_fused_trials, run_trial
from ablate.study.worker import work
from ablate.train import fusion_ok, resolve_device, resolve_precision

if TYPE_CHECKING:
    from ablate.stats import LookResult

# ablate.stats (statsmodels, pandas) is imported where a sequential design needs it, not here:
# every worker process and `ablate check` imports this module (1.2 s of a 2.8 s import).

__all__ = ["chosen_settings", "cell_settings", "repeat_config", "fuse_count", "run_repeats", "sequential_settings",
           "RepeatsProgress", "repeats_progress"]


def chosen_settings(cfg: StudyConfig, paths: StudyPaths, arm: str, replicate: int = 0) -> tuple[dict, str]:
    """The searched values an arm's repeats run with, and where they came from: with per-arm
    tuning the arm's own search (one of ``search.replicates``), with ``best`` the study's one
    search; its best trial, or, with ``search.confirm``, the candidate with the best mean over its
    confirmation runs; none with ``fixed``."""
    method = cfg.tuning
    if method == "fixed":
        return {}, "the study file's settings"
    search_arm = arm if method == "per-arm" else None
    if cfg.search.confirm is not None:
        c = confirmation(cfg, paths, search_arm, replicate)
        w, paired = c.winner, c.paired_seeds
        return dict(w.params), (f"{confirm_study_name(cfg, search_arm, replicate)}: trial {w.trial} of the search, "
                                f"mean validation accuracy {w.mean_over(paired):.4f} over the {len(paired)} "
                                f"confirmation seeds every candidate completed (the search's best, trial "
                                f"{c.candidates[0].trial}, had {c.candidates[0].mean_over(paired):.4f})")
    study = search_study(cfg, open_storage(paths.storage), search_arm, replicate)
    best = best_trial(study, method)
    return dict(best.params), f"{study.study_name} trial {best.number} (validation accuracy {best.value:.4f})"


def cell_settings(cfg: StudyConfig, paths: StudyPaths, arm: str, replicate: int | None = None) -> CellSettings:
    """What every repeat cell of ``arm`` (and ``replicate``) runs with, decided once, when its first
    cell is enqueued: :func:`chosen_settings` and ``train.precision`` resolved on this machine."""
    settings, source = chosen_settings(cfg, paths, arm, replicate or 0)
    run = repeat_config(cfg, CellSettings(settings), RepeatCell(arm, cfg.dataset.name, cfg.train.seed))
    return CellSettings(settings, resolve_precision(run).train.precision, {"method": cfg.tuning, "source": source})


def repeat_config(cfg: StudyConfig, stored: CellSettings, cell: RepeatCell) -> RunConfig:
    """The run of one cell: the study's settings (stage-1 recipe written out), then the searched
    values stored on the cell, then the arm's own settings, then the cell's data set and seeds,
    and the precision resolved when the cell was enqueued (unless the arm sets one). Arms
    override the search (an NFMCE arm stays NFMCE even if the best trial had the constraint on).

    The cell's seed draws the sources of variance ``repeats.vary`` names; each other source is
    held at the study's ``train.seed`` (the split at ``dataset.split_seed``) for every seed. Every
    arm of a seed gets the same seeds, partition included: the runs stay paired.
    """
    run = with_overrides(base_run(cfg), stored.settings, "tuned settings")
    run = with_overrides(run, cfg.arms[cell.arm].overrides, f"repeats.arms.{cell.arm}")
    run = with_overrides(run, {"dataset.name": cell.dataset, "train.seed": cell.seed, **_held(cfg, cell.seed)},
                         "repeat cell")
    if run.train.precision == "auto":
        run = with_overrides(run, {"train.precision": stored.precision}, "precision")
    return run


def _held(cfg: StudyConfig, seed: int) -> dict[str, int]:
    """The per-source seeds of a cell of seed ``seed`` (see :func:`repeat_config`)."""
    assert cfg.repeats is not None
    vary = cfg.repeats.vary
    out = {f"train.{source}_seed": cfg.train.seed for source in ("init", "order", "augment") if source not in vary}
    if "split" in vary:
        out["dataset.partition_seed"] = seed
    return out


def fuse_count(cfg: StudyConfig) -> int:
    """How many seeds of one arm a repeats worker trains as one fused model: ``repeats.fuse``,
    else 4 on CUDA (launch-bound steps; HFTA) and 1 on the CPU (4 fused seeds ran at 0.80x one
    seed alone on the 2-core development machine: ``ablate bench --fuse 4``)."""
    assert cfg.repeats is not None
    if cfg.repeats.fuse is not None:
        return cfg.repeats.fuse
    return 4 if resolve_device(cfg.train.device).type == "cuda" else 1


def _enqueue_missing(study: optuna.Study, cfg: StudyConfig, paths: StudyPaths,
                     max_retry: int) -> tuple[list[RepeatCell], list[RepeatCell]]:
    """Enqueue each planned cell not yet COMPLETE, RUNNING or WAITING, unless it failed too often.

    The planned cells are :func:`repeats_progress`'s, read under the claim lock: every cell of a
    fixed design; with sequential seeds, the looks reached so far, so the worker that finds a
    look finished enqueues the next batch, and every other one finds it there and adds nothing.
    Each cell carries its look (user attribute ``look``) and its arm's settings, copied from the
    arm's first cell (retries, later seeds, later looks). Returns the planned cells and those
    given up on (failed more than ``max_retry`` times).
    """
    with claim_lock(adapter.storage_of(study), paths.storage, study.study_name):
        requeue_dead_trials(study, paths.storage, max_retry)
        trials = study.get_trials(deepcopy=False)
        states = cell_states(trials)
        decided = _decided_settings(trials)
        cells = repeat_cells(cfg, repeats_progress(cfg, trials).seeds)
        given_up = []
        for cell in _enqueue_order(cfg, cells):
            if cell in states.live:
                continue
            if states.given_up(cell, max_retry):
                given_up.append(cell)
                continue
            key = (cell.arm, cell.replicate)
            if key not in decided:
                decided[key] = cell_settings(cfg, paths, cell.arm, cell.replicate)
            study.enqueue_trial(cell.params, user_attrs={**decided[key].user_attrs(), "look": look_of(cfg, cell.seed)})
        return cells, given_up


def _decided_settings(trials: list[FrozenTrial]) -> dict[tuple[str, int | None], CellSettings]:
    """Per arm (and replicate), the settings stored on its first enqueued cell."""
    decided: dict[tuple[str, int | None], CellSettings] = {}
    for t in sorted(trials, key=lambda t: t.number):
        cell = RepeatCell.of(t)
        stored = CellSettings.from_attrs(t.user_attrs)
        if stored is not None:
            decided.setdefault((cell.arm, cell.replicate), stored)
    return decided


def _enqueue_order(cfg: StudyConfig, cells: list[RepeatCell]) -> list[RepeatCell]:
    """The cells in run order; with fused repeats an arm's seeds in a row, so that a worker can
    claim K of them together."""
    if fuse_count(cfg) <= 1:
        return cells
    arms = list(dict.fromkeys(c.arm for c in cells))
    return sorted(cells, key=lambda c: (c.dataset, c.replicate or 0, arms.index(c.arm), c.seed))


def _claimed_cell(trial: optuna.Trial, cfg: StudyConfig, cells: list[RepeatCell]) -> RepeatCell:
    """The cell a claimed trial runs, read through Optuna's suggest (its enqueued parameters);
    the choices are every arm, data set and seed the design may run, in a fixed order."""
    cell = RepeatCell(
        trial.suggest_categorical("arm", list(cfg.arms)),
        trial.suggest_categorical("dataset", sorted({c.dataset for c in cells})),
        trial.suggest_categorical("seed", sorted({c.seed for c in cells})),
        None if cfg.search.replicates == 1 else trial.suggest_categorical("replicate", list(range(cfg.search.replicates))),
    )
    trial.set_user_attr("arm", cell.arm)
    return cell


def _stored_config(cfg: StudyConfig, trial: optuna.Trial, cell: RepeatCell) -> RunConfig:
    stored = CellSettings.from_attrs(trial.user_attrs)
    if stored is None:  # enqueued by an older ablate: cannot say what it ran with
        raise ConfigError(f"repeat trial {trial.number} carries no settings; start a new repeats study")
    return repeat_config(cfg, stored, cell)


def run_repeats(cfg: StudyConfig, paths: StudyPaths, events: Events | None = None,
                max_trials: int | None = None) -> list[RepeatCell]:
    """Run every planned cell exactly once as a trial of ``<name>:repeats``.

    Each cell runs with the settings stored on its trial when it was enqueued (read back here,
    never recomputed). With sequential seeds a worker that runs out of cells waits while others
    finish the look, goes on with the next batch when there is one, and returns once the design
    has stopped. Returns the cells given up on after ``repeats.max_retries`` failures (the report
    names them).
    """
    if cfg.repeats is None:
        return []
    events = events or QuietEvents()
    study = repeats_study(cfg, open_storage(paths.storage, max_retry=cfg.repeats.max_retries))
    study.set_user_attr("ablate:provenance", provenance(paths))
    every = repeat_cells(cfg)  # every cell the design may run: the choices of each parameter
    label = f"{cfg.name}:repeats"

    def objective(trial: optuna.Trial) -> float:
        return run_trial(trial, _stored_config(cfg, trial, _claimed_cell(trial, cfg, every)), paths, events, label,
                         prune=False, keep_predictions=True)

    def fused(trials: list[optuna.Trial]) -> list[float | BaseException]:
        run_cfgs = [_stored_config(cfg, t, _claimed_cell(t, cfg, every)) for t in trials]
        return _fused_or_alone(trials, run_cfgs, paths, events, label)

    k = fuse_count(cfg)
    # an ensemble trains its two members one after the other: it does not fuse
    group = ((lambda t: (RepeatCell.of(t).arm, RepeatCell.of(t).dataset, RepeatCell.of(t).replicate)),
             (lambda t: 1 if cfg.arms[RepeatCell.of(t).arm].kind == "ensemble" else k))
    planned = None
    while True:
        cells, given_up = _enqueue_missing(study, cfg, paths, cfg.repeats.max_retries)
        # Waits while others run cells of this look; returns once all of them are finished.
        ran = work(study, paths, len(cells) - len(given_up), objective, events, only_waiting=True,
                   max_retry=cfg.repeats.max_retries, max_trials=max_trials, label="repeats",
                   fused=fused if k > 1 else None, group=group if k > 1 else None)
        if max_trials is not None:
            break
        if ran == 0 and (len(cells), len(given_up)) == planned:
            break  # nothing ran and nothing new was planned: no failed cell to retry, no look to add
        planned = (len(cells), len(given_up))
    return given_up  # from the last pass, which ran nothing (or was cut short by max_trials)


def _fused_or_alone(trials: list[optuna.Trial], run_cfgs: list[RunConfig], paths: StudyPaths, events: Events,
                    label: str) -> list[float | BaseException]:
    """K claimed cells of one arm trained as one fused model when fusion passed its self-check on
    this device (``ablate.train.fusion_ok``), else one after the other: a study never fails
    because fusion does. Each trial keeps the check's one-line answer as user attribute ``fusion``."""
    ok, why = fusion_ok(run_cfgs[0])
    for trial in trials:
        trial.set_user_attr("fusion", why)
    if ok:
        return run_fused_trials(trials, run_cfgs, paths, events, label)
    events.message(f"repeats: {len(trials)} seeds train one at a time: {why}")
    outcomes: list[float | BaseException] = []
    for trial, run_cfg in zip(trials, run_cfgs):
        try:
            outcomes.append(run_trial(trial, run_cfg, paths, events, label, prune=False, keep_predictions=True))
        except TrainingError as exc:  # the trial's own failure; the others go on
            outcomes.append(exc)
    return outcomes


def sequential_settings(cfg: StudyConfig) -> SequentialPlan | None:
    """The design of sequential repeats: the looks, the spending family and the comparisons
    sharing alpha (contrasts x data sets, from the study file); None for a fixed design."""
    rep = cfg.repeats
    if rep is None or not rep.sequential:
        return None
    from ablate.stats import default_contrasts

    contrasts = rep.contrasts or default_contrasts(list(rep.arms))
    datasets = rep.datasets or [cfg.dataset.name]
    return SequentialPlan(looks=tuple(rep.looks), spending=rep.spending, comparisons=len(contrasts) * len(datasets))


@dataclass(frozen=True)
class RepeatsProgress:
    """Where the repeats stand, recomputed from the storage (nothing else is kept anywhere).

    ``seeds``: the cells of the first ``seeds`` seeds are planned (all of a fixed design; with
    sequential seeds, up to the look the design has reached). ``look``: the verdicts of the
    latest complete look (None for a fixed design or before the first look is done).
    ``stopped``: every contrast is decided or the last look is done; no further batch.
    """

    seeds: int
    look: LookResult | None
    stopped: bool


def repeats_progress(cfg: StudyConfig, trials: list[FrozenTrial]) -> RepeatsProgress:
    """How many seeds are planned, from the repeat trials alone (stateless, any worker, any time).

    A fixed design plans every seed. Sequential seeds replay the looks: while every cell of the
    first ``n_k`` seeds is finished (COMPLETE, or given up after ``repeats.max_retries``
    failures), the look is evaluated on the paired differences of those seeds
    (``ablate.stats.sequential_look``, comparisons = contrasts x data sets of the study file) and,
    unless the design stops there, the next look's seeds are planned.
    """
    rep = cfg.repeats
    assert rep is not None
    plan = sequential_settings(cfg)
    if plan is None:
        return RepeatsProgress(seeds=rep.max_seeds, look=None, stopped=False)
    import pandas as pd

    from ablate.stats import sequential_look

    states = cell_states(trials)
    target, latest = rep.looks[0], None
    while True:
        cells = repeat_cells(cfg, target)
        if not all(states.finished(c, rep.max_retries) for c in cells):
            return RepeatsProgress(seeds=target, look=latest, stopped=False)  # the look is still running
        rows = [result_row(states.complete[c]) for c in cells if c in states.complete]
        if not rows:  # every cell of the look given up: nothing to decide on, nothing more to run
            return RepeatsProgress(seeds=target, look=latest, stopped=True)
        latest = sequential_look(pd.DataFrame(rows), plan, alpha=rep.alpha, contrasts=rep.contrasts, rope=rep.rope,
                                 smallest_effect=rep.smallest_effect, n_seeds_done=target,
                                 seeds=range(rep.first_seed, rep.first_seed + rep.max_seeds))
        if latest.stop:
            return RepeatsProgress(seeds=target, look=latest, stopped=True)
        target = latest.next_seeds
