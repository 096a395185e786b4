"""A search's winner confirmed on fresh seeds, and independent search replicates (issue 17).

A stand-in training gives each learning rate a known validation accuracy per seed, so which
trial wins the search, which wins the confirmation and what the repeats run with are exact.
"""

from __future__ import annotations

import dataclasses

import pytest
from optuna.trial import TrialState

from ablate.config import load_study
from ablate.study import (CellSettings, RepeatCell, cell_settings, collect_results, confirmation, open_storage,
                          repeat_cells, repeats_study, resolve_paths, run_repeats, run_searches, search_study)
from ablate.study.confirm import confirm_seeds
from ablate.study.storage import confirm_study, sampler_seed
from tests.conftest import fake_result, tiny_study_text

# Four learning rates, each tried once by the grid sampler. At the search's seed (0) the two
# largest look best, 4e-3 above all, by luck; at any other seed 2e-3 is better than 4e-3.
BASE = {5.0e-4: 0.67, 1.0e-3: 0.70, 2.0e-3: 0.67, 4.0e-3: 0.64}
LUCK = {2.0e-3: 0.10, 4.0e-3: 0.25}

STUDY = """\
name: {name}
dataset: {{name: digits, image_size: 16, subset: 150}}
train: {{epochs: 1, batch_size: 32, seed: 0, device: cpu}}
model: {{kind: single, backbone: test_resnet}}
search:
  n_trials: {n_trials}
  sampler: {{name: grid, seed: 5}}
  pruner: {{name: none}}
  space:
    train.lr: {{choices: [5.0e-4, 1.0e-3, 2.0e-3, 4.0e-3]}}
  {extra}
repeats:
  seeds: 2
  arms: {{a: {{model.kind: single}}, b: {{model.kind: single, train.weight_decay: 1.0e-3}}}}
"""


def _fake_training(calls: list):
    def train_run(run_cfg, **kwargs):
        lr, seed = run_cfg.train.lr, run_cfg.train.seed
        calls.append((lr, seed))
        acc = BASE[lr] + (LUCK.get(lr, 0.0) if seed == 0 else 0.0) + 0.001 * (seed % 3)
        return fake_result([acc], lr, n_test=30)

    return train_run


@pytest.fixture
def fake(monkeypatch):
    import ablate.study.trial as trial_module

    calls: list = []
    monkeypatch.setattr(trial_module, "train_run", _fake_training(calls))
    monkeypatch.setattr(trial_module, "upload_curve", lambda *args: None)
    return calls


def _study(write_study, name, n_trials, extra):
    path = write_study(STUDY.format(name=name, n_trials=n_trials, extra=extra))
    cfg = load_study(path)
    return cfg, resolve_paths(cfg, path)


def test_confirmation_picks_the_best_mean_over_fresh_seeds_not_the_luckiest_trial(write_study, fake):
    cfg, paths = _study(write_study, "confirm", 8, "confirm: {top: 2, seeds: 2}")
    assert cfg.search.search_trials == 4  # the confirmation's 2 x 2 runs are in the budget of 8
    run_searches(cfg, paths)
    storage = open_storage(paths.storage)
    for arm in ("a", "b"):
        search = search_study(cfg, storage, arm).get_trials()
        runs = confirm_study(cfg, storage, arm).get_trials()
        assert len(search) == 4 and len(runs) == 4, "every arm spends the same budget of 8 runs"
        assert all(t.state == TrialState.COMPLETE for t in search + runs)
        by_lr = {t.params["train.lr"]: t.number for t in search}
        c = confirmation(cfg, paths, arm)
        assert [cand.trial for cand in c.candidates] == [by_lr[4.0e-3], by_lr[2.0e-3]]  # best search values first
        assert c.winner.trial == by_lr[2.0e-3], "the confirmation overrules the luckiest search trial"
        wobble = [0.001 * (seed % 3) for seed in confirm_seeds(cfg)]
        assert c.winner.values == pytest.approx([0.67 + w for w in wobble])
        assert c.candidates[0].mean == pytest.approx(0.64 + sum(wobble) / 2)  # the search's own run is not in it
        settings = cell_settings(cfg, paths, arm)
        assert settings.settings == {"train.lr": 2.0e-3} and "confirmation seeds" in settings.tuning["source"]
    seeds = {seed for _, seed in fake}
    assert set(confirm_seeds(cfg)) <= seeds and not set(confirm_seeds(cfg)) & {c.seed for c in repeat_cells(cfg)}


