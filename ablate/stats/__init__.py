"""Statistics of an ablation study: which arm beats which, by how much, and how sure we are.

Input is a *results table*: one row per (dataset, arm, seed) with the test ``accuracy`` as a
fraction in [0, 1], and optionally what each run cost; and, where the runs stored them, a
*predictions table* of every run's prediction for every test example. Every number returned is in
**percentage points** (``accuracy * 100``). Results are frozen dataclasses; :func:`compare`,
:func:`summarize`, :func:`profile_arms`, :func:`across_frame` and :func:`sequential_frame`
flatten them into DataFrames for reports and CSV files. numpy, scipy, pandas and statsmodels
only; pure functions.

The decision procedure, step by step, with what happens on degenerate inputs and the
references, is written once: ``ablate.report.procedure``, which generates both the report's
Procedure section and docs/statistics.md.

Modules, one concept each:

* :mod:`~ablate.stats.results`: read, check and order a results table; contrasts; default ROPE.
* :mod:`~ablate.stats.arms`: one arm on one dataset (summary, cost, still rising).
* :mod:`~ablate.stats.exact`: differences compared exactly (ties, zero spread, sign and sign-flip tests).
* :mod:`~ablate.stats.crossed`: seeds and test examples both random (the interval for new data, the bootstrap).
* :mod:`~ablate.stats.predictions`: per-example test predictions, checked against the results.
* :mod:`~ablate.stats.paired`: two arms paired by seed, one row (:func:`paired_comparison`).
* :mod:`~ablate.stats.contrasts`: the comparisons table (:func:`compare`, Holm, :func:`verdict`, too short).
* :mod:`~ablate.stats.power`: planning figures (power, MDE, seeds for a given power).
* :mod:`~ablate.stats.across`: across datasets (datasets as units, random effects, Friedman).
* :mod:`~ablate.stats.design`: sequential designs (alpha spending, z and t boundaries).
* :mod:`~ablate.stats.sequential`: sequential looks, decisions, operating characteristics.
* :mod:`~ablate.stats.tuning`: tuning curves with confidence bands; replicate searches and their verdicts.
"""

from __future__ import annotations

from ablate.stats import (across, arms, contrasts, crossed, design, exact, paired, power, predictions, results,
                         sequential, tuning)
from ablate.stats.across import *  # noqa: F403
from ablate.stats.arms import *  # noqa: F403
from ablate.stats.contrasts import *  # noqa: F403
from ablate.stats.crossed import *  # noqa: F403
from ablate.stats.design import *  # noqa: F403
from ablate.stats.exact import *  # noqa: F403
from ablate.stats.paired import *  # noqa: F403
from ablate.stats.predictions import *  # noqa: F403
from ablate.stats.power import *  # noqa: F403
from ablate.stats.results import *  # noqa: F403
from ablate.stats.sequential import *  # noqa: F403
from ablate.stats.tuning import *  # noqa: F403

# The public names are those of the modules, in the order a reader meets them.
__all__: list[str] = [
    name
    for module in (results, arms, predictions, exact, paired, crossed, contrasts, power, across, design, sequential,
                   tuning)
    for name in module.__all__
]
