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
from ablate.analysis import AnalysisSettings, SequentialPlan
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
    row = only_row(table({"fmce": A, "nfmce": B}), smallest_effect=0.5)
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
    assert row["p_tost"] == pytest.approx(ttost_paired(a, b, -0.5, 0.5)[0])
    assert row["rope"] == 0.5  # the smallest effect of interest
    assert only_row(table({"fmce": A, "nfmce": B}))["rope"] == 0.1  # none, and no n_test: the 0.1-point floor
    # d_z with the exact J(n - 1) = Gamma((n-1)/2) / (sqrt((n-1)/2) Gamma((n-2)/2)), n = 6
    sd = d.std(ddof=1)
    j = special.gamma(5 / 2) / (math.sqrt(5 / 2) * special.gamma(4 / 2))
    assert row["d_z"] == pytest.approx(d.mean() / sd * j)
    assert j == pytest.approx(1 - 3 / (4 * 5 - 1), abs=5e-3)  # the usual approximation
    wins = int((d > 1e-9).sum())
    assert row["share_a_better"] == pytest.approx(wins / 6)
    assert row["p_sign"] == pytest.approx(st.binomtest(wins, 6).pvalue)
    # Bayesian paired t posterior (Benavoli et al. 2017)
    post = st.t(5, loc=d.mean(), scale=sd / math.sqrt(6))
    assert row["rope_below"] == pytest.approx(post.cdf(-0.5))
    assert row["rope_above"] == pytest.approx(post.sf(0.5))
    assert row["rope_below"] + row["rope_inside"] + row["rope_above"] == pytest.approx(1.0)
    # power of the two-sided test in the effect's direction = statsmodels' one-sided power at alpha/2;
    # one row, so Holm's first step is alpha itself
    power = TTestPower()
    assert row["mde_80"] == pytest.approx(
        power.solve_power(nobs=6, alpha=0.025, power=0.8, alternative="larger") * sd, rel=1e-6)
    assert row["seeds_for_smallest_effect"] == math.ceil(
        power.solve_power(effect_size=0.5 / sd, alpha=0.025, power=0.8, alternative="larger")
    )
    assert row["sd_diff"] == pytest.approx(sd)
    assert row["equivalence_attainable"] == bool(st.t.isf(0.05, 5) * sd / math.sqrt(6) < 0.5)
    assert math.isnan(row["p_new_data"]) and pd.isna(row["n_examples"])  # no predictions
    for gone in ("power", "seeds_needed", "hedges_g", "p_superiority"):
        assert gone not in row.index
    assert row["confounded_by"] == "unknown" and row["still_rising"] == ""


def test_d_z_is_nan_below_three_pairs_and_without_variance():
    assert math.isnan(stats.d_z([1.0, 2.0]))
    assert math.isnan(stats.d_z([1.0, 1.0, 1.0]))
    d = np.array([0.5, 1.5, -0.25, 2.0])
    j = math.exp(special.gammaln(3 / 2) - special.gammaln(1)) / math.sqrt(3 / 2)
    assert stats.d_z(d) == pytest.approx(d.mean() / d.std(ddof=1) * j)


def test_sign_test_drops_ties_and_share_counts_them_half():
    # accuracies over 200 test images: differences of -1, 0, 0, +2, +1, +3 images
    n_test = 200
    b = np.array([150, 160, 170, 155, 165, 158])
    a = b + np.array([-1, 0, 0, 2, 1, 3])
    row = only_row(table({"a": list(a / n_test), "b": list(b / n_test)}))
    assert row["share_a_better"] == pytest.approx((3 + 0.5 * 2) / 6)
    assert row["p_sign"] == pytest.approx(st.binomtest(3, 4, 0.5).pvalue)
    assert stats.sign_test_p([0.0, 0.0]) == 1.0


def test_permutation_p_is_tie_exact():
    # Differences that tie in test images (|d| of 1 image three times) must tie under every
    # flip; the p must equal scipy's permutation test on the exact integer counts.
    n_test = 360
    images = np.array([1, -1, 1, 2, -2, 3, 1, 2])
    b = np.array([300, 310, 290, 305, 299, 301, 296, 303])
    a = b + images
    row = only_row(table({"a": list(a / n_test), "b": list(b / n_test)}))
    exact = st.permutation_test(
        (images,), lambda x, axis: np.mean(x, axis=axis), vectorized=True, permutation_type="samples",
        n_resamples=np.inf, alternative="two-sided",
    ).pvalue
    assert row["p_permutation"] == exact
    d_points = (a / n_test - b / n_test) * 100
    assert stats.permutation_p(d_points) == exact


def test_smallest_attainable_permutation_p_counts_zero_differences():
    # n = 7 with 2 zero differences: 2 / 2**5 = 0.0625 > 0.05 although 2 / 2**7 would not be
    b = [0.80, 0.81, 0.82, 0.83, 0.84, 0.85, 0.86]
    a = [0.81, 0.82, 0.83, 0.84, 0.85, 0.85, 0.86]
    row = only_row(table({"a": a, "b": b}))
    assert stats.smallest_permutation_p((np.array(a) - np.array(b)) * 100) == 2 / 2**5
    assert "permutation test cannot reach p < 0.05 with n = 7" in row["warnings"]
    assert "smallest attainable p = 2/2^5 = 0.0625" in row["warnings"]
    assert row["p_permutation"] == pytest.approx(2 / 2**5)


