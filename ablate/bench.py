"""``ablate bench``: how fast ablate trains, against the ceiling of a bare PyTorch loop.

Everything is measured in one run, on one machine, for one backbone, image size and batch:

- images per second of training steps for three models: single-head, DueHeadNet with model1
  frozen, and DueHeadNet with both heads trained (model1 random, not frozen, FMCE on);
- each under ablate's own loop (:func:`ablate.train.train_epoch`: cut, augment, normalise,
  forward, CE (+ FMCE penalty), backward, AdamW step, the epoch's sums) and under a bare loop
  (one pre-made normalised float batch: forward, CE (+ the same penalty), backward, AdamW
  step), on the same module and the same optimizer;
- the share of ablate's single-head step spent producing the batch (cut, augment, normalise),
  timed on its own;
- with ``--fuse K``: K seeds of one model trained as one fused model (:mod:`ablate.fused`:
  stacked parameters, one vmapped step, each seed its own batch), timed in the same rounds as
  the single seed under ablate's loop; with ``--compile`` too, the compiled fused step in each
  of ``--compile-modes``, with its compile time and, on CUDA, whether CUDA graphs were replayed;
- Optuna's own cost per trial on SQLite (ask with TPE over 4 parameters, a report and a
  median-pruner check per epoch, the user attributes a trial records, tell), in a study that
  already holds 100 (and, if asked, 1,000) finished trials.

Procedure: every measurement is a block of ``block_steps`` steps. After untimed warm-up blocks,
each round runs one block of every measurement, in an order reversed every other round, and
each figure is the median over rounds of the per-block rate. Noise on a shared machine (a
second job, clocks that drift) then falls on ablate's loop and the bare loop alike. Every
ratio is a ratio of two printed medians, so it can be checked from the printed throughputs.
On CUDA the device is synchronised around every timed block. Every loop runs at one precision,
``--precision`` (``train.precision``'s meaning: bf16 is autocast plus channels_last).

Speed is measured here and printed, never asserted by a test (STYLE.md, practice 10).

Imports of torch, timm and Optuna live inside the functions: ``ablate``'s command line builds
its parser, :func:`add_arguments` included, for every command, and ``import torch`` alone
takes 2.4 s on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate.errors import AblateError, ConfigError

if TYPE_CHECKING:
    import optuna
    import torch
    from rich.table import Table

    from ablate.config import ConstraintConfig, StudyConfig
    from ablate.data import DeviceImages

__all__ = [
    "MODELS",
    "TARGETS",
    "BenchOptions",
    "LoopRates",
    "OptunaCost",
    "FusedRates",
    "CompiledFused",
    "BenchResult",
    "add_arguments",
    "options_from_args",
    "run_bench",
    "optuna_trial_cost",
    "bench_json",
    "bench_table",
    "main",
]

# name -> (label, ModelConfig fields besides the backbone)
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "single": ("single-head", {"kind": "single"}),
    "dual_frozen": ("dual, model1 frozen", {"kind": "dual", "model1": {"init": "random", "freeze": True}}),
    "dual_trained": ("dual, both trained", {"kind": "dual", "model1": {"init": "random", "freeze": False}}),
}

# The figures the issue judges ablate by: (comparison, bound). The DueHeadNet bounds follow from
# a backward pass costing about twice its forward pass: a frozen model1 adds one forward to a
# step of three (4/3), a trained one doubles it; what is left is the penalty and the summed map.
TARGETS: dict[str, tuple[str, float]] = {
    "loop_over_bare": (">=", 0.95),
    "data_wait_fraction": ("<=", 0.05),
    "dual_frozen_over_single": ("<=", 1.40),
    "dual_trained_over_single": ("<=", 2.05),
}

# Defaults by device type. On the 2-core CPU a seresnet18 step at 32 px, batch 64, takes about
# 0.3-0.9 s (70-230 img/s); 1 warm-up and 4 timed blocks of 2 steps for 3 models x 2 loops is
# 60 steps, as long as about 87 single-head steps (25-80 s): the whole bench stays under 2 minutes.
DEFAULT_STEPS = {"cpu": 8, "cuda": 200}
DEFAULT_BLOCK_STEPS = {"cpu": 2, "cuda": 20}
DEFAULT_WARMUP = {"cpu": 1, "cuda": 20}  # steps, run as whole blocks; CUDA: cudnn.benchmark tunes here

# Optuna: the workload of one trial as ablate runs it (ablate.study._run_trial and _record).
OPTUNA_SIZES = (100,)
OPTUNA_EPOCHS = 30  # report + should_prune once per epoch; train.epochs' default
OPTUNA_CACHE_VERSION = 1


@dataclass(frozen=True)
class BenchOptions:
    """What to measure. ``None`` steps, block steps and warm-up mean the device's default."""

    backbone: str = "seresnet18"
    image_size: int = 32
    batch_size: int = 64
    steps: int | None = None  # timed steps per measurement, rounded up to whole blocks
    block_steps: int | None = None
    warmup: int | None = None  # untimed steps per measurement, rounded up to whole blocks
    device: str = "auto"
    compile: bool = False
    optuna_trials: int = 5  # timed trials per study size
    optuna_sizes: tuple[int, ...] = OPTUNA_SIZES
    skip_optuna: bool = False
    seed: int = 0
    models: tuple[str, ...] = tuple(MODELS)  # which of MODELS to time, alone
    fuse: int = 0  # K seeds fused; 0: no fused measurement
    fuse_model: str = "single"
    precision: str = "auto"
    compile_modes: tuple[str, ...] | None = None  # for the fused step; None: by device
    compare_precision: bool = False  # also time the single head's ablate loop at the other precision


