"""The settings of an analysis, and the design of sequential seeds, as typed records.

:class:`AnalysisSettings` is what ``analysis.json`` beside a report's ``results.csv`` holds:
read and checked once (:meth:`AnalysisSettings.read`), changed by command-line flags into a
checked copy (:meth:`AnalysisSettings.with_changes`), passed whole to the report, and written
back byte for byte (:meth:`AnalysisSettings.to_json`). :class:`SequentialPlan` is the design
of sequential seeds as a study file gives it; ``ablate.stats.sequential_design`` turns it into
boundaries. A bad value fails here with one line naming it.

Layering: standard library and pydantic only, like ``ablate.config``; the statistics that use
these records live in ``ablate.stats``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, model_validator

from ablate.errors import ConfigError

__all__ = [
    "Spending", "SPENDING", "VARIANCE_SOURCES", "SequentialPlan", "AnalysisSettings", "check_settings", "is_finite",
    "read_json", "json_text",
]  # fmt: skip

# The Lan-DeMets alpha-spending families (ablate.stats.spent_alpha implements them).
Spending = Literal["obrien-fleming", "pocock"]
SPENDING: tuple[str, ...] = get_args(Spending)

# What a repeat seed can vary (a study file's ``repeats.vary``): model initialisation, data order,
# augmentation, and the train / validation partition. The test examples are never among them.
VarianceSource = Literal["init", "order", "augment", "split"]
VARIANCE_SOURCES: tuple[str, ...] = get_args(VarianceSource)


def is_finite(x: object) -> bool:
    """True when ``x`` converts to a finite float; None, NaN and text that is no number are not."""
    try:
        return math.isfinite(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def check_settings(rope: float | None, alpha: float, smallest_effect: float | None, still_rising: float) -> None:
    """Check the ranges of the analysis settings (points; ``alpha`` a level).

    Raises:
        ConfigError: ``rope`` negative or not finite, ``alpha`` outside (0, 1),
            ``smallest_effect`` not positive, or ``still_rising`` negative or not finite
            (the study file's ``repeats`` section holds the same ranges).
    """
    if rope is not None and not (is_finite(rope) and rope >= 0):
        raise ConfigError(f"rope must be a finite number of points >= 0, got {rope!r}")
    if not (is_finite(alpha) and 0 < alpha < 1):
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")
    if smallest_effect is not None and not (is_finite(smallest_effect) and smallest_effect > 0):
        raise ConfigError(f"smallest effect must be a finite number of points > 0, got {smallest_effect!r}")
    if not (is_finite(still_rising) and still_rising >= 0):
        raise ConfigError(f"still_rising must be a finite number of points >= 0, got {still_rising!r}")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_PLAN_KEYS = ("looks", "spending", "comparisons")
_EXPECTED_PLAN = "sequential must be {looks: [increasing seed counts >= 2], spending, comparisons: int >= 1}"


def _whole(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_pair(p: object) -> bool:
    return isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(a, str) for a in p)


class SequentialPlan(_Frozen):
    """The design of sequential seeds: ``SequentialPlan(looks=(3, 6, 9), spending="pocock", comparisons=3)``.

    ``looks``: cumulative seed counts, increasing, the first at least 2; ``spending``: one of
    :data:`SPENDING`; ``comparisons``: contrasts x data sets sharing alpha (from the study
    file, so a cell given up does not change the design).

    Raises:
        ConfigError: a key missing or unknown, or a value of the wrong type or range.
    """

    looks: tuple[int, ...]
    spending: Spending
    comparisons: int

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any) -> Any:
        if isinstance(data, SequentialPlan):
            return data
        if not isinstance(data, Mapping) or set(data) != set(_PLAN_KEYS):
            raise ConfigError(_EXPECTED_PLAN)
        looks, spending, comparisons = (data[key] for key in _PLAN_KEYS)
        counts = isinstance(looks, (list, tuple)) and all(_whole(n) for n in looks)
        if not (counts and looks and looks[0] >= 2 and all(b > a for a, b in zip(looks, looks[1:]))):
            raise ConfigError(f"{_EXPECTED_PLAN} (looks: {looks!r})")
        if spending not in SPENDING:
            raise ConfigError(f"sequential.spending {spending!r} is not one of {', '.join(SPENDING)}")
        if not _whole(comparisons) or comparisons < 1:
            raise ConfigError(f"{_EXPECTED_PLAN} (comparisons: {comparisons!r})")
        return data


_NUMBERS = ("rope", "alpha", "smallest_effect", "still_rising")
_TEXTS = ("title", "note")


class AnalysisSettings(_Frozen):
    """The settings of an analysis, as ``analysis.json`` holds them (None: the default).

    ``title``: the report's first heading; ``contrasts``: ``(arm_a, arm_b)`` pairs (None: every
    pair, ``ablate.stats.default_contrasts``); ``rope``: half-width of the region of practical
    equivalence in points (None: ``smallest_effect`` where given, else per data set the larger of
    0.1 and one test image);
    ``alpha``: significance level; ``smallest_effect``: smallest difference of interest in
    points (seeds needed for it); ``still_rising``: late validation gain (points) above which
    an arm is still rising; ``note``: a paragraph shown at the top of the report;
    ``vary``: what the seeds varied (:data:`VARIANCE_SOURCES`; None: not recorded, as for a
    table from elsewhere); ``sequential``: the design of sequential seeds, None for a fixed design.

    Raises:
        ConfigError: an unknown key, a value of the wrong type (the messages of
            :meth:`read`) or out of range (:func:`check_settings`).
    """

    title: str | None = None
    contrasts: tuple[tuple[str, str], ...] | None = None
    rope: float | None = None
    alpha: float = 0.05
    smallest_effect: float | None = None
    still_rising: float = 2.0
    note: str | None = None
    vary: tuple[VarianceSource, ...] | None = None
    sequential: SequentialPlan | None = None

    @model_validator(mode="before")
    @classmethod
    def _typed(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        known = tuple(cls.model_fields)
        unknown = [k for k in data if k not in known]
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r}; expected {', '.join(known)}")
        contrasts = data.get("contrasts")
        if contrasts is not None and not (isinstance(contrasts, (list, tuple)) and all(_is_pair(p) for p in contrasts)):
            raise ConfigError("contrasts must be a list of [arm_a, arm_b] pairs of names")
        for key in _NUMBERS:
            value = data.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ConfigError(f"{key} must be a number, got {value!r}")
        for key in _TEXTS:
            if data.get(key) is not None and not isinstance(data[key], str):
                raise ConfigError(f"{key} must be text")
        vary = data.get("vary")
        if vary is not None and not (isinstance(vary, (list, tuple)) and vary and all(v in VARIANCE_SOURCES for v in vary)
                                     and len(set(vary)) == len(vary)):
            raise ConfigError(f"vary must be a list of distinct sources out of {', '.join(VARIANCE_SOURCES)}, got {vary!r}")
        return data

    @model_validator(mode="after")
    def _in_range(self) -> AnalysisSettings:
        check_settings(self.rope, self.alpha, self.smallest_effect, self.still_rising)
        return self

    @classmethod
    def read(cls, path: str | Path) -> AnalysisSettings:
        """Read ``analysis.json``.

        Raises:
            ConfigError: the file is missing, unreadable or not JSON, or holds a bad setting;
                one line that starts with the path.
        """
        data = read_json(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object of analysis settings")
        # JSON null is the default (a file written by to_json says "rope": null)
        data = {k: v for k, v in data.items() if v is not None or k not in cls.model_fields}
        try:
            return cls.model_validate(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def with_changes(self, **changes: Any) -> AnalysisSettings:
        """A checked copy with ``changes`` applied (e.g. the command line's flags).

        Raises:
            ConfigError: a changed value of the wrong type or out of range.
        """
        return type(self).model_validate({**self.model_dump(), **changes})

    def to_json(self) -> str:
        """The text of ``analysis.json``: every setting in field order, the ``vary`` key only when
        recorded and the ``sequential`` key only for sequential seeds (so an older file writes back
        as it always was)."""
        data = self.model_dump(mode="json")
        for key in ("vary", "sequential"):
            if data[key] is None:
                del data[key]
        return json_text(data)


def read_json(path: str | Path) -> object:
    """The JSON value in ``path``.

    Raises:
        ConfigError: the file is missing, unreadable or not valid JSON (one line naming it).
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


def json_text(data: object) -> str:
    """``data`` as the report folder writes JSON: indented by 2, UTF-8 text, a final newline."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
