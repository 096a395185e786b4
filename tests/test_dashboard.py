"""`ablate dashboard`: loopback by default; another address only with --allow-remote, because
whoever reaches optuna-dashboard can change the study. The server itself is not started."""

from __future__ import annotations

import optuna_dashboard
import pytest

from ablate.cli import main
from tests.conftest import tiny_study_text


@pytest.fixture
def served(monkeypatch):
    calls = []
    monkeypatch.setattr(optuna_dashboard, "run_server", lambda storage, **kw: calls.append((storage, kw)))
    return calls


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "no-such-host.invalid"])
def test_a_reachable_address_is_refused_without_allow_remote(write_study, capsys, served, host):
    path = write_study(tiny_study_text())
    assert main(["dashboard", str(path), "--host", host]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ablate: error: --host {host}: not a loopback address"), err
    assert "change the study" in err[0] and "ssh -L 8080:127.0.0.1:8080" in err[0] and "--allow-remote" in err[0]
    assert served == [] and not (path.parent / "runs").exists()


def test_allow_remote_starts_it_with_a_warning(write_study, capsys, served):
    path = write_study(tiny_study_text())
    assert main(["dashboard", str(path), "--host", "0.0.0.0", "--port", "8111", "--allow-remote"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("ablate: warning: optuna-dashboard on 0.0.0.0 can be reached from other machines")
    assert "change the study" in err
    assert len(served) == 1 and served[0][1]["host"] == "0.0.0.0" and served[0][1]["port"] == 8111


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_starts_without_a_warning(write_study, capsys, served, host, tmp_path):
    path = write_study(tiny_study_text())
    assert main(["dashboard", str(path), "--host", host, "--storage", "journal:///dash.journal"]) == 0
    assert capsys.readouterr().err == ""
    assert len(served) == 1 and served[0][1]["host"] == host
    assert (tmp_path / "dash.journal").exists()  # the overriding storage is the one served