@dataclass(frozen=True)
class LoopRates:
    """Median images per second of one model under ablate's loop and under the bare loop."""

    ours: float
    bare: float

    @property
    def ours_over_bare(self) -> float:
        return self.ours / self.bare


@dataclass(frozen=True)
class OptunaCost:
    """Median seconds of one trial's Optuna calls, in a study that held ``trials_before`` trials."""

    trials_before: int
    seconds_per_trial: float
    ask: float  # ask and 4 suggestions (TPE samples here)
    report: float  # one report + should_prune per epoch, all epochs
    user_attrs: float
    tell: float
    user_attrs_set: int = 15  # how many set_user_attr calls a trial makes


@dataclass(frozen=True)
class CompiledFused:
    """The compiled fused step in one ``torch.compile`` mode."""

    images_per_second: float  # all K seeds together
    compile_seconds: float  # first call (compilation, CUDA graph recording) less a timed block
    cudagraph_skips: int  # inductor's count of graphs it declined to capture (e.g. mutated inputs)
    graph_replays: int | None  # CUDA graph tree replays in the timed blocks; None off CUDA


@dataclass(frozen=True)
class FusedRates:
    """K seeds of ``model`` fused, against one seed of it under ablate's loop."""

    k: int
    model: str  # a MODELS name
    images_per_second: float  # all K seeds together
    compiled: dict[str, CompiledFused] = field(default_factory=dict)  # by torch.compile mode


@dataclass(frozen=True)
class BenchResult:
    """Every figure of one bench run, with the options and the environment that produced them."""

    options: BenchOptions  # resolved: no None left
    environment: dict[str, Any]
    rates: dict[str, LoopRates]  # by MODELS name
    data_images_per_second: float  # batches produced (cut, augment, normalise) per second, x batch
    compiled: dict[str, LoopRates] | None = None
    optuna: tuple[OptunaCost, ...] = field(default_factory=tuple)
    fused: FusedRates | None = None
    precision: str = "fp32"  # resolved: fp32 or bf16
    other_precision: tuple[str, float] | None = None  # (precision, single-head ablate loop img/s)

    def summary(self, rates: dict[str, LoopRates] | None = None) -> dict[str, float]:
        """The judged ratios; step-time ratios of DueHeadNet to single-head use ablate's loop.
        A ratio whose models were not timed (``--models``) is left out."""
        rates = self.rates if rates is None else rates
        if "single" not in rates:
            return {}
        single = rates["single"].ours
        out = {"loop_over_bare": rates["single"].ours_over_bare}
        for name in ("dual_frozen", "dual_trained"):
            if name in rates:
                out[f"{name}_over_single"] = single / rates[name].ours
        return out

    @property
    def data_wait_fraction(self) -> float:
        """Batch production time per step over ablate's single-head step time."""
        if "single" not in self.rates:
            return float("nan")
        return self.rates["single"].ours / self.data_images_per_second

    @property
    def fused_over_single(self) -> float | None:
        """Aggregate images/s of K fused seeds over one seed of the same model alone."""
        if self.fused is None:
            return None
        return self.fused.images_per_second / self.rates[self.fused.model].ours


