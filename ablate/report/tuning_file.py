"""tuning.json: how each arm was tuned, as the study layer records it and the report rewrites it.

Per arm (a JSON object keyed by arm name)::

    method          "per-arm" | "best" | "fixed"
    settings        {dotted path: value} the arm's repeats ran with
    n_trials        search trials finished
    importances     {parameter: Optuna importance}; empty when too few trials to rank them
    search_values   every finished search trial's validation accuracy in trial order, a pruned
                    trial at its last reported value
    search_pruned   booleans as long as search_values (absent in older files: none pruned)
    confirm         null, or {"top": K, "seeds": M, "candidates": [{"trial", "search_value",
                    "values": [up to M values], "seeds": [the seed of each value], "mean": null
                    without values}], "paired_seeds": [the seeds every candidate that ran
                    completed: the winner's comparison], "budget": the search's whole budget
                    (search.n_trials), "runs": confirmation runs planned
                    (candidates x M), "shortfall": runs of the budget K x M not made because fewer
                    than K search trials completed, "search_winner": trial, "confirm_winner": trial}
                    (older files lack each candidate's seeds, paired_seeds, budget, runs and shortfall)
    replicates      null, or one {"replicate": r, "settings", "value": mean validation accuracy
                    of the settings it chose, "source": text} per independent search r = 0..R-1
    dataset         (optional) the data set the search ran on; names the tuning figure
    curve           written by the report, never read: :func:`ablate.stats.tuning_curve` of
                    search_values as a JSON object (trials, pruned, expected, low, high,
                    confidence, band), or null without search values

Older files lack search_pruned, confirm and replicates (the committed reports/fmce-digits one)
and read as every value completed, no confirmation, one search. Reading and writing give the
keys in this order, so ``ablate report --results`` rewrites the file byte for byte.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from pathlib import Path

from ablate import stats
from ablate.analysis import read_json
from ablate.errors import ConfigError

__all__ = ["TUNING_METHODS", "read_tuning", "check_tuning", "with_curves"]

TUNING_METHODS = ("per-arm", "best", "fixed")


def read_tuning(path: Path) -> dict[str, dict[str, object]]:
    """Read ``tuning.json`` (see the module's docstring); the stored curves are left out.

    Raises:
        ConfigError: the file is missing, unreadable, not JSON or malformed; one line that
            starts with the path.
    """
    data = read_json(path)
    try:
        checked = check_tuning(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return checked or {}


def check_tuning(tuning: Mapping[str, Mapping[str, object]] | None) -> dict[str, dict[str, object]] | None:
    """A plain-JSON copy of ``tuning`` with its types checked and its keys in order, without curves.

    Raises:
        ConfigError: a record that is not as the module's docstring says; one line naming the
            arm and the key.
    """
    if tuning is None:
        return None
    if not isinstance(tuning, Mapping):
        raise ConfigError("tuning must map arm names to their tuning record")
    out: dict[str, dict[str, object]] = {}
    for arm, record in tuning.items():
        if not isinstance(record, Mapping):
            raise ConfigError(f"tuning of arm {arm!r} must be a mapping")
        try:
            out[str(arm)] = _checked_record(record)
        except ConfigError as exc:
            raise ConfigError(f"tuning of arm {arm!r}: {exc}") from None
    return out


def with_curves(tuning: Mapping[str, Mapping[str, object]]) -> dict[str, dict[str, object]]:
    """``tuning`` (checked) with each arm's ``curve``: :func:`ablate.stats.tuning_curve` of its
    search values as JSON, or None without any."""
    out = {}
    for arm, record in tuning.items():
        values = record["search_values"]
        curve = stats.tuning_curve(values, record["search_pruned"]) if values else None
        out[arm] = {**record, "curve": dataclasses.asdict(curve) if curve is not None else None}
    return out


def _checked_record(record: Mapping[str, object]) -> dict[str, object]:
    method = record.get("method")
    if method not in TUNING_METHODS:
        raise ConfigError(f"method {method!r} is not one of {', '.join(TUNING_METHODS)}")
    values = _fractions(record.get("search_values") or [], "search_values")
    pruned = record.get("search_pruned")
    pruned = [False] * len(values) if pruned is None else pruned
    if not isinstance(pruned, list) or len(pruned) != len(values) or not all(isinstance(p, bool) for p in pruned):
        raise ConfigError(f"search_pruned must be {len(values)} booleans, one per search value")
    try:
        importances = {str(k): float(v) for k, v in dict(record.get("importances", {}) or {}).items()}
        n_trials = _whole(record.get("n_trials", len(values)), "n_trials")
    except (TypeError, ValueError):
        raise ConfigError("importances must map parameters to numbers") from None
    out: dict[str, object] = {
        "method": method,
        "settings": _settings(record.get("settings"), "settings"),
        "n_trials": n_trials,
        "importances": importances,
        "search_values": values,
        "search_pruned": list(pruned),
        "confirm": _checked_confirm(record.get("confirm")),
        "replicates": _checked_replicates(record.get("replicates")),
    }
    if record.get("dataset") is not None:
        out["dataset"] = str(record["dataset"])
    return out


def _checked_confirm(confirm: object) -> dict[str, object] | None:
    if confirm is None:
        return None
    if not isinstance(confirm, Mapping):
        raise ConfigError("confirm must be null or a mapping")
    raw = confirm.get("candidates")
    if not isinstance(raw, list) or not raw or not all(isinstance(c, Mapping) for c in raw):
        raise ConfigError("confirm.candidates must be a non-empty list of mappings")
    candidates = []
    for i, c in enumerate(raw):
        where = f"confirm.candidates[{i}]"
        candidates.append(_checked_candidate(c, where))
    out = {"top": _whole(confirm.get("top"), "confirm.top"), "seeds": _whole(confirm.get("seeds"), "confirm.seeds"),
           "candidates": candidates}
    if confirm.get("paired_seeds") is not None:
        out["paired_seeds"] = _wholes(confirm["paired_seeds"], "confirm.paired_seeds")
    for key in ("budget", "runs", "shortfall"):
        if confirm.get(key) is not None:
            out[key] = _whole(confirm[key], f"confirm.{key}")
    trials = [c["trial"] for c in candidates]
    for key in ("search_winner", "confirm_winner"):
        out[key] = _whole(confirm.get(key), f"confirm.{key}")
        if out[key] not in trials:
            raise ConfigError(f"confirm.{key} {out[key]} is not one of the candidates' trials {trials}")
    return out


def _checked_candidate(c: Mapping[str, object], where: str) -> dict[str, object]:
    out: dict[str, object] = {
        "trial": _whole(c.get("trial"), f"{where}.trial"),
        "search_value": _fractions([c.get("search_value")], f"{where}.search_value")[0],
        "values": _fractions(c.get("values"), f"{where}.values"),
    }
    values = out["values"]
    if c.get("seeds") is not None:
        out["seeds"] = _wholes(c["seeds"], f"{where}.seeds")
        if len(out["seeds"]) != len(values):
            raise ConfigError(f"{where}.seeds must name the seed of each of its {len(values)} values")
    if c.get("mean") is None and not values:
        out["mean"] = None  # no confirmation run of it completed
    else:
        out["mean"] = _fractions([c.get("mean")], f"{where}.mean")[0]
    return out


def _wholes(values: object, what: str) -> list[int]:
    if not isinstance(values, list):
        raise ConfigError(f"{what} must be a list of whole numbers")
    return [_whole(v, what) for v in values]


def _checked_replicates(replicates: object) -> list[dict[str, object]] | None:
    if replicates is None:
        return None
    if not isinstance(replicates, list) or not replicates or not all(isinstance(r, Mapping) for r in replicates):
        raise ConfigError("replicates must be null or a non-empty list of mappings")
    out = []
    for i, r in enumerate(replicates):
        out.append({
            "replicate": _whole(r.get("replicate"), f"replicates[{i}].replicate"),
            "settings": _settings(r.get("settings"), f"replicates[{i}].settings"),
            "value": _fractions([r.get("value")], f"replicates[{i}].value")[0],
            "source": str(r.get("source", "")),
        })
    ids = [r["replicate"] for r in out]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"replicates name replicate(s) more than once: {ids}")
    return sorted(out, key=lambda r: r["replicate"])


def _fractions(values: object, what: str) -> list[float]:
    """Accuracies as fractions: finite numbers in [0, 1]."""
    message = f"{what} must be validation accuracies, numbers in [0, 1]"
    if not isinstance(values, list) or any(isinstance(v, bool) for v in values):
        raise ConfigError(message)
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(message) from None
    if not all(0.0 <= v <= 1.0 for v in out):  # NaN fails too
        raise ConfigError(message)
    return out


def _whole(value: object, what: str) -> int:
    whole = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value % 1 == 0
    if not whole or value < 0:
        raise ConfigError(f"{what} must be a whole number >= 0 (got {value!r})")
    return int(value)


def _settings(settings: object, what: str) -> dict[str, object]:
    settings = settings or {}
    if not isinstance(settings, Mapping):
        raise ConfigError(f"{what} must be a mapping of dotted paths to values")
    return {str(k): _json_value(v) for k, v in settings.items()}


def _json_value(value: object) -> object:
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)
