"""The statistical procedure of a report, written once: the report's Procedure section and
docs/statistics.md are both generated from here.

:data:`STEPS` (every report) and :data:`SEQUENTIAL_STEPS` (after sequential seeds) are the
numbered steps as the report prints them, with the study's ``alpha``, ROPE, smallest effect,
late-gain threshold and sequential design filled in; each step's ``detail`` says for
docs/statistics.md how exactly it is computed, what degenerate inputs give, and the evidence
behind a choice. :data:`REFERENCES`, :data:`SEQUENTIAL_REFERENCES` and
:data:`FURTHER_REFERENCES` (cited in the details only) are the literature.

:func:`procedure_section` renders the report's section; ``python -m ablate.report.docs [PATH]``
writes docs/statistics.md from the same steps (a test checks that the committed page is what it
generates). Change the procedure here, never in the page.
"""

from __future__ import annotations

from dataclasses import dataclass

from ablate.analysis import AnalysisSettings, SequentialPlan
from ablate.report.formatting import format_points

__all__ = [
    "Step",
    "STEPS",
    "SEQUENTIAL_STEPS",
    "REFERENCES",
    "SEQUENTIAL_REFERENCES",
    "FURTHER_REFERENCES",
    "template_values",
    "steps_for",
    "procedure_section",
]


@dataclass(frozen=True)
class Step:
    """One step of the procedure.

    ``text`` is the report's sentence, a :meth:`str.format` template with the fields ``alpha``,
    ``rope``, ``effect``, ``still_rising`` and, in sequential steps, ``looks``, ``comparisons`` and
    ``spending``; ``detail`` is markdown shown under it in docs/statistics.md only.
    """

    text: str
    detail: str = ""


