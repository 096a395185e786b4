"""Figures drawn with matplotlib's object API (no pyplot state): the shared helpers, and one trial's curve.

A leaf module: the study layer draws :func:`trial_curve` (uploaded as an Optuna artifact, shown by
optuna-dashboard) and the report's figures (``ablate.report.figures``) use the same
:func:`new_figure` and :func:`save_png`, so every PNG is made the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["DPI", "new_figure", "save_png", "trial_curve"]

DPI = 150


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of ``width`` x ``height`` inches with constrained layout, drawn by Agg."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` as a PNG and return the path."""
    path = Path(path)
    # format given explicitly so callers may write to a temporary name; no "Software"
    # metadata so the same data give the same bytes across matplotlib versions.
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def trial_curve(curves: Sequence[Mapping[str, float]], path: str | Path, title: str) -> Path:
    """One trial's training and validation accuracy per epoch (the dashboard's artifact).

    Args:
        curves: per epoch ``{"epoch", "train_accuracy", "val_accuracy"}`` (accuracies as fractions).
        path: where the PNG goes.
        title: figure title.
    """
    fig = new_figure(4.5, 3.0)
    ax = fig.add_subplot()
    epochs = [c["epoch"] for c in curves]
    ax.plot(epochs, [100 * c["train_accuracy"] for c in curves], marker="o", label="train")
    ax.plot(epochs, [100 * c["val_accuracy"] for c in curves], marker="o", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.legend()
    return save_png(fig, path)
