"""The interleaved timing loops of ``ablate bench``, built on the training loop itself.

Every model under test is an :class:`ablate.train.LoneLearner` (or, fused, an
:class:`ablate.train.FusedLearner`) made from a run config as a trial makes it: the same
numerics, layout, optimizer, objective and epoch function. Blocks of steps of every
measurement alternate, round by round (see :mod:`ablate.bench`).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import torch

from ablate.bench.options import MODELS, BenchOptions
from ablate.bench.results import CompiledFused, FusedRates, LoopRates
from ablate.config import DatasetConfig, ModelConfig, RunConfig, TrainConfig
from ablate.data import DeviceImages
from ablate.train import FusedLearner, Learner, LoneLearner, Numerics, seeded_models, train_step

__all__ = ["Measured", "measure_loops", "measure_compiled_fused"]

NUM_CLASSES = 10
Block = Callable[[], object]


@dataclass(frozen=True)
class Measured:
    """What one interleaved measurement produced."""

    rates: dict[str, LoopRates]  # by MODELS name
    data_images_per_second: float  # batches produced (cut, augment, normalise, layout) per second, x batch
    fused: FusedRates | None  # the fused seeds, unless compiled or no --fuse
    other_precision: tuple[str, float] | None  # (precision, single-head ablate loop img/s) with --compare-precision


def measure_loops(opts: BenchOptions, device: torch.device, numerics: Numerics, *, compiled: bool) -> Measured:
    """Every model of ``opts`` under ablate's loop and under the bare loop (``compiled``: torch.compile'd),
    batch production, and, eager only, the eager fused seeds and the other precision; all blocks
    interleaved. The compiled fused step is :func:`measure_compiled_fused`'s."""
    b = opts.batch_size
    data = _random_images(opts, device)
    gen = torch.Generator().manual_seed(opts.seed + 1)
    augment = DatasetConfig().augment
    x, y = next(data.batches(b, order=gen, augment=gen if augment else None))  # the bare loop's one batch
    x = numerics.for_batch(x)

    blocks: dict[str, Block] = {}
    learners = {name: _learner(opts, name, numerics.precision, device, compiled) for name in opts.models}
    for name, learner in learners.items():
        blocks[f"{name}/ours"] = partial(learner.train_epoch, [data])
        blocks[f"{name}/bare"] = partial(_bare_steps, learner, x, y, opts.block_steps)
    blocks["data"] = partial(_produce_batches, data, b, gen, augment, numerics)
    other = "fp32" if numerics.precision == "bf16" else "bf16"
    if opts.compare_precision and not compiled:  # the same single-head loop at the other precision
        blocks[f"single/ours@{other}"] = partial(_learner(opts, "single", other, device, False).train_epoch, [data])
    if opts.fuse and not compiled:
        blocks["fused/eager"] = partial(_fused_learner(opts, numerics.precision, device, None).train_epoch,
                                        [data] * opts.fuse)

    timing = _time_blocks(blocks, opts, device)
    ips = {k: statistics.median(b * opts.block_steps / t for t in v) for k, v in timing.seconds.items()}
    return Measured(
        rates={name: LoopRates(ours=ips[f"{name}/ours"], bare=ips[f"{name}/bare"]) for name in learners},
        data_images_per_second=ips["data"],
        fused=FusedRates(opts.fuse, opts.fuse_model, opts.fuse * ips["fused/eager"]) if "fused/eager" in ips else None,
        other_precision=(other, ips[f"single/ours@{other}"]) if f"single/ours@{other}" in ips else None,
    )


def measure_compiled_fused(opts: BenchOptions, device: torch.device, numerics: Numerics, mode: str) -> CompiledFused:
    """The fused step compiled in ``mode``, its blocks alternating with the eager fused step's.

    In rounds of its own, so that a mode that fails or runs long costs no other figure.
    """
    data = _random_images(opts, device)
    blocks: dict[str, Block] = {}
    for name, m in (("fused/eager", None), (f"fused/{mode}", mode)):
        blocks[name] = partial(_fused_learner(opts, numerics.precision, device, m).train_epoch, [data] * opts.fuse)
    timing = _time_blocks(blocks, opts, device)
    ips = {k: statistics.median(opts.batch_size * opts.block_steps / t for t in v) for k, v in timing.seconds.items()}
    block = f"fused/{mode}"
    compile_seconds = timing.first_call[block] - statistics.median(timing.seconds[block])
    replays = timing.replays.get(block, 0) if device.type == "cuda" else None
    return CompiledFused(opts.fuse * ips[block], compile_seconds, timing.skips.get(block, 0), replays,
                         eager_images_per_second=opts.fuse * ips["fused/eager"])


def _random_images(opts: BenchOptions, device: torch.device) -> DeviceImages:
    """Random uint8 images and labels on ``device``: one epoch is one block of steps."""
    gen = torch.Generator().manual_seed(opts.seed)
    n = opts.batch_size * opts.block_steps
    images = torch.randint(0, 256, (n, 3, opts.image_size, opts.image_size), dtype=torch.uint8, generator=gen)
    return DeviceImages(images, torch.randint(0, NUM_CLASSES, (n,), generator=gen), device)


