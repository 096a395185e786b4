from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from optuna.trial import TrialState

from ablate.cli import main
from ablate.config import load_study
from ablate.study import (
    CellSettings,
    RepeatCell,
    adapter,
    cell_settings,
    collect_results,
    open_storage,
    repeat_cells,
    repeat_config,
    repeats_study,
    resolve_paths,
    run_repeats,
    run_search,
    run_searches,
    search_study,
)
from tests.conftest import tiny_study_text

REPEATS = "repeats:\n  seeds: 2\n  params: best\n  max_retries: 1\n"


def _setup(write_study, name):
    path = write_study(tiny_study_text(name=name, n_trials=1, extra=REPEATS))
    cfg = load_study(path)
    return path, cfg, resolve_paths(cfg, path)


def test_cells_pair_arms_by_seed_on_the_best_hyperparameters(write_study):
    path, cfg, paths = _setup(write_study, "cells")
    cells = repeat_cells(cfg)
    assert len(cells) == 6 and {c.arm for c in cells} == {"fmce", "nfmce", "single"}
    study = run_search(cfg, paths)
    best = CellSettings(study.best_trial.params, "fp32")
    run = repeat_config(cfg, best, RepeatCell("nfmce", "digits", 1))
    assert run.model.arm == "nfmce" and run.train.seed == 1 and run.train.lr == best.settings["train.lr"]
    assert run.train.precision == "fp32"
    assert run.model.model1.lr == cfg.train.lr  # the stage-1 recipe is the study's, not the trial's
    assert repeat_config(cfg, best, RepeatCell("single", "digits", 1)).model.kind == "single"
    # the test split is the study's; the train/validation partition is the seed's (repeats.vary)
    assert run.dataset.split_seed == cfg.dataset.split_seed and run.dataset.partition == 1


def test_repeats_resume_after_an_interruption_with_exact_counts(write_study):
    path, cfg, paths = _setup(write_study, "resume")
    run_search(cfg, paths)
    run_repeats(cfg, paths, max_trials=2)  # interrupted after two cells
    study = repeats_study(cfg, open_storage(paths.storage))
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
    run_repeats(cfg, paths)
    run_repeats(cfg, paths)  # a finished run adds nothing
    trials = study.get_trials()
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    cells = {(t.params["arm"], t.params["dataset"], t.params["seed"]) for t in trials}
    assert cells == {(c.arm, c.dataset, c.seed) for c in repeat_cells(cfg)}
    data = collect_results(cfg, paths)
    assert len(data.results) == 6 and not data.missing
    for t in trials:
        assert (t.user_attrs["head_similarity"] is None) == (t.params["arm"] == "single")
        assert t.user_attrs["seed"] == t.params["seed"]


def test_a_dead_workers_repeat_is_run_again(write_study):
    path, cfg, paths = _setup(write_study, "dead")
    run_search(cfg, paths)
    study = repeats_study(cfg, open_storage(paths.storage))
    study.enqueue_trial({"arm": "fmce", "dataset": "digits", "seed": 0}, user_attrs=cell_settings(cfg, paths, "fmce").user_attrs())
    trial = study.ask()  # claimed by a worker that then died
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    adapter.storage_of(study).set_trial_system_attr(adapter.trial_id(trial), "ablate:worker",
                                                    {"host": __import__("socket").gethostname(), "pid": dead.pid})
    run_repeats(cfg, paths)
    trials = study.get_trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 6
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "died" in failed[0].user_attrs["fail_reason"]
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    # it died before its first suggest: its cell travels in the enqueued 'fixed_params'
    assert len(retried) == 1 and retried[0].params == failed[0].system_attrs["fixed_params"]
    assert "fail_reason" not in retried[0].user_attrs


def test_a_cell_that_keeps_failing_is_named_missing_in_the_report(write_study, monkeypatch):
    import ablate.study.trial as trial_module
    from ablate.errors import TrainingError

    path, cfg, paths = _setup(write_study, "missing")
    run_search(cfg, paths)
    real = trial_module.train_run

    def fail_single_seed1(run_cfg, **kwargs):
        if run_cfg.model.kind == "single" and run_cfg.train.seed == 1:
            raise TrainingError("loss became nan in epoch 1: training diverged")
        return real(run_cfg, **kwargs)

    monkeypatch.setattr(trial_module, "train_run", fail_single_seed1)
    given_up = run_repeats(cfg, paths)
    assert given_up == [RepeatCell("single", "digits", 1)]
    study = repeats_study(cfg, open_storage(paths.storage))
    assert len(study.get_trials(states=(TrialState.FAIL,))) == 2  # first try and one retry
    assert main(["report", str(path)]) == 0
    report = (paths.report_dir / "report.md").read_text()
    assert "single/digits/seed 1" in report


