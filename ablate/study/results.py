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

import ablate
from ablate.analysis import AnalysisSettings
from ablate.config import StudyConfig
from ablate.errors import StorageError
from ablate.study.cells import RepeatCell, CellSettings, look_of, repeat_cells
from ablate.study.paths import StudyPaths, relative_study_file, shown_storage, storage_kind
from ablate.study.provenance import git_commit
from ablate.study.repeats import repeats_progress, sequential_settings
from ablate.study.rows import RESULT_EXTRAS, result_row
from ablate.study.trial import PREDICTIONS_ATTR
from ablate.study.confirm import confirmation
from ablate.study.search import best_trial, searches
from ablate.study.storage import open_storage, repeats_study, repeats_study_name, search_study
from ablate.study.worker import FINISHED

__all__ = ["StudyResults", "collect_results", "tuning_record", "earlier_results", "analysis_settings", "MIN_TRIALS_FOR_IMPORTANCE",
           "SearchSummary", "search_summaries", "note_on_dashboard"]

# Fewer completed trials than this give importances that say nothing (two trials and two
# parameters split 0.5 / 0.5 whatever happened): the report then says they were not computed.
MIN_TRIALS_FOR_IMPORTANCE = 5


@dataclass(frozen=True)
class StudyResults:
    """The repeats as tables for the report.

    ``results``: one row per finished cell (``dataset, arm, seed, accuracy``, what the run
    cost, its partition's seed ``split``; ``look`` for sequential seeds, ``replicate`` with several
    searches); ``curves``: validation accuracy per epoch; ``similarity``: head similarity per
    DueHeadNet run; ``predictions``: every run's prediction per test example (``dataset, arm,
    seed, example, label, predicted``), None when no run stored any; ``tuning``: per arm how it was
    tuned (``tuning.json``); ``provenance``: what produced the numbers; ``missing``: planned cells
    without a result; ``study``: the repeats study (for the dashboard note).
    """

    results: pd.DataFrame
    curves: pd.DataFrame
    similarity: pd.DataFrame
    predictions: pd.DataFrame | None
    tuning: dict[str, dict[str, Any]]
    provenance: dict[str, Any]
    missing: list[RepeatCell]
    study: optuna.Study


def analysis_settings(cfg: StudyConfig) -> AnalysisSettings:
    """The analysis a study file asks for: its contrasts, ROPE, alpha, smallest effect, late-gain
    threshold and sequential design, titled with the study's name and the product's question."""
    rep = cfg.repeats
    assert rep is not None
    return AnalysisSettings(title=f"{cfg.name}: does FMCE help?", contrasts=rep.contrasts, rope=rep.rope,
                            alpha=rep.alpha, smallest_effect=rep.smallest_effect, still_rising=rep.still_rising,
                            sequential=sequential_settings(cfg), vary=tuple(rep.vary))