STEPS: tuple[Step, ...] = (
    Step(
        "Accuracies are in percentage points. Arms are paired by seed; only seeds run for both arms of a "
        "contrast count, and n is the number of such pairs. Every run is scored on the same test images.",
        "A seed draws what the study's `repeats.vary` names (initialisation, data order, augmentation, the "
        "train/validation partition), the same for every arm of that seed, so the paired difference d = A − B "
        "removes the seed-to-seed variance that both arms share. Every number is in points, `accuracy × 100`; "
        "results tables are read, checked and put in canonical order by `ablate.stats.load_results`, so the "
        "same rows in any order give the same numbers. The report's opening says which sources of variance "
        "its intervals cover (`AnalysisSettings.vary`, and whether predictions make the test images a sample "
        "too).",
    ),
    Step(
        "Arm summaries: mean, sd (n − 1), median, range and the 95% Student t interval of the mean.",
        "`ablate.stats.summarize`: sd and interval are n/a for one seed.",
    ),
    Step(
        "This test set: A − B is the mean paired difference with its 95% paired t interval over seeds (Student "
        "1908), which treats the test images as fixed. p paired is the two-sided paired t-test; p Welch the "
        "unpaired Welch test on the same seeds (Welch 1947); p perm. the sign-flip permutation test of the "
        "paired differences, exact over all 2^n sign flips for n ≤ 16 (else 9,999 Monte-Carlo flips with a "
        "fixed seed), with the differences rounded to 1e-9 points so that equal test-image counts tie exactly; "
        "with m zero differences its smallest attainable p is 2/2^(n − m). When every paired difference is the "
        "same there is no interval, and p paired is the exact sign-flip test's.",
        "`ablate.stats.paired_comparison`: the interval and p paired are `scipy.stats.ttest_1samp`'s on d, p "
        "Welch is `scipy.stats.ttest_ind(equal_var=False)`, p perm. `scipy.stats.permutation_test` (all 2^n "
        "flips up to n = 16, 65,536 flips that still take milliseconds; beyond that 9,999 Monte-Carlo flips "
        "give p with a standard error below 0.005 at p = 0.05). Accuracies are counts over a test split, so "
        "two seeds that differ by the same number of test images must tie exactly under every flip: d is "
        "rounded to integer multiples of 1e-9 points (far below one test image of a million-image split, 1e-4 "
        "points, and far above the ~1e-14 float noise of × 100) and the flipped sums are compared as "
        "integers.\n\n"
        "Zero spread (`ablate.stats.zero_spread`: every difference the same in those units) is likely with "
        "whole-image accuracies at 2 or 3 seeds, and a constant difference is no evidence of a zero-variance "
        "effect: the t statistic is infinite and today's p would be 0. So the interval is n/a and p paired "
        "is the exact sign-flip p, 2/2^n for a constant nonzero difference and 1 when all are 0 "
        "(`ablate.stats.paired_p`). Simulated with equal arms on a 360-image test set (per seed, Poisson(1.5) "
        "images only A gets right and as many only B gets right), 2 seeds give a constant nonzero difference in "
        "11% of studies and 3 seeds in 1.7%, each one a false positive at p = 0; with the sign-flip p (0.5 and "
        "0.25) none is.",
    ),
    Step(
        "New data: where the runs' per-example predictions are given, each contrast also gets the interval "
        "and test for new data from the same distribution, with seeds and test images both random (Clark "
        "1973; Bouthillier et al. 2021): x[s, i] = 100 (correct_A − correct_B) over the S seeds and N shared "
        "test images is a crossed two-way layout without replication; Var(mean) = (MS_seed + MS_example − "
        "MS_residual) / (S N), each variance component in it truncated at zero (never below MS_residual / (S N), "
        "nor below the seeds-only MS_seed / (S N)), on Satterthwaite's degrees of freedom (Satterthwaite "
        "1946), and p new data is the two-sided t-test at that df. sd test sampling is what the test images "
        "alone add to the sd of the mean difference.",
        "`ablate.stats.crossed_design`: the mean squares of the two-way ANOVA without replication (they match "
        "statsmodels' `anova_lm` of `x ~ C(seed) + C(example)`). Expected mean squares: E MS_seed = σ²_e + N "
        "σ²_seed, E MS_example = σ²_e + S σ²_example, E MS_residual = σ²_e, so S N Var(mean) = S N (σ²_seed/S + "
        "σ²_example/N + σ²_e/(S N)) is estimated by MS_residual + max(MS_seed − MS_residual, 0) + "
        "max(MS_example − MS_residual, 0): a negative estimate of a variance component is set to zero rather "
        "than subtracted from the others (Searle, Casella and McCulloch 1992). With both excesses positive that "
        "is MS_seed + MS_example − MS_residual on df = (MS_seed + MS_example − MS_residual)² / (MS_seed²/(S − "
        "1) + MS_example²/(N − 1) + MS_residual²/((S − 1)(N − 1))); with neither, MS_residual on (S − 1)(N − "
        "1) df; with the test images' negative, MS_seed on S − 1 df, the seeds-only interval itself (the "
        "digits study had one: before the truncation its new-data interval came out a quarter narrower than "
        "this test set's); the interval and p from `scipy.stats.t`. sd test sampling is √(max(0, MS_example − "
        "MS_residual) / (S N)). With every x the same "
        "there is no interval and p is the sign-flip test of the per-seed differences. Columns "
        "`n_examples, ci_low_new_data, ci_high_new_data, df_new_data, p_new_data, p_new_data_holm, "
        "sd_test_sampling`, empty without predictions, and for a row where any paired seed lacks predictions "
        "(a warning names how many): the difference is over all its paired seeds, and an interval over fewer "
        "would describe another difference, so that row is decided on this test set.\n\n"
        "Checked against the pigeonhole bootstrap (Owen 2007), which resamples seeds and, jointly for every "
        "run, test images (`ablate.stats.paired_bootstrap`, seeded): on simulated tables of 6 seeds × 360 "
        "images whose arms disagree on 4 to 12% of the images, its 95% interval is 8 to 15% wider than the "
        "formula's (median), as Owen's bootstrap adds about two and a half times the residual variance (its "
        "variance × S N comes to about MS_seed + MS_example + 1.6 MS_residual, the formula's MS_seed + "
        "MS_example − MS_residual), and the formula's "
        "interval covers the difference on new data in 95 to 96% of tables where the seeds-only paired t interval "
        "covers it in 83 to 89% (`python scripts/crossed_vs_bootstrap.py` prints these figures).",
    ),
    Step(
        "Each row's deciding p is p new data where the row has the new-data test, else p paired (and its "
        "TOST p likewise); these are Holm-adjusted once by Holm's step-down procedure (Holm 1979) over every "
        "row of the comparisons table, rows with and without predictions together: on the rows with the "
        "new-data test they are p new data Holm and p TOST new data Holm; on the others, the Holm p the "
        "report's sentence gives (p Holm when no row has the new-data test). A contrast is significant when "
        "its adjusted deciding p < {alpha}, practically equivalent when its adjusted deciding TOST p < "
        "{alpha}. p Holm and p TOST Holm adjust this test set's p paired and p TOST over every row, for "
        "reference. When the permutation test cannot reach {alpha} at this n, a "
        "significant verdict on this test set says it rests on the paired t-test alone.",
        "The family is every row of the comparisons table, all contrasts on all data sets, so the "
        "family-wise error rate is at most alpha however many rows there are (statsmodels' `multipletests`, "
        "method `holm`; `ablate.stats.verdict_holm`). Rows whose p is undefined (NaN) are left out of the "
        "family. The columns without a "
        "suffix stay for every table, named \"this test set\" in the report.",
    ),
    Step(
        "d_z is the mean paired difference over its sd, times the exact small-sample factor J(n − 1) = Γ((n − "
        "1)/2) / (√((n − 1)/2) Γ((n − 2)/2)) (Lakens 2013); share A better is the share of seeds at which A "
        "beats B, ties counted half, with its 95% percentile bootstrap interval over seeds, or over seeds and "
        "test images where predictions exist (in the spirit of the probability of improvement of Agarwal et "
        "al. 2021); p sign the exact two-sided sign test of those wins, tied seeds dropped.",
        "J(m) = Γ(m/2) / (√(m/2) Γ((m − 1)/2)), the exact bias correction of a standardized mean; d_z is n/a "
        "below 3 pairs, where J is 0 (one degree of freedom carries no usable sd) or undefined, and with zero "
        "spread. `share_ci_low`, `share_ci_high`: 2,000 resamples of `ablate.stats.paired_bootstrap` with a "
        "fixed seed (comparisons.csv regenerates byte for byte); n/a below 2 seeds. p sign is "
        "`scipy.stats.binomtest` on the wins, 1 when every seed ties.",
    ),
    Step(
        "ROPE: differences within {rope} are treated as practically zero; a ROPE finer than one test image is "
        "flagged. P(below), P(inside), P(above) are posterior probabilities of the mean difference under the "
        "Bayesian paired t-test (Student t posterior with n − 1 df, location the mean difference, scale sd/√n; "
        "Benavoli et al. 2017). p TOST is the two one-sided tests for equivalence within the ROPE (Schuirmann "
        "1987), p TOST new data the same at the new-data standard error and df; below {alpha} after Holm the "
        "arms are practically equivalent. Equivalence attainable says whether the test can pass at all at this "
        "n and spread.",
        "Unless given, the ROPE is the smallest effect of interest where the study names one, else per data "
        "set the larger of 0.1 points and one test image, 100 / n_test points, n_test the median test-split "
        "size of the data set's runs (0.1 without it; `ablate.stats.row_rope`). With the one-image floor (0.28 "
        "points on 360 images) 6 seeds at a paired sd of 0.6 points can never pass: equivalence attainable is "
        "true when t_(1 − alpha)(df) × se < rope, the test passing with an observed difference of exactly 0 at "
        "Holm's most lenient step, so false means no outcome at this n and spread can be called equivalent. "
        "p TOST is statsmodels' `ttost_paired` within ±rope; with zero spread there is no posterior and p TOST "
        "is the two one-sided sign-flip tests (`ablate.stats.sign_flip_tost_p`, smallest p 1/2^n).",
    ),
    Step(
        "MDE 80% is the smallest difference a paired t-test detects with 80% power at this n, and seeds for "
        "smallest effect the number of seeds that gives 80% power against {effect}, both from the observed sd "
        "of the differences and at the level a contrast must pass at Holm's first step, {alpha}/m over the m "
        "rows with 2 or more pairs. Both are for the paired t-test over seeds on this test set, also where "
        "the verdict uses the new-data test, and the report says so there: they count seed-to-seed variance "
        "only, and more seeds never remove the test-set sampling that the new-data test includes. No "
        "\"observed power\" is given: it is a function of the p-value and adds "
        "nothing to it (Hoenig and Heisey 2001).",
        "Planning, not post-hoc power: one power function, `ablate.stats.fixed_design_power`, the probability "
        "that the paired t statistic (noncentral t, `scipy.stats.nct`) exceeds t_(1 − a/2)(n − 1) in the "
        "direction of the effect; MDE 80% solves it for the effect (`ablate.stats.mde_80`) and "
        "`ablate.stats.seeds_for_power` searches the integers n ≥ 2 for the first to reach the power (∞ for a "
        "zero effect or beyond 2^40 seeds), for the comparisons table and the sequential design's fixed design "
        "alike. At plain alpha they promised too much: for fmce vs nfmce on the digits report (sd 0.59, 6 "
        "seeds, 6 rows) the difference detectable at alpha/6 is 1.30 points, not 0.85, and 1 point needs 8 "
        "seeds, not 5. There is deliberately no \"seeds needed for the observed difference\" either, a "
        "function of the p-value too. Only the upper tail is evaluated: scipy's noncentral t returns NaN far "
        "in the lower tail (df = 1, nc = 8, x = −12.7).",
    ),
    Step(
        "Verdict: significant (Holm) first; else practically equivalent (TOST, Holm); else not significant; "
        "both on new data where predictions exist, else on this test set.",
        "In this order (`ablate.stats.verdict`): n < 2, `insufficient data`; Holm p < alpha, `significant: "
        "<arm> better`, with `(within ROPE)` when the Holm TOST p < alpha too (real but too small to matter) "
        "and `paired t only: ...` when the verdict is on this test set and the permutation test cannot reach "
        "alpha at this n; else Holm TOST p < alpha, `practically equivalent`; else `not significant`. An arm "
        "whose recipe may be too short, and an arm still rising, are named after the verdict (`; may be too "
        "short: <arm>`, `; still rising: <arm>`).",
    ),
    Step(
        'Confounded by: the arms\' median parameter counts ("parameters") or training images seen, stage 1 and '
        'ensemble members included ("compute"), differ by more than 10% (|a − b| / min(a, b) > 0.10); '
        '"unknown" when the results do not record them.',
        "`ablate.stats.confounded_by` on the per-arm medians of `params` and `train_images`: both named, "
        "joined by a comma, when both differ; a factor that is unknown while the other is confounded is named "
        "as, e.g., \"compute unknown\".",
    ),
    Step(
        "Late gain: the median over seeds of the validation-accuracy gain over the last quarter of the epochs; "
        "above {still_rising} points the arm is still rising and every verdict involving it says so.",
        "The late gain is the median of `val_gain_last_quarter × 100`: an arm above the threshold was stopped "
        "while still learning, so the comparison may change with longer training.",
    ),
    Step(
        "Trained long enough, read from the controls: where a study has single and single-long, single may be "
        "too short whenever the upper end of single-long's 95% interval over it (new data where predictions "
        "exist) exceeds the smallest effect of interest (else the ROPE), significant or not; every verdict "
        "involving single says so.",
        "`ablate.stats.too_short_recipes`, column `too_short` (the arms so marked, empty when none). A cosine "
        "schedule flattens every curve in its last quarter, so the late gain misses under-training: on the "
        "digits report single's late gain is +0.97 points, yet single-long beats it by +1.30 [+0.05, +2.54]. "
        "With zero spread the difference itself is compared.",
    ),
    Step(
        "Across data sets (Demšar 2006): data sets as the units: the sign test and the Wilcoxon signed-rank "
        "test over the per-data-set mean differences; with seeds, a random-effects meta-analysis of those "
        "differences with their within-data-set variances sd²/n: Paule-Mandel tau², the "
        "Hartung-Knapp-Sidik-Jonkman interval on t with k − 1 df with its scale truncated at 1 (Röver et al. "
        "2015), I² truncated at 0, and from 3 data sets the prediction interval mean ± t(k − 2) √(tau² + SE²) "
        "(Higgins et al. 2009); a data set whose differences have zero variance gets one test image's "
        "difference squared over n as its variance. With at least 5 data sets, the Friedman test read through "
        "the Iman-Davenport F (Iman and Davenport 1980), average ranks and the Nemenyi critical difference, "
        "drawn only when F rejects.",
        "`ablate.stats.aggregate`, per contrast over the data sets that ran both arms. Data sets as the units: "
        "a data set counts for A when its mean paired difference is above 0; the sign test over data sets "
        "drops ties (`scipy.stats.binomtest`), the Wilcoxon test is `scipy.stats.wilcoxon` with its defaults, "
        "and the smallest p this many untied data sets can reach is 2/2^k. That is all a table with one run "
        "per cell supports, so with one run per cell this verdict comes first.\n\n"
        "Random effects, when at least 2 data sets have 2 or more paired seeds (`ablate.stats.random_effects`): "
        "statsmodels' `combine_effects` gives the Paule-Mandel tau² (its default \"iterated\" method) and the "
        "weights w = 1/(v + tau²); the interval is mean ± t_(1 − alpha/2)(k − 1) √(max(1, q) / Σw), q the "
        "weighted residual mean square Σw (y − mean)² / (k − 1). Without the max(1, q) truncation the HKSJ "
        "interval covered 0.90 to 0.94 at 3 to 5 data sets of 4 to 6 seeds: with tau² estimated at 0, q falls "
        "below 1 and narrows it. The prediction interval uses SE = 1/√Σw, the random-effects mean's standard "
        "error, as Higgins et al. write it. A data set whose differences have zero variance gets (100 / "
        "n_test)² / n points² (n_test unknown: 0.1 points, the smallest default ROPE) instead of infinite "
        "weight.\n\n"
        "Friedman, with at least 5 data sets and 3 arms run on all of them, on the per-data-set mean "
        "accuracies: F = (N − 1) χ² / (N (k − 1) − χ²) on k − 1 and (k − 1)(N − 1) df (∞ when every data set "
        "ranks the arms the same way); average ranks with ties averaged, rank 1 the best; the Nemenyi "
        "critical difference q_alpha √(k (k + 1) / (6 N)), q_alpha the studentized range quantile over √2. "
        "Arms missing on a data set are named, and left out of the Friedman test.",
    ),
    Step(
        "Tuning curves: the expected best validation accuracy after n search trials, Σ v_(i) [(i/N)^n − "
        "((i − 1)/N)^n] over the N trials that ran, a pruned trial at its last reported value (Dodge et al. "
        "2019), with a simultaneous 95% band from opda (Lourie et al. 2024): a distribution-free band for the "
        "distribution of one trial's validation accuracy on [0, 1], whose edges give the lowest and highest "
        "expected best of n. Both assume independent draws, as in random search; with TPE sampling and "
        "pruning they are approximations. After a confirmation on fresh seeds, the search's and the "
        "confirmation's winning trials and the difference of their mean validation accuracies over those seeds.",
        "`ablate.stats.tuning_curve`. Every trial that ran counts, so n is the number of trials run and the "
        "curve is the search's own outcome; over completed trials only it would leave out the trials the "
        "pruner judged worse and lean upward. The band is `opda.nonparametric.EmpiricalDistribution."
        "confidence_bands(values, 0.95, a=0, b=1, method=\"ld_equal_tailed\")`: the Learned-Miller-DeStefano "
        "band (Learned-Miller and DeStefano 2008) with equal-tailed beta intervals, its critical value "
        "simulated from 100,000 samples with a fixed seed, so a report repeats byte for byte; beyond 200 trials "
        "the Kolmogorov-Smirnov band, exact in closed form. The best of n draws has distribution function F^n, "
        "whose mean ∫ (1 − F^n) falls as F rises, so the band's upper distribution function gives the lower "
        "curve and its lower one the upper curve (`average_tuning_curve`), for every n at once. The band "
        "covers the distribution function with probability 0.95 when the values are continuous and at least "
        "that with ties (accuracies count images), and the curve's band more often still: 80% bands on 8 "
        "trials covered the true curve in all of 250 simulated searches, continuous (Beta(8, 2)) and in whole "
        "images (36 validation images). opda's authors recommend the median tuning curve, whose band needs no "
        "bounds on the values; the expected curve is shown because it continues Dodge et al.'s, and an "
        "accuracy is bounded. A band wider than 50 points at the last trial is called out: too few trials to "
        "tell how good the search was. tuning.json keeps each arm's curve and band.",
    ),
    Step(
        "With several independent searches per arm, every table above uses the runs of replicate 0; the "
        "spread of the chosen settings' validation accuracy is shown per arm, and each replicate's runs are "
        "compared on their own (steps 3 to 8 with that replicate's own predictions where they exist, Holm "
        "within the replicate): a verdict holds when every replicate "
        "reaches the same decision (Bouthillier et al. 2021 count the search among the sources of variance).",
        "`ablate.stats.replicate_verdicts`, written to replicates.csv; a results table without a `replicate` "
        "column is all replicate 0 and shows no such table. The decision is the verdict without its notes "
        "(`significant: <arm> better`, `practically equivalent`, `not significant`, `insufficient data`), so "
        "`(within ROPE)` or `still rising` do not count as a change; a contrast that some replicate did not "
        "run does not hold.",
    ),
    Step(
        "Warnings flag n < 5, sample sizes at which the permutation test cannot reach significance (smallest "
        "two-sided p = 2/2^(n − m) > {alpha}) and ROPEs finer than one test image.",
        "Degenerate inputs never raise; a statistic that is undefined is n/a (NaN in the CSV files). With n < "
        "2 every test, interval and effect size is n/a (means, share A better and p sign are still given for "
        "n = 1). With all differences equal (zero spread) there is no t interval, no posterior and no d_z, "
        "MDE 80% or seeds for smallest effect (no variance to plan from); p paired is the exact sign-flip p (1 "
        "when all are 0, 2/2^n for a nonzero constant) and p TOST the two one-sided sign-flip tests. With both "
        "arms constant and equal p Welch is n/a (0/0).",
    ),
)

