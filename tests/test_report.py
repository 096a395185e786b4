"""ablate.report: the text shows the CSV's numbers, re-runs reproduce them, and the procedure is written once."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ablate import stats
from ablate.analysis import AnalysisSettings, SequentialPlan
from ablate.cli import main
from ablate.report import figures as report_figures
from ablate.report.docs import statistics_page
from ablate.report.procedure import SEQUENTIAL_STEPS, STEPS, procedure_section
from ablate.errors import ConfigError, DataError
from ablate.report import (
    AGGREGATE_FIGURES,
    write_report_dir,
    format_count,
    format_p,
    format_points,
    render_report,
    verdict_sentence,
)
from tests.conftest import fails_in_one_line


pytestmark = pytest.mark.usefixtures("cheap_gc")


def study(n_seeds: int = 5, datasets: tuple[str, ...] = ("digits", "cifar 10")) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    rows = []
    for dataset in datasets:
        base = rng.uniform(0.85, 0.95, n_seeds)
        for arm, shift in (("single", 0.0), ("nfmce", 0.002), ("fmce", 0.005)):
            acc = np.clip(base + shift + rng.normal(0, 0.003, n_seeds), 0, 1)
            rows += [(dataset, arm, seed, a) for seed, a in enumerate(acc)]
    return pd.DataFrame(rows, columns=["dataset", "arm", "seed", "accuracy"])


def read_comparisons(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"dataset": str, "arm_a": str, "arm_b": str, "verdict": str, "warnings": str})


# --------------------------------------------------------------------------- formatting


def test_number_formats():
    assert format_points(0.4, signed=True) == "+0.40"
    assert format_points(-0.1, signed=True) == "\u22120.10"
    assert format_points(-0.001, signed=True) == "0.00"  # no signed zero
    assert format_points(91.234) == "91.23"
    assert format_points(math.nan) == "n/a"
    assert format_p(0.2104) == "0.210" and format_p(0.0004) == "< 0.001" and format_p(math.nan) == "n/a"
    assert format_count(23.0) == "23" and format_count(math.inf) == "\u221e" and format_count(math.nan) == "n/a"


def test_verdict_sentence_reads_like_the_example():
    row = {
        "dataset": "digits", "arm_a": "fmce", "arm_b": "nfmce", "n": 5, "diff": 0.4, "ci_low": -0.1,
        "ci_high": 0.9, "p_holm": 0.21, "verdict": "not significant", "mde_80": 1.684, "sd_diff": 0.5,
        "seeds_for_smallest_effect": math.nan, "confounded_by": "",
    }  # fmt: skip
    assert verdict_sentence(row) == (
        "**fmce vs nfmce** on digits: +0.40 points [\u22120.10, +0.90] on this test set, Holm p = 0.210: not "
        "significant; smallest difference these 5 seeds detect with 80% power: 1.68 points."
    )
    row.update(confounded_by="parameters, compute", seeds_for_smallest_effect=12.0)
    assert verdict_sentence(row, 0.05, 6) == (
        "**fmce vs nfmce** on digits: +0.40 points [\u22120.10, +0.90] on this test set, Holm p = 0.210: not "
        "significant; confounded by: parameters, compute; smallest difference these 5 seeds detect with 80% "
        "power at Holm's first step (\u03b1 = 0.05/6): 1.68 points; 12 seeds give 80% power for the smallest "
        "effect of interest."
    )
    row.update(ci_low_new_data=-0.9, ci_high_new_data=1.7, p_new_data=0.2, p_new_data_holm=0.41, confounded_by="")
    assert verdict_sentence(row).startswith(
        "**fmce vs nfmce** on digits: +0.40 points, [\u22120.90, +1.70] on new data (seeds and test images "
        "random), Holm p = 0.410; [\u22120.10, +0.90] on this test set, Holm p = 0.210: not significant;"
    )
    assert verdict_sentence(row).endswith(
        "not significant; for the paired t on this test set (seed-to-seed variance only; more seeds never remove "
        "test-set sampling), smallest difference these 5 seeds detect with 80% power: 1.68 points; 12 seeds give "
        "80% power for the smallest effect of interest."
    )


# --------------------------------------------------------------------------- render


def test_render_report_sections_and_inputs():
    results = study()
    comparisons = stats.compare(results, rope=0.2, alpha=0.01)
    text = render_report(
        comparisons,
        stats.summarize(results),
        stats.aggregate(results),
        AnalysisSettings(title="FMCE ablation", rope=0.2, alpha=0.01),
        provenance={"study file": "studies/fmce.yaml", "git commit": "abc123", "versions": {"torch": "2.5.1"}},
        figures={"digits": ["figures/digits_arms.png"], AGGREGATE_FIGURES: ["figures/cd.png"]},
    )
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Verdict", "## Results per dataset", "## Warnings", "## Across datasets", "## Procedure", "## Provenance",
    ]  # fmt: skip
    assert text.startswith("# FMCE ablation\n")
    assert "![digits arms](figures/digits_arms.png)" in text and "(figures/cd.png)" in text
    assert "| git commit | abc123 |" in text and '| versions | {"torch": "2.5.1"} |' in text
    assert "±0.20 points (given) at p < 0.01" in text
    for ref in ("Holm, S. (1979)", "Benavoli", "Schuirmann", "Dem\u0161ar, J. (2006)", "Welch", "Student (1908)",
                "Hoenig, J. M., Heisey", "Lakens, D. (2013)", "Iman, R. L., Davenport", "Dodge, J.", "Higgins"):
        assert ref in text
    assert "only n = 5" not in text  # n = 5 is not below 5
    assert "permutation test cannot reach p < 0.01 with n = 5" in text
    assert "observed power" in text and "Hedges" not in text


def test_render_report_without_comparisons():
    results = pd.DataFrame({"dataset": ["d"], "arm": ["a"], "seed": [0], "accuracy": [0.9]})
    text = render_report(stats.compare(results), stats.summarize(results), stats.aggregate(results))
    assert "No contrast could be computed" in text and "| a | 1 | 90.00 |" in text


def test_render_report_with_friedman():
    results = study(n_seeds=3, datasets=tuple(f"d{i}" for i in range(5)))
    agg = stats.aggregate(results)
    text = render_report(stats.compare(results), stats.summarize(results), agg)
    f = agg.friedman
    assert f is not None
    shown = "\u221e" if f.f_statistic == math.inf else f"{f.f_statistic:.2f}"
    assert f"\u03c7\u00b2 = {f.statistic:.2f}, Iman-Davenport F = {shown}, p = {format_p(f.f_pvalue)}" in text
    assert f"CD = {f.cd:.2f}" in text


# --------------------------------------------------------------------------- the report folder


def test_report_numbers_agree_with_comparisons_csv(tmp_path):
    results = study()
    report = write_report_dir(results, tmp_path, AnalysisSettings(title="t"), provenance={"seeds": [0, 1, 2, 3, 4]})
    text = report.read_text(encoding="utf-8")
    csv = read_comparisons(tmp_path / "comparisons.csv")
    memory = stats.compare(results)
    # the CSV holds exactly the computed doubles
    numeric = memory.select_dtypes("number").columns
    pd.testing.assert_frame_equal(csv[numeric], memory[numeric], check_exact=True, check_dtype=False)
    assert "the test images are held fixed: no per-example predictions were given" in text
    assert len(csv) == 6
    for row in csv.to_dict("records"):
        line = (
            f"**{row['arm_a']} vs {row['arm_b']}** on {row['dataset']}: "
            f"{format_points(row['diff'], signed=True)} points "
            f"[{format_points(row['ci_low'], signed=True)}, {format_points(row['ci_high'], signed=True)}] on this "
            f"test set, Holm p = {format_p(row['p_holm'])}: {row['verdict']}"
        )
        assert line in text
    assert (tmp_path / "figures" / "digits_arms.png").stat().st_size > 0
    assert (tmp_path / "figures" / "cifar_10_arms.png").exists()
    assert "(figures/cifar_10_arms.png)" in text


def test_rerun_on_own_results_is_byte_identical(tmp_path, monkeypatch):
    # shuffled input: the written results.csv is in canonical order, and a run on it must
    # give the same comparisons as the run that wrote it. Figures are not what this checks,
    # and drawing them is most of the time, so they are stubbed.
    monkeypatch.setattr(report_figures, "arm_comparison", lambda rows, path, title: Path(path).write_bytes(b"png"))
    results = study().sample(frac=1.0, random_state=3).reset_index(drop=True)
    first, second = tmp_path / "first", tmp_path / "second"
    write_report_dir(results, first, AnalysisSettings(title="t"))
    write_report_dir(stats.load_results(first / "results.csv"), second, AnalysisSettings(title="t"))
    for name in ("results.csv", "comparisons.csv", "summaries.csv", "report.md"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    written = pd.read_csv(first / "results.csv")
    assert list(written.columns) == ["dataset", "arm", "seed", "accuracy"]
    merged = written.merge(results, on=["dataset", "arm", "seed"], suffixes=("", "_in"))
    assert len(merged) == len(results) and (merged["accuracy"] == merged["accuracy_in"]).all()


def test_no_temporary_files_left_and_bad_input_writes_nothing(tmp_path):
    curves = pd.DataFrame(
        [(arm, seed, epoch, 0.5 + 0.1 * epoch) for arm in ("a", "b") for seed in range(2) for epoch in range(3)],
        columns=["arm", "seed", "epoch", "val_accuracy"],
    )
    results = pd.DataFrame(
        [("d", arm, seed, 0.9 + 0.01 * seed + (arm == "a") * 0.001) for arm in ("a", "b") for seed in range(3)],
        columns=["dataset", "arm", "seed", "accuracy"],
    )
    write_report_dir(results, tmp_path / "out", AnalysisSettings(title="t"), curves=curves, missing=["a/d/seed 3"])
    assert "1 planned run(s) have no result: a/d/seed 3" in (tmp_path / "out" / "report.md").read_text()
    names = sorted(p.name for p in (tmp_path / "out").rglob("*"))
    assert not [n for n in names if n.endswith(".tmp")]
    assert "curves.png" in names
    with pytest.raises(ConfigError, match="no results for arm 'x'"):
        write_report_dir(results, tmp_path / "bad", AnalysisSettings(title="t", contrasts=[("a", "x")]))
    assert not (tmp_path / "bad").exists()


# --------------------------------------------------------------------------- issue 8: fair comparisons


@pytest.fixture
def no_figures(monkeypatch):
    """Figures are not what these tests check, and drawing them is most of their time."""
    monkeypatch.setattr(report_figures, "arm_comparison", lambda rows, path, title: Path(path).write_bytes(b"png"))


def costed_study() -> pd.DataFrame:
    """The FMCE arms with what the study layer records: DueHeadNet arms have twice the parameters
    and training of the single head, and the single head was still learning."""
    results = study(n_seeds=6, datasets=("digits",))
    params = {"single": 11_000_000, "nfmce": 22_000_000, "fmce": 22_000_000}
    images = {"single": 12_000, "nfmce": 24_000, "fmce": 24_000}
    gain = {"single": 0.04, "nfmce": 0.005, "fmce": 0.01}
    return results.assign(
        params=results["arm"].map(params), trainable_params=results["arm"].map(params) // 2,
        train_images=results["arm"].map(images), n_test=360, val_gain_last_quarter=results["arm"].map(gain),
        wall_time=30.0,
    )  # fmt: skip


def test_report_states_confounds_late_gains_and_a_dirty_tree(tmp_path, no_figures):
    provenance = {"study_file": "studies/x.yaml", "git_commit": "abc123+dirty", "host": "secret-box"}
    report = write_report_dir(costed_study(), tmp_path, AnalysisSettings(title="t"), provenance=provenance)
    text = report.read_text()
    opening = text.split("## Results per dataset")[0]
    assert "uncommitted changes" in opening and "abc123+dirty" in opening
    assert "**fmce vs single** on digits" in opening and "confounded by: parameters, compute" in opening
    assert "Confounded contrasts" in opening and "fmce vs single on digits (parameters, compute)" in opening
    assert "still rising: single" in opening
    assert "secret-box" not in text and "| host |" not in text
    assert "| single | 11,000,000 | 5,500,000 | 12,000 | 30 | +4.00 | yes |" in text
    assert "| fmce vs single | 22,000,000 / 11,000,000 |" in text
    csv = read_comparisons(tmp_path / "comparisons.csv")
    first = csv.iloc[0]
    assert (first["arm_a"], first["arm_b"]) == ("fmce", "nfmce")
    assert pd.isna(first["confounded_by"])  # the paper's question is not confounded: an empty cell
    assert csv["rope"].tolist() == pytest.approx([100 / 360] * 3)
    written = pd.read_csv(tmp_path / "results.csv")
    assert list(written.columns) == [
        "dataset", "arm", "seed", "accuracy", "params", "trainable_params", "train_images", "n_test",
        "val_gain_last_quarter", "wall_time",
    ]  # fmt: skip


def test_single_long_reaching_above_the_smallest_effect_marks_single_too_short(tmp_path, no_figures):
    rng = np.random.default_rng(2)
    base = rng.uniform(0.80, 0.82, 6)
    rows = [("d", "single", s, a) for s, a in enumerate(base)]
    rows += [("d", "single-long", s, a + 0.006 + rng.normal(0, 0.01)) for s, a in enumerate(base)]
    rows += [("d", "fmce", s, a + 0.01) for s, a in enumerate(base)]
    results = pd.DataFrame(rows, columns=["dataset", "arm", "seed", "accuracy"])
    settings = AnalysisSettings(title="t", contrasts=[("fmce", "single")], smallest_effect=1.0)
    text = write_report_dir(results, tmp_path, settings).read_text()
    (short,) = stats.too_short_recipes(results, smallest_effect=1.0)
    assert short.diff < 1.0 < short.ci_high  # a gain below the smallest effect, yet it may be too short
    assert (f"On d, single-long \u2212 single = {format_points(short.diff, signed=True)} points "
            f"[{format_points(short.ci_low, signed=True)}, {format_points(short.ci_high, signed=True)}] on this test "
            "set over 6 seeds: that reaches above the smallest effect of interest (1.00 points), so single may be "
            "too short") in text
    assert "; may be too short: single" in text.split("## Results per dataset")[0]
    assert read_comparisons(tmp_path / "comparisons.csv")["too_short"].tolist() == ["single"]


def test_tuning_is_shown_and_saved(tmp_path, no_figures):
    tuning = {
        "fmce": {"method": "per-arm", "settings": {"train.lr": 0.003, "model.constraint.weight": 0.5},
                 "n_trials": 4, "importances": {"train.lr": 0.8, "model.constraint.weight": 0.2},
                 "search_values": [0.6, 0.9, 0.7, 0.8]},
        "single": {"method": "per-arm", "settings": {"train.lr": 0.002}, "n_trials": 4, "importances": {},
                   "search_values": [0.5, 0.55, 0.6]},
    }  # fmt: skip
    text = write_report_dir(study(), tmp_path, AnalysisSettings(title="t"), tuning=tuning).read_text()
    assert "## Tuning" in text and "per-arm (each arm had its own search with the same budget)" in text
    assert "| train.lr | 0.003 |" in text and "| model.constraint.weight | 0.20 |" in text
    curve = stats.tuning_curve([0.6, 0.9, 0.7, 0.8])
    for n in (1, 2, 4):
        assert (f"| {n} | {100 * curve.expected[n - 1]:.2f} | [{100 * curve.low[n - 1]:.2f}, "
                f"{100 * curve.high[n - 1]:.2f}] |") in text
    assert "approximation" in text
    saved = json.loads((tmp_path / "tuning.json").read_text())
    assert saved["fmce"]["search_values"] == [0.6, 0.9, 0.7, 0.8] and saved["single"]["method"] == "per-arm"
    with pytest.raises(ConfigError, match="method 'grid'"):
        write_report_dir(study(), tmp_path / "bad", AnalysisSettings(title="t"), tuning={"fmce": {"method": "grid"}})
    assert not (tmp_path / "bad").exists()


# --------------------------------------------------------------------------- the CLI on a results table


def test_cli_report_regenerates_its_csvs_byte_for_byte(tmp_path, no_figures, capsys):
    results = costed_study()
    first = tmp_path / "first"
    tuning = {"fmce": {"method": "best", "settings": {"train.lr": 0.001}, "n_trials": 2, "importances": {},
                       "search_values": [0.7, 0.8]}}  # fmt: skip
    write_report_dir(results, first, AnalysisSettings(title="t"), tuning=tuning)
    src = tmp_path / "committed"
    src.mkdir()
    (src / "results.csv").write_bytes((first / "results.csv").read_bytes())
    argv = ["report", "--results", str(src / "results.csv"), "--out", str(src), "--contrast", "fmce", "single",
            "--contrast", "fmce", "nfmce", "--rope", "0.1", "--smallest-effect", "0.5", "--still-rising", "3"]
    assert main(argv) == 0
    settings = json.loads((src / "analysis.json").read_text())
    assert settings["contrasts"] == [["fmce", "single"], ["fmce", "nfmce"]] and settings["rope"] == 0.1
    assert settings["smallest_effect"] == 0.5 and settings["still_rising"] == 3.0
    csv = read_comparisons(src / "comparisons.csv")
    assert list(zip(csv["arm_a"], csv["arm_b"])) == [("fmce", "single"), ("fmce", "nfmce")]
    assert "finer than one test image" in csv["warnings"].iloc[0]
    assert csv["seeds_for_smallest_effect"].notna().all()
    # the settings beside results.csv are used without flags, to another folder: same bytes
    (first / "tuning.json").replace(src / "tuning.json")
    again = tmp_path / "again"
    assert main(["report", "--results", str(src / "results.csv"), "--out", str(again)]) == 0
    for name in ("comparisons.csv", "across.csv", "results.csv", "analysis.json"):
        assert (again / name).read_bytes() == (src / name).read_bytes(), name
    assert (again / "tuning.json").read_bytes() == (src / "tuning.json").read_bytes()
    assert "## Tuning" in (again / "report.md").read_text()
    # without a settings file, all pairs as before
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "results.csv").write_bytes((first / "results.csv").read_bytes())
    assert main(["report", "--results", str(bare / "results.csv"), "--out", str(tmp_path / "bare-out")]) == 0
    assert len(read_comparisons(tmp_path / "bare-out" / "comparisons.csv")) == 3


def test_cli_report_on_an_old_table_without_cost_columns(tmp_path, no_figures, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("old.csv").write_text(study(n_seeds=3, datasets=("digits",)).to_csv(index=False))
    assert main(["report", "--results", "old.csv", "--out", "out"]) == 0
    csv = read_comparisons(Path("out") / "comparisons.csv")
    assert (csv["confounded_by"] == "unknown").all()
    text = (Path("out") / "report.md").read_text()
    assert "| results file | old.csv |" in text
    assert str(tmp_path) not in text  # no machine paths in a report


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--contrast", "fmce", "nope"], ["no results for arm 'nope'", "arms are single, nfmce, fmce"]),
        (["--contrast", "fmce", "fmce"], ["compares an arm with itself"]),
        (["--rope", "abc"], ["--rope: expected a number, got 'abc'"]),
        (["--rope", "-1"], ["rope must be a finite number of points >= 0"]),
        (["--alpha", "2"], ["alpha must be in (0, 1)"]),
        (["--smallest-effect", "nan"], ["--smallest-effect: expected a finite number"]),
        (["--still-rising", "x"], ["--still-rising: expected a number"]),
    ],
)
def test_cli_report_bad_flags(tmp_path, capsys, extra, needles):
    path = tmp_path / "results.csv"
    study(n_seeds=3, datasets=("digits",)).to_csv(path, index=False)
    fails_in_one_line(capsys, ["report", "--results", str(path), "--out", str(tmp_path / "o"), *extra], *needles)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("name", "text", "needles"),
    [
        ("analysis.json", "{not json", ["analysis.json: not valid JSON"]),
        ("analysis.json", '{"rope": "wide"}', ["rope must be a number"]),
        ("analysis.json", '{"ropes": 0.1}', ["unknown key 'ropes'"]),
        ("analysis.json", '{"contrasts": [["fmce"]]}', ["contrasts must be a list of [arm_a, arm_b] pairs"]),
        ("tuning.json", '{"fmce": {"method": "grid"}}', ["tuning.json: tuning of arm 'fmce': method 'grid'"]),
        ("analysis.json", '{"sequential": {"looks": [3, 3], "spending": "pocock", "comparisons": 1}}',
         ["analysis.json: sequential must be {looks: [increasing seed counts >= 2]", "(looks: [3, 3])"]),
        ("analysis.json", '{"sequential": {"looks": [3, 6], "spending": "wald", "comparisons": 1}}',
         ["sequential.spending 'wald' is not one of obrien-fleming, pocock"]),
    ],
)
def test_cli_report_bad_settings_files(tmp_path, capsys, name, text, needles):
    path = tmp_path / "results.csv"
    study(n_seeds=3, datasets=("digits",)).to_csv(path, index=False)
    (tmp_path / name).write_text(text)
    fails_in_one_line(capsys, ["report", "--results", str(path), "--out", str(tmp_path / "o")], *needles)


def test_cli_report_missing_results_and_flags_without_results(tmp_path, capsys, write_study):
    fails_in_one_line(capsys, ["report", "--results", str(tmp_path / "nope.csv")], "no such results file")
    from tests.conftest import tiny_study_text

    path = write_study(tiny_study_text(extra="repeats: {seeds: 2}\n"))
    fails_in_one_line(capsys, ["report", str(path), "--contrast", "a", "b"], "--contrast applies to --results only")


# --------------------------------------------------------------------------- across data sets (issue 10)


def one_run_each() -> pd.DataFrame:
    rows = [
        (d, arm, 0, acc)
        for d, accs in (("c10", (0.7711, 0.7697)), ("c101", (0.7304, 0.7189)), ("f102", (0.4598, 0.4520)))
        for arm, acc in zip(("fmce", "nfmce"), accs)
    ]
    return pd.DataFrame(rows, columns=["dataset", "arm", "seed", "accuracy"])


def test_one_run_per_cell_gives_the_datasets_as_units_verdict(tmp_path, no_figures):
    text = write_report_dir(one_run_each(), tmp_path, AnalysisSettings(title="t")).read_text()
    opening = text.split("## Results per dataset")[0]
    first = [line for line in opening.splitlines() if line.startswith("- ")][0]
    assert first == (
        "- **fmce vs nfmce** across data sets: fmce ahead on 3 of 3 data sets (sign test p = 0.250, "
        "Wilcoxon p = 0.250); with 3 data sets no sign or rank test can reach p < 0.05 (smallest attainable p = 0.25)."
    )
    assert "insufficient data (n = 1 paired seeds)" in opening  # there too, but never alone
    across = pd.read_csv(tmp_path / "across.csv")
    assert list(across.columns[:17]) == [
        "arm_a", "arm_b", "n_datasets", "a_ahead", "b_ahead", "p_sign_datasets", "p_wilcoxon_datasets",
        "min_p_datasets", "re_datasets", "re_diff", "re_se", "re_ci_low", "re_ci_high", "tau2", "i2", "pi_low", "pi_high",
    ]  # fmt: skip
    assert across.loc[0, "p_sign_datasets"] == 0.25 and pd.isna(across.loc[0, "re_diff"])


def test_across_csv_with_seeds_regenerates_byte_for_byte(tmp_path, no_figures):
    results = study(n_seeds=4, datasets=("d1", "d2", "d3", "d4")).assign(n_test=500)
    first = tmp_path / "first"
    write_report_dir(results, first, AnalysisSettings(title="t", contrasts=[("fmce", "nfmce"), ("fmce", "single")]))
    across = pd.read_csv(first / "across.csv")
    assert across["re_datasets"].tolist() == [4, 4] and across["re_diff"].notna().all() and across["pi_low"].notna().all()
    text = (first / "report.md").read_text()
    assert "Hartung-Knapp-Sidik-Jonkman" in text and "random effects over 4 data sets" in text
    second = tmp_path / "second"
    assert main(["report", "--results", str(first / "results.csv"), "--out", str(second)]) == 0
    for name in ("comparisons.csv", "across.csv"):
        assert (second / name).read_bytes() == (first / name).read_bytes(), name


def test_committed_paper_report_regenerates_byte_for_byte(tmp_path, no_figures):
    committed = Path(__file__).resolve().parent.parent / "reports" / "fmce-paper"
    out = tmp_path / "paper"
    assert main(["report", "--results", str(committed / "results.csv"), "--out", str(out)]) == 0
    for name in ("results.csv", "analysis.json", "comparisons.csv", "across.csv", "summaries.csv"):
        assert (out / name).read_bytes() == (committed / name).read_bytes(), name
    text = (out / "report.md").read_text()
    assert "unseeded" in text and "best epoch was picked on the test set" in text
    assert "fmce-18 ahead on 3 of 3 data sets" in text


# --------------------------------------------------------------------------- the procedure, written once


def test_docs_statistics_md_is_what_the_procedure_generates():
    committed = Path(__file__).resolve().parent.parent / "docs" / "statistics.md"
    assert committed.read_text(encoding="utf-8") == statistics_page(), "run: python -m ablate.report.docs"


def test_the_procedure_section_is_the_steps_with_the_settings_filled_in():
    plan = SequentialPlan(looks=(3, 6), spending="pocock", comparisons=4)
    section = procedure_section(AnalysisSettings(alpha=0.01, rope=0.25, smallest_effect=0.5), plan)
    steps = [line for line in section if line[:1].isdigit()]
    assert len(steps) == len(STEPS) + len(SEQUENTIAL_STEPS)
    assert "within ±0.25 points (given) are treated as practically zero" in steps[6]
    assert "against the smallest effect of interest, 0.50 points" in steps[7] and "0.01/m" in steps[7]
    assert "Satterthwaite" in steps[3] and "Holm" in steps[4]
    default = procedure_section(AnalysisSettings(smallest_effect=0.5))
    assert "within ±0.50 points (the smallest effect of interest) are" in [x for x in default if x[:2] == "7."][0]
    assert "looks after 3, 6 seeds" in steps[-2] and "1 − 0.01/4" in steps[-2]
    assert section[-2].startswith("- Jennison, C., Turnbull, B. W. (1989)")
    fixed = procedure_section(AnalysisSettings())
    assert len([line for line in fixed if line[:1].isdigit()]) == len(STEPS)
    assert not any("Armitage" in line for line in fixed)


# --------------------------------------------------------------------------- predictions (issue 16)


def predicted_study(seeds: int = 5, examples: int = 200) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three arms on one data set, scored on the same test images, with every run's predictions: fmce
    gets a few more hard images right than nfmce, single a few fewer."""
    rng = np.random.default_rng(16)
    labels = rng.integers(0, 10, examples)
    hard = rng.random(examples) < 0.15
    results, predictions = [], []
    for arm, p_hard in (("single", 0.45), ("nfmce", 0.5), ("fmce", 0.6)):
        for seed in range(seeds):
            right = np.where(hard, rng.random(examples) < p_hard, rng.random(examples) < 0.99)
            predicted = np.where(right, labels, (labels + 1 + rng.integers(0, 9, examples)) % 10)
            results.append(("digits", arm, seed, float(right.mean()), examples))
            predictions.append(pd.DataFrame({"dataset": "digits", "arm": arm, "seed": seed,
                                             "example": np.arange(examples) * 3, "label": labels,
                                             "predicted": predicted}))
    return (pd.DataFrame(results, columns=["dataset", "arm", "seed", "accuracy", "n_test"]),
            pd.concat(predictions, ignore_index=True))


