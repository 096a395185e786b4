"""Fused seeds: K runs that differ only in ``train.seed``, trained as one vmapped model.

``train_fused(cfgs) -> list[TrialResult | Exception]`` is :func:`ablate.train.train_run` for
K seeds at once. The K models are stacked (``torch.func.stack_module_state``): every parameter
and buffer gains a leading (K, ...) dimension, and one ``torch.vmap`` over
``torch.func.functional_call`` runs all K forward passes as one. Nothing is shared between
seeds but the kernels:

- initialisation: seed s's model is built after ``seed_everything(s)``, exactly as
  ``train_run`` builds it, so its fused initial weights are its lone initial weights;
- data order and augmentation: each seed draws its batches from its own ``torch.Generator``
  seeded like ``train_run``'s; a step's input is (K, B, 3, S, S), seed k's batch at [k];
- BatchNorm: running statistics are stacked buffers, updated per model inside the vmap
  exactly as each model alone updates them (a frozen model1 stays in eval mode);
- the loss is the sum of the K seeds' own losses, so each seed's gradient is its lone
  gradient; one AdamW over the stacked tensors is K AdamWs, because AdamW is elementwise
  (tests/test_fused.py checks both);
- the LR schedule, best-validation checkpoint, test accuracy and curves are per seed, and
  each seed ends with its own TrialResult.

Why: on a GPU a small model's step is bound by launching kernels from Python (issue 11:
seresnet18 trains at about 3,000 images/s on an H200 at 32 px and at 224 px alike); K seeds
in one step launch the kernels of one. On a CPU the step is bound by arithmetic and fusion
does not pay (see ``ablate bench --fuse K``).

Layer: torch and timm, no Optuna (like ``ablate.train``). The study decides which cells run
together; this module only decides how they train.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state

from ablate.config import ConstraintConfig, RunConfig
from ablate.data import DeviceImages, load_images, save_atomic, split_indices
from ablate.errors import ConfigError, TrainingError
from ablate.models import SingleHeadNet, build_model, count_parameters, fmce_penalty, head_similarity
from ablate.records import EpochStats, TrialResult
from ablate.seeding import seed_everything
from ablate.train import (_images_per_epoch, _stage1_weights, precision_context, resolve_device, resolve_precision,
                          single_checkpoint_path, stage1_config, stage1_path, stage1_run_config)

__all__ = [
    "FusedModel",
    "FusedSums",
    "check_fusable",
    "fused_train_epoch",
    "fused_evaluate",
    "train_fused",
]

EpochCallback = Callable[[EpochStats], None]
Log = Callable[[str], None]


def _run_precision(cfg: RunConfig, device: torch.device) -> str:
    """The run's precision, ``train.precision`` resolved on ``device``."""
    return resolve_precision(cfg.train.precision, device)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """(..., C, H, W) with every (C, H, W) image stored channels-last."""
    if x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x.movedim(-3, -1).contiguous().movedim(-1, -3)


# ---------------------------------------------------------------------------------------------
# The stacked model


