"""ablate.stats.crossed and the predictions behind it: seeds and test examples both random."""

from __future__ import annotations

import gzip
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from ablate import stats
from ablate.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("cheap_gc")

# Right (1) or wrong (0) of two arms, 4 seeds x 6 test examples: a small fixed table.
RIGHT_A = np.array([[1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 0], [1, 1, 0, 1, 1, 1], [0, 1, 1, 1, 1, 0]])
RIGHT_B = np.array([[1, 0, 0, 1, 0, 0], [1, 0, 1, 1, 0, 1], [1, 0, 0, 0, 1, 0], [1, 0, 1, 1, 0, 0]])


def test_mean_squares_match_statsmodels_anova_lm():
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    x = 100.0 * (RIGHT_A - RIGHT_B)
    got = stats.crossed_design(x)
    s, n = x.shape
    long = pd.DataFrame({"x": x.ravel(), "seed": np.repeat(np.arange(s), n), "example": np.tile(np.arange(n), s)})
    table = anova_lm(smf.ols("x ~ C(seed) + C(example)", data=long).fit())
    assert got.ms_seed == pytest.approx(table.loc["C(seed)", "mean_sq"])
    assert got.ms_example == pytest.approx(table.loc["C(example)", "mean_sq"])
    assert got.ms_residual == pytest.approx(table.loc["Residual", "mean_sq"])
    assert (got.seeds, got.examples, got.mean) == (4, 6, pytest.approx(x.mean()))


# Seeds and examples both vary beyond the residual (MS_seed 10,000, MS_example 7,667, MS_residual 4,333).
BOTH_A = np.array([[1, 1, 0, 0, 1, 1], [0, 1, 0, 1, 1, 1], [0, 0, 0, 0, 1, 0], [0, 1, 1, 0, 1, 1]])
BOTH_B = np.array([[1, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0], [0, 1, 0, 1, 0, 1], [0, 1, 0, 1, 0, 1]])


