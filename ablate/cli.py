"""``ablate``: the command line. Parses, wires the layers together, prints, sets exit codes.

A user's mistake (an ``AblateError``) is one line on stderr and exit code 2; a bug keeps its
traceback. Nothing is created before the whole study file has been checked. The work itself is
done by ``ablate.study`` (trials), ``ablate.report`` (the report folder) and ``ablate.bench``.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

from ablate.console import Display, print_plan, print_search_summaries
from ablate.errors import AblateError, ConfigError

__all__ = ["main"]


class WorkersFailed(AblateError):
    """Worker processes of ``ablate run --workers`` exited with an error; the next run continues."""

    exit_code = 1


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except AblateError as exc:
        print(f"ablate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ablate: interrupted; the running trial was marked failed; run the same command again to continue",
              file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ablate", description="Hyperparameter searches and ablation studies with honest statistics.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a study: the search, then the seeded repeats, then the report")
    run.add_argument("study", type=Path, nargs="?", default=None,
                     help="study file (YAML); default: the embedded quickstart study, run in this folder")
    run.add_argument("--phase", choices=("search", "repeats", "report", "all"), default="all",
                     help="run one phase only (default: all)")
    run.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    run.add_argument("--gpus", default=None, help="comma-separated GPU ids: one worker per GPU, e.g. 0,1,2,3")
    run.add_argument("--max-trials", type=int, default=None, help=argparse.SUPPRESS)  # tests: stop early
    run.add_argument("--quiet", action="store_true", help="no live display, one line per trial")
    _add_storage(run)
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate a study file and its data sets and backbones; run nothing")
    check.add_argument("study", type=Path)
    _add_storage(check)
    check.set_defaults(func=cmd_check)

    rep = sub.add_parser("report", help="write the significance report from a study's storage or a results.csv")
    rep.add_argument("study", type=Path, nargs="?", help="study file (YAML)")
    rep.add_argument("--results", type=Path, help="a results table (dataset,arm,seed,accuracy) from anywhere; "
                     "analysis.json and tuning.json beside it are used when present")
    rep.add_argument("--out", type=Path, help="output folder for --results")
    rep.add_argument("--contrast", nargs=2, action="append", metavar=("A", "B"),
                     help="compare arm A with arm B (repeatable; default: all pairs) (--results)")
    rep.add_argument("--rope", help="region of practical equivalence, in points "
                     "(default: the larger of 0.1 and one test image per data set) (--results)")
    rep.add_argument("--alpha", help="significance level (default 0.05) (--results)")
    rep.add_argument("--smallest-effect", help="smallest difference of interest, in points: seeds needed for it (--results)")
    rep.add_argument("--still-rising", help="late validation gain, in points, above which an arm is still rising "
                     "(default 2) (--results)")
    rep.add_argument("--title", help="report title (--results)")
    rep.add_argument("--note", help="a note shown at the top of the report, e.g. where the numbers come from (--results)")
    rep.add_argument("--predictions", type=Path, help="per-example test predictions of the runs "
                     "(dataset,arm,seed,example,label,predicted; default: predictions.csv.gz beside the results "
                     "when present): the test images become a sample too (--results)")
    _add_storage(rep)
    rep.set_defaults(func=cmd_report)

    plan = sub.add_parser("plan", help="a study's sequential design: boundaries per look and error rates, before training")
    plan.add_argument("study", type=Path, help="study file (YAML)")
    plan.add_argument("--sd", default=None, metavar="POINTS",
                      help="sd of the paired differences, points (default: from earlier repeats, else 1.0)")
    plan.add_argument("--effect", default=None, metavar="POINTS",
                      help="difference to find, points (default: repeats.smallest_effect, else 3 x rope)")
    plan.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    _add_storage(plan)
    plan.set_defaults(func=cmd_plan)

    dash = sub.add_parser("dashboard", help="start optuna-dashboard on a study's storage")
    dash.add_argument("study", type=Path)
    dash.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    dash.add_argument("--port", type=int, default=8080)
    dash.add_argument("--allow-remote", action="store_true",
                      help="let --host be an address other machines can reach (they can change the study)")
    _add_storage(dash)
    dash.set_defaults(func=cmd_dashboard)

    bench = sub.add_parser("bench", help="training throughput: ablate's loop against a bare PyTorch loop")
    from ablate.bench import add_arguments

    add_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    return p


def _add_storage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", metavar="URL", default=None,
                        help="use this storage instead of the study file's (also: ABLATE_STORAGE); "
                             "a relative path is resolved against this folder")


def _storage_override(args: argparse.Namespace) -> str | None:
    """``--storage``, else ``ABLATE_STORAGE``, else None: the study file's own storage."""
    return getattr(args, "storage", None) or os.environ.get("ABLATE_STORAGE") or None


