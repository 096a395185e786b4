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

__all__ = [
    "resolve_device",
    "resolve_precision",
    "cpu_has_bf16",
    "precision_context",
    "train_run",
    "train_epoch",
    "EpochSums",
    "stage1_config",
    "stage1_run_config",
    "stage1_path",
    "single_checkpoint_path",
    "evaluate",
    "available_cores",
    "ensemble_member_seeds",
]

# Ensemble members' seeds: far from any seed a study runs, so a member is never the single
# arm's run of some seed (issue 8: the control must not reuse the runs it is compared with).
ENSEMBLE_SEED_OFFSET = 1 << 20

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


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (the avx512_bf16 or AMX flags on Linux).

    Without them oneDNN emulates bf16 and autocast is slower than fp32, so ``auto`` stays fp32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f" {flag}" in flags for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(name: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``: ``auto`` is bf16 on CUDA with bf16 support and on CPUs with native
    bf16, else fp32.

    Raises:
        ConfigError: an unknown name.
    """
    if name in ("fp32", "bf16"):
        return name
    if name != "auto":
        raise ConfigError(f"precision: expected auto, fp32 or bf16 (got {name!r})")
    if device.type == "cuda":  # pre-Ampere cards lack bf16; a device not here is planned for as CUDA
        return "fp32" if torch.cuda.is_available() and not torch.cuda.is_bf16_supported() else "bf16"
    return "bf16" if device.type == "cpu" and cpu_has_bf16() else "fp32"


def precision_context(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the autocast context for a resolved precision (bf16: autocast; fp32: none).

    bf16 autocasts convolutions and matmuls; BatchNorm, the losses and the optimizer stay fp32.
    """
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def _weights_key(single: RunConfig) -> RunConfig:
    """What changes a single-head run's weights: its data, seed, backbone and recipe (lr,
    epochs, weight decay, batch, precision, augmentation); not where or how fast it ran."""
    assert single.model.kind == "single"
    return single.model_copy(update={
        "model": ModelConfig(kind="single", backbone=single.model.backbone),
        "train": single.train.model_copy(update={"device": "auto", "threads": None, "compile": False}),
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


def single_checkpoint_path(single: RunConfig, cache_dir: Path) -> Path:
    key = _weights_key(single)
    return cache_dir / f"stage1-{key.model.backbone}-seed{key.train.seed}-{config_hash(key)}.pt"


def stage1_run_config(cfg: RunConfig) -> RunConfig:
    """``stage1_config(cfg)`` on the run's own hardware: the run that trains the stage-1 checkpoint."""
    single = stage1_config(cfg)
    same_hardware = {k: getattr(cfg.train, k) for k in ("device", "threads", "compile")}
    return single.model_copy(update={"train": single.train.model_copy(update=same_hardware)})


def stage1_path(cfg: RunConfig, cache_dir: Path) -> Path:
    """Where the stage-1 checkpoint of ``cfg`` lives: keyed by everything that changes its weights.

    A single-head run saves its best checkpoint under its own key, so it serves as model1
    exactly when its recipe is the stage-1 recipe a DueHeadNet asks for.
    """
    return single_checkpoint_path(stage1_config(cfg), cache_dir)


def ensemble_member_seeds(seed: int) -> tuple[int, int]:
    return (ENSEMBLE_SEED_OFFSET + 2 * seed, ENSEMBLE_SEED_OFFSET + 2 * seed + 1)


def _images_per_epoch(n_train: int, batch_size: int) -> int:
    return n_train - n_train % batch_size if n_train >= batch_size else n_train


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
    if cfg.train.precision == "auto":  # a study resolves it before; a direct call does it here
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(
            update={"precision": resolve_precision("auto", device)})})
    images = load_images(cfg.dataset, base)
    splits = split_indices(images.labels, cfg.dataset)
    if cfg.model.kind == "ensemble":
        return _train_ensemble(cfg, images, splits, device, on_epoch, started)
    extras: dict = {"precision": cfg.train.precision}
    stage1_images = 0

    model1_state = None
    if cfg.model.kind == "dual" and cfg.model.model1.init == "stage1":
        model1_state, extras["stage1"] = _stage1_weights(cfg, base, cache_dir, log)
        single = stage1_config(cfg)
        stage1_images = _images_per_epoch(len(splits.train), single.train.batch_size) * single.train.epochs

    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, images.num_classes, cfg.dataset.image_size, model1_state).to(device)
    counts = count_parameters(model)
    result = _fit(cfg, model, images, splits, device, on_epoch)
    backbone_state = result.pop("best_state_backbone")
    if backbone_state is not None and cache_dir is not None:  # single head: may serve as a stage-1 model1
        save_atomic(backbone_state, single_checkpoint_path(cfg, cache_dir))
    result["train_images"] += stage1_images
    return TrialResult(
        n_params=counts.total,
        n_trainable=counts.trainable,
        wall_time=time.perf_counter() - started,
        device=str(device),
        extras=extras,
        n_test=len(splits.test),
        **result,
    )


