"""What a worker tells whoever shows progress (the command line); the study layer prints nothing."""

from __future__ import annotations

from typing import Any, Protocol

from optuna.trial import FrozenTrial

from ablate.records import EpochStats

__all__ = ["Events", "QuietEvents"]


class Events(Protocol):
    def phase(self, label: str, total: int) -> None: ...
    def trial_started(self, study: str, number: int, params: dict[str, Any]) -> None: ...
    def epoch_done(self, study: str, number: int, stats: EpochStats, epochs: int) -> None: ...
    def trial_finished(self, study: str, trial: FrozenTrial) -> None: ...
    def message(self, text: str) -> None: ...


class QuietEvents:
    """Events that nobody watches (tests, library use)."""

    def phase(self, label: str, total: int) -> None:
        pass

    def trial_started(self, study: str, number: int, params: dict[str, Any]) -> None:
        pass

    def epoch_done(self, study: str, number: int, stats: EpochStats, epochs: int) -> None:
        pass

    def trial_finished(self, study: str, trial: FrozenTrial) -> None:
        pass

    def message(self, text: str) -> None:
        pass