def test_significant_paired_t_that_the_permutation_test_cannot_reach_says_so():
    row = only_row(table({"a": [0.5, 0.75, 0.625, 0.875, 0.5625], "b": [0.25, 0.5, 0.375, 0.625, 0.25]}))
    assert row["p_holm"] < 0.05
    assert row["verdict"] == (
        "significant: a better; paired t only: the permutation test cannot reach p < 0.05 at n = 5"
    )


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
    assert math.isfinite(row["mde_80"]) and math.isnan(row["d_z"])
    assert "only n = 2 paired seeds" in row["warnings"]
    assert "smallest attainable p = 2/2^2 = 0.5" in row["warnings"]


def test_equal_arms_have_zero_spread_and_the_sign_flip_tests():
    row = only_row(table({"a": A, "b": A}))
    assert row["diff"] == 0.0 and math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])  # no interval
    assert row["p_paired"] == 1.0 and row["p_holm"] == 1.0  # the exact sign-flip p of all-zero differences
    assert row["p_permutation"] == 1.0
    assert row["p_welch"] == pytest.approx(1.0)
    assert math.isnan(row["d_z"]) and row["share_a_better"] == 0.5 and row["p_sign"] == 1.0
    assert math.isnan(row["rope_below"]) and math.isnan(row["rope_inside"])  # no posterior from zero spread
    assert row["p_tost"] == 1 / 2**6 and row["p_tost_holm"] == row["p_tost"]  # two one-sided sign-flip tests
    assert row["verdict"] == "practically equivalent" and row["equivalence_attainable"]
    assert math.isnan(row["mde_80"])
    assert "zero spread" in row["warnings"]
    two = only_row(table({"a": A[:2], "b": A[:2]}))  # 2 seeds: 1/4 cannot pass, and no t test says otherwise
    assert two["p_tost"] == 0.25 and not two["equivalence_attainable"] and two["verdict"] == "not significant"


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # the reference ttest_ind
def test_one_arm_constant():
    row = only_row(table({"a": A, "b": [0.9] * 6}))
    a, b = np.array(A) * 100, np.full(6, 0.9) * 100
    assert row["p_paired"] == pytest.approx(st.ttest_rel(a, b).pvalue)
    assert row["p_welch"] == pytest.approx(st.ttest_ind(a, b, equal_var=False).pvalue)
    assert math.isfinite(row["d_z"]) and row["share_a_better"] == 1.0


def test_constant_nonzero_difference():
    # exactly representable in binary, so the differences are exactly 25 points; with values
    # such as 0.6 the x100 conversion leaves ~1e-14 noise, which the 1e-9-point units remove
    row = only_row(table({"a": [0.5, 0.75, 0.625, 0.875], "b": [0.25, 0.5, 0.375, 0.625]}))
    assert row["sd_diff"] == 0.0 and row["diff"] == 25.0
    assert row["p_paired"] == 2 / 2**4 and row["verdict"] == "not significant"  # the sign-flip p, not 0
    assert math.isnan(row["rope_below"]) and math.isnan(row["ci_low"])
    assert math.isnan(row["mde_80"]) and math.isnan(row["d_z"])
    noisy = only_row(table({"a": [0.9, 0.8, 0.7], "b": [0.9 - 1 / 360, 0.8 - 1 / 360, 0.7 - 1 / 360]}))
    assert noisy["sd_diff"] == 0.0 and noisy["p_paired"] == 0.25  # one image at every seed, float noise aside
    assert stats.paired_p([1.0, 1.0 + 1e-13, 1.0]) == 0.25 and stats.zero_spread([1.0, 1.0 + 1e-13])


def skellam_differences(rng: np.random.Generator, studies: int, seeds: int, n_test: int = 360,
                        discordant: float = 1.5) -> np.ndarray:
    """Paired differences (points) of two equal arms scored on whole images: per seed, the images only A
    gets right minus those only B gets right, each Poisson(``discordant``)."""
    images = rng.poisson(discordant, (studies, seeds)) - rng.poisson(discordant, (studies, seeds))
    return images / n_test * 100.0


@pytest.mark.parametrize(("seeds", "constant_share", "old_rate"), [(2, 0.1, 0.1), (3, 0.015, 0.03)])
def test_no_decision_on_zero_spread_in_a_fixed_design(seeds, constant_share, old_rate):
    # equal arms, whole-image accuracies on 360 test images: a constant nonzero difference is common at 2
    # or 3 seeds, and with p = 0 for it every one was a false positive (the old rule)
    d = skellam_differences(np.random.default_rng(16), 4000, seeds)
    constant = np.array([stats.zero_spread(x) and x[0] != 0 for x in d])
    assert constant.mean() > constant_share  # the sum over k != 0 of P(D = k)^n, D ~ Skellam(1.5, 1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t_only = st.ttest_1samp(d, 0.0, axis=1).pvalue
    old = np.where(constant, 0.0, t_only)
    assert (old < 0.05).mean() > old_rate  # 0.111 at 2 seeds: far above alpha
    p = np.array([stats.paired_p(x) for x in d])
    assert (p[constant] == 2 / 2**seeds).all()
    assert (p < 0.05).mean() < 0.02


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
    assert row["warnings"] == ""  # n = 12: the permutation test can reach 0.05


