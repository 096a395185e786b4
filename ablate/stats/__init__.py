"""Statistics of an ablation study: which arm beats which, by how much, and how sure we are.

Input is a *results table*: one row per (dataset, arm, seed) with the test ``accuracy`` as a
fraction in [0, 1], and optionally what each run cost. Every number returned is in
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
* :mod:`~ablate.stats.paired`: two arms paired by seed (:func:`compare`, :func:`verdict`).
* :mod:`~ablate.stats.power`: planning figures (MDE, seeds for an effect, fixed-design power).
* :mod:`~ablate.stats.across`: across datasets (datasets as units, random effects, Friedman).
* :mod:`~ablate.stats.design`: sequential designs (alpha spending, z and t boundaries).
* :mod:`~ablate.stats.sequential`: sequential looks, decisions, operating characteristics.
* :mod:`~ablate.stats.tuning`: tuning curves with confidence bands; replicate searches and their verdicts.
"""

from __future__ import annotations

from ablate.stats import across, arms, design, paired, power, results, sequential, tuning
from ablate.stats.across import *  # noqa: F403
from ablate.stats.arms import *  # noqa: F403
from ablate.stats.design import *  # noqa: F403
from ablate.stats.paired import *  # noqa: F403
from ablate.stats.power import *  # noqa: F403
from ablate.stats.results import *  # noqa: F403
from ablate.stats.sequential import *  # noqa: F403
from ablate.stats.tuning import *  # noqa: F403

# The public names are those of the modules, in the order a reader meets them.
__all__: list[str] = []
__all__ += results.__all__
__all__ += arms.__all__
__all__ += paired.__all__
__all__ += power.__all__
__all__ += across.__all__
__all__ += design.__all__
__all__ += sequential.__all__
__all__ += tuning.__all__
