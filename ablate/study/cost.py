"""What a study will cost before it runs: training runs by kind, and the training images they need.

An estimate from the study file alone: every search trial is counted at its full epochs (pruning
only saves), every repeat cell of the largest design is counted (sequential seeds may stop
earlier), and a stage-1 run is counted once per seed (confirmation seeds included), backbone and
partition of the DueHeadNet arms that need one (a single arm whose recipe is the stage-1 recipe serves instead: the tuned
recipe is unknown before the search, so the study file's is compared).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ablate.config import RunConfig, StudyConfig, with_overrides
from ablate.errors import AblateError
from ablate.study.cells import CellSettings, repeat_cells
from ablate.study.confirm import confirm_seeds
from ablate.study.repeats import repeat_config
from ablate.study.search import arm_space, search_base, searches

__all__ = ["StudyCost", "study_cost"]


@dataclass(frozen=True)
class StudyCost:
    """Training runs by kind, the epochs they train, and the images (None: the data set is not here
    to count its training split)."""

    search_runs: int  # search trials, confirmation runs excluded
    confirm_runs: int
    stage1_runs: int
    repeat_runs: int
    epochs: int
    training_images: int | None
    images_per_epoch: int | None

    @property
    def runs(self) -> int:
        return self.search_runs + self.confirm_runs + self.stage1_runs + self.repeat_runs

    def as_dict(self) -> dict:
        return {**asdict(self), "runs": self.runs}


def _epochs(run: RunConfig) -> int:
    """Epochs a run trains itself (an ensemble's two members one after the other); stage 1 apart."""
    return run.train.epochs * (2 if run.model.kind == "ensemble" else 1)


def _stage1_key(run: RunConfig) -> str | None:
    """The checkpoint a DueHeadNet's stage 1 is kept under (None: it needs none)."""
    if run.model.kind != "dual" or run.model.model1.init != "stage1":
        return None
    from ablate.train import stage1_path

    return stage1_path(run, Path(".")).name


def _single_key(run: RunConfig) -> str | None:
    """The checkpoint a single-head run is kept under, to serve as a stage 1 of the same recipe."""
    if run.model.kind != "single":
        return None
    from ablate.train import single_checkpoint_path

    return single_checkpoint_path(run, Path(".")).name


def _recipe_searched(cfg: StudyConfig, arm: str) -> bool:
    """Whether the arm's tuned recipe may differ from the study file's (then its single-head runs
    do not serve as stage 1)."""
    recipe = ("train.lr", "train.epochs", "train.weight_decay", "train.batch_size")
    return cfg.tuning != "fixed" and any(path in arm_space(cfg, arm if cfg.tuning == "per-arm" else None)
                                         for path in recipe)


def _search_bases(cfg: StudyConfig) -> list[RunConfig]:
    """What each search starts from, once per backbone the search may choose."""
    out = []
    backbones = getattr(cfg.search.space.get("model.backbone"), "choices", None)
    for s in searches(cfg):
        run = search_base(cfg, s.arm)
        out += [run] if backbones is None else [with_overrides(run, {"model.backbone": b}) for b in backbones]
    return out


def _images_per_epoch(cfg: StudyConfig, base: Path) -> int | None:
    """Training images per epoch on the study's data set (its train split, whole batches)."""
    from ablate.data import load_images, split_indices

    try:
        n = len(split_indices(load_images(cfg.dataset, base).labels, cfg.dataset).train)
    except AblateError:
        return None
    return n - n % cfg.train.batch_size if n >= cfg.train.batch_size else n


def study_cost(cfg: StudyConfig, base: Path) -> StudyCost:
    """The cost of running every phase of ``cfg`` (see the module docstring)."""
    runs: list[RunConfig] = []
    confirm = cfg.search.confirm.runs if cfg.search.confirm is not None else 0
    for s in searches(cfg):
        runs += [search_base(cfg, s.arm)] * (cfg.search.search_trials + confirm)
    stage1: set[str] = set()
    served: set[str] = set()
    seeds = [cfg.train.seed] + (confirm_seeds(cfg) if cfg.search.confirm is not None else [])
    for run in _search_bases(cfg):  # search trials share the study seed's stage 1, per backbone; a
        for seed in seeds:          # confirmation seed trains its own
            stage1 |= {_stage1_key(with_overrides(run, {"train.seed": seed}))} - {None}
    if cfg.repeats is not None:
        for cell in repeat_cells(cfg):
            run = repeat_config(cfg, CellSettings(), cell)
            runs.append(run)
            stage1 |= {_stage1_key(run)} - {None}
            if not _recipe_searched(cfg, cell.arm):
                served |= {_single_key(run)} - {None}
    needed = stage1 - served
    epochs = sum(_epochs(r) for r in runs) + len(needed) * (cfg.model.model1.epochs or cfg.train.epochs)
    per_epoch = _images_per_epoch(cfg, base)
    return StudyCost(
        search_runs=len(searches(cfg)) * cfg.search.search_trials, confirm_runs=len(searches(cfg)) * confirm,
        stage1_runs=len(needed), repeat_runs=len(repeat_cells(cfg)) if cfg.repeats is not None else 0,
        epochs=epochs, training_images=None if per_epoch is None else epochs * per_epoch, images_per_epoch=per_epoch,
    )
