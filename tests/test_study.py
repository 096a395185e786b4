from __future__ import annotations

import json
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
import pytest
from optuna.trial import TrialState

from ablate.config import RunConfig, config_hash, load_study
from ablate.study import redact, resolve_paths, run_search, open_storage
from tests.conftest import tiny_study_text

ATTRS = {"val_accuracy", "test_accuracy", "best_epoch", "curves", "head_similarity", "seed", "config",
         "config_hash", "n_params", "n_trainable", "wall_time", "device", "versions", "images_per_second"}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished two-trial search, shared by the tests that only read it."""
    folder = tmp_path_factory.mktemp("search")
    path = folder / "study.yaml"
    path.write_text(tiny_study_text(n_trials=2, epochs=2))
    cfg = load_study(path)
    paths = resolve_paths(cfg, path)
    study = run_search(cfg, paths)
    return cfg, paths, study


def test_every_trial_carries_what_a_user_needs(searched):
    cfg, paths, study = searched
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert paths.storage == f"sqlite:///{paths.base / 'runs' / 'tiny.db'}"
    for t in trials:
        assert ATTRS <= set(t.user_attrs)
        assert t.value == t.user_attrs["val_accuracy"]
        assert len(t.user_attrs["curves"]) == 2 and t.intermediate_values.keys() == {1, 2}
        run = RunConfig.model_validate(t.user_attrs["config"])
        assert config_hash(run) == t.user_attrs["config_hash"]
        assert run.train.lr == t.params["train.lr"]
        assert t.user_attrs["versions"]["torch"]
        # the loss weight is only sampled when the constraint is on
        assert ("model.constraint.weight" in t.params) == t.params["model.constraint.on"]
        artifacts = list((paths.artifacts).iterdir())
        assert artifacts
    assert "@" not in json.dumps([t.user_attrs for t in trials])


def test_rerunning_a_finished_search_runs_nothing(searched):
    cfg, paths, _ = searched
    study = run_search(cfg, paths)
    assert len(study.get_trials()) == 2


def test_an_interrupted_search_continues_to_the_total(write_study):
    path = write_study(tiny_study_text(name="resume", n_trials=3))
    cfg = load_study(path)
    paths = resolve_paths(cfg, path)
    run_search(cfg, paths, max_trials=1)  # stops after one trial, as if interrupted
    study = run_search(cfg, paths)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    assert len(study.get_trials()) == 3
    assert [t.number for t in study.get_trials()] == [0, 1, 2]


def test_dashboard_serves_the_study_over_http(searched):
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import wsgi

    cfg, paths, _ = searched
    app = wsgi(open_storage(paths.storage), artifact_store=FileSystemArtifactStore(paths.artifacts))

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        studies = json.load(urllib.request.urlopen(f"{base}/api/studies", timeout=30))["study_summaries"]
        entry = next(s for s in studies if s["study_name"] == "tiny")
        detail = json.load(urllib.request.urlopen(f"{base}/api/studies/{entry['study_id']}", timeout=30))
        trials = detail["trials"]
        assert len(trials) == 2
        attrs = {a["key"] for a in trials[0]["user_attrs"]}
        assert {"test_accuracy", "head_similarity", "config_hash"} <= attrs
        assert trials[0]["artifacts"], "the learning-curve figure is an artifact"
    finally:
        server.shutdown()


def test_redact_hides_passwords():
    assert redact("postgresql://alice:s3cret@db.example/ablate") == "postgresql://alice:***@db.example/ablate"
    assert "s3cret" not in redact("postgresql+psycopg2://alice:s3cret@localhost:5432/x")
    assert redact("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_every_sampler_and_pruner_a_study_file_may_name_has_a_builder():
    """The registries answer for every name the study file allows; an unknown name lists the valid ones."""
    import typing

    from ablate.config import PrunerConfig, SamplerConfig, parse_study
    from ablate.errors import ConfigError
    from ablate.study.samplers import PRUNERS, SAMPLERS, make_pruner, make_sampler

    samplers = typing.get_args(SamplerConfig.model_fields["name"].annotation)
    pruners = typing.get_args(PrunerConfig.model_fields["name"].annotation)
    assert set(samplers) == set(SAMPLERS) and set(pruners) == set(PRUNERS)
    for sampler in samplers:
        for pruner in pruners:
            space = "{model.constraint.on: {choices: [true, false]}}"
            cfg = parse_study(f"name: x\nsearch: {{sampler: {{name: {sampler}, seed: 3}}, pruner: {{name: {pruner}}}, "
                              f"space: {space}}}\n")
            assert isinstance(make_sampler(cfg), optuna.samplers.BaseSampler)
            assert isinstance(make_pruner(cfg), optuna.pruners.BasePruner)
    with pytest.raises(ConfigError, match="expected one of: grid, random, tpe"):
        make_sampler(parse_study("name: x\n").model_copy(
            update={"search": parse_study("name: x\n").search.model_copy(
                update={"sampler": SamplerConfig.model_construct(name="cmaes", seed=0)})}))
