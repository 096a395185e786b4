"""``ablate``: the command line. Wires the layers together; owns all printing and exit codes.

A user's mistake (an ``AblateError``) is one line on stderr and exit code 2; a bug keeps its
traceback. Nothing is created before the whole study file has been checked.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from ablate.errors import AblateError, ConfigError

__all__ = ["main"]

PHASES = ("search", "repeats", "report")


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
    run.add_argument("--phase", choices=(*PHASES, "all"), default="all", help="run one phase only (default: all)")
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
    rep.add_argument("--results", type=Path, help="a results table (dataset,arm,seed,accuracy) from anywhere")
    rep.add_argument("--out", type=Path, help="output folder for --results")
    rep.add_argument("--rope", type=float, default=0.1, help="region of practical equivalence, in points (--results)")
    rep.add_argument("--alpha", type=float, default=0.05, help="significance level (--results)")
    _add_storage(rep)
    rep.set_defaults(func=cmd_report)

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


def _load(path: Path | None, workers: int = 1, storage: str | None = None):
    from ablate.config import load_study
    from ablate.study import check_study, resolve_paths

    if path is None:  # the embedded quickstart: its storage and runs go under this folder
        from importlib.resources import files

        path = Path(str(files("ablate") / "studies" / "quickstart.yaml"))
        cfg = load_study(path)
        paths = resolve_paths(cfg, path, base=Path.cwd(), storage_override=storage)
    else:
        cfg = load_study(path)
        paths = resolve_paths(cfg, path, storage_override=storage)
    check_study(cfg, paths, workers=workers)
    return cfg, paths


def cmd_check(args: argparse.Namespace) -> int:
    from ablate.study import redact

    cfg, paths = _load(args.study, storage=_storage_override(args))
    print(f"{args.study}: ok; study {cfg.name!r}, storage {redact(paths.storage)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else []
    workers = len(gpus) if gpus else args.workers
    if workers < 1:
        raise ConfigError(f"--workers: expected 1 or more (got {workers})")
    cfg, paths = _load(args.study, workers=workers, storage=_storage_override(args))
    phases = PHASES if args.phase == "all" else (args.phase,)
    if cfg.repeats is None:
        phases = tuple(p for p in phases if p == "search")
        if args.phase in ("repeats", "report"):
            raise ConfigError(f"{args.study}: --phase {args.phase}: the study file has no 'repeats' section")
    if os.environ.get("ABLATE_WORKER") is None and workers > 1:
        return _run_workers(args, cfg, paths, phases, workers, gpus)
    _set_threads(workers)
    from ablate import study as st

    display = _display(args.quiet)
    with display:
        if "search" in phases:
            display.phase("search", cfg.search.n_trials)
            st.run_search(cfg, paths, display, max_trials=args.max_trials)
        if "repeats" in phases:
            display.phase("repeats", len(st.repeat_cells(cfg)))
            st.run_repeats(cfg, paths, display, max_trials=args.max_trials)
    if os.environ.get("ABLATE_WORKER") is None:
        if "search" in phases and cfg.search.n_trials > 0:
            _print_best(cfg, paths)
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


def _run_workers(args, cfg, paths, phases, workers: int, gpus: list[str]) -> int:
    """N worker processes per phase; the report is written once all have finished."""
    from ablate.study import repeat_cells
    from ablate.train import available_cores

    threads = max(1, available_cores() // workers)
    for phase in (p for p in phases if p != "report"):
        print(f"{phase}: starting {workers} workers ({threads} threads each)")
        procs = []
        for i in range(workers):
            # The storage the parent resolved, in the environment rather than on the command
            # line, where `ps` would show a password to every user of the machine.
            env = dict(os.environ, ABLATE_WORKER=str(i), ABLATE_THREADS=str(threads), ABLATE_STORAGE=paths.storage)
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = gpus[i]
            cmd = [sys.executable, "-m", "ablate", "run", *([str(args.study)] if args.study else []), "--phase", phase, "--quiet",
                   "--workers", str(workers)]
            if args.max_trials is not None:
                cmd += ["--max-trials", str(args.max_trials)]
            procs.append(subprocess.Popen(cmd, env=env))
        try:
            codes = [p.wait() for p in procs]
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
        if any(codes):
            print(f"ablate: error: {sum(c != 0 for c in codes)} of {workers} {phase} workers failed "
                  f"(exit codes {codes}); run the same command again to continue", file=sys.stderr)
            return 1
        total = cfg.search.n_trials if phase == "search" else len(repeat_cells(cfg))
        print(f"{phase}: done ({total} trials)")
    if "search" in phases and cfg.search.n_trials > 0:
        _print_best(cfg, paths)
    if "report" in phases and args.max_trials is None:
        _write_report(cfg, paths)
    return 0


def _print_best(cfg, paths) -> None:
    from optuna.trial import TrialState
    from rich.console import Console
    from rich.table import Table

    from ablate.study import open_storage, redact, search_study

    study = search_study(cfg, open_storage(paths.storage))
    trials = study.get_trials(deepcopy=False)
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    console = Console()
    table = Table(title=f"best trials of {cfg.name}")
    for col in ("trial", "val acc", "test acc", "params", "head sim", "minutes"):
        table.add_column(col)
    for t in complete[:5]:
        sim = t.user_attrs.get("head_similarity")
        table.add_row(
            str(t.number), f"{t.value:.4f}", f"{t.user_attrs.get('test_accuracy', float('nan')):.4f}",
            ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in t.params.items()),
            "-" if sim is None else f"{sim:.3f}", f"{t.user_attrs.get('wall_time', 0) / 60:.1f}",
        )
    console.print(table)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    console.print(f"trials: {counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed "
                  f"(test accuracy is recorded, never used to choose)")
    console.print(f"dashboard: ablate dashboard {cfg_path_hint(paths)}   "
                  f"(or: optuna-dashboard {redact(paths.storage)} --artifact-dir {paths.artifacts})")


def cfg_path_hint(paths) -> str:
    try:
        return str(paths.study_file.relative_to(Path.cwd()))
    except ValueError:
        return str(paths.study_file)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _write_report(cfg, paths) -> Path:
    from ablate.publish import write_report_dir
    from ablate.study import collect_results

    data = collect_results(cfg, paths)
    if data["results"].empty:
        raise AblateError(f"study {cfg.name!r}: no completed repeat trials yet; run: ablate run {paths.study_file} --phase repeats")
    missing = [f"{c['arm']}/{c['dataset']}/seed {c['seed']}" for c in data["missing"]]
    report = write_report_dir(
        data["results"], paths.report_dir, title=f"{cfg.name}: does FMCE help?",
        contrasts=cfg.repeats.contrasts, rope=cfg.repeats.rope, alpha=cfg.repeats.alpha,
        provenance=data["provenance"], curves=data["curves"], similarity=data["similarity"], missing=missing,
    )
    _note_on_dashboard(data["study"], report)
    print(f"report: {report}")
    return report


def _note_on_dashboard(study, report: Path) -> None:
    """The report's summary as an optuna-dashboard note on the repeats study."""
    from optuna_dashboard import save_note

    text = report.read_text()
    summary = text.split("\n## ", 2)
    save_note(study, "\n## ".join(summary[:2]) + f"\n\nFull report: `{report}`\n")


