"""Many workers, one storage, a worker killed with SIGKILL mid-trial: nothing lost, nothing twice.

These run real worker processes against a real PostgreSQL server (started by scripts/test.sh,
URL in ABLATE_TEST_POSTGRES) and against an Optuna journal file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from optuna.trial import TrialState

from ablate.config import load_study
from ablate.study import open_storage, repeat_cells, repeats_study, resolve_paths, search_study
from tests.conftest import tiny_study_text

POSTGRES = os.environ.get("ABLATE_TEST_POSTGRES")
REPEATS = "repeats:\n  seeds: 2\n  params: best\n  max_retries: 1\n"


def _env() -> dict[str, str]:
    return dict(os.environ, ABLATE_THREADS="1", ABLATE_HEARTBEAT_INTERVAL="1", ABLATE_GRACE_PERIOD="4",
                PYTHONUNBUFFERED="1")


def _ablate(args, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ablate", *args], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_when(worker: subprocess.Popen, find, timeout: float = 600.0):
    """SIGKILL ``worker`` as soon as ``find()`` returns something (or at the timeout); returns it."""
    found = None
    deadline = time.monotonic() + timeout
    try:
        while found is None and time.monotonic() < deadline:
            found = find()
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    return found


def _repeats_again(study_file: Path, cwd: Path) -> None:
    """A fresh worker runs the repeats to the end; it must succeed."""
    again = _ablate(["run", str(study_file), "--phase", "repeats"], cwd)
    try:
        out, _ = again.communicate(timeout=900)
    finally:
        again.kill()
    assert again.returncode == 0, out


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def _running_trial_of(study, pids, timeout: float = 180.0):
    """Wait until one of ``pids()`` runs a search trial that has reported an epoch (mid-trial)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = t.system_attrs.get("ablate:worker", {})
            if worker.get("pid") in pids() and t.intermediate_values:
                return t, worker["pid"]
        time.sleep(0.1)
    raise AssertionError("no worker started a trial in time")


def _check_everything_ran_once(cfg, paths, killed_number: int) -> None:
    storage = open_storage(paths.storage)
    trials = search_study(cfg, storage).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(complete) == cfg.search.n_trials, [(t.number, t.state) for t in trials]
    assert [t.number for t in failed] == [killed_number]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    retries = [t for t in complete if t.system_attrs.get("failed_trial") == killed_number]
    assert len(retries) == 1 and retries[0].params == failed[0].params  # same parameters again
    assert "fail_reason" not in retries[0].user_attrs

    repeats = repeats_study(cfg, storage).get_trials()
    cells = [(t.params["arm"], t.params["dataset"], t.params["seed"]) for t in repeats if t.state == TrialState.COMPLETE]
    expected = [(c.arm, c.dataset, c.seed) for c in repeat_cells(cfg)]
    assert sorted(cells) == sorted(expected) and len(cells) == len(set(cells))
    results = pd.read_csv(paths.report_dir / "results.csv")
    assert len(results) == len(expected)
    assert "Missing" not in (paths.report_dir / "report.md").read_text()


def test_killed_worker_on_a_journal_file_is_requeued(tmp_path):
    study_file = tmp_path / "study.yaml"
    study_file.write_text(tiny_study_text(name="journal", n_trials=3, epochs=3,
                                          extra=REPEATS + "storage: journal:///runs/journal.journal\n"))
    cfg = load_study(study_file)
    paths = resolve_paths(cfg, study_file)
    parent = _ablate(["run", str(study_file), "--workers", "2"], tmp_path)
    time.sleep(1.0)
    study = search_study(cfg, open_storage(paths.storage))
    trial, pid = _running_trial_of(study, lambda: _children(parent.pid))
    os.kill(pid, signal.SIGKILL)
    out, _ = parent.communicate(timeout=600)
    assert parent.returncode == 1 and "1 of 2 search workers failed" in out, out
    # Restarting continues: the killed trial is failed and run again with the same parameters.
    again = _ablate(["run", str(study_file), "--workers", "2"], tmp_path)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    _check_everything_ran_once(cfg, paths, trial.number)
    killed = search_study(cfg, open_storage(paths.storage)).trials[trial.number]
    assert killed.user_attrs["fail_reason"] == f"worker {pid} on {os.uname().nodename} died"


@pytest.mark.skipif(POSTGRES is None and not os.environ.get("CI"),
                    reason="needs the PostgreSQL server that scripts/test.sh starts (in CI it must run)")
def test_killed_worker_on_postgres_is_retried_through_the_heartbeat(tmp_path):
    assert POSTGRES, "CI runs this against a real PostgreSQL server: use scripts/test.sh"
    name = f"kill-{uuid.uuid4().hex[:8]}"
    study_file = tmp_path / "study.yaml"
    study_file.write_text(tiny_study_text(name=name, n_trials=3, epochs=3, extra=REPEATS + f"storage: {POSTGRES}\n"))
    cfg = load_study(study_file)
    paths = resolve_paths(cfg, study_file)
    # Two independent `ablate run` processes, as on two machines.
    first = _ablate(["run", str(study_file)], tmp_path)
    second = _ablate(["run", str(study_file)], tmp_path)
    time.sleep(1.0)
    study = search_study(cfg, open_storage(paths.storage))
    trial, pid = _running_trial_of(study, lambda: {first.pid})
    first.send_signal(signal.SIGKILL)
    first.wait()
    out, _ = second.communicate(timeout=600)
    assert second.returncode == 0, out
    _check_everything_ran_once(cfg, paths, trial.number)


