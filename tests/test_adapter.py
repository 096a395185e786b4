"""The private Optuna names ablate relies on (ablate/study/adapter.py): all there now, and a loud,
named failure when an Optuna release takes one away."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from ablate.study import adapter
from ablate.cli import main


def test_every_private_name_is_there_in_the_installedadapter():
    adapter.check()  # raises OptunaChanged, naming the name, if one is gone


def _enqueue_under_another_name(self, params, user_attrs=None, skip_if_exists=False):
    self.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, system_attrs={"enqueued": params}))


@pytest.mark.parametrize(
    ("gone", "name"),
    [
        (lambda mp: mp.delattr(optuna.storages._heartbeat, "get_heartbeat_thread"),
         "optuna.storages._heartbeat.get_heartbeat_thread"),
        (lambda mp: mp.delattr(optuna.storages._cached_storage, "_CachedStorage"),
         "optuna.storages._cached_storage._CachedStorage"),
        (lambda mp: mp.setattr(optuna.study.Study, "enqueue_trial", _enqueue_under_another_name),
         "'fixed_params' system attribute"),
    ],
)
def test_a_vanished_private_name_fails_loudly_with_its_name(monkeypatch, gone, name):
    gone(monkeypatch)
    with pytest.raises(adapter.OptunaChanged) as info:
        adapter.check()
    message = str(info.value)
    assert name in message, f"the message must name what is gone: {message}"
    assert "ablate/study/adapter.py" in message and optuna.__version__ in message, message


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: adapter.storage_of(SimpleNamespace()), "Study._storage"),
        (lambda: adapter.trial_id(SimpleNamespace()), "SimpleNamespace._trial_id"),
        (lambda: adapter.rdb_engine(SimpleNamespace()), "SimpleNamespace._backend"),
    ],
)
def test_each_adapter_function_names_what_it_misses(call, name):
    with pytest.raises(adapter.OptunaChanged, match=name.replace(".", r"\.")):
        call()


def test_a_vanished_name_is_one_line_from_the_cli(monkeypatch, capsys, write_study):
    from tests.conftest import tiny_study_text

    path = write_study(tiny_study_text(extra="repeats:\n  seeds: 2\n  params: fixed\n"))
    monkeypatch.setattr(adapter, "check_once", adapter.check)  # not the cached result of an earlier test
    monkeypatch.delattr(optuna.storages._heartbeat, "get_heartbeat_thread")
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ablate: error: optuna ") and "get_heartbeat_thread" in err[0], err
