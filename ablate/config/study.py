"""The study file's sections beyond one run: the search, the repeats and their arms, the study.

An arm's settings are worked out once (:attr:`StudyConfig.arms`), from :func:`arm_overrides`,
the one definition of what an arm (and a control arm) sets.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from ablate.analysis import VARIANCE_SOURCES, Spending, VarianceSource
from ablate.config.run import (DatasetConfig, ModelConfig, RunConfig, TrainConfig, _check_path, _Frozen,
                               with_overrides)
from ablate.errors import ConfigError
from ablate.seeding import CONFIRM_SEED_OFFSET, confirmation_seeds, ensemble_member_seeds

__all__ = ["Choices", "Range", "Dimension", "SamplerConfig", "PrunerConfig", "ConfirmConfig", "SearchConfig",
           "DEFAULT_ARMS", "CONTROLS", "MIN_FIRST_LOOK", "SequentialSeeds", "RepeatsConfig", "StudyConfig",
           "Arm", "base_run", "arm_overrides"]


class Choices(_Frozen):
    choices: list[Any] = Field(min_length=1)


class Range(_Frozen):
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"low must be <= high (got low={self.low}, high={self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got low={self.low})")
        return self


def _dimension_kind(value: Any) -> str:
    if isinstance(value, Choices) or (isinstance(value, dict) and "choices" in value):
        return "choices"
    return "range"


# A dimension is a list of choices or a numeric range, told apart by its 'choices' key, so an
# error names the dimension's own problem (low > high) rather than a missing 'choices'.
Dimension = Annotated[
    Union[Annotated[Choices, Tag("choices")], Annotated[Range, Tag("range")]],
    Discriminator(_dimension_kind),
]


class SamplerConfig(_Frozen):
    name: Literal["tpe", "random", "grid"] = "tpe"
    seed: int = 0


class PrunerConfig(_Frozen):
    name: Literal["median", "hyperband", "none"] = "median"
    warmup_epochs: int = Field(1, ge=0)
    startup_trials: int = Field(3, ge=0)


class ConfirmConfig(_Frozen):
    """Confirm a search's winner on fresh seeds: its ``top`` best trials each run on ``seeds`` more."""

    top: int = Field(ge=1)
    seeds: int = Field(ge=1)

    @property
    def runs(self) -> int:
        return self.top * self.seeds


class SearchConfig(_Frozen):
    """The hyperparameter search. ``n_trials`` is the whole budget of one search (of each arm's,
    with per-arm tuning), confirmation runs included; ``replicates`` independent searches each
    get the whole budget, their samplers seeded from ``sampler.seed``."""

    n_trials: int = Field(20, ge=0)
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    space: dict[str, Dimension] = Field(default_factory=dict)
    confirm: ConfirmConfig | None = None
    replicates: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _confirm_fits_the_budget(self) -> SearchConfig:
        if self.confirm is None:
            return self
        if self.n_trials == 0:
            raise ValueError("confirm: there is no search to confirm (n_trials is 0)")
        if self.search_trials < self.confirm.top:
            raise ValueError(
                f"confirm: {self.confirm.top} x {self.confirm.seeds} confirmation runs leave "
                f"{self.search_trials} of n_trials = {self.n_trials} for the search itself, fewer than the "
                f"{self.confirm.top} best trials to confirm; raise n_trials or lower confirm.top or confirm.seeds"
            )
        return self

    @property
    def search_trials(self) -> int:
        """The trials a search samples: its budget less the confirmation runs."""
        return self.n_trials - (self.confirm.runs if self.confirm is not None else 0)


DEFAULT_ARMS: dict[str, dict[str, Any]] = {
    "fmce": {"model.kind": "dual", "model.constraint.on": True},
    "nfmce": {"model.kind": "dual", "model.constraint.on": False},
    "single": {"model.kind": "single"},
}


# Control arms anyone can add to a study, as ``{control: NAME}`` (plus other settings):
# single-long is a single head trained for as many epochs as a DueHeadNet arm including its
# stage 1 (compute-matched); ensemble averages the logits of two single heads of its own
# (parameter-matched, no constraint).
CONTROLS = ("single-long", "ensemble")


# The first look of a sequential plan: on a 360-image test set, looks at 2 or 3 seeds ended
# "better" for equal arms in 14% and 6.5% of simulated studies (alpha 0.05; issue 16).
MIN_FIRST_LOOK = 5