SEQUENTIAL_STEPS: tuple[Step, ...] = (
    Step(
        "Sequential seeds: the seeds ran in batches, with looks after {looks} seeds, every arm the same seeds. "
        "Alpha {alpha} is split over the {comparisons} comparisons (contrasts × data sets; Bonferroni) and "
        "each share is spent over the looks by the Lan-DeMets {spending}-type function (Lan and DeMets 1983); "
        "the z boundaries come from recursive numerical integration (Armitage et al. 1969), and the critical "
        "values of the paired t statistic (n_k − 1 df) at each look are calibrated by a seeded simulation of a "
        "million null studies, because seeds are few. At look k the design-adjusted interval is mean(d) ± c_k "
        "sd(d)/√n_k (Jennison and Turnbull 1989): above 0, A better; below 0, B better; inside the ROPE, "
        "equivalent; a look whose differences are all the same decides nothing. Look k is judged on the pairs "
        "of the first n_k seeds alone: where a run among them was given up, the contrast is undecided from that "
        "look on, never filled from a later batch. A contrast keeps the verdict of the first look that decided "
        "it, and the repeats stop when every contrast is settled or the last look is done (then undecided). The "
        "intervals of all looks cover the true difference together with probability 1 − {alpha}/{comparisons}, "
        "so the chance of any false verdict in the study is at most {alpha}. The design's test is over seeds, "
        "on this test set, as its boundaries were calibrated; the new-data interval of a decided contrast is "
        "given beside it and decides nothing.",
        "`ablate.stats.make_design` and `ablate.stats.decide`; the repeats loop and the report replay the "
        "looks from the same differences (`ablate.stats.sequential_look`), so they reach the same verdicts.\n\n"
        "Zero spread: with whole-image accuracies every paired difference at an early look is often the same, "
        "the interval then has zero width and the look used to decide at once: simulated on a 360-image test "
        "set (per seed, Poisson(1.5) images only A gets right and as many only B gets right), a first look at "
        "2 seeds ended \"better\" for equal arms in about 11% of studies, against 0.05 claimed; with the rule, "
        "within 0.05. A constant difference is no evidence of a zero-variance effect, "
        "so such a look decides nothing (and a study file's first look is at 5 seeds at least).\n\n"
        "Replay: each paired difference carries its seed's position in the plan, and look k uses the positions "
        "below n_k. A run given up after its retries leaves a pair missing there; judging the look on the "
        "pairs it has would use a boundary calibrated for n_k pairs, and taking the next seed instead would "
        "fill it from a later batch, which the design never planned. So that look is undecided, and so is the "
        "contrast for good (every later look lacks the same pair); it no longer keeps the repeats going.\n\n"
        "Bonferroni keeps the family-wise error over all contrasts, data sets and looks at most alpha "
        "whatever the correlation between contrasts that share an arm; Holm applied afresh at every look "
        "would not (issue 9). Alpha is spent at the information fractions t_k = n_k / n_max, alpha/2 on each "
        "side as ld98, ldbounds and gsDesign do: O'Brien-Fleming-type a(t) = 2 (2 − 2 Φ(z_{1−alpha/4} / √t)) "
        "(almost nothing early, nearly the whole alpha at the last look) or Pocock-type a(t) = alpha log(1 + "
        "(e − 1) t) (about equal at every look). The z boundaries c_k solve P(|Z_j| < c_j, j < k; |Z_k| ≥ c_k) "
        "= a(t_k) − a(t_{k−1}) for the canonical joint normal, corr(Z_j, Z_k) = √(t_j / t_k), by recursive "
        "numerical integration (Jennison and Turnbull 2000, ch. 19); they match ld98 to 4 decimals "
        "(Reboussin et al. 2000).\n\n"
        "Seeds are few, so the statistic is the paired t with n_k − 1 df, not z. The z boundaries used on t "
        "give a false-positive rate of about 0.088 instead of 0.05 (looks at 5, 10, 15, 20 seeds; issue 9), "
        "and converting each to its nominal p-value (Jennison and Turnbull 2000, sec. 3.8) still about 0.053. "
        "So the t boundaries are calibrated by simulation to the same spending: the first look's is exact "
        "(T_1 is Student t), each later look's the quantile of |T_k| among the simulated null studies not yet "
        "stopped, so that the share crossing first at look k equals the alpha spent there. Where an increment "
        "is too small to resolve (fewer than 200 expected crossings) the marginal Student t quantile is used: "
        "it spends at most the increment, so it errs on the safe side. The null studies are drawn from the "
        "sufficient statistics of each batch (a normal batch mean and a chi-square within-batch sum of "
        "squares, merged by the update of Chan et al. 1979), with a fixed seed, so a design is reproducible "
        "and a million studies take about a second. The t statistic does not depend on the scale of d, so one "
        "calibration serves every sd; it assumes d is normal, as the paired t-test does.\n\n"
        "Centred at the true difference the same t statistics have the null distribution, so the intervals "
        "of all looks cover it together with probability 1 − alpha/m; every false verdict (\"better\" when the "
        "arms are equal, \"equivalent\" when the true difference is at or beyond the ROPE's edge) needs a miss. "
        "Stopping a contrast early, for either reason, only removes chances to err. The equivalence test is "
        "two one-sided tests at alpha/(2m) each, so it is conservative; the operating characteristics measure "
        "it.",
    ),
    Step(
        "For a sequential study, the Holm p-values and MDE 80% are not shown and are empty in comparisons.csv: "
        "they are fixed-sample figures (Holm over a single look at a fixed n, power at a fixed n) and no longer "
        "mean what they say after early stopping; the verdict column holds the design's verdict. A − B, the "
        "95% intervals and p paired, p Welch, p perm., p TOST, p new data are nominal, over all the seeds run, "
        "not adjusted for the looks, and decide nothing. sequential.csv gives per contrast the "
        "look, the boundary crossed, the critical |t|, the design-adjusted interval, the seeds run, and the "
        "seeds a fixed paired t-test at alpha/m needs for the power this design has (simulated, 200,000 "
        "studies, seeded) at the observed sd of the differences against the smallest effect of interest, or "
        "else 3 × the ROPE (its effect_source column says which).",
        "`ablate.stats.mark_sequential` empties those columns and writes the design's verdict; "
        "`ablate.stats.sequential_frame` writes sequential.csv. The operating characteristics "
        "(`ablate.stats.operating_characteristics`: false-positive and false-equivalence rates, power, "
        "expected seeds) are simulated per comparison by the same sampler with a seed of their own, in three "
        "scenarios of 200,000 studies: equal arms, a difference at the ROPE's edge, and the effect. The "
        "power of the fixed design is capped at 0.999: above it the simulated power is 1 to within its "
        "Monte-Carlo error, and the fixed design with the same power would be set by noise. `ablate plan` "
        "shows all of this for a study file before anything is trained.",
    ),
)

