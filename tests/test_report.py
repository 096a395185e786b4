"""ablate.report and ablate.publish: the text shows the CSV's numbers, and re-runs reproduce them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ablate import publish, stats
from ablate.errors import ConfigError
from ablate.publish import write_report_dir
from ablate.report import (
    AGGREGATE_FIGURES,
    format_count,
    format_p,
    format_points,
    render_report,
    verdict_sentence,
)


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
        "ci_high": 0.9, "p_holm": 0.21, "verdict": "not significant", "seeds_needed": 23.0, "sd_diff": 0.5,
    }  # fmt: skip
    assert verdict_sentence(row) == (
        "**fmce vs nfmce** on digits: +0.40 points [\u22120.10, +0.90], Holm p = 0.210: not significant; "
        "23 seeds would be needed to detect a difference this size with 80% power (n = 5)."
    )


# --------------------------------------------------------------------------- render


def test_render_report_sections_and_inputs():
    results = study()
    comparisons = stats.compare(results, rope=0.2, alpha=0.01)
    text = render_report(
        comparisons,
        stats.summarize(results),
        stats.aggregate(results),
        title="FMCE ablation",
        provenance={"study file": "studies/fmce.yaml", "git commit": "abc123", "versions": {"torch": "2.5.1"}},
        figures={"digits": ["figures/digits_arms.png"], AGGREGATE_FIGURES: ["figures/cd.png"]},
        rope=0.2,
        alpha=0.01,
    )
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Verdict", "## Results per dataset", "## Warnings", "## Across datasets", "## Procedure", "## Provenance",
    ]  # fmt: skip
    assert text.startswith("# FMCE ablation\n")
    assert "![digits arms](figures/digits_arms.png)" in text and "(figures/cd.png)" in text
    assert "| git commit | abc123 |" in text and '| versions | {"torch": "2.5.1"} |' in text
    assert "±0.20 points at p < 0.01" in text
    for ref in ("Holm, S. (1979)", "Benavoli", "Schuirmann", "Dem\u0161ar, J. (2006)", "Welch", "Student (1908)"):
        assert ref in text
    assert "only n = 5" not in text  # n = 5 is not below 5
    assert "rank test cannot reach p < 0.01 with n = 5" in text


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
    assert f"\u03c7\u00b2 = {f.statistic:.2f}, p = {format_p(f.pvalue)}" in text
    assert f"CD = {f.cd:.2f}" in text


# --------------------------------------------------------------------------- publish


def test_report_numbers_agree_with_comparisons_csv(tmp_path):
    results = study()
    report = write_report_dir(results, tmp_path, title="t", provenance={"seeds": [0, 1, 2, 3, 4]})
    text = report.read_text(encoding="utf-8")
    csv = read_comparisons(tmp_path / "comparisons.csv")
    memory = stats.compare(results)
    # the CSV holds exactly the computed doubles
    numeric = memory.select_dtypes("number").columns
    pd.testing.assert_frame_equal(csv[numeric], memory[numeric], check_exact=True)
    assert len(csv) == 6
    for row in csv.to_dict("records"):
        line = (
            f"**{row['arm_a']} vs {row['arm_b']}** on {row['dataset']}: "
            f"{format_points(row['diff'], signed=True)} points "
            f"[{format_points(row['ci_low'], signed=True)}, {format_points(row['ci_high'], signed=True)}], "
            f"Holm p = {format_p(row['p_holm'])}: {row['verdict']}"
        )
        assert line in text
    assert (tmp_path / "figures" / "digits_arms.png").stat().st_size > 0
    assert (tmp_path / "figures" / "cifar_10_arms.png").exists()
    assert "(figures/cifar_10_arms.png)" in text


def test_rerun_on_own_results_is_byte_identical(tmp_path, monkeypatch):
    # shuffled input: the written results.csv is in canonical order, and a run on it must
    # give the same comparisons as the run that wrote it. Figures are not what this checks,
    # and drawing them is most of the time, so they are stubbed.
    monkeypatch.setattr(publish.figs, "arm_comparison", lambda rows, path, title: Path(path).write_bytes(b"png"))
    results = study().sample(frac=1.0, random_state=3).reset_index(drop=True)
    first, second = tmp_path / "first", tmp_path / "second"
    write_report_dir(results, first, title="t")
    write_report_dir(stats.load_results(first / "results.csv"), second, title="t")
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
    write_report_dir(results, tmp_path / "out", title="t", curves=curves, missing=["a/d/seed 3"])
    assert "1 planned run(s) have no result: a/d/seed 3" in (tmp_path / "out" / "report.md").read_text()
    names = sorted(p.name for p in (tmp_path / "out").rglob("*"))
    assert not [n for n in names if n.endswith(".tmp")]
    assert "curves.png" in names
    with pytest.raises(ConfigError, match="no results for arm 'x'"):
        write_report_dir(results, tmp_path / "bad", title="t", contrasts=[("a", "x")])
    assert not (tmp_path / "bad").exists()
