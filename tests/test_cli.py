"""Every user-facing error path: one line on stderr, exit code 2, no traceback, nothing created."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from ablate.cli import main
from ablate.config import load_study
from ablate.study import resolve_paths, search_study, open_storage
from tests.conftest import fails_in_one_line, tiny_study_text


def _fails_cleanly(capsys, argv, folder, *needles):
    line = fails_in_one_line(capsys, argv, *needles)
    assert not (folder / "runs").exists(), "nothing may be created for a bad study"
    return line


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("name: x\ntrain: {lr: -1}\n", ["train.lr", "greater than 0"]),
        ("name: x\ntrain: {epoch: 3}\n", ["unknown key 'train.epoch'", "did you mean 'epochs'"]),
        ("name: x\ntrain: {batch_size: big}\n", ["train.batch_size", "valid integer"]),
        ("name: x\ndataset: {val_fraction: 0.5, test_fraction: 0.5}\n", ["leave at least 10% for training"]),
        ("name: x\nsearch: {space: {train.lr: {low: 0.1, high: 0.01}}}\n", ["low must be <= high"]),
        ("name: x\ntrain: {lr: [1, 2}\n", ["line 2", "invalid YAML"]),
        ("name: !!python/object/apply:os.system [touch pwned]\n", ["invalid YAML"]),
        ("name: x\nmodel: {backbone: seresnet19}\n", ["unknown backbone 'seresnet19'", "seresnet18"]),
        ("name: x\nsearch: {space: {model.backbone: {choices: [seresnet18, resnet9000]}}}\n", ["'resnet9000'"]),
        ("name: x\ndataset: {name: mnist}\n", ["unknown data set 'mnist'", "digits"]),
        ("name: x\ndataset: {name: cifar10, root: /nonexistent/cifar}\n", ["/nonexistent/cifar", "dataset.download: true"]),
        ("name: x\nrepeats: {datasets: [digits, flowers102]}\ndataset: {root: missing}\n", ["'flowers102'", "missing"]),
    ],
)
def test_bad_study_file(capsys, write_study, text, needles):
    path = write_study(text)
    _fails_cleanly(capsys, ["run", str(path)], path.parent, *needles)
    assert not (path.parent / "pwned").exists()


def test_missing_study_file(capsys, tmp_path):
    _fails_cleanly(capsys, ["run", str(tmp_path / "nope.yaml")], tmp_path, "cannot read study file")


def test_sqlite_refuses_several_workers(capsys, write_study):
    path = write_study(tiny_study_text())
    _fails_cleanly(capsys, ["run", str(path), "--workers", "2"], path.parent, "SQLite cannot serve 2 parallel workers", "journal")


def test_unreachable_postgres_hides_the_password(capsys, write_study):
    path = write_study(tiny_study_text(extra="storage: postgresql://alice:s3cret@127.0.0.1:1/none\n"))
    code = main(["run", str(path), "--phase", "search"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot open" in err and "s3cret" not in err and "alice:***@" in err
    assert len(err.strip().splitlines()) == 1


def test_check_validates_without_running(capsys, write_study):
    path = write_study(tiny_study_text())
    assert main(["check", str(path)]) == 0
    assert "ok" in capsys.readouterr().out
    assert not (path.parent / "runs").exists()


def test_ctrl_c_marks_the_trial_failed_and_the_next_run_continues(capsys, write_study, monkeypatch):
    import ablate.study.trial as trial_module

    path = write_study(tiny_study_text(name="interrupt", n_trials=2))
    real = trial_module.train_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trial_module, "train_run", interrupted)
    assert main(["run", str(path), "--quiet"]) == 130
    assert "interrupted" in capsys.readouterr().err
    monkeypatch.setattr(trial_module, "train_run", real)
    assert main(["run", str(path), "--quiet"]) == 0
    cfg = load_study(path)
    trials = search_study(cfg, open_storage(resolve_paths(cfg, path).storage)).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[0].user_attrs["fail_reason"] == "interrupted (Ctrl-C)"


def test_a_failing_trial_is_recorded_and_the_study_goes_on(capsys, write_study, monkeypatch):
    import ablate.study.trial as trial_module
    from ablate.errors import TrainingError

    path = write_study(tiny_study_text(name="nan", n_trials=2))
    real = trial_module.train_run
    calls = []

    def nan_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise TrainingError("loss became nan in epoch 1 (lr 0.01): training diverged")
        return real(*args, **kwargs)

    monkeypatch.setattr(trial_module, "train_run", nan_once)
    assert main(["run", str(path), "--quiet"]) == 0
    cfg = load_study(path)
    trials = search_study(cfg, open_storage(resolve_paths(cfg, path).storage)).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert "loss became nan" in trials[0].user_attrs["fail_reason"]


def test_without_a_study_file_run_uses_the_embedded_quickstart(tmp_path):
    from ablate.study import load_study_file

    cfg, paths = load_study_file(None)
    assert cfg.name == "quickstart" and cfg.dataset.name == "digits"
    assert paths.storage == f"sqlite:///{tmp_path / 'runs' / 'quickstart.db'}"  # under the working folder
    from pathlib import Path

    shipped = Path(__file__).parent.parent / "studies" / "quickstart.yaml"
    assert paths.study_file.read_text() == shipped.read_text()


def test_gpus_start_one_worker_per_gpu_each_seeing_only_its_own(write_study, monkeypatch, fake_workers):
    import ablate.cli as cli

    path = write_study(tiny_study_text(name="gpus", extra="storage: journal:///runs/gpus.journal\n"))
    started = fake_workers
    monkeypatch.setattr(cli, "print_search_summaries", lambda *args: None)
    assert main(["run", str(path), "--gpus", "2,3", "--phase", "search"]) == 0
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in started] == ["2", "3"]
    assert all(cmd[-4:] == ["search", "--quiet", "--workers", "2"] for cmd, _ in started)
    assert all(env["ABLATE_WORKER"] in ("0", "1") for _, env in started)


# ---------------------------------------------------------------------------------------------
# ablate plan


_SEQUENTIAL = "name: seq\nrepeats:\n  seeds: {min: 5, max: 20, step: 5}\n  contrasts: [[fmce, nfmce]]\n"


def test_plan_json_has_the_design_and_its_error_rates(capsys, write_study):
    import json

    path = write_study(_SEQUENTIAL)
    assert main(["plan", str(path), "--sd", "0.8", "--effect", "1.0", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["looks"] == [5, 10, 15, 20] and plan["max_seeds"] == 20 and plan["comparisons"] == 1
    first = plan["boundaries"][0]
    assert first["n"] == 5 and first["t"] > 25  # O'Brien-Fleming cannot stop at 5 seeds
    assert plan["false_positive_rate"] <= 0.05 + 3 * plan["mc_se"]
    assert 0.0 <= plan["false_equivalence_rate"] <= 0.05
    assert 0.9 < plan["power"] <= 1.0 and plan["expected_seeds"] < 20
    assert plan["sd_source"] == "--sd" and plan["effect_source"] == "--effect"


def test_plan_table_says_what_was_assumed(capsys, write_study):
    path = write_study("name: fixed\nrepeats: {seeds: 5, rope: 0.2}\n")
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "fixed design, 5 seeds" in out
    assert "1 points (assumed: no --sd" in out and "0.6 points (3 x repeats.rope)" in out
    assert "3 comparisons (3 contrasts x 1 data set)" in out  # all pairs of the default arms


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--sd", "abc"], ["--sd: expected a positive number of points (got 'abc')"]),
        (["--sd", "-1"], ["--sd: expected a positive number"]),
        (["--sd", "nan"], ["--sd: expected a positive number"]),
        (["--effect", "0"], ["--effect: expected a positive number"]),
    ],
)
def test_plan_bad_options(capsys, write_study, argv, needles):
    path = write_study(_SEQUENTIAL)
    _fails_cleanly(capsys, ["plan", str(path), *argv], path.parent, *needles)


def test_plan_bad_study(capsys, write_study, tmp_path):
    _fails_cleanly(capsys, ["plan", str(tmp_path / "nope.yaml")], tmp_path, "cannot read study file")
    path = write_study("name: x\n")
    _fails_cleanly(capsys, ["plan", str(path)], path.parent, "no 'repeats' section")
    path = write_study("name: x\nrepeats: {seeds: {min: 5, max: 20}}\n")
    _fails_cleanly(capsys, ["plan", str(path)], path.parent, "repeats.seeds.step: required setting is missing")
    path = write_study("name: x\nrepeats: {seeds: 5, rope: 0}\n")
    _fails_cleanly(capsys, ["plan", str(path)], path.parent, "pass --effect")


def test_report_refuses_a_negative_still_rising_as_the_study_file_does(capsys, tmp_path, write_study):
    rows = "".join(f"digits,{arm},{seed},{0.8 + 0.01 * seed}\n" for arm in ("a", "b") for seed in range(3))
    (tmp_path / "results.csv").write_text("dataset,arm,seed,accuracy\n" + rows)
    out = tmp_path / "report"
    argv = ["report", "--results", str(tmp_path / "results.csv"), "--out", str(out), "--still-rising", "-1"]
    _fails_cleanly(capsys, argv, tmp_path, "still_rising must be a finite number of points >= 0, got -1.0")
    assert not out.exists()
    path = write_study("name: x\nrepeats: {still_rising: -1}\n")
    _fails_cleanly(capsys, ["check", str(path)], path.parent, "repeats.still_rising: Input should be greater than or equal to 0")
