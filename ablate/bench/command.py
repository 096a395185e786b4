"""``ablate bench`` and ``python -m ablate.bench``: parse, measure, print, exit code.

The measuring modules (torch, Optuna) are imported when a command runs, not when the parser is built.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from ablate.bench.options import add_arguments, options_from_args
from ablate.bench.output import bench_json, bench_table, pruning_table
from ablate.errors import AblateError, ConfigError

__all__ = ["main", "cli", "write_json"]


def main(args: argparse.Namespace) -> int:
    """``ablate bench``: measure, then print the table (or, with ``--json``, one JSON object).

    With ``--json-out FILE`` the JSON so far is written there after every phase. Exit code 1
    when a compile mode of the fused step failed (its error is in the figures), else 0.

    Raises:
        ConfigError: ``--json-out``'s folder does not exist, or a device name that is no device here.
    """
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

    out = getattr(args, "json_out", None)
    if out is not None and not out.resolve().parent.is_dir():  # found now, not after the first phase
        raise ConfigError(f"--json-out {out}: no folder {out.resolve().parent}")
    result = run_bench(options_from_args(args), log=lambda text: err.print(text, highlight=False),
                       on_phase=(lambda so_far: write_json(bench_json(so_far), out)) if out else None)
    if getattr(args, "json", False):
        print(json.dumps(bench_json(result), indent=2))
    else:
        Console().print(bench_table(result))
    failed = [mode for mode, c in (result.fused.compiled if result.fused else {}).items() if c.error is not None]
    return 1 if failed else 0


def write_json(obj: object, path: Path) -> None:
    """``obj`` as JSON at ``path``, written beside it and renamed: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


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
