"""How the report prints numbers and tables: every number goes through these helpers, so the text
shows exactly the values of the CSV files, rounded the same way everywhere."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

from ablate.analysis import is_finite

__all__ = [
    "NA",
    "format_points",
    "format_signed",
    "format_interval",
    "format_p",
    "format_prob",
    "format_count",
    "format_thousands",
    "format_seconds",
    "plural",
    "table",
    "warnings_of",
    "figure_links",
]

_MINUS = "\u2212"  # a real minus sign; "-" reads as a hyphen in prose
NA = "n/a"


def format_points(x: float, signed: bool = False, digits: int = 2) -> str:
    """A value in percentage points: ``+0.40``, ``−0.10``, ``91.23``; ``n/a`` when NaN."""
    if not is_finite(x):
        return NA
    text = f"{float(x):+.{digits}f}" if signed else f"{float(x):.{digits}f}"
    if float(text) == 0.0:  # no "+0.00" or "-0.00"
        text = f"{0.0:.{digits}f}"
    return text.replace("-", _MINUS)


def format_signed(x: object, digits: int = 2) -> str:
    """A difference in points with its sign: ``+0.40``, ``−0.10``, ``0.00``."""
    return format_points(x, signed=True, digits=digits)


def format_interval(low: object, high: object) -> str:
    """An interval of differences in points: ``[−0.10, +0.90]``; ``n/a`` when ``low`` is NaN."""
    return f"[{format_signed(low)}, {format_signed(high)}]" if is_finite(low) else NA


def format_p(p: float) -> str:
    """A p-value or probability tested against alpha: ``0.021``, ``< 0.001``; ``n/a`` when NaN."""
    if not is_finite(p):
        return NA
    return "< 0.001" if float(p) < 0.001 else f"{float(p):.3f}"


def format_prob(x: float) -> str:
    """A probability or effect size shown to two decimals (``0.97``, ``−1.20``)."""
    return format_points(x, digits=2)


def format_count(x: float) -> str:
    """A count such as seeds needed: ``23``, ``∞``, or ``n/a``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return NA
    if math.isinf(float(x)):
        return "\u221e"
    return str(int(x))


def format_thousands(x: object) -> str:
    """A count such as parameters: ``11,172,042``; ``n/a`` when unknown."""
    if not is_finite(x):
        return NA
    return f"{float(x):,.0f}"


def format_seconds(x: object) -> str:
    """A wall time in whole seconds; ``n/a`` when unknown."""
    return f"{float(x):.0f}" if is_finite(x) else NA


def plural(n: int, word: str) -> str:
    """``1 comparison``, ``3 comparisons``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def _cell(x: object) -> str:
    """Markdown-safe cell text."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(x).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A markdown table, one line per row (cells escaped; None and NaN empty)."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def warnings_of(row: Mapping[str, object]) -> list[str]:
    """The warnings of a comparisons row (joined with "; " in the CSV)."""
    raw = row.get("warnings", "")
    if not isinstance(raw, str) or not raw:
        return []
    return [w for w in raw.split("; ") if w]


def figure_links(paths: Sequence[str]) -> list[str]:
    """Markdown image links to figures (relative posix paths), each followed by a blank line."""
    out = []
    for p in paths:
        posix = PurePosixPath(str(p).replace("\\", "/"))
        out += [f"![{posix.stem.replace('_', ' ')}]({posix.as_posix()})", ""]
    return out