def test_report_from_storage_and_from_its_results_csv_agree(write_study, tmp_path, capsys):
    path, cfg, paths = _setup(write_study, "report")
    assert main(["run", str(path), "--quiet"]) == 0
    folder = paths.report_dir
    for name in ("report.md", "results.csv", "comparisons.csv"):
        assert (folder / name).exists()
    results = pd.read_csv(folder / "results.csv")
    assert list(results.columns) == ["dataset", "arm", "seed", "accuracy", "params", "trainable_params",
                                     "train_images", "n_test", "val_gain_last_quarter", "wall_time", "split"]
    assert len(results) == 6 and (results["n_test"] == 30).all()
    comparisons = pd.read_csv(folder / "comparisons.csv")
    assert [tuple(r) for r in comparisons[["arm_a", "arm_b"]].values] == [("fmce", "nfmce"), ("nfmce", "single"), ("fmce", "single")]
    report = (folder / "report.md").read_text()
    assert "git_commit" in report and "torch" in report
    assert "## Head similarity" in report and "| digits | fmce | 2 |" in report
    out = tmp_path / "again"
    assert main(["report", "--results", str(folder / "results.csv"), "--out", str(out)]) == 0
    assert (out / "comparisons.csv").read_bytes() == (folder / "comparisons.csv").read_bytes()
    study = repeats_study(cfg, open_storage(paths.storage))
    from optuna_dashboard import get_note

    note = get_note(study)
    assert "fmce vs nfmce" in note.lower() and "report.md" in note


FIXED = "repeats:\n  seeds: 2\n  params: fixed\n  arms: {{fmce: {{model.constraint.on: true}}, single: {{model.kind: single}}}}\n"


def _fixed_study(write_study, name, train_lr, model1_lr):
    text = tiny_study_text(name=name, n_trials=0, init="stage1", extra=FIXED.format())
    text = text.replace("seed: 0, device: cpu}", f"seed: 0, device: cpu, lr: {train_lr}}}")
    text = text.replace("init: stage1, freeze: true}", f"init: stage1, freeze: true, lr: {model1_lr}}}")
    path = write_study(text)
    cfg = load_study(path)
    return cfg, resolve_paths(cfg, path)


def _stage1_records(cfg, paths):
    trials = repeats_study(cfg, open_storage(paths.storage)).get_trials(states=(TrialState.COMPLETE,))
    return {t.params["seed"]: t.user_attrs["extras"]["stage1"] for t in trials if t.params["arm"] == "fmce"}


def test_a_model1_recipe_of_its_own_trains_stage1_apart_from_the_single_arm(write_study):
    cfg, paths = _fixed_study(write_study, "apart", train_lr=2.0e-3, model1_lr=4.0e-4)
    run_repeats(cfg, paths)
    records = _stage1_records(cfg, paths)
    assert set(records) == {0, 1}
    for seed, rec in records.items():
        assert rec["reused"] is False and rec["recipe"]["lr"] == 4.0e-4 and rec["recipe"]["epochs"] == 1
        assert f"seed{seed}" in rec["checkpoint"]
    single_lr = {t.user_attrs["config"]["train"]["lr"] for t in repeats_study(cfg, open_storage(paths.storage)).get_trials()
                 if t.params["arm"] == "single"}
    assert single_lr == {2.0e-3}


def test_a_single_arm_with_the_stage1_recipe_serves_as_model1(write_study):
    cfg, paths = _fixed_study(write_study, "shared", train_lr=1.0e-3, model1_lr=1.0e-3)
    run_repeats(cfg, paths)
    records = _stage1_records(cfg, paths)
    assert all(rec["reused"] is True and rec["recipe"]["lr"] == 1.0e-3 for rec in records.values())
    data = collect_results(cfg, paths)
    rows = data.results.set_index(["arm", "seed"])
    # the DueHeadNet's training images count its stage 1, reused or not
    assert (rows.loc[("fmce", 0), "train_images"] == 2 * rows.loc[("single", 0), "train_images"])
    assert rows.loc[("fmce", 0), "params"] > rows.loc[("fmce", 0), "trainable_params"]
    assert rows.loc[("single", 0), "n_test"] == 30