def _train_ensemble(cfg: RunConfig, images: ImageTensors, splits: Splits, device: torch.device,
                    on_epoch: EpochCallback | None, started: float) -> TrialResult:
    """Two single heads of its own, trained one after the other; their logits averaged.

    Validation and test accuracy are those of the averaged logits, each member at its best
    validation epoch. The curves are member 1's epochs then member 2's (numbered on), so a
    pruner sees one growing sequence and the run counts as many epochs as it trains.
    """
    import dataclasses

    members, fits = [], []
    epochs = cfg.train.epochs
    for m, seed in enumerate(ensemble_member_seeds(cfg.train.seed)):
        member = cfg.model_copy(update={
            "model": ModelConfig(kind="single", backbone=cfg.model.backbone),
            "train": cfg.train.model_copy(update={"seed": seed}),
        })
        shift = m * epochs

        def shifted(stats: EpochStats, shift: int = shift) -> None:
            if on_epoch is not None:
                on_epoch(dataclasses.replace(stats, epoch=stats.epoch + shift))

        seed_everything(seed)
        model = build_model(member.model, images.num_classes, cfg.dataset.image_size).to(device)
        fit = _fit(member, model, images, splits, device, shifted)  # leaves the best epoch loaded
        fit.pop("best_state_backbone")
        members.append(model)
        fits.append(fit)
    val = DeviceImages(images.images[splits.val], images.labels[splits.val], device)
    test = DeviceImages(images.images[splits.test], images.labels[splits.test], device)
    autocast, channels_last = _precision(cfg, device)
    counts = [count_parameters(m) for m in members]
    curves = tuple(dataclasses.replace(e, epoch=e.epoch + m * epochs)
                   for m, fit in enumerate(fits) for e in fit["curves"])
    seconds = sum(e.seconds for e in curves)
    return TrialResult(
        val_accuracy=evaluate_ensemble(members, val, cfg.train.batch_size, autocast, channels_last),
        best_epoch=fits[1]["best_epoch"] + epochs,
        test_accuracy=evaluate_ensemble(members, test, cfg.train.batch_size, autocast, channels_last),
        head_similarity=None,
        curves=curves,
        n_params=sum(c.total for c in counts),
        n_trainable=sum(c.trainable for c in counts),
        wall_time=time.perf_counter() - started,
        device=str(device),
        images_per_second=sum(f["train_images"] for f in fits) / seconds if seconds > 0 else float("nan"),
        train_images=sum(f["train_images"] for f in fits),
        n_test=len(splits.test),
        extras={"precision": cfg.train.precision, "ensemble": {
            "member_seeds": list(ensemble_member_seeds(cfg.train.seed)),
            "member_val_accuracy": [f["val_accuracy"] for f in fits],
            "member_test_accuracy": [f["test_accuracy"] for f in fits],
            "member_best_epoch": [f["best_epoch"] for f in fits],
        }},
    )


