"""Optuna's own cost per trial on SQLite, as ablate uses it: ask with TPE over 4 parameters, a
report and a median-pruner check per epoch, the user attributes a trial records, tell; in a
study that already holds that many finished trials."""

from __future__ import annotations

import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import timm
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution

import ablate
from ablate.bench.options import OPTUNA_EPOCHS
from ablate.bench.results import OptunaCost
from ablate.config import (Choices, PrunerConfig, Range, RunConfig, SamplerConfig, SearchConfig, StudyConfig,
                           config_hash)
from ablate.records import EpochStats, TrialResult
from ablate.study import open_storage, search_study

__all__ = ["optuna_trial_cost"]

OPTUNA_CACHE_VERSION = 1


def _optuna_study_config() -> StudyConfig:
    """A search as ablate runs one: TPE over 4 parameters, the median pruner."""
    space = {
        "model.constraint.on": Choices(choices=[True, False]),
        "model.constraint.weight": Range(low=0.1, high=2.0, log=True),
        "train.lr": Range(low=1e-4, high=3e-3, log=True),
        "train.weight_decay": Range(low=1e-5, high=1e-2, log=True),
    }
    search = SearchConfig(sampler=SamplerConfig(name="tpe"), pruner=PrunerConfig(name="median"), space=space)
    return StudyConfig(name="bench", search=search)


def _distributions(cfg: StudyConfig) -> dict[str, optuna.distributions.BaseDistribution]:
    return {path: CategoricalDistribution(dim.choices) if isinstance(dim, Choices)
            else FloatDistribution(dim.low, dim.high, log=dim.log)
            for path, dim in cfg.search.space.items()}


def _trial_record(rng, epochs: int) -> tuple[dict[int, float], dict[str, Any]]:
    """(validation curve, the user attributes ablate records on a trial), with plausible values."""
    top = float(rng.uniform(0.5, 0.9))
    curve = {e: top * (1 - math.exp(-e / 5)) + float(rng.normal(0, 0.01)) for e in range(1, epochs + 1)}
    stats = tuple(EpochStats(epoch=e, train_loss=1 - v, train_accuracy=v, val_accuracy=v, penalty=0.3, lr=1e-3,
                             seconds=12.5) for e, v in curve.items())
    best = max(curve, key=curve.get)
    result = TrialResult(val_accuracy=curve[best], best_epoch=best, test_accuracy=curve[best] - 0.01,
                         head_similarity=0.2, curves=stats, n_params=22_000_000, n_trainable=11_000_000,
                         wall_time=400.0, device="cuda", images_per_second=5000.0)
    run = RunConfig()
    attrs = {  # ablate.study.trial.start_trial, then record_result
        "config": run.model_dump(mode="json"), "config_hash": config_hash(run), "seed": 0, "arm_kind": "fmce",
        "versions": {"ablate": ablate.__version__, "torch": torch.__version__, "timm": timm.__version__},
        "val_accuracy": result.val_accuracy, "test_accuracy": result.test_accuracy, "best_epoch": result.best_epoch,
        "head_similarity": result.head_similarity, "curves": result.curves_dict(), "n_params": result.n_params,
        "n_trainable": result.n_trainable, "wall_time": result.wall_time, "device": result.device,
        "images_per_second": result.images_per_second,
    }
    return curve, attrs


def _filled_study_file(size: int, epochs: int, seed: int) -> Path:
    """An SQLite file holding one study of ``size`` finished trials, made once and cached.

    Optuna's ``add_trials`` writes row by row through its ORM: about 0.1 s a trial here
    (100 s for 1,000), so the filled file is kept under ``$ABLATE_CACHE`` (default
    ``~/.cache/ablate``) and copied for every run. Every trial ran all its epochs, the
    most rows a study of that size can hold: an upper bound on the overhead.
    """
    home = Path(os.environ.get("ABLATE_CACHE", Path.home() / ".cache" / "ablate"))
    path = home / f"bench-optuna{optuna.__version__}-{size}trials-{epochs}epochs-seed{seed}-v{OPTUNA_CACHE_VERSION}.db"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = _optuna_study_config()
    dists = _distributions(cfg)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        study = search_study(cfg, open_storage(f"sqlite:///{tmp}/filled.db"))
        trials = []
        for _ in range(size):
            curve, attrs = _trial_record(rng, epochs)
            params = {p: d.choices[rng.integers(len(d.choices))] if isinstance(d, CategoricalDistribution)
                      else float(np.exp(rng.uniform(np.log(d.low), np.log(d.high)))) if d.log
                      else float(rng.uniform(d.low, d.high)) for p, d in dists.items()}
            trials.append(optuna.create_trial(params=params, distributions=dists, value=max(curve.values()),
                                              intermediate_values=curve, user_attrs=attrs))
        study.add_trials(trials)
        os.replace(Path(tmp) / "filled.db", path)  # atomic: a killed bench leaves no half file
    return path


def optuna_trial_cost(size: int, trials: int, folder: Path, *, epochs: int = OPTUNA_EPOCHS, seed: int = 0) -> OptunaCost:
    """Median cost of Optuna's calls in ``trials`` trials run on a study of ``size`` finished trials.

    One untimed trial runs first: a fresh process reads the whole study into Optuna's cache on
    its first ask (2.8 s at 1,000 trials here), once, not per trial.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = folder / f"optuna-{size}.db"
    shutil.copyfile(_filled_study_file(size, epochs, seed), db)
    cfg = _optuna_study_config()
    study = search_study(cfg, open_storage(f"sqlite:///{db}"))
    rng = np.random.default_rng(seed + 1)
    parts = []
    for i in range(trials + 1):
        curve, attrs = _trial_record(rng, epochs)
        t0 = time.perf_counter()
        trial = study.ask()
        for path, dim in cfg.search.space.items():
            if isinstance(dim, Choices):
                trial.suggest_categorical(path, dim.choices)
            else:
                trial.suggest_float(path, dim.low, dim.high, log=dim.log)
        t1 = time.perf_counter()
        for epoch, value in curve.items():
            trial.report(value, epoch)
            trial.should_prune()  # always run to the end: the same work in every trial
        t2 = time.perf_counter()
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        t3 = time.perf_counter()
        study.tell(trial, max(curve.values()))
        t4 = time.perf_counter()
        if i > 0:
            parts.append((t4 - t0, t1 - t0, t2 - t1, t3 - t2, t4 - t3))
    total, ask, report, user, tell = (statistics.median(col) for col in zip(*parts))
    return OptunaCost(size, total, ask, report, user, tell, user_attrs_set=len(attrs))