def test_predictions_are_saved_read_back_and_regenerate_byte_for_byte(tmp_path, no_figures, monkeypatch):
    drawn = []
    monkeypatch.setattr(report_figures, "head_similarity",
                        lambda sim, path, title, **kw: drawn.append(kw) or Path(path).write_bytes(b"png"))
    results, predictions = predicted_study()
    settings = AnalysisSettings(title="t", vary=("init", "order", "augment", "split"))
    first = tmp_path / "first"
    text = write_report_dir(results, first, settings, predictions=predictions.sample(frac=1.0, random_state=1)).read_text()
    saved = first / "predictions.csv.gz"
    back = stats.load_predictions(saved, stats.load_results(first / "results.csv"))
    pd.testing.assert_frame_equal(back, stats.validate_predictions(predictions, results))
    with open(saved, "rb") as handle:
        assert handle.read(10)[4:8] == b"\0\0\0\0"  # gzip mtime 0
    # beside results.csv, read back by ablate report --results: every file the same bytes
    second = tmp_path / "second"
    assert main(["report", "--results", str(first / "results.csv"), "--out", str(second)]) == 0
    for name in ("comparisons.csv", "across.csv", "predictions.csv.gz", "analysis.json"):
        assert (second / name).read_bytes() == (first / name).read_bytes(), name
    # or from anywhere with --predictions
    elsewhere, third = tmp_path / "elsewhere", tmp_path / "third"
    elsewhere.mkdir()
    (elsewhere / "results.csv").write_bytes((first / "results.csv").read_bytes())
    (elsewhere / "analysis.json").write_bytes((first / "analysis.json").read_bytes())
    assert main(["report", "--results", str(elsewhere / "results.csv"), "--out", str(third),
                 "--predictions", str(saved)]) == 0
    assert (third / "comparisons.csv").read_bytes() == (first / "comparisons.csv").read_bytes()
    csv = read_comparisons(first / "comparisons.csv")
    assert csv["p_new_data"].notna().all() and (csv["n_examples"] == 200).all()
    opening = text.split("## Results per dataset")[0]
    assert ("What the intervals cover: seeds vary initialisation, data order, augmentation and the "
            "train/validation split; the 200 test images are a sample too") in opening
    fmce = csv.iloc[0]
    assert (f"[{format_points(fmce['ci_low_new_data'], signed=True)}, "
            f"{format_points(fmce['ci_high_new_data'], signed=True)}] on new data") in opening
    assert "95% CI, new data" in text and "## Per-example disagreement" in text
    assert drawn and set(drawn[0]["disagreement"]["arm_a"]) == {"fmce", "nfmce"}
    # without predictions the folder loses its stale file, and says the intervals hold for this test set
    write_report_dir(results, first, settings)
    assert not saved.exists()
    assert "this test set only" in (first / "report.md").read_text()


