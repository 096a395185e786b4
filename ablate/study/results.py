"""The repeats read back from the storage as the tables a report needs, and the searches' best
trials as a command prints them. Nothing here writes a file."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from ablate.analysis import AnalysisSettings
from ablate.config import StudyConfig
from ablate.errors import StorageError
from ablate.study.cells import RepeatCell, CellSettings, look_of, repeat_cells
from ablate.study.paths import StudyPaths, relative_study_file, shown_storage, storage_kind
from ablate.study.repeats import repeats_progress, sequential_settings
from ablate.study.rows import RESULT_EXTRAS, result_row
from ablate.study.search import search_names
from ablate.study.storage import open_storage, repeats_study, repeats_study_name, search_study
from ablate.study.worker import FINISHED

__all__ = ["StudyResults", "collect_results", "earlier_results", "analysis_settings", "MIN_TRIALS_FOR_IMPORTANCE",
           "SearchSummary", "search_summaries", "note_on_dashboard"]

# Fewer completed trials than this give importances that say nothing (two trials and two
# parameters split 0.5 / 0.5 whatever happened): the report then says they were not computed.
MIN_TRIALS_FOR_IMPORTANCE = 5


@dataclass(frozen=True)
class StudyResults:
    """The repeats as tables for the report.

    ``results``: one row per finished cell (``dataset, arm, seed, accuracy`` and what the run
    cost; ``look`` for sequential seeds); ``curves``: validation accuracy per epoch;
    ``similarity``: head similarity per DueHeadNet run; ``tuning``: per arm how it was tuned;
    ``provenance``: what produced the numbers; ``missing``: planned cells without a result;
    ``study``: the repeats study (for the dashboard note).
    """

    results: pd.DataFrame
    curves: pd.DataFrame
    similarity: pd.DataFrame
    tuning: dict[str, dict[str, Any]]
    provenance: dict[str, Any]
    missing: list[RepeatCell]
    study: optuna.Study


def analysis_settings(cfg: StudyConfig) -> AnalysisSettings:
    """The analysis a study file asks for: its contrasts, ROPE, alpha, smallest effect, late-gain
    threshold and sequential design, titled with the study's name and the product's question."""
    rep = cfg.repeats
    assert rep is not None
    return AnalysisSettings(title=f"{cfg.name}: does FMCE help?", contrasts=rep.contrasts, rope=rep.rope, alpha=rep.alpha,
                            smallest_effect=rep.smallest_effect, still_rising=rep.still_rising,
                            sequential=sequential_settings(cfg))


def collect_results(cfg: StudyConfig, paths: StudyPaths) -> StudyResults:
    """The repeats as tables for the report (see :class:`StudyResults`)."""
    assert cfg.repeats is not None
    study = repeats_study(cfg, open_storage(paths.storage))
    complete = _first_complete(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    sequential = cfg.repeats.sequential
    rows, curves, sims = [], [], []
    for t in complete:
        cell, a = RepeatCell.of(t), t.user_attrs
        rows.append(result_row(t))
        if sequential:
            rows[-1]["look"] = a.get("look", look_of(cfg, cell.seed))
        curves += [{"dataset": cell.dataset, "arm": cell.arm, "seed": cell.seed, "epoch": e["epoch"],
                    "val_accuracy": e["val_accuracy"]} for e in a.get("curves", [])]
        if a.get("head_similarity") is not None:
            sims.append({"dataset": cell.dataset, "arm": cell.arm, "seed": cell.seed,
                         "head_similarity": a["head_similarity"]})
    all_trials = study.get_trials(deepcopy=False)
    seen = {RepeatCell.of(t) for t in complete}
    # Planned cells without a result; with sequential seeds only the looks the design reached.
    missing = [c for c in repeat_cells(cfg, repeats_progress(cfg, all_trials).seeds) if c not in seen]
    return StudyResults(
        results=pd.DataFrame(rows, columns=["dataset", "arm", "seed", "accuracy", *RESULT_EXTRAS,
                                            *(["look"] if sequential else [])]),
        curves=pd.DataFrame(curves, columns=["dataset", "arm", "seed", "epoch", "val_accuracy"]),
        similarity=pd.DataFrame(sims, columns=["dataset", "arm", "seed", "head_similarity"]),
        tuning=_tuning(cfg, paths, complete),
        provenance=_provenance(cfg, paths, study, complete, all_trials, rows),
        missing=missing,
        study=study,
    )


def _first_complete(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Each cell's first COMPLETE trial, in trial order (a cell never completes twice through
    ablate; never count one twice)."""
    seen, out = set(), []
    for t in sorted(trials, key=lambda t: t.number):
        if RepeatCell.of(t) not in seen:
            seen.add(RepeatCell.of(t))
            out.append(t)
    return out


