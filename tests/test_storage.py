"""Where a study's storage comes from (--storage > ABLATE_STORAGE > the study file), passwords
from libpq's own sources, and what keeps many workers on one storage honest: the claim lock
dies with its holder, a reused pid is not a live worker, a half-claimed trial is retried."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import filelock
import optuna
import psutil
import pytest
from optuna.trial import TrialState

from ablate.cli import main
from ablate.config import load_study
from ablate.study import (adapter, claim_lock, open_storage, pid_alive, repeats_study, requeue_dead_trials,
                          resolve_paths, search_study, worker_id)
from tests.conftest import tiny_study_text

REPEATS = "repeats:\n  seeds: 2\n  params: fixed\n"
POSTGRES_PW = os.environ.get("ABLATE_TEST_POSTGRES_PW")


@pytest.fixture
def study_in_subfolder(tmp_path):
    """A study file in tmp/project whose own storage is a journal file beside it; the tests
    run in tmp (the autouse fixture changes into it)."""
    (tmp_path / "project").mkdir()
    path = tmp_path / "project" / "study.yaml"
    path.write_text(tiny_study_text(name="where", extra=REPEATS + "storage: journal:///runs/file.journal\n"))
    return path


def test_an_override_resolves_against_the_working_folder_the_file_against_its_own(study_in_subfolder, tmp_path):
    cfg = load_study(study_in_subfolder)
    project = tmp_path / "project"
    assert resolve_paths(cfg, study_in_subfolder).storage == f"journal:///{project / 'runs' / 'file.journal'}"
    assert (resolve_paths(cfg, study_in_subfolder, storage_override="journal:///x/o.journal").storage
            == f"journal:///{tmp_path / 'x' / 'o.journal'}")
    assert (resolve_paths(cfg, study_in_subfolder, storage_override="sqlite:///o.db").storage
            == f"sqlite:///{tmp_path / 'o.db'}")
    assert resolve_paths(cfg, study_in_subfolder, storage_override="sqlite:////abs/o.db").storage == "sqlite:////abs/o.db"
    url = "postgresql://alice@db.example/ablate"
    assert resolve_paths(cfg, study_in_subfolder, storage_override=url).storage == url
    # checkpoints and artifacts stay beside the study file whatever the storage
    assert resolve_paths(cfg, study_in_subfolder, storage_override=url).run_dir == project / "runs" / "where"


def _checked_storage(capsys, argv) -> str:
    assert main(argv) == 0
    out = capsys.readouterr().out.strip()
    return out.split(", storage ", 1)[1]


def test_the_flag_beats_the_variable_which_beats_the_file(study_in_subfolder, tmp_path, capsys, monkeypatch):
    argv = ["check", str(study_in_subfolder)]
    assert _checked_storage(capsys, argv) == f"journal:///{tmp_path / 'project' / 'runs' / 'file.journal'}"
    monkeypatch.setenv("ABLATE_STORAGE", "journal:///env.journal")
    assert _checked_storage(capsys, argv) == f"journal:///{tmp_path / 'env.journal'}"
    assert _checked_storage(capsys, [*argv, "--storage", "sqlite:///flag.db"]) == f"sqlite:///{tmp_path / 'flag.db'}"


def test_an_overriding_password_is_never_printed(study_in_subfolder, capsys, monkeypatch):
    monkeypatch.setenv("ABLATE_STORAGE", "postgresql://alice:s3cret@db.example/ablate")
    assert _checked_storage(capsys, ["check", str(study_in_subfolder)]) == "postgresql://alice:***@db.example/ablate"
    # unreachable: one line, no secret
    assert main(["report", str(study_in_subfolder), "--storage", "postgresql://alice:s3cret@127.0.0.1:1/none"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ablate: error: storage postgresql://alice:***@127.0.0.1:1/none: cannot open")
    assert len(err.strip().splitlines()) == 1 and "s3cret" not in err


def test_report_opens_the_overriding_storage(study_in_subfolder, tmp_path, capsys):
    assert main(["report", str(study_in_subfolder), "--storage", "journal:///elsewhere.journal"]) == 2
    assert "no completed repeat trials yet" in capsys.readouterr().err
    assert (tmp_path / "elsewhere.journal").exists() and not (tmp_path / "project" / "runs" / "file.journal").exists()


def test_workers_get_the_parents_storage_in_their_environment_not_on_their_command_line(
        study_in_subfolder, tmp_path, capsys, monkeypatch, fake_workers):
    started = fake_workers
    monkeypatch.setenv("ABLATE_STORAGE", "journal:///loses.journal")
    url = "postgresql://alice:s3cret@db.example/ablate"
    assert main(["run", str(study_in_subfolder), "--workers", "2", "--phase", "repeats", "--storage", url]) == 0
    assert [env["ABLATE_STORAGE"] for _, env in started] == [url, url]
    assert all("s3cret" not in " ".join(cmd) for cmd, _ in started)
    assert "s3cret" not in capsys.readouterr().out
    started.clear()
    monkeypatch.delenv("ABLATE_STORAGE")
    assert main(["run", str(study_in_subfolder), "--workers", "2", "--phase", "repeats", "--storage", "journal:///j.journal"]) == 0
    assert [env["ABLATE_STORAGE"] for _, env in started] == [f"journal:///{tmp_path / 'j.journal'}"] * 2


@pytest.mark.skipif(POSTGRES_PW is None and not os.environ.get("CI"),
                    reason="needs the PostgreSQL server that scripts/test.sh starts (in CI it must run)")
def test_a_url_without_password_takes_it_from_pgpassword_or_pgpass(study_in_subfolder, tmp_path, capsys, monkeypatch):
    assert POSTGRES_PW, "CI runs this against a real PostgreSQL server: use scripts/test.sh"
    password = os.environ["ABLATE_TEST_PGPASSWORD"]
    for name in ("PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGSERVICEFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.pgpass of the user running the tests
    argv = ["report", str(study_in_subfolder), "--storage", POSTGRES_PW]

    assert main(argv) == 2  # no password anywhere: one clear line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ablate: error: storage {POSTGRES_PW}: cannot open"), err
    assert "no password supplied" in err[0], err

    monkeypatch.setenv("PGPASSWORD", password)
    assert main(argv) == 2  # the storage opens; the study simply has no results yet
    assert "no completed repeat trials yet" in capsys.readouterr().err
    monkeypatch.delenv("PGPASSWORD")

    pgpass = tmp_path / ".pgpass"
    pgpass.write_text(f"127.0.0.1:*:ablate_pw_test:ablate_pw:{password}\n")
    pgpass.chmod(0o600)  # libpq ignores a password file that others can read
    assert main(argv) == 2
    assert "no completed repeat trials yet" in capsys.readouterr().err


def test_a_pid_is_alive_only_while_its_own_process_runs():
    me = worker_id()
    assert pid_alive(me["pid"], me["started"]) and pid_alive(me["pid"])
    assert not pid_alive(me["pid"], me["started"] - 3600), "a reused pid belongs to a process started later"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = psutil.Process(child.pid).create_time()
    assert pid_alive(child.pid, started)
    child.kill()
    time.sleep(0.5)
    assert not pid_alive(child.pid, started), "a killed, unreaped child (zombie) is dead"
    child.wait()
    assert not pid_alive(child.pid, started) and not pid_alive(-1)


def test_a_killed_holders_claim_lock_is_free_at_once(tmp_path):
    url = f"journal:///{tmp_path / 'k.journal'}"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom ablate.study import claim_lock\n"
         f"with claim_lock(None, {url!r}, 'k'):\n    print('held', flush=True)\n    time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent)))
    assert holder.stdout.readline().strip() == "held"
    claim = next(tmp_path.glob("k.journal.*.claim"))
    with pytest.raises(filelock.Timeout):  # held: nobody else gets it
        filelock.FileLock(claim).acquire(timeout=0.2)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    start = time.monotonic()
    with claim_lock(None, url, "k"):  # not 120 s later: the kernel dropped the dead holder's flock
        pass
    assert time.monotonic() - start < 2


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_a_trial_whose_worker_died_while_claiming_it_is_retried_with_its_cell(tmp_path, kind):
    if kind == "postgresql":
        url = os.environ.get("ABLATE_TEST_POSTGRES")
        if url is None and not os.environ.get("CI"):
            pytest.skip("needs the PostgreSQL server that scripts/test.sh starts (in CI it must run)")
        assert url, "CI runs this against a real PostgreSQL server: use scripts/test.sh"
    else:
        url = f"journal:///{tmp_path / 'c.journal'}"
    path = tmp_path / "study.yaml"
    path.write_text(tiny_study_text(name=f"claim-{os.getpid()}-{time.monotonic_ns()}", extra=REPEATS))
    cfg = load_study(path)
    study = repeats_study(cfg, open_storage(url))
    study.enqueue_trial({"arm": "a", "dataset": "digits", "seed": 0})
    half = study.ask()  # ... and the worker dies before tagging it (no heartbeat either)
    with claim_lock(adapter.storage_of(study), url, study.study_name):
        assert requeue_dead_trials(study, url, max_retry=2) == [half.number]
    trials = study.get_trials()
    assert trials[half.number].state == TrialState.FAIL
    assert "died while claiming it" in trials[half.number].user_attrs["fail_reason"]
    retry = [t for t in trials if t.state == TrialState.WAITING]
    assert len(retry) == 1 and retry[0].system_attrs["fixed_params"] == {"arm": "a", "dataset": "digits", "seed": 0}


def test_both_studies_name_their_objective_for_the_dashboard(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(tiny_study_text(name="named", extra=REPEATS))
    cfg = load_study(path)
    url = f"journal:///{tmp_path / 'n.journal'}"
    search_study(cfg, open_storage(url))
    repeats_study(cfg, open_storage(url))
    for name in ("named", "named:repeats"):  # read back from the storage, as optuna-dashboard does
        assert optuna.load_study(study_name=name, storage=open_storage(url)).metric_names == ["validation accuracy"]