# ---------------------------------------------------------------------------------------------
# Options


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``ablate bench`` (and ``python -m ablate.bench``)."""
    d = BenchOptions()
    parser.add_argument("--backbone", default=d.backbone, help=f"timm model name (default {d.backbone})")
    parser.add_argument("--image-size", type=int, default=d.image_size, help=f"pixels (default {d.image_size})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"(default {d.batch_size})")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"timed steps per measurement (default {DEFAULT_STEPS['cpu']} on the CPU, "
                             f"{DEFAULT_STEPS['cuda']} on CUDA)")
    parser.add_argument("--block-steps", type=int, default=None,
                        help=f"steps per timed block; blocks of all measurements alternate (default "
                             f"{DEFAULT_BLOCK_STEPS['cpu']} on the CPU, {DEFAULT_BLOCK_STEPS['cuda']} on CUDA)")
    parser.add_argument("--warmup", type=int, default=None,
                        help=f"untimed steps per measurement first (default {DEFAULT_WARMUP['cpu']} on the CPU, "
                             f"{DEFAULT_WARMUP['cuda']} on CUDA)")
    parser.add_argument("--device", default=d.device, help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile'd models (slow to start)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(d.models),
                        help="which models to time alone (default all: " + ", ".join(MODELS) + ")")
    parser.add_argument("--fuse", type=int, default=d.fuse, metavar="K",
                        help="also time K seeds trained as one fused model against one seed alone")
    parser.add_argument("--fuse-model", choices=list(MODELS), default=d.fuse_model,
                        help=f"the model --fuse fuses (default {d.fuse_model})")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=d.precision,
                        help="every loop's precision, as train.precision: bf16 is autocast + channels_last; "
                             "auto is bf16 on CUDA and on CPUs with native bf16, else fp32 (default auto)")
    parser.add_argument("--compare-precision", action="store_true",
                        help="also time the single head's ablate loop at the other precision (fp32 <-> bf16), "
                             "interleaved in the same rounds: is train.precision: auto right on this machine?")
    parser.add_argument("--compile-modes", nargs="+", default=None, metavar="MODE",
                        help="torch.compile modes of the fused step with --fuse and --compile "
                             "(default: default on the CPU; default and reduce-overhead on CUDA)")
    parser.add_argument("--optuna-trials", type=int, default=d.optuna_trials,
                        help=f"timed Optuna trials per study size (default {d.optuna_trials})")
    parser.add_argument("--optuna-sizes", type=int, nargs="+", default=list(d.optuna_sizes), metavar="N",
                        help="trials already in the study when a trial is timed (default 100; "
                             "'100 1000' shows the growth; the filled study is cached)")
    parser.add_argument("--skip-optuna", action="store_true", help="do not measure Optuna's overhead")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--pruning", type=Path, default=None, metavar="STUDY",
                        help="instead: run STUDY's search with its pruner and with none, and compare "
                             "epochs spent and best validation accuracy")
    return parser


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    """BenchOptions from parsed flags; flags a caller's parser lacks take their defaults.

    Raises:
        ConfigError: a size or count below its minimum.
    """
    d = BenchOptions()
    opts = BenchOptions(
        backbone=getattr(args, "backbone", d.backbone),
        image_size=getattr(args, "image_size", d.image_size),
        batch_size=getattr(args, "batch_size", d.batch_size),
        steps=getattr(args, "steps", None),
        block_steps=getattr(args, "block_steps", None),
        warmup=getattr(args, "warmup", None),
        device=getattr(args, "device", d.device),
        compile=bool(getattr(args, "compile", False)),
        optuna_trials=getattr(args, "optuna_trials", d.optuna_trials),
        optuna_sizes=tuple(getattr(args, "optuna_sizes", d.optuna_sizes)),
        skip_optuna=bool(getattr(args, "skip_optuna", False)),
        models=tuple(getattr(args, "models", d.models)),
        fuse=getattr(args, "fuse", d.fuse),
        fuse_model=getattr(args, "fuse_model", d.fuse_model),
        precision=getattr(args, "precision", d.precision),
        compile_modes=tuple(args.compile_modes) if getattr(args, "compile_modes", None) else None,
        compare_precision=bool(getattr(args, "compare_precision", False)),
    )
    minimum = {"--image-size": (opts.image_size, 8), "--batch-size": (opts.batch_size, 2),
               "--steps": (opts.steps, 1), "--block-steps": (opts.block_steps, 1), "--warmup": (opts.warmup, 0),
               "--optuna-trials": (opts.optuna_trials, 1), "--fuse": (opts.fuse, 0), "--optuna-sizes": (min(opts.optuna_sizes, default=0), 0)}
    for flag, (value, low) in minimum.items():
        if value is not None and value < low:
            raise ConfigError(f"{flag}: expected {low} or more (got {value})")
    return opts


def _resolved(opts: BenchOptions, device_type: str) -> BenchOptions:
    """Defaults filled in for the device; steps and warm-up rounded up to whole blocks."""
    kind = "cuda" if device_type == "cuda" else "cpu"
    steps = opts.steps or DEFAULT_STEPS[kind]
    block = min(opts.block_steps or DEFAULT_BLOCK_STEPS[kind], steps)
    warmup = DEFAULT_WARMUP[kind] if opts.warmup is None else opts.warmup
    modes = opts.compile_modes or (("default", "reduce-overhead") if kind == "cuda" else ("default",))
    models = tuple(m for m in MODELS if m in opts.models or (opts.fuse and m == opts.fuse_model))
    return replace(opts, steps=math.ceil(steps / block) * block, block_steps=block,
                   warmup=math.ceil(max(warmup, 1 if opts.fuse and opts.compile else 0) / block) * block,
                   compile_modes=modes, models=models)


# ---------------------------------------------------------------------------------------------
# Throughput


def run_bench(opts: BenchOptions, log: Callable[[str], None] | None = None) -> BenchResult:
    """Measure everything ``opts`` asks for; see the module docstring for the procedure.

    Raises:
        ConfigError: CUDA asked for but absent.
        ModelError: unknown backbone.
    """
    from ablate.models import check_backbone
    from ablate.train import available_cores, resolve_device

    from ablate.train import resolve_precision

    device = resolve_device(opts.device)
    check_backbone(opts.backbone)
    precision = resolve_precision(opts.precision, device)
    opts = _resolved(opts, device.type)
    _set_threads(available_cores())
    log = log or (lambda text: None)
    rounds = opts.steps // opts.block_steps
    log(f"bench: {opts.backbone}, {opts.image_size} px, batch {opts.batch_size}, {device}: "
        f"{rounds} rounds of {opts.block_steps} steps after {opts.warmup} warm-up steps, "
        f"{len(opts.models)} models x 2 loops, {precision}" + (f", {opts.fuse} seeds fused" if opts.fuse else ""))

    rates, data_ips, fused, other = _measure_loops(opts, device, precision, compiled=False)
    compiled = None
    if opts.compile:
        log("bench: torch.compile'd models")
        compiled, _, _, _ = _measure_loops(opts, device, precision, compiled=True)
    costs: tuple[OptunaCost, ...] = ()
    if not opts.skip_optuna:
        log(f"bench: Optuna overhead at {', '.join(map(str, opts.optuna_sizes))} trials")
        with tempfile.TemporaryDirectory(prefix="ablate-bench-") as tmp:
            costs = tuple(optuna_trial_cost(n, opts.optuna_trials, Path(tmp), seed=opts.seed)
                          for n in opts.optuna_sizes)
    return BenchResult(opts, _environment(device, precision), rates, data_ips, compiled, costs, fused, precision, other)


def _set_threads(cores: int) -> None:
    """All the cores this process may use, unless the user fixed a thread count.

    One training per machine is what the bench measures; ``ABLATE_THREADS`` or
    ``OMP_NUM_THREADS`` (as ``ablate run`` workers set) take precedence.
    """
    import torch

    threads = int(os.environ.get("ABLATE_THREADS", 0))
    if threads:
        torch.set_num_threads(threads)
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(cores)


@dataclass(frozen=True)
class _Subject:
    """One model under test, with the optimizer both loops step."""

    name: str
    model: torch.nn.Module
    step_model: torch.nn.Module  # the model itself, or torch.compile of it
    opt: torch.optim.Optimizer
    constraint: ConstraintConfig | None


def _measure_loops(opts: BenchOptions, device: torch.device, precision: str, *, compiled: bool
                   ) -> tuple[dict[str, LoopRates], float, FusedRates | None, tuple[str, float] | None]:
    """({model name: LoopRates}, images per second of batch production, the fused seeds unless
    ``compiled`` or no ``--fuse``, the single head at the other precision with
    ``--compare-precision``), all blocks interleaved."""
    import torch

    from ablate.config import ConstraintConfig, DatasetConfig, ModelConfig, RunConfig, TrainConfig
    from ablate.data import DeviceImages
    from ablate.train import precision_context
    from ablate.models import build_model
    from ablate.train import train_epoch

    on_cuda = device.type == "cuda"
    if on_cuda:  # as ablate.train._fit does
        torch.backends.cudnn.benchmark = True
    autocast = precision_context(precision, device)
    channels_last = precision == "bf16"
    b, s = opts.batch_size, opts.image_size
    cfg = RunConfig(dataset=DatasetConfig(image_size=s), train=TrainConfig(batch_size=b, precision=precision))
    gen = torch.Generator().manual_seed(opts.seed)
    images = torch.randint(0, 256, (b * opts.block_steps, 3, s, s), dtype=torch.uint8, generator=gen)  # (N, 3, S, S)
    labels = torch.randint(0, 10, (b * opts.block_steps,), generator=gen)
    data = DeviceImages(images, labels, device)
    x, y = next(data.batches(b, generator=gen, augment=cfg.dataset.augment))  # the bare loop's one batch
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    subjects = []
    for name in opts.models:
        _, fields = MODELS[name]
        torch.manual_seed(opts.seed)
        model = build_model(ModelConfig(backbone=opts.backbone, **fields), num_classes=10, image_size=s).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        constraint = ConstraintConfig(on=True, weight=1.0) if fields["kind"] == "dual" else None
        subjects.append(_Subject(name, model, torch.compile(model) if compiled else model, opt, constraint))

    blocks: dict[str, Callable[[], object]] = {}
    for sub in subjects:
        blocks[f"{sub.name}/ours"] = partial(train_epoch, sub.step_model, sub.opt, data, cfg, gen, sub.constraint,
                                             autocast)
        blocks[f"{sub.name}/bare"] = partial(_bare_steps, sub, x, y, opts.block_steps, autocast)
    blocks["data"] = partial(_produce_batches, data, b, gen, cfg.dataset.augment, on_cuda)
    other = "fp32" if precision == "bf16" else "bf16"
    if opts.compare_precision and not compiled:
        # the same single-head loop at the other precision, a model and optimizer of its own
        other_cfg = RunConfig(dataset=cfg.dataset, train=TrainConfig(batch_size=b, precision=other))
        torch.manual_seed(opts.seed)
        model = build_model(ModelConfig(backbone=opts.backbone, kind="single"), num_classes=10, image_size=s).to(device)
        if other == "bf16" or on_cuda:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        blocks[f"single/ours@{other}"] = partial(train_epoch, model, opt, data, other_cfg, gen, None,
                                                 precision_context(other, device))
    fused_modes = ((None,) + (opts.compile_modes if opts.compile else ())) if opts.fuse and not compiled else ()
    for mode in fused_modes:
        blocks[f"fused/{mode or 'eager'}"] = _fused_block(opts, cfg, data, device, autocast, channels_last, mode)

    first_call: dict[str, float] = {}
    skips: dict[str, int] = {}
    with _counting_graph_replays(on_cuda) as replays:
        for i in range(opts.warmup // opts.block_steps):
            for name, fn in blocks.items():
                _CURRENT_BLOCK[0] = name
                before = _cudagraph_skips()
                if i == 0:
                    first_call[name] = _timed(fn, device)
                else:
                    fn()
                skips[name] = skips.get(name, 0) + _cudagraph_skips() - before
        replays.clear()  # count the timed blocks only
        seconds = _alternate(blocks, opts.steps // opts.block_steps, device)
    images_per_block = b * opts.block_steps
    ips = {k: statistics.median(images_per_block / t for t in v) for k, v in seconds.items()}
    rates = {sub.name: LoopRates(ours=ips[f"{sub.name}/ours"], bare=ips[f"{sub.name}/bare"]) for sub in subjects}
    fused = None
    if fused_modes:
        per_block = {m: statistics.median(seconds[f"fused/{m}"]) for m in fused_modes[1:]}
        fused = FusedRates(opts.fuse, opts.fuse_model, opts.fuse * ips["fused/eager"], {
            m: CompiledFused(opts.fuse * ips[f"fused/{m}"], first_call[f"fused/{m}"] - per_block[m],
                             skips.get(f"fused/{m}", 0), replays.get(f"fused/{m}") if on_cuda else None)
            for m in fused_modes[1:]})
    other_rate = (other, ips[f"single/ours@{other}"]) if f"single/ours@{other}" in ips else None
    return rates, ips["data"], fused, other_rate


def _fused_block(opts: BenchOptions, cfg, data: DeviceImages, device: torch.device, autocast, channels_last: bool,
                 mode: str | None) -> Callable[[], object]:
    """One block of the fused loop: K models of ``opts.fuse_model`` (seeds seed..seed+K-1), each
    drawing its batches from its own generator, as ``ablate.fused.train_fused`` trains them."""
    import torch

    from ablate.config import ConstraintConfig, ModelConfig
    from ablate.fused import FusedModel, fused_train_epoch
    from ablate.models import build_model

    _, fields = MODELS[opts.fuse_model]
    models = []
    for k in range(opts.fuse):
        torch.manual_seed(opts.seed + k)
        models.append(build_model(ModelConfig(backbone=opts.backbone, **fields), num_classes=10,
                                  image_size=opts.image_size))
    model = FusedModel(models).to(device)
    step_model = torch.compile(model, mode=mode) if mode else model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    gens = [torch.Generator().manual_seed(opts.seed + k) for k in range(opts.fuse)]
    constraint = ConstraintConfig(on=True, weight=1.0) if fields["kind"] == "dual" else None
    mark_step = device.type == "cuda" and mode is not None and "reduce-overhead" in mode
    return partial(fused_train_epoch, step_model, opt, data, opts.batch_size, cfg.dataset.augment, gens,
                   constraint, autocast, channels_last=channels_last, mark_step=mark_step)


def _cudagraph_skips() -> int:
    """Inductor's running count of graphs it would not capture as CUDA graphs."""
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["cudagraph_skips"])


