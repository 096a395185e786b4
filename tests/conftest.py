"""Tiny, offline fixtures: scikit-learn's digits at 16 px, a few dozen images, 1-2 epochs."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

if TYPE_CHECKING:
    from ablate.records import TrialResult

TINY_STUDY = """\
name: {name}
dataset: {{name: digits, image_size: 16, subset: 150, val_fraction: 0.2, test_fraction: 0.2}}
train: {{epochs: {epochs}, batch_size: 32, seed: 0, device: cpu}}
model: {{kind: dual, backbone: seresnet18, model1: {{init: {init}, freeze: true}}, constraint: {{on: true, weight: 1.0}}}}
search:
  n_trials: {n_trials}
  sampler: {{name: random, seed: 0}}
  pruner: {{name: {pruner}, warmup_epochs: 0, startup_trials: 1}}
  space:
    model.constraint.on: {{choices: [true, false]}}
    model.constraint.weight: {{low: 0.1, high: 2.0, log: true}}
    train.lr: {{low: 1.0e-4, high: 2.0e-3, log: true}}
{extra}"""


def fails_in_one_line(capsys, argv: list[str], *needles: str) -> str:
    """Run ``ablate argv`` and check the error contract: exit code 2, one stderr line that starts
    with ``ablate: error:`` and names every needle, no traceback. Returns that line."""
    from ablate.cli import main

    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ablate: error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def fake_result(curve: list[float], lr: float, n_test: int) -> TrialResult:
    """What a stand-in for training returns: one epoch per value of ``curve`` (validation
    accuracy, also its train and test accuracy), its best epoch the highest."""
    from ablate.records import EpochStats, TrialResult

    epochs = tuple(EpochStats(epoch=e + 1, train_loss=0.5, train_accuracy=v, val_accuracy=v, penalty=None, lr=lr,
                              seconds=0.01) for e, v in enumerate(curve))
    best = max(range(len(curve)), key=lambda e: (curve[e], -e))
    return TrialResult(val_accuracy=curve[best], best_epoch=best + 1, test_accuracy=curve[best], head_similarity=None,
                       curves=epochs, n_params=1000, n_trainable=1000, wall_time=0.01, device="cpu",
                       images_per_second=1.0, train_images=100, n_test=n_test)


def tiny_study_text(name: str = "tiny", *, epochs: int = 1, n_trials: int = 2, init: str = "random",
                    pruner: str = "none", extra: str = "") -> str:
    return TINY_STUDY.format(name=name, epochs=epochs, n_trials=n_trials, init=init, pruner=pruner, extra=extra)


@pytest.fixture(autouse=True, scope="session")
def _offline_and_small(tmp_path_factory):
    os.environ["ABLATE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="module")
def cheap_gc():
    """statsmodels' Holm branch calls gc.collect() on every call (0.1 s each once pandas,
    scipy and matplotlib are loaded); freezing what exists already keeps the tests fast."""
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    """Reports go under ./reports: keep every test's output out of the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _no_storage_override(monkeypatch):
    """A user's ABLATE_STORAGE would send every test's study to their storage: tests that
    want one set it themselves."""
    monkeypatch.delenv("ABLATE_STORAGE", raising=False)


@pytest.fixture
def write_study(tmp_path: Path):
    def write(text: str, name: str = "study.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def fake_workers(monkeypatch):
    """Worker processes that ``ablate run --workers/--gpus`` starts, recorded instead of run:
    the list of (command, environment) each would have had; every one exits 0."""
    import ablate.cli as cli

    started: list[tuple[list[str], dict[str, str]]] = []

    class FakeWorker:
        def __init__(self, cmd, env):
            started.append((cmd, env))

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(cli.subprocess, "Popen", FakeWorker)
    return started
