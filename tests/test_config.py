from __future__ import annotations

import pytest

from ablate.config import config_hash, load_study, parse_study, with_overrides
from ablate.errors import ConfigError
from tests.conftest import tiny_study_text


def test_defaults_follow_the_paper():
    cfg = parse_study("name: x\n")
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.epochs, cfg.train.batch_size) == (4e-4, 5e-4, 30, 64)
    assert cfg.model.model1.init == "stage1" and cfg.model.model1.freeze
    assert cfg.model.arm == "fmce"


def test_tiny_study_parses_with_its_space():
    cfg = parse_study(tiny_study_text())
    assert set(cfg.search.space) == {"model.constraint.on", "model.constraint.weight", "train.lr"}
    assert cfg.search.space["train.lr"].log is True


def test_overrides_validate_and_hash_changes():
    run = parse_study("name: x\n").run
    changed = with_overrides(run, {"train.lr": 0.01, "model.constraint.on": False})
    assert changed.train.lr == 0.01 and changed.model.arm == "nfmce"
    assert config_hash(changed) != config_hash(run)
    assert config_hash(with_overrides(run, {})) == config_hash(run)
    with pytest.raises(ConfigError, match="train.lr"):
        with_overrides(run, {"train.lr": -1})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\ntrain: {lr: 0}\n", "train.lr: Input should be greater than 0 (got 0)"),
        ("name: x\ntrain: {epochs: 0}\n", "train.epochs: Input should be greater than or equal to 1 (got 0)"),
        ("name: x\ntrain: {lrr: 0.1}\n", "unknown key 'train.lrr' (did you mean 'lr'?)"),
        ("name: x\ntrain: {epochs: many}\n", "train.epochs: Input should be a valid integer"),
        ("name: x\ndataset: {val_fraction: 0.5, test_fraction: 0.45}\n", "must leave at least 10% for training"),
        ("name: x\ndataset: {test_fraction: 0}\n", "dataset.test_fraction: Input should be greater than 0"),
        ("name: x\nsearch: {space: {train.lr: {low: 1.0, high: 0.1}}}\n", "low must be <= high"),
        ("name: x\nsearch: {space: {train.lrate: {low: 0.1, high: 1.0}}}\n", "unknown setting 'train.lrate' (did you mean 'lr'?)"),
        ("name: x\nsearch: {space: {train.lr: {choices: [0.1, -1]}}}\n", "search.space.train.lr: train.lr"),
        ("name: x\nmodel: {head: conv}\n", "model.head: Input should be 'linear' or 'mlp'"),
        ("name: x\n  bad: [\n", "invalid YAML"),
        ("name: !!python/object/apply:os.system [echo hi]\n", "invalid YAML: could not determine a constructor"),
        ("- just\n- a list\n", "expected a mapping"),
        ("train: {}\n", "name: required setting is missing"),
        ("name: x\nrepeats: {contrasts: [[fmce, nfmc]]}\n", "contrast names arm 'nfmc'"),
        ("name: x\nsearch: {sampler: {name: grid}, space: {train.lr: {low: 0.1, high: 1}}}\n", "grid sampler needs 'choices'"),
    ],
)
def test_bad_study_files_name_the_key(text, expected):
    with pytest.raises(ConfigError) as info:
        parse_study(text, source="s.yaml")
    message = str(info.value)
    assert expected in message
    assert message.startswith("s.yaml")
    assert "\n" not in message


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="cannot read study file"):
        load_study(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("seeds", "looks"),
    [
        ("5", (5,)),
        ("{min: 6, max: 30, step: 6}", (6, 12, 18, 24, 30)),
        ("{min: 6, max: 30, step: 7}", (6, 13, 20, 27, 30)),  # a shorter last batch reaches max
        ("{min: 6, max: 6, step: 3}", (6,)),  # min == max: a fixed design
    ],
)
def test_repeats_seeds_fixed_or_sequential(seeds, looks):
    rep = parse_study(f"name: x\nrepeats: {{seeds: {seeds}}}\n").repeats
    assert rep.looks == looks and rep.max_seeds == looks[-1] and rep.sequential == (len(looks) > 1)
    assert rep.spending == "obrien-fleming"


@pytest.mark.parametrize(
    ("seeds", "expected"),
    [
        ("1", "repeats.seeds: Input should be greater than or equal to 2 (got 1)"),
        ("{min: 1, max: 30, step: 6}", "repeats.seeds.min: Input should be greater than or equal to 2 (got 1)"),
        ("{min: 8, max: 6, step: 1}", "repeats.seeds: min must be <= max (got min=8, max=6)"),
        ("{min: 6, max: 30}", "repeats.seeds.step: required setting is missing"),
        ("{min: 6, max: 30, step: 0}", "repeats.seeds.step: Input should be greater than or equal to 1 (got 0)"),
        ("many", "repeats.seeds: expected a whole number of seeds (e.g. 10) or a sequential plan"),
        ("[6, 30]", "repeats.seeds: expected a whole number of seeds"),
    ],
)
def test_bad_repeats_seeds_name_the_key(seeds, expected):
    with pytest.raises(ConfigError) as exc:
        parse_study(f"name: x\nrepeats: {{seeds: {seeds}}}\n")
    assert expected in str(exc.value)


