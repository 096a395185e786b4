"""One training run: ``train_run(cfg) -> TrialResult``. No Optuna here.

The study hands in a plain ``on_epoch`` callback; it may raise (Optuna's TrialPruned, say)
to stop the run, and the exception passes through untouched.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ablate.config import ConstraintConfig, ModelConfig, RunConfig, config_hash
from ablate.data import DeviceImages, ImageTensors, Splits, load_images, save_atomic, split_indices
from ablate.errors import ConfigError, TrainingError
from ablate.models import build_model, count_parameters, fmce_penalty, head_similarity
from ablate.records import EpochStats, TrialResult
from ablate.seeding import seed_everything

__all__ = ["resolve_device", "train_run", "train_epoch", "EpochSums", "stage1_config", "stage1_run_config", "stage1_path", "evaluate", "available_cores"]

EpochCallback = Callable[[EpochStats], None]
Log = Callable[[str], None]


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} asked for, but no CUDA device is available")
    return device


def stage1_config(cfg: RunConfig) -> RunConfig:
    """The single-head run whose best checkpoint serves as DueHeadNet's model1 (init: stage1).

    Only what changes the weights is kept: the same data, seed and backbone, the run's recipe
    unless ``model.model1.lr`` / ``epochs`` fix a stage-1 recipe of its own; the
    DueHeadNet-only settings are reset so FMCE and NFMCE of one seed share one stage-1 run.
    """
    m1 = cfg.model.model1
    recipe = {"device": "auto", "threads": None, "compile": False,
              "lr": m1.lr or cfg.train.lr, "epochs": m1.epochs or cfg.train.epochs}
    return cfg.model_copy(
        update={
            "model": ModelConfig(kind="single", backbone=cfg.model.backbone),
            "train": cfg.train.model_copy(update=recipe),
        }
    )


def stage1_run_config(cfg: RunConfig) -> RunConfig:
    """``stage1_config(cfg)`` on the run's own hardware: the run that trains the stage-1 checkpoint."""
    single = stage1_config(cfg)
    same_hardware = {k: getattr(cfg.train, k) for k in ("device", "threads", "compile")}
    return single.model_copy(update={"train": single.train.model_copy(update=same_hardware)})


def stage1_path(cfg: RunConfig, cache_dir: Path) -> Path:
    single = stage1_config(cfg)
    return cache_dir / f"stage1-{single.model.backbone}-seed{single.train.seed}-{config_hash(single)}.pt"


def train_run(
    cfg: RunConfig,
    *,
    base: Path = Path("."),
    cache_dir: Path | None = None,
    on_epoch: EpochCallback | None = None,
    log: Log | None = None,
) -> TrialResult:
    """Train ``cfg`` on its data set and return the record of the best validation epoch.

    Args:
        cfg: the resolved run config; ``cfg.train.seed`` fixes initialisation, data order
            and augmentation.
        base: folder that relative data roots are resolved against (the study file's).
        cache_dir: where stage-1 checkpoints live. A single-head run saves its best
            checkpoint there too, so it can serve as model1 of a DueHeadNet of the same seed.
        on_epoch: called after every epoch with its statistics; may raise to stop the run.

    Raises:
        TrainingError: the loss became NaN or infinite.
        DataError, ModelError, ConfigError: the data set or model cannot be had.
    """
    started = time.perf_counter()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    images = load_images(cfg.dataset, base)
    splits = split_indices(images.labels, cfg.dataset)
    extras: dict = {}

    model1_state = None
    if cfg.model.kind == "dual" and cfg.model.model1.init == "stage1":
        model1_state, extras["stage1"] = _stage1_weights(cfg, base, cache_dir, log)

    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, images.num_classes, cfg.dataset.image_size, model1_state).to(device)
    counts = count_parameters(model)
    result = _fit(cfg, model, images, splits, device, on_epoch)
    backbone_state = result.pop("best_state_backbone")
    if backbone_state is not None and cache_dir is not None:  # single head: serves as a stage-1 model1
        save_atomic(backbone_state, stage1_path(cfg, cache_dir))
    return TrialResult(
        n_params=counts.total,
        n_trainable=counts.trainable,
        wall_time=time.perf_counter() - started,
        device=str(device),
        extras=extras,
        **result,
    )


def _stage1_weights(cfg: RunConfig, base: Path, cache_dir: Path | None, log: Log | None) -> tuple[dict, dict]:
    single = stage1_config(cfg)
    if cache_dir is None:
        cache_dir = Path(tempfile.mkdtemp(prefix="ablate-stage1-"))
    path = stage1_path(cfg, cache_dir)
    if path.exists():
        return torch.load(path, weights_only=True, map_location="cpu"), {"checkpoint": str(path), "reused": True}
    if log:
        log(f"stage 1: training single-head {single.model.backbone} (seed {single.train.seed}) as model1")
    train_run(stage1_run_config(cfg), base=base, cache_dir=cache_dir)
    return torch.load(path, weights_only=True, map_location="cpu"), {"checkpoint": str(path), "reused": False}