REFERENCES: tuple[str, ...] = (
    "Student (1908). The probable error of a mean. *Biometrika* 6(1), 1–25.",
    "Satterthwaite, F. E. (1946). An approximate distribution of estimates of variance components. "
    "*Biometrics Bulletin* 2(6), 110–114.",
    "Clark, H. H. (1973). The language-as-fixed-effect fallacy: a critique of language statistics in "
    "psychological research. *Journal of Verbal Learning and Verbal Behavior* 12(4), 335–359.",
    'Welch, B. L. (1947). The generalization of "Student\'s" problem when several different population '
    "variances are involved. *Biometrika* 34(1–2), 28–35.",
    "Holm, S. (1979). A simple sequentially rejective multiple test procedure. *Scandinavian Journal of "
    "Statistics* 6(2), 65–70.",
    "Iman, R. L., Davenport, J. M. (1980). Approximations of the critical region of the Friedman "
    "statistic. *Communications in Statistics – Theory and Methods* 9(6), 571–595.",
    "Schuirmann, D. J. (1987). A comparison of the two one-sided tests procedure and the power approach "
    "for assessing the equivalence of average bioavailability. *Journal of Pharmacokinetics and "
    "Biopharmaceutics* 15(6), 657–680.",
    "Hoenig, J. M., Heisey, D. M. (2001). The abuse of power: the pervasive fallacy of power calculations "
    "for data analysis. *The American Statistician* 55(1), 19–24.",
    "Demšar, J. (2006). Statistical comparisons of classifiers over multiple data sets. *JMLR* 7, 1–30.",
    "Higgins, J. P. T., Thompson, S. G., Spiegelhalter, D. J. (2009). A re-evaluation of random-effects "
    "meta-analysis. *JRSS A* 172(1), 137–159.",
    "Lakens, D. (2013). Calculating and reporting effect sizes to facilitate cumulative science: a "
    "practical primer for t-tests and ANOVAs. *Frontiers in Psychology* 4, 863.",
    "Benavoli, A., Corani, G., Demšar, J., Zaffalon, M. (2017). Time for a change: a tutorial for "
    "comparing multiple classifiers through Bayesian analysis. *JMLR* 18(77), 1–36.",
    "Dodge, J., Gururangan, S., Card, D., Schwartz, R., Smith, N. A. (2019). Show your work: improved "
    "reporting of experimental results. *EMNLP 2019*, 2185–2194.",
    "Röver, C., Knapp, G., Friede, T. (2015). Hartung-Knapp-Sidik-Jonkman approach and its modification for "
    "random-effects meta-analysis with few studies. *BMC Medical Research Methodology* 15, 99.",
    "Bouthillier, X., Delaunay, P., Bronzi, M., Trofimov, A., Nichyporuk, B., Szeto, J., Sepah, N., Raff, E., "
    "Madan, K., Voleti, V., Ebrahimi Kahou, S., Michalski, V., Serdyuk, D., Arbel, T., Pal, C., Varoquaux, G., "
    "Vincent, P. (2021). Accounting for variance in machine learning benchmarks. *MLSys 2021*.",
    "Agarwal, R., Schwarzer, M., Castro, P. S., Courville, A., Bellemare, M. G. (2021). Deep reinforcement "
    "learning at the edge of the statistical precipice. *NeurIPS 2021*.",
    "Lourie, N., Cho, K., He, H. (2024). Show your work with confidence: confidence bands for tuning curves. "
    "*NAACL 2024*. (the opda package)",
)