def test_a_bad_predictions_file_is_one_line_at_the_command_line(tmp_path, capsys, no_figures):
    results, predictions = predicted_study(seeds=3, examples=20)
    path = tmp_path / "results.csv"
    results.to_csv(path, index=False)
    bad = tmp_path / "bad.csv.gz"
    predictions.assign(seed=predictions["seed"] + 7).to_csv(bad, index=False)
    fails_in_one_line(capsys, ["report", "--results", str(path), "--out", str(tmp_path / "o"), "--predictions",
                             str(bad)], "bad.csv.gz", "digits/single/seed 7: a run that is not in the results")
    assert not (tmp_path / "o").exists()
    predictions.drop(columns=["predicted"]).to_csv(tmp_path / "predictions.csv.gz", index=False)
    fails_in_one_line(capsys, ["report", "--results", str(path), "--out", str(tmp_path / "o")],
                    "predictions.csv.gz: predictions table lacks column(s) predicted")
    fails_in_one_line(capsys, ["report", "--results", str(path), "--predictions", str(tmp_path / "none.csv.gz")],
                    "no such predictions file")
    good = io.BytesIO()
    predictions.to_csv(good, index=False, compression={"method": "gzip", "mtime": 0})
    damaged = bytearray(good.getvalue())
    damaged[40:60] = bytes(20)  # the deflate stream broken: zlib.error
    (tmp_path / "predictions.csv.gz").write_bytes(bytes(damaged))
    fails_in_one_line(capsys, ["report", "--results", str(path), "--out", str(tmp_path / "o")],
                    "predictions.csv.gz: cannot read predictions CSV")
    (tmp_path / "predictions.csv.gz").write_bytes(good.getvalue()[:-30])  # cut short: EOFError
    fails_in_one_line(capsys, ["report", "--results", str(path), "--out", str(tmp_path / "o")],
                    "predictions.csv.gz: cannot read predictions CSV")
    (tmp_path / "predictions.csv.gz").write_bytes(b"not gzip at all")  # gzip.BadGzipFile
    fails_in_one_line(capsys, ["report", "--results", str(path), "--out", str(tmp_path / "o")],
                    "predictions.csv.gz: cannot read predictions CSV")
    assert not (tmp_path / "o").exists()


