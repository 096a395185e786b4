"""Fused seeds: K runs that differ only in their seeds, trained as one vmapped model.

``train_fused(cfgs) -> list[TrialResult | Exception]`` is :func:`ablate.train.train_run` for
K seeds at once. The K models are stacked (``torch.func.stack_module_state``): every parameter
and buffer gains a leading (K, ...) dimension, and one ``torch.vmap`` over
``torch.func.functional_call`` runs all K forward passes as one. Nothing is shared between
seeds but the kernels:

- the seeds that may differ: ``train.seed``, the per-source seeds (``train.init_seed``,
  ``order_seed``, ``augment_seed``) and the partition seed (``dataset.partition_seed``);
- initialisation: run k's model is built after ``seed_everything`` of its initialisation seed,
  exactly as ``train_run`` builds it, so its fused initial weights are its lone initial weights;
- data order and augmentation: each run draws its batches from its own two ``torch.Generator``s
  seeded like ``train_run``'s, from its own train / validation partition (the images are on
  the device once; each partition is a view of them); a step's input is (K, B, 3, S, S), run
  k's batch at [k]; every run is tested on the same test split;
- BatchNorm: running statistics are stacked buffers, updated per model inside the vmap
  exactly as each model alone updates them (a frozen model1 stays in eval mode). It computes
  in float32 whatever its input's precision, and returns that precision: under CUDA autocast
  the vmapped convolutions hand it bf16, and ``vmap`` over ``batch_norm`` with bf16 input and
  float32 statistics fails (pytorch issues 192617 and 184890), while a lone BatchNorm takes
  that mix natively and computes in float32 too;
- the loss is the sum of the K seeds' own losses, so each seed's gradient is its lone
  gradient; one AdamW over the stacked tensors is K AdamWs, because AdamW is elementwise
  (tests/test_fused.py checks both);
- the LR schedule, best-validation checkpoint, test accuracy and curves are per seed, and
  each seed ends with its own TrialResult.

Why: on a GPU a small model's step is bound by launching kernels from Python (issue 11:
seresnet18 trains at about 3,000 images/s on an H200 at 32 px and at 224 px alike); K seeds
in one step launch the kernels of one. On a CPU the step is bound by arithmetic and fusion
does not pay (see ``ablate bench --fuse K``).

Layer: torch and timm, no Optuna. The study decides which cells run together; this module
only decides how they train.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from ablate.config import RunConfig
from ablate.data import DeviceImages, load_images, split_indices
from ablate.errors import ConfigError
from ablate.models import SingleHeadNet, count_parameters
from ablate.records import TrialResult
from ablate.train.loop import (EpochCallback, EpochSums, Learner, fit, on_device, resolve_runs, seeded_models,
                               train_epoch)
from ablate.train.stage1 import Stage1, save_single_checkpoint, stage1_images, stage1_weights, uses_stage1

__all__ = ["FusedModel", "FusedLearner", "check_fusable", "train_fused", "SEED_FIELDS"]

# What may differ between runs trained together: their seeds (section, key).
SEED_FIELDS = (("train", "seed"), ("train", "init_seed"), ("train", "order_seed"), ("train", "augment_seed"),
               ("dataset", "partition_seed"))

Log = Callable[[str], None]
Batch = tuple[torch.Tensor, torch.Tensor]  # (x, y)


class FusedModel(nn.Module):
    """K models of one architecture as one: ``forward(x)`` is every model's forward, vmapped.

    The stacked parameters and buffers are the state of ``self.stacked``, a copy of the first
    model whose every tensor has a leading K dimension (its ``state_dict`` keys are the lone
    model's). They stay module state, not arguments: ``torch.compile`` then treats the
    BatchNorm buffers that the step mutates as static module buffers, and CUDA graphs are not
    skipped for "mutated inputs" (pytorch issue 139207). The module ``functional_call`` runs,
    ``template``, is a parameter-free copy on the meta device, kept out of ``self``'s submodules.

    Args:
        models: K models of identical structure, on the device they train on.
    """

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("FusedModel needs at least one model")
        params, buffers = stack_module_state(list(models))  # {name: (K, ...)}
        template = copy.deepcopy(models[0]).to("meta")
        stacked = copy.deepcopy(template)
        for module in template.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                _in_float32(module)
        for name, tensor in params.items():
            owner, leaf = _owner(stacked, name)
            owner._parameters[leaf] = nn.Parameter(tensor, requires_grad=tensor.requires_grad)
        for name, tensor in buffers.items():
            owner, leaf = _owner(stacked, name)
            owner._buffers[leaf] = tensor
        self.k = len(models)
        self.stacked = stacked
        self._state: tuple[dict, dict] | None = None  # forward's (params, buffers); see _state_dicts
        object.__setattr__(self, "template", template)  # not a submodule: its meta tensors are no state
        # A single-head model returns (logits, None, None); vmap wants no out_dims for the Nones.
        # (A new model kind whose forward returns None maps needs naming here.)
        self._out_dims = (0, None, None) if isinstance(models[0], SingleHeadNet) else (0, 0, 0)
        self.train(models[0].training)

    def train(self, mode: bool = True) -> FusedModel:
        super().train(mode)
        self.template.train(mode)  # DueHeadNet keeps a frozen model1 in eval mode here
        return self

    def forward(self, x: torch.Tensor, shared: bool = False):
        """x: (K, B, 3, S, S), seed k's batch at [k]; or, with ``shared``, one (B, 3, S, S) batch for all.

        Returns the lone model's outputs with a leading K: (logits (K, B, classes),
        map1 (K, B, C, H, W) or None, map2 (K, B, C, H, W) or None).
        """
        params, buffers = self._state_dicts()
        # randomness="different": a backbone with dropout draws its own numbers per seed (from
        # the global generator, so not the lone run's numbers; seresnets draw none in training).
        fused = torch.vmap(self._one, in_dims=(0, 0, None if shared else 0), out_dims=self._out_dims,
                           randomness="different")
        return fused(params, buffers, x)

    def _state_dicts(self) -> tuple[dict, dict]:
        """``stacked``'s parameters and buffers by name: built once for eager steps (rebuilt after
        ``_apply``, which may replace them); built afresh while torch.compile traces, so that it
        reaches them as module state as before, not through a dict of this module's."""
        if torch.compiler.is_compiling():
            return dict(self.stacked.named_parameters()), dict(self.stacked.named_buffers())
        if self._state is None:
            self._state = dict(self.stacked.named_parameters()), dict(self.stacked.named_buffers())
        return self._state

    def _apply(self, fn, recurse: bool = True):
        self._state = None  # .to(), .float() and the like may put new tensors in place of the old
        return super()._apply(fn, recurse)

    def _one(self, params: dict, buffers: dict, x: torch.Tensor):
        return functional_call(self.template, (params, buffers), (x,))

    def seed_state(self, k: int) -> dict[str, torch.Tensor]:
        """Model k's state dict (detached clones), with the lone model's keys."""
        return {name: t[k].detach().clone() for name, t in self.stacked.state_dict().items()}

    @torch.no_grad()
    def load_seed_state(self, k: int, state: dict[str, torch.Tensor]) -> None:
        for name, t in self.stacked.state_dict().items():
            t[k].copy_(state[name])


