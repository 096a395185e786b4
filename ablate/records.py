"""Immutable records of what a training run produced (standard library only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["EpochStats", "Predictions", "TrialResult", "late_gain", "ensemble_members"]


def late_gain(values: list[float], members: int = 1) -> float:
    """Validation accuracy at the last epoch minus at epoch E - max(1, E // 4), E epochs a run.

    A run still climbing over the last quarter of its epochs was stopped too early. With
    ``members`` runs trained one after the other (an ensemble's curves are its members' in a
    row), the mean of the members' own gains: each member is a run of the arm's recipe, and the
    largest of two noisy gains would mark an ensemble "still rising" more often than the same
    recipe run alone. NaN with a single epoch.
    """
    if members > 1 and len(values) % members == 0 and values:
        size = len(values) // members
        gains = [late_gain(values[i * size:(i + 1) * size]) for i in range(members)]
        return sum(gains) / members
    k = max(1, len(values) // 4)
    return values[-1] - values[-1 - k] if len(values) > k else float("nan")


def ensemble_members(extras: dict) -> int:
    """How many members a run's curves hold one after the other (its ensemble's, else 1)."""
    return len((extras or {}).get("ensemble", {}).get("member_seeds", [])) or 1


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    train_loss: float
    train_accuracy: float
    val_accuracy: float
    penalty: float | None  # mean FMCE penalty over the epoch (DueHeadNet only)
    lr: float
    seconds: float


@dataclass(frozen=True)
class Predictions:
    """A run's prediction for every test example, in the order of the test split.

    ``example`` is the example's index in the whole data set (the same for every run tested on
    that split), ``label`` its class and ``predicted`` the class the best-epoch model gave it.
    """

    example: tuple[int, ...]
    label: tuple[int, ...]
    predicted: tuple[int, ...]

    def as_dict(self) -> dict[str, list[int]]:
        return {"example": list(self.example), "label": list(self.label), "predicted": list(self.predicted)}


@dataclass(frozen=True)
class TrialResult:
    """One finished run. Accuracies are fractions; ``val_accuracy`` is the best epoch's.

    ``test_accuracy`` is measured once, on the checkpoint of the best validation epoch:
    nothing is ever chosen on the test split.
    """

    val_accuracy: float
    best_epoch: int
    test_accuracy: float
    head_similarity: float | None  # mean cosine of the two heads' maps on the test split
    curves: tuple[EpochStats, ...]
    n_params: int
    n_trainable: int
    wall_time: float
    device: str
    images_per_second: float
    train_images: int = 0  # training images seen, stage 1 and ensemble members included
    n_test: int = 0  # test-split size: one test image is 100 / n_test points
    extras: dict = field(default_factory=dict)
    predictions: Predictions | None = None  # per test example (repeats store them for the report)

    @property
    def val_gain_last_quarter(self) -> float:
        """:func:`late_gain` of the validation curve (an ensemble: of each member's own)."""
        return late_gain([e.val_accuracy for e in self.curves], ensemble_members(self.extras))

    def curves_dict(self) -> list[dict]:
        return [asdict(e) for e in self.curves]