PER_ARM = ("repeats:\n  seeds: 2\n  max_retries: 1\n  arms: {fmce: {model.kind: dual, model.constraint.on: true}, "
           "nfmce: {model.kind: dual, model.constraint.on: false}, single: {model.kind: single}}\n")


def test_every_arm_gets_its_own_search_with_the_same_budget(write_study):
    path = write_study(tiny_study_text(name="perarm", n_trials=2, extra=PER_ARM))
    cfg = load_study(path)
    paths = resolve_paths(cfg, path)
    assert cfg.tuning == "per-arm"
    studies = {s.arm: study for s, study in run_searches(cfg, paths).items()}
    assert set(studies) == {"fmce", "nfmce", "single"}
    params = {}
    for arm, study in studies.items():
        assert study.study_name == f"perarm:search:{arm}"
        trials = study.get_trials()
        assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
        params[arm] = {frozenset(t.params) for t in trials}
    # only the dimensions that apply: the arm fixes constraint.on; NFMCE has no weight; single no constraint
    assert params["fmce"] == {frozenset({"model.constraint.weight", "train.lr"})}
    assert params["nfmce"] == {frozenset({"train.lr"})}
    assert params["single"] == {frozenset({"train.lr"})}
    # the same sampler seed: the first trials of two arms with the same space draw the same lr
    assert studies["nfmce"].trials[0].params == studies["single"].trials[0].params

    # settings are decided when a cell is enqueued and read back from it
    run_repeats(cfg, paths, max_trials=1)
    study = repeats_study(cfg, open_storage(paths.storage))
    stored = {t.params.get("arm") or t.system_attrs["fixed_params"]["arm"]: t.user_attrs["settings"]
              for t in study.get_trials()}
    best = {arm: s.best_trial.params for arm, s in studies.items()}
    assert stored == best
    import optuna

    fmce_search = search_study(cfg, open_storage(paths.storage), "fmce")
    fmce_search.add_trial(optuna.trial.create_trial(
        value=1.0, params={"model.constraint.weight": 1.5, "train.lr": 1.2e-4},
        distributions=fmce_search.trials[0].distributions))  # a better trial after enqueueing
    run_repeats(cfg, paths)
    trials = study.get_trials()
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert t.user_attrs["settings"] == best[t.params["arm"]]
        assert t.user_attrs["config"]["train"]["lr"] == best[t.params["arm"]]["train.lr"]
        assert t.user_attrs["tuning"]["method"] == "per-arm"
    tuning = collect_results(cfg, paths).tuning
    assert tuning["fmce"]["settings"] == best["fmce"] and len(tuning["fmce"]["search_values"]) == 3
    assert tuning["single"]["n_trials"] == 2


# ------------------------------------------------------------------------------ sequential seeds

# Three single-head arms told apart by their learning rate; the fake training below gives each a
# known accuracy per seed, so the looks are exact and the test runs in seconds.
LOOKS = ("repeats:\n  seeds: {{min: 5, max: 15, step: 5}}\n  spending: pocock\n  params: fixed\n  max_retries: 1\n"
         "  arms: {{a: {{model.kind: single, train.lr: 0.001}}, b: {{model.kind: single, train.lr: 0.002}}, "
         "c: {{model.kind: single, train.lr: {c_lr}}}}}\n")


# points above arm a's accuracy, per seed: b is about 10 points behind (decided at the first look);
# c is 1 point ahead with an sd of about 0.6: |t| = 3.2 at 5 seeds, below Pocock's 4.99 (3
# comparisons, looks 5/10/15), and 5.7 at 10 seeds, above 3.58, so c keeps every arm going to the
# second look and the design stops there. No difference is constant: zero spread decides nothing.
AHEAD = {0.001: [0.0] * 15, 0.002: [-10.2, -9.8, -10.1, -9.9, -10.0] * 3,
         0.003: [1.8, 0.2, 1.5, 0.4, 1.1, 1.6, 0.3, 1.2, 0.9, 1.0, 5.0, 5.0, 5.0, 5.0, 5.0]}


def _fake_training(ahead):
    """A train_run stand-in: arm a's accuracy wobbles by seed, the others sit ``ahead`` of it."""
    from tests.conftest import fake_result

    def train_run(run_cfg, **kwargs):
        seed, lr = run_cfg.train.seed, run_cfg.train.lr
        return fake_result([0.80 + (seed % 3) / 100 + ahead[lr][seed] / 100], lr, n_test=1000)

    return train_run