class FusedModel(nn.Module):
    """K models of one architecture as one: ``forward(x)`` is every model's forward, vmapped.

    The stacked parameters and buffers are the state of ``self.stacked``, a copy of the first
    model whose every tensor has a leading K dimension (its ``state_dict`` keys are the lone
    model's). They stay module state, not arguments: ``torch.compile`` then treats the
    BatchNorm buffers that the step mutates as static module buffers, and CUDA graphs are not
    skipped for "mutated inputs" (pytorch issue 139207). The module ``functional_call`` runs
    is a parameter-free copy on the meta device, kept out of ``self``'s submodules.

    Args:
        models: K models of identical structure, on the device they train on.
    """

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("FusedModel needs at least one model")
        params, buffers = stack_module_state(list(models))  # {name: (K, ...)}
        base = copy.deepcopy(models[0]).to("meta")
        stacked = copy.deepcopy(base)
        for name, tensor in params.items():
            owner, leaf = _owner(stacked, name)
            owner._parameters[leaf] = nn.Parameter(tensor, requires_grad=tensor.requires_grad)
        for name, tensor in buffers.items():
            owner, leaf = _owner(stacked, name)
            owner._buffers[leaf] = tensor
        self.k = len(models)
        self.stacked = stacked
        object.__setattr__(self, "_base", base)  # not a submodule: its meta tensors are no state
        # A single-head model returns (logits, None, None); vmap wants no out_dims for the Nones.
        # (A new model kind whose forward returns None maps needs naming here.)
        self._out_dims = (0, None, None) if isinstance(models[0], SingleHeadNet) else (0, 0, 0)
        self.train(models[0].training)

    def train(self, mode: bool = True) -> FusedModel:
        super().train(mode)
        self._base.train(mode)  # DueHeadNet keeps a frozen model1 in eval mode here
        return self

    def forward(self, x: torch.Tensor, shared: bool = False):
        """x: (K, B, 3, S, S), seed k's batch at [k]; or, with ``shared``, one (B, 3, S, S) batch for all.

        Returns the lone model's outputs with a leading K: (logits (K, B, classes),
        map1 (K, B, C, H, W) or None, map2 (K, B, C, H, W) or None).
        """
        params = dict(self.stacked.named_parameters())
        buffers = dict(self.stacked.named_buffers())
        # randomness="different": a backbone with dropout draws its own numbers per seed (from
        # the global generator, so not the lone run's numbers; seresnets draw none in training).
        fused = torch.vmap(self._one, in_dims=(0, 0, None if shared else 0), out_dims=self._out_dims,
                           randomness="different")
        return fused(params, buffers, x)

    def _one(self, params: dict, buffers: dict, x: torch.Tensor):
        return functional_call(self._base, (params, buffers), (x,))

    def seed_state(self, k: int) -> dict[str, torch.Tensor]:
        """Model k's state dict (detached clones), with the lone model's keys."""
        return {name: t[k].detach().clone() for name, t in self.stacked.state_dict().items()}

    @torch.no_grad()
    def load_seed_state(self, k: int, state: dict[str, torch.Tensor]) -> None:
        for name, t in self.stacked.state_dict().items():
            t[k].copy_(state[name])


