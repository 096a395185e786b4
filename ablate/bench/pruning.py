"""``ablate bench --pruning STUDY``: does the study's pruner pay? Its search run with the pruner
and with none, the same trials otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ablate.config import load_study
from ablate.study import resolve_paths, run_search

__all__ = ["pruning_pays"]


def pruning_pays(study_file: Path, folder: Path, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run a study's search twice, with its pruner and with none, the same trials otherwise.

    Returns, per variant: finished trials, pruned trials, epochs trained (reported epochs over
    all trials, the cost of a search) and the best validation accuracy reached.
    """
    base = load_study(study_file)
    out: dict[str, Any] = {"study": str(study_file), "n_trials": base.search.n_trials, "epochs_per_trial": base.train.epochs}
    for label, pruner in ((base.search.pruner.name, base.search.pruner), ("none", base.search.pruner.model_copy(update={"name": "none"}))):
        cfg = base.model_copy(update={
            "name": f"{base.name}-pruner-{label}",
            "storage": None,
            "search": base.search.model_copy(update={"pruner": pruner}),
        })
        # The study file's folder for data roots and provenance; a throw-away storage.
        paths = replace(resolve_paths(cfg, study_file), storage=f"sqlite:///{folder / (cfg.name + '.db')}",
                        run_dir=folder / cfg.name)
        if log:
            log(f"pruning: running {cfg.name} ({cfg.search.n_trials} trials)")
        started = time.perf_counter()
        trials = run_search(cfg, paths).get_trials(deepcopy=False)
        out[label] = {
            "finished": sum(t.state.is_finished() and t.state.name != "FAIL" for t in trials),
            "pruned": sum(t.state.name == "PRUNED" for t in trials),
            "epochs": sum(len(t.intermediate_values) for t in trials),
            "best_val_accuracy": max((t.value for t in trials if t.state.name == "COMPLETE"), default=float("nan")),
            "minutes": round((time.perf_counter() - started) / 60, 2),
        }
    return out