@contextlib.contextmanager
def _counting_graph_replays(on_cuda: bool):
    """Counts, by the block label ``_alternate`` sets, CUDA graph tree replays (inductor's
    ``CUDAGraphTreeManager.execute_node``): the evidence that a reduce-overhead step really
    runs as graphs. Off CUDA, or if torch moved that method, nothing is counted."""
    counts: dict[str, int] = {}
    manager = None
    if on_cuda:
        try:
            from torch._inductor.cudagraph_trees import CUDAGraphTreeManager as manager
        except ImportError:
            manager = None
    original = getattr(manager, "execute_node", None)
    if original is None:
        yield counts
        return

    def counting(self, *args, **kwargs):
        label = _CURRENT_BLOCK[0]
        counts[label] = counts.get(label, 0) + 1
        return original(self, *args, **kwargs)

    manager.execute_node = counting
    try:
        yield counts
    finally:
        manager.execute_node = original


_CURRENT_BLOCK: list[str] = [""]


def _bare_steps(sub: _Subject, x: torch.Tensor, y: torch.Tensor, steps: int, autocast) -> None:
    """The ceiling: the same module, loss and optimizer on one batch already made."""
    import torch.nn.functional as F

    from ablate.models import fmce_penalty

    sub.model.train()  # DueHeadNet keeps a frozen model1 in eval mode
    for _ in range(steps):
        with autocast():
            logits, map1, map2 = sub.step_model(x)
            loss = F.cross_entropy(logits, y)
            if sub.constraint is not None:
                loss = loss + sub.constraint.weight * fmce_penalty(map2, map1, sub.constraint.target)
        sub.opt.zero_grad(set_to_none=True)
        loss.backward()
        sub.opt.step()


