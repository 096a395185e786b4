"""Tuning you can trust (issue 17): tuning curves with opda's bands, the confirmation, replicate searches.

ablate.stats.tuning (curves, replicate verdicts), ablate.report.tuning_file (tuning.json read,
checked and completed) and ablate.report.tuning (the sections), through write_report_dir and
``ablate report --results``.
"""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from opda.nonparametric import EmpiricalDistribution
from scipy import stats as st

from ablate import stats
from ablate.analysis import AnalysisSettings
from ablate.cli import main
from ablate.errors import ConfigError
from ablate.report import TUNING_FIGURES, read_tuning, render_report, write_report_dir
from ablate.report import figures as report_figures
from ablate.report.tuning_file import check_tuning, with_curves

pytestmark = pytest.mark.usefixtures("cheap_gc")

DIGITS = Path(__file__).resolve().parent.parent / "reports" / "fmce-digits"
# whole-image validation accuracies (36 images), with ties, as a search records them
VALUES = [30 / 36, 33 / 36, 31 / 36, 33 / 36, 28 / 36, 34 / 36, 32 / 36]


@pytest.fixture
def no_figures(monkeypatch):
    """Figures are not what most of these tests check, and drawing them is most of their time."""
    monkeypatch.setattr(report_figures, "arm_comparison", lambda rows, path, title: Path(path).write_bytes(b"png"))
    monkeypatch.setattr(report_figures, "tuning_curves", lambda curves, path, title: Path(path).write_bytes(b"png"))


def record(values, pruned=None, **extra) -> dict:
    out = {"method": "per-arm", "settings": {"train.lr": 0.003}, "n_trials": len(values), "importances": {},
           "search_values": list(values)}  # fmt: skip
    if pruned is not None:
        out["search_pruned"] = list(pruned)
    return {**out, **extra}


def two_arms(n_seeds: int = 6, replicates: int = 1, flip: int | None = None) -> pd.DataFrame:
    """fmce 1 point (10 of 1000 images) above single, seed by seed; in replicate ``flip`` it is 1 point below."""
    rng = np.random.default_rng(7)
    rows = []
    for r in range(replicates):
        base = np.round(rng.uniform(0.85, 0.9, n_seeds) * 1000) / 1000
        noise = rng.integers(-2, 3, n_seeds) / 1000
        shift = -0.01 if r == flip else 0.01
        for seed in range(n_seeds):
            rows.append(("digits", "single", seed, base[seed], r, 1000))
            rows.append(("digits", "fmce", seed, base[seed] + shift + noise[seed], r, 1000))
    return pd.DataFrame(rows, columns=["dataset", "arm", "seed", "accuracy", "replicate", "n_test"])


# --------------------------------------------------------------------------- the curve and its band


def test_pruned_trials_count_at_their_last_value():
    values, pruned = [0.70, 0.55, 0.80, 0.62], [False, True, False, True]
    curve = stats.tuning_curve(values, pruned)
    assert (curve.trials, curve.pruned) == (4, 2)
    # indexed by trials run: n = 1 is one trial of the four, pruned ones at their last value
    assert curve.expected[0] == pytest.approx(np.mean(values))
    assert curve.expected == pytest.approx(tuple(stats.expected_max(values)))
    completed_only = stats.expected_max([0.70, 0.80])
    assert curve.expected[0] < completed_only[0]  # leaving the pruned trials out leans upward
    # ... and the same in the report
    tuning = check_tuning({"fmce": record(values, pruned)})
    text = "\n".join(render_report(pd.DataFrame(), pd.DataFrame(), tuning=with_curves(tuning)).splitlines())
    assert "Tuning curve over 4 search trials run (2 pruned, each at its last reported validation accuracy)." in text
    assert f"| 4 | {100 * curve.expected[3]:.2f} | [{100 * curve.low[3]:.2f}, {100 * curve.high[3]:.2f}] |" in text


def test_expected_curve_is_the_written_formula_and_opdas_v_statistic():
    v = np.sort(VALUES)
    big_n = len(v)
    i = np.arange(1, big_n + 1)
    formula = [np.sum(v * ((i / big_n) ** n - ((i - 1) / big_n) ** n)) for n in range(1, big_n + 1)]
    curve = stats.tuning_curve(VALUES)
    np.testing.assert_allclose(curve.expected, formula, rtol=0, atol=1e-15)
    np.testing.assert_allclose(curve.expected, EmpiricalDistribution(VALUES).v_tuning_curve(i), rtol=0, atol=1e-15)


