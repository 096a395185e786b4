"""The study file, parsed once at the edge into frozen, validated records.

Everything after :func:`load_study` takes these typed objects, never raw dicts. A bad file
fails here with one line naming the key, the value and what was expected, before any
storage file or run folder exists.

Layering: standard library, PyYAML and pydantic only. Names that need torch or timm to
check (backbones, data sets on disk) are checked by ``ablate.study.check_study``.
"""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from ablate.analysis import Spending
from ablate.errors import ConfigError

__all__ = [
    "DatasetConfig",
    "TrainConfig",
    "Model1Config",
    "ConstraintConfig",
    "ModelConfig",
    "RunConfig",
    "Choices",
    "Range",
    "SamplerConfig",
    "PrunerConfig",
    "SearchConfig",
    "SequentialSeeds",
    "RepeatsConfig",
    "StudyConfig",
    "load_study",
    "parse_study",
    "with_overrides",
    "config_hash",
    "get_path",
    "DEFAULT_ARMS",
    "CONTROLS",
    "base_run",
    "arm_overrides",
    "Arm",
    "VARY",
    "MIN_FIRST_LOOK",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DatasetConfig(_Frozen):
    """Which images, at which size, split how.

    The test split is the data set's official one where it has one (CIFAR-10, Flowers-102),
    else the one ``split_seed`` draws: every run of a study is tested on the same examples. The
    train / validation partition of the rest is drawn by ``partition_seed`` (None:
    ``split_seed``); the repeats set it to a cell's seed when their seeds vary the split
    (``repeats.vary``), and every arm of that seed gets the same partition.
    """

    name: str = "digits"
    root: str = "data"
    download: bool = False
    image_size: int = Field(32, ge=8, le=1024)
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    subset: int | None = Field(None, ge=10)
    augment: bool = True
    split_seed: int = 0
    partition_seed: int | None = None

    @property
    def partition(self) -> int:
        """The seed of the train / validation partition."""
        return self.split_seed if self.partition_seed is None else self.partition_seed

    @model_validator(mode="after")
    def _leaves_a_train_split(self) -> DatasetConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                f"val_fraction + test_fraction must leave at least 10% for training "
                f"(got {self.val_fraction} + {self.test_fraction})"
            )
        return self


class TrainConfig(_Frozen):
    """The paper's recipe as defaults: AdamW 4e-4, wd 5e-4, cosine schedule, 30 epochs, batch 64."""

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(4.0e-4, gt=0.0)
    weight_decay: float = Field(5.0e-4, ge=0.0)
    seed: int = 0
    # The sources of variance a seed draws, each from its own seed (None: ``seed``): model
    # initialisation, data order, augmentation. The repeats hold a source fixed at the study's
    # ``train.seed`` when ``repeats.vary`` leaves it out.
    init_seed: int | None = None
    order_seed: int | None = None
    augment_seed: int | None = None
    device: str = "auto"
    threads: int | None = Field(None, ge=1)
    compile: bool = False
    # auto: bf16 autocast (with channels_last) on CUDA and on CPUs with native bf16
    # (avx512_bf16 / AMX), fp32 elsewhere. The study resolves it once, when a repeat cell is
    # enqueued or a search trial starts, and stores the result, so one paired study never
    # mixes precisions.
    precision: Literal["auto", "fp32", "bf16"] = "auto"

    def seed_of(self, source: Literal["init", "order", "augment"]) -> int:
        """The seed that draws ``source``: its own seed where set, else ``seed``."""
        own = {"init": self.init_seed, "order": self.order_seed, "augment": self.augment_seed}[source]
        return self.seed if own is None else own

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError(f"expected auto, cpu, cuda or cuda:N (got {v!r})")


class Model1Config(_Frozen):
    """How DueHeadNet's first head starts and whether it trains."""

    init: Literal["stage1", "imagenet", "random"] = "stage1"
    freeze: bool = True
    weights: str | None = None  # a local checkpoint file for init: imagenet
    # The stage-1 recipe for init: stage1. A study writes them out from its base ``train``
    # section where they are not set (``base_run``), so a search trial's sampled lr never
    # reaches model1: FMCE and NFMCE of one seed and backbone always share one model1.
    lr: float | None = Field(None, gt=0.0)
    epochs: int | None = Field(None, ge=1)
    weight_decay: float | None = Field(None, ge=0.0)
    batch_size: int | None = Field(None, ge=2)

    def recipe(self, train: TrainConfig) -> dict[str, Any]:
        """The stage-1 recipe: lr, epochs, weight decay and batch size, each from ``train`` where unset."""
        own = {"lr": self.lr, "epochs": self.epochs, "weight_decay": self.weight_decay, "batch_size": self.batch_size}
        return {k: getattr(train, k) if v is None else v for k, v in own.items()}


