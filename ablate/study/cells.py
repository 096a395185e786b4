"""The cells of the seeded repeats and the settings they run with, as records.

A *cell* is one (arm, data set, seed) of ``<name>:repeats``: one trial, enqueued exactly once
with the cell as its parameters and its :class:`CellSettings` as user attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from ablate.config import StudyConfig
from ablate.study import adapter

__all__ = ["RepeatCell", "CellSettings", "repeat_cells", "look_of", "CellStates", "cell_states"]


@dataclass(frozen=True, order=True)
class RepeatCell:
    """One (arm, data set, seed) of the repeats; with ``search.replicates`` > 1, of one replicate
    (which independent search chose its settings; None with a single search)."""

    arm: str
    dataset: str
    seed: int
    replicate: int | None = None

    @property
    def params(self) -> dict[str, Any]:
        """The trial parameters it is enqueued with (Optuna's ``params`` of the trial)."""
        params = {"arm": self.arm, "dataset": self.dataset, "seed": self.seed}
        return params if self.replicate is None else {**params, "replicate": self.replicate}

    @classmethod
    def of(cls, trial: FrozenTrial) -> RepeatCell:
        """The cell a trial runs, from :func:`ablate.study.adapter.cell_params`."""
        p = adapter.cell_params(trial)
        return cls(p.get("arm"), p.get("dataset"), p.get("seed"), p.get("replicate"))

    def __str__(self) -> str:
        text = f"{self.arm}/{self.dataset}/seed {self.seed}"
        return text if self.replicate is None else f"{text}/replicate {self.replicate}"


@dataclass(frozen=True)
class CellSettings:
    """What every cell of an arm runs with, decided once, when the arm's first cell is enqueued.

    ``settings``: the searched values (dotted paths); ``precision``: ``train.precision`` resolved
    on the machine that enqueued it; ``tuning``: how they were chosen (``method``) and from which
    trial (``source``). Stored on each cell as user attributes and read back from there.
    """

    settings: dict[str, Any] = field(default_factory=dict)
    precision: str = "auto"
    tuning: dict[str, Any] = field(default_factory=dict)

    def user_attrs(self) -> dict[str, Any]:
        return {"settings": dict(self.settings), "precision": self.precision, "tuning": dict(self.tuning)}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> CellSettings | None:
        """The settings stored on a cell's trial; None for a trial that carries none."""
        if "settings" not in attrs:
            return None
        return cls(dict(attrs["settings"]), attrs.get("precision", "auto"), dict(attrs.get("tuning") or {}))


def repeat_cells(cfg: StudyConfig, n_seeds: int | None = None) -> list[RepeatCell]:
    """Every cell of the repeats, in the order they are run.

    Seed by seed, so an interrupted run leaves complete pairs; single-head arms first within a
    seed, so that a single run whose recipe is the stage-1 recipe serves as model1 (init:
    stage1) of the DueHeadNet arms of the same seed instead of a second training. ``n_seeds``:
    the first that many seeds only (default ``repeats.max_seeds``; with sequential seeds, the
    cells planned so far are ``ablate.study.repeats.repeats_progress``'s).
    """
    assert cfg.repeats is not None
    datasets = cfg.repeats.datasets or [cfg.dataset.name]
    count = cfg.repeats.max_seeds if n_seeds is None else n_seeds
    seeds = range(cfg.repeats.first_seed, cfg.repeats.first_seed + count)
    arms = sorted(cfg.arms, key=lambda a: cfg.arms[a].kind != "single")
    replicates = [None] if cfg.search.replicates == 1 else range(cfg.search.replicates)
    return [RepeatCell(a, d, s, r) for d in datasets for r in replicates for s in seeds for a in arms]


def look_of(cfg: StudyConfig, seed: int) -> int:
    """The look (1-based) a seed belongs to: 1 for every seed of a fixed design."""
    assert cfg.repeats is not None
    index = seed - cfg.repeats.first_seed
    return next(k for k, n in enumerate(cfg.repeats.looks, start=1) if index < n)


@dataclass(frozen=True)
class CellStates:
    """Per cell: its first COMPLETE trial; the cells COMPLETE, RUNNING or WAITING; failures so far.

    A cell is a :class:`RepeatCell`, or whatever ``key`` of :func:`cell_states` makes of a trial
    (a confirmation run's (candidate, seed)).
    """

    complete: dict[Hashable, FrozenTrial]
    live: set[Hashable]
    failures: dict[Hashable, int]

    def finished(self, cell: Hashable, max_retries: int) -> bool:
        """COMPLETE, or given up after more than ``max_retries`` failures and not running again."""
        return cell in self.complete or (cell not in self.live and self.given_up(cell, max_retries))

    def given_up(self, cell: Hashable, max_retries: int) -> bool:
        """Failed more than ``max_retries`` times, so not enqueued again."""
        return self.failures.get(cell, 0) > max_retries


def cell_states(trials: list[FrozenTrial], key: Callable[[FrozenTrial], Hashable] = RepeatCell.of) -> CellStates:
    """Where each cell stands; ``key``: the cell a trial runs (default: a repeat cell)."""
    complete: dict[Hashable, FrozenTrial] = {}
    live: set[Hashable] = set()
    failures: dict[Hashable, int] = {}
    for t in sorted(trials, key=lambda t: t.number):
        cell = key(t)
        if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING):
            live.add(cell)
        if t.state == TrialState.COMPLETE:
            complete.setdefault(cell, t)
        if t.state in (TrialState.FAIL, TrialState.PRUNED):
            failures[cell] = failures.get(cell, 0) + 1
    return CellStates(complete, live, failures)