def _fit(cfg: RunConfig, model: nn.Module, images: ImageTensors, splits: Splits, device: torch.device,
         on_epoch: EpochCallback | None) -> dict:
    on_cuda = device.type == "cuda"
    if on_cuda:
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    step_model = torch.compile(model) if cfg.train.compile else model
    train = DeviceImages(images.images[splits.train], images.labels[splits.train], device)
    val = DeviceImages(images.images[splits.val], images.labels[splits.val], device)
    test = DeviceImages(images.images[splits.test], images.labels[splits.test], device)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.train.epochs)
    generator = torch.Generator().manual_seed(cfg.train.seed)
    constraint = cfg.model.constraint if cfg.model.kind == "dual" and cfg.model.constraint.on else None
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if on_cuda else contextlib.nullcontext

    curves: list[EpochStats] = []
    best_val, best_epoch, best_state = -1.0, 0, None
    seen, train_seconds = 0, 0.0
    for epoch in range(1, cfg.train.epochs + 1):
        t0 = time.perf_counter()
        sums = train_epoch(step_model, opt, train, cfg, generator, constraint, autocast)
        n = sums.images
        lr = opt.param_groups[0]["lr"]
        sched.step()
        train_loss = sums.loss.item() / max(n, 1)  # one device sync per epoch
        if not math.isfinite(train_loss):
            raise TrainingError(f"loss became {train_loss} in epoch {epoch} (lr {lr:.3g}): training diverged")
        seen += n
        train_seconds += time.perf_counter() - t0
        val_acc, _ = evaluate(model, val, cfg.train.batch_size, autocast)
        stats = EpochStats(
            epoch=epoch,
            train_loss=train_loss,
            train_accuracy=sums.correct.item() / max(n, 1),
            val_accuracy=val_acc,
            penalty=(sums.penalty.item() / max(n, 1)) if constraint is not None else None,
            lr=lr,
            seconds=time.perf_counter() - t0,
        )
        curves.append(stats)
        if val_acc > best_val:  # ties keep the earlier epoch
            best_val, best_epoch = val_acc, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if on_epoch is not None:
            on_epoch(stats)

    model.load_state_dict(best_state)
    test_acc, similarity = evaluate(model, test, cfg.train.batch_size, autocast)
    backbone_state = None
    if cfg.model.kind == "single":
        backbone_state = {k: v.to("cpu") for k, v in model.backbone.state_dict().items()}
    return {
        "val_accuracy": best_val,
        "best_epoch": best_epoch,
        "test_accuracy": test_acc,
        "head_similarity": similarity,
        "curves": tuple(curves),
        "images_per_second": seen / train_seconds if train_seconds > 0 else float("nan"),
        "best_state_backbone": backbone_state,
    }


@dataclass
class EpochSums:
    """Sums over one epoch, kept on the device until the epoch ends (one sync, not one a step)."""

    loss: torch.Tensor
    penalty: torch.Tensor
    correct: torch.Tensor
    images: int


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, data: DeviceImages, cfg: RunConfig,
                generator: torch.Generator, constraint: ConstraintConfig | None,
                autocast: Callable = contextlib.nullcontext) -> EpochSums:
    """One pass over ``data``: cut, augment, forward, CE (+ weight * FMCE penalty), step.

    This is the loop every trial runs, and the one ``ablate bench`` times against a bare loop.
    """
    device = data.device
    on_cuda = device.type == "cuda"
    model.train()
    sums = EpochSums(torch.zeros((), device=device), torch.zeros((), device=device),
                     torch.zeros((), device=device, dtype=torch.int64), 0)
    for x, y in data.batches(cfg.train.batch_size, generator=generator, augment=cfg.dataset.augment, drop_last=True):
        if on_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits, map1, map2 = model(x)
            loss = F.cross_entropy(logits, y)
            if constraint is not None:
                penalty = fmce_penalty(map2, map1, constraint.target)
                loss = loss + constraint.weight * penalty
                sums.penalty += penalty.detach() * len(y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sums.loss += loss.detach() * len(y)
        sums.correct += (logits.argmax(1) == y).sum()
        sums.images += len(y)
    return sums


def evaluate(model: nn.Module, data: DeviceImages, batch_size: int,
             autocast: Callable = contextlib.nullcontext) -> tuple[float, float | None]:
    """(accuracy = correct / total, mean head similarity or None for a single-head model)."""
    model.eval()
    correct = torch.zeros((), device=data.device, dtype=torch.int64)
    sim_sum = torch.zeros((), device=data.device)
    has_sim = False
    with torch.inference_mode(), autocast():
        for x, y in data.batches(batch_size * 2):
            if data.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            logits, map1, map2 = model(x)
            correct += (logits.argmax(1) == y).sum()
            if map1 is not None:
                sim_sum += head_similarity(map1, map2).sum()
                has_sim = True
    total = max(len(data), 1)
    return correct.item() / total, (sim_sum.item() / total if has_sim else None)
