"""Values of ablate.stats checked against scipy/statsmodels on small fixed tables."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special
from scipy import stats as st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from ablate import stats
from ablate.errors import ConfigError, DataError


pytestmark = pytest.mark.usefixtures("cheap_gc")


def table(
    arms: dict[str, list[float]], dataset: str = "digits", seeds: dict[str, list[int]] | None = None
) -> pd.DataFrame:
    """A results table: one row per value, seeds 0..n-1 unless given."""
    rows = []
    for arm, values in arms.items():
        arm_seeds = (seeds or {}).get(arm, list(range(len(values))))
        rows += [(dataset, arm, s, v) for s, v in zip(arm_seeds, values)]
    return pd.DataFrame(rows, columns=["dataset", "arm", "seed", "accuracy"])


def only_row(results: pd.DataFrame, **kwargs) -> pd.Series:
    """The single comparison row; degenerate inputs must not leak warnings either."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = stats.compare(results, **kwargs)
    assert len(frame) == 1
    return frame.iloc[0]


A = [0.912, 0.905, 0.921, 0.915, 0.909, 0.918]
B = [0.907, 0.906, 0.913, 0.910, 0.902, 0.911]


# --------------------------------------------------------------------------- one contrast


def test_paired_values_match_scipy_and_statsmodels():
    row = only_row(table({"fmce": A, "nfmce": B}))
    a, b = np.array(A) * 100, np.array(B) * 100
    d = a - b
    paired = st.ttest_rel(a, b)
    ci = paired.confidence_interval()
    assert row["n"] == 6
    assert row["mean_a"] == pytest.approx(a.mean()) and row["mean_b"] == pytest.approx(b.mean())
    assert row["diff"] == pytest.approx(d.mean())
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert row["p_paired"] == pytest.approx(paired.pvalue)
    assert row["p_welch"] == pytest.approx(st.ttest_ind(a, b, equal_var=False).pvalue)
    assert row["p_tost"] == pytest.approx(ttost_paired(a, b, -0.1, 0.1)[0])
    assert row["p_superiority"] == pytest.approx(st.mannwhitneyu(a, b).statistic / 36)
    # Hedges' g: pooled-sd d times the exact correction, close to the usual 1 - 3/(4m - 1)
    m = 10
    pooled = math.sqrt((5 * a.var(ddof=1) + 5 * b.var(ddof=1)) / m)
    j = math.exp(special.gammaln(m / 2) - special.gammaln((m - 1) / 2)) / math.sqrt(m / 2)
    assert row["hedges_g"] == pytest.approx((a.mean() - b.mean()) / pooled * j)
    assert j == pytest.approx(1 - 3 / (4 * m - 1), abs=2e-3)
    # Bayesian paired t posterior (Benavoli et al. 2017)
    sd = d.std(ddof=1)
    post = st.t(5, loc=d.mean(), scale=sd / math.sqrt(6))
    assert row["rope_below"] == pytest.approx(post.cdf(-0.1))
    assert row["rope_above"] == pytest.approx(post.sf(0.1))
    assert row["rope_below"] + row["rope_inside"] + row["rope_above"] == pytest.approx(1.0)
    power = TTestPower()
    assert row["mde_80"] == pytest.approx(power.solve_power(nobs=6, alpha=0.05, power=0.8) * sd)
    effect = d.mean() / sd
    assert row["seeds_needed"] == math.ceil(power.solve_power(effect_size=effect, alpha=0.05, power=0.8))
    assert row["power"] == pytest.approx(power.power(effect, 6, 0.05))
    assert row["sd_diff"] == pytest.approx(sd)


def test_exact_sign_flip_permutation_p():
    # all 4 differences positive and distinct: only the identity and the all-flip are as
    # extreme as observed, so two-sided p = 2 / 2**4
    row = only_row(table({"a": [0.5, 0.6, 0.7, 0.8], "b": [0.49, 0.58, 0.67, 0.76]}))
    assert row["p_permutation"] == pytest.approx(2 / 16)
    row5 = only_row(table({"a": [0.5, 0.6, 0.7, 0.8, 0.9], "b": [0.49, 0.58, 0.67, 0.76, 0.85]}))
    assert row5["p_permutation"] == pytest.approx(2 / 32)


def test_monte_carlo_permutation_is_seeded():
    rng = np.random.default_rng(3)
    a = rng.uniform(0.8, 0.9, 20)
    b = a - rng.normal(0.002, 0.01, 20)
    results = table({"a": list(a), "b": list(b)})
    p1 = only_row(results)["p_permutation"]
    p2 = only_row(results)["p_permutation"]
    assert p1 == p2
    assert p1 == pytest.approx(st.ttest_rel(a, b).pvalue, abs=0.1)  # same question, similar answer


