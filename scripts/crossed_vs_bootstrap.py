"""How close the crossed-design formula's 95% interval and the pigeonhole bootstrap's come, and what they cover
(issue 16; the figures quoted in docs/statistics.md and the README). About 15 s on 2 cores:

    .venv/bin/python scripts/crossed_vs_bootstrap.py

Two arms' right/wrong on 360 test images, 6 seeds: most images easy for both (p = 0.995); some favour A
(p_A = 0.8, p_B = 0.3), as many favour B, some are hard for both (p = 0.5); a seed shift of sd 0.3 logits
per run. The share of hard images sets the disagreement (about 4-12%).
"""
import numpy as np
from scipy import stats
from ablate.stats import crossed_design, paired_bootstrap

def table(rng, seeds=6, examples=360, hard=0.12):
    kind = rng.choice(4, size=examples, p=[1 - hard, hard / 3, hard / 3, hard / 3])
    pa = np.array([0.995, 0.8, 0.3, 0.5])[kind]
    pb = np.array([0.995, 0.3, 0.8, 0.5])[kind]
    logit = lambda q: np.log(q / (1 - q))
    runs = []
    for p in (pa, pb):
        z = logit(p)[None, :] + rng.normal(0, 0.3, (seeds, 1))
        runs.append(rng.random((seeds, examples)) < 1 / (1 + np.exp(-z)))
    return 100.0 * (runs[0].astype(float) - runs[1].astype(float))

if __name__ == "__main__":
    for hard in (0.06, 0.12, 0.2):
        rng = np.random.default_rng(2024)
        truth = np.mean([table(rng, 400, 20000, hard).mean() for _ in range(5)])
        ratios, ends, dis, cover = [], [], [], np.zeros(3)
        K, B = 400, 150
        for k in range(K):
            x = table(rng, hard=hard)
            d = crossed_design(x)
            ci = stats.ttest_1samp(x.mean(axis=1), 0).confidence_interval()
            cover[0] += d.ci_low <= truth <= d.ci_high
            cover[1] += ci.low <= truth <= ci.high
            dis.append(np.mean(x != 0))
            if k < B:
                means, _ = paired_bootstrap(x, examples=True)
                lo, hi = np.quantile(means, [0.025, 0.975])
                cover[2] += lo <= truth <= hi
                ratios.append((hi - lo) / (d.ci_high - d.ci_low))
                ends.append(max(abs(lo - d.ci_low), abs(hi - d.ci_high)) / (d.ci_high - d.ci_low))
        print(f"disagreement {100*np.median(dis):.1f}%: bootstrap/formula width median {np.median(ratios):.3f} "
              f"(IQR {np.quantile(ratios, .25):.3f}-{np.quantile(ratios, .75):.3f}); endpoints apart by "
              f"{100*np.median(ends):.1f}% of the width (median); coverage formula {cover[0]/K:.3f}, "
              f"bootstrap {cover[2]/B:.3f}, seeds-only t {cover[1]/K:.3f}")