def test_a_sequential_report_gives_the_new_data_interval_beside_each_decided_contrast(tmp_path, no_figures):
    results, predictions = predicted_study(seeds=6)
    plan = SequentialPlan(looks=(5, 6), spending="pocock", comparisons=3)
    text = write_report_dir(results, tmp_path, AnalysisSettings(title="t", sequential=plan),
                            predictions=predictions).read_text()
    csv = read_comparisons(tmp_path / "comparisons.csv")
    assert csv[["p_new_data_holm", "p_tost_new_data_holm", "p_holm"]].isna().all().all()
    assert csv["p_new_data"].notna().all()
    sequential = pd.read_csv(tmp_path / "sequential.csv")
    decided = sequential[sequential["boundary"].notna()]
    assert len(decided)  # fmce vs single is plain
    for r in decided.to_dict("records"):
        row = csv[(csv["arm_a"] == r["arm_a"]) & (csv["arm_b"] == r["arm_b"])].iloc[0]
        assert ("decided by the design's seed-level test, whose boundaries are calibrated for it (this test set); "
                f"for new data (seeds and test images random, all 6 seeds run) "
                f"[{format_points(row['ci_low_new_data'], signed=True)}, "
                f"{format_points(row['ci_high_new_data'], signed=True)}]") in text
    assert "Beside each decided contrast is its interval for new data" in text


