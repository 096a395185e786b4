"""Stage 1: the single-head run whose best checkpoint is DueHeadNet's model1 (``model1.init: stage1``).

Everything about that checkpoint lives here: the run that trains it (its recipe is
``ablate.config.Model1Config.recipe``), the key and path it is cached under, loading it or
having it trained, and the training images it cost. The lone and the fused run both use it;
each passes in how it trains the stage-1 runs that are missing (one by one, or fused).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ablate.config import ModelConfig, RunConfig, config_hash
from ablate.data import save_atomic
from ablate.records import TrialResult
from ablate.train.loop import SEED_SOURCES

__all__ = [
    "Stage1",
    "TrainStage1",
    "uses_stage1",
    "stage1_config",
    "stage1_run_config",
    "stage1_path",
    "single_checkpoint_path",
    "save_single_checkpoint",
    "stage1_weights",
    "stage1_images",
    "images_per_epoch",
]

# Trains the given stage-1 runs, saving their checkpoints under the given folder; an outcome per run.
TrainStage1 = Callable[[list[RunConfig], Path], Sequence[TrialResult | Exception]]


def uses_stage1(cfg: RunConfig) -> bool:
    """Whether ``cfg`` is a DueHeadNet whose model1 is a stage-1 checkpoint."""
    return cfg.model.kind == "dual" and cfg.model.model1.init == "stage1"


def _weights_key(single: RunConfig) -> RunConfig:
    """What changes a single-head run's weights: its data and train / validation partition, its
    seeds (initialisation, data order, augmentation), backbone and recipe (lr, epochs, weight
    decay, batch, precision, augmentation); not where or how fast it ran.

    A per-source seed equal to the seed it falls back on is written as unset (and a partition
    seed equal to ``split_seed`` likewise), so the same run spelt two ways has one key, and a
    run that sets none keeps the key it always had.
    """
    assert single.model.kind == "single"
    t, d = single.train, single.dataset
    seeds = {f"{source}_seed": None if t.seed_of(source) == t.seed else t.seed_of(source)
             for source in SEED_SOURCES}
    return single.model_copy(update={
        "model": ModelConfig(kind="single", backbone=single.model.backbone),
        "train": t.model_copy(update={"device": "auto", "threads": None, "compile": False, **seeds}),
        "dataset": d.model_copy(update={"partition_seed": None if d.partition == d.split_seed else d.partition}),
    })


def stage1_config(cfg: RunConfig) -> RunConfig:
    """The single-head run whose best checkpoint serves as DueHeadNet's model1 (init: stage1).

    Its recipe is ``model.model1`` (lr, epochs, weight decay, batch size), each falling back
    to the run's ``train`` value where unset; a study writes them out from its base recipe
    (``ablate.config.base_run``), so a search trial's sampled settings never change model1.
    Data, seed, backbone and precision are the run's own.
    """
    single = cfg.model_copy(update={
        "model": ModelConfig(kind="single", backbone=cfg.model.backbone),
        "train": cfg.train.model_copy(update=cfg.model.model1.recipe(cfg.train)),
    })
    return _weights_key(single)


def stage1_run_config(cfg: RunConfig) -> RunConfig:
    """``stage1_config(cfg)`` on the run's own hardware: the run that trains the stage-1 checkpoint."""
    single = stage1_config(cfg)
    same_hardware = {k: getattr(cfg.train, k) for k in ("device", "threads", "compile")}
    return single.model_copy(update={"train": single.train.model_copy(update=same_hardware)})


def single_checkpoint_path(single: RunConfig, cache_dir: Path) -> Path:
    """Where a single-head run keeps its best backbone: keyed by everything that changes its weights."""
    key = _weights_key(single)
    return cache_dir / f"stage1-{key.model.backbone}-seed{key.train.seed}-{config_hash(key)}.pt"


def stage1_path(cfg: RunConfig, cache_dir: Path) -> Path:
    """Where the stage-1 checkpoint of ``cfg`` lives: keyed by everything that changes its weights.

    A single-head run saves its best checkpoint under its own key, so it serves as model1
    exactly when its recipe is the stage-1 recipe a DueHeadNet asks for.
    """
    return single_checkpoint_path(stage1_config(cfg), cache_dir)


def save_single_checkpoint(cfg: RunConfig, best_state: dict[str, torch.Tensor], cache_dir: Path | None) -> None:
    """A single-head run's best backbone, saved under its own recipe's key so that it may serve as
    a stage-1 model1. Other kinds of run, or no ``cache_dir``, save nothing."""
    if cfg.model.kind != "single" or cache_dir is None:
        return
    backbone = {name.removeprefix("backbone."): t.to("cpu") for name, t in best_state.items()
                if name.startswith("backbone.")}
    save_atomic(backbone, single_checkpoint_path(cfg, cache_dir))


@dataclass(frozen=True)
class Stage1:
    """One DueHeadNet seed's model1: the stage-1 weights and what its trial records of them."""

    state: dict[str, torch.Tensor]
    record: dict  # extras["stage1"]: checkpoint file, key, recipe, reused


def stage1_weights(cfgs: Sequence[RunConfig], cache_dir: Path | None, train: TrainStage1) -> list[Stage1 | Exception]:
    """Each run's stage-1 checkpoint, seed k's at [k]: loaded from ``cache_dir``, or trained first.

    Args:
        cfgs: DueHeadNet runs with ``model1.init: stage1``.
        cache_dir: where the checkpoints live (None: a fresh temporary folder).
        train: trains the stage-1 runs whose checkpoints are missing (``stage1_run_config`` of
            each) into the folder it is given; a run that fails fails its seed.

    Returns:
        Per run, its Stage1, or the exception its stage-1 run ended with.
    """
    cache_dir = Path(tempfile.mkdtemp(prefix="ablate-stage1-")) if cache_dir is None else cache_dir
    missing = [i for i, c in enumerate(cfgs) if not stage1_path(c, cache_dir).exists()]
    trained = dict(zip(missing, train([stage1_run_config(cfgs[i]) for i in missing], cache_dir))) if missing else {}
    out: list[Stage1 | Exception] = []
    for i, cfg in enumerate(cfgs):
        failed = trained.get(i)
        if isinstance(failed, Exception):
            out.append(failed)
            continue
        path = stage1_path(cfg, cache_dir)
        single = stage1_config(cfg)
        t = single.train
        record = {"checkpoint": path.name, "key": config_hash(single),
                  "recipe": {"lr": t.lr, "epochs": t.epochs, "weight_decay": t.weight_decay,
                             "batch_size": t.batch_size, "precision": t.precision},
                  "reused": i not in trained}
        out.append(Stage1(torch.load(path, weights_only=True, map_location="cpu"), record))
    return out


def images_per_epoch(n_train: int, batch_size: int) -> int:
    """Training images one epoch sees: whole batches only (drop_last), unless one batch is more than all."""
    return n_train - n_train % batch_size if n_train >= batch_size else n_train


def stage1_images(cfg: RunConfig, n_train: int) -> int:
    """Training images of the stage-1 run ``cfg``'s model1 cost (0 without one), reused or not:
    a DueHeadNet's compute includes its stage 1. ``n_train``: the training split's size."""
    if not uses_stage1(cfg):
        return 0
    single = stage1_config(cfg)
    return images_per_epoch(n_train, single.train.batch_size) * single.train.epochs