def collect_results(cfg: StudyConfig, paths: StudyPaths) -> StudyResults:
    """The repeats as tables for the report (see :class:`StudyResults`)."""
    assert cfg.repeats is not None
    study = repeats_study(cfg, open_storage(paths.storage))
    complete = _first_complete(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    rows, curves, sims, predictions = [], [], [], []
    for t in complete:
        cell, a = RepeatCell.of(t), t.user_attrs
        rows.append(result_row(t))
        if cfg.repeats.sequential:
            rows[-1]["look"] = a.get("look", look_of(cfg, cell.seed))
        key = {"dataset": cell.dataset, "arm": cell.arm, "seed": cell.seed}
        curves += [{**key, "epoch": e["epoch"], "val_accuracy": e["val_accuracy"]} for e in a.get("curves", [])]
        if a.get("head_similarity") is not None:
            sims.append({**key, "head_similarity": a["head_similarity"]})
        if PREDICTIONS_ATTR in a:
            predictions.append(_predictions(cell, a[PREDICTIONS_ATTR]))
    all_trials = study.get_trials(deepcopy=False)
    seen = {RepeatCell.of(t) for t in complete}
    # Planned cells without a result; with sequential seeds only the looks the design reached.
    missing = [c for c in repeat_cells(cfg, repeats_progress(cfg, all_trials).seeds) if c not in seen]
    columns = ["dataset", "arm", "seed", "accuracy", *RESULT_EXTRAS, *(["look"] if cfg.repeats.sequential else []),
               "split", *(["replicate"] if cfg.search.replicates > 1 else [])]
    return StudyResults(
        results=pd.DataFrame(rows, columns=columns),
        curves=pd.DataFrame(curves, columns=["dataset", "arm", "seed", "epoch", "val_accuracy"]),
        similarity=pd.DataFrame(sims, columns=["dataset", "arm", "seed", "head_similarity"]),
        predictions=pd.concat(predictions, ignore_index=True) if predictions else None,
        tuning=tuning_record(cfg, paths, complete),
        provenance=_provenance(cfg, paths, study, complete, all_trials, rows),
        missing=missing,
        study=study,
    )


def _predictions(cell: RepeatCell, stored: dict[str, list[int]]) -> pd.DataFrame:
    """One run's stored predictions as rows of the predictions table."""
    frame = pd.DataFrame({"dataset": cell.dataset, "arm": cell.arm, "seed": cell.seed,
                          "example": stored["example"], "label": stored["label"], "predicted": stored["predicted"]})
    return frame if cell.replicate is None else frame.assign(replicate=cell.replicate)


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
    written = git_commit(Path(ablate.__file__).parent)
    if written != prov.get("git_commit"):  # the analysis ran later, at another commit, than the training
        prov["report written at git_commit"] = written
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


def tuning_record(cfg: StudyConfig, paths: StudyPaths, trials: list[FrozenTrial]) -> dict[str, dict[str, Any]]:
    """Per arm, ``tuning.json``'s record: how it was tuned, the settings its cells ran with (read
    from the cells, never recomputed), its search's importances and every search trial's value
    (a pruned one at its last reported value), the confirmation of its best trials and the other
    replicates' choices when the study has them."""
    stored: dict[tuple[str, int | None], CellSettings] = {}
    for t in sorted(trials, key=lambda t: t.number):
        settings = CellSettings.from_attrs(t.user_attrs)
        if settings is not None:
            stored.setdefault((RepeatCell.of(t).arm, RepeatCell.of(t).replicate), settings)
    storage = open_storage(paths.storage)
    out: dict[str, dict[str, Any]] = {}
    for arm in cfg.arms:
        cell = stored.get((arm, 0 if cfg.search.replicates > 1 else None), CellSettings(precision=None))
        info: dict[str, Any] = {
            "method": cfg.tuning, "dataset": cfg.dataset.name, "settings": dict(cell.settings), "precision": cell.precision,
            "source": cell.tuning.get("source", ""), "n_trials": 0, "importances": {}, "search_values": [],
            "search_pruned": [], "confirm": None, "replicates": None,
        }
        if cfg.tuning != "fixed":
            search_arm = arm if cfg.tuning == "per-arm" else None
            info.update(_search_record(search_study(cfg, storage, search_arm)))
            if cfg.search.confirm is not None:
                info["confirm"] = confirmation(cfg, paths, search_arm).record(cfg.search.confirm.top,
                                                                             cfg.search.n_trials)
            if cfg.search.replicates > 1:
                info["replicates"] = [_replicate_record(cfg, paths, arm, r, stored.get((arm, r)))
                                      for r in range(cfg.search.replicates)]
        out[arm] = info
    return out


def _search_record(search: optuna.Study) -> dict[str, Any]:
    """Every finished trial of a search in trial order: its value, a pruned one at its last
    reported value (a tuning curve over completed trials only is biased upward, and its n is
    not the number of trials run)."""
    finished = [t for t in sorted(search.get_trials(deepcopy=False, states=FINISHED), key=lambda t: t.number)
                if t.state == TrialState.COMPLETE or t.intermediate_values]
    values = [float(t.value) if t.state == TrialState.COMPLETE else float(t.intermediate_values[max(t.intermediate_values)])
              for t in finished]
    return {"n_trials": len(finished), "search_values": values,
            "search_pruned": [t.state == TrialState.PRUNED for t in finished], "importances": _importances(search)}


def _replicate_record(cfg: StudyConfig, paths: StudyPaths, arm: str, replicate: int,
                      cell: CellSettings | None) -> dict[str, Any]:
    """One replicate's choice for an arm: its settings and their mean validation accuracy (over
    the confirmation runs with ``search.confirm``, else the search trial's)."""
    search_arm = arm if cfg.tuning == "per-arm" else None
    if cfg.search.confirm is not None:
        value = confirmation(cfg, paths, search_arm, replicate).winner.mean
    else:
        value = float(best_trial(search_study(cfg, open_storage(paths.storage), search_arm, replicate), cfg.tuning).value)
    return {"replicate": replicate, "settings": dict(cell.settings) if cell else {}, "value": value,
            "source": cell.tuning.get("source", "") if cell else ""}


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
    for s in searches(cfg):
        study = search_study(cfg, storage, s.arm, s.replicate)
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
