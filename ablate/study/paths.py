"""Where a study keeps its storage, runs and report, and how a storage URL is shown to people."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from ablate.config import StudyConfig

__all__ = ["StudyPaths", "resolve_paths", "redact", "storage_kind", "shown_storage", "relative_study_file"]


@dataclass(frozen=True)
class StudyPaths:
    study_file: Path
    base: Path  # the study file's folder: relative paths are resolved against it
    storage: str  # a URL, secrets included: never print it, print redact(storage)
    run_dir: Path  # runs/<name>: checkpoints, artifacts
    report_dir: Path  # reports/<name> under the working directory

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def artifacts(self) -> Path:
        return self.run_dir / "artifacts"


def resolve_paths(cfg: StudyConfig, study_file: Path, base: Path | None = None, *,
                  storage_override: str | None = None) -> StudyPaths:
    """Where a study keeps its storage, runs and report. Creates nothing.

    Relative paths are resolved against ``base``, by default the study file's folder; a
    ``storage_override`` (``--storage`` or ``ABLATE_STORAGE``) replaces the file's ``storage``
    and its relative path is resolved against the current working folder, like any path typed
    on a command line.
    """
    study_file = Path(study_file).absolute()
    base = Path(base).absolute() if base is not None else study_file.parent
    if storage_override:
        storage, storage_base = storage_override, Path.cwd()
    else:
        storage, storage_base = cfg.storage or f"sqlite:///{base / 'runs' / (cfg.name + '.db')}", base
    if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
        rel = storage[len("sqlite:///"):]
        if rel != ":memory:":
            storage = f"sqlite:///{storage_base / rel}"
    elif storage.startswith("journal:///") and not storage.startswith("journal:////"):
        storage = f"journal:///{storage_base / storage[len('journal:///'):]}"
    # Runs (storage, checkpoints, artifacts) live beside the study file; the report, like any
    # command's output, goes under reports/ of the folder the command runs in.
    return StudyPaths(study_file, base, storage, base / "runs" / cfg.name, Path.cwd() / "reports" / cfg.name)


def redact(url: str) -> str:
    """The storage URL with any password masked, fit for logs, reports and user attributes."""
    if "://" not in url or "@" not in url:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL: mask everything between '://' and '@'
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def storage_kind(url: str) -> str:
    """``journal``, ``sqlite`` or ``rdb`` (a database server)."""
    if url.startswith("journal:///"):
        return "journal"
    if url.startswith("sqlite:"):
        return "sqlite"
    return "rdb"


def shown_storage(paths: StudyPaths) -> str:
    """The storage URL for a report: password redacted, a file relative to the study's folder."""
    url = redact(paths.storage)
    for scheme in ("sqlite:///", "journal:///"):
        if url.startswith(scheme):
            file = Path(url[len(scheme):])  # absolute: resolve_paths made it so
            try:
                return f"{scheme}{file.relative_to(paths.base).as_posix()}"
            except ValueError:
                return f"{scheme}{file.name}"
    return url


def relative_study_file(paths: StudyPaths) -> str:
    """The study file relative to its git repository (or to this folder): no machine paths."""
    folder = paths.study_file.parent
    try:
        top = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        top = ""
    for root in (Path(top) if top else None, Path.cwd()):
        if root is not None:
            try:
                return paths.study_file.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                continue
    return paths.study_file.name
