"""Seeds: one function that makes a run repeatable (seeds are passed in, never taken from
globals), and the two seed ranges a study derives from its own seeds, side by side so that
``ablate.config`` can check that no two of a study's runs share a seed."""

from __future__ import annotations

import random

__all__ = ["ENSEMBLE_SEED_OFFSET", "CONFIRM_SEED_OFFSET", "ensemble_member_seeds", "confirmation_seeds",
           "seed_everything"]

# Ensemble members' seeds: far from any seed a study runs, so a member is never the single
# arm's run of some seed (issue 8: the control must not reuse the runs it is compared with).
ENSEMBLE_SEED_OFFSET = 1 << 20
# Confirmation seeds (``search.confirm``): above the ensemble members of every seed below 2**19,
# so a confirmation run is never a search, repeat or ensemble member run. ``StudyConfig`` refuses
# a study whose seeds reach them.
CONFIRM_SEED_OFFSET = 1 << 21


def ensemble_member_seeds(seed: int) -> tuple[int, int]:
    """The seeds of an ensemble's two members, for an ensemble of seed ``seed``."""
    return (ENSEMBLE_SEED_OFFSET + 2 * seed, ENSEMBLE_SEED_OFFSET + 2 * seed + 1)


def confirmation_seeds(count: int) -> range:
    """The ``count`` confirmation seeds, the same for every candidate (their runs pair by seed)."""
    return range(CONFIRM_SEED_OFFSET, CONFIRM_SEED_OFFSET + count)


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