def test_band_is_opdas_on_a_fixed_set_of_values():
    curve = stats.tuning_curve(VALUES)
    ns = np.arange(1, len(VALUES) + 1)
    with pytest.warns(RuntimeWarning, match="Duplicates"):  # ties: exact coverage only for continuous values
        lo, _, hi = EmpiricalDistribution.confidence_bands(VALUES, 0.95, a=0.0, b=1.0, method="ld_equal_tailed",
                                                           generator=np.random.default_rng(0), n_jobs=1)  # fmt: skip
    assert (curve.band, curve.confidence) == ("ld_equal_tailed", 0.95)
    assert curve.low == tuple(hi.average_tuning_curve(ns))  # the upper CDF gives the lower curve
    assert curve.high == tuple(lo.average_tuning_curve(ns))
    # seeded: the same values give the same band
    assert stats.tuning_curve(VALUES) == curve
    # past 200 trials the closed-form Kolmogorov-Smirnov band
    many = np.random.default_rng(1).integers(25, 36, 250) / 36
    big = stats.tuning_curve(many)
    with pytest.warns(RuntimeWarning, match="Duplicates"):
        lo, _, hi = EmpiricalDistribution.confidence_bands(many, 0.95, a=0.0, b=1.0, method="ks")
    assert big.band == "ks" and big.low == tuple(hi.average_tuning_curve(np.arange(1, 251)))


def test_band_contains_the_curve_grows_with_n_and_narrows_with_trials():
    curve = stats.tuning_curve(VALUES)
    low, expected, high = (np.array(x) for x in (curve.low, curve.expected, curve.high))
    assert np.all((0 <= low) & (low <= expected) & (expected <= high) & (high <= 1))
    for x in (low, expected, high):
        assert np.all(np.diff(x) >= 0)
    rng = np.random.default_rng(2)
    few, more = stats.tuning_curve(rng.beta(8, 2, 4)), stats.tuning_curve(rng.beta(8, 2, 40))
    assert more.high[0] - more.low[0] < few.high[0] - few.low[0]
    one = stats.tuning_curve([0.9])  # one trial: a band over most of [0, 1], not an error
    assert one.low[0] < 0.1 and one.high[0] > 0.99


def test_band_covers_the_true_curve_in_simulated_searches():
    """Random search on Beta(8, 2) validation accuracies: E[best of n] = 1 − ∫ F(x)^n dx."""
    n_trials, reps, confidence = 5, 30, 0.8
    x = np.linspace(0, 1, 100_001)
    cdf = st.beta(8, 2).cdf(x)
    truth = np.array([1 - np.trapezoid(cdf**n, x) for n in range(1, n_trials + 1)])
    rng = np.random.default_rng(3)
    covered = 0
    for _ in range(reps):
        c = stats.tuning_curve(rng.beta(8, 2, n_trials), confidence=confidence)
        covered += bool(np.all((np.array(c.low) <= truth) & (truth <= np.array(c.high))))
    assert covered >= confidence * reps


def test_tuning_curve_rejects_what_is_not_a_search():
    assert stats.tuning_curve([]).trials == 0 and stats.tuning_curve([]).expected == ()
    with pytest.raises(ValueError, match="pruned has 1 entries for 2 values"):
        stats.tuning_curve([0.5, 0.6], [True])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        stats.tuning_curve([91.2])


# --------------------------------------------------------------------------- tuning.json


