"""One training loop for the lone run, the fused run and ``ablate bench``.

- :func:`resolve_runs`, :func:`seeded_models`, :func:`on_device`: what a run does before it trains
  (threads, device and precision; a run's model built after ``seed_everything`` of its
  initialisation seed; each run's splits on the device, the images uploaded once);
- :class:`Learner`: K models of one run (K = 1 for the lone run) with their optimizer,
  objective, numerics and per-seed data order and augmentation, made the same way for every
  kind of run;
- :func:`train_step` and :func:`train_epoch`: cut, augment, forward, CE (+ weight * FMCE
  penalty), step; the loop every trial runs, and the one ``ablate bench`` times;
- :func:`fit`: the epochs and the best epoch, per seed.

Training knows nothing of the study: a seed's ``on_epoch`` callback may raise (Optuna's
TrialPruned, say) to stop that seed, and the exception is its outcome, untouched.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ablate.config import ConstraintConfig, ModelConfig, RunConfig
from ablate.data import DeviceImages, ImageTensors, Splits
from ablate.errors import TrainingError
from ablate.models import ParamCount, build_model, fmce_penalty, head_similarity
from ablate.records import EpochStats, Predictions, TrialResult
from ablate.seeding import seed_everything
from ablate.train.device import Numerics, numerics, resolve_device, resolve_precision

__all__ = [
    "EpochCallback",
    "SEED_SOURCES",
    "DeviceSplits",
    "EpochSums",
    "Evaluation",
    "Objective",
    "Learner",
    "Fit",
    "resolve_runs",
    "seeded_models",
    "on_device",
    "constraint_of",
    "train_step",
    "train_epoch",
    "evaluate",
    "predictions_of",
    "fit",
]

EpochCallback = Callable[[EpochStats], None]
# The sources of variance a run draws from its seeds, each from its own (``TrainConfig.seed_of``).
SEED_SOURCES = ("init", "order", "augment")


def resolve_runs(cfgs: Sequence[RunConfig]) -> tuple[list[RunConfig], torch.device]:
    """The runs with ``train.precision`` made concrete, and the device they train on.

    Sets torch's thread count to ``train.threads`` where given (runs trained together share it).
    """
    if cfgs[0].train.threads:
        torch.set_num_threads(cfgs[0].train.threads)
    device = resolve_device(cfgs[0].train.device)
    return [resolve_precision(c) for c in cfgs], device


def seeded_models(cfgs: Sequence[RunConfig], num_classes: int, device: torch.device,
                  model1_states: Sequence[dict | None] | None = None) -> list[nn.Module]:
    """Each run's model on ``device``, built after ``seed_everything(train.seed_of("init"))``: a
    run's initial weights are the same whether it trains alone or fused."""
    models = []
    for cfg, state in zip(cfgs, model1_states or [None] * len(cfgs)):
        seed_everything(cfg.train.seed_of("init"))
        models.append(build_model(cfg.model, num_classes, cfg.dataset.image_size, state).to(device))
    return models


@dataclass(frozen=True)
class DeviceSplits:
    """A run's three splits on its training device."""

    train: DeviceImages
    val: DeviceImages
    test: DeviceImages


def on_device(images: ImageTensors, splits: Sequence[Splits], device: torch.device) -> list[DeviceSplits]:
    """Each run's splits on ``device``: the images any of them uses uploaded once, every split
    a view of them (runs with different train / validation partitions share the upload)."""
    used = np.unique(np.concatenate([np.concatenate([s.train, s.val, s.test]) for s in splits]))
    picked = torch.from_numpy(used)
    uploaded = DeviceImages(images.images[picked], images.labels[picked], device, examples=used)
    return [DeviceSplits(*(uploaded.rows(np.searchsorted(used, idx)) for idx in (s.train, s.val, s.test)))
            for s in splits]


def constraint_of(model: ModelConfig) -> ConstraintConfig | None:
    """The FMCE penalty a model trains with: a DueHeadNet's with the constraint on, else none."""
    return model.constraint if model.kind == "dual" and model.constraint.on else None


# ---------------------------------------------------------------------------------------------
# A step, an epoch