def test_repeats_spending_is_checked():
    assert parse_study("name: x\nrepeats: {spending: pocock}\n").repeats.spending == "pocock"
    with pytest.raises(ConfigError, match="repeats.spending: Input should be 'obrien-fleming' or 'pocock'"):
        parse_study("name: x\nrepeats: {spending: linear}\n")


def test_a_sequential_plan_starts_at_five_seeds_and_says_why():
    with pytest.raises(ConfigError, match=r"repeats.seeds: a sequential plan's first look \(min\) needs at least 5 seeds "
                                          r"\(got min=3\).*no spread"):
        parse_study("name: x\nrepeats: {seeds: {min: 3, max: 9, step: 3}}\n")
    assert parse_study("name: x\nrepeats: {seeds: {min: 5, max: 9, step: 4}}\n").repeats.looks == (5, 9)
    assert parse_study("name: x\nrepeats: {seeds: {min: 3, max: 3, step: 1}}\n").repeats.looks == (3,)  # fixed


def test_repeats_vary_every_source_by_default_and_a_run_has_a_seed_per_source():
    cfg = parse_study("name: x\ntrain: {seed: 4, order_seed: 9}\nrepeats: {seeds: 2}\n")
    assert cfg.repeats.vary == ["init", "order", "augment", "split"]
    assert [cfg.train.seed_of(s) for s in ("init", "order", "augment")] == [4, 9, 4]
    assert cfg.dataset.partition == cfg.dataset.split_seed
    with pytest.raises(ConfigError, match="repeats.vary"):
        parse_study("name: x\nrepeats: {vary: [init, weather]}\n")


def test_the_readme_study_file_is_the_committed_one():
    """The README shows studies/fmce-digits.yaml with notes added: its keys and values must stay as committed."""
    import re
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    blocks = re.findall(r"```yaml\n(.*?)```", (root / "README.md").read_text(), flags=re.S)
    shown = [yaml.safe_load(b) for b in blocks if b.startswith("name: fmce-digits")]
    assert len(shown) == 1
    assert shown[0] == yaml.safe_load((root / "studies" / "fmce-digits.yaml").read_text())


def _confirmed(extra: str = "", *, seed: int = 0, kind: str = "dual") -> str:
    """The tiny study with a confirmation of 1 x 2 runs (seeds 2**21 and 2**21 + 1)."""
    return (tiny_study_text(n_trials=4, extra=extra)
            .replace("  space:", "  confirm: {top: 1, seeds: 2}\n  space:")
            .replace("seed: 0, device", f"seed: {seed}, device").replace("kind: dual", f"kind: {kind}"))


ENSEMBLE_ARMS = "  arms: {e: {control: ensemble}, s: {model.kind: single}}\n"


@pytest.mark.parametrize(("text", "expected"), [
    # every search trial would run on confirmation seed 0
    (_confirmed(seed=2**21), "train.seed: the study's seed (2097152) and the confirmation seeds (2097152..2097153) overlap"),
    (_confirmed("repeats:\n  seeds: 2\n  first_seed: 2097151\n"),
     "repeats.first_seed: the repeats' seeds (2097151..2097152) and the confirmation seeds (2097152..2097153) overlap"),
    # the ensemble members of repeat seed 2**19 are 2**21 and 2**21 + 1
    (_confirmed("repeats:\n  seeds: 2\n  first_seed: 524287\n" + ENSEMBLE_ARMS),
     "repeats.first_seed: the ensemble members of the repeats' seeds (2097150..2097153) and the confirmation seeds "
     "(2097152..2097153) overlap"),
    # a searched ensemble trains members of the study's seed
    (_confirmed(seed=2**19, kind="ensemble"),
     "train.seed: the ensemble members of the study's seed (2097152..2097153) and the confirmation seeds "
     "(2097152..2097153) overlap"),
])
def test_a_confirmation_seed_that_another_run_uses_is_refused_at_load(text, expected):
    with pytest.raises(ConfigError) as info:
        parse_study(text, source="s.yaml")
    assert str(info.value) == f"s.yaml: {expected}, so a confirmation run would not be on a fresh seed; " \
                              f"choose seeds from 0 to 524287"


def test_an_ensemble_member_that_is_a_repeat_seed_is_refused():
    text = tiny_study_text(n_trials=0, extra="repeats:\n  seeds: 3\n  first_seed: 1048576\n" + ENSEMBLE_ARMS)
    with pytest.raises(ConfigError, match=r"^s.yaml: train.seed: the ensemble members of the study's seed "
                                          r"\(1048576..1048577\) and the repeats' seeds \(1048576..1048578\) overlap"):
        parse_study(text, source="s.yaml")
    # the same seeds without an ensemble anywhere are fine, and so are the usual seeds with one
    assert parse_study(text.replace("control: ensemble", "model.kind: single")).repeats.first_seed == 2**20
    assert parse_study(_confirmed("repeats:\n  seeds: 10\n" + ENSEMBLE_ARMS)).search.confirm.seeds == 2


def test_check_refuses_a_confirmation_seed_clash_in_one_line(write_study, capsys):
    from ablate.cli import main

    path = write_study(_confirmed(seed=2**21))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith("choose seeds from 0 to 524287")
    assert "train.seed: the study's seed (2097152)" in err
    assert sorted(p.name for p in path.parent.iterdir()) == ["study.yaml"]