def _in_float32(bn: nn.Module) -> None:
    """``bn`` computes in float32 and returns its input's precision (see the module docstring).
    A float32 input passes through unchanged: ``.float()`` and ``.to`` of its own dtype are no-ops."""
    plain = bn.forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        return plain(x.float()).to(x.dtype)

    bn.forward = forward


def _owner(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, leaf = name.rpartition(".")
    return (module.get_submodule(path) if path else module), leaf


class FusedLearner(Learner):
    """K seeds of one run as one :class:`FusedModel` (see :class:`ablate.train.loop.Learner`).

    ``compile_mode``: ``torch.compile``'s mode with ``train.compile`` (``"reduce-overhead"``: CUDA graphs).
    """

    fused = True

    def __init__(self, cfgs: Sequence[RunConfig], models: Sequence[nn.Module], device: torch.device,
                 compile_mode: str | None = None):
        self.k = len(cfgs)
        super().__init__(cfgs, FusedModel(models), device, compile_mode)
        self.mark_step = (cfgs[0].train.compile and device.type == "cuda" and compile_mode is not None
                          and "reduce-overhead" in compile_mode)

    def train_epoch(self, data: Sequence[DeviceImages]) -> EpochSums:
        """One pass for K seeds, seed k over ``data[k]``: its batches in the order it draws them alone."""
        batches = _stacked(self.stream(data[i], i) for i in range(self.k))
        return train_epoch(self.step_model, self.opt, batches, self.objective, self.numerics,
                           EpochSums.zeros((self.k,), self.device), mark_step=self.mark_step)

    def seed_state(self, k: int) -> dict[str, torch.Tensor]:
        return self.model.seed_state(k)

    def load_seed_state(self, k: int, state: dict[str, torch.Tensor]) -> None:
        self.model.load_seed_state(k, state)


def _stacked(streams: Iterable[Iterable[Batch]]) -> Iterator[Batch]:
    """One (K, B, 3, S, S) input and (K, B) labels a step, seed k's batch at [k]."""
    for batches in zip(*streams):
        yield torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])