def test_a_tuning_json_from_before_pruning_and_confirmation_reads_as_completed_trials(tmp_path, no_figures):
    # the shape the first digits report was committed in: completed trials only, no confirmation
    legacy = {arm: {"method": "per-arm", "settings": {"train.lr": 0.003}, "n_trials": 3, "importances": {},
                    "search_values": values}
              for arm, values in {"fmce": [0.9444444444444444, 0.9444444444444444],
                                  "single": [0.9111111111111111]}.items()}  # fmt: skip
    (tmp_path / "tuning.json").write_text(json.dumps(legacy))
    tuning = read_tuning(tmp_path / "tuning.json")
    assert tuning["fmce"]["search_values"] == [0.9444444444444444, 0.9444444444444444]
    assert tuning["fmce"]["search_pruned"] == [False, False]
    assert all(t["confirm"] is None and t["replicates"] is None for t in tuning.values())
    results = stats.load_results(DIGITS / "results.csv")
    write_report_dir(results, tmp_path / "a", AnalysisSettings.read(DIGITS / "analysis.json"), tuning=tuning)
    saved = json.loads((tmp_path / "a" / "tuning.json").read_text())
    assert saved["single"]["curve"]["trials"] == 1 and saved["single"]["curve"]["band"] == "ld_equal_tailed"
    assert saved["single"]["curve"]["expected"] == [0.9111111111111111]
    text = (tmp_path / "a" / "report.md").read_text()
    assert "2 more finished trials without a recorded value" in text  # single: n_trials 3, one recorded
    assert "Too few trials for the band to say much: at n = 1 it spans" in text
    # read back (the stored curve is recomputed, not trusted) and written again: the same bytes
    write_report_dir(results, tmp_path / "b", AnalysisSettings.read(DIGITS / "analysis.json"),
                     tuning=read_tuning(tmp_path / "a" / "tuning.json"))  # fmt: skip
    assert (tmp_path / "b" / "tuning.json").read_bytes() == (tmp_path / "a" / "tuning.json").read_bytes()


def test_the_committed_digits_tuning_keeps_pruned_trials_and_the_confirmation():
    tuning = read_tuning(DIGITS / "tuning.json")
    assert set(tuning) == {"fmce", "nfmce", "single", "single-long", "ensemble"}
    assert all(t["n_trials"] == 4 and len(t["search_values"]) == 4 for t in tuning.values())
    # single's trial 2 was pruned and counts at its last reported value
    assert tuning["single"]["search_pruned"] == [False, False, True, False]
    assert tuning["single"]["search_values"][2] == pytest.approx(0.8944444444444445)
    confirm = tuning["single"]["confirm"]
    assert (confirm["top"], confirm["seeds"], confirm["search_winner"], confirm["confirm_winner"]) == (2, 2, 0, 3)
    assert [c["mean"] for c in confirm["candidates"]] == [np.mean(c["values"]) for c in confirm["candidates"]]
    # the repeats ran the confirmation winner's settings, not the search winner's
    assert tuning["fmce"]["confirm"]["confirm_winner"] == 0 != tuning["fmce"]["confirm"]["search_winner"]


