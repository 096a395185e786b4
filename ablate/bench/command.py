"""``ablate bench`` and ``python -m ablate.bench``: parse, measure, print, exit code.

The measuring modules (torch, Optuna) are imported when a command runs, not when the parser is built.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ablate.bench.options import add_arguments, options_from_args
from ablate.bench.output import bench_json, bench_table, pruning_table
from ablate.errors import AblateError

__all__ = ["main", "cli"]


def main(args: argparse.Namespace) -> int:
    """``ablate bench``: measure, then print the table (or, with ``--json``, one JSON object)."""
    from rich.console import Console

    err = Console(stderr=True)
    if getattr(args, "pruning", None) is not None:
        from ablate.bench.pruning import pruning_pays

        with tempfile.TemporaryDirectory() as tmp:
            result = pruning_pays(args.pruning, Path(tmp), log=lambda text: err.print(text, highlight=False))
        if getattr(args, "json", False):
            print(json.dumps(result, indent=2))
        else:
            Console().print(pruning_table(str(args.pruning), result))
        return 0
    from ablate.bench.measure import run_bench

    result = run_bench(options_from_args(args), log=lambda text: err.print(text, highlight=False))
    if getattr(args, "json", False):
        print(json.dumps(bench_json(result), indent=2))
    else:
        Console().print(bench_table(result))
    return 0


def cli(argv: list[str] | None = None) -> int:
    """``python -m ablate.bench``: the flags of ``ablate bench``; a user's mistake is one line on stderr."""
    import ablate.bench

    parser = add_arguments(argparse.ArgumentParser(prog="python -m ablate.bench",
                                                   description=ablate.bench.__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    try:
        return main(args)
    except AblateError as exc:
        print(f"ablate bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