def test_n_equals_two():
    row = only_row(table({"a": [0.90, 0.95], "b": [0.88, 0.91]}))
    a, b = np.array([90.0, 95.0]), np.array([88.0, 91.0])
    assert row["n"] == 2
    assert row["p_paired"] == pytest.approx(st.ttest_rel(a, b).pvalue)
    assert row["p_permutation"] == pytest.approx(0.5)  # 2 / 2**2
    assert row["seeds_needed"] >= 2 and math.isfinite(row["mde_80"])
    assert "only n = 2 paired seeds" in row["warnings"]
    assert "smallest possible p = 0.5" in row["warnings"]


def test_ties_count_half_in_superiority():
    row = only_row(table({"a": [0.90, 0.90, 0.92, 0.91], "b": [0.90, 0.91, 0.90, 0.91]}))
    a, b = np.array([90, 90, 92, 91.0]), np.array([90, 91, 90, 91.0])
    wins = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    assert row["p_superiority"] == pytest.approx(wins / 16)
    assert row["p_paired"] == pytest.approx(st.ttest_rel(a, b).pvalue)


def test_equal_arms_are_practically_equivalent():
    row = only_row(table({"a": A, "b": A}))
    assert row["diff"] == 0.0 and (row["ci_low"], row["ci_high"]) == (0.0, 0.0)
    assert math.isnan(row["p_paired"]) and math.isnan(row["p_holm"])  # t = 0/0
    assert row["p_permutation"] == 1.0
    assert row["p_welch"] == pytest.approx(1.0)
    assert row["hedges_g"] == 0.0 and row["p_superiority"] == 0.5
    assert (row["rope_below"], row["rope_inside"], row["rope_above"]) == (0.0, 1.0, 0.0)
    assert row["p_tost"] < 0.05
    assert row["verdict"] == "practically equivalent"
    assert math.isnan(row["seeds_needed"]) and math.isnan(row["mde_80"])
    assert "zero variance" in row["warnings"]


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # the reference ttest_ind
def test_one_arm_constant():
    row = only_row(table({"a": A, "b": [0.9] * 6}))
    a, b = np.array(A) * 100, np.full(6, 0.9) * 100
    assert row["p_paired"] == pytest.approx(st.ttest_rel(a, b).pvalue)
    assert row["p_welch"] == pytest.approx(st.ttest_ind(a, b, equal_var=False).pvalue)
    assert math.isfinite(row["hedges_g"]) and row["p_superiority"] == 1.0


def test_constant_nonzero_difference():
    # exactly representable in binary, so the differences are exactly 25 points; with values
    # such as 0.6 the x100 conversion leaves ~1e-14 noise and sd(d) is tiny but not 0
    row = only_row(table({"a": [0.5, 0.75, 0.625, 0.875], "b": [0.25, 0.5, 0.375, 0.625]}))
    assert row["sd_diff"] == 0.0 and row["diff"] == 25.0
    assert row["p_paired"] == 0.0 and row["verdict"] == "significant: a better"
    assert (row["rope_below"], row["rope_inside"], row["rope_above"]) == (0.0, 0.0, 1.0)
    assert math.isnan(row["mde_80"]) and math.isnan(row["seeds_needed"])


def test_zero_mean_difference_needs_infinite_seeds():
    row = only_row(table({"a": [0.90, 0.92, 0.91], "b": [0.91, 0.91, 0.91]}))
    assert row["diff"] == pytest.approx(0.0, abs=1e-12)
    # exact 0 needs exact arithmetic: 90 + 92 + 91 - 3 * 91 may round; either inf or huge
    assert row["seeds_needed"] == math.inf or row["seeds_needed"] > 1e6


def test_fewer_than_two_pairs_is_insufficient():
    row = only_row(table({"a": [0.9, 0.8], "b": [0.7, 0.6]}, seeds={"a": [0, 1], "b": [1, 2]}))
    assert row["n"] == 1 and row["verdict"] == "insufficient data"
    assert math.isnan(row["p_paired"]) and math.isnan(row["p_holm"])
    assert "2 seed(s) run for only one arm" in row["warnings"]


def test_significant_b_better_and_warnings():
    rng = np.random.default_rng(0)
    b = rng.uniform(0.85, 0.95, 12)
    a = b - 0.02 + rng.normal(0, 0.002, 12)
    row = only_row(table({"a": list(a), "b": list(b)}))
    assert row["verdict"] == "significant: b better"
    assert row["warnings"] == ""  # n = 12, power high, rank test feasible