def test_the_opening_says_what_the_seeds_varied():
    results = study(n_seeds=3, datasets=("digits",)).assign(n_test=360)
    comparisons, summaries = stats.compare(results), stats.summarize(results)
    profiles = stats.profile_arms(results)
    some = render_report(comparisons, summaries, settings=AnalysisSettings(vary=("init", "order")), profiles=profiles)
    assert ("What the intervals cover: seeds vary initialisation and data order (augmentation and the "
            "train/validation split are the same for every seed); the 360 test images are held fixed") in some
    unknown = render_report(comparisons, summaries, profiles=profiles)
    assert "what the seeds varied is not recorded" in unknown


def test_the_head_diversity_figure_gains_per_example_disagreement(tmp_path):
    results, predictions = predicted_study(seeds=3, examples=50)
    disagree = stats.disagreement(predictions, results)
    similarity = pd.DataFrame({"arm": ["fmce", "fmce", "nfmce", "nfmce"], "seed": [0, 1, 0, 1],
                               "head_similarity": [0.2, 0.3, 0.5, 0.6]})
    both = report_figures.head_similarity(similarity, tmp_path / "both.png", "d", disagreement=disagree)
    alone = report_figures.head_similarity(None, tmp_path / "alone.png", "d", disagreement=disagree)
    assert both.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and alone.stat().st_size > 0
    with pytest.raises(DataError, match="neither head similarity nor disagreement"):
        report_figures.head_similarity(None, tmp_path / "none.png", "d")