def test_repeats_killed_mid_trial_and_restarted_end_with_every_cell_once(tmp_path):
    study_file = tmp_path / "study.yaml"
    study_file.write_text(tiny_study_text(name="killrep", n_trials=1, epochs=3, extra=REPEATS))
    cfg = load_study(study_file)
    paths = resolve_paths(cfg, study_file)
    search = _ablate(["run", str(study_file), "--phase", "search"], tmp_path)
    assert search.wait(timeout=300) == 0
    worker = _ablate(["run", str(study_file), "--phase", "repeats"], tmp_path)
    study = repeats_study(cfg, open_storage(paths.storage))
    deadline = time.monotonic() + 300
    victim = None
    while victim is None and time.monotonic() < deadline:  # the second cell, mid-training
        victim = next((t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                       if t.number >= 1 and t.intermediate_values), None)
        time.sleep(0.1)
    assert victim is not None
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    again = _ablate(["run", str(study_file), "--phase", "repeats"], tmp_path)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    trials = study.get_trials()
    complete = [(t.params["arm"], t.params["dataset"], t.params["seed"]) for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(complete) == sorted((c.arm, c.dataset, c.seed) for c in repeat_cells(cfg))
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [victim.number]
    assert len(trials) == len(complete) + 1


def test_a_worker_killed_during_a_look_ends_with_exactly_the_planned_cells(tmp_path):
    from tests.test_repeats import starved_study_text

    study_file = tmp_path / "study.yaml"
    study_file.write_text(starved_study_text("killlook", "storage: journal:///runs/killlook.journal\n"))
    cfg = load_study(study_file)
    paths = resolve_paths(cfg, study_file)
    study = repeats_study(cfg, open_storage(paths.storage))
    worker = _ablate(["run", str(study_file), "--phase", "repeats"], tmp_path)
    victim = _kill_when(worker, lambda: next(  # a cell of look 1 other than the first, mid-training
        (t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.number >= 1 and t.intermediate_values),
        None))
    assert victim is not None
    _repeats_again(study_file, tmp_path)
    trials = study.get_trials()
    complete = [(t.params["arm"], t.params["seed"]) for t in trials if t.state == TrialState.COMPLETE]
    # the design stops at the first look: each of its cells once, no cell of a later look
    assert sorted(complete) == [(arm, seed) for arm in ("good", "starved") for seed in range(5)]
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [victim.number]
    assert len(trials) == len(complete) + 1
    assert all(t.user_attrs["look"] == 1 for t in trials)


def test_a_killed_fused_worker_requeues_all_its_seeds_and_runs_each_once(tmp_path):
    study_file = tmp_path / "study.yaml"
    extra = ("repeats:\n  seeds: 2\n  params: fixed\n  fuse: 2\n  max_retries: 1\n"
             "  arms: {single: {model.kind: single}, nfmce: {model.kind: dual, model.constraint.on: false}}\n"
             "storage: journal:///runs/fusedkill.journal\n")
    # fp32: on a CPU with native bf16 (auto's choice there) fusion fails its self-check (tests/test_repeats.py)
    study_file.write_text(tiny_study_text(name="fusedkill", n_trials=0, epochs=4, extra=extra).replace(
        "device: cpu}", "device: cpu, precision: fp32}"))
    cfg = load_study(study_file)
    paths = resolve_paths(cfg, study_file)
    study = repeats_study(cfg, open_storage(paths.storage))
    worker = _ablate(["run", str(study_file), "--phase", "repeats"], tmp_path)

    def fused_pair_mid_training():
        running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.intermediate_values]
        return running if len(running) >= 2 else None

    group = _kill_when(worker, fused_pair_mid_training)
    assert group is not None and len(group) == 2, "the worker never ran two fused seeds at once"
    _repeats_again(study_file, tmp_path)
    trials = study.get_trials()
    complete = sorted((t.params["arm"], t.params["seed"]) for t in trials if t.state == TrialState.COMPLETE)
    assert complete == [("nfmce", 0), ("nfmce", 1), ("single", 0), ("single", 1)]
    failed = sorted(t.number for t in trials if t.state == TrialState.FAIL)
    assert failed == sorted(t.number for t in group)  # both seeds of the killed group, nothing else
    assert len(trials) == len(complete) + 2


def test_a_worker_killed_during_the_confirmation_loses_nothing(tmp_path):
    """Confirmation runs are trials like any other: a killed one is failed and run again, every
    (candidate, seed) completes once."""
    from ablate.study import confirm_study

    study_file = tmp_path / "study.yaml"
    study_file.write_text(tiny_study_text(name="confirmkill", n_trials=4, epochs=4).replace(
        "  space:", "  confirm: {top: 1, seeds: 2}\n  space:") + "storage: journal:///runs/confirmkill.journal\n")
    cfg = load_study(study_file)
    paths = resolve_paths(cfg, study_file)
    confirm = confirm_study(cfg, open_storage(paths.storage))
    worker = _ablate(["run", str(study_file), "--phase", "search"], tmp_path)
    victim = _kill_when(worker, lambda: next(
        (t for t in confirm.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.intermediate_values), None))
    assert victim is not None, "the worker never ran a confirmation trial"
    again = _ablate(["run", str(study_file), "--phase", "search"], tmp_path)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    trials = confirm.get_trials()
    done = sorted((t.params["candidate"], t.params["seed"]) for t in trials if t.state == TrialState.COMPLETE)
    assert len(done) == 2 and len(set(done)) == 2
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [victim.number]
    assert len(trials) == 3