def test_rank_test_warning_threshold():
    five = only_row(table({"a": A[:5], "b": B[:5]}))
    six = only_row(table({"a": A, "b": B}))
    assert "rank test cannot reach p < 0.05 with n = 5 (smallest possible p = 0.0625)" in five["warnings"]
    assert "fewer than 5" not in five["warnings"]
    assert "rank test" not in six["warnings"]


# --------------------------------------------------------------------------- the table


def two_datasets() -> pd.DataFrame:
    rng = np.random.default_rng(42)
    frames = []
    for dataset, shift in (("digits", 0.004), ("cifar", 0.001)):
        base = rng.uniform(0.88, 0.92, 6)
        frames.append(
            table(
                {
                    "single": list(base),
                    "nfmce": list(base + shift / 2 + rng.normal(0, 0.002, 6)),
                    "fmce": list(base + shift + rng.normal(0, 0.002, 6)),
                },
                dataset,
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_columns_and_default_contrast_order():
    frame = stats.compare(two_datasets())
    assert list(frame.columns[:20]) == [
        "dataset", "arm_a", "arm_b", "n", "mean_a", "mean_b", "diff", "ci_low", "ci_high",
        "p_paired", "p_welch", "p_permutation", "p_holm", "hedges_g", "p_superiority",
        "rope_below", "rope_inside", "rope_above", "p_tost", "verdict",
    ]  # fmt: skip
    assert {"mde_80", "seeds_needed", "warnings"} <= set(frame.columns)
    pairs = list(zip(frame["dataset"], frame["arm_a"], frame["arm_b"]))
    assert pairs == [
        (d, a, b)
        for d in ("digits", "cifar")
        for a, b in (("fmce", "nfmce"), ("nfmce", "single"), ("fmce", "single"))
    ]


def test_holm_over_every_row():
    frame = stats.compare(two_datasets())
    expected = multipletests(frame["p_paired"], alpha=0.05, method="holm")[1]
    np.testing.assert_allclose(frame["p_holm"], expected)
    ordered = frame.sort_values("p_paired")
    assert ordered["p_holm"].is_monotonic_increasing
    assert (frame["p_holm"] >= frame["p_paired"]).all()
    for _, row in frame.iterrows():
        assert row["rope_below"] + row["rope_inside"] + row["rope_above"] == pytest.approx(1.0)


def test_default_contrasts_for_other_names():
    assert stats.default_contrasts(["x", "y", "z"]) == [("x", "y"), ("x", "z"), ("y", "z")]
    assert stats.default_contrasts(["single", "fmce", "extra"]) == [
        ("fmce", "single"), ("single", "extra"), ("fmce", "extra"),
    ]  # fmt: skip


def test_contrast_missing_in_a_dataset_is_skipped():
    results = pd.concat([table({"a": A, "b": B}, "d1"), table({"a": A, "c": B}, "d2")], ignore_index=True)
    frame = stats.compare(results, contrasts=[("a", "b"), ("a", "c")])
    assert list(zip(frame["dataset"], frame["arm_b"])) == [("d1", "b"), ("d2", "c")]
    with pytest.raises(ConfigError, match="no results for arm 'nope'"):
        stats.compare(results, contrasts=[("a", "nope")])


def test_compare_ignores_row_order():
    results = two_datasets()
    shuffled = results.sample(frac=1.0, random_state=1)
    pd.testing.assert_frame_equal(stats.compare(stats.sort_results(results)), stats.compare(results))
    # shuffling changes first appearance; canonical order makes sorted input idempotent
    once = stats.sort_results(shuffled)
    pd.testing.assert_frame_equal(stats.sort_results(once), once)


def test_summarize_values():
    frame = stats.summarize(table({"a": A, "b": [0.9]}))
    a = frame.iloc[0]
    ci = st.ttest_1samp(np.array(A) * 100, 0).confidence_interval()
    assert a["n"] == 6 and a["mean"] == pytest.approx(np.mean(A) * 100)
    assert a["sd"] == pytest.approx(np.std(np.array(A) * 100, ddof=1))
    assert (a["ci_low"], a["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert a["median"] == pytest.approx(np.median(A) * 100)
    b = frame.iloc[1]
    assert b["n"] == 1 and b["mean"] == pytest.approx(90.0) and math.isnan(b["sd"]) and math.isnan(b["ci_low"])


# --------------------------------------------------------------------------- across datasets


def test_bootstrap_aggregate_with_few_datasets():
    results = two_datasets()
    agg = stats.aggregate(results)
    assert agg.friedman is None and len(agg.differences) == 3
    first = agg.differences[0]
    comparisons = stats.compare(results)
    per_dataset = comparisons[(comparisons["arm_a"] == "fmce") & (comparisons["arm_b"] == "nfmce")]["diff"]
    assert (first.arm_a, first.arm_b, first.datasets) == ("fmce", "nfmce", ("digits", "cifar"))
    assert first.mean == pytest.approx(per_dataset.mean())
    assert first.ci_low < first.mean < first.ci_high
    assert stats.aggregate(results) == agg  # fixed seed


def test_friedman_with_five_datasets():
    rng = np.random.default_rng(7)
    frames = [
        table({"single": list(rng.uniform(0.80, 0.82, 3)), "nfmce": list(rng.uniform(0.81, 0.83, 3)),
               "fmce": list(rng.uniform(0.82, 0.84, 3))}, f"d{i}")
        for i in range(5)
    ]  # fmt: skip
    results = pd.concat(frames, ignore_index=True)
    agg = stats.aggregate(results)
    f = agg.friedman
    assert f is not None and f.arms == ("single", "nfmce", "fmce") and f.n_datasets == 5
    means = results.groupby(["dataset", "arm"], sort=False)["accuracy"].mean().unstack()[list(f.arms)] * 100
    expected = st.friedmanchisquare(*means.to_numpy().T)
    assert (f.statistic, f.pvalue) == pytest.approx((expected.statistic, expected.pvalue))
    ranks = st.rankdata(-means.to_numpy(), axis=1).mean(axis=0)
    assert list(f.avg_ranks.values()) == pytest.approx(list(ranks))
    q = st.studentized_range.ppf(0.95, 3, np.inf) / math.sqrt(2)
    assert f.cd == pytest.approx(q * math.sqrt(3 * 4 / (6 * 5)))
    assert sum(f.avg_ranks.values()) == pytest.approx(6.0)


def test_single_dataset_has_no_aggregate():
    agg = stats.aggregate(table({"a": A, "b": B}))
    assert agg.friedman is None and agg.differences == () and agg.notes


# --------------------------------------------------------------------------- input


def write(tmp_path, text: str):
    path = tmp_path / "results.csv"
    path.write_text(text)
    return path


def test_load_results_round_trips(tmp_path):
    path = write(tmp_path, "dataset,arm,seed,accuracy\ndigits,NA,0,0.1\ndigits,NA,1,0.30000000000000004\n")
    frame = stats.load_results(path)
    assert list(frame["arm"]) == ["NA", "NA"]  # not a missing value
    assert frame["accuracy"].tolist() == [0.1, 0.30000000000000004]
    assert frame["seed"].dtype == np.int64


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dataset,arm,accuracy\nd,a,0.9\n", "lacks column(s) seed"),
        ("dataset,arm,seed,accuracy\nd,a,0,91.2\n", "row 1: accuracy 91.2 is not a fraction"),
        ("dataset,arm,seed,accuracy\nd,a,0,0.9\nd,a,0,0.8\n", "row 2: duplicate (dataset, arm, seed) = (d, a, 0)"),
        ("dataset,arm,seed,accuracy\nd,a,x,0.9\n", "row 1: seed 'x' is not a valid seed"),
        ("dataset,arm,seed,accuracy\nd,a,1.5,0.9\n", "seed '1.5'"),
        ("dataset,arm,seed,accuracy\nd,a,0,\n", "row 1: accuracy '' is not a valid accuracy"),
        ("dataset,arm,seed,accuracy\nd,,0,0.9\n", "row 1: empty arm name"),
        ("dataset,arm,seed,accuracy\n", "no rows"),
    ],
)
def test_bad_results_csv(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        stats.load_results(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_unreadable_results(tmp_path):
    with pytest.raises(DataError, match="no such results file"):
        stats.load_results(tmp_path / "missing.csv")
    with pytest.raises(DataError):
        stats.load_results(write(tmp_path, ""))


def test_bad_rope_and_alpha():
    with pytest.raises(ConfigError, match="rope"):
        stats.compare(table({"a": A, "b": B}), rope=-1)
    with pytest.raises(ConfigError, match="alpha"):
        stats.compare(table({"a": A, "b": B}), alpha=1.5)


def test_similarity_summary_per_arm():
    from ablate.stats import summarize_similarity

    sim = pd.DataFrame({"dataset": ["d"] * 4, "arm": ["fmce", "fmce", "nfmce", "nfmce"], "seed": [0, 1, 0, 1],
                        "head_similarity": [0.1, 0.3, 0.5, 0.5]})
    out = summarize_similarity(sim)
    assert out["arm"].tolist() == ["fmce", "nfmce"] and out["n"].tolist() == [2, 2]
    assert out["mean"].tolist() == pytest.approx([0.2, 0.5])
    assert out["sd"].tolist() == pytest.approx([0.1414213562, 0.0])
