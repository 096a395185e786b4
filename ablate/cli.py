"""``ablate``: the command line. Wires the layers together; owns all printing and exit codes.

A user's mistake (an ``AblateError``) is one line on stderr and exit code 2; a bug keeps its
traceback. Nothing is created before the whole study file has been checked.
"""

from __future__ import annotations

import argparse
import math
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
            display.phase("search", cfg.search.n_trials * len(st.search_names(cfg)))
            st.run_searches(cfg, paths, display, max_trials=args.max_trials)
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
    from ablate.study import search_names
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
        total = cfg.search.n_trials * len(search_names(cfg)) if phase == "search" else _planned_repeats(cfg, paths)
        print(f"{phase}: done ({total} trials)")
    if "search" in phases and cfg.search.n_trials > 0:
        _print_best(cfg, paths)
    if "report" in phases and args.max_trials is None:
        _write_report(cfg, paths)
    return 0


def _planned_repeats(cfg, paths) -> int:
    """The repeat cells planned: all of a fixed design, the looks reached by a sequential one."""
    from ablate.study import open_storage, repeat_cells, repeats_progress, repeats_study

    if not cfg.repeats.sequential:  # every seed is planned at once: no need to read the storage
        return len(repeat_cells(cfg))
    trials = repeats_study(cfg, open_storage(paths.storage)).get_trials(deepcopy=False)
    return len(repeat_cells(cfg, repeats_progress(cfg, trials).seeds))