def test_permutation_test_warning_threshold():
    five = only_row(table({"a": A[:5], "b": B[:5]}))
    six = only_row(table({"a": A, "b": B}))
    assert "permutation test cannot reach p < 0.05 with n = 5 (smallest attainable p = 2/2^5 = 0.0625)" in five["warnings"]
    assert "fewer than 5" not in five["warnings"]
    assert "permutation test" not in six["warnings"]


def test_power_is_at_the_level_of_holm_s_first_step():
    # the digits report's fmce vs nfmce: sd 0.59 over 6 seeds, 6 rows in the Holm family
    sd, n, m = 0.5936044601786817, 6, 6
    old, new = stats.mde_80(sd, n, 0.05), stats.mde_80(sd, n, 0.05 / m)
    assert old == pytest.approx(0.85, abs=0.01) and new == pytest.approx(1.30, abs=0.01)
    assert stats.seeds_for_power(1.0, sd, 0.05) == 5 and stats.seeds_for_power(1.0, sd, 0.05 / m) == 8
    # simulated: a true difference of the old MDE passes Holm's first step far less often than 80%
    rng = np.random.default_rng(6)
    for effect, low, high in ((old, 0.35, 0.6), (new, 0.78, 0.82)):
        d = rng.normal(effect, sd, (20_000, n))
        passed = (st.ttest_1samp(d, 0.0, axis=1).pvalue < 0.05 / m).mean()
        assert low < passed < high
    assert stats.fixed_design_power(new, sd, n, 0.05 / m) == pytest.approx(0.8)
    # in the table: six rows, each at alpha / 6
    rows = stats.compare(pd.concat([table({"a": A, "b": B}, f"d{i}") for i in range(6)]), smallest_effect=1.0)
    sd_row = float(rows["sd_diff"].iloc[0])
    assert rows["mde_80"].iloc[0] == pytest.approx(stats.mde_80(sd_row, 6, 0.05 / 6))
    assert rows["seeds_for_smallest_effect"].iloc[0] == stats.seeds_for_power(1.0, sd_row, 0.05 / 6)


def test_one_function_gives_seeds_for_a_power():
    power = TTestPower()
    for effect, sd, alpha, target in ((0.6, 1.2, 0.05, 0.8), (1.0, 0.6, 0.01, 0.9), (0.2, 0.5, 0.05 / 6, 0.8)):
        n = stats.seeds_for_power(effect, sd, alpha, target)
        assert stats.fixed_design_power(effect, sd, int(n), alpha) >= target > stats.fixed_design_power(
            effect, sd, int(n) - 1, alpha)
        assert n == math.ceil(power.solve_power(effect_size=effect / sd, alpha=alpha / 2, power=target,
                                                alternative="larger"))
    assert stats.seeds_for_power(0.0, 1.0, 0.05) == math.inf and math.isnan(stats.seeds_for_power(None, 1.0, 0.05))
    assert stats.seeds_for_power(5.0, 0.1, 0.05) == 2


def test_the_equivalence_test_can_pass_with_the_smallest_effect_as_rope():
    # 6 seeds at a paired sd of 0.6 on 360 test images: with the one-image ROPE (0.28 points) TOST can never
    # pass, even for a difference of exactly 0; with the smallest effect of interest (1 point) it does
    rng = np.random.default_rng(1)
    b = rng.integers(340, 350, 6)
    images = np.array([2, -2, 1, -1, 3, -3])  # sd 0.6 points, mean 0
    results = with_columns(table({"a": list((b + images) / 360), "b": list(b / 360)}), n_test={"a": 360, "b": 360})
    floor = only_row(results)
    assert floor["rope"] == pytest.approx(100 / 360) and not floor["equivalence_attainable"]
    assert floor["p_tost"] > 0.05 and floor["verdict"] == "not significant"
    d = images / 3.6
    assert st.t.isf(0.05, 5) * d.std(ddof=1) / math.sqrt(6) > 100 / 360  # why: the half-width alone is wider
    row = only_row(results, smallest_effect=1.0)
    assert row["rope"] == 1.0 and row["equivalence_attainable"] and row["verdict"] == "practically equivalent"
    assert row["p_tost"] == pytest.approx(ttost_paired(d, np.zeros(6), -1.0, 1.0)[0])
    assert only_row(results, smallest_effect=1.0, rope=0.2)["rope"] == 0.2  # a given ROPE still wins
    assert stats.row_rope(None, 1.0, 360) == 1.0 and stats.row_rope(None, None, 360) == pytest.approx(100 / 360)