def _provenance(cfg: StudyConfig, paths: StudyPaths, study: optuna.Study, complete: list[FrozenTrial],
                all_trials: list[FrozenTrial], rows: list[dict]) -> dict[str, Any]:
    numbers = [t.number for t in complete]
    wall = sum(t.user_attrs.get("wall_time", 0.0) for t in complete)
    devices = sorted({t.user_attrs.get("device", "?") for t in complete})
    precisions = sorted({str(t.user_attrs.get("precision")) for t in complete if t.user_attrs.get("precision")})
    prov = {k: v for k, v in study.user_attrs.get("ablate:provenance", {}).items() if k != "host"}
    prov.update({
        "study_file": relative_study_file(paths),
        "storage": shown_storage(paths),
        "repeats study": study.study_name,
        "device": ", ".join(devices),
        "precision": ", ".join(precisions),
        "seeds": ", ".join(str(s) for s in sorted({r["seed"] for r in rows})),
        "trial numbers": f"{min(numbers)}-{max(numbers)} ({len(numbers)} trials)" if numbers else "none",
        "training wall time": f"{wall / 60:.1f} min",
        "tuning": cfg.tuning,
    })
    plan = sequential_settings(cfg)
    if plan is not None:
        progress = repeats_progress(cfg, all_trials)
        state = "stopped" if progress.stopped else "running"
        prov["design"] = (f"sequential: looks at {', '.join(map(str, plan.looks))} seeds, "
                          f"{plan.spending} spending; {state} at {progress.seeds} seeds")
    return prov


def _tuning(cfg: StudyConfig, paths: StudyPaths, trials: list[FrozenTrial]) -> dict[str, dict[str, Any]]:
    """Per arm: how it was tuned, the settings its cells ran with (read from the cells, never
    recomputed), its search's parameter importances and completed validation accuracies."""
    stored: dict[str, CellSettings] = {}
    for t in sorted(trials, key=lambda t: t.number):
        settings = CellSettings.from_attrs(t.user_attrs)
        if settings is not None:
            stored.setdefault(RepeatCell.of(t).arm, settings)
    storage = open_storage(paths.storage)
    out: dict[str, dict[str, Any]] = {}
    for arm in cfg.arms:
        cell = stored.get(arm, CellSettings(precision=None))
        info: dict[str, Any] = {
            "method": cfg.tuning, "settings": dict(cell.settings), "precision": cell.precision,
            "source": cell.tuning.get("source", ""), "n_trials": 0, "importances": {}, "search_values": [],
        }
        if cfg.tuning != "fixed":
            search = search_study(cfg, storage, arm if cfg.tuning == "per-arm" else None)
            complete = sorted(search.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
            info["n_trials"] = len(search.get_trials(deepcopy=False, states=FINISHED))
            info["search_values"] = [float(t.value) for t in complete]
            info["importances"] = _importances(search)
        out[arm] = info
    return out


def _importances(study: optuna.Study) -> dict[str, float]:
    """Optuna's parameter importances (its default evaluator) of the searched parameters; empty
    when they cannot be had: fewer than MIN_TRIALS_FOR_IMPORTANCE completed trials (Optuna
    would return equal shares, which read as a finding), or no parameter that varied."""
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            importances = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError, ZeroDivisionError):
            return {}
    if any("too small" in str(w.message) for w in caught):
        return {}
    return {k: round(float(v), 4) for k, v in importances.items()}


def earlier_results(cfg: StudyConfig, paths: StudyPaths) -> pd.DataFrame | None:
    """The study's completed repeat cells as a results table, or None when there are none;
    creates nothing (no storage file, no study) and reads an unreachable server as none."""
    kind = storage_kind(paths.storage)
    if kind in ("journal", "sqlite"):
        file = paths.storage.split(":///", 1)[1]
        if file == ":memory:" or not Path(file).is_file():
            return None
    try:
        storage = open_storage(paths.storage)
        storage.get_study_id_from_name(repeats_study_name(cfg))
    except (StorageError, KeyError):
        return None
    study = optuna.load_study(study_name=repeats_study_name(cfg), storage=storage)
    rows = [result_row(t) for t in _first_complete(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))]
    return pd.DataFrame(rows) if rows else None


@dataclass(frozen=True)
class SearchSummary:
    """One search as ``ablate run`` prints it: its best completed trials (best first) and counts."""

    study_name: str
    best: list[FrozenTrial]
    complete: int
    pruned: int
    failed: int


def search_summaries(cfg: StudyConfig, paths: StudyPaths, top: int = 5) -> list[SearchSummary]:
    storage = open_storage(paths.storage)
    out = []
    for arm in search_names(cfg):
        study = search_study(cfg, storage, arm)
        trials = study.get_trials(deepcopy=False)
        complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
        count = lambda state: sum(t.state == state for t in trials)  # noqa: E731
        out.append(SearchSummary(study.study_name, complete[:top], count(TrialState.COMPLETE),
                                 count(TrialState.PRUNED), count(TrialState.FAIL)))
    return out


def note_on_dashboard(study: optuna.Study, report: Path) -> None:
    """The report's summary (its verdicts) as an optuna-dashboard note on the repeats study."""
    from optuna_dashboard import save_note

    text = report.read_text()
    summary = text.split("\n## ", 2)
    save_note(study, "\n## ".join(summary[:2]) + f"\n\nFull report: `{report}`\n")