def test_the_repeats_run_the_confirmed_settings_and_the_tuning_record_shows_both_winners(write_study, fake):
    cfg, paths = _study(write_study, "confirmed", 8, "confirm: {top: 2, seeds: 2}")
    run_searches(cfg, paths)
    run_repeats(cfg, paths)
    trials = repeats_study(cfg, open_storage(paths.storage)).get_trials()
    assert len(trials) == 4 and {t.user_attrs["config"]["train"]["lr"] for t in trials} == {2.0e-3}
    tuning = collect_results(cfg, paths).tuning["a"]
    confirm = tuning["confirm"]
    assert (confirm["top"], confirm["seeds"]) == (2, 2)
    lrs = {c["trial"]: c for c in confirm["candidates"]}
    assert confirm["search_winner"] != confirm["confirm_winner"]
    assert lrs[confirm["confirm_winner"]]["mean"] > lrs[confirm["search_winner"]]["mean"]
    search = sorted(search_study(cfg, open_storage(paths.storage), "a").get_trials(), key=lambda t: t.number)
    assert tuning["search_values"] == [t.value for t in search] and tuning["search_pruned"] == [False] * 4


def test_replicates_are_independent_searches_seeded_from_the_study(write_study, fake):
    path = write_study(STUDY.format(name="replicates", n_trials=4, extra="replicates: 2").replace("grid", "random"))
    cfg = load_study(path)
    paths = resolve_paths(cfg, path)
    assert sampler_seed(cfg, 0) == 5 and sampler_seed(cfg, 1) != 5
    assert sampler_seed(cfg, 1) == sampler_seed(load_study(path), 1), "the study file fixes it"
    studies = run_searches(cfg, paths)
    assert sorted((s.arm, s.replicate) for s in studies) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert studies[next(s for s in studies if s.arm == "a" and s.replicate == 1)].study_name == "replicates:search:a:r1"
    first = {s.replicate: [t.params["train.lr"] for t in study.get_trials()] for s, study in studies.items() if s.arm == "a"}
    assert first[0] != first[1], "another sampler seed, another sequence of trials"
    cells = repeat_cells(cfg)
    assert len(cells) == 2 * 2 * 2 and {c.replicate for c in cells} == {0, 1}
    run_repeats(cfg, paths)
    data = collect_results(cfg, paths)
    assert sorted(data.results["replicate"].unique()) == [0, 1] and len(data.results) == 8
    record = data.tuning["a"]["replicates"]
    assert [r["replicate"] for r in record] == [0, 1]
    for r in record:
        best = max(studies[next(s for s in studies if s.arm == "a" and s.replicate == r["replicate"])].get_trials(),
                   key=lambda t: (t.value, -t.number))
        assert r["settings"] == best.params and r["value"] == pytest.approx(best.value)
    stored = {(t.params["arm"], t.params["replicate"]): t.user_attrs["settings"]
              for t in repeats_study(cfg, open_storage(paths.storage)).get_trials()}
    assert stored[("a", 1)] == record[1]["settings"]


def test_a_confirmation_that_leaves_too_few_search_trials_is_refused(write_study, capsys):
    from ablate.cli import main

    path = write_study(STUDY.format(name="tight", n_trials=5, extra="confirm: {top: 2, seeds: 2}"))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "leave 1 of n_trials = 5 for the search itself" in err
    assert not (path.parent / "runs").exists()


def test_per_seed_partitions_pair_the_arms_and_key_stage1(write_study):
    """Every arm of a seed draws the same partition (the seed's); the search keeps the study's; a
    source left out of repeats.vary stays fixed; stage 1 is keyed by the partition."""
    from pathlib import Path

    from ablate.study import repeat_config
    from ablate.train import stage1_path

    path = write_study(tiny_study_text(name="vary", n_trials=0, init="stage1",
                                       extra="repeats:\n  seeds: 3\n  first_seed: 4\n  vary: [init, split]\n"))
    cfg = load_study(path)
    runs = {(c.arm, c.seed): repeat_config(cfg, CellSettings(), c) for c in repeat_cells(cfg)}
    for seed in (4, 5, 6):
        fmce, nfmce, single = (runs[(arm, seed)] for arm in ("fmce", "nfmce", "single"))
        assert fmce.dataset.partition == nfmce.dataset.partition == single.dataset.partition == seed
        assert [fmce.train.seed_of(s) for s in ("init", "order", "augment")] == [seed, 0, 0]
        assert stage1_path(fmce, Path(".")) == stage1_path(nfmce, Path("."))
    assert stage1_path(runs[("fmce", 4)], Path(".")) != stage1_path(runs[("fmce", 5)], Path("."))
    assert cfg.run.dataset.partition == cfg.dataset.split_seed == 0  # what the search trains on
    fixed = load_study(write_study(tiny_study_text(name="vary2", n_trials=0, extra="repeats:\n  seeds: 2\n  vary: [init]\n"),
                                   name="fixed.yaml"))
    run = repeat_config(fixed, CellSettings(), RepeatCell("fmce", "digits", 1))
    assert run.dataset.partition == 0 and run.train.seed_of("init") == 1 and run.train.seed_of("order") == 0