def _produce_batches(data: DeviceImages, batch_size: int, gen: torch.Generator, augment: bool, on_cuda: bool) -> None:
    """What ablate's loop does before a step's forward: cut, augment, normalise (+ channels_last)."""
    import torch

    for x, _ in data.batches(batch_size, generator=gen, augment=augment, drop_last=True):
        if on_cuda:
            x = x.contiguous(memory_format=torch.channels_last)


def _alternate(blocks: dict[str, Callable[[], object]], rounds: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each block, once a round, in an order reversed every other round."""
    names = list(blocks)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            _CURRENT_BLOCK[0] = name
            seconds[name].append(_timed(blocks[name], device))
    return seconds


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _environment(device: torch.device, precision: str) -> dict[str, Any]:
    import optuna
    import timm
    import torch

    import ablate
    from ablate.study import git_commit  # the commit as trials record it

    on_cuda = device.type == "cuda"
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if on_cuda else _cpu_name(),
        "threads": torch.get_num_threads(),
        "precision": precision,
        "autocast": "bf16" if precision == "bf16" else None,
        "channels_last": precision == "bf16",
        "ablate": ablate.__version__,
        "git_commit": git_commit(Path(ablate.__file__).parent),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "optuna": optuna.__version__,
        "python": platform.python_version(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------------------------
# Optuna's overhead


def _optuna_study_config() -> StudyConfig:
    """A search as ablate runs one: TPE over 4 parameters, the median pruner."""
    from ablate.config import Choices, PrunerConfig, Range, SamplerConfig, SearchConfig, StudyConfig

    space = {
        "model.constraint.on": Choices(choices=[True, False]),
        "model.constraint.weight": Range(low=0.1, high=2.0, log=True),
        "train.lr": Range(low=1e-4, high=3e-3, log=True),
        "train.weight_decay": Range(low=1e-5, high=1e-2, log=True),
    }
    search = SearchConfig(sampler=SamplerConfig(name="tpe"), pruner=PrunerConfig(name="median"), space=space)
    return StudyConfig(name="bench", search=search)


def _distributions(cfg: StudyConfig) -> dict[str, optuna.distributions.BaseDistribution]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from ablate.config import Choices

    return {path: CategoricalDistribution(dim.choices) if isinstance(dim, Choices)
            else FloatDistribution(dim.low, dim.high, log=dim.log)
            for path, dim in cfg.search.space.items()}


def _trial_record(rng, epochs: int) -> tuple[dict[int, float], dict[str, Any]]:
    """(validation curve, the user attributes ablate records on a trial), with plausible values."""
    import timm
    import torch

    import ablate
    from ablate.config import RunConfig, config_hash
    from ablate.records import EpochStats, TrialResult

    top = float(rng.uniform(0.5, 0.9))
    curve = {e: top * (1 - math.exp(-e / 5)) + float(rng.normal(0, 0.01)) for e in range(1, epochs + 1)}
    stats = tuple(EpochStats(epoch=e, train_loss=1 - v, train_accuracy=v, val_accuracy=v, penalty=0.3, lr=1e-3,
                             seconds=12.5) for e, v in curve.items())
    best = max(curve, key=curve.get)
    result = TrialResult(val_accuracy=curve[best], best_epoch=best, test_accuracy=curve[best] - 0.01,
                         head_similarity=0.2, curves=stats, n_params=22_000_000, n_trainable=11_000_000,
                         wall_time=400.0, device="cuda", images_per_second=5000.0)
    run = RunConfig()
    attrs = {  # ablate.study._run_trial, then ablate.study._record
        "config": run.model_dump(mode="json"), "config_hash": config_hash(run), "seed": 0, "arm_kind": "fmce",
        "versions": {"ablate": ablate.__version__, "torch": torch.__version__, "timm": timm.__version__},
        "val_accuracy": result.val_accuracy, "test_accuracy": result.test_accuracy, "best_epoch": result.best_epoch,
        "head_similarity": result.head_similarity, "curves": result.curves_dict(), "n_params": result.n_params,
        "n_trainable": result.n_trainable, "wall_time": result.wall_time, "device": result.device,
        "images_per_second": result.images_per_second,
    }
    return curve, attrs


def _filled_study_file(size: int, epochs: int, seed: int) -> Path:
    """An SQLite file holding one study of ``size`` finished trials, made once and cached.

    Optuna's ``add_trials`` writes row by row through its ORM: about 0.1 s a trial here
    (100 s for 1,000), so the filled file is kept under ``$ABLATE_CACHE`` (default
    ``~/.cache/ablate``) and copied for every run. Every trial ran all its epochs, the
    most rows a study of that size can hold: an upper bound on the overhead.
    """
    import numpy as np
    import optuna
    from optuna.distributions import CategoricalDistribution

    from ablate.study import open_storage, search_study

    home = Path(os.environ.get("ABLATE_CACHE", Path.home() / ".cache" / "ablate"))
    path = home / f"bench-optuna{optuna.__version__}-{size}trials-{epochs}epochs-seed{seed}-v{OPTUNA_CACHE_VERSION}.db"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = _optuna_study_config()
    dists = _distributions(cfg)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        study = search_study(cfg, open_storage(f"sqlite:///{tmp}/filled.db"))
        trials = []
        for _ in range(size):
            curve, attrs = _trial_record(rng, epochs)
            params = {p: d.choices[rng.integers(len(d.choices))] if isinstance(d, CategoricalDistribution)
                      else float(np.exp(rng.uniform(np.log(d.low), np.log(d.high)))) if d.log
                      else float(rng.uniform(d.low, d.high)) for p, d in dists.items()}
            trials.append(optuna.create_trial(params=params, distributions=dists, value=max(curve.values()),
                                              intermediate_values=curve, user_attrs=attrs))
        study.add_trials(trials)
        os.replace(Path(tmp) / "filled.db", path)  # atomic: a killed bench leaves no half file
    return path


def optuna_trial_cost(size: int, trials: int, folder: Path, *, epochs: int = OPTUNA_EPOCHS, seed: int = 0) -> OptunaCost:
    """Median cost of Optuna's calls in ``trials`` trials run on a study of ``size`` finished trials.

    One untimed trial runs first: a fresh process reads the whole study into Optuna's cache on
    its first ask (2.8 s at 1,000 trials here), once, not per trial.
    """
    import numpy as np
    import optuna

    from ablate.config import Choices
    from ablate.study import open_storage, search_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = folder / f"optuna-{size}.db"
    shutil.copyfile(_filled_study_file(size, epochs, seed), db)
    cfg = _optuna_study_config()
    study = search_study(cfg, open_storage(f"sqlite:///{db}"))
    rng = np.random.default_rng(seed + 1)
    parts = []
    for i in range(trials + 1):
        curve, attrs = _trial_record(rng, epochs)
        t0 = time.perf_counter()
        trial = study.ask()
        for path, dim in cfg.search.space.items():
            if isinstance(dim, Choices):
                trial.suggest_categorical(path, dim.choices)
            else:
                trial.suggest_float(path, dim.low, dim.high, log=dim.log)
        t1 = time.perf_counter()
        for epoch, value in curve.items():
            trial.report(value, epoch)
            trial.should_prune()  # always run to the end: the same work in every trial
        t2 = time.perf_counter()
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        t3 = time.perf_counter()
        study.tell(trial, max(curve.values()))
        t4 = time.perf_counter()
        if i > 0:
            parts.append((t4 - t0, t1 - t0, t2 - t1, t3 - t2, t4 - t3))
    total, ask, report, user, tell = (statistics.median(col) for col in zip(*parts))
    return OptunaCost(size, total, ask, report, user, tell, user_attrs_set=len(attrs))


# ---------------------------------------------------------------------------------------------
# Output


def _passes(name: str, value: float) -> bool:
    op, bound = TARGETS[name]
    return value >= bound if op == ">=" else value <= bound


def bench_json(result: BenchResult) -> dict[str, Any]:
    """Every figure, the options that produced them and the versions, as one JSON-ready dict."""
    opts = result.options
    summary = result.summary()
    judged = {**summary, "data_wait_fraction": result.data_wait_fraction}
    out: dict[str, Any] = {
        **judged,
        **result.environment,
        "backbone": opts.backbone,
        "image_size": opts.image_size,
        "batch_size": opts.batch_size,
        "timed_steps": opts.steps,
        "block_steps": opts.block_steps,
        "warmup_steps": opts.warmup,
        "images_per_second": {k: {"ours": r.ours, "bare": r.bare} for k, r in result.rates.items()},
        "ours_over_bare": {k: r.ours_over_bare for k, r in result.rates.items()},
        "data_images_per_second": result.data_images_per_second,
        "data_ms_per_step": 1000 * opts.batch_size / result.data_images_per_second,
        "step_ms": {k: 1000 * opts.batch_size / r.ours for k, r in result.rates.items()},
        "targets": {k: {"target": f"{op} {bound}", "value": judged[k], "pass": _passes(k, judged[k])}
                    for k, (op, bound) in TARGETS.items() if k in judged},
        "models": list(opts.models),
        **_fused_json(result),
        **_precision_json(result),
        "compile": opts.compile,
        "compiled": None,
        "optuna_seconds_per_trial": None,
        "optuna_overhead": None,
    }
    if result.compiled is not None:
        out["compiled"] = {
            "images_per_second": {k: {"ours": r.ours, "bare": r.bare} for k, r in result.compiled.items()},
            "ours_over_bare": {k: r.ours_over_bare for k, r in result.compiled.items()},
            **result.summary(result.compiled),
        }
    if result.optuna:
        first = result.optuna[0]
        out["optuna_seconds_per_trial"] = first.seconds_per_trial
        out["optuna_overhead"] = {
            "storage": "sqlite", "sampler": "TPESampler", "pruner": "MedianPruner", "params": 4,
            "epochs": OPTUNA_EPOCHS, "user_attrs": first.user_attrs_set, "timed_trials": opts.optuna_trials,
            "seconds_per_trial": {str(c.trials_before): c.seconds_per_trial for c in result.optuna},
            "parts": {str(c.trials_before): {"ask": c.ask, "report": c.report, "user_attrs": c.user_attrs,
                                             "tell": c.tell} for c in result.optuna},
        }
    return out


def _precision_json(result: BenchResult) -> dict[str, Any]:
    """``--compare-precision``: the single head's ablate loop at fp32 and at bf16, same rounds."""
    if result.other_precision is None or "single" not in result.rates:
        return {"precision_compare": None}
    rates = {result.precision: result.rates["single"].ours, result.other_precision[0]: result.other_precision[1]}
    return {"precision_compare": {"images_per_second": rates, "bf16_over_fp32": rates["bf16"] / rates["fp32"]}}


def _fused_json(result: BenchResult) -> dict[str, Any]:
    """The fused figures (None without ``--fuse``). ``fused_step_ms`` is one fused step, which
    advances every seed by one step: each seed's step time when fused."""
    fused, b = result.fused, result.options.batch_size
    if fused is None:
        return {"fuse": None, "fused_images_per_second": None, "fused_over_single": None,
                "fused_step_ms": None, "fused_ms_per_seed_step": None, "single_step_ms": None, "fused_compiled": None}
    single = result.rates[fused.model].ours
    return {
        "fuse": fused.k,
        "fused_model": fused.model,
        "fused_images_per_second": fused.images_per_second,
        "fused_over_single": result.fused_over_single,
        "fused_step_ms": 1000 * fused.k * b / fused.images_per_second,
        "fused_ms_per_seed_step": 1000 * b / fused.images_per_second,
        "single_step_ms": 1000 * b / single,
        "fused_compiled": {mode: {"images_per_second": c.images_per_second, "over_single": c.images_per_second / single,
                                  "over_eager": c.images_per_second / fused.images_per_second,
                                  "compile_seconds": c.compile_seconds, "cudagraph_skips": c.cudagraph_skips,
                                  "graph_replays": c.graph_replays,
                                  "graphs_replayed": None if c.graph_replays is None else c.graph_replays > 0}
                           for mode, c in fused.compiled.items()} or None,
    }


def bench_table(result: BenchResult) -> Table:
    """The figures as one rich table, with the targets and whether each is met."""
    from rich.table import Table

    opts, env = result.options, result.environment
    table = Table(title=f"ablate bench: {opts.backbone}, {opts.image_size} px, batch {opts.batch_size}, "
                        f"{env['device_name']} ({env['device']}, {env['threads']} threads)",
                  caption=f"dual: DueHeadNet; medians over {opts.steps // opts.block_steps} alternating blocks of {opts.block_steps} "
                          f"steps after {opts.warmup} warm-up steps; {result.precision}; torch {env['torch']}, timm {env['timm']}, "
                          f"optuna {env['optuna']}; ablate {env['git_commit'][:12]}")
    for col in ("figure", "value", "target", ""):
        table.add_column(col, justify="left" if col == "figure" else "right")

    def judged(label: str, name: str, value: float, text: str | None = None) -> None:
        op, bound = TARGETS[name]
        verdict = "[green]pass[/]" if _passes(name, value) else "[red]fail[/]"
        table.add_row(label, text or f"{value:.4f}", f"{op.replace('>=', '≥').replace('<=', '≤')} {bound:g}", verdict)

    def loops(rates: dict[str, LoopRates], prefix: str = "") -> None:
        for name, r in rates.items():
            label = prefix + MODELS[name][0]
            table.add_row(f"{label}: ablate loop", f"{r.ours:,.1f} img/s")
            table.add_row(f"{label}: bare loop", f"{r.bare:,.1f} img/s")
            if name == "single" and not prefix:
                judged(f"{label}: ablate / bare", "loop_over_bare", r.ours_over_bare)
            else:
                table.add_row(f"{label}: ablate / bare", f"{r.ours_over_bare:.4f}")
        table.add_section()

    loops(result.rates)
    summary = result.summary()
    for name, label in (("dual_frozen", "model1 frozen"), ("dual_trained", "both trained")):
        if f"{name}_over_single" in summary:
            judged(f"step time, {label} / single", f"{name}_over_single", summary[f"{name}_over_single"])
    table.add_row("producing a batch: cut, augment, normalise", f"{1000 * opts.batch_size / result.data_images_per_second:.2f} ms")
    if "single" in result.rates:
        judged("waiting for data: share of a step", "data_wait_fraction", result.data_wait_fraction)
    if result.fused is not None:
        table.add_section()
        fused, label = _fused_json(result), MODELS[result.fused.model][0]
        table.add_row(f"{fused['fuse']} seeds fused, {label}: ablate loop", f"{fused['fused_images_per_second']:,.1f} img/s")
        table.add_row("  fused / one seed alone (aggregate images/s)", f"{fused['fused_over_single']:.4f}")
        table.add_row("  step time: fused (all seeds) / one seed alone",
                      f"{fused['fused_step_ms']:.1f} / {fused['single_step_ms']:.1f} ms")
        for mode, c in (fused["fused_compiled"] or {}).items():
            graphs = "" if c["graphs_replayed"] is None else f", CUDA graphs {'replayed' if c['graphs_replayed'] else 'NOT replayed'}"
            table.add_row(f"  compiled ({mode}): fused / one seed alone",
                          f"{c['over_single']:.4f} (compile {c['compile_seconds']:.0f} s{graphs})")
    compare = _precision_json(result)["precision_compare"]
    if compare is not None:
        table.add_section()
        for name, rate in compare["images_per_second"].items():
            table.add_row(f"single-head ablate loop at {name}", f"{rate:,.1f} img/s")
        table.add_row("  bf16 / fp32 (same rounds)", f"{compare['bf16_over_fp32']:.4f}")
    if result.compiled is not None:
        table.add_section()
        loops(result.compiled, "compiled ")
        for name, value in result.summary(result.compiled).items():
            if name != "loop_over_bare":
                table.add_row(f"compiled step time, {name.removesuffix('_over_single').replace('_', ' ')} / single", f"{value:.4f}")
    if result.optuna:
        table.add_section()
        for c in result.optuna:
            table.add_row(f"Optuna per trial, in a study of {c.trials_before} trials", f"{1000 * c.seconds_per_trial:.0f} ms")
            table.add_row(f"  ask + {OPTUNA_EPOCHS} reports + attrs + tell",
                          f"{1000 * c.ask:.0f}+{1000 * c.report:.0f}+{1000 * c.user_attrs:.0f}+{1000 * c.tell:.0f}")
    return table


def pruning_pays(study_file: Path, folder: Path, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run a study's search twice, with its pruner and with none, the same trials otherwise.

    Returns, per variant: finished trials, pruned trials, epochs trained (reported epochs over
    all trials, the cost of a search) and the best validation accuracy reached.
    """
    from ablate.config import load_study
    from ablate.study import resolve_paths, run_search

    base = load_study(study_file)
    out: dict[str, Any] = {"study": str(study_file), "n_trials": base.search.n_trials, "epochs_per_trial": base.train.epochs}
    for label, pruner in ((base.search.pruner.name, base.search.pruner), ("none", base.search.pruner.model_copy(update={"name": "none"}))):
        cfg = base.model_copy(update={
            "name": f"{base.name}-pruner-{label}",
            "storage": None,
            "search": base.search.model_copy(update={"pruner": pruner}),
        })
        # The study file's folder for data roots and provenance; a throw-away storage.
        paths = replace(resolve_paths(cfg, study_file), storage=f"sqlite:///{folder / (cfg.name + '.db')}",
                        run_dir=folder / cfg.name)
        if log:
            log(f"pruning: running {cfg.name} ({cfg.search.n_trials} trials)")
        started = time.perf_counter()
        trials = run_search(cfg, paths).get_trials(deepcopy=False)
        out[label] = {
            "finished": sum(t.state.is_finished() and t.state.name != "FAIL" for t in trials),
            "pruned": sum(t.state.name == "PRUNED" for t in trials),
            "epochs": sum(len(t.intermediate_values) for t in trials),
            "best_val_accuracy": max((t.value for t in trials if t.state.name == "COMPLETE"), default=float("nan")),
            "minutes": round((time.perf_counter() - started) / 60, 2),
        }
    return out


def main(args: argparse.Namespace) -> int:
    """``ablate bench``: measure, then print the table (or, with ``--json``, one JSON object)."""
    from rich.console import Console

    err = Console(stderr=True)
    if getattr(args, "pruning", None) is not None:
        with tempfile.TemporaryDirectory() as tmp:
            result = pruning_pays(args.pruning, Path(tmp), log=lambda text: err.print(text, highlight=False))
        if getattr(args, "json", False):
            print(json.dumps(result, indent=2))
            return 0
        from rich.table import Table

        table = Table(title=f"pruning on {args.pruning}: {result['n_trials']} trials of {result['epochs_per_trial']} epochs")
        for col in ("pruner", "finished", "pruned", "epochs trained", "best val acc", "minutes"):
            table.add_column(col)
        for label in (k for k in result if isinstance(result[k], dict)):
            r = result[label]
            table.add_row(label, str(r["finished"]), str(r["pruned"]), str(r["epochs"]), f"{r['best_val_accuracy']:.4f}", f"{r['minutes']:.1f}")
        Console().print(table)
        return 0
    result = run_bench(options_from_args(args), log=lambda text: err.print(text, highlight=False))
    if getattr(args, "json", False):
        print(json.dumps(bench_json(result), indent=2))
    else:
        Console().print(bench_table(result))
    return 0


def _cli(argv: list[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="python -m ablate.bench", description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    try:
        return main(args)
    except AblateError as exc:
        print(f"ablate bench: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(_cli())