def test_predictions_apply_to_results_reports_only(tmp_path, capsys, write_study):
    from tests.conftest import tiny_study_text

    path = write_study(tiny_study_text(extra="repeats: {seeds: 2}\n"))
    fails_in_one_line(capsys, ["report", str(path), "--predictions", str(tmp_path / "p.csv.gz")],
                    "--predictions applies to --results only")


def test_a_row_without_predictions_gives_the_holm_p_its_verdict_used():
    results, predictions = predicted_study(seeds=5)
    partial = predictions[~((predictions["arm"] == "nfmce") & (predictions["seed"] == 4))]
    comparisons = stats.compare(results, predictions=partial)
    assert comparisons["p_new_data"].notna().tolist() == [False, False, True]  # only the contrast without nfmce has all seeds
    held = stats.verdict_holm(comparisons)
    text = render_report(comparisons, stats.summarize(results), profiles=stats.profile_arms(results))
    for row, p in zip(comparisons.to_dict("records"), held["p_verdict_holm"]):
        if math.isfinite(row["p_new_data"]):
            assert row["p_new_data_holm"] == pytest.approx(p)
        else:  # this test set's p, adjusted together with the other row's new-data p
            assert f"on this test set, Holm p = {format_p(p)}: {row['verdict']}" in text
    assert "1 of 5 paired seeds lack predictions: no new-data test" in comparisons["warnings"].iloc[0]


