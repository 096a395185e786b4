"""The one error base class of ablate.

A subclass of :class:`AblateError` is a user's mistake or a condition the user can fix
(a bad study file, a missing data set, a diverged training): the CLI prints its message
as one line on stderr and exits non-zero. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["AblateError", "ConfigError", "DataError", "ModelError", "TrainingError", "StorageError"]


class AblateError(Exception):
    """Base class of every error that is reported to the user as one line."""

    exit_code = 2


class ConfigError(AblateError):
    """The study file is malformed or names something that does not exist."""


class DataError(AblateError):
    """A data set cannot be found or read."""


class ModelError(AblateError):
    """A model cannot be built (unknown backbone, missing weights)."""


class TrainingError(AblateError):
    """A training run failed in a way that is the trial's fault (NaN loss); the study goes on."""

    exit_code = 1


class StorageError(AblateError):
    """The Optuna storage cannot be used as asked (SQLite with several workers, unreachable server)."""