def test_share_a_better_has_a_seeded_bootstrap_interval():
    row = only_row(table({"a": A, "b": B}))
    d = (np.array(A) - np.array(B)) * 100
    _, shares = stats.paired_bootstrap(d[:, None], examples=False)
    assert (row["share_ci_low"], row["share_ci_high"]) == tuple(np.quantile(shares, [0.025, 0.975]))
    assert row["share_ci_low"] <= row["share_a_better"] <= row["share_ci_high"]
    # by hand: a resample's share is the drawn seeds' wins, ties half
    rng = np.random.default_rng(stats.BOOTSTRAP_SEED)
    counts = np.bincount(rng.integers(0, 6, 6), minlength=6)
    score = np.where(d > 1e-9, 1.0, np.where(abs(d) <= 1e-9, 0.5, 0.0))
    assert shares[0] == pytest.approx(counts @ score / 6)
    assert only_row(table({"a": A, "b": B}))["share_ci_low"] == row["share_ci_low"]  # seeded
    assert math.isnan(only_row(table({"a": A[:1], "b": B[:1]}))["share_ci_low"])


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
    assert list(frame.columns) == [
        "dataset", "arm_a", "arm_b", "n", "mean_a", "mean_b", "diff", "ci_low", "ci_high",
        "p_paired", "p_welch", "p_permutation", "p_holm", "n_examples", "ci_low_new_data", "ci_high_new_data",
        "df_new_data", "p_new_data", "p_new_data_holm", "sd_test_sampling", "d_z", "share_a_better",
        "share_ci_low", "share_ci_high", "p_sign", "rope", "rope_below", "rope_inside", "rope_above", "p_tost",
        "p_tost_holm", "p_tost_new_data", "p_tost_new_data_holm", "equivalence_attainable", "mde_80",
        "seeds_for_smallest_effect", "sd_diff", "confounded_by", "still_rising", "too_short", "verdict", "warnings",
    ]  # fmt: skip
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
    np.testing.assert_allclose(frame["p_tost_holm"], multipletests(frame["p_tost"], method="holm")[1])
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


def test_friedman_with_five_datasets():
    rng = np.random.default_rng(7)
    frames = [
        table({"single": list(rng.uniform(0.80, 0.83, 3)), "nfmce": list(rng.uniform(0.80, 0.84, 3)),
               "fmce": list(rng.uniform(0.815, 0.84, 3))}, f"d{i}")
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
    # Iman-Davenport: F = (N - 1) chi2 / (N (k - 1) - chi2) on (k - 1, (k - 1)(N - 1)) df
    chi2 = expected.statistic
    assert chi2 < 10  # not every data set ranks the arms alike, so F is finite
    f_id = 4 * chi2 / (5 * 2 - chi2)
    assert f.f_statistic == pytest.approx(f_id)
    assert f.f_pvalue == pytest.approx(st.f.sf(f_id, 2, 8))
    assert f.rejects == (f.f_pvalue < 0.05)


def test_iman_davenport_on_a_fixed_table():
    # 6 data sets x 4 arms, ranks written out: chi2 = 12 N / (k (k + 1)) sum R_j^2 - 3 N (k + 1)
    table_ = np.array([[1, 2, 3, 4], [1, 3, 2, 4], [2, 1, 3, 4], [1, 2, 4, 3], [1, 2, 3, 4], [2, 1, 4, 3]], float)
    n, k = table_.shape
    mean_ranks = table_.mean(axis=0)
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(mean_ranks**2) - k * (k + 1) ** 2 / 4)
    assert chi2 == pytest.approx(st.friedmanchisquare(*table_.T).statistic)
    f, p = stats.iman_davenport(chi2, n, k)
    assert f == pytest.approx((n - 1) * chi2 / (n * (k - 1) - chi2))
    assert p == pytest.approx(st.f.sf(f, k - 1, (k - 1) * (n - 1)))
    assert stats.iman_davenport(n * (k - 1), n, k) == (math.inf, 0.0)  # perfect agreement


def test_missing_arm_is_named_not_dropped():
    frames = [table({"a": A, "b": B, "c": B}, f"d{i}") for i in range(4)] + [table({"a": A, "b": B}, "d4")]
    agg = stats.aggregate(pd.concat(frames, ignore_index=True))
    assert any("arm c has no results on d4" in note and "left out of the Friedman test" in note for note in agg.notes)
    assert stats.missing_arms(pd.concat(frames, ignore_index=True)) == [("d4", "c")]


def test_single_dataset_has_only_counts_across():
    agg = stats.aggregate(table({"a": A, "b": B}))
    assert agg.friedman is None and agg.notes
    (row,) = agg.across
    assert row.n_datasets == 1 and math.isnan(row.p_sign_datasets) and math.isnan(row.re_diff)


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


# --------------------------------------------------------------------------- optional columns


def with_columns(results: pd.DataFrame, **columns) -> pd.DataFrame:
    """Add per-arm values of optional columns: ``params={"a": 100, "b": 111}``."""
    out = results.copy()
    for name, by_arm in columns.items():
        out[name] = out["arm"].map(by_arm)
    return out


