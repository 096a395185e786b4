"""Write a report directory: statistics, figures, ``report.md`` and the files behind them.

Layout of ``out_dir``::

    report.md          the report (ablate.report.render_report)
    results.csv        dataset,arm,seed,accuracy (+ the optional columns present) in canonical
                       order, floats at full precision
    analysis.json      the settings of the analysis: title, contrasts, rope, alpha,
                       smallest_effect, still_rising, note, and for sequential seeds the
                       design (sequential: looks, spending, comparisons)
    tuning.json        per arm: how it was tuned (only when given)
    comparisons.csv    ablate.stats.compare, floats written as shortest round-trip reprs; after
                       sequential seeds p_holm, p_tost_holm and mde_80 are empty and the
                       verdict is the design's (ablate.stats.mark_sequential)
    sequential.csv     sequential seeds only: ablate.stats.sequential_frame, one row per
                       data set and contrast (look decided, boundary, design-adjusted
                       interval, seeds run, fixed-design seeds of the same power)
    across.csv         ablate.stats.across_datasets: one row per contrast
    summaries.csv      ablate.stats.summarize
    figures/*.png      per-dataset arm comparisons, learning curves, head similarity, CD diagram

Re-running ``ablate report --results out_dir/results.csv`` reproduces ``comparisons.csv``,
``across.csv`` and ``sequential.csv`` byte for byte: results are written with ``repr`` floats, read back exactly
(``ablate.stats.load_results``), put in the same canonical order, the analysis settings are
read back from ``analysis.json`` (and ``tuning.json``), and every random step has a fixed seed.
Every file is written to a temporary name in ``out_dir`` and moved into place with
``os.replace``, so a reader never sees a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from functools import partial
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from ablate import figures as figs
from ablate import stats
from ablate.errors import ConfigError
from ablate.report import AGGREGATE_FIGURES, render_report

__all__ = ["write_report_dir", "analysis_settings", "read_analysis", "read_tuning", "ANALYSIS_FILE", "TUNING_FILE"]

_FIGURE_DIR = "figures"
ANALYSIS_FILE = "analysis.json"
TUNING_FILE = "tuning.json"
_TUNING_METHODS = ("per-arm", "best", "fixed")


def write_report_dir(
    results: pd.DataFrame,
    out_dir: Path,
    *,
    title: str,
    contrasts: Sequence[tuple[str, str]] | None = None,
    rope: float | None = None,
    alpha: float = 0.05,
    smallest_effect: float | None = None,
    still_rising: float = 2.0,
    provenance: Mapping[str, object] | None = None,
    curves: pd.DataFrame | None = None,
    similarity: pd.DataFrame | None = None,
    missing: Sequence[str] = (),
    tuning: Mapping[str, Mapping[str, object]] | None = None,
    note: str | None = None,
    sequential: Mapping[str, object] | None = None,
) -> Path:
    """Compute the statistics, draw the figures and write the report directory.

    Args:
        results: results table (``dataset, arm, seed, accuracy``; accuracy a fraction), with
            any of :data:`ablate.stats.OPTIONAL_COLUMNS`.
        out_dir: directory to write into (created if missing; files in it are replaced).
        title: report title.
        contrasts: ``(arm_a, arm_b)`` pairs; default :func:`ablate.stats.default_contrasts`.
        rope: half-width of the region of practical equivalence, in points; None: per data
            set the larger of 0.1 and one test image (100 / n_test).
        alpha: significance level.
        smallest_effect: smallest difference of interest in points (seeds needed for it).
        still_rising: late validation gain (points) above which an arm is "still rising".
        provenance: shown in the report as given (a ``host`` key is left out); the SHA-256 of
            ``results.csv`` is added. A ``git_commit`` ending in "+dirty" is called out.
        curves: optional ``arm, seed, epoch, val_accuracy`` (and optionally ``dataset``).
        similarity: optional ``arm, seed, head_similarity`` (and optionally ``dataset``).
        missing: planned runs that have no result (e.g. "fmce/digits/seed 3"), listed in the
            report's warnings.
        tuning: per arm ``{"method": "per-arm"|"best"|"fixed", "settings": {path: value},
            "n_trials": int, "importances": {param: float}, "search_values": [validation
            accuracies of the complete search trials, in trial order]}``; saved as
            ``tuning.json``.
        note: a paragraph shown at the top of the report (where the numbers come from).
        sequential: the design of sequential seeds, ``{"looks": [n_1, ...], "spending":
            "obrien-fleming"|"pocock", "comparisons": m}`` (``ablate.study.sequential_settings``);
            None for a fixed design. Adds ``sequential.csv`` and the design's verdicts.

    Returns:
        The path of ``report.md``.

    Raises:
        ConfigError: invalid results, contrasts, settings or tuning (nothing is written then).
    """
    out_dir = Path(out_dir)
    results = stats.sort_results(stats.validate_results(results))
    comparisons = stats.compare(results, contrasts, rope=rope, alpha=alpha, smallest_effect=smallest_effect,
                                still_rising=still_rising)
    tuning = _checked_tuning(tuning)
    summaries = stats.summarize(results)
    profiles = stats.profile_arms(results, still_rising)
    aggregate = stats.aggregate(results, contrasts, alpha=alpha)
    sequential = _checked_sequential(sequential)
    seq_frame = None
    if sequential is not None:
        seq_frame = stats.sequential_frame(results, **sequential, alpha=alpha, contrasts=contrasts, rope=rope,
                                           smallest_effect=smallest_effect)
        comparisons = stats.mark_sequential(comparisons, seq_frame)
    too_short = stats.single_recipe_too_short(results, comparisons, alpha)
    settings = analysis_settings(contrasts, rope, alpha, smallest_effect, still_rising, note, title, sequential)

    out_dir.mkdir(parents=True, exist_ok=True)
    columns = list(stats.RESULT_COLUMNS) + [c for c in stats.OPTIONAL_COLUMNS if c in results.columns]
    results_csv = _csv(results[columns])
    _write_atomic(out_dir / "results.csv", results_csv.encode())
    _write_atomic(out_dir / ANALYSIS_FILE, _json(settings).encode())
    if tuning is not None:
        _write_atomic(out_dir / TUNING_FILE, _json(tuning).encode())
    _write_atomic(out_dir / "comparisons.csv", _csv(comparisons).encode())
    _write_atomic(out_dir / "across.csv", _csv(stats.across_frame(aggregate.across)).encode())
    if seq_frame is not None:
        _write_atomic(out_dir / "sequential.csv", _csv(seq_frame).encode())
    else:
        (out_dir / "sequential.csv").unlink(missing_ok=True)  # from an earlier, sequential analysis
    _write_atomic(out_dir / "summaries.csv", _csv(summaries).encode())

    figure_paths = _draw_figures(results, aggregate, out_dir, curves, similarity)
    provenance = dict(provenance or {})
    provenance.setdefault("results.csv sha256", hashlib.sha256(results_csv.encode()).hexdigest())
    curves_by_arm = (
        {arm: stats.expected_max(t["search_values"]).tolist() for arm, t in tuning.items()} if tuning else None
    )
    text = render_report(
        comparisons,
        summaries,
        aggregate,
        title=title,
        provenance=provenance,
        figures=figure_paths,
        rope=rope,
        alpha=alpha,
        missing=missing,
        similarity=_similarity_summary(similarity, results),
        profiles=profiles,
        still_rising=still_rising,
        smallest_effect=smallest_effect,
        too_short=too_short,
        tuning=tuning,
        expected_best=curves_by_arm,
        note=note,
        sequential=seq_frame,
        design=sequential,
    )
    report = out_dir / "report.md"
    _write_atomic(report, text.encode("utf-8"))
    return report


def analysis_settings(
    contrasts: Sequence[tuple[str, str]] | None,
    rope: float | None,
    alpha: float,
    smallest_effect: float | None,
    still_rising: float,
    note: str | None = None,
    title: str | None = None,
    sequential: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The settings of an analysis as saved in ``analysis.json`` (None: the default; the
    ``sequential`` key only for sequential seeds, so a fixed design's file is as before)."""
    settings: dict[str, object] = {
        "title": title,
        "contrasts": None if contrasts is None else [[str(a), str(b)] for a, b in contrasts],
        "rope": None if rope is None else float(rope),
        "alpha": float(alpha),
        "smallest_effect": None if smallest_effect is None else float(smallest_effect),
        "still_rising": float(still_rising),
        "note": note,
    }
    if sequential is not None:
        settings["sequential"] = _checked_sequential(sequential)
    return settings