class ConstraintConfig(_Frozen):
    """The FMCE penalty: weight * cosine similarity of model2's map to model1's (detached) map."""

    on: bool = True
    weight: float = Field(1.0, ge=0.0)
    target: Literal["map", "pooled"] = "map"


class ModelConfig(_Frozen):
    # ensemble: the averaged logits of two single-head runs of its own (a parameter-matched
    # control without the constraint); its members' seeds derive from the run's seed.
    kind: Literal["dual", "single", "ensemble"] = "dual"
    backbone: str = "seresnet18"
    head: Literal["linear", "mlp"] = "linear"
    model1: Model1Config = Model1Config()
    constraint: ConstraintConfig = ConstraintConfig()

    @property
    def arm(self) -> str:
        """The paper's name for this model: fmce, nfmce, single (or ensemble)."""
        if self.kind in ("single", "ensemble"):
            return self.kind
        return "fmce" if self.constraint.on else "nfmce"


class RunConfig(_Frozen):
    """Everything one training run depends on (besides its seed, which is ``train.seed``)."""

    dataset: DatasetConfig = DatasetConfig()
    train: TrainConfig = TrainConfig()
    model: ModelConfig = ModelConfig()


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


class SearchConfig(_Frozen):
    n_trials: int = Field(20, ge=0)
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    space: dict[str, Dimension] = Field(default_factory=dict)


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

# The sources of variance a repeat seed can draw (``repeats.vary``): model initialisation, data
# order, augmentation, and the train / validation partition.
VARY = ("init", "order", "augment", "split")


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
    # What a seed varies; a source left out is held at the study's train.seed (split: at
    # dataset.split_seed) for every seed. The test examples never vary: they are the test split.
    vary: list[Literal["init", "order", "augment", "split"]] = Field(default_factory=lambda: list(VARY), min_length=1)
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
        return self


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


# ---------------------------------------------------------------------------------------------
# Overrides by dotted path


def get_path(cfg: BaseModel, path: str) -> Any:
    value: Any = cfg
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _check_path(run: RunConfig, path: str, where: str) -> None:
    node: Any = run
    for part in path.split("."):
        fields = type(node).model_fields if isinstance(node, BaseModel) else {}
        if part not in fields:
            hint = _did_you_mean(part, list(fields))
            raise ValueError(f"{where}: unknown setting {path!r}{hint}")
        node = getattr(node, part)
    if isinstance(node, BaseModel):
        raise ValueError(f"{where}: {path!r} is a section, not a setting")


def with_overrides(run: RunConfig, overrides: dict[str, Any], where: str = "override") -> RunConfig:
    """A copy of ``run`` with dotted-path settings replaced, validated like the study file."""
    data = run.model_dump()
    for path, value in overrides.items():
        node = data
        *parents, leaf = path.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"{where}: unknown setting {path!r}")
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"{where}: unknown setting {path!r}{_did_you_mean(leaf, list(node))}")
        node[leaf] = value
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_first_error(exc)}") from None


def config_hash(cfg: BaseModel) -> str:
    """A short, stable hash of a config's resolved values (key order does not matter)."""
    text = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# Loading


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study file.

    Raises:
        ConfigError: the file is missing, is not YAML, uses a tag the safe loader refuses,
            has an unknown key (with a did-you-mean), a wrong type or an out-of-range value.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read study file ({exc.strerror})") from None
    return parse_study(text, source=str(path))


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only true/false are booleans.

    YAML 1.1 also reads on/off/yes/no as booleans, which would turn the key ``on`` of
    ``constraint: {on: true}`` into ``True``.
    """


_SafeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_study(text: str, source: str = "<study>") -> StudyConfig:
    try:
        raw = yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}:{where} invalid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level (got {type(raw).__name__})")
    raw = copy.deepcopy(raw)
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_error(exc, raw)}") from None


def _first_error(exc: ValidationError, raw: Any = None) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if not _is_union_tag(p)]
    key = ".".join(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(StudyConfig if raw is not None else RunConfig, loc[:-1])
        hint = _did_you_mean(loc[-1], list(parent.model_fields)) if parent is not None else ""
        return f"unknown key {key!r}{hint}"
    if kind == "missing":
        return f"{key}: required setting is missing"
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    shown = "" if isinstance(value, (dict, list)) or value is None else f" (got {value!r})"
    if "(got" in msg:
        shown = ""
    return f"{key}: {msg}{shown}" if key else f"{msg}{shown}"


def _is_union_tag(part: Any) -> bool:
    return part in ("Choices", "Range", "choices", "range", "fixed", "sequential") or (isinstance(part, str) and part.startswith("function-"))


def _model_at(model: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    node: Any = model
    for part in loc:
        field = node.model_fields.get(part) if isinstance(node, type) and issubclass(node, BaseModel) else None
        if field is None:
            return None
        ann = field.annotation
        node = next((a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if node is None:
            return None
    return node


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (expected one of: {', '.join(sorted(options))})" if options else ""
