"""The lone run: ``train_run(cfg) -> TrialResult``, one seed, one plain model. No Optuna here.

The study hands in a plain ``on_epoch`` callback; it may raise (Optuna's TrialPruned, say)
to stop the run, and the exception passes through untouched. The ensemble control (two
single heads of its own, their logits averaged) is a lone run too.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from ablate.config import ModelConfig, RunConfig
from ablate.data import DeviceImages, load_images, split_indices
from ablate.models import count_parameters
from ablate.records import EpochStats, Predictions, TrialResult
from ablate.seeding import ensemble_member_seeds
from ablate.train.device import Numerics
from ablate.train.loop import (SEED_SOURCES, DeviceSplits, EpochCallback, EpochSums, Fit, Learner, fit, on_device,
                               predictions_of, resolve_runs, seeded_models, train_epoch)
from ablate.train.stage1 import save_single_checkpoint, stage1_images, stage1_weights, uses_stage1

__all__ = ["LoneLearner", "train_run", "ensemble_member_seeds", "ensemble_member_configs", "evaluate_ensemble"]

Log = Callable[[str], None]


class LoneLearner(Learner):
    """One plain model of one seed (see :class:`ablate.train.loop.Learner`)."""

    k = 1
    fused = False

    def __init__(self, cfg: RunConfig, model: nn.Module, device: torch.device):
        super().__init__([cfg], model, device)

    def train_epoch(self, data: Sequence[DeviceImages]) -> EpochSums:
        return train_epoch(self.step_model, self.opt, self.stream(data[0], 0), self.objective, self.numerics,
                           EpochSums.zeros((), self.device))

    def seed_state(self, k: int) -> dict[str, torch.Tensor]:
        return {name: t.detach().clone() for name, t in self.model.state_dict().items()}

    def load_seed_state(self, k: int, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)


def ensemble_member_configs(cfg: RunConfig) -> tuple[RunConfig, RunConfig]:
    """An ensemble's two members: single-head runs of its backbone on its partition.

    Member m's seed for each source of variance is ``ensemble_member_seeds`` of the ensemble's
    seed for that source, at [m]: the members differ from each other in every source, and a
    source the repeats hold fixed across cells stays fixed across cells for each member.
    """
    t = cfg.train
    members = []
    for m in range(2):
        seeds = {"seed": ensemble_member_seeds(t.seed)[m],
                 **{f"{source}_seed": ensemble_member_seeds(t.seed_of(source))[m] for source in SEED_SOURCES}}
        members.append(cfg.model_copy(update={"model": ModelConfig(kind="single", backbone=cfg.model.backbone),
                                              "train": t.model_copy(update=seeds)}))
    return members[0], members[1]


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
        cfg: the resolved run config; ``cfg.train.seed_of(source)`` fixes initialisation, data
            order and augmentation, ``cfg.dataset.partition`` the train / validation partition.
        base: folder that relative data roots are resolved against (the study file's).
        cache_dir: where stage-1 checkpoints live. A single-head run saves its best
            checkpoint there too, so it can serve as model1 of a DueHeadNet of the same seed.
        on_epoch: called after every epoch with its statistics; may raise to stop the run.

    Raises:
        TrainingError: the loss became NaN or infinite.
        DataError, ModelError, ConfigError: the data set or model cannot be had.
    """
    started = time.perf_counter()
    [cfg], device = resolve_runs([cfg])  # a study resolves the precision before; a direct call does it here
    images = load_images(cfg.dataset, base)
    splits = split_indices(images.labels, cfg.dataset, images.official_test)
    [data] = on_device(images, [splits], device)
    if cfg.model.kind == "ensemble":
        return _train_ensemble(cfg, data, images.num_classes, on_epoch, started)
    extras: dict = {"precision": cfg.train.precision}
    model1_state = None
    if uses_stage1(cfg):
        # _train_stage1 raises what stops the stage-1 run, so no exception comes back here
        [stage1] = stage1_weights([cfg], cache_dir, lambda singles, folder: _train_stage1(singles, base, folder, log))
        model1_state, extras["stage1"] = stage1.state, stage1.record

    [model] = seeded_models([cfg], images.num_classes, device, [model1_state])
    counts = count_parameters(model)
    [outcome] = fit(LoneLearner(cfg, model, device), [data], cfg.train.epochs, [on_epoch])
    if isinstance(outcome, Exception):  # a NaN loss, or what on_epoch raised: passed through untouched
        raise outcome
    save_single_checkpoint(cfg, outcome.best_state, cache_dir)  # a single head may serve as a stage-1 model1
    return outcome.result(counts, device, time.perf_counter() - started, extras, stage1_images(cfg, len(splits.train)))