def read_analysis(path: Path) -> dict[str, object]:
    """Read ``analysis.json``: the keyword arguments of :func:`write_report_dir` it holds.

    Raises:
        ConfigError: the file is not JSON, or a key is unknown or has a value of the wrong type.
    """
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of analysis settings")
    known = ("title", "contrasts", "rope", "alpha", "smallest_effect", "still_rising", "note", "sequential")
    unknown = [k for k in data if k not in known]
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; expected {', '.join(known)}")
    out: dict[str, object] = {}
    contrasts = data.get("contrasts")
    if contrasts is not None:
        if not (isinstance(contrasts, list)
                and all(isinstance(p, list) and len(p) == 2 and all(isinstance(a, str) for a in p) for p in contrasts)):
            raise ConfigError(f"{path}: contrasts must be a list of [arm_a, arm_b] pairs of names")
        out["contrasts"] = [tuple(p) for p in contrasts]
    for key in ("rope", "alpha", "smallest_effect", "still_rising"):
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{path}: {key} must be a number, got {value!r}")
        out[key] = float(value)
    for key in ("title", "note"):
        if data.get(key) is not None:
            if not isinstance(data[key], str):
                raise ConfigError(f"{path}: {key} must be text")
            out[key] = data[key]
    if data.get("sequential") is not None:
        try:
            out["sequential"] = _checked_sequential(data["sequential"])
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return out