def _owner(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, leaf = name.rpartition(".")
    return (module.get_submodule(path) if path else module), leaf


# ---------------------------------------------------------------------------------------------
# One epoch, evaluation


@dataclass
class FusedSums:
    """Per-seed sums over one epoch, (K,) tensors kept on the device (one sync an epoch)."""

    loss: torch.Tensor
    penalty: torch.Tensor
    correct: torch.Tensor
    images: int  # per seed: every seed sees the same number of images


def fused_train_epoch(model: nn.Module, opt: torch.optim.Optimizer, data: DeviceImages, batch_size: int,
                      augment: bool, generators: Sequence[torch.Generator], constraint: ConstraintConfig | None,
                      autocast: Callable = contextlib.nullcontext, *, channels_last: bool = False,
                      mark_step: bool = False) -> FusedSums:
    """One pass over ``data`` for K seeds: seed k's batches come from ``generators[k]``, in the
    order ``ablate.train.train_epoch`` would draw them for that seed alone.

    ``model`` is a :class:`FusedModel` (or ``torch.compile`` of one); ``mark_step`` marks each
    step's start for CUDA graph trees (``mode="reduce-overhead"``).
    """
    k, device = len(generators), data.device
    model.train()
    sums = FusedSums(torch.zeros(k, device=device), torch.zeros(k, device=device),
                     torch.zeros(k, device=device, dtype=torch.int64), 0)
    penalty_of = partial(fmce_penalty, target=constraint.target) if constraint is not None else None
    streams = [data.batches(batch_size, generator=g, augment=augment, drop_last=True) for g in generators]
    for batches in zip(*streams):
        x = torch.stack([b[0] for b in batches])  # (K, B, 3, S, S)
        y = torch.stack([b[1] for b in batches])  # (K, B)
        if channels_last:
            x = _channels_last(x)
        if mark_step:
            torch.compiler.cudagraph_mark_step_begin()
        with autocast():
            logits, map1, map2 = model(x)
            loss = torch.vmap(F.cross_entropy)(logits, y)  # (K,): each seed's own mean CE
            if penalty_of is not None:
                penalty = torch.vmap(penalty_of)(map2, map1)  # (K,)
                loss = loss + constraint.weight * penalty
                sums.penalty += penalty.detach() * y.shape[1]
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # seed k's parameters get seed k's gradient only
        opt.step()
        sums.loss += loss.detach() * y.shape[1]
        sums.correct += (logits.argmax(-1) == y).sum(1)
        sums.images += y.shape[1]
    return sums


def fused_evaluate(model: FusedModel, data: DeviceImages, batch_size: int, autocast: Callable = contextlib.nullcontext,
                   *, channels_last: bool = False) -> tuple[list[float], list[float | None]]:
    """Per seed: (accuracy = correct / total, mean head similarity or None), as ``train.evaluate``."""
    k, device = model.k, data.device
    model.eval()
    correct = torch.zeros(k, device=device, dtype=torch.int64)
    sim_sum = torch.zeros(k, device=device)
    has_sim = False
    with torch.inference_mode(), autocast():
        for x, y in data.batches(batch_size * 2):
            if channels_last:
                x = _channels_last(x)
            logits, map1, map2 = model(x, shared=True)  # one batch, all K models
            correct += (logits.argmax(-1) == y).sum(1)
            if map1 is not None:
                sim_sum += torch.vmap(head_similarity)(map1, map2).sum(1)
                has_sim = True
    total = max(len(data), 1)
    accs = (correct.double() / total).tolist()
    sims = (sim_sum.double() / total).tolist() if has_sim else [None] * k
    return accs, sims


# ---------------------------------------------------------------------------------------------
# K runs


def check_fusable(cfgs: Sequence[RunConfig]) -> None:
    """Raises ConfigError unless ``cfgs`` are one or more configs that differ only in ``train.seed``."""
    if not cfgs:
        raise ConfigError("fused training: no configs given")
    if cfgs[0].model.kind == "ensemble":  # two members trained one after the other: fuse its members instead
        raise ConfigError("fused training: model.kind ensemble does not fuse; run it with repeats.fuse: 1")
    seeds = [c.train.seed for c in cfgs]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"fused training: seeds must differ (got {seeds})")

    def unseeded(c: RunConfig) -> dict:
        d = c.model_dump(mode="json")
        d["train"].pop("seed")
        return d

    first = unseeded(cfgs[0])
    for c in cfgs[1:]:
        other = unseeded(c)
        if other != first:
            diff = sorted(f"{section}.{key}" for section in first for key in first[section]
                          if first[section][key] != other[section].get(key))
            raise ConfigError(f"fused training: configs must differ only in train.seed; "
                              f"seed {c.train.seed} also differs in {', '.join(diff)}")


