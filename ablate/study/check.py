"""A study file checked whole, before any storage file or run folder exists."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from ablate.config import Choices, StudyConfig, load_study, with_overrides
from ablate.data import check_dataset
from ablate.errors import StorageError
from ablate.models import check_backbone
from ablate.study.paths import StudyPaths, redact, resolve_paths, storage_kind

__all__ = ["check_study", "load_study_file", "QUICKSTART"]

QUICKSTART = "quickstart.yaml"  # shipped in the package; `ablate run` with no file runs it here


def check_study(cfg: StudyConfig, paths: StudyPaths, workers: int = 1) -> None:
    """Everything that needs torch or timm to check, before any file or folder is created.

    Raises:
        ModelError / ConfigError / DataError: an unknown backbone or data set anywhere in the
            file (base settings, search choices, repeat arms), or a data root with no files.
        StorageError: SQLite asked to serve several workers.
    """
    run = cfg.run
    variants = [run]
    for path, dim in cfg.search.space.items():
        if isinstance(dim, Choices):
            variants += [with_overrides(run, {path: v}, f"search.space.{path}") for v in dim.choices]
    if cfg.repeats is not None:
        variants += [with_overrides(run, {"dataset.name": name}, "repeats.datasets") for name in cfg.repeats.datasets]
        variants += [arm.run for arm in cfg.arms.values()]
    for backbone in sorted({v.model.backbone for v in variants}):
        check_backbone(backbone)
    seen = set()
    for v in variants:
        if (v.dataset.name, v.dataset.root, v.dataset.download) not in seen:
            seen.add((v.dataset.name, v.dataset.root, v.dataset.download))
            check_dataset(v.dataset, paths.base)
    if workers > 1 and storage_kind(paths.storage) == "sqlite":
        raise StorageError(
            f"storage {redact(paths.storage)}: SQLite cannot serve {workers} parallel workers safely; "
            f"use storage: journal:///runs/{cfg.name}.journal on one machine or a postgresql:// URL across machines"
        )


def load_study_file(path: Path | None, *, workers: int = 1, storage: str | None = None,
                    check: bool = True) -> tuple[StudyConfig, StudyPaths]:
    """Read, validate and check a study file (:func:`check_study`, unless ``check`` is False:
    ``ablate plan`` needs no data set or backbone); creates nothing.

    ``path`` None is the quickstart study shipped in the package, whose storage and runs go
    under the working folder. ``storage`` overrides the file's storage (``--storage``,
    ``ABLATE_STORAGE``).
    """
    if path is None:
        path = Path(str(files("ablate") / "studies" / QUICKSTART))
        cfg = load_study(path)
        paths = resolve_paths(cfg, path, base=Path.cwd(), storage_override=storage)
    else:
        cfg = load_study(path)
        paths = resolve_paths(cfg, path, storage_override=storage)
    if check:
        check_study(cfg, paths, workers=workers)
    return cfg, paths