def test_plan_counts_every_run_of_the_study(write_study):
    from ablate.study.cost import study_cost

    cfg, paths = _study(write_study, "cost", 8, "confirm: {top: 2, seeds: 2}\n  replicates: 3")
    cost = study_cost(cfg, paths.base)
    assert cost.search_runs == 2 * 3 * 4 and cost.confirm_runs == 2 * 3 * 4  # arms x replicates x runs
    assert cost.repeat_runs == len(repeat_cells(cfg)) == 2 * 2 * 3 and cost.stage1_runs == 0
    per_epoch = cost.images_per_epoch
    assert per_epoch == 90 - 90 % 32 and cost.epochs == cost.runs and cost.training_images == cost.epochs * per_epoch
    assert cost.as_dict()["runs"] == 24 + 24 + 12


def test_a_grid_search_whose_budget_covers_its_grid_runs_to_its_end(write_study, fake):
    """Optuna's grid sampler stops the study once its grid is done, which only Study.optimize
    allows; ablate's own worker loop counts the trials and must not fail there."""
    cfg, paths = _study(write_study, "grid", 6, "")
    studies = run_searches(cfg, paths)
    for study in studies.values():
        trials = study.get_trials()
        assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
        assert {t.params["train.lr"] for t in trials} == set(BASE)  # every point of the grid, then again


def test_the_tuning_record_keeps_a_pruned_trial_at_its_last_reported_value(write_study, monkeypatch):
    """A tuning curve over completed trials only is biased upward and its n is not the trials run:
    the record keeps every trial that ran, a pruned one at the last value it reported."""
    import ablate.study.trial as trial_module

    def train_run(run_cfg, on_epoch=None, **kwargs):  # three epochs; 4e-3 is poor from the start
        lr = run_cfg.train.lr
        curve = [BASE[lr] - (0.3 if lr == 4.0e-3 else 0.0) + 0.01 * e for e in range(3)]
        result = fake_result(curve, lr, n_test=30)
        for epoch in result.curves:
            on_epoch(epoch)  # the pruner may stop the run here
        return result

    monkeypatch.setattr(trial_module, "train_run", train_run)
    monkeypatch.setattr(trial_module, "upload_curve", lambda *args: None)
    text = STUDY.format(name="pruned", n_trials=4, extra="").replace(
        "pruner: {name: none}", "pruner: {name: median, warmup_epochs: 0, startup_trials: 2}")
    path = write_study(text)
    cfg = load_study(path)
    paths = resolve_paths(cfg, path)
    run_searches(cfg, paths)
    run_repeats(cfg, paths)
    search = sorted(search_study(cfg, open_storage(paths.storage), "a").get_trials(), key=lambda t: t.number)
    pruned = [t for t in search if t.state == TrialState.PRUNED]
    assert pruned, "the median pruner stopped a trial below the earlier ones"
    record = collect_results(cfg, paths).tuning["a"]
    assert record["search_pruned"] == [t.state == TrialState.PRUNED for t in search] and record["n_trials"] == 4
    assert record["search_values"] == [t.value if t.state == TrialState.COMPLETE
                                       else t.intermediate_values[max(t.intermediate_values)] for t in search]


def test_plan_counts_the_stage1_runs_of_the_confirmation_seeds(write_study):
    """A DueHeadNet confirmed on a seed of its own needs that seed's stage 1 (shared by the arms)."""
    from ablate.study.cost import study_cost

    text = tiny_study_text(name="s1", n_trials=4, init="stage1").replace(
        "  space:", "  confirm: {top: 1, seeds: 2}\n  space:")
    path = write_study(text)
    cfg = load_study(path)
    assert study_cost(cfg, path.parent).stage1_runs == 1 + 2  # the study seed's and each confirmation seed's


def _failing(calls: list, fails, bonus=None):
    """_fake_training, except that a run fails (TrainingError) when ``fails(lr, seed, tries)`` says so
    (``tries``: how often that lr and seed ran before) and ``bonus`` adds to some runs' accuracy."""
    from ablate.errors import TrainingError

    base = _fake_training([])
    tries: dict = {}

    def train_run(run_cfg, **kwargs):
        key = (run_cfg.train.lr, run_cfg.train.seed)
        tries[key] = tries.get(key, 0) + 1
        calls.append(key)
        if fails(*key, tries[key] - 1):
            raise TrainingError(f"stand-in failure of lr {key[0]} on seed {key[1]}")
        result = base(run_cfg, **kwargs)
        extra = (bonus or {}).get(key, 0.0)
        return dataclasses.replace(result, val_accuracy=result.val_accuracy + extra)

    return train_run


