"""The report of an ablation study: markdown sections, figures, and the report folder.

``report`` returns strings and writes the report folder; no torch, no Optuna. The statistical
procedure it prints is written once, in :mod:`ablate.report.procedure`; :mod:`ablate.report.docs`
generates docs/statistics.md from it (``python -m ablate.report.docs``).

Modules:

* :mod:`~ablate.report.formatting`: how numbers and tables are printed.
* :mod:`~ablate.report.sentences`: the verdicts in words.
* :mod:`~ablate.report.verdicts`, :mod:`~ablate.report.datasets`, :mod:`~ablate.report.sections`,
  :mod:`~ablate.report.tuning`, :mod:`~ablate.report.procedure`: the sections;
  :mod:`~ablate.report.markdown` assembles them.
* :mod:`~ablate.report.tuning_file`: tuning.json (read, checked, completed with tuning curves).
* :mod:`~ablate.report.figures`: the figures.
* :mod:`~ablate.report.folder`: the report folder (:func:`write_report_dir`).
"""

from __future__ import annotations

from ablate.report.folder import ANALYSIS_FILE, PREDICTIONS_FILE, TUNING_FILE, write_report_dir
from ablate.report.formatting import format_count, format_p, format_points, format_prob
from ablate.report.markdown import render_report
from ablate.report.procedure import procedure_section
from ablate.report.sections import AGGREGATE_FIGURES
from ablate.report.sentences import across_sentence, sequential_sentence, variance_sentence, verdict_sentence
from ablate.report.tuning import TUNING_FIGURES
from ablate.report.tuning_file import read_tuning

__all__ = [
    "AGGREGATE_FIGURES",
    "TUNING_FIGURES",
    "ANALYSIS_FILE",
    "TUNING_FILE",
    "PREDICTIONS_FILE",
    "format_points",
    "format_p",
    "format_prob",
    "format_count",
    "verdict_sentence",
    "sequential_sentence",
    "across_sentence",
    "variance_sentence",
    "procedure_section",
    "render_report",
    "write_report_dir",
    "read_tuning",
]
