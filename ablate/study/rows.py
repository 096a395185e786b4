"""A finished repeat cell as a row of the results table (``results.csv``)."""

from __future__ import annotations

from typing import Any

from optuna.trial import FrozenTrial

from ablate.records import ensemble_members, late_gain
from ablate.study.cells import RepeatCell

__all__ = ["RESULT_EXTRAS", "result_row", "stored_late_gain"]

# What a run cost and how it ended, beside its accuracy (``ablate.stats`` OPTIONAL_COLUMNS).
RESULT_EXTRAS = ("params", "trainable_params", "train_images", "n_test", "val_gain_last_quarter", "wall_time")


def result_row(t: FrozenTrial) -> dict[str, Any]:
    """``dataset, arm, seed, accuracy`` (test accuracy, a fraction), :data:`RESULT_EXTRAS`, the seed
    of the run's train / validation partition (``split``), and ``replicate`` when the study runs
    several searches."""
    cell = RepeatCell.of(t)
    a = t.user_attrs
    row = {"dataset": cell.dataset, "arm": cell.arm, "seed": cell.seed, "accuracy": a["test_accuracy"],
           "params": a.get("n_params"), "trainable_params": a.get("n_trainable"),
           "train_images": a.get("train_images"), "n_test": a.get("n_test"),
           "val_gain_last_quarter": stored_late_gain(a), "wall_time": a.get("wall_time"), "split": _partition(a)}
    if cell.replicate is not None:
        row["replicate"] = cell.replicate
    return row


def _partition(attrs: dict[str, Any]) -> int | None:
    """The seed a run's train / validation partition was drawn from, from its stored config."""
    dataset = (attrs.get("config") or {}).get("dataset") or {}
    partition = dataset.get("partition_seed")
    return dataset.get("split_seed") if partition is None else partition


def stored_late_gain(attrs: dict[str, Any]) -> float | None:
    """The late validation gain of a stored run, from its curves (an ensemble: per member)."""
    curves = attrs.get("curves") or []
    if not curves:
        return attrs.get("val_gain_last_quarter")
    return late_gain([e["val_accuracy"] for e in curves], ensemble_members(attrs.get("extras") or {}))