def _run_config(opts: BenchOptions, model: str, precision: str, compiled: bool, seed: int) -> RunConfig:
    """The run a trial of ``model`` (a MODELS name) would train, at the bench's size and batch."""
    _, fields = MODELS[model]
    return RunConfig(dataset=DatasetConfig(image_size=opts.image_size),
                     train=TrainConfig(batch_size=opts.batch_size, precision=precision, seed=seed, compile=compiled),
                     model=ModelConfig(backbone=opts.backbone, **fields))


def _learner(opts: BenchOptions, model: str, precision: str, device: torch.device, compiled: bool) -> LoneLearner:
    cfg = _run_config(opts, model, precision, compiled, opts.seed)
    [built] = seeded_models([cfg], NUM_CLASSES, device)
    return LoneLearner(cfg, built, device)


def _fused_learner(opts: BenchOptions, precision: str, device: torch.device, mode: str | None) -> FusedLearner:
    """K models of ``opts.fuse_model`` (seeds seed..seed+K-1), each drawing its batches from its
    own generator, as ``ablate.train.train_fused`` trains them; ``mode``: torch.compile's, or eager."""
    cfgs = [_run_config(opts, opts.fuse_model, precision, mode is not None, opts.seed + k) for k in range(opts.fuse)]
    return FusedLearner(cfgs, seeded_models(cfgs, NUM_CLASSES, device), device, compile_mode=mode)


def _bare_steps(learner: Learner, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    """The ceiling: the same module, loss and optimizer on one batch already made."""
    learner.model.train()  # DueHeadNet keeps a frozen model1 in eval mode
    for _ in range(steps):
        train_step(learner.step_model, learner.opt, x, y, learner.objective, learner.numerics.autocast)


def _produce_batches(data: DeviceImages, batch_size: int, gen: torch.Generator, augment: bool,
                     numerics: Numerics) -> None:
    """What ablate's loop does before a step's forward: cut, augment, normalise, layout."""
    for x, _ in data.batches(batch_size, order=gen, augment=gen if augment else None, drop_last=True):
        numerics.for_batch(x)


# ---------------------------------------------------------------------------------------------
# Timing


@dataclass
class _Timing:
    """Seconds of every timed block, by block; and, from the warm-up, each block's first call and
    the graphs inductor declined to capture; CUDA graph replays in the timed blocks."""

    seconds: dict[str, list[float]]
    first_call: dict[str, float]
    skips: dict[str, int]
    replays: dict[str, int]


@dataclass
class _Replays:
    """CUDA graph tree replays, counted by the label of the block that runs."""

    label: str = ""
    counts: dict[str, int] = field(default_factory=dict)


def _time_blocks(blocks: dict[str, Block], opts: BenchOptions, device: torch.device) -> _Timing:
    """Untimed warm-up rounds (the first call of each block timed), then the timed rounds."""
    first_call: dict[str, float] = {}
    skips: dict[str, int] = {}
    with _counting_graph_replays(device.type == "cuda") as replays:
        for i in range(opts.warmup // opts.block_steps):
            for name, fn in blocks.items():
                replays.label = name
                before = _cudagraph_skips()
                if i == 0:
                    first_call[name] = _timed(fn, device)
                else:
                    fn()
                skips[name] = skips.get(name, 0) + _cudagraph_skips() - before
        replays.counts.clear()  # count the timed blocks only
        seconds = _alternate(blocks, opts.steps // opts.block_steps, device, replays)
    return _Timing(seconds, first_call, skips, replays.counts)


def _cudagraph_skips() -> int:
    """Inductor's running count of graphs it would not capture as CUDA graphs."""
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["cudagraph_skips"])


@contextlib.contextmanager
def _counting_graph_replays(on_cuda: bool) -> Iterator[_Replays]:
    """Counts, by the block label ``_alternate`` sets, CUDA graph tree replays (inductor's
    ``CUDAGraphTreeManager.execute_node``): the evidence that a reduce-overhead step really
    runs as graphs. Off CUDA, or if torch moved that method, nothing is counted."""
    replays = _Replays()
    manager = None
    if on_cuda:
        try:
            from torch._inductor.cudagraph_trees import CUDAGraphTreeManager as manager
        except ImportError:
            manager = None
    original = getattr(manager, "execute_node", None)
    if original is None:
        yield replays
        return

    def counting(self, *args, **kwargs):
        replays.counts[replays.label] = replays.counts.get(replays.label, 0) + 1
        return original(self, *args, **kwargs)

    manager.execute_node = counting
    try:
        yield replays
    finally:
        manager.execute_node = original


def _alternate(blocks: dict[str, Block], rounds: int, device: torch.device,
               replays: _Replays) -> dict[str, list[float]]:
    """Seconds of each block, once a round, in an order reversed every other round."""
    names = list(blocks)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            replays.label = name
            seconds[name].append(_timed(blocks[name], device))
    return seconds


def _timed(fn: Block, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start