def cmd_report(args: argparse.Namespace) -> int:
    if args.results is not None:
        from ablate.publish import write_report_dir
        from ablate.stats import load_results

        if args.study is not None:
            raise ConfigError("give either a study file or --results, not both")
        out = args.out or Path("reports") / args.results.stem
        results = load_results(args.results)
        report = write_report_dir(results, out, title=f"ablation report: {args.results.name}", rope=args.rope,
                                  alpha=args.alpha, provenance={"results file": str(args.results)})
        print(f"report: {report}")
        return 0
    if args.study is None:
        raise ConfigError("ablate report needs a study file or --results results.csv")
    cfg, paths = _load(args.study, storage=_storage_override(args))
    if cfg.repeats is None:
        raise ConfigError(f"{args.study}: the study file has no 'repeats' section, so there is nothing to report")
    _write_report(cfg, paths)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import run_server

    from ablate.study import open_storage, redact

    if not _is_loopback(args.host) and not args.allow_remote:
        raise ConfigError(
            f"--host {args.host}: not a loopback address, and anyone who reaches optuna-dashboard can "
            f"change the study (notes, trial states, deleting studies); use an SSH tunnel "
            f"(ssh -L {args.port}:127.0.0.1:{args.port} THIS-HOST) or add --allow-remote"
        )
    cfg, paths = _load(args.study, storage=_storage_override(args))
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