@pytest.mark.parametrize(
    ("params", "images", "expected"),
    [
        ({"a": 100, "b": 110}, {"a": 1000, "b": 1000}, ""),  # exactly 10%: not more
        ({"a": 100, "b": 111}, {"a": 1000, "b": 1000}, "parameters"),
        ({"a": 100, "b": 100}, {"a": 2000, "b": 1000}, "compute"),
        ({"a": 200, "b": 100}, {"a": 1000, "b": 2000}, "parameters, compute"),
        (None, None, "unknown"),
        ({"a": 200, "b": 100}, None, "parameters, compute unknown"),
    ],
)
def test_confounded_by_ten_percent_rule(params, images, expected):
    columns = {k: v for k, v in (("params", params), ("train_images", images)) if v is not None}
    row = only_row(with_columns(table({"a": A, "b": B}), **columns))
    assert row["confounded_by"] == expected


def test_still_rising_marks_the_verdict():
    results = with_columns(table({"a": A, "b": B}), val_gain_last_quarter={"a": 0.035, "b": 0.01})
    row = only_row(results)
    assert row["still_rising"] == "a"
    assert row["verdict"].endswith("; still rising: a")
    profile = stats.profile_arms(results)
    assert profile["late_gain"].tolist() == pytest.approx([3.5, 1.0])
    assert profile["still_rising"].tolist() == [True, False]
    assert only_row(results, still_rising=5.0)["still_rising"] == ""


def test_rope_default_is_one_test_image_and_a_finer_one_is_flagged():
    results = with_columns(table({"a": A, "b": B}), n_test={"a": 360, "b": 360})
    row = only_row(results)
    assert row["rope"] == pytest.approx(100 / 360)
    a, b = np.array(A) * 100, np.array(B) * 100
    assert row["p_tost"] == pytest.approx(ttost_paired(a, b, -100 / 360, 100 / 360)[0])
    assert "finer than one test image" not in row["warnings"]
    given = only_row(results, rope=0.1)
    assert given["rope"] == 0.1 and "the ROPE of ±0.1 points is finer than one test image here (0.278 points)" in given["warnings"]
    assert only_row(with_columns(table({"a": A, "b": B}), n_test={"a": 10**5, "b": 10**5}))["rope"] == 0.1


def test_optional_columns_are_validated_and_kept(tmp_path):
    path = write(tmp_path, "dataset,arm,seed,accuracy,params,wall_time,n_test,extra\n"
                 "d,a,0,0.9,1000,12.5,360,x\nd,a,1,0.8,,,360,y\n")
    frame = stats.load_results(path)
    assert list(frame.columns) == ["dataset", "arm", "seed", "accuracy", "params", "n_test", "wall_time"]
    assert frame["params"].dtype == "Int64" and frame["params"].isna().tolist() == [False, True]
    assert math.isnan(frame["wall_time"].iloc[1])
    bad = write(tmp_path, "dataset,arm,seed,accuracy,train_images\nd,a,0,0.9,lots\n")
    with pytest.raises(ConfigError, match="row 1: train_images 'lots' is not an integer"):
        stats.load_results(bad)
    bad = write(tmp_path, "dataset,arm,seed,accuracy,val_gain_last_quarter\nd,a,0,0.9,fast\n")
    with pytest.raises(ConfigError, match="row 1: val_gain_last_quarter 'fast' is not a number"):
        stats.load_results(bad)


def test_single_may_be_too_short_when_single_long_s_interval_reaches_above_the_smallest_effect():
    # the digits report's case: single's late gain (+0.97) is below the still-rising threshold, so that
    # mark misses it, and single-long's lead is not significant after Holm, yet its interval reaches +2.5
    rng = np.random.default_rng(5)
    base = rng.uniform(0.80, 0.82, 6)
    long = base + 0.013 + rng.normal(0, 0.012, 6)
    results = with_columns(table({"single": list(base), "single-long": list(long), "fmce": list(base + 0.001)}),
                           val_gain_last_quarter={"single": 0.0097, "single-long": 0.001, "fmce": 0.001})
    d = (long - base) * 100
    ci = st.ttest_1samp(d, 0).confidence_interval()
    assert ci.low < 1.0 < ci.high  # the old rule (significant at Holm) would not mark it
    frame = stats.compare(results, contrasts=[("fmce", "single"), ("single-long", "single")], smallest_effect=1.0)
    assert frame["still_rising"].tolist() == ["", ""]
    assert frame["too_short"].tolist() == ["single", "single"]
    assert frame["verdict"].iloc[0].endswith("; may be too short: single")
    assert not frame["p_holm"].iloc[1] < 0.05
    (found,) = stats.too_short_recipes(results, smallest_effect=1.0)  # whether or not a contrast has the pair
    assert (found.dataset, found.arm, found.threshold_source, found.new_data) == ("digits", "single", "smallest effect", False)
    assert (found.diff, found.ci_low, found.ci_high) == pytest.approx((d.mean(), ci.low, ci.high))
    # above the interval's upper end: nothing marked; without a smallest effect the ROPE is the threshold
    assert stats.too_short_recipes(results, smallest_effect=float(ci.high) + 0.01) == []
    assert stats.too_short_recipes(results)[0].threshold_source == "ROPE"
    assert stats.compare(results, smallest_effect=5.0)["too_short"].eq("").all()