def _checked_sequential(design: Mapping[str, object] | None) -> dict[str, object] | None:
    """``{"looks", "spending", "comparisons"}`` with their types checked; None stays None."""
    if design is None:
        return None
    from ablate.sequential import SPENDING

    expected = "sequential must be {looks: [increasing seed counts >= 2], spending, comparisons: int >= 1}"
    if not isinstance(design, Mapping) or set(design) != {"looks", "spending", "comparisons"}:
        raise ConfigError(expected)
    looks, spending, comparisons = design["looks"], design["spending"], design["comparisons"]
    counts = isinstance(looks, (list, tuple)) and all(isinstance(n, int) and not isinstance(n, bool) for n in looks)
    if not (counts and looks and looks[0] >= 2 and all(b > a for a, b in zip(looks, looks[1:]))):
        raise ConfigError(f"{expected} (looks: {looks!r})")
    if spending not in SPENDING:
        raise ConfigError(f"sequential.spending {spending!r} is not one of {', '.join(SPENDING)}")
    if isinstance(comparisons, bool) or not isinstance(comparisons, int) or comparisons < 1:
        raise ConfigError(f"{expected} (comparisons: {comparisons!r})")
    return {"looks": [int(n) for n in looks], "spending": str(spending), "comparisons": int(comparisons)}