SEQUENTIAL_REFERENCES: tuple[str, ...] = (
    "Armitage, P., McPherson, C. K., Rowe, B. C. (1969). Repeated significance tests on accumulating data. "
    "*JRSS A* 132(2), 235–244.",
    "Lan, K. K. G., DeMets, D. L. (1983). Discrete sequential boundaries for clinical trials. *Biometrika* "
    "70(3), 659–663.",
    "Jennison, C., Turnbull, B. W. (1989). Interim analyses: the repeated confidence interval approach. "
    "*JRSS B* 51(3), 305–361.",
)

# Cited in the details of docs/statistics.md, not in a report.
FURTHER_REFERENCES: tuple[str, ...] = (
    "Searle, S. R., Casella, G., McCulloch, C. E. (1992). *Variance Components*. Wiley.",
    "Owen, A. B. (2007). The pigeonhole bootstrap. *Annals of Applied Statistics* 1(2), 386–411.",
    "Pocock, S. J. (1977). Group sequential methods in the design and analysis of clinical trials. "
    "*Biometrika* 64(2), 191–199.",
    "O'Brien, P. C., Fleming, T. R. (1979). A multiple testing procedure for clinical trials. *Biometrics* "
    "35(3), 549–556.",
    "Chan, T. F., Golub, G. H., LeVeque, R. J. (1979). Updating formulae and a pairwise algorithm for "
    "computing sample variances. Stanford CS report STAN-CS-79-773.",
    "Jennison, C., Turnbull, B. W. (2000). *Group Sequential Methods with Applications to Clinical "
    "Trials*. Chapman & Hall/CRC.",
    "Reboussin, D. M., DeMets, D. L., Kim, K., Lan, K. K. G. (2000). Computations for group sequential "
    "boundaries using the Lan-DeMets spending function method. *Controlled Clinical Trials* 21(3), "
    "190–207. (ld98; R package ldbounds)",
    "Learned-Miller, E., DeStefano, J. (2008). A probabilistic upper bound on differential entropy. *IEEE "
    "Transactions on Information Theory* 54(11).",
)


