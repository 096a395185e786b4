"""``run_bench(opts) -> BenchResult``: every measurement of ``ablate bench``, with the environment."""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import timm
import torch

import ablate
from ablate.bench.loops import measure_compiled_fused, measure_loops
from ablate.bench.optuna_cost import optuna_trial_cost
from ablate.bench.options import BenchOptions, resolved_options
from ablate.bench.results import BenchResult, CompiledFused
from ablate.models import check_backbone
from ablate.study import git_commit  # the commit as trials record it
from ablate.train import Numerics, available_cores, numerics, resolve_device

__all__ = ["run_bench"]


def run_bench(opts: BenchOptions, log: Callable[[str], None] | None = None,
              on_phase: Callable[[BenchResult], None] | None = None) -> BenchResult:
    """Measure everything ``opts`` asks for; see :mod:`ablate.bench` for the procedure.

    Every loop runs at ``opts.precision`` with the numerics a training run at that precision
    has (:func:`ablate.train.numerics`: precision and memory layout alike). The phases run one
    after the other: the eager loops (the fused step included), each compile mode of the fused
    step in rounds of its own, the compiled loops, Optuna's cost; ``on_phase`` gets the result
    so far after each, so that a later phase that fails or is cut short loses no figure of an
    earlier one. A compile mode that raises is recorded with its error and the rest go on.

    Raises:
        ConfigError: CUDA asked for but absent.
        ModelError: unknown backbone.
    """
    device = resolve_device(opts.device)
    check_backbone(opts.backbone)
    run_numerics = numerics(opts.precision, device)
    opts = resolved_options(opts, device.type)
    _set_threads(available_cores())
    log = log or (lambda text: None)
    on_phase = on_phase or (lambda result: None)
    rounds = opts.steps // opts.block_steps
    log(f"bench: {opts.backbone}, {opts.image_size} px, batch {opts.batch_size}, {device}: "
        f"{rounds} rounds of {opts.block_steps} steps after {opts.warmup} warm-up steps, "
        f"{len(opts.models)} models x 2 loops, {run_numerics.precision}"
        + (f", {opts.fuse} seeds fused" if opts.fuse else ""))

    eager = measure_loops(opts, device, run_numerics, compiled=False)
    result = BenchResult(opts, _environment(device, run_numerics), eager.rates, eager.data_images_per_second,
                         fused=eager.fused, precision=run_numerics.precision, other_precision=eager.other_precision)
    on_phase(result)
    for mode in opts.compile_modes if opts.fuse and opts.compile else ():
        log(f"bench: the fused step compiled ({mode})")
        result = replace(result, fused=replace(result.fused, compiled={
            **result.fused.compiled, mode: _compiled_fused(opts, device, run_numerics, mode, log)}))
        on_phase(result)
    if opts.compile and not opts.skip_compiled_loops:
        log("bench: torch.compile'd models")
        result = replace(result, compiled=measure_loops(opts, device, run_numerics, compiled=True).rates)
        on_phase(result)
    if not opts.skip_optuna:
        log(f"bench: Optuna overhead at {', '.join(map(str, opts.optuna_sizes))} trials")
        with tempfile.TemporaryDirectory(prefix="ablate-bench-") as tmp:
            costs = tuple(optuna_trial_cost(n, opts.optuna_trials, Path(tmp), seed=opts.seed)
                          for n in opts.optuna_sizes)
        result = replace(result, optuna=costs)
        on_phase(result)
    return result


def _compiled_fused(opts: BenchOptions, device: torch.device, run_numerics: Numerics, mode: str,
                    log: Callable[[str], None]) -> CompiledFused:
    """One compile mode of the fused step, or the error it ended with (compilers fail in ways of
    their own: the other modes and phases still run)."""
    try:
        return measure_compiled_fused(opts, device, run_numerics, mode)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        log(f"bench: the fused step compiled ({mode}) failed: {type(exc).__name__}: {first}")
        return CompiledFused.failed(f"{type(exc).__name__}: {first}")


def _set_threads(cores: int) -> None:
    """All the cores this process may use, unless the user fixed a thread count.

    One training per machine is what the bench measures; ``ABLATE_THREADS`` or
    ``OMP_NUM_THREADS`` (as ``ablate run`` workers set) take precedence.
    """
    threads = int(os.environ.get("ABLATE_THREADS", 0))
    if threads:
        torch.set_num_threads(threads)
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(cores)


def _environment(device: torch.device, run_numerics: Numerics) -> dict[str, Any]:
    on_cuda = device.type == "cuda"
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if on_cuda else _cpu_name(),
        "threads": torch.get_num_threads(),
        "precision": run_numerics.precision,
        "autocast": "bf16" if run_numerics.precision == "bf16" else None,
        "channels_last": run_numerics.channels_last,
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
