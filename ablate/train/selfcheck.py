"""Is fused training right here? One step of 2 seeds fused against the same 2 seeds alone.

Fused training (:mod:`ablate.train.fused`) runs K seeds as one vmapped model. On a device it
has not run on, in a precision it has not run in, it may fail outright (``vmap`` over
BatchNorm with bf16 input failed before ``FusedModel`` computed BatchNorm in float32) or, worse,
compute something else. :func:`fusion_ok` is the study's gate: before a worker fuses repeat
cells it asks, and with ``False`` it trains one seed at a time and records the reason.

The check (:func:`check_fused_step`): the run's model, built for 2 seeds, takes one training
step (forward, loss, backward, AdamW) on the same batch, fused and each seed alone, on the
run's device and in its precision, through the training loop itself; each seed's loss, every
gradient and every BatchNorm buffer must agree within :data:`TOLERANCES`. A seed given another
seed's batch, gradient or statistics is off by its own size, far outside any of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from ablate.config import RunConfig, with_overrides
from ablate.train.device import resolve_device, resolve_precision
from ablate.train.fused import FusedLearner
from ablate.train.lone import LoneLearner
from ablate.train.loop import EpochSums, Learner, seeded_models, train_epoch

__all__ = ["Tolerance", "TOLERANCES", "FusionCheck", "FUSION_CHECKS", "check_fused_step", "fusion_ok", "numeric_format"]


@dataclass(frozen=True)
class Tolerance:
    """|fused - lone| <= rtol * |lone| + atol * max |lone| over the tensor, element by element.

    The absolute part scales with the tensor's largest value: a gradient element is a sum over
    the batch and every position, taken in another order by the grouped (vmapped) convolution,
    so its rounding error follows the tensor's magnitudes, not its own value (which may cancel
    to near zero).
    """

    rtol: float
    atol: float


# By the number format convolutions run in (:func:`numeric_format`). fp32: tests/test_fused.py's
# tolerance, measured on the CPU (seresnet18: at most 7.5e-6 of a tensor's largest gradient
# beyond rtol). bf16: seresnet18 at 16 px with bf16 activations, fused against alone, on the
# CPU: gradients within 0.018 of their tensor's largest value, logits within 0.007
# (tests/test_fused.py, test_fused_batchnorm_takes_bf16_activations). tf32 (CUDA's default for
# float32 convolutions: 10 mantissa bits against bf16's 7) is set between the two, unmeasured
# until a GPU run reports its worst errors (scripts/gpu-check.sh, step gate).
TOLERANCES = {
    "fp32": Tolerance(rtol=1e-4, atol=1e-5),
    "tf32": Tolerance(rtol=1e-2, atol=1e-2),
    "bf16": Tolerance(rtol=5e-2, atol=5e-2),
}


@dataclass(frozen=True)
class FusionCheck:
    """The outcome of :func:`check_fused_step`.

    ``worst``: per quantity (``loss``, ``gradients``, ``buffers``), the largest error over its
    tolerance (1.0 is at the bound; the check passes when every one is at most 1), and
    ``where``: the tensor it was found in.
    """

    ok: bool
    device: str
    torch: str
    precision: str
    numbers: str  # the format convolutions ran in: fp32, tf32 or bf16
    tolerance: Tolerance
    worst: dict[str, float]
    where: dict[str, str]
    reason: str  # one line, for a log and a trial's attributes

    def as_dict(self) -> dict:
        return {"ok": self.ok, "device": self.device, "torch": self.torch, "precision": self.precision,
                "numbers": self.numbers, "rtol": self.tolerance.rtol, "atol": self.tolerance.atol,
                "worst": self.worst, "where": self.where, "reason": self.reason}


def numeric_format(precision: str, device: torch.device) -> str:
    """What float32 convolutions really run in: tf32 on CUDA where cuDNN may use it (torch's
    default), else the precision itself."""
    if precision == "fp32" and device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return precision


def _device_name(device: torch.device) -> str:
    return f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)


def check_fused_step(cfg: RunConfig, *, batch_size: int = 8) -> FusionCheck:
    """One training step of ``cfg``'s model for 2 seeds, fused and alone, compared.

    The run's device, precision, image size and model (kind, backbone, head, frozen model1,
    FMCE penalty) are used; model1 is built at random (its weights do not change the
    arithmetic), the batch is random, and ``train.compile`` is left off: the eager step is
    checked, and with ``train.compile`` on the reason says the compiled one is not.

    Raises:
        whatever fused training raises here (the caller, :func:`fusion_ok`, says why it failed).
    """
    cfg = resolve_precision(cfg)
    device = resolve_device(cfg.train.device)
    unchecked = _compile_unchecked(cfg)
    changes = {"train.compile": False}
    if cfg.model.kind == "dual":
        changes.update({"model.model1.init": "random", "model.model1.weights": None})
    cfg = with_overrides(cfg, changes, "fusion check")
    cfgs = [with_overrides(cfg, {"train.seed": s, "train.init_seed": s}, "fusion check") for s in (0, 1)]
    num_classes = 10
    models = seeded_models(cfgs, num_classes, device)
    fused = FusedLearner(cfgs, models, device)  # stacks copies of the models' tensors
    lone = [LoneLearner(c, m, device) for c, m in zip(cfgs, models)]
    gen = torch.Generator().manual_seed(0)
    size = cfg.dataset.image_size
    x = torch.randn(2, batch_size, 3, size, size, generator=gen).to(device)  # (K, B, 3, S, S)
    y = torch.randint(0, num_classes, (2, batch_size), generator=gen).to(device)
    fused_loss = _one_step(fused, [(x, y)], (2,))
    lone_loss = [_one_step(learner, [(x[k], y[k])], ())[0] for k, learner in enumerate(lone)]
    numbers = numeric_format(cfg.train.precision, device)
    tol = TOLERANCES[numbers]
    worst: dict[str, float] = {}
    where: dict[str, str] = {}
    grads = {n: p.grad for n, p in fused.model.stacked.named_parameters() if p.grad is not None}
    for k, learner in enumerate(lone):
        _worse(worst, where, "loss", f"seed {k}", _error(torch.tensor(fused_loss[k]), torch.tensor(lone_loss[k]), tol))
        for name, p in learner.model.named_parameters():
            if p.grad is not None:
                _worse(worst, where, "gradients", f"{name} of seed {k}", _error(grads[name][k], p.grad, tol))
        state = fused.seed_state(k)
        for name, b in learner.model.named_buffers():
            _worse(worst, where, "buffers", f"{name} of seed {k}", _error(state[name], b, tol))
    ok = all(v <= 1.0 for v in worst.values())
    return FusionCheck(ok, _device_name(device), torch.__version__, cfg.train.precision, numbers, tol, worst, where,
                       _reason(ok, _device_name(device), cfg.train.precision, numbers, tol, worst, where) + unchecked)


def _compile_unchecked(cfg: RunConfig) -> str:
    """What a reason adds when the run compiles its step: the check ran the eager one only
    (compiling it too would cost minutes a check, the compile's own, on a GPU)."""
    return "; the compiled step (train.compile) is not checked, only the eager one" if cfg.train.compile else ""


def _one_step(learner: Learner, batches: Iterable, shape: tuple[int, ...]) -> list[float]:
    """One step of ``learner`` on ``batches`` (one batch); each seed's loss."""
    sums = EpochSums.zeros(shape, learner.device)
    train_epoch(learner.step_model, learner.opt, batches, learner.objective, learner.numerics, sums)
    return sums.means()[0]


def _error(fused: torch.Tensor, lone: torch.Tensor, tol: Tolerance) -> float:
    """The largest |fused - lone| over its bound (``tol``), element by element."""
    f, lo = fused.detach().double().cpu(), lone.detach().double().cpu()
    bound = tol.rtol * lo.abs() + tol.atol * lo.abs().max() + 1e-30
    return float(((f - lo).abs() / bound).max()) if lo.numel() else 0.0


def _worse(worst: dict[str, float], where: dict[str, str], what: str, name: str, error: float) -> None:
    if error >= worst.get(what, -1.0) or error != error:  # NaN is the worst
        worst[what], where[what] = error, name


def _reason(ok: bool, device: str, precision: str, numbers: str, tol: Tolerance, worst: dict[str, float],
            where: dict[str, str]) -> str:
    head = f"fusion self-check on {device}, torch {torch.__version__}, {precision}"
    if ok:
        return (f"{head}: 2 seeds fused match them alone (worst error {max(worst.values()):.2g} of the {numbers} "
                f"tolerance)")
    what = max(worst, key=lambda w: worst[w] if worst[w] == worst[w] else float("inf"))
    return (f"{head}: {what} of {where[what]} off by {worst[what]:.3g} times the {numbers} tolerance "
            f"(rtol {tol.rtol:g}, atol {tol.atol:g} of the tensor's largest value)")


# fusion_ok's answers in this process, by what decides whether the checked step is the one
# used: device, torch version, precision, number format, model (kind, backbone, head, frozen
# model1, FMCE penalty on), image size and train.compile (which the reason mentions).
FUSION_CHECKS: dict[tuple, tuple[bool, str]] = {}


def fusion_ok(cfg: RunConfig) -> tuple[bool, str]:
    """Whether seeds of ``cfg`` may train fused on its device, and why, in one line.

    Runs :func:`check_fused_step` once per device, torch version, precision, model (kind,
    backbone, head, frozen model1, FMCE penalty), image size and ``train.compile`` in this
    process and remembers the answer, except an out-of-memory error: that may pass (another
    run's tensors freed), so the next call checks again. Never raises for what fusion does: an
    ensemble, a check that fails or an error during it (out of memory, an operator vmap cannot
    batch) is ``(False, reason)``, and the caller trains one seed at a time.
    """
    try:
        run = resolve_precision(cfg)
        device = resolve_device(run.train.device)
    except Exception as exc:  # the run itself cannot train here: not fusion's to say
        return False, f"fusion not checked: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if run.model.kind == "ensemble":
        return False, "fusion unavailable: model.kind ensemble trains its two members one after the other"
    key = (_device_name(device), torch.__version__, run.train.precision, numeric_format(run.train.precision, device),
           run.model.kind, run.model.backbone, run.model.head, run.model.model1.freeze, run.model.constraint.on,
           run.dataset.image_size, run.train.compile)
    if key in FUSION_CHECKS:
        return FUSION_CHECKS[key]
    answer, lasting = _checked(run, key[0])
    if lasting:
        FUSION_CHECKS[key] = answer
    return answer


def _checked(run: RunConfig, device: str) -> tuple[tuple[bool, str], bool]:
    """The check's answer, and whether it lasts (False for an out-of-memory error)."""
    try:
        with _cuda_memory_released(device):
            check = check_fused_step(run)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        transient = isinstance(exc, torch.OutOfMemoryError)
        return (False, (f"fusion unavailable on {device}, torch {torch.__version__}, {run.train.precision}: "
                        f"{type(exc).__name__}: {first}" + ("; checked again next time" if transient else "")
                        + _compile_unchecked(run))), not transient
    return (check.ok, check.reason), True


@contextlib.contextmanager
def _cuda_memory_released(device: str):
    """The check's tensors given back to the CUDA allocator's cache afterwards, error or not."""
    try:
        yield
    finally:
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