def template_values(settings: AnalysisSettings, plan: SequentialPlan | None) -> dict[str, str]:
    """The fields of the step templates for these settings (and the design of sequential seeds)."""
    rope, effect = settings.rope, settings.smallest_effect
    values = {
        "alpha": f"{settings.alpha:g}",
        "rope": (f"±{format_points(rope)} points (given)" if rope is not None
                 else f"±{format_points(effect)} points (the smallest effect of interest)" if effect is not None
                 else "± the larger of 0.1 points and one test image (100 / n_test points) of each data set"),
        "effect": (f"the smallest effect of interest, {format_points(effect)} points" if effect is not None
                   else "a smallest effect of interest (none was set, so n/a)"),
        "still_rising": format_points(settings.still_rising),
    }
    if plan is not None:
        values.update(looks=", ".join(str(n) for n in plan.looks), comparisons=str(plan.comparisons),
                      spending=plan.spending)
    return values


def steps_for(plan: SequentialPlan | None) -> tuple[Step, ...]:
    """The steps of a report: :data:`STEPS`, and :data:`SEQUENTIAL_STEPS` after sequential seeds."""
    return STEPS + (SEQUENTIAL_STEPS if plan is not None else ())


def procedure_section(settings: AnalysisSettings, plan: SequentialPlan | None = None) -> list[str]:
    """The report's "Procedure" section: the numbered steps with these settings, and the references
    (the sequential ones too when ``plan`` is given)."""
    values = template_values(settings, plan)
    refs = REFERENCES + (SEQUENTIAL_REFERENCES if plan is not None else ())
    return (
        ["## Procedure", ""]
        + [f"{i}. {step.text.format(**values)}" for i, step in enumerate(steps_for(plan), start=1)]
        + ["", "### References", ""]
        + [f"- {r}" for r in refs]
        + [""]
    )