def test_cli_report_of_the_committed_digits_study_shows_the_bands(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("results.csv", "analysis.json", "tuning.json"):
        shutil.copy(DIGITS / name, src / name)
    assert main(["report", "--results", str(src / "results.csv"), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "simultaneous 95% confidence band" in text and "Lourie et al. 2024" in text
    assert "with TPE sampling and pruning each trial depends on the earlier ones" in text
    single = json.loads((tmp_path / "out" / "tuning.json").read_text())["single"]
    curve = single["curve"]
    # the expected best of one trial is the mean of all four, the pruned one at its last value
    assert curve["expected"][0] == pytest.approx(np.mean(single["search_values"])) == pytest.approx(0.931944, abs=1e-6)
    assert f"| 1 | 93.19 | [{100 * curve['low'][0]:.2f}, {100 * curve['high'][0]:.2f}] |" in text
    # at n = 4 the band spans 31 points, under the 50 at which the report says it is too wide to say much
    assert f"| 4 | 94.83 | [{100 * curve['low'][-1]:.2f}, {100 * curve['high'][-1]:.2f}] |" in text
    assert 25 < 100 * (curve["high"][-1] - curve["low"][-1]) < 50 and "Too few trials for the band" not in text
    assert "The confirmation chose trial 3 over the search's winner, trial 0" in text
    assert "![digits tuning](figures/digits_tuning.png)" in text
    assert (tmp_path / "out" / "figures" / "digits_tuning.png").read_bytes()[:4] == b"\x89PNG"
    # the report's own folder, reported again: tuning.json byte for byte
    assert main(["report", "--results", str(tmp_path / "out" / "results.csv"), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "tuning.json").read_bytes() == (tmp_path / "out" / "tuning.json").read_bytes()


def test_one_tuning_figure_per_data_set_searched(tmp_path, monkeypatch):
    drawn = {}

    def fake(curves, path, title):
        drawn[title] = sorted(curves)
        return Path(path).write_bytes(b"png")

    monkeypatch.setattr(report_figures, "tuning_curves", fake)
    monkeypatch.setattr(report_figures, "arm_comparison", lambda rows, path, title: Path(path).write_bytes(b"png"))
    tuning = {"fmce": record([0.8, 0.9], dataset="digits"), "single": record([0.7], dataset="digits"),
              "nfmce": record([0.6, 0.7], dataset="cifar 10"), "fixed": {"method": "fixed"}}  # fmt: skip
    results = two_arms()
    text = write_report_dir(results, tmp_path, AnalysisSettings(title="t"), tuning=tuning).read_text()
    assert drawn == {"digits: tuning curves": ["fmce", "single"], "cifar 10: tuning curves": ["nfmce"]}
    assert "![digits tuning](figures/digits_tuning.png)" in text and "(figures/cifar_10_tuning.png)" in text
    assert json.loads((tmp_path / "tuning.json").read_text())["fixed"]["curve"] is None


def test_the_tuning_figure_draws_one_trial_and_many(tmp_path):
    curves = {"a": {"trials": 1, "pruned": 0, "expected": [0.9], "low": [0.02], "high": [0.99], "confidence": 0.95},
              "b": {"trials": 3, "pruned": 1, "expected": [0.8, 0.85, 0.87], "low": [0.3, 0.5, 0.6],
                    "high": [0.95, 0.97, 0.98], "confidence": 0.95}, "c": None}  # fmt: skip
    path = report_figures.tuning_curves(curves, tmp_path / "t.png", title="t")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert TUNING_FIGURES not in ("digits", "all datasets")


def confirm(search_winner: int, confirm_winner: int) -> dict:
    return {"top": 2, "seeds": 3, "search_winner": search_winner, "confirm_winner": confirm_winner,
            "candidates": [{"trial": 4, "search_value": 0.95, "values": [0.93, 0.94, 0.92], "mean": 0.93},
                           {"trial": 7, "search_value": 0.94, "values": [0.94, 0.94, 0.93], "mean": 0.935}]}


def test_the_report_names_the_search_and_confirmation_winners(tmp_path, no_figures):
    tuning = {"fmce": record([0.95, 0.94], confirm=confirm(4, 7)), "single": record([0.9], confirm=confirm(4, 4))}
    text = write_report_dir(two_arms(), tmp_path, AnalysisSettings(title="t"), tuning=tuning).read_text()
    assert "Confirmation: the 2 best search trials each ran on 3 more seeds" in text
    assert "| 4 | 95.00 | 93.00 | search winner |" in text and "| 7 | 94.00 | 93.50 | confirmation winner |" in text
    assert ("The confirmation chose trial 7 over the search's winner, trial 4: their mean validation accuracies "
            "over the confirmation seeds differ by +0.50 points.") in text
    assert "The search's winner, trial 4, also won the confirmation." in text
    saved = json.loads((tmp_path / "tuning.json").read_text())
    assert saved["fmce"]["confirm"] == confirm(4, 7)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"search_pruned": [True]}, "search_pruned must be 2 booleans, one per search value"),
        ({"search_values": [94.4, 95.0]}, "search_values must be validation accuracies, numbers in [0, 1]"),
        ({"confirm": {**confirm(4, 7), "confirm_winner": 9}}, "confirm.confirm_winner 9 is not one of"),
        ({"confirm": {**confirm(4, 7), "candidates": [{"trial": 4}]}}, "confirm.candidates[0].search_value"),
        ({"replicates": [{"replicate": 0, "value": 0.9}, {"replicate": 0, "value": 0.8}]},
         "replicates name replicate(s) more than once"),
        ({"replicates": [{"replicate": -1, "value": 0.9}]}, "replicates[0].replicate must be a whole number >= 0"),
        ({"n_trials": True}, "n_trials must be a whole number"),
    ],
)
def test_a_bad_tuning_json_is_one_line(tmp_path, capsys, change, needle):
    with pytest.raises(ConfigError, match="tuning of arm 'fmce'"):
        check_tuning({"fmce": {**record([0.9, 0.8]), **change}})
    two_arms().to_csv(tmp_path / "results.csv", index=False)
    (tmp_path / "tuning.json").write_text(json.dumps({"fmce": {**record([0.9, 0.8]), **change}}))
    assert main(["report", "--results", str(tmp_path / "results.csv"), "--out", str(tmp_path / "o")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "tuning.json: tuning of arm 'fmce': " in lines[0] and needle in lines[0], lines
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- replicate searches


def test_replicate_verdicts_are_compare_per_replicate():
    results = two_arms(replicates=3, flip=2)
    verdicts = stats.replicate_verdicts(results, partial(stats.compare, contrasts=[("fmce", "single")]))
    assert list(verdicts["replicate"]) == [0, 1, 2]
    for r in range(3):
        alone = stats.compare(stats.replicate_rows(results, r), [("fmce", "single")])
        row = verdicts[verdicts["replicate"] == r].iloc[0]
        assert row["verdict"] == alone["verdict"].iloc[0] and row["diff"] == alone["diff"].iloc[0]
    assert list(verdicts["verdict"].map(stats.verdict_decision)) == [
        "significant: fmce better", "significant: fmce better", "significant: single better"]
    assert not verdicts["holds"].any()
    steady = stats.replicate_verdicts(two_arms(replicates=2))
    assert steady["holds"].all()
    assert stats.replicate_verdicts(two_arms()).empty  # one search: nothing
    assert stats.verdict_decision("significant: fmce better (within ROPE); still rising: fmce") == (
        "significant: fmce better")


def test_the_report_reads_replicate_0_and_shows_every_replicates_verdict(tmp_path, no_figures):
    results = two_arms(replicates=2, flip=1)
    replicates = [{"replicate": 0, "settings": {"train.lr": 0.003}, "value": 0.91, "source": "search 0"},
                  {"replicate": 1, "settings": {"train.lr": 0.001}, "value": 0.88, "source": "search 1"}]
    tuning = {"fmce": record([0.9, 0.91], replicates=replicates), "single": record([0.9])}
    settings = AnalysisSettings(title="t", contrasts=[("fmce", "single")])
    text = write_report_dir(results, tmp_path, settings, tuning=tuning).read_text()
    # the main tables are replicate 0's alone
    main_rows = stats.compare(stats.replicate_rows(results, 0), [("fmce", "single")])
    written = pd.read_csv(tmp_path / "comparisons.csv")
    assert written["diff"].iloc[0] == main_rows["diff"].iloc[0] and written["n"].iloc[0] == 6
    assert len(pd.read_csv(tmp_path / "results.csv")) == len(results)  # every replicate's rows kept
    # the verdict per replicate
    by_replicate = pd.read_csv(tmp_path / "replicates.csv")
    assert list(by_replicate["replicate"]) == [0, 1] and not by_replicate["holds"].any()
    assert "## Verdict per replicate" in text
    first, second = (f"{v} ({d:+.2f})".replace("-", "\u2212") for v, d in
                     zip(by_replicate["verdict"].map(stats.verdict_decision), by_replicate["diff"]))
    assert f"| digits | fmce vs single | {first} | {second} | no |" in text
    # the spread of the chosen settings across searches
    values = np.array([91.0, 88.0])
    assert (f"| fmce | 2 | 91.00, 88.00 | {values.mean():.2f} | {values.std(ddof=1):.2f} | 3.00 |") in text


def test_one_replicate_changes_nothing(tmp_path, no_figures):
    settings = AnalysisSettings(title="t", contrasts=[("fmce", "single")])
    with_column = two_arms()
    write_report_dir(with_column, tmp_path / "a", settings)
    write_report_dir(with_column.drop(columns="replicate"), tmp_path / "b", settings)
    text = (tmp_path / "a" / "report.md").read_text()
    assert "Verdict per replicate" not in text and not (tmp_path / "a" / "replicates.csv").exists()
    assert (tmp_path / "a" / "comparisons.csv").read_bytes() == (tmp_path / "b" / "comparisons.csv").read_bytes()
    # a folder that had several replicates loses their table when reported with one
    write_report_dir(two_arms(replicates=2), tmp_path / "a", settings)
    assert (tmp_path / "a" / "replicates.csv").exists()
    write_report_dir(with_column, tmp_path / "a", settings)
    assert not (tmp_path / "a" / "replicates.csv").exists()
