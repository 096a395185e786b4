"""ablate: hyperparameter searches and ablation studies with honest statistics."""

from __future__ import annotations

__version__ = "0.1.0"