def read_tuning(path: Path) -> dict[str, dict[str, object]]:
    """Read ``tuning.json`` (see :func:`write_report_dir`); raises ConfigError when malformed."""
    data = _read_json(path)
    try:
        checked = _checked_tuning(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return checked or {}


def _read_json(path: Path) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


def _checked_tuning(tuning: Mapping[str, Mapping[str, object]] | None) -> dict[str, dict[str, object]] | None:
    """A plain-JSON copy of ``tuning`` with its types checked."""
    if tuning is None:
        return None
    if not isinstance(tuning, Mapping):
        raise ConfigError("tuning must map arm names to their tuning record")
    out: dict[str, dict[str, object]] = {}
    for arm, record in tuning.items():
        if not isinstance(record, Mapping):
            raise ConfigError(f"tuning of arm {arm!r} must be a mapping")
        method = record.get("method")
        if method not in _TUNING_METHODS:
            raise ConfigError(f"tuning of arm {arm!r}: method {method!r} is not one of {', '.join(_TUNING_METHODS)}")
        values = record.get("search_values", [])
        try:
            values = [float(v) for v in values]
            importances = {str(k): float(v) for k, v in dict(record.get("importances", {}) or {}).items()}
            n_trials = int(record.get("n_trials", len(values)))
        except (TypeError, ValueError):
            raise ConfigError(f"tuning of arm {arm!r}: search_values, importances and n_trials must be numbers") from None
        settings = record.get("settings", {}) or {}
        if not isinstance(settings, Mapping):
            raise ConfigError(f"tuning of arm {arm!r}: settings must be a mapping of dotted paths to values")
        out[str(arm)] = {
            "method": method,
            "settings": {str(k): _json_value(v) for k, v in settings.items()},
            "n_trials": n_trials,
            "importances": importances,
            "search_values": values,
        }
    return out


def _json_value(value: object) -> object:
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def _json(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _similarity_summary(similarity: pd.DataFrame | None, results: pd.DataFrame) -> pd.DataFrame | None:
    if similarity is None or similarity.empty:
        return None
    if "dataset" not in similarity.columns:  # one dataset: the results name it
        similarity = similarity.assign(dataset=results["dataset"].iloc[0])
    return stats.summarize_similarity(similarity)


def _csv(frame: pd.DataFrame) -> str:
    # float_format=None writes Python's shortest round-trip repr of each float, so the CSV
    # holds the exact doubles; NaN as an empty field, inf as "inf".
    return frame.to_csv(index=False, lineterminator="\n")


def _draw_figures(
    results: pd.DataFrame,
    aggregate: stats.Aggregate,
    out_dir: Path,
    curves: pd.DataFrame | None,
    similarity: pd.DataFrame | None,
) -> dict[str, list[str]]:
    """Draw every figure; return relative paths (posix) per dataset name."""
    fig_dir = out_dir / _FIGURE_DIR
    fig_dir.mkdir(exist_ok=True)
    paths: dict[str, list[str]] = {}

    def draw(key: str, name: str, render: Callable[[Path], Path]) -> None:
        target = fig_dir / name
        _write_atomic_with(target, render)
        paths.setdefault(key, []).append(f"{_FIGURE_DIR}/{name}")

    for dataset, rows in results.groupby("dataset", sort=False):
        slug = _slug(dataset)
        draw(dataset, f"{slug}_arms.png", partial(figs.arm_comparison, rows, title=f"{dataset}: test accuracy per seed"))
        for extra, suffix, plot, what in _extra_figures(curves, similarity):
            part = _for_dataset(extra, dataset)
            if part is not None and not part.empty:
                draw(dataset, f"{slug}_{suffix}.png", partial(plot, part, title=f"{dataset}: {what}"))
    for extra, suffix, plot, what in _extra_figures(curves, similarity):
        if extra is not None and not extra.empty and "dataset" not in extra.columns:
            draw(AGGREGATE_FIGURES, f"{suffix}.png", partial(plot, extra, title=what))
    if aggregate.friedman is not None and aggregate.friedman.rejects:  # no diagram without a rejection
        f = aggregate.friedman
        draw(AGGREGATE_FIGURES, "critical_difference.png", partial(figs.critical_difference, f.avg_ranks, f.cd))
    return paths


def _extra_figures(curves: pd.DataFrame | None, similarity: pd.DataFrame | None) -> tuple:
    return (
        (curves, "curves", figs.learning_curves, "validation accuracy per epoch"),
        (similarity, "head_similarity", figs.head_similarity, "head similarity per seed"),
    )


def _for_dataset(frame: pd.DataFrame | None, dataset: str) -> pd.DataFrame | None:
    if frame is None or "dataset" not in frame.columns:
        return None
    return frame[frame["dataset"].astype(str) == dataset]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "dataset"


def _write_atomic(path: Path, data: bytes) -> None:
    def dump(tmp: Path) -> Path:
        tmp.write_bytes(data)
        return tmp

    _write_atomic_with(path, dump)


def _write_atomic_with(path: Path, write: Callable[[Path], object]) -> None:
    """Let ``write`` fill a temporary file next to ``path``, then move it into place."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is meant to be read by others
        with open(tmp, "rb+") as handle:  # make the bytes durable before the rename
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