# --------------------------------------------------------------------------- tuning


def test_expected_max_equals_brute_force_enumeration():
    from itertools import product

    values = [0.61, 0.72, 0.55, 0.72, 0.68]
    curve = stats.expected_max(values)
    assert len(curve) == 5
    for n in range(1, 6):
        draws = list(product(values, repeat=n))  # every ordered draw with replacement, equally likely
        assert curve[n - 1] == pytest.approx(np.mean([max(d) for d in draws]))
    assert curve[0] == pytest.approx(np.mean(values))
    assert stats.expected_max([]).size == 0


# --------------------------------------------------------------------------- across datasets (issue 10)


def per_dataset(diffs: dict[str, list[float]], base: float = 0.8, n_test: int | None = None) -> pd.DataFrame:
    """Arms a and b on several data sets: b at ``base`` + noise, a = b + the given differences (points)."""
    rng = np.random.default_rng(9)
    frames = []
    for dataset, d in diffs.items():
        b = base + rng.uniform(-0.02, 0.02, len(d))
        frames.append(table({"a": list(b + np.array(d) / 100), "b": list(b)}, dataset))
    results = pd.concat(frames, ignore_index=True)
    return results if n_test is None else results.assign(n_test=n_test)


def test_datasets_as_units_match_scipy():
    diffs = {"d1": [0.5], "d2": [1.25], "d3": [-0.25], "d4": [0.75]}
    (row,) = stats.across_datasets(per_dataset(diffs))
    d = np.array([0.5, 1.25, -0.25, 0.75])
    assert (row.n_datasets, row.a_ahead, row.b_ahead) == (4, 3, 1)
    assert row.p_sign_datasets == pytest.approx(st.binomtest(3, 4).pvalue)
    assert row.p_wilcoxon_datasets == pytest.approx(st.wilcoxon(d).pvalue)
    assert row.min_p_datasets == 2 / 2**4
    assert row.re_datasets == 0 and math.isnan(row.re_diff)


def test_datasets_as_units_with_a_tie():
    diffs = {"d1": [0.5], "d2": [0.0], "d3": [0.5], "d4": [1.0], "d5": [-0.25]}
    (row,) = stats.across_datasets(per_dataset(diffs))
    assert (row.a_ahead, row.b_ahead) == (3, 1)
    assert row.p_sign_datasets == pytest.approx(st.binomtest(3, 4).pvalue)
    assert row.p_wilcoxon_datasets == pytest.approx(st.wilcoxon(np.array([0.5, 0.0, 0.5, 1.0, -0.25])).pvalue)
    assert row.min_p_datasets == 2 / 2**4  # the tied data set cannot count


def test_random_effects_match_statsmodels_with_unequal_seeds():
    from statsmodels.stats.meta_analysis import combine_effects

    diffs = {
        "d1": [0.5, 1.0, 0.25],
        "d2": [1.5, 2.0, 1.0, 2.5, 1.75],
        "d3": [-0.5, 0.25, 0.0, -0.25],
        "d4": [0.75, 1.25, 0.5, 1.0, 0.25, 1.5],
    }
    (row,) = stats.across_datasets(per_dataset(diffs))
    d = [np.array(v) for v in diffs.values()]
    effect = np.array([x.mean() for x in d])
    variance = np.array([x.var(ddof=1) / x.size for x in d])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = combine_effects(effect, variance, use_t=True)
        wls = res.summary_frame().loc["random effect wls"]
    assert row.re_datasets == 4
    assert row.re_diff == pytest.approx(wls["eff"], rel=1e-6)
    # Paule-Mandel with tau2 > 0 makes the HKSJ scale 1: the truncation changes nothing here
    assert res.scale_hksj_re == pytest.approx(1.0, rel=1e-6)
    assert (row.re_ci_low, row.re_ci_high) == pytest.approx((wls["ci_low"], wls["ci_upp"]), rel=1e-6)
    assert row.re_se == pytest.approx(wls["sd_eff"], rel=1e-6)
    assert row.tau2 == pytest.approx(res.tau2, rel=1e-6) and row.tau2 > 0
    assert row.i2 == pytest.approx(max(0.0, res.i2), rel=1e-6)
    # Higgins et al. (2009): mean +/- t(k - 2) sqrt(tau2 + SE^2), SE = 1 / sqrt(sum w) of the random effects
    weights = 1 / (variance + res.tau2)
    half = st.t.ppf(0.975, 2) * math.sqrt(res.tau2 + 1 / weights.sum())
    mean = np.sum(weights * effect) / weights.sum()
    assert (row.pi_low, row.pi_high) == pytest.approx((mean - half, mean + half), rel=1e-6)