def _train_stage1(singles: list[RunConfig], base: Path, cache_dir: Path, log: Log | None) -> list[TrialResult]:
    """The lone run's stage 1: its one single-head run, alone (an error stops the run)."""
    [single] = singles
    t = single.train
    if log:
        log(f"stage 1: training single-head {single.model.backbone} (seed {t.seed}, lr {t.lr:g}, "
            f"{t.epochs} epochs) as model1")
    return [train_run(single, base=base, cache_dir=cache_dir)]


def _train_ensemble(cfg: RunConfig, data: DeviceSplits, num_classes: int, on_epoch: EpochCallback | None,
                    started: float) -> TrialResult:
    """Two single heads of its own (:func:`ensemble_member_configs`), trained one after the other;
    their logits averaged.

    Validation and test accuracy are those of the averaged logits, each member at its best
    validation epoch, and so are the test predictions. The curves are member 1's epochs then
    member 2's (numbered on), so a pruner sees one growing sequence and the run counts as many
    epochs as it trains.
    """
    members: list[nn.Module] = []
    fits: list[Fit] = []
    epochs = cfg.train.epochs
    device = data.train.device
    member_cfgs = ensemble_member_configs(cfg)
    for m, member in enumerate(member_cfgs):

        def shifted(stats: EpochStats, shift: int = m * epochs) -> None:
            if on_epoch is not None:
                on_epoch(dataclasses.replace(stats, epoch=stats.epoch + shift))

        [model] = seeded_models([member], num_classes, device)
        learner = LoneLearner(member, model, device)
        [outcome] = fit(learner, [data], epochs, [shifted])  # leaves the best epoch loaded
        if isinstance(outcome, Exception):
            raise outcome
        members.append(learner.model)
        fits.append(outcome)
    numerics = learner.numerics
    counts = [count_parameters(m) for m in members]
    curves = tuple(dataclasses.replace(e, epoch=e.epoch + m * epochs) for m, f in enumerate(fits) for e in f.curves)
    seconds = sum(e.seconds for e in curves)
    train_images = sum(f.train_images for f in fits)
    test_accuracy, predictions = evaluate_ensemble(members, data.test, cfg.train.batch_size, numerics, predict=True)
    return TrialResult(
        val_accuracy=evaluate_ensemble(members, data.val, cfg.train.batch_size, numerics)[0],
        best_epoch=fits[1].best_epoch + epochs,
        test_accuracy=test_accuracy,
        head_similarity=None,
        curves=curves,
        n_params=sum(c.total for c in counts),
        n_trainable=sum(c.trainable for c in counts),
        wall_time=time.perf_counter() - started,
        device=str(device),
        images_per_second=train_images / seconds if seconds > 0 else float("nan"),
        train_images=train_images,
        n_test=len(data.test),
        extras={"precision": cfg.train.precision, "ensemble": {
            "member_seeds": [c.train.seed for c in member_cfgs],
            "member_source_seeds": [{s: c.train.seed_of(s) for s in SEED_SOURCES} for c in member_cfgs],
            "member_val_accuracy": [f.val_accuracy for f in fits],
            "member_test_accuracy": [f.test_accuracy for f in fits],
            "member_best_epoch": [f.best_epoch for f in fits],
        }},
        predictions=predictions,
    )


def evaluate_ensemble(models: Sequence[nn.Module], data: DeviceImages, batch_size: int, numerics: Numerics, *,
                      predict: bool = False) -> tuple[float, Predictions | None]:
    """Accuracy of the members' averaged logits (correct / total) and, asked for, their
    predictions for every example of ``data``; one device sync."""
    for m in models:
        m.eval()
    correct = torch.zeros((), device=data.device, dtype=torch.int64)
    guesses = []
    with torch.inference_mode(), numerics.autocast():
        for x, y in data.batches(batch_size * 2):
            x = numerics.for_batch(x)
            logits = torch.stack([m(x)[0].float() for m in models]).mean(0)
            guess = logits.argmax(1)
            correct += (guess == y).sum()
            guesses.append(guess)
    accuracy = correct.item() / max(len(data), 1)
    if not predict:
        return accuracy, None
    return accuracy, predictions_of(data, torch.cat(guesses).tolist() if guesses else [])