@dataclass
class EpochSums:
    """Sums over one epoch, kept on the device until the epoch ends (one sync, not one a step):
    0-d tensors for one model, (K,) for K fused seeds."""

    loss: torch.Tensor
    penalty: torch.Tensor
    correct: torch.Tensor
    images: int  # per seed: every seed sees the same number of images

    @classmethod
    def zeros(cls, shape: tuple[int, ...], device: torch.device) -> EpochSums:
        return cls(torch.zeros(shape, device=device), torch.zeros(shape, device=device),
                   torch.zeros(shape, device=device, dtype=torch.int64), 0)

    def means(self) -> tuple[list[float], list[float], list[float]]:
        """Per seed: (mean loss, accuracy = correct / images, mean penalty). Syncs the device."""
        n = max(self.images, 1)
        # Divided here, in float64, as the lone run always divided: on CUDA a tensor divided by a
        # Python number is multiplied by its reciprocal, which may differ in the last bit.
        loss, correct, penalty = (t.reshape(-1).tolist() for t in (self.loss, self.correct, self.penalty))
        return [v / n for v in loss], [c / n for c in correct], [p / n for p in penalty]


@dataclass(frozen=True)
class Objective:
    """CE (+ weight * FMCE penalty): one model's, or, ``fused``, each of K seeds' own (vmapped)."""

    constraint: ConstraintConfig | None
    fused: bool = False

    def __call__(self, logits: torch.Tensor, map1: torch.Tensor | None, map2: torch.Tensor | None,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(loss, penalty or None): 0-d, or (K,) when fused."""
        ce = torch.vmap(F.cross_entropy) if self.fused else F.cross_entropy
        loss = ce(logits, y)
        if self.constraint is None:
            return loss, None
        penalty_of = partial(fmce_penalty, target=self.constraint.target)
        penalty = (torch.vmap(penalty_of) if self.fused else penalty_of)(map2, map1)
        return loss + self.constraint.weight * penalty, penalty


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               objective: Objective, autocast: Callable, sums: EpochSums | None = None) -> None:
    """Forward, loss, backward, optimizer step on one batch; adds to ``sums`` when given."""
    with autocast():
        logits, map1, map2 = model(x)
        loss, penalty = objective(logits, map1, map2, y)
    opt.zero_grad(set_to_none=True)
    # K fused seeds: the sum of their own losses, so seed k's parameters get seed k's gradient only
    (loss.sum() if loss.dim() else loss).backward()
    opt.step()
    if sums is not None:
        n = y.shape[-1]
        sums.loss += loss.detach() * n
        if penalty is not None:
            sums.penalty += penalty.detach() * n
        sums.correct += (logits.argmax(-1) == y).sum(-1)
        sums.images += n


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                objective: Objective, numerics: Numerics, sums: EpochSums, *, mark_step: bool = False) -> EpochSums:
    """One pass over ``batches`` (x (B, 3, S, S) or (K, B, 3, S, S), y (B,) or (K, B)).

    ``mark_step`` marks each step's start for CUDA graph trees (``mode="reduce-overhead"``).
    """
    model.train()
    for x, y in batches:
        x = numerics.for_batch(x)
        if mark_step:
            torch.compiler.cudagraph_mark_step_begin()
        train_step(model, opt, x, y, objective, numerics.autocast, sums)
    return sums


@dataclass(frozen=True)
class Evaluation:
    """Per model: accuracy (correct / total), mean head similarity (None for a single head) and,
    when asked for, the class it predicts for each example, in the split's order."""

    accuracy: list[float]
    similarity: list[float | None]
    predicted: list[list[int]] | None = None


def evaluate(model: nn.Module, data: Sequence[DeviceImages], batch_size: int, numerics: Numerics, *,
             fused: bool = False, predict: bool = False) -> Evaluation:
    """Each model on its own split: ``data[k]`` for seed k of a FusedModel (``fused``), ``data[0]``
    for a plain model. Fused seeds whose splits hold the same examples see each batch once, shared.

    One device sync at the end, predictions included.
    """
    model.eval()
    shared = fused and all(np.array_equal(d.examples, data[0].examples) for d in data[1:])
    forward = partial(model, shared=True) if shared else model
    similarity = torch.vmap(head_similarity) if fused else head_similarity
    shape = (model.k,) if fused else ()
    correct = torch.zeros(shape, device=data[0].device, dtype=torch.int64)
    sim_sum = torch.zeros(shape, device=data[0].device)
    has_sim = False
    guesses: list[torch.Tensor] = []
    streams = [d.batches(batch_size * 2) for d in (data if fused and not shared else data[:1])]
    with torch.inference_mode(), numerics.autocast():
        for batches in zip(*streams):
            x, y = batches[0] if len(batches) == 1 else (torch.stack(t) for t in zip(*batches))
            logits, map1, map2 = forward(numerics.for_batch(x))
            guess = logits.argmax(-1)  # (B,), or (K, B) fused
            correct += (guess == y).sum(-1)
            if predict:
                guesses.append(guess.reshape(-1, guess.shape[-1]))
            if map1 is not None:
                sim_sum += similarity(map1, map2).sum(-1)
                has_sim = True
    total = max(len(data[0]), 1)  # divided in float64, as EpochSums.means
    sims = [s / total for s in sim_sum.reshape(-1).tolist()] if has_sim else [None] * correct.numel()
    predicted = None
    if predict:
        predicted = torch.cat(guesses, dim=-1).tolist() if guesses else [[] for _ in range(correct.numel())]
    return Evaluation([c / total for c in correct.reshape(-1).tolist()], sims, predicted)


# ---------------------------------------------------------------------------------------------
# The learner: K models of one run


class Learner(abc.ABC):
    """K models of one run and everything they train with, made alike for every kind of run.

    The optimizer is AdamW over the trainable parameters (``fused=True`` on CUDA: one kernel
    for all of them). Seed k draws its data order from a ``torch.Generator`` seeded with
    ``train.seed_of("order")`` of ``cfgs[k]`` and its augmentation from another, seeded with
    ``seed_of("augment")``: each source of variance has its own stream, so one can be held fixed
    while another varies. Subclasses say how a step batches the seeds and how one seed's state
    is read and restored.

    Attributes:
        model: what is evaluated and checkpointed; ``step_model`` is what a training step calls
            (``model``, or ``torch.compile`` of it with ``train.compile``).
    """

    k: int
    fused: bool

    def __init__(self, cfgs: Sequence[RunConfig], model: nn.Module, device: torch.device,
                 compile_mode: str | None = None):
        cfg = cfgs[0]  # the runs differ in their seeds alone (fused.check_fusable)
        self.numerics = numerics(cfg.train.precision, device)
        # A plain model's weights take the layout; a FusedModel's stacked (K, ...) weights cannot
        # (channels_last is a 4-d layout), nor do its inputs (Numerics.for_batch: vmap copies
        # them into (B, K * C, H, W) whatever their layout).
        self.model = model if self.fused else self.numerics.for_model(model)
        if device.type == "cuda":  # cuDNN picks its fastest kernels for training's fixed shapes
            torch.backends.cudnn.benchmark = True
        self.step_model = torch.compile(self.model, mode=compile_mode) if cfg.train.compile else self.model
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                                     fused=True if device.type == "cuda" else None)
        self.orders = [torch.Generator().manual_seed(c.train.seed_of("order")) for c in cfgs]
        self.augments = [torch.Generator().manual_seed(c.train.seed_of("augment")) for c in cfgs]
        self.objective = Objective(constraint_of(cfg.model), self.fused)
        self.batch_size, self.augment, self.device = cfg.train.batch_size, cfg.dataset.augment, device

    def stream(self, data: DeviceImages, k: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """Seed k's training batches of one epoch over ``data``, in its own order and augmentation."""
        return data.batches(self.batch_size, order=self.orders[k], augment=self.augments[k] if self.augment else None,
                            drop_last=True)

    @abc.abstractmethod
    def train_epoch(self, data: Sequence[DeviceImages]) -> EpochSums:
        """One pass for every seed k over its training split ``data[k]``, in its own order; their sums."""

    def evaluate(self, data: Sequence[DeviceImages], predict: bool = False) -> Evaluation:
        """Every seed k on ``data[k]``: accuracy, mean head similarity and, asked, predictions."""
        return evaluate(self.model, data, self.batch_size, self.numerics, fused=self.fused, predict=predict)

    @abc.abstractmethod
    def seed_state(self, k: int) -> dict[str, torch.Tensor]:
        """Seed k's model state (detached clones), with the lone model's keys."""

    @abc.abstractmethod
    def load_seed_state(self, k: int, state: dict[str, torch.Tensor]) -> None:
        """Seed k's model restored to ``state``."""


# ---------------------------------------------------------------------------------------------
# Epochs and the best epoch


@dataclass(frozen=True)
class Fit:
    """One seed's training, ended at its best validation epoch."""

    val_accuracy: float
    best_epoch: int
    test_accuracy: float
    head_similarity: float | None
    curves: tuple[EpochStats, ...]
    images_per_second: float
    train_images: int
    best_state: dict[str, torch.Tensor]  # the model's state at its best epoch
    predictions: Predictions  # the best epoch's class for every test example

    def result(self, counts: ParamCount, device: torch.device, wall_time: float, extras: dict,
               stage1_images: int = 0) -> TrialResult:
        """The trial's record; ``stage1_images``: the images its stage-1 model1 cost."""
        return TrialResult(
            val_accuracy=self.val_accuracy, best_epoch=self.best_epoch, test_accuracy=self.test_accuracy,
            head_similarity=self.head_similarity, curves=self.curves, n_params=counts.total,
            n_trainable=counts.trainable, wall_time=wall_time, device=str(device),
            images_per_second=self.images_per_second, train_images=self.train_images + stage1_images,
            n_test=len(self.predictions.example), extras=extras, predictions=self.predictions)


def predictions_of(data: DeviceImages, predicted: Sequence[int]) -> Predictions:
    """The record of ``predicted`` (one class per example of ``data``, in its order)."""
    return Predictions(tuple(int(e) for e in data.examples), tuple(int(y) for y in data.example_labels),
                       tuple(predicted))


@dataclass
class _Progress:
    """One seed's curves and best validation epoch so far."""

    curves: list[EpochStats] = field(default_factory=list)
    best_val: float = -1.0
    best_epoch: int = 0
    best_state: dict | None = None

    def add(self, stats: EpochStats, learner: Learner, k: int) -> None:
        self.curves.append(stats)
        if stats.val_accuracy > self.best_val:  # ties keep the earlier epoch
            self.best_val, self.best_epoch = stats.val_accuracy, stats.epoch
            self.best_state = learner.seed_state(k)


def fit(learner: Learner, data: Sequence[DeviceSplits], epochs: int,
        callbacks: Sequence[EpochCallback | None]) -> list[Fit | Exception]:
    """Train every seed of ``learner`` for ``epochs`` epochs on a cosine schedule; seed k's outcome at [k].

    Seed k trains on ``data[k].train`` and is validated on ``data[k].val`` (its own partition);
    every seed is tested on the same test split.

    After each epoch, per seed: its mean loss, accuracy and penalty (one device sync); a
    TrainingError if its loss is not finite; its validation accuracy; its best checkpoint so
    far; then ``callbacks[k]``, which may raise to stop that seed. A stopped seed's outcome is
    its exception; its slice of a fused model keeps training, unseen, until every seed is done.
    Every other seed ends restored to its best epoch and tested there.
    """
    k = learner.k
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(learner.opt, T_max=epochs)  # one schedule for all seeds
    progress = [_Progress() for _ in range(k)]
    stopped: dict[int, Exception] = {}
    seen, train_seconds = 0, 0.0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        sums = learner.train_epoch([d.train for d in data])
        lr = learner.opt.param_groups[0]["lr"]
        sched.step()
        losses, accs, penalties = sums.means()
        seen += sums.images
        train_seconds += time.perf_counter() - t0
        for i, loss in enumerate(losses):
            if i not in stopped and not math.isfinite(loss):
                stopped[i] = TrainingError(f"loss became {loss} in epoch {epoch} (lr {lr:.3g}): training diverged")
        if len(stopped) == k:
            break
        val_accs = learner.evaluate([d.val for d in data]).accuracy
        seconds = time.perf_counter() - t0
        for i in (i for i in range(k) if i not in stopped):
            stats = EpochStats(epoch=epoch, train_loss=losses[i], train_accuracy=accs[i], val_accuracy=val_accs[i],
                               penalty=penalties[i] if learner.objective.constraint is not None else None,
                               lr=lr, seconds=seconds)
            progress[i].add(stats, learner, i)
            if callbacks[i] is not None:
                try:
                    callbacks[i](stats)
                except Exception as exc:  # this seed stops; the others go on
                    stopped[i] = exc
        if len(stopped) == k:
            break
    return _tested(learner, [d.test for d in data], progress, stopped,
                   seen / train_seconds if train_seconds > 0 else float("nan"), seen)


def _tested(learner: Learner, test: Sequence[DeviceImages], progress: list[_Progress], stopped: dict[int, Exception],
            images_per_second: float, seen: int) -> list[Fit | Exception]:
    """Every seed not stopped restored to its best epoch and tested there, with its prediction
    for every test example; the stopped ones' exceptions."""
    if len(stopped) == learner.k:
        return [stopped[i] for i in range(learner.k)]
    for i, p in enumerate(progress):
        if i not in stopped:
            learner.load_seed_state(i, p.best_state)
    tested = learner.evaluate(test, predict=True)
    return [stopped[i] if i in stopped else
            Fit(p.best_val, p.best_epoch, tested.accuracy[i], tested.similarity[i], tuple(p.curves), images_per_second,
                seen, p.best_state, predictions_of(test[i], tested.predicted[i]))
            for i, p in enumerate(progress)]