def cmd_check(args: argparse.Namespace) -> int:
    from ablate.study import load_study_file, redact

    cfg, paths = load_study_file(args.study, storage=_storage_override(args))
    print(f"{args.study}: ok; study {cfg.name!r}, storage {redact(paths.storage)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ablate import study as st

    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else []
    workers = len(gpus) if gpus else args.workers
    if workers < 1:
        raise ConfigError(f"--workers: expected 1 or more (got {workers})")
    cfg, paths = st.load_study_file(args.study, workers=workers, storage=_storage_override(args))
    phases = st.study_phases(cfg, args.phase, where=str(args.study))
    is_worker = os.environ.get("ABLATE_WORKER") is not None  # one of the processes _run_workers starts
    if workers > 1 and not is_worker:
        st.run_study(cfg, paths, phases, run_phase=lambda phase: _run_workers(args, cfg, paths, phase, workers, gpus))
    else:
        _set_threads(workers)
        with Display(live=not args.quiet) as display:
            st.run_study(cfg, paths, phases, events=display, max_trials=args.max_trials)
    if is_worker:
        return 0
    if "search" in phases and cfg.search.n_trials > 0:
        print_search_summaries(st.search_summaries(cfg, paths), cfg, paths)
    if "report" in phases and args.max_trials is None:
        _write_report(cfg, paths)
    return 0


def _set_threads(workers: int) -> None:
    """One training per process, with torch's threads set to the cores it owns: two trainings
    sharing 2 cores with 2 threads each run about ten times slower than one after the other."""
    import torch

    from ablate.train import available_cores

    threads = int(os.environ.get("ABLATE_THREADS", 0)) or max(1, available_cores() // workers)
    torch.set_num_threads(threads)


def _run_workers(args: argparse.Namespace, cfg, paths, phase: str, workers: int, gpus: list[str]) -> None:
    """One phase in ``workers`` worker processes, each an ``ablate run --phase PHASE``.

    Raises:
        WorkersFailed: a worker exited with an error.
    """
    from ablate.study import phase_trials, planned_repeats
    from ablate.train import available_cores

    threads = max(1, available_cores() // workers)
    print(f"{phase}: starting {workers} workers ({threads} threads each)")
    procs = []
    for i in range(workers):
        # The storage the parent resolved, in the environment rather than on the command
        # line, where `ps` would show a password to every user of the machine.
        env = dict(os.environ, ABLATE_WORKER=str(i), ABLATE_THREADS=str(threads), ABLATE_STORAGE=paths.storage)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i]
        cmd = [sys.executable, "-m", "ablate", "run", *([str(args.study)] if args.study else []), "--phase", phase,
               "--quiet", "--workers", str(workers)]
        if args.max_trials is not None:
            cmd += ["--max-trials", str(args.max_trials)]
        procs.append(subprocess.Popen(cmd, env=env))
    codes = _wait_all(procs)
    if any(codes):
        raise WorkersFailed(f"{sum(c != 0 for c in codes)} of {workers} {phase} workers failed "
                            f"(exit codes {codes}); run the same command again to continue")
    total = phase_trials(cfg, "search") if phase == "search" else planned_repeats(cfg, paths)
    print(f"{phase}: done ({total} trials)")


def _wait_all(procs: list[subprocess.Popen]) -> list[int]:
    try:
        return [p.wait() for p in procs]
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reaches the workers too; each marks its trial failed. Only
        # a worker still running after a grace period is told again.
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGINT)
                p.wait()
        raise


def _write_report(cfg, paths) -> Path:
    """The report of a study's repeats, from its storage, under ``reports/<name>``."""
    from ablate.report import write_report_dir
    from ablate.study import analysis_settings, collect_results, note_on_dashboard

    data = collect_results(cfg, paths)
    if data.results.empty:
        raise AblateError(f"study {cfg.name!r}: no completed repeat trials yet; run: ablate run {paths.study_file} --phase repeats")
    report = write_report_dir(data.results, paths.report_dir, analysis_settings(cfg), provenance=data.provenance,
                              curves=data.curves, similarity=data.similarity, missing=[str(c) for c in data.missing],
                              tuning=data.tuning, predictions=data.predictions)
    note_on_dashboard(data.study, report)
    print(f"report: {report}")
    return report


_RESULTS_ONLY = ("contrast", "rope", "alpha", "smallest_effect", "still_rising", "title", "note", "out", "predictions")


def cmd_report(args: argparse.Namespace) -> int:
    if args.results is not None:
        if args.study is not None:
            raise ConfigError("give either a study file or --results, not both")
        return _report_from_results(args)
    if args.study is None:
        raise ConfigError("ablate report needs a study file or --results results.csv")
    given = [name for name in _RESULTS_ONLY if getattr(args, name) is not None]
    if given:
        raise ConfigError(f"--{given[0].replace('_', '-')} applies to --results only; a study's report uses its study file")
    from ablate.study import load_study_file

    cfg, paths = load_study_file(args.study, storage=_storage_override(args))
    if cfg.repeats is None:
        raise ConfigError(f"{args.study}: the study file has no 'repeats' section, so there is nothing to report")
    _write_report(cfg, paths)
    return 0


def _report_from_results(args: argparse.Namespace) -> int:
    """``ablate report --results X``: the settings saved beside X, overridden by the flags."""
    from ablate.analysis import AnalysisSettings
    from ablate.report import ANALYSIS_FILE, PREDICTIONS_FILE, TUNING_FILE, read_tuning, write_report_dir
    from ablate.stats import load_predictions, load_results

    results = load_results(args.results)
    folder = args.results.parent
    settings = AnalysisSettings.read(folder / ANALYSIS_FILE) if (folder / ANALYSIS_FILE).is_file() else AnalysisSettings()
    tuning = read_tuning(folder / TUNING_FILE) if (folder / TUNING_FILE).is_file() else None
    beside = folder / PREDICTIONS_FILE
    predictions_file = args.predictions or (beside if beside.is_file() else None)
    predictions = load_predictions(predictions_file, results) if predictions_file is not None else None
    changes: dict = {}
    if args.contrast is not None:
        changes["contrasts"] = [tuple(pair) for pair in args.contrast]
    for flag in ("rope", "alpha", "smallest_effect", "still_rising"):
        if getattr(args, flag) is not None:
            changes[flag] = _number(getattr(args, flag), f"--{flag.replace('_', '-')}")
    for flag in ("title", "note"):
        if getattr(args, flag) is not None:
            changes[flag] = getattr(args, flag)
    if settings.title is None and "title" not in changes:
        changes["title"] = f"ablation report: {args.results.name}"
    settings = settings.with_changes(**changes)
    out = args.out or Path("reports") / args.results.stem
    report = write_report_dir(results, out, settings, provenance={"results file": _shown_path(args.results)},
                              tuning=tuning, predictions=predictions)
    print(f"report: {report}")
    return 0


def _number(text: str | None, option: str, *, positive: bool = False) -> float | None:
    """A finite number from the command line, None when the option is not given; ``positive``:
    a number of points > 0. argparse's own error would print the usage too, and a user's
    mistake is one line.
    """
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        if not positive:
            raise ConfigError(f"{option}: expected a number, got {text!r}") from None
        value = float("nan")
    if positive and not 0 < value < math.inf:
        raise ConfigError(f"{option}: expected a positive number of points (got {text!r})")
    if not math.isfinite(value):
        raise ConfigError(f"{option}: expected a finite number, got {text!r}")
    return value


def _shown_path(path: Path) -> str:
    """The path as given when relative; an absolute one relative to this folder, else its name alone
    (a committed report names no machine's folders)."""
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.name


def cmd_plan(args: argparse.Namespace) -> int:
    import json

    from ablate.study import load_study_file, plan_study

    sd, effect = _number(args.sd, "--sd", positive=True), _number(args.effect, "--effect", positive=True)
    # a plan needs no data set or backbone: the study file alone, checked as far as it goes
    cfg, paths = load_study_file(args.study, storage=_storage_override(args), check=False)
    plan = plan_study(cfg, paths, sd, effect, where=str(args.study))
    if args.json:
        print(json.dumps(plan, indent=2))
    else:
        print_plan(plan)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import run_server

    from ablate.study import load_study_file, open_storage, redact

    if not _is_loopback(args.host) and not args.allow_remote:
        raise ConfigError(
            f"--host {args.host}: not a loopback address, and anyone who reaches optuna-dashboard can "
            f"change the study (notes, trial states, deleting studies); use an SSH tunnel "
            f"(ssh -L {args.port}:127.0.0.1:{args.port} THIS-HOST) or add --allow-remote"
        )
    cfg, paths = load_study_file(args.study, storage=_storage_override(args))
    storage = open_storage(paths.storage)
    paths.artifacts.mkdir(parents=True, exist_ok=True)
    if not _is_loopback(args.host):
        print(f"ablate: warning: optuna-dashboard on {args.host} can be reached from other machines, and "
              f"whoever reaches it can change the study (notes, trial states, deleting studies)", file=sys.stderr)
    print(f"optuna-dashboard on http://{args.host}:{args.port} for {redact(paths.storage)} (Ctrl-C stops it)")
    run_server(storage, host=args.host, port=args.port, artifact_store=FileSystemArtifactStore(paths.artifacts))
    return 0


def _is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is this machine's loopback (127.0.0.0/8, ::1)."""
    import ipaddress
    import socket

    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def cmd_bench(args: argparse.Namespace) -> int:
    from ablate.bench import main as bench_main

    return bench_main(args)


if __name__ == "__main__":
    sys.exit(main())