# Seeds vary beyond the residual, examples less than it (MS_seed 9,444, MS_example 2,000, MS_residual 4,444).
SEEDS_A = np.array([[1, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [1, 0, 1, 1, 0, 0], [0, 1, 1, 1, 0, 0]])
SEEDS_B = np.array([[1, 0, 1, 0, 1, 1], [0, 0, 0, 1, 0, 0], [0, 1, 1, 0, 1, 0], [1, 1, 0, 1, 0, 0]])


def test_interval_and_p_are_the_written_formula():
    x = 100.0 * (BOTH_A - BOTH_B)
    got = stats.crossed_design(x)
    s, n = x.shape
    ms_s, ms_e, ms_r = got.ms_seed, got.ms_example, got.ms_residual
    combined = ms_s + ms_e - ms_r
    assert ms_s > ms_r and ms_e > ms_r  # both components positive: the formula as written
    df = combined**2 / (ms_s**2 / (s - 1) + ms_e**2 / (n - 1) + ms_r**2 / ((s - 1) * (n - 1)))
    se = math.sqrt(combined / (s * n))
    half = st.t.ppf(0.975, df) * se
    assert got.df == pytest.approx(df) and got.se == pytest.approx(se)
    assert (got.ci_low, got.ci_high) == pytest.approx((x.mean() - half, x.mean() + half))
    assert got.p == pytest.approx(2 * st.t.sf(abs(x.mean()) / se, df))
    assert got.sd_test_sampling == pytest.approx(math.sqrt(max(0.0, ms_e - ms_r) / (s * n)))


def test_a_negative_component_is_truncated_at_zero_and_adds_nothing():
    """Var(mean) sums estimated variance components; a negative estimate must not subtract from
    the others, so the standard error for new data is never below this test set's. With the
    examples' estimate negative the interval is the seeds-only paired t interval itself (the digits
    study hit this: before, its new-data interval was a quarter narrower than this test set's)."""
    x = 100.0 * (RIGHT_A - RIGHT_B)  # seeds' estimate negative: MS_example alone, N - 1 df
    got = stats.crossed_design(x)
    s, n = x.shape
    assert got.ms_seed < got.ms_residual < got.ms_example
    assert got.se == pytest.approx(math.sqrt(got.ms_example / (s * n))) and got.df == pytest.approx(n - 1)
    x = 100.0 * (SEEDS_A - SEEDS_B)  # the examples' estimate negative: MS_seed alone, the seeds-only interval
    got = stats.crossed_design(x)
    assert got.ms_example < got.ms_residual < got.ms_seed
    seeds_only = st.ttest_1samp(x.mean(axis=1), 0.0)
    ci = seeds_only.confidence_interval(0.95)
    assert (got.ci_low, got.ci_high, got.p) == pytest.approx((ci.low, ci.high, seeds_only.pvalue))
    assert got.df == pytest.approx(s - 1) and got.sd_test_sampling == 0.0
    rng = np.random.default_rng(7)
    for _ in range(200):  # the standard error is never below this test set's, whatever the table
        x = 100.0 * ((rng.random((5, 40)) < 0.8).astype(float) - (rng.random((5, 40)) < 0.75))
        got = stats.crossed_design(x)
        seeds_only_se = x.mean(axis=1).std(ddof=1) / math.sqrt(5)
        assert got.se >= seeds_only_se * (1 - 1e-12) or got.ms_seed <= got.ms_residual


def test_variance_never_below_the_residual_s_and_zero_spread_decides_nothing():
    # rows and columns cancel: MS_seed = MS_example = 0, so the combination is -MS_residual: floored
    x = 100.0 * np.array([[1, -1, 0], [-1, 1, 0], [0, 0, 0]])
    got = stats.crossed_design(x)
    assert got.ms_seed == pytest.approx(0) and got.ms_example == pytest.approx(0) and got.ms_residual > 0
    assert got.se == pytest.approx(math.sqrt(got.ms_residual / 9)) and got.df == 4  # (S - 1)(N - 1)
    assert got.sd_test_sampling == 0.0
    same = stats.crossed_design(np.full((3, 5), 100.0))  # A right and B wrong everywhere
    assert math.isnan(same.ci_low) and same.p == 2 / 2**3  # the sign-flip test of the 3 seeds
    assert math.isnan(stats.crossed_design(np.zeros((1, 5))).p)  # one seed: nothing to test


def two_arms(rng: np.random.Generator, seeds: int = 6, examples: int = 360, hard: float = 0.12) -> np.ndarray:
    """A realistic table (points): most test images easy for both arms; some favour A (p_A = 0.8, p_B = 0.3),
    as many favour B, as many are hard for both (0.5); a seed shifts each run by sd 0.3 logits. The arms
    then disagree on about 8% of the images."""
    kind = rng.choice(4, size=examples, p=[1 - hard, hard / 3, hard / 3, hard / 3])
    runs = []
    for p in (np.array([0.995, 0.8, 0.3, 0.5])[kind], np.array([0.995, 0.3, 0.8, 0.5])[kind]):
        z = np.log(p / (1 - p))[None, :] + rng.normal(0, 0.3, (seeds, 1))
        runs.append(rng.random((seeds, examples)) < 1 / (1 + np.exp(-z)))
    return 100.0 * (runs[0].astype(float) - runs[1].astype(float))


def test_the_pigeonhole_bootstrap_agrees_with_the_formula_on_a_realistic_table():
    x = two_arms(np.random.default_rng(3))
    assert 0.05 < np.mean(x != 0) < 0.15
    got = stats.crossed_design(x)
    means, shares = stats.paired_bootstrap(x, examples=True)
    low, high = np.quantile(means, [0.025, 0.975])
    width = got.ci_high - got.ci_low
    # the bootstrap adds about 2.6 residual mean squares to the formula's variance (Owen 2007), so it runs wider
    assert 1.0 < (high - low) / width < 1.25
    assert abs(low - got.ci_low) < 0.15 * width and abs(high - got.ci_high) < 0.15 * width
    assert np.mean(means) == pytest.approx(x.mean(), abs=0.05 * width)
    again, _ = stats.paired_bootstrap(x, examples=True)
    assert np.array_equal(means, again)  # seeded
    seeds_only, _ = stats.paired_bootstrap(x.mean(axis=1, keepdims=True), examples=False)
    assert np.std(seeds_only) < np.std(means)  # without the examples, test-set sampling is left out


def test_the_new_data_interval_covers_where_the_seed_interval_does_not():
    # the difference on new data from the same distribution, from one very large table
    rng = np.random.default_rng(2024)
    truth = np.mean([two_arms(rng, 400, 20_000).mean() for _ in range(3)])
    crossed = seeds_only = 0
    runs = 400
    for _ in range(runs):
        x = two_arms(rng)
        got = stats.crossed_design(x)
        crossed += got.ci_low <= truth <= got.ci_high
        ci = st.ttest_1samp(x.mean(axis=1), 0.0).confidence_interval()
        seeds_only += ci.low <= truth <= ci.high
    assert crossed / runs > 0.925  # 0.95 nominal
    assert seeds_only / runs < 0.9  # this test set's interval, read as one for new data


# --------------------------------------------------------------------------- predictions


def runs_table(right: dict[str, np.ndarray], dataset: str = "digits", examples: np.ndarray | None = None,
               labels: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A results table and its predictions table from right/wrong arrays (seeds x examples) per arm."""
    n = next(iter(right.values())).shape[1]
    examples = np.arange(100, 100 + n) if examples is None else examples
    labels = np.arange(n) % 10 if labels is None else labels
    results, predictions = [], []
    for arm, r in right.items():
        for seed, row in enumerate(r):
            results.append((dataset, arm, seed, float(row.mean()), n))
            predicted = np.where(row == 1, labels, (labels + 1) % 10)
            predictions.append(pd.DataFrame({"dataset": dataset, "arm": arm, "seed": seed, "example": examples,
                                             "label": labels, "predicted": predicted}))
    return (pd.DataFrame(results, columns=["dataset", "arm", "seed", "accuracy", "n_test"]),
            pd.concat(predictions, ignore_index=True))


def test_compare_with_predictions_fills_the_new_data_columns():
    results, predictions = runs_table({"a": RIGHT_A, "b": RIGHT_B})
    row = stats.compare(results, predictions=predictions).iloc[0]
    got = stats.crossed_design(100.0 * (RIGHT_A - RIGHT_B))
    assert row["n_examples"] == 6 and row["df_new_data"] == pytest.approx(got.df)
    assert (row["ci_low_new_data"], row["ci_high_new_data"]) == pytest.approx((got.ci_low, got.ci_high))
    assert row["p_new_data"] == pytest.approx(got.p) and row["p_new_data_holm"] == pytest.approx(got.p)
    assert row["sd_test_sampling"] == pytest.approx(got.sd_test_sampling)
    assert row["diff"] == pytest.approx(got.mean)  # accuracies are the share right: the same mean
    assert row["share_ci_low"] <= row["share_a_better"] <= row["share_ci_high"]
    rope = row["rope"]
    tost = max(st.t.sf((got.mean + rope) / got.se, got.df), st.t.cdf((got.mean - rope) / got.se, got.df))
    assert row["p_tost_new_data"] == pytest.approx(tost)
    assert row["equivalence_attainable"] == bool(st.t.isf(0.05, got.df) * got.se < rope)
    # the order of the rows does not matter
    shuffled = predictions.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(stats.compare(results, predictions=shuffled), stats.compare(results, predictions=predictions))


def test_the_verdict_uses_the_new_data_test_and_its_holm_adjustment():
    # A beats B on the same 3 of 360 test images at every seed (2 of them at every other seed) and
    # nowhere else: over seeds the gain is plain, but a new test set would hold other images
    rng = np.random.default_rng(0)
    base = (rng.random((6, 360)) < 0.95).astype(int)
    a, b = base.copy(), base.copy()
    b[:, :3] = 0
    a[:, :3] = 1
    a[[0, 2, 4], 0] = 0
    results, predictions = runs_table({"a": a, "b": b, "c": base})
    frame = stats.compare(results, contrasts=[("a", "b"), ("a", "c")], predictions=predictions)
    ab = frame.iloc[0]
    assert ab["p_holm"] < 0.05 and ab["p_new_data_holm"] > 0.05
    assert ab["verdict"].startswith("not significant")
    np.testing.assert_allclose(frame["p_new_data_holm"], multipletests(frame["p_new_data"], method="holm")[1])
    np.testing.assert_allclose(frame["p_holm"], multipletests(frame["p_paired"], method="holm")[1])
    # without predictions the same table is decided on this test set
    assert stats.compare(results, contrasts=[("a", "b")])["verdict"].iloc[0] == "significant: a better"


def test_rows_without_predictions_for_every_paired_seed_keep_this_test_set_s_verdict():
    results, predictions = runs_table({"a": RIGHT_A, "b": RIGHT_B})
    full = stats.compare(results).iloc[0]
    for drop in (predictions["seed"] >= 1, predictions["seed"] == 3):
        partial = predictions[~((predictions["arm"] == "b") & drop)]
        row = stats.compare(results, predictions=partial).iloc[0]
        # diff is over all 4 seeds, so no new-data interval over fewer is set beside it
        assert math.isnan(row["p_new_data"]) and math.isnan(row["ci_low_new_data"])
        lacking = int(drop[predictions["arm"] == "b"].groupby(predictions["seed"]).any().sum())
        assert f"{lacking} of 4 paired seeds lack predictions: no new-data test" in row["warnings"]
        assert (row["diff"], row["ci_low"], row["p_holm"]) == pytest.approx(
            (full["diff"], full["ci_low"], full["p_holm"]))
        assert row["verdict"] == full["verdict"]


def test_holm_adjusts_the_deciding_p_once_over_rows_with_and_without_predictions():
    rng = np.random.default_rng(1)
    right = {arm: (rng.random((4, 30)) < share).astype(int) for arm, share in (("a", 0.9), ("b", 0.7), ("c", 0.5))}
    results, predictions = runs_table(right)
    with_c = stats.compare(results, contrasts=[("a", "b"), ("a", "c"), ("b", "c")], predictions=predictions)
    no_c = predictions[predictions["arm"] != "c"]  # only a vs b keeps its new-data test
    frame = stats.compare(results, contrasts=[("a", "b"), ("a", "c"), ("b", "c")], predictions=no_c)
    assert frame["p_new_data"].notna().tolist() == [True, False, False]
    deciding = [frame["p_new_data"].iloc[0], frame["p_paired"].iloc[1], frame["p_paired"].iloc[2]]
    expected = multipletests(deciding, method="holm")[1]
    held = stats.verdict_holm(frame)
    np.testing.assert_allclose(held["p_verdict_holm"], expected)
    assert frame["p_new_data_holm"].iloc[0] == pytest.approx(expected[0])  # over 3 rows, not 1
    assert frame["p_new_data_holm"].iloc[1:].isna().all()
    tost = [frame["p_tost_new_data"].iloc[0], frame["p_tost"].iloc[1], frame["p_tost"].iloc[2]]
    np.testing.assert_allclose(held["p_tost_verdict_holm"], multipletests(tost, method="holm")[1])
    np.testing.assert_allclose(frame["p_holm"], multipletests(frame["p_paired"], method="holm")[1])
    # with predictions everywhere the deciding p is the new-data p on every row
    np.testing.assert_allclose(stats.verdict_holm(with_c)["p_verdict_holm"],
                               multipletests(with_c["p_new_data"], method="holm")[1])
    np.testing.assert_allclose(with_c["p_new_data_holm"], multipletests(with_c["p_new_data"], method="holm")[1])
    for verdict, p in zip(frame["verdict"], held["p_verdict_holm"]):
        assert verdict.startswith("significant") == (p < 0.05)


def test_disagreement_is_the_share_of_examples_with_exactly_one_arm_right():
    results, predictions = runs_table({"a": RIGHT_A, "b": RIGHT_B})
    got = stats.disagreement(predictions, results)
    assert got["seed"].tolist() == [0, 1, 2, 3]
    assert got["disagree"].tolist() == pytest.approx((RIGHT_A != RIGHT_B).mean(axis=1).tolist())


def write_gz(path, frame: pd.DataFrame):
    with gzip.open(path, "wt") as handle:
        frame.to_csv(handle, index=False)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.drop(columns=["label"]), "predictions table lacks column(s) label"),
        (lambda p: p.iloc[:0], "predictions table has no rows"),
        (lambda p: p.assign(example=p["example"].astype(str).where(p.index != 3, "x")),
         "row 4: example 'x' is not an integer >= 0"),
        (lambda p: pd.concat([p, p.iloc[[0]]]), "duplicate prediction of digits/a/seed 0 for example 100"),
        (lambda p: p.assign(seed=p["seed"].where(p["arm"] != "b", p["seed"] + 10)),
         "predictions for digits/b/seed 10: a run that is not in the results"),
        (lambda p: p[~((p["arm"] == "b") & (p["seed"] == 2) & (p["example"] == 105))],
         "digits: digits/b/seed 2 was scored on other test examples than digits/a/seed 0 (5 and 6 examples)"),
        (lambda p: p.assign(label=p["label"].where(~((p["arm"] == "b") & (p["example"] == 100)), 7)),
         "digits: digits/b/seed 0 gives other labels than digits/a/seed 0"),
        (lambda p: p.assign(predicted=p["predicted"].where(~((p["arm"] == "a") & (p["seed"] == 1)), p["label"])),
         "predictions of digits/a/seed 1 score 1, but the results give accuracy 0.833333"),
    ],
)
def test_a_bad_predictions_file_is_one_line(tmp_path, change, message):
    results, predictions = runs_table({"a": RIGHT_A, "b": RIGHT_B})
    path = write_gz(tmp_path / "predictions.csv.gz", change(predictions))
    with pytest.raises(ConfigError) as info:
        stats.load_predictions(path, results)
    assert message in str(info.value) and "\n" not in str(info.value) and str(path) in str(info.value)


def test_unreadable_predictions(tmp_path):
    results, _ = runs_table({"a": RIGHT_A, "b": RIGHT_B})
    with pytest.raises(DataError, match="no such predictions file"):
        stats.load_predictions(tmp_path / "nope.csv.gz", results)
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read predictions CSV"):
        stats.load_predictions(tmp_path / "bad.csv.gz", results)


def test_predictions_read_back_in_canonical_order_and_replicates_match_their_runs(tmp_path):
    results, predictions = runs_table({"a": RIGHT_A, "b": RIGHT_B})
    path = write_gz(tmp_path / "p.csv.gz", predictions.sample(frac=1.0, random_state=2))
    back = stats.load_predictions(path, results)
    assert list(back.columns) == list(stats.PREDICTION_COLUMNS) and (back.dtypes.iloc[2:] == "int64").all()
    pd.testing.assert_frame_equal(back, stats.validate_predictions(predictions, results))
    # with replicates: the main tables use replicate 0; a second replicate's runs are left out there
    twice = pd.concat([results.assign(replicate=0), results.assign(replicate=1)], ignore_index=True)
    flipped = predictions.assign(predicted=np.where(predictions["arm"] == "a", predictions["label"], predictions["predicted"]))
    both = pd.concat([predictions.assign(replicate=0), flipped.assign(replicate=1)], ignore_index=True)
    with pytest.raises(ConfigError, match="score 1, but the results give"):
        stats.validate_predictions(both, twice)  # replicate 1's accuracies do not match its runs
    fixed = twice.assign(accuracy=np.where((twice["replicate"] == 1) & (twice["arm"] == "a"), 1.0, twice["accuracy"]))
    checked = stats.validate_predictions(both, fixed)
    assert list(checked.columns[:4]) == ["dataset", "arm", "seed", "replicate"]
    only_first = fixed[fixed["replicate"] == 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = stats.compare(only_first, predictions=checked).iloc[0]
    assert row["p_new_data"] == pytest.approx(stats.crossed_design(100.0 * (RIGHT_A - RIGHT_B)).p)


def test_too_short_reads_single_long_s_interval_for_new_data_where_predictions_exist():
    rng = np.random.default_rng(4)
    base = (rng.random((5, 300)) < 0.9).astype(int)
    base[:, :7] = 0
    longer = base.copy()
    longer[:, :6] = 1  # single-long gets 6 more images right: +2 points at every seed...
    longer[[0, 2], 6] = 1  # ...and one more at two seeds
    results, predictions = runs_table({"single": base, "single-long": longer})
    (seeds_only,) = stats.too_short_recipes(results, smallest_effect=1.0)
    (new,) = stats.too_short_recipes(results, predictions, smallest_effect=1.0)
    got = stats.crossed_design(100.0 * (longer - base))
    assert not seeds_only.new_data and new.new_data
    assert (new.ci_low, new.ci_high) == pytest.approx((got.ci_low, got.ci_high))
    assert new.ci_high - new.ci_low > seeds_only.ci_high - seeds_only.ci_low  # a few images: wide for new data