def test_hksj_interval_is_truncated_at_scale_one():
    # three data sets that agree better than their variances say: tau2 = 0 and q < 1
    effect, variance = np.array([0.50, 0.52, 0.49]), np.array([0.04, 0.05, 0.03])
    got = stats.random_effects(effect, variance)
    weights = 1 / variance  # tau2 = 0
    mean = np.sum(weights * effect) / weights.sum()
    q = np.sum(weights * (effect - mean) ** 2) / 2
    assert got["tau2"] == 0.0 and q < 1
    half = st.t.isf(0.025, 2) * math.sqrt(max(1.0, q) / weights.sum())
    assert (got["re_ci_low"], got["re_diff"], got["re_ci_high"]) == pytest.approx((mean - half, mean, mean + half))
    assert got["re_se"] == pytest.approx(math.sqrt(1 / weights.sum()))
    untruncated = st.t.isf(0.025, 2) * math.sqrt(q / weights.sum())
    assert half > untruncated * 5


def test_hksj_truncation_restores_coverage_with_few_data_sets():
    # 4 data sets of 5 seeds, no heterogeneity: without max(1, q) the HKSJ interval covers about 0.92
    rng = np.random.default_rng(2015)
    truncated = untruncated = 0
    runs = 1500
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from statsmodels.stats.meta_analysis import combine_effects

        for _ in range(runs):
            d = rng.normal(0.0, 0.5, (4, 5))
            effect, variance = d.mean(axis=1), d.var(axis=1, ddof=1) / 5
            got = stats.random_effects(effect, variance)
            truncated += got["re_ci_low"] <= 0 <= got["re_ci_high"]
            wls = combine_effects(effect, variance, use_t=True).summary_frame().loc["random effect wls"]
            untruncated += wls["ci_low"] <= 0 <= wls["ci_upp"]
    assert untruncated / runs < 0.935  # the old interval
    assert truncated / runs >= 0.95


