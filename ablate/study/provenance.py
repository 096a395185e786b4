"""What produced a number, saved beside it: versions, the git commit, the study file's hash."""

from __future__ import annotations

import hashlib
import platform
import socket
import subprocess
from pathlib import Path

import optuna

import ablate
from ablate.study.paths import StudyPaths

__all__ = ["git_commit", "provenance", "versions"]


def git_commit(folder: Path) -> str:
    """HEAD of the repository holding ``folder``, with "+dirty" when tracked files changed; "unknown"
    outside a repository."""
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = out.stdout.strip() if out.returncode == 0 else "unknown"
    if commit != "unknown":
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        commit += "+dirty" if dirty else ""
    return commit


def versions() -> dict[str, str]:
    """The versions a trial records: ablate, torch, timm."""
    import timm
    import torch

    return {"ablate": ablate.__version__, "torch": torch.__version__, "timm": timm.__version__}


def provenance(paths: StudyPaths) -> dict[str, str]:
    """Versions, commit and the study file's hash: saved beside every number."""
    v = versions()
    return {
        "study_file": str(paths.study_file),
        "study_sha256": hashlib.sha256(paths.study_file.read_bytes()).hexdigest()[:16],
        "git_commit": git_commit(Path(ablate.__file__).parent),
        "ablate": v["ablate"],
        "torch": v["torch"],
        "timm": v["timm"],
        "optuna": optuna.__version__,
        "python": platform.python_version(),
        "host": socket.gethostname(),
    }