def train_fused(
    cfgs: Sequence[RunConfig],
    *,
    base: Path = Path("."),
    cache_dir: Path | None = None,
    on_epoch: Sequence[EpochCallback | None] | None = None,
    log: Log | None = None,
    compile_mode: str | None = None,
) -> list[TrialResult | Exception]:
    """Train K seeds of one run as one fused model; seed k's outcome at [k].

    Each seed is the experiment ``train_run(cfgs[k])`` runs (see the module docstring), and its
    outcome is what that call would return or raise: a TrialResult, or the exception that
    stopped it — a TrainingError when its loss became NaN or infinite, or whatever its
    ``on_epoch`` callback raised (Optuna's TrialPruned, say). A stopped seed's slice keeps
    training, unseen, until every seed is done. Errors common to all seeds (data, model,
    out of memory, Ctrl-C) are raised.

    Args:
        cfgs: resolved run configs that differ only in ``train.seed``.
        base, cache_dir: as for ``train_run``. DueHeadNet seeds with ``model1.init: stage1``
            take their stage-1 checkpoints from ``cache_dir`` (through the same function as
            ``train_run``); the missing ones are trained first, fused too. Single-head seeds
            save their best backbone there, to serve as stage-1 checkpoints.
        on_epoch: one callback per seed (or None), called with that seed's epoch statistics.
        compile_mode: ``torch.compile``'s mode for the fused model when ``train.compile`` is on
            (None: torch's default; ``"reduce-overhead"``: CUDA graphs).

    Raises:
        ConfigError: the configs differ in more than the seed, or ``on_epoch`` has the wrong length.
        DataError, ModelError: the data set or model cannot be had.
    """
    started = time.perf_counter()
    check_fusable(cfgs)
    callbacks = list(on_epoch) if on_epoch is not None else [None] * len(cfgs)
    if len(callbacks) != len(cfgs):
        raise ConfigError(f"fused training: {len(cfgs)} configs but {len(callbacks)} on_epoch callbacks")
    cfg = cfgs[0]
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    if cfg.train.precision == "auto":  # as train_run: resolved before the stage-1 key is read
        precision = resolve_precision("auto", device)
        cfgs = [c.model_copy(update={"train": c.train.model_copy(update={"precision": precision})}) for c in cfgs]
        cfg = cfgs[0]

    outcomes: list[TrialResult | Exception | None] = [None] * len(cfgs)
    extras: list[dict] = [{} for _ in cfgs]
    states: list[dict | None] = [None] * len(cfgs)
    if cfg.model.kind == "dual" and cfg.model.model1.init == "stage1":
        if cache_dir is None:
            cache_dir = Path(tempfile.mkdtemp(prefix="ablate-stage1-"))
        trained = _train_missing_stage1(cfgs, base, cache_dir, log)
        for i, c in enumerate(cfgs):
            if isinstance(trained.get(i), Exception):
                outcomes[i] = trained[i]  # as train_run: a failed stage-1 run fails the seed
                continue
            states[i], extras[i]["stage1"] = _stage1_weights(c, base, cache_dir, log)
            if i in trained:
                extras[i]["stage1"]["reused"] = False
    live = [i for i in range(len(cfgs)) if outcomes[i] is None]
    if live:
        results = _train_stack([cfgs[i] for i in live], [states[i] for i in live], [callbacks[i] for i in live],
                               base, cache_dir, device, compile_mode, started)
        for i, result in zip(live, results):
            if isinstance(result, TrialResult):
                extras[i].update(result.extras)
                result = dataclasses.replace(result, extras=extras[i],
                                             train_images=result.train_images + _stage1_images(cfgs[i], base))
            outcomes[i] = result
    return outcomes  # type: ignore[return-value]


def _stage1_images(cfg: RunConfig, base: Path) -> int:
    """Training images of the stage-1 run a DueHeadNet seed's model1 cost (0 without one), as
    ``train_run`` counts them: a DueHeadNet's compute includes its stage 1, reused or not."""
    if cfg.model.kind != "dual" or cfg.model.model1.init != "stage1":
        return 0
    single = stage1_config(cfg)
    n_train = len(split_indices(load_images(cfg.dataset, base).labels, cfg.dataset).train)
    return _images_per_epoch(n_train, single.train.batch_size) * single.train.epochs


def _train_missing_stage1(cfgs: Sequence[RunConfig], base: Path, cache_dir: Path,
                          log: Log | None) -> dict[int, TrialResult | Exception]:
    """Train, fused, the stage-1 single-head runs whose checkpoints are not in ``cache_dir`` yet."""
    missing = [i for i, c in enumerate(cfgs) if not stage1_path(c, cache_dir).exists()]
    if not missing:
        return {}
    singles = [stage1_run_config(cfgs[i]) for i in missing]
    if log:
        log(f"stage 1: training single-head {singles[0].model.backbone} (seeds "
            f"{', '.join(str(s.train.seed) for s in singles)}) as model1, fused")
    results = train_fused(singles, base=base, cache_dir=cache_dir)
    return dict(zip(missing, results))


