"""What one training run depends on: its data set, recipe and model, as frozen records; and
a run changed by dotted-path settings (``train.lr``), validated like the study file."""

from __future__ import annotations

import difflib
import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ablate.errors import ConfigError

__all__ = ["DatasetConfig", "TrainConfig", "Model1Config", "ConstraintConfig", "ModelConfig", "RunConfig",
           "get_path", "with_overrides", "config_hash"]


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


def _first_error(exc: ValidationError, root: type[BaseModel] | None = None) -> str:
    """The first validation error as one line; ``root`` (default RunConfig) is the model the
    error's location starts at, for the did-you-mean of an unknown key."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if not _is_union_tag(p)]
    key = ".".join(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(root or RunConfig, loc[:-1])
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
