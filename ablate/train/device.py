"""Where a run computes and in what numbers: its device, the cores it may use, its numerics.

:func:`numerics` is the one place where a precision name is resolved and the memory layout
chosen, for training, fused training and ``ablate bench`` alike; :func:`resolve_precision` is
the one place where a run's ``train.precision: auto`` is made concrete.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ablate.config import RunConfig
from ablate.errors import ConfigError

__all__ = ["available_cores", "resolve_device", "cpu_has_bf16", "Numerics", "numerics", "resolve_precision"]


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else the CPU.

    Raises:
        ConfigError: a name torch does not know (``gpu``), CUDA asked for but absent, or a CUDA
            index past the devices there are.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"device: {name!r} is not a device name (expected auto, cpu, cuda or cuda:N; "
                          f"torch says: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} asked for, but no CUDA device is available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device: {name!r} asked for, but there are {torch.cuda.device_count()} CUDA devices "
                          f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
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


@dataclass(frozen=True)
class Numerics:
    """A resolved precision and the memory layout that goes with it.

    bf16 autocasts convolutions and matmuls; BatchNorm, the losses and the optimizer stay fp32.
    channels_last is what oneDNN and cuDNN want for bf16 convolutions: 1.26x -> 1.30x on a
    bf16 CPU (issue 11), and the CUDA default since the first GPU bench.
    """

    precision: str  # "fp32" or "bf16"
    channels_last: bool
    autocast: Callable[[], contextlib.AbstractContextManager]  # a fresh context for each use

    def for_model(self, model: nn.Module) -> nn.Module:
        """A plain model's weights in this layout (in place; returns the model)."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def for_batch(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) in this layout; (K, B, C, H, W) for K fused seeds unchanged.

        A fused batch is not laid out: vmap's convolution folds K into the channels,
        (B, K * C, H, W), with a contiguous copy whatever x's layout, so laying out each image
        first would be one more full copy a step, for nothing.
        """
        if not self.channels_last or x.dim() != 4:
            return x
        return x.contiguous(memory_format=torch.channels_last)


def numerics(precision: str, device: torch.device) -> Numerics:
    """The numerics of ``precision`` (``auto``, ``fp32`` or ``bf16``) on ``device``.

    ``auto`` is bf16 on CUDA with bf16 support and on CPUs with native bf16, else fp32. The
    layout is channels_last for bf16 and on CUDA, NCHW otherwise.

    Raises:
        ConfigError: an unknown name.
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"precision: expected auto, fp32 or bf16 (got {precision!r})")
    if precision == "auto" and device.type == "cuda":
        # bf16 where the card computes it natively: Ampere (compute capability 8) and later. Not
        # torch.cuda.is_bf16_supported(): it asks about the current device, not ``device``, and
        # by default counts emulation (True on a V100 or T4, where bf16 is slower than fp32).
        # A device not here is planned for as CUDA.
        precision = "bf16" if not torch.cuda.is_available() or torch.cuda.get_device_capability(device)[0] >= 8 \
            else "fp32"
    elif precision == "auto":
        precision = "bf16" if device.type == "cpu" and cpu_has_bf16() else "fp32"
    if precision == "bf16":
        return Numerics("bf16", True, lambda: torch.autocast(device.type, dtype=torch.bfloat16))
    return Numerics("fp32", device.type == "cuda", contextlib.nullcontext)


def resolve_precision(cfg: RunConfig) -> RunConfig:
    """``cfg`` with ``train.precision`` made concrete (fp32 or bf16) on its own ``train.device``.

    Raises:
        ConfigError: an unknown precision, or CUDA asked for but absent.
    """
    precision = numerics(cfg.train.precision, resolve_device(cfg.train.device)).precision
    if precision == cfg.train.precision:
        return cfg
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"precision": precision})})