class SequentialSeeds(_Frozen):
    """Seeds run in batches until every contrast is decided (``ablate.stats.sequential``).

    The looks are at ``min``, ``min + step``, ... seeds and always at ``max``: when
    ``max - min`` is not a multiple of ``step`` the last batch is shorter (6, 13, 20, 27, 30
    for ``{min: 6, max: 30, step: 7}``). ``min == max`` is a fixed design of ``max`` seeds.
    """

    min: int = Field(ge=2)
    max: int = Field(ge=2)
    step: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> SequentialSeeds:
        if self.min > self.max:
            raise ValueError(f"min must be <= max (got min={self.min}, max={self.max})")
        if self.min < self.max and self.min < MIN_FIRST_LOOK:
            raise ValueError(
                f"a sequential plan's first look (min) needs at least {MIN_FIRST_LOOK} seeds (got min={self.min}): "
                f"with fewer, whole-image accuracies often give paired differences with no spread, "
                f"which decide nothing, and the false-positive rate of early looks exceeds alpha"
            )
        return self

    @property
    def looks(self) -> tuple[int, ...]:
        """Cumulative seed counts at which the contrasts are tested."""
        return (*range(self.min, self.max, self.step), self.max)


def _seeds_kind(value: Any) -> str:
    return "sequential" if isinstance(value, (dict, SequentialSeeds)) else "fixed"


# A number (fixed design) or a {min, max, step} plan, told apart by being a mapping, so an error
# names the plan's own key (repeats.seeds.step) rather than "not a valid integer".
Seeds = Annotated[
    Union[Annotated[int, Field(ge=2), Tag("fixed")], Annotated[SequentialSeeds, Tag("sequential")]],
    Discriminator(_seeds_kind),
]


class RepeatsConfig(_Frozen):
    """Seeded repeats of chosen arms, paired by seed, for the significance report.

    ``seeds`` is a number (a fixed design) or a sequential plan ``{min, max, step}``; code that
    needs a count reads :attr:`max_seeds` or :attr:`looks`, never ``seeds`` itself.
    """

    arms: dict[str, dict[str, Any]] = Field(default_factory=lambda: dict(DEFAULT_ARMS), min_length=2)
    seeds: Seeds = 10
    # What a seed varies (ablate.analysis.VarianceSource: model initialisation, data order,
    # augmentation, the train / validation partition); a source left out is held at the study's
    # train.seed (split: at dataset.split_seed) for every seed. The test examples never vary:
    # they are the test split.
    vary: list[VarianceSource] = Field(default_factory=lambda: list(VARIANCE_SOURCES), min_length=1)
    spending: Spending = "obrien-fleming"
    first_seed: int = 0
    datasets: list[str] = Field(default_factory=list)  # empty: the study's dataset.name
    # per-arm: every arm gets its own search of search.n_trials trials (the default when the
    # study has a search); best: one search, its best trial for every arm; fixed: no search.
    params: Literal["per-arm", "best", "fixed"] | None = None
    contrasts: list[tuple[str, str]] | None = None
    rope: float | None = Field(None, ge=0.0)  # None: per data set, max(0.1, one test image)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    smallest_effect: float | None = Field(None, gt=0.0)  # points; sizes seeds_for_smallest_effect
    still_rising: float = Field(2.0, ge=0.0)  # points of validation gain over the last quarter
    max_retries: int = Field(2, ge=0)
    # Seeds of one arm trained as one fused (vmapped) model: None is 1 on the CPU, where 4 fused
    # seeds ran at 0.80x one seed alone, and 4 on CUDA, where steps are launch-bound.
    fuse: int | None = Field(None, ge=1)

    @field_validator("seeds", mode="before")
    @classmethod
    def _count_or_plan(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, dict, SequentialSeeds)):
            raise ValueError(f"expected a whole number of seeds (e.g. 10) or a sequential plan "
                             f"{{min: 6, max: 30, step: 6}} (got {v!r})")
        return v

    @model_validator(mode="after")
    def _contrasts_name_arms(self) -> RepeatsConfig:
        for a, b in self.contrasts or []:
            for arm in (a, b):
                if arm not in self.arms:
                    raise ValueError(f"contrast names arm {arm!r}, expected one of {sorted(self.arms)}")
        return self

    @property
    def sequential(self) -> bool:
        """True when seeds run in more than one batch (looks)."""
        return len(self.looks) > 1

    @property
    def looks(self) -> tuple[int, ...]:
        """Cumulative seed counts of the looks; one look (``seeds``) for a fixed design."""
        return self.seeds.looks if isinstance(self.seeds, SequentialSeeds) else (self.seeds,)

    @property
    def max_seeds(self) -> int:
        """The most seeds any arm runs: ``seeds``, or the plan's ``max``."""
        return self.looks[-1]