# ---------------------------------------------------------------------------------------------
# Progress


class _Display:
    """Trials done / pruned / failed, the current trial's epoch and accuracy, the best so far."""

    def __init__(self, live: bool):
        from rich.console import Console

        self.console = Console(stderr=False)
        self.live = live and self.console.is_terminal
        self.counts = {"complete": 0, "pruned": 0, "fail": 0}
        self.best: tuple[float, int] | None = None
        self.current = ""
        self.label, self.total = "", 0
        self._live = None

    def __enter__(self):
        if self.live:
            from rich.live import Live

            self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.__exit__(*exc)
        return False

    def _render(self):
        from rich.table import Table

        t = Table.grid(padding=(0, 2))
        done = sum(self.counts.values())
        best = f"{self.best[0]:.4f} (trial {self.best[1]})" if self.best else "-"
        t.add_row(f"[bold]{self.label}[/] {done}/{self.total}",
                  f"complete {self.counts['complete']}", f"pruned {self.counts['pruned']}",
                  f"failed {self.counts['fail']}", f"best val {best}")
        t.add_row(self.current or "waiting for a trial")
        return t

    def _refresh(self):
        if self._live is not None:
            self._live.update(self._render())

    def phase(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.counts = {"complete": 0, "pruned": 0, "fail": 0}
        self.best = None
        self._refresh()

    def trial_started(self, study: str, number: int, params: dict[str, Any]) -> None:
        shown = ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in params.items())
        self.current = f"trial {number}: {shown}"
        if not self.live:
            self.console.print(f"[{self.label}] trial {number} started: {shown}")
        self._refresh()

    def epoch_done(self, study: str, number: int, stats, epochs: int) -> None:
        self.current = (f"trial {number}: epoch {stats.epoch}/{epochs}  loss {stats.train_loss:.3f}  "
                        f"val acc {stats.val_accuracy:.4f}  ({stats.seconds:.1f} s)")
        self._refresh()

    def trial_finished(self, study: str, trial) -> None:
        state = trial.state.name.lower()
        self.counts[state if state in self.counts else "fail"] = self.counts.get(state, 0) + 1
        if trial.value is not None and (self.best is None or trial.value > self.best[0]):
            self.best = (trial.value, trial.number)
        line = f"[{self.label}] trial {trial.number} {state}"
        if trial.state.name == "COMPLETE":
            line += f": val {trial.value:.4f}, test {trial.user_attrs.get('test_accuracy', float('nan')):.4f}"
        reason = trial.user_attrs.get("fail_reason") or trial.user_attrs.get("pruned_reason")
        if reason:
            line += f" ({reason})"
        self.console.print(line)
        self.current = ""
        self._refresh()

    def message(self, text: str) -> None:
        self.console.print(text)


def _display(quiet: bool) -> _Display:
    return _Display(live=not quiet)


if __name__ == "__main__":
    sys.exit(main())