def test_sequential_looks_add_batches_until_every_contrast_is_decided(write_study, monkeypatch):
    import ablate.study.trial as trial_module
    from ablate.analysis import SequentialPlan
    from ablate.stats import sequential_look
    from ablate.study import repeats_progress

    path = write_study(tiny_study_text(name="looks", n_trials=0, extra=LOOKS.format(c_lr=0.003)))
    cfg = load_study(path)
    paths = resolve_paths(cfg, path)
    monkeypatch.setattr(trial_module, "train_run", _fake_training(AHEAD))
    monkeypatch.setattr(trial_module, "upload_curve", lambda *args: None)  # half the time, not under test
    assert run_repeats(cfg, paths) == []
    trials = repeats_study(cfg, open_storage(paths.storage)).get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # two looks of 5 seeds for every arm; the third batch is never enqueued
    assert sorted((t.params["arm"], t.params["seed"]) for t in trials) == [(a, s) for a in "abc" for s in range(10)]
    assert {t.params["seed"]: t.user_attrs["look"] for t in trials} == {s: s // 5 + 1 for s in range(10)}
    progress = repeats_progress(cfg, trials)
    assert progress.stopped and progress.seeds == 10 and progress.look.look == 2
    decisions = progress.look.decisions
    assert [(k[1], k[2], d.decision, d.look) for k, d in decisions.items()] == [
        ("a", "b", "A better", 1), ("a", "c", "B better", 2), ("b", "c", "B better", 1)]
    # the same verdicts from the results table, as the report computes them
    data = collect_results(cfg, paths)
    assert list(data.results["look"]) == [s // 5 + 1 for s in data.results["seed"]] and not data.missing
    again = sequential_look(data.results, SequentialPlan(looks=(5, 10, 15), spending="pocock", comparisons=3))
    assert again.decisions == decisions
    run_repeats(cfg, paths)  # a stopped design adds nothing
    assert len(repeats_study(cfg, open_storage(paths.storage)).get_trials()) == len(trials)


def test_a_fixed_design_plans_every_seed_at_once(write_study, monkeypatch):
    import ablate.study.trial as trial_module
    from ablate.study import sequential_settings

    text = tiny_study_text(name="fixedlooks", n_trials=0, extra=LOOKS.format(c_lr=0.003))
    path = write_study(text.replace("seeds: {min: 5, max: 15, step: 5}", "seeds: 3"))
    cfg = load_study(path)
    paths = resolve_paths(cfg, path)
    monkeypatch.setattr(trial_module, "train_run", _fake_training(AHEAD))
    monkeypatch.setattr(trial_module, "upload_curve", lambda *args: None)  # half the time, not under test
    run_repeats(cfg, paths)
    trials = repeats_study(cfg, open_storage(paths.storage)).get_trials()
    assert len(trials) == 9 and all(t.state == TrialState.COMPLETE for t in trials)
    data = collect_results(cfg, paths)
    assert "look" not in data.results.columns and sequential_settings(cfg) is None


# Two single heads on the tiny digits: one learns (about 60% after 6 epochs), one is starved of a
# learning rate (chance, 10%). Pocock's first look at 5 seeds needs |t| > 3.61; here it is ~20.
STARVED = ("repeats:\n  seeds: {min: 5, max: 15, step: 5}\n  spending: pocock\n  params: fixed\n"
           "  arms: {good: {model.kind: single, model.backbone: test_resnet, train.lr: 0.01}, "
           "starved: {model.kind: single, model.backbone: test_resnet, train.lr: 1.0e-7}}\n")


def starved_study_text(name: str, storage: str = "") -> str:
    text = tiny_study_text(name=name, n_trials=0, epochs=6, extra=STARVED + storage)
    return text.replace("subset: 150", "subset: 300")


@pytest.fixture(scope="module")
def stopped_early(tmp_path_factory):
    """A sequential study run once through `ablate run`: (study file, config, paths)."""
    import os

    folder = tmp_path_factory.mktemp("stopped")
    path = folder / "study.yaml"
    path.write_text(starved_study_text("early"))
    before = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["run", str(path), "--quiet"]) == 0
        cfg = load_study(path)
        return path, cfg, resolve_paths(cfg, path)
    finally:
        os.chdir(before)


def test_a_large_difference_stops_the_repeats_at_the_first_look(stopped_early):
    path, cfg, paths = stopped_early
    trials = repeats_study(cfg, open_storage(paths.storage)).get_trials()
    assert sorted((t.params["arm"], t.params["seed"]) for t in trials) == [
        (arm, seed) for arm in ("good", "starved") for seed in range(5)]  # 5 of 15 seeds per arm
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["look"] == 1 for t in trials)
    folder = paths.report_dir
    results = pd.read_csv(folder / "results.csv")
    assert list(results["look"]) == [1] * 10
    seq = pd.read_csv(folder / "sequential.csv")
    row = seq.iloc[0]
    assert len(seq) == 1 and (row["arm_a"], row["arm_b"]) == ("good", "starved")
    assert (row["decision"], row["look"], row["n"], row["boundary"], row["seeds_run"]) == ("A better", 1, 5, "upper", 5)
    assert row["critical"] == pytest.approx(3.6058, abs=1e-3)  # Pocock-type, 1 comparison, looks 5/10/15
    by_arm = results.set_index(["arm", "seed"])["accuracy"]
    d = (by_arm["good"] - by_arm["starved"]).to_numpy() * 100
    half = row["critical"] * d.std(ddof=1) / 5 ** 0.5
    assert (row["interval_low"], row["interval_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert row["effect_source"] == "3 x rope" and row["effect"] == pytest.approx(3 * 100 / 60)  # one of 60 test images
    assert row["fixed_seeds_same_power"] >= 2 and 0 < row["power"] <= 1
    comparisons = pd.read_csv(folder / "comparisons.csv")
    assert comparisons[["p_holm", "p_tost_holm", "mde_80"]].isna().all().all()
    assert comparisons["verdict"].iloc[0].startswith("significant: good better (sequential, look 1)")
    report = (folder / "report.md").read_text()
    assert "decided at look 1 (5 seeds), upper boundary" in report and "## Sequential seeds" in report
    tables = report.split("## Procedure")[0]
    assert "p Holm" not in tables and "MDE 80%" not in tables
    assert "the Holm p-values and MDE 80% are not shown" in report
    assert "planned run" not in report  # the seeds a stopped design never ran are not missing


def test_a_sequential_report_regenerates_byte_for_byte(stopped_early, tmp_path):
    import json

    _, _, paths = stopped_early
    folder = paths.report_dir
    assert json.loads((folder / "analysis.json").read_text())["sequential"] == {
        "looks": [5, 10, 15], "spending": "pocock", "comparisons": 1}
    out = tmp_path / "again"
    assert main(["report", "--results", str(folder / "results.csv"), "--out", str(out)]) == 0
    for name in ("results.csv", "analysis.json", "comparisons.csv", "sequential.csv", "across.csv", "summaries.csv"):
        assert (out / name).read_bytes() == (folder / name).read_bytes(), name


def test_plan_reads_the_sd_of_the_earlier_repeats(stopped_early, capsys):
    import json

    import numpy as np

    from ablate.study import earlier_sd

    path, cfg, paths = stopped_early
    results = pd.read_csv(paths.report_dir / "results.csv").set_index(["arm", "seed"])["accuracy"]
    d = (results["good"] - results["starved"]) * 100
    sd, source = earlier_sd(cfg, paths)
    assert sd == pytest.approx(float(np.std(d, ddof=1)))
    assert source == "earlier repeats: pooled over 1 contrast x data set row, 5 paired seeds"
    assert main(["plan", str(path), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["sd"] == pytest.approx(sd) and plan["sd_source"] == source
    assert plan["rope"] == pytest.approx(100 / 60) and "60 test images" in plan["rope_source"]


def test_earlier_sd_is_none_without_repeats_and_creates_nothing(write_study, tmp_path):
    from ablate.study import earlier_sd

    path = write_study(starved_study_text("fresh"))
    cfg = load_study(path)
    assert earlier_sd(cfg, resolve_paths(cfg, path)) is None
    assert not (tmp_path / "runs").exists()


FUSED = ("repeats:\n  seeds: 2\n  params: fixed\n  fuse: 2\n  max_retries: 1\n"
         "  arms: {fmce: {model.kind: dual, model.constraint.on: true}, single: {model.kind: single}, "
         "ensemble: {control: ensemble}}\n")


def _fused_study(write_study, name):
    # fp32: CPU autocast leaves the fused (grouped) convolutions in fp32 while lone ones run in
    # bf16, so on a CPU with native bf16 (where auto is bf16) fusion fails its self-check.
    text = tiny_study_text(name=name, n_trials=0, init="stage1", extra=FUSED)
    return write_study(text.replace("device: cpu}", "device: cpu, precision: fp32}"))


def test_fused_repeats_keep_one_trial_and_one_record_per_seed(write_study):
    path = _fused_study(write_study, "fused")
    cfg = load_study(path)
    paths = resolve_paths(cfg, path)
    run_repeats(cfg, paths)
    trials = repeats_study(cfg, open_storage(paths.storage)).get_trials()
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    by_cell = {(t.params["arm"], t.params["seed"]): t for t in trials}
    for arm in ("fmce", "single"):  # two seeds of the arm trained as one fused model
        pair = [by_cell[(arm, seed)] for seed in (0, 1)]
        fused = [t.user_attrs["extras"]["fused"] for t in pair]
        assert [f["k"] for f in fused] == [2, 2] and sorted(f["index"] for f in fused) == [0, 1]
        assert [t.user_attrs["seed"] for t in pair] == [0, 1]
        assert [t.user_attrs["config"]["train"]["seed"] for t in pair] == [0, 1]
        assert all(len(t.user_attrs["curves"]) == 1 and t.intermediate_values == {1: t.value} for t in pair)
        assert pair[0].user_attrs["curves"] != pair[1].user_attrs["curves"]  # each seed its own run
    assert all("fused" not in by_cell[("ensemble", s)].user_attrs.get("extras", {}) for s in (0, 1))
    assert by_cell[("fmce", 0)].user_attrs["train_images"] == 2 * by_cell[("single", 0)].user_attrs["train_images"]


def test_a_worker_killed_between_its_cells_parameters_leaves_the_cell_run_once(write_study, monkeypatch):
    """A worker can die after the first of the three suggests that read its cell (arm, then data
    set, then seed): its trial then holds {"arm": ...} alone, and so does the retry that copies it.
    Both still belong to the enqueued cell; nothing may enqueue that cell again (found by the kill
    soak: a cell run twice)."""
    import socket

    import ablate.study.trial as trial_module

    path = write_study(tiny_study_text(name="partial", n_trials=0, extra=LOOKS.format(c_lr=0.003).replace(
        "seeds: {min: 5, max: 15, step: 5}", "seeds: 2")))
    cfg = load_study(path)
    paths = resolve_paths(cfg, path)
    monkeypatch.setattr(trial_module, "train_run", _fake_training(AHEAD))
    monkeypatch.setattr(trial_module, "upload_curve", lambda *args: None)
    run_repeats(cfg, paths, max_trials=0)  # enqueues every cell, runs none
    study = repeats_study(cfg, open_storage(paths.storage))
    trial = study.ask()  # the first cell, claimed by a worker that then died ...
    trial.suggest_categorical("arm", list(cfg.arms))  # ... right after its first suggest
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    adapter.storage_of(study).set_trial_system_attr(adapter.trial_id(trial), "ablate:worker",
                                                    {"host": socket.gethostname(), "pid": dead.pid, "trial": trial.number})
    assert run_repeats(cfg, paths) == []
    done = [RepeatCell.of(t) for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert sorted(done) == sorted(repeat_cells(cfg)), "every cell exactly once"
    trials = study.get_trials()
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [trial.number]
    assert len(trials) == len(repeat_cells(cfg)) + 1, "no cell enqueued a second time"


def test_seeds_train_one_at_a_time_when_fusion_fails_its_check(write_study, monkeypatch, capsys):
    """A study never fails because fusion does: the worker trains the claimed seeds one after the
    other, says why in one line, and each trial keeps the reason."""
    import ablate.study.repeats as repeats_module

    reason = "fusion self-check on cpu, torch x, fp32: 2 seeds fused differ from them alone (worst error 3.1 of the tolerance)"
    monkeypatch.setattr(repeats_module, "fusion_ok", lambda cfg: (False, reason))
    path = _fused_study(write_study, "unfused")
    cfg = load_study(path)
    paths = resolve_paths(cfg, path)
    from ablate.study import QuietEvents

    class Messages(QuietEvents):
        said: list = []

        def message(self, text):
            self.said.append(text)

    events = Messages()
    run_repeats(cfg, paths, events)
    trials = repeats_study(cfg, open_storage(paths.storage)).get_trials()
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    by_cell = {(t.params["arm"], t.params["seed"]): t for t in trials}
    for arm in ("fmce", "single"):
        for seed in (0, 1):
            t = by_cell[(arm, seed)]
            assert "fused" not in t.user_attrs.get("extras", {}) and t.user_attrs["fusion"] == reason
    assert sum(f"seeds train one at a time: {reason}" in m for m in events.said) == 2  # one line per claimed pair