def _print_best(cfg, paths) -> None:
    from optuna.trial import TrialState
    from rich.console import Console
    from rich.table import Table

    from ablate.study import open_storage, redact, search_names, search_study

    console = Console()
    storage = open_storage(paths.storage)
    for arm in search_names(cfg):
        study = search_study(cfg, storage, arm)
        trials = study.get_trials(deepcopy=False)
        complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
        table = Table(title=f"best trials of {study.study_name}")
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
    from ablate.analysis import AnalysisSettings, SequentialPlan
    from ablate.report import write_report_dir
    from ablate.study import collect_results, sequential_settings

    data = collect_results(cfg, paths)
    if data["results"].empty:
        raise AblateError(f"study {cfg.name!r}: no completed repeat trials yet; run: ablate run {paths.study_file} --phase repeats")
    missing = [f"{c['arm']}/{c['dataset']}/seed {c['seed']}" for c in data["missing"]]
    repeats = cfg.repeats
    plan = sequential_settings(cfg)
    settings = AnalysisSettings(
        title=f"{cfg.name}: does FMCE help?", contrasts=repeats.contrasts, rope=repeats.rope, alpha=repeats.alpha,
        smallest_effect=repeats.smallest_effect, still_rising=repeats.still_rising,
        sequential=None if plan is None else SequentialPlan(**plan),
    )
    report = write_report_dir(
        data["results"], paths.report_dir, settings, provenance=data["provenance"], curves=data["curves"],
        similarity=data["similarity"], missing=missing, tuning=data["tuning"],
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


_RESULTS_ONLY = ("contrast", "rope", "alpha", "smallest_effect", "still_rising", "title", "note", "out")


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
    cfg, paths = _load(args.study, storage=_storage_override(args))
    if cfg.repeats is None:
        raise ConfigError(f"{args.study}: the study file has no 'repeats' section, so there is nothing to report")
    _write_report(cfg, paths)
    return 0


def _points(text: str | None, option: str) -> float | None:
    """A positive, finite number of points from the command line; argparse's own error would
    print the usage too, and a user's mistake is one line."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value < float("inf")):
        raise ConfigError(f"{option}: expected a positive number of points (got {text!r})")
    return value


def _earlier_sd(cfg, study_file: Path, storage: str | None = None) -> tuple[float, str] | None:
    """The sd of paired differences from the study's own earlier repeats, and where it came from.

    Pooled over every contrast x data set (``ablate.stats.pooled_difference_sd``: the
    within-contrast variances weighted by their degrees of freedom, so a large difference
    between two arms does not count as noise). None when the storage holds no two paired seeds.
    """
    from ablate.stats import pooled_difference_sd
    from ablate.study import earlier_results, resolve_paths

    results = earlier_results(cfg, resolve_paths(cfg, study_file, storage_override=storage))
    if results is None:
        return None
    sd, rows, pairs = pooled_difference_sd(results, cfg.repeats.contrasts)
    if rows == 0 or not sd > 0:
        return None
    return sd, (f"earlier repeats: pooled over {rows} contrast x data set row{'s' if rows != 1 else ''}, "
                f"{pairs} paired seeds")


def _default_rope(cfg, study_file: Path, storage: str | None = None) -> tuple[float, str]:
    """``repeats.rope``, else one test image of the earlier repeats (at least 0.1), else 0.1."""
    from ablate.stats import default_rope
    from ablate.study import earlier_results, resolve_paths

    if cfg.repeats.rope is not None:
        return float(cfg.repeats.rope), "repeats.rope"
    results = earlier_results(cfg, resolve_paths(cfg, study_file, storage_override=storage))
    n_test = results["n_test"].dropna() if results is not None else []
    if len(n_test):
        median = float(n_test.median())
        return default_rope(median), f"one test image of the earlier repeats ({median:g} test images), at least 0.1"
    return default_rope(None), "0.1, the smallest default ROPE (no repeats yet to count test images; set repeats.rope)"


def _plan(cfg, study_file: Path, sd_arg: float | None, effect_arg: float | None,
          storage: str | None = None) -> dict[str, Any]:
    from ablate.stats import default_contrasts, make_design, operating_characteristics

    rep = cfg.repeats
    contrasts = rep.contrasts or default_contrasts(list(rep.arms))
    datasets = rep.datasets or [cfg.dataset.name]
    sd, sd_source = sd_arg, "--sd"
    if sd is None:
        earlier = _earlier_sd(cfg, study_file, storage)
        if earlier is not None:
            sd, sd_source = earlier
    if sd is None:
        sd, sd_source = 1.0, "assumed: no --sd and no earlier repeats to read"
    rope, rope_source = _default_rope(cfg, study_file, storage)
    effect, effect_source = effect_arg, "--effect"
    if effect is None and getattr(rep, "smallest_effect", None) is not None:
        effect, effect_source = float(rep.smallest_effect), "repeats.smallest_effect"
    if effect is None:
        if rope <= 0:
            raise ConfigError(f"{study_file}: repeats.rope is 0, so there is no default effect; pass --effect POINTS")
        effect, effect_source = 3 * rope, "3 x repeats.rope" if rope_source == "repeats.rope" else "3 x rope"
    design = make_design(rep.looks, alpha=rep.alpha, comparisons=len(contrasts) * len(datasets),
                         spending=rep.spending, rope=rope)
    oc = operating_characteristics(design, sd=sd, effect=effect)
    finite = lambda x: x if x < float("inf") else None  # noqa: E731 - JSON has no inf
    return {
        "study": cfg.name,
        "looks": list(design.seeds),
        "spending": design.spending if design.sequential else "none (fixed design)",
        "alpha": design.alpha,
        "comparisons": design.comparisons,
        "contrasts": [f"{a} vs {b}" for a, b in contrasts],
        "datasets": list(datasets),
        "alpha_per_comparison": design.alpha_per_comparison,
        "rope": design.rope, "rope_source": rope_source,
        "sd": sd, "sd_source": sd_source,
        "effect": effect, "effect_source": effect_source,
        "boundaries": [
            {"n": look.n, "spent": look.spent, "z": finite(look.z), "t": finite(look.t), "nominal_p": look.nominal_p,
             "half_width": finite(look.t * sd / look.n**0.5)}
            for look in design.looks
        ],
        "false_positive_rate": oc.false_positive_rate,
        "familywise_false_positive_bound": oc.familywise_false_positive_bound,
        "false_equivalence_rate": oc.false_equivalence_rate,
        "power": oc.power,
        "expected_seeds": oc.expected_seeds,
        "expected_seeds_equal_arms": oc.expected_seeds_equal,
        "max_seeds": oc.max_seeds,
        "fixed_seeds_same_power": oc.fixed_seeds,
        "simulations": oc.simulations, "simulation_seed": oc.seed, "mc_se": oc.mc_se,
    }


def cmd_plan(args: argparse.Namespace) -> int:
    import json

    from ablate.config import load_study

    sd, effect = _points(args.sd, "--sd"), _points(args.effect, "--effect")
    cfg = load_study(args.study)
    if cfg.repeats is None:
        raise ConfigError(f"{args.study}: the study file has no 'repeats' section, so there is nothing to plan")
    plan = _plan(cfg, args.study, sd, effect, _storage_override(args))
    if args.json:
        print(json.dumps(plan, indent=2))
    else:
        _print_plan(plan)
    return 0


def _print_plan(plan: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    sd, rope, looks = plan["sd"], plan["rope"], plan["looks"]
    plural = lambda n, word: f"{n} {word}" + ("" if n == 1 else "s")  # noqa: E731
    if len(looks) > 1:
        title = f"{plan['study']}: looks at {', '.join(map(str, looks))} seeds, {plan['spending']} spending"
    else:
        title = f"{plan['study']}: fixed design, {looks[0]} seeds"
    table = Table(title=title, caption=f"min |diff|: the smallest mean difference that stops a contrast when its "
                                       f"paired sd is {sd:g} points")
    for col in ("look", "seeds", "alpha spent", "z", "|t| above", "nominal p", "min |diff|", "equiv."):
        table.add_column(col, justify="right")
    for k, b in enumerate(plan["boundaries"], start=1):
        t, half = b["t"], b["half_width"]
        table.add_row(
            str(k), str(b["n"]), f"{b['spent']:.3g}", "never" if b["z"] is None else f"{b['z']:.3f}",
            "never" if t is None else f"{t:.3f}", f"{b['nominal_p']:.3g}", "never" if half is None else f"{half:.2f}",
            "possible" if half is not None and half < rope else "no",
        )
    console.print(table)
    console.print(f"alpha {plan['alpha']:g} over {plural(plan['comparisons'], 'comparison')} "
                  f"({plural(len(plan['contrasts']), 'contrast')} x {plural(len(plan['datasets']), 'data set')}): "
                  f"{plan['alpha_per_comparison']:.4g} each (Bonferroni)")
    console.print(f"sd of paired differences: {sd:g} points ({plan['sd_source']}); "
                  f"effect: {plan['effect']:g} points ({plan['effect_source']}); "
                  f"rope: +/-{rope:g} points ({plan['rope_source']})")
    console.print(f"by simulation, per comparison ({plan['simulations']:,} studies per scenario, "
                  f"seed {plan['simulation_seed']}, MC error +/- {plan['mc_se']:.4f} at alpha):")
    fixed = plan["fixed_seeds_same_power"]
    for label, value in (
        ("false 'better', arms equal", f"{plan['false_positive_rate']:.4f} "
                                       f"(whole study: at most {plan['familywise_false_positive_bound']:.4f})"),
        (f"false 'equivalent', true diff = rope", f"{plan['false_equivalence_rate']:.4f}"),
        (f"power against {plan['effect']:g} points", f"{plan['power']:.3f}"),
        ("expected seeds with that effect", f"{plan['expected_seeds']:.1f} of at most {plan['max_seeds']}"),
        ("expected seeds with equal arms", f"{plan['expected_seeds_equal_arms']:.1f}"),
        ("fixed design with the same power" + (" (0.999)" if plan["power"] > 0.999 else ""),
         "more than 100,000 seeds" if fixed is None else f"{fixed} seeds"),
    ):
        console.print(f"  {label}: {value}")
    for k, b in enumerate(plan["boundaries"], start=1):
        if len(looks) > 1 and (b["t"] is None or b["t"] > 10):
            need = "can never stop" if b["t"] is None else f"needs |t| > {b['t']:.1f}"
            console.print(f"  look {k} ({b['n']} seeds) {need}: in practice no contrast stops there")
    last = plan["boundaries"][-1]
    if last["half_width"] is None or last["half_width"] >= rope:
        limit = rope * last["n"] ** 0.5 / last["t"] if last["t"] else 0.0
        console.print(f"  equivalence within +/-{rope:g} needs a paired sd below {limit:.3g} points by "
                      f"{last['n']} seeds: at sd {sd:g} no contrast can end 'equivalent'")

def _report_from_results(args: argparse.Namespace) -> int:
    """``ablate report --results X``: the settings saved beside X, overridden by the flags."""
    from ablate.analysis import AnalysisSettings
    from ablate.report import ANALYSIS_FILE, TUNING_FILE, read_tuning, write_report_dir
    from ablate.stats import load_results

    results = load_results(args.results)
    folder = args.results.parent
    settings = AnalysisSettings.read(folder / ANALYSIS_FILE) if (folder / ANALYSIS_FILE).is_file() else AnalysisSettings()
    tuning = read_tuning(folder / TUNING_FILE) if (folder / TUNING_FILE).is_file() else None
    changes: dict[str, Any] = {}
    if args.contrast is not None:
        changes["contrasts"] = [tuple(pair) for pair in args.contrast]
    for flag in ("rope", "alpha", "smallest_effect", "still_rising"):
        text = getattr(args, flag)
        if text is not None:
            changes[flag] = _number(f"--{flag.replace('_', '-')}", text)
    for flag in ("title", "note"):
        if getattr(args, flag) is not None:
            changes[flag] = getattr(args, flag)
    if settings.title is None and "title" not in changes:
        changes["title"] = f"ablation report: {args.results.name}"
    settings = settings.with_changes(**changes)
    out = args.out or Path("reports") / args.results.stem
    report = write_report_dir(results, out, settings, provenance={"results file": _shown_path(args.results)},
                              tuning=tuning)
    print(f"report: {report}")
    return 0


def _number(flag: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{flag}: expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{flag}: expected a finite number, got {text!r}")
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