@pytest.fixture
def patch_training(monkeypatch):
    import ablate.study.trial as trial_module

    monkeypatch.setattr(trial_module, "upload_curve", lambda *args: None)
    return lambda train_run: monkeypatch.setattr(trial_module, "train_run", train_run)


def test_a_failed_confirmation_run_is_retried_and_the_study_completes(write_study, patch_training):
    calls: list = []
    first = 2**21
    patch_training(_failing(calls, lambda lr, seed, tries: (lr, seed, tries) == (2.0e-3, first, 0)))
    cfg, paths = _study(write_study, "retried", 8, "confirm: {top: 2, seeds: 2}")
    run_searches(cfg, paths)
    runs = confirm_study(cfg, open_storage(paths.storage), "a").get_trials()
    assert sorted(t.state.name for t in runs) == ["COMPLETE"] * 4 + ["FAIL"]
    assert calls.count((2.0e-3, first)) == 3, "arm a ran its failed cell once more; arm b's never failed"
    c = confirmation(cfg, paths, "a")
    assert [len(cand.values) for cand in c.candidates] == [2, 2] and c.paired_seeds == (first, first + 1)
    assert c.winner.params == {"train.lr": 2.0e-3}
    run_repeats(cfg, paths)
    assert len(collect_results(cfg, paths).results) == 4


def test_a_candidate_missing_a_seed_is_compared_on_the_common_seeds_only(write_study, patch_training):
    """2e-3 never completes the second confirmation seed; 4e-3 is lucky there (+0.10). Over all its runs
    4e-3 would win (0.691 against 0.672), but on the seed both completed 2e-3 does (0.672 against 0.642)."""
    first, second = 2**21, 2**21 + 1
    patch_training(_failing([], lambda lr, seed, tries: (lr, seed) == (2.0e-3, second),
                            bonus={(4.0e-3, second): 0.10}))
    cfg, paths = _study(write_study, "paired", 8, "confirm: {top: 2, seeds: 2}")
    run_searches(cfg, paths)  # returns: the cell is given up after 1 + 2 retries
    runs = confirm_study(cfg, open_storage(paths.storage), "a").get_trials()
    assert sum(t.state == TrialState.FAIL for t in runs) == 3
    c = confirmation(cfg, paths, "a")
    lucky, steady = c.candidates
    assert (lucky.params, lucky.seeds, steady.params, steady.seeds) == (
        {"train.lr": 4.0e-3}, (first, second), {"train.lr": 2.0e-3}, (first,))
    assert lucky.mean == pytest.approx(0.691) and steady.mean == pytest.approx(0.672)
    assert c.paired_seeds == (first,) and lucky.mean_over(c.paired_seeds) == pytest.approx(0.642)
    assert c.winner is steady
    record = c.record(2, 8)
    assert record["paired_seeds"] == [first] and record["candidates"][1]["seeds"] == [first]


def test_a_candidate_without_a_completed_run_is_recorded_as_valid_json():
    import json

    from ablate.study.confirm import Candidate, Confirmation

    c = Confirmation((Candidate(3, {}, 0.9, (), ()), Candidate(5, {}, 0.8, (0.7, 0.6), (10, 11))), seeds=2)
    assert c.winner.trial == 5 and c.paired_seeds == (10, 11)
    record = json.loads(json.dumps(c.record(2, 6), allow_nan=False))
    assert [cand["mean"] for cand in record["candidates"]] == [None, pytest.approx(0.65)]
    assert (record["runs"], record["shortfall"], record["search_winner"], record["confirm_winner"]) == (4, 0, 3, 5)


def test_an_arm_with_too_few_completed_search_trials_is_warned_of(write_study, patch_training):
    """Three of the four search trials are pruned: one candidate runs 2 of the 4 confirmation runs."""
    import json

    import optuna

    from ablate.report.tuning_file import check_tuning
    from ablate.report.tuning import tuning_section

    fake = _fake_training([])

    def train_run(run_cfg, **kwargs):
        if run_cfg.train.seed == 0 and run_cfg.train.lr != 2.0e-3:
            raise optuna.TrialPruned()
        return fake(run_cfg, **kwargs)

    patch_training(train_run)
    cfg, paths = _study(write_study, "short", 8, "confirm: {top: 2, seeds: 2}")
    run_searches(cfg, paths)
    run_repeats(cfg, paths)
    tuning = check_tuning(json.loads(json.dumps(collect_results(cfg, paths).tuning, allow_nan=False)))
    confirm = tuning["a"]["confirm"]
    assert (confirm["budget"], confirm["runs"], confirm["shortfall"], len(confirm["candidates"])) == (8, 2, 2, 1)
    text = "\n".join(tuning_section(tuning))
    assert "**Warning:** a spent 6 of its 8 runs: only 1 search trial completed, so only 1 candidate was confirmed." in text
    assert text.count("**Warning:**") == 2  # one per arm, both short
