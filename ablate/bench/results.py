"""The figures of one ``ablate bench`` run, as immutable records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ablate.bench.options import BenchOptions

__all__ = ["LoopRates", "OptunaCost", "CompiledFused", "FusedRates", "BenchResult"]


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
    """The compiled fused step in one ``torch.compile`` mode, timed in rounds of its own against
    the eager fused step (``eager_images_per_second``, the same rounds); or the error it
    ended with (``error``: then every figure is NaN)."""

    images_per_second: float  # all K seeds together
    compile_seconds: float  # first call (compilation, CUDA graph recording) less a timed block
    cudagraph_skips: int  # inductor's count of graphs it declined to capture (e.g. mutated inputs)
    graph_replays: int | None  # CUDA graph tree replays in the timed blocks (0: none); None off CUDA
    eager_images_per_second: float | None = None  # the eager fused step in the same rounds
    error: str | None = None

    @classmethod
    def failed(cls, error: str) -> CompiledFused:
        nan = float("nan")
        return cls(nan, nan, 0, None, None, error)


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

