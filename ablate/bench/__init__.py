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
- with ``--fuse K``: K seeds of one model trained as one fused model (:mod:`ablate.train.fused`:
  stacked parameters, one vmapped step, each seed its own batch), timed in the same rounds as
  the single seed under ablate's loop; with ``--compile`` too, the compiled fused step in each
  of ``--compile-modes``, each in rounds of its own against the eager fused step, with its
  compile time and, on CUDA, how many CUDA graph replays its timed blocks made (0 when none);
- Optuna's own cost per trial on SQLite (ask with TPE over 4 parameters, a report and a
  median-pruner check per epoch, the user attributes a trial records, tell), in a study that
  already holds 100 (and, if asked, 1,000) finished trials.

Procedure: every measurement is a block of ``block_steps`` steps. After untimed warm-up blocks,
each round runs one block of every measurement, in an order reversed every other round, and
each figure is the median over rounds of the per-block rate. Noise on a shared machine (a
second job, clocks that drift) then falls on ablate's loop and the bare loop alike. Every
ratio is a ratio of two printed medians, so it can be checked from the printed throughputs.
On CUDA the device is synchronised around every timed block. Every loop runs at one precision,
``--precision``, with the numerics a training run at that precision has
(:func:`ablate.train.numerics`: bf16 is autocast; channels_last with bf16 and on CUDA).

The phases (eager loops, each compile mode, compiled loops, Optuna) run one after the other;
``--json-out FILE`` writes the JSON so far after each, so a run cut short keeps what it
measured, and a compile mode that fails is recorded with its error while the others run.

Speed is measured here and printed, never asserted by a test (STYLE.md, practice 10).

Modules: :mod:`~ablate.bench.options` (flags, defaults, targets), :mod:`~ablate.bench.results`
(the records), :mod:`~ablate.bench.loops` (the interleaved timing loops, on ablate's training
loop), :mod:`~ablate.bench.optuna_cost`, :mod:`~ablate.bench.measure` (``run_bench``),
:mod:`~ablate.bench.output` (JSON and table), :mod:`~ablate.bench.pruning` (``--pruning``),
:mod:`~ablate.bench.command` (``main``).

Importing this package imports neither torch nor Optuna: ``ablate``'s command line builds its
parser, :func:`add_arguments` included, for every command, and ``import torch`` alone takes
2.4 s on the 2-core development machine. ``run_bench`` and ``optuna_trial_cost`` load their
modules on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from ablate.bench.command import main
from ablate.bench.options import MODELS, TARGETS, BenchOptions, add_arguments, options_from_args
from ablate.bench.output import bench_json, bench_table
from ablate.bench.results import BenchResult, CompiledFused, FusedRates, LoopRates, OptunaCost

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

_MEASURING = {"run_bench": "ablate.bench.measure", "optuna_trial_cost": "ablate.bench.optuna_cost"}


def __getattr__(name: str) -> Any:
    """``run_bench`` and ``optuna_trial_cost``, imported on first use (they import torch and Optuna)."""
    if name in _MEASURING:
        return getattr(importlib.import_module(_MEASURING[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