class StudyConfig(_Frozen):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    storage: str | None = None
    dataset: DatasetConfig = DatasetConfig()
    train: TrainConfig = TrainConfig()
    model: ModelConfig = ModelConfig()
    search: SearchConfig = SearchConfig()
    repeats: RepeatsConfig | None = None

    @property
    def run(self) -> RunConfig:
        return RunConfig(dataset=self.dataset, train=self.train, model=self.model)

    @functools.cached_property
    def arms(self) -> dict[str, Arm]:
        """The repeats' arms, each resolved once (empty without a ``repeats`` section)."""
        if self.repeats is None:
            return {}
        base = base_run(self)
        out = {}
        for name in self.repeats.arms:
            overrides = arm_overrides(self, name)
            out[name] = Arm(name, overrides, with_overrides(base, overrides, f"repeats.arms.{name}"))
        return out

    @property
    def tuning(self) -> str:
        """How the repeats get their settings: per-arm, best or fixed (see RepeatsConfig.params)."""
        if self.repeats is None or self.search.n_trials == 0:
            return "fixed"
        return self.repeats.params or "per-arm"

    @model_validator(mode="after")
    def _overrides_are_valid(self) -> StudyConfig:
        # Every searched value and every arm override must give a valid run config, so a
        # typo in the 20th trial's space fails now, not hours later.
        for path, dim in self.search.space.items():
            _check_path(self.run, path, "search.space")
            values = dim.choices if isinstance(dim, Choices) else [dim.low, dim.high]
            for value in values:
                _validated(self.run, {path: value}, f"search.space.{path}")
            if self.search.sampler.name == "grid" and not isinstance(dim, Choices):
                raise ValueError(f"search.space.{path}: the grid sampler needs 'choices', not a range")
        if self.repeats is not None:
            for arm in self.repeats.arms:
                try:
                    overrides = arm_overrides(self, arm)
                except ConfigError as exc:
                    raise ValueError(str(exc)) from None
                for path in overrides:
                    _check_path(self.run, path, f"repeats.arms.{arm}")
                _validated(self.run, overrides, f"repeats.arms.{arm}")
            if self.repeats.params == "best" and self.search.n_trials == 0:
                raise ValueError("repeats.params: best needs a search (search.n_trials > 0); use fixed")
            if self.search.replicates > 1 and self.repeats.sequential:
                raise ValueError("search.replicates: each replicate's settings run every seed of the repeats, "
                                 "so replicates need a fixed number of repeats.seeds, not a sequential plan")
        return self

    @model_validator(mode="after")
    def _runs_share_no_seed(self) -> StudyConfig:
        clash = _seed_clash(self)
        if clash is not None:
            raise ValueError(clash)
        return self


def _members(seeds: range) -> range:
    """Every ensemble member seed of ``seeds``: the two of each seed lie side by side."""
    return range(ensemble_member_seeds(seeds.start)[0], ensemble_member_seeds(seeds.stop)[0])


def _overlap(a: range, b: range) -> bool:
    return bool(a) and bool(b) and a.start < b.stop and b.start < a.stop


def _span(seeds: range) -> str:
    return str(seeds.start) if len(seeds) == 1 else f"{seeds.start}..{seeds.stop - 1}"


def _trains_an_ensemble(cfg: StudyConfig) -> bool:
    """Whether an arm, the study's model or a searched ``model.kind`` is an ensemble."""
    kinds = {cfg.model.kind}
    if cfg.repeats is not None:
        kinds |= {arm_overrides(cfg, arm).get("model.kind", cfg.model.kind) for arm in cfg.repeats.arms}
    searched = cfg.search.space.get("model.kind")
    if isinstance(searched, Choices) and cfg.search.n_trials > 0:
        kinds |= set(searched.choices)
    return "ensemble" in kinds


