"""The options of ``ablate bench``: its flags, their defaults by device, and what it judges.

No torch here: ``ablate``'s command line builds its parser, :func:`add_arguments` included,
for every command.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ablate.errors import ConfigError

__all__ = ["MODELS", "TARGETS", "OPTUNA_EPOCHS", "BenchOptions", "add_arguments", "options_from_args",
           "resolved_options"]

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


# Optuna: the workload of one trial as ablate runs it (ablate.study.trial: start_trial and record_result).
OPTUNA_SIZES = (100,)
OPTUNA_EPOCHS = 30  # report + should_prune once per epoch; train.epochs' default


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
    skip_compiled_loops: bool = False  # with --compile and --fuse: compile the fused step alone
    seed: int = 0
    models: tuple[str, ...] = tuple(MODELS)  # which of MODELS to time, alone
    fuse: int = 0  # K seeds fused; 0: no fused measurement
    fuse_model: str = "single"
    precision: str = "auto"
    compile_modes: tuple[str, ...] | None = None  # for the fused step; None: by device
    compare_precision: bool = False  # also time the single head's ablate loop at the other precision


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
    parser.add_argument("--skip-compiled-loops", action="store_true",
                        help="with --compile and --fuse: compile only the fused step, not the models alone")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--json-out", type=Path, default=None, metavar="FILE",
                        help="also write the JSON so far to FILE after every phase (the eager loops, each compile "
                             "mode of the fused step, the compiled loops, Optuna), so a run cut short keeps its figures")
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
        skip_compiled_loops=bool(getattr(args, "skip_compiled_loops", False)),
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


def resolved_options(opts: BenchOptions, device_type: str) -> BenchOptions:
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