def _precision(cfg: RunConfig, device: torch.device) -> tuple[Callable, bool]:
    """(autocast context factory, channels_last) for the run's resolved precision.

    channels_last is what oneDNN and cuDNN want for bf16 convolutions: 1.26x -> 1.30x on a
    bf16 CPU (issue 11), and the CUDA default since the first GPU bench.
    """
    precision = resolve_precision(cfg.train.precision, device)
    return precision_context(precision, device), precision == "bf16" or device.type == "cuda"


def _stage1_weights(cfg: RunConfig, base: Path, cache_dir: Path | None, log: Log | None) -> tuple[dict, dict]:
    single = stage1_config(cfg)
    if cache_dir is None:
        cache_dir = Path(tempfile.mkdtemp(prefix="ablate-stage1-"))
    path = stage1_path(cfg, cache_dir)
    t = single.train
    record = {"checkpoint": path.name, "key": config_hash(single),
              "recipe": {"lr": t.lr, "epochs": t.epochs, "weight_decay": t.weight_decay,
                         "batch_size": t.batch_size, "precision": t.precision}}
    if path.exists():
        return torch.load(path, weights_only=True, map_location="cpu"), {**record, "reused": True}
    if log:
        log(f"stage 1: training single-head {single.model.backbone} (seed {t.seed}, lr {t.lr:g}, "
            f"{t.epochs} epochs) as model1")
    train_run(stage1_run_config(cfg), base=base, cache_dir=cache_dir)
    return torch.load(path, weights_only=True, map_location="cpu"), {**record, "reused": False}



def _fit(cfg: RunConfig, model: nn.Module, images: ImageTensors, splits: Splits, device: torch.device,
         on_epoch: EpochCallback | None) -> dict:
    on_cuda = device.type == "cuda"
    autocast, channels_last = _precision(cfg, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if on_cuda:
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
        val_acc, _ = evaluate(model, val, cfg.train.batch_size, autocast, channels_last)
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
    test_acc, similarity = evaluate(model, test, cfg.train.batch_size, autocast, channels_last)
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
        "train_images": seen,
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
    # channels_last input where the model is channels_last (bf16, CUDA): see _precision
    channels_last = device.type == "cuda" or cfg.train.precision == "bf16"
    model.train()
    sums = EpochSums(torch.zeros((), device=device), torch.zeros((), device=device),
                     torch.zeros((), device=device, dtype=torch.int64), 0)
    for x, y in data.batches(cfg.train.batch_size, generator=generator, augment=cfg.dataset.augment, drop_last=True):
        if channels_last:
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
             autocast: Callable = contextlib.nullcontext,
             channels_last: bool | None = None) -> tuple[float, float | None]:
    """(accuracy = correct / total, mean head similarity or None for a single-head model)."""
    channels_last = data.device.type == "cuda" if channels_last is None else channels_last
    model.eval()
    correct = torch.zeros((), device=data.device, dtype=torch.int64)
    sim_sum = torch.zeros((), device=data.device)
    has_sim = False
    with torch.inference_mode(), autocast():
        for x, y in data.batches(batch_size * 2):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits, map1, map2 = model(x)
            correct += (logits.argmax(1) == y).sum()
            if map1 is not None:
                sim_sum += head_similarity(map1, map2).sum()
                has_sim = True
    total = max(len(data), 1)
    return correct.item() / total, (sim_sum.item() / total if has_sim else None)


def evaluate_ensemble(models: list[nn.Module], data: DeviceImages, batch_size: int,
                      autocast: Callable = contextlib.nullcontext, channels_last: bool = False) -> float:
    """Accuracy of the members' averaged logits (correct / total)."""
    for m in models:
        m.eval()
    correct = torch.zeros((), device=data.device, dtype=torch.int64)
    with torch.inference_mode(), autocast():
        for x, y in data.batches(batch_size * 2):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = torch.stack([m(x)[0].float() for m in models]).mean(0)
            correct += (logits.argmax(1) == y).sum()
    return correct.item() / max(len(data), 1)