def _seed_clash(cfg: StudyConfig) -> str | None:
    """Where two kinds of the study's runs would share a seed, as one line naming the key; else None.

    A confirmation run must be none of the study's other runs (else it is not on a fresh seed),
    and an ensemble member none of the repeat runs it is compared with (issue 8). The seeds: the
    study's ``train.seed`` (the search's runs, and every source a repeat holds fixed), the
    repeats' from ``first_seed`` on, the ensemble members of both when anything trains an
    ensemble, and the confirmation seeds (:func:`ablate.seeding.confirmation_seeds`).
    """
    train = range(cfg.train.seed, cfg.train.seed + 1)
    rep = cfg.repeats
    repeats = range(rep.first_seed, rep.first_seed + rep.max_seeds) if rep is not None else range(0)
    runs = [("train.seed", "the study's seed", train), ("repeats.first_seed", "the repeats' seeds", repeats)]
    members = []
    if _trains_an_ensemble(cfg):
        members = [("train.seed", "the ensemble members of the study's seed", _members(train)),
                   ("repeats.first_seed", "the ensemble members of the repeats' seeds", _members(repeats))]
    for key, what, seeds in members:
        if _overlap(seeds, repeats):
            return (f"{key}: {what} ({_span(seeds)}) and the repeats' seeds ({_span(repeats)}) overlap, so the "
                    f"ensemble control would reuse runs it is compared with; choose seeds from 0 to {_FRESH - 1}")
    if cfg.search.confirm is None:
        return None
    confirm = confirmation_seeds(cfg.search.confirm.seeds)
    for key, what, seeds in runs + members:
        if _overlap(seeds, confirm):
            return (f"{key}: {what} ({_span(seeds)}) and the confirmation seeds ({_span(confirm)}) overlap, so "
                    f"a confirmation run would not be on a fresh seed; choose seeds from 0 to {_FRESH - 1}")
    return None


# Seeds 0 .. 2**19 - 1 and their ensemble members (2**20 ..) stay below the confirmation seeds.
_FRESH = CONFIRM_SEED_OFFSET // 4


@dataclass(frozen=True)
class Arm:
    """One arm of the repeats as the study file defines it, worked out once (``StudyConfig.arms``).

    ``overrides``: the arm's settings as dotted paths, a control written out
    (:func:`arm_overrides`); ``run``: the study's base run (:func:`base_run`) with them, which is
    what the arm's own search starts from and what its model kind is read from.
    """

    name: str
    overrides: dict[str, Any]
    run: RunConfig

    @property
    def kind(self) -> str:
        return self.run.model.kind


def base_run(cfg: StudyConfig) -> RunConfig:
    """The study's run settings with the stage-1 recipe written out.

    ``model.model1`` lr, epochs, weight decay and batch size default to the study's base
    ``train`` section, never to a search trial's sampled values: every trial and cell of one
    seed and backbone then shares one stage-1 checkpoint, and its key says what trained it.
    """
    pinned = {f"model.model1.{k}": v for k, v in cfg.model.model1.recipe(cfg.train).items()}
    return with_overrides(cfg.run, pinned, "model.model1")


def arm_overrides(cfg: StudyConfig, arm: str) -> dict[str, Any]:
    """An arm's settings as dotted paths, with a ``control`` arm written out.

    ``control: single-long`` is a single head whose ``train.epochs`` is the DueHeadNet arms'
    total, stage 1 included (model1.epochs, or train.epochs, plus train.epochs);
    ``control: ensemble`` is ``model.kind: ensemble``.

    Raises:
        ConfigError: an unknown control, or a control combined with a setting it decides.
    """
    assert cfg.repeats is not None
    overrides = dict(cfg.repeats.arms[arm])
    control = overrides.pop("control", None)
    if control is None:
        return overrides
    where = f"repeats.arms.{arm}.control"
    if control not in CONTROLS:
        raise ConfigError(f"{where}: unknown control {control!r}; expected one of: {', '.join(CONTROLS)}")
    decided = {"single-long": ("model.kind", "train.epochs"), "ensemble": ("model.kind",)}[control]
    clash = sorted(set(decided) & set(overrides))
    if clash:
        raise ConfigError(f"{where}: {control} sets {', '.join(clash)} itself; remove it from the arm")
    if control == "ensemble":
        return {**overrides, "model.kind": "ensemble"}
    # A DueHeadNet trains model2 for train.epochs after its stage 1; with another init it
    # trains (or at least runs) two backbones: count that as a second train.epochs.
    epochs = cfg.train.epochs
    m1 = cfg.model.model1
    first = (m1.epochs or epochs) if m1.init == "stage1" else epochs
    return {**overrides, "model.kind": "single", "train.epochs": int(first + epochs)}


def _validated(run: RunConfig, overrides: dict[str, Any], where: str) -> None:
    try:
        with_overrides(run, overrides, where=where)
    except ConfigError as exc:  # pydantic only reports ValueError raised inside a validator
        raise ValueError(str(exc)) from None