def _train_stack(cfgs: Sequence[RunConfig], model1_states: Sequence[dict | None], callbacks: Sequence,
                 base: Path, cache_dir: Path | None, device: torch.device, compile_mode: str | None,
                 started: float) -> list[TrialResult | Exception]:
    cfg, k = cfgs[0], len(cfgs)
    images = load_images(cfg.dataset, base)
    splits = split_indices(images.labels, cfg.dataset)
    models = []
    for c, state in zip(cfgs, model1_states):
        seed_everything(c.train.seed)  # as train_run: seed s's fused init is its lone init
        models.append(build_model(c.model, images.num_classes, cfg.dataset.image_size, state).to(device))
    counts = count_parameters(models[0])
    model = FusedModel(models)
    del models

    precision = _run_precision(cfg, device)
    autocast = precision_context(precision, device)
    on_cuda = device.type == "cuda"
    # bf16 with channels_last, as the lead's train.precision; on CUDA today's loop does it in fp32 too.
    channels_last = precision == "bf16" or on_cuda
    if on_cuda:
        torch.backends.cudnn.benchmark = True
    step_model = torch.compile(model, mode=compile_mode) if cfg.train.compile else model
    mark_step = cfg.train.compile and on_cuda and compile_mode is not None and "reduce-overhead" in compile_mode
    train = DeviceImages(images.images[splits.train], images.labels[splits.train], device)
    val = DeviceImages(images.images[splits.val], images.labels[splits.val], device)
    test = DeviceImages(images.images[splits.test], images.labels[splits.test], device)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)  # elementwise: K AdamWs
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.train.epochs)  # one schedule, the same for all
    generators = [torch.Generator().manual_seed(c.train.seed) for c in cfgs]
    constraint = cfg.model.constraint if cfg.model.kind == "dual" and cfg.model.constraint.on else None

    curves: list[list[EpochStats]] = [[] for _ in cfgs]
    best_val, best_epoch = [-1.0] * k, [0] * k
    best_state: list[dict | None] = [None] * k
    stopped: dict[int, Exception] = {}
    seen, train_seconds = 0, 0.0
    for epoch in range(1, cfg.train.epochs + 1):
        t0 = time.perf_counter()
        sums = fused_train_epoch(step_model, opt, train, cfg.train.batch_size, cfg.dataset.augment, generators,
                                 constraint, autocast, channels_last=channels_last, mark_step=mark_step)
        n = sums.images
        lr = opt.param_groups[0]["lr"]
        sched.step()
        losses = (sums.loss.double() / max(n, 1)).tolist()  # one device sync per epoch
        accs = (sums.correct.double() / max(n, 1)).tolist()
        penalties = (sums.penalty.double() / max(n, 1)).tolist()
        seen += n
        train_seconds += time.perf_counter() - t0
        val_accs, _ = fused_evaluate(model, val, cfg.train.batch_size, autocast, channels_last=channels_last)
        seconds = time.perf_counter() - t0
        for i in range(k):
            if i in stopped:
                continue
            if not math.isfinite(losses[i]):
                stopped[i] = TrainingError(f"loss became {losses[i]} in epoch {epoch} (lr {lr:.3g}): training diverged")
                continue
            stats = EpochStats(epoch=epoch, train_loss=losses[i], train_accuracy=accs[i], val_accuracy=val_accs[i],
                               penalty=penalties[i] if constraint is not None else None, lr=lr, seconds=seconds)
            curves[i].append(stats)
            if val_accs[i] > best_val[i]:  # ties keep the earlier epoch
                best_val[i], best_epoch[i] = val_accs[i], epoch
                best_state[i] = model.seed_state(i)
            if callbacks[i] is not None:
                try:
                    callbacks[i](stats)
                except Exception as exc:  # this seed stops; the others go on
                    stopped[i] = exc
        if len(stopped) == k:
            break

    if len(stopped) == k:
        return [stopped[i] for i in range(k)]
    for i in range(k):
        if i not in stopped:
            model.load_seed_state(i, best_state[i])
    test_accs, sims = fused_evaluate(model, test, cfg.train.batch_size, autocast, channels_last=channels_last)
    wall = time.perf_counter() - started
    outcomes: list[TrialResult | Exception] = []
    for i, c in enumerate(cfgs):
        if i in stopped:
            outcomes.append(stopped[i])
            continue
        if c.model.kind == "single" and cache_dir is not None:  # serves as a stage-1 model1, as in train_run
            backbone = {name.removeprefix("backbone."): t.to("cpu") for name, t in best_state[i].items()
                        if name.startswith("backbone.")}
            save_atomic(backbone, single_checkpoint_path(c, cache_dir))  # under its own recipe's key
        more = {"train_images": seen, "n_test": len(test)}
        outcomes.append(TrialResult(
            val_accuracy=best_val[i], best_epoch=best_epoch[i], test_accuracy=test_accs[i], head_similarity=sims[i],
            curves=tuple(curves[i]), n_params=counts.total, n_trainable=counts.trainable, wall_time=wall,
            device=str(device), images_per_second=seen / train_seconds if train_seconds > 0 else float("nan"),
            extras={"fused": {"k": k, "index": i, "seeds": [x.train.seed for x in cfgs], "precision": precision}},
            **more,
        ))
    return outcomes