def check_fusable(cfgs: Sequence[RunConfig]) -> None:
    """Raises ConfigError unless ``cfgs`` are one or more configs that differ only in their seeds
    (:data:`SEED_FIELDS`: ``train.seed``, the per-source seeds, ``dataset.partition_seed``)."""
    if not cfgs:
        raise ConfigError("fused training: no configs given")
    if cfgs[0].model.kind == "ensemble":  # two members trained one after the other: fuse its members instead
        raise ConfigError("fused training: model.kind ensemble does not fuse; run it with repeats.fuse: 1")
    seeds = [c.train.seed for c in cfgs]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"fused training: seeds must differ (got {seeds})")

    def unseeded(c: RunConfig) -> dict:
        d = c.model_dump(mode="json")
        for section, key in SEED_FIELDS:
            d[section].pop(key)
        return d

    first = unseeded(cfgs[0])
    for c in cfgs[1:]:
        other = unseeded(c)
        if other != first:
            diff = sorted(f"{section}.{key}" for section in first for key in first[section]
                          if first[section][key] != other[section].get(key))
            raise ConfigError(f"fused training: configs must differ only in their seeds "
                              f"({', '.join('.'.join(f) for f in SEED_FIELDS)}); "
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
        cfgs: resolved run configs that differ only in their seeds (:func:`check_fusable`).
        base, cache_dir: as for ``train_run``. DueHeadNet seeds with ``model1.init: stage1``
            take their stage-1 checkpoints from ``cache_dir`` (through the same function as
            ``train_run``); the missing ones are trained first, fused too. Single-head seeds
            save their best backbone there, to serve as stage-1 checkpoints.
        on_epoch: one callback per seed (or None), called with that seed's epoch statistics.
        compile_mode: ``torch.compile``'s mode for the fused model when ``train.compile`` is on
            (None: torch's default; ``"reduce-overhead"``: CUDA graphs).

    Raises:
        ConfigError: the configs differ in more than their seeds, or ``on_epoch`` has the wrong length.
        DataError, ModelError: the data set or model cannot be had.
    """
    started = time.perf_counter()
    check_fusable(cfgs)
    callbacks = list(on_epoch) if on_epoch is not None else [None] * len(cfgs)
    if len(callbacks) != len(cfgs):
        raise ConfigError(f"fused training: {len(cfgs)} configs but {len(callbacks)} on_epoch callbacks")
    cfgs, device = resolve_runs(cfgs)  # as train_run: the precision resolved before the stage-1 key is read
    stage1: list[Stage1 | Exception | None] = [None] * len(cfgs)
    if uses_stage1(cfgs[0]):
        stage1 = stage1_weights(cfgs, cache_dir, lambda singles, folder: _train_stage1(singles, base, folder, log))
    # as train_run: a failed stage-1 run fails the seed
    outcomes: list[TrialResult | Exception | None] = [s if isinstance(s, Exception) else None for s in stage1]
    live = [i for i, outcome in enumerate(outcomes) if outcome is None]
    if live:
        results = _train_seeds([cfgs[i] for i in live], [stage1[i] for i in live], [callbacks[i] for i in live],
                               base, cache_dir, device, compile_mode, started)
        for i, result in zip(live, results):
            outcomes[i] = result
    return outcomes  # type: ignore[return-value]


def _train_stage1(singles: list[RunConfig], base: Path, cache_dir: Path,
                  log: Log | None) -> list[TrialResult | Exception]:
    """The fused run's stage 1: the missing single-head runs, fused too."""
    if log:
        log(f"stage 1: training single-head {singles[0].model.backbone} (seeds "
            f"{', '.join(str(s.train.seed) for s in singles)}) as model1, fused")
    return train_fused(singles, base=base, cache_dir=cache_dir)


def _train_seeds(cfgs: Sequence[RunConfig], stage1: Sequence[Stage1 | None], callbacks: Sequence[EpochCallback | None],
                 base: Path, cache_dir: Path | None, device: torch.device, compile_mode: str | None,
                 started: float) -> list[TrialResult | Exception]:
    """The fused model of ``cfgs`` trained; each seed's TrialResult or the exception that stopped it."""
    images = load_images(cfgs[0].dataset, base)
    splits = [split_indices(images.labels, c.dataset, images.official_test) for c in cfgs]
    models = seeded_models(cfgs, images.num_classes, device, [s.state if s is not None else None for s in stage1])
    counts = count_parameters(models[0])
    learner = FusedLearner(cfgs, models, device, compile_mode)
    del models
    data = on_device(images, splits, device)
    fits = fit(learner, data, cfgs[0].train.epochs, callbacks)
    wall = time.perf_counter() - started
    outcomes: list[TrialResult | Exception] = []
    for i, (cfg, outcome) in enumerate(zip(cfgs, fits)):
        if isinstance(outcome, Exception):
            outcomes.append(outcome)
            continue
        save_single_checkpoint(cfg, outcome.best_state, cache_dir)  # under its own recipe's key, as in train_run
        extras = {"stage1": stage1[i].record} if stage1[i] is not None else {}
        extras["fused"] = {"k": len(cfgs), "index": i, "seeds": [c.train.seed for c in cfgs],
                           "precision": cfg.train.precision}
        outcomes.append(outcome.result(counts, device, wall, extras, stage1_images(cfg, len(splits[i].train))))
    return outcomes