def test_i2_is_truncated_at_zero_and_a_zero_variance_data_set_gets_a_floor():
    from statsmodels.stats.meta_analysis import combine_effects

    # d1: the same difference at every seed (2 test images of 400 = 0.5 points): zero variance
    diffs = {"d1": [0.5, 0.5, 0.5], "d2": [0.25, 1.0, 0.5, 0.75], "d3": [0.5, 0.0, 1.0]}
    (row,) = stats.across_datasets(per_dataset(diffs, n_test=400))
    floor = (100 / 400) ** 2 / 3
    effect = np.array([0.5, 0.625, 0.5])
    variance = np.array([floor, np.var([0.25, 1.0, 0.5, 0.75], ddof=1) / 4, np.var([0.5, 0.0, 1.0], ddof=1) / 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = combine_effects(effect, variance, use_t=True)
        eff = res.summary_frame().loc["random effect wls", "eff"]
    assert row.re_diff == pytest.approx(eff, rel=1e-6)
    assert res.i2 < 0 and row.i2 == 0.0  # the differences agree better than chance: I2 truncated
    (unknown,) = stats.across_datasets(per_dataset(diffs))
    assert "without n_test" in unknown.notes and math.isfinite(unknown.re_diff)


# --------------------------------------------------------------------------- sequential seeds


def _table(points: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """A results table from accuracies in points per (dataset, arm), seeds 0.., 1000 test images."""
    rows = [(ds, arm, seed, p / 100) for (ds, arm), ps in points.items() for seed, p in enumerate(ps)]
    frame = pd.DataFrame(rows, columns=["dataset", "arm", "seed", "accuracy"])
    return frame.assign(n_test=1000)


PLAN = SequentialPlan(looks=(3, 6), spending="pocock", comparisons=2)

SEQ_POINTS = {
    ("digits", "a"): [80.0, 81.0, 79.5, 80.5, 80.0, 81.5],
    ("digits", "b"): [70.0, 70.5, 70.0, 71.0, 69.0, 71.5],  # 10 points behind: decided at look 1
    ("cifar", "a"): [60.0, 61.0, 59.0, 60.0, 62.0, 61.0],
    ("cifar", "b"): [59.0, 61.5, 58.0, 60.5, 61.0, 59.5],  # about 0.5 points behind: open
}


def test_sequential_frame_replays_the_design_on_a_fixed_table():
    results = _table(SEQ_POINTS)
    frame = stats.sequential_frame(results, AnalysisSettings(sequential=PLAN))
    design = stats.make_design([3, 6], alpha=0.05, comparisons=2, spending="pocock", rope=0.1)
    assert list(frame.columns) == list(stats.SEQUENTIAL_COLUMNS)
    assert [tuple(r) for r in frame[["dataset", "decision", "look", "n", "boundary", "seeds_run"]].values] == [
        ("digits", "A better", 1, 3, "upper", 6), ("cifar", "undecided", 2, 6, "", 6)]
    cases = ((frame.iloc[0], "digits", 3, design.looks[0]), (frame.iloc[1], "cifar", 6, design.looks[1]))
    for row, dataset, n, look in cases:
        d = np.array(SEQ_POINTS[(dataset, "a")]) - np.array(SEQ_POINTS[(dataset, "b")])
        x = d[:n]
        half = look.t * x.std(ddof=1) / math.sqrt(n)  # mean(d) +/- c_k sd(d) / sqrt(n_k)
        assert row["critical"] == pytest.approx(look.t)
        assert (row["interval_low"], row["interval_high"]) == pytest.approx((x.mean() - half, x.mean() + half))
        assert row["sd_diff"] == pytest.approx(d.std(ddof=1))  # over every seed run
        assert row["rope"] == 0.1 and row["effect"] == pytest.approx(0.3) and row["effect_source"] == "3 x rope"
        oc = stats.operating_characteristics(design, sd=d.std(ddof=1), effect=0.3)
        assert (row["power"], row["fixed_seeds_same_power"]) == (oc.power, oc.fixed_seeds)
    # the repeats loop's view after the first look: digits decided, cifar open, 3 more seeds
    look = stats.sequential_look(results[results["seed"] < 3], PLAN)
    assert not look.stop and look.next_seeds == 6 and look.batch == 3
    assert look.decisions[("digits", "a", "b")] == stats.decide(
        np.array(SEQ_POINTS[("digits", "a")][:3]) - np.array(SEQ_POINTS[("digits", "b")][:3]),
        stats.make_design([3, 6], comparisons=2, spending="pocock", rope=0.1))


def test_a_cell_given_up_leaves_its_look_undecided_and_is_never_filled_from_a_later_batch():
    results = _table(SEQ_POINTS)
    gone = results[~((results["dataset"] == "cifar") & (results["arm"] == "b") & (results["seed"] == 4))]
    look = stats.sequential_look(gone, PLAN, n_seeds_done=6)
    cifar = look.decisions[("cifar", "a", "b")]
    assert (cifar.decision, cifar.look, cifar.n, cifar.pairs) == ("undecided", 2, 6, 5)  # never judged on 5 of 6
    assert look.stop and look.decisions[("digits", "a", "b")].decision == "A better"
    # a later batch (seeds 6 and 7, cifar's b at +3 points) must not stand in for seed 4 at the look of 6
    later = pd.concat([gone, _table({("cifar", "a"): [60.0] * 8, ("cifar", "b"): [57.0] * 8}).query("seed >= 6")])
    plan = SequentialPlan(looks=(3, 6, 8), spending="pocock", comparisons=2)
    frame = stats.sequential_frame(later, AnalysisSettings(sequential=plan))
    row = frame[frame["dataset"] == "cifar"].iloc[0]
    assert (row["decision"], row["look"], row["pairs"], row["seeds_run"]) == ("undecided", 2, 5, 7)
    assert math.isnan(row["interval_low"])
    verdict = stats.mark_sequential(stats.compare(later), frame)["verdict"]
    assert verdict.iloc[1] == "undecided: a run among the first 6 seeds was given up"
    # the plan's seeds, when the study layer passes them: a seed given up on every cell keeps its place
    without = later[later["seed"] != 1]
    kept = stats.sequential_look(without, plan, seeds=range(8)).decisions[("digits", "a", "b")]
    assert (kept.decision, kept.look, kept.pairs) == ("undecided", 1, 2)
    assert stats.sequential_look(without, plan).decisions[("digits", "a", "b")].pairs == 3  # seeds 0, 2, 3


def test_mark_sequential_empties_the_fixed_sample_columns():
    results = _table(SEQ_POINTS)
    frame = stats.sequential_frame(results, AnalysisSettings(sequential=PLAN, smallest_effect=1.0))
    assert set(frame["effect_source"]) == {"smallest_effect"} and set(frame["effect"]) == {1.0}
    marked = stats.mark_sequential(stats.compare(results), frame)
    assert marked[list(stats.FIXED_ONLY_COLUMNS)].isna().all().all()
    assert list(marked["verdict"]) == ["significant: a better (sequential, look 1)", "undecided after 6 seeds"]
    unmarked = stats.compare(results)
    kept = [c for c in stats.COMPARISON_COLUMNS if c not in stats.FIXED_ONLY_COLUMNS + ("verdict",)]
    pd.testing.assert_frame_equal(marked[kept], unmarked[kept])


def test_pooled_difference_sd_weights_each_rows_variance_by_its_degrees_of_freedom():
    results = _table(SEQ_POINTS)
    d1 = np.array(SEQ_POINTS[("digits", "a")]) - np.array(SEQ_POINTS[("digits", "b")])
    d2 = np.array(SEQ_POINTS[("cifar", "a")][:4]) - np.array(SEQ_POINTS[("cifar", "b")][:4])
    uneven = results[~((results["dataset"] == "cifar") & (results["seed"] >= 4))]
    sd, rows, pairs = stats.pooled_difference_sd(uneven)
    assert (rows, pairs) == (2, 10)
    assert sd == pytest.approx(math.sqrt((5 * d1.var(ddof=1) + 3 * d2.var(ddof=1)) / 8))
    assert math.isnan(stats.pooled_difference_sd(results[results["seed"] == 0])[0])
