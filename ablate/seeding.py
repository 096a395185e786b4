"""One function that makes a run repeatable: seeds are passed in, never taken from globals."""

from __future__ import annotations

import random

__all__ = ["seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device) for model initialisation.

    The data order and augmentation take their own ``torch.Generator`` seeded from the same
    seed, so they do not depend on how many random numbers initialisation consumed.
    """
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