def test_verdicts_per_replicate_use_each_replicate_s_predictions(tmp_path, no_figures):
    results, predictions = predicted_study(seeds=5)
    results = pd.concat([results.assign(replicate=r) for r in (0, 1)], ignore_index=True)
    predictions = pd.concat([predictions.assign(replicate=r) for r in (0, 1)], ignore_index=True)
    write_report_dir(results, tmp_path, AnalysisSettings(title="t"), predictions=predictions)
    written = pd.read_csv(tmp_path / "replicates.csv")
    one = stats.replicate_rows(results, 1)
    with_new_data = stats.compare(one, predictions=predictions[predictions["replicate"] == 1])
    assert list(written[written["replicate"] == 1]["verdict"]) == list(with_new_data["verdict"])
    assert list(with_new_data["verdict"]) != list(stats.compare(one)["verdict"])  # the seeds alone decide otherwise


def test_a_figure_that_fails_leaves_the_previous_report_as_it_was(tmp_path, no_figures, monkeypatch):
    out = tmp_path / "rep"
    results = study(n_seeds=3)
    write_report_dir(results, out, AnalysisSettings(title="before"))
    (out / "README.md").write_text("kept\n")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(rows, path, title):
        raise RuntimeError("no display")

    monkeypatch.setattr(report_figures, "arm_comparison", broken)
    changed = results.assign(accuracy=results["accuracy"] * 0.99)
    with pytest.raises(RuntimeError, match="no display"):
        write_report_dir(changed, out, AnalysisSettings(title="after"))
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no staging folder left behind


def test_a_rewrite_removes_stale_figures_and_keeps_files_it_does_not_write(tmp_path, no_figures):
    out = tmp_path / "rep"
    write_report_dir(study(n_seeds=3), out, AnalysisSettings(title="t"))
    assert (out / "figures" / "cifar_10_arms.png").exists()
    (out / "README.md").write_text("kept\n")
    (out / "figures" / "old_dataset_arms.png").write_bytes(b"png")
    write_report_dir(study(n_seeds=3, datasets=("digits",)), out, AnalysisSettings(title="t"))
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["digits_arms.png"]
    assert (out / "README.md").read_text() == "kept\n"
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
