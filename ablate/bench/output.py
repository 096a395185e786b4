"""What ``ablate bench`` prints: one JSON object, or a rich table with the targets and verdicts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ablate.bench.options import MODELS, OPTUNA_EPOCHS, TARGETS
from ablate.bench.results import BenchResult, CompiledFused, LoopRates

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["bench_json", "bench_table", "pruning_table"]


def _passes(name: str, value: float) -> bool:
    op, bound = TARGETS[name]
    return value >= bound if op == ">=" else value <= bound


def bench_json(result: BenchResult) -> dict[str, Any]:
    """Every figure, the options that produced them and the versions, as one JSON-ready dict."""
    opts = result.options
    summary = result.summary()
    judged = {**summary, "data_wait_fraction": result.data_wait_fraction}
    out: dict[str, Any] = {
        **judged,
        **result.environment,
        "backbone": opts.backbone,
        "image_size": opts.image_size,
        "batch_size": opts.batch_size,
        "timed_steps": opts.steps,
        "block_steps": opts.block_steps,
        "warmup_steps": opts.warmup,
        "images_per_second": {k: {"ours": r.ours, "bare": r.bare} for k, r in result.rates.items()},
        "ours_over_bare": {k: r.ours_over_bare for k, r in result.rates.items()},
        "data_images_per_second": result.data_images_per_second,
        "data_ms_per_step": 1000 * opts.batch_size / result.data_images_per_second,
        "step_ms": {k: 1000 * opts.batch_size / r.ours for k, r in result.rates.items()},
        "targets": {k: {"target": f"{op} {bound}", "value": judged[k], "pass": _passes(k, judged[k])}
                    for k, (op, bound) in TARGETS.items() if k in judged},
        "models": list(opts.models),
        **_fused_json(result),
        **_precision_json(result),
        "compile": opts.compile,
        "compiled": None,
        "optuna_seconds_per_trial": None,
        "optuna_overhead": None,
    }
    if result.compiled is not None:
        out["compiled"] = {
            "images_per_second": {k: {"ours": r.ours, "bare": r.bare} for k, r in result.compiled.items()},
            "ours_over_bare": {k: r.ours_over_bare for k, r in result.compiled.items()},
            **result.summary(result.compiled),
        }
    if result.optuna:
        first = result.optuna[0]
        out["optuna_seconds_per_trial"] = first.seconds_per_trial
        out["optuna_overhead"] = {
            "storage": "sqlite", "sampler": "TPESampler", "pruner": "MedianPruner", "params": 4,
            "epochs": OPTUNA_EPOCHS, "user_attrs": first.user_attrs_set, "timed_trials": opts.optuna_trials,
            "seconds_per_trial": {str(c.trials_before): c.seconds_per_trial for c in result.optuna},
            "parts": {str(c.trials_before): {"ask": c.ask, "report": c.report, "user_attrs": c.user_attrs,
                                             "tell": c.tell} for c in result.optuna},
        }
    return out


def _precision_json(result: BenchResult) -> dict[str, Any]:
    """``--compare-precision``: the single head's ablate loop at fp32 and at bf16, same rounds."""
    if result.other_precision is None or "single" not in result.rates:
        return {"precision_compare": None}
    rates = {result.precision: result.rates["single"].ours, result.other_precision[0]: result.other_precision[1]}
    return {"precision_compare": {"images_per_second": rates, "bf16_over_fp32": rates["bf16"] / rates["fp32"]}}


def _fused_json(result: BenchResult) -> dict[str, Any]:
    """The fused figures (None without ``--fuse``). ``fused_step_ms`` is one fused step, which
    advances every seed by one step: each seed's step time when fused."""
    fused, b = result.fused, result.options.batch_size
    if fused is None:
        return {"fuse": None, "fused_images_per_second": None, "fused_over_single": None,
                "fused_step_ms": None, "fused_ms_per_seed_step": None, "single_step_ms": None, "fused_compiled": None}
    single = result.rates[fused.model].ours
    return {
        "fuse": fused.k,
        "fused_model": fused.model,
        "fused_images_per_second": fused.images_per_second,
        "fused_over_single": result.fused_over_single,
        "fused_step_ms": 1000 * fused.k * b / fused.images_per_second,
        "fused_ms_per_seed_step": 1000 * b / fused.images_per_second,
        "single_step_ms": 1000 * b / single,
        "fused_compiled": {mode: _compiled_json(c, single, fused.images_per_second)
                           for mode, c in fused.compiled.items()} or None,
    }


def _compiled_json(c: CompiledFused, single: float, eager: float) -> dict[str, Any]:
    """One compile mode of the fused step; ``over_eager`` against the eager step of its own rounds."""
    if c.error is not None:
        return {"error": c.error}
    return {"images_per_second": c.images_per_second, "over_single": c.images_per_second / single,
            "over_eager": c.images_per_second / (c.eager_images_per_second or eager),
            "eager_images_per_second": c.eager_images_per_second, "compile_seconds": c.compile_seconds,
            "cudagraph_skips": c.cudagraph_skips, "graph_replays": c.graph_replays,
            "graphs_replayed": None if c.graph_replays is None else c.graph_replays > 0}


def bench_table(result: BenchResult) -> Table:
    """The figures as one rich table, with the targets and whether each is met."""
    from rich.table import Table

    opts, env = result.options, result.environment
    table = Table(title=f"ablate bench: {opts.backbone}, {opts.image_size} px, batch {opts.batch_size}, "
                        f"{env['device_name']} ({env['device']}, {env['threads']} threads)",
                  caption=f"dual: DueHeadNet; medians over {opts.steps // opts.block_steps} alternating blocks of {opts.block_steps} "
                          f"steps after {opts.warmup} warm-up steps; {result.precision}; torch {env['torch']}, timm {env['timm']}, "
                          f"optuna {env['optuna']}; ablate {env['git_commit'][:12]}")
    for col in ("figure", "value", "target", ""):
        table.add_column(col, justify="left" if col == "figure" else "right")

    def judged(label: str, name: str, value: float, text: str | None = None) -> None:
        op, bound = TARGETS[name]
        verdict = "[green]pass[/]" if _passes(name, value) else "[red]fail[/]"
        table.add_row(label, text or f"{value:.4f}", f"{op.replace('>=', '≥').replace('<=', '≤')} {bound:g}", verdict)

    def loops(rates: dict[str, LoopRates], prefix: str = "") -> None:
        for name, r in rates.items():
            label = prefix + MODELS[name][0]
            table.add_row(f"{label}: ablate loop", f"{r.ours:,.1f} img/s")
            table.add_row(f"{label}: bare loop", f"{r.bare:,.1f} img/s")
            if name == "single" and not prefix:
                judged(f"{label}: ablate / bare", "loop_over_bare", r.ours_over_bare)
            else:
                table.add_row(f"{label}: ablate / bare", f"{r.ours_over_bare:.4f}")
        table.add_section()

    loops(result.rates)
    summary = result.summary()
    for name, label in (("dual_frozen", "model1 frozen"), ("dual_trained", "both trained")):
        if f"{name}_over_single" in summary:
            judged(f"step time, {label} / single", f"{name}_over_single", summary[f"{name}_over_single"])
    table.add_row("producing a batch: cut, augment, normalise", f"{1000 * opts.batch_size / result.data_images_per_second:.2f} ms")
    if "single" in result.rates:
        judged("waiting for data: share of a step", "data_wait_fraction", result.data_wait_fraction)
    if result.fused is not None:
        table.add_section()
        fused, label = _fused_json(result), MODELS[result.fused.model][0]
        table.add_row(f"{fused['fuse']} seeds fused, {label}: ablate loop", f"{fused['fused_images_per_second']:,.1f} img/s")
        table.add_row("  fused / one seed alone (aggregate images/s)", f"{fused['fused_over_single']:.4f}")
        table.add_row("  step time: fused (all seeds) / one seed alone",
                      f"{fused['fused_step_ms']:.1f} / {fused['single_step_ms']:.1f} ms")
        for mode, c in (fused["fused_compiled"] or {}).items():
            if "error" in c:
                table.add_row(f"  compiled ({mode})", f"[red]failed[/]: {c['error']}")
                continue
            graphs = "" if c["graphs_replayed"] is None else f", CUDA graphs {'replayed' if c['graphs_replayed'] else 'NOT replayed'}"
            table.add_row(f"  compiled ({mode}): fused / one seed alone",
                          f"{c['over_single']:.4f} (compile {c['compile_seconds']:.0f} s{graphs})")
    compare = _precision_json(result)["precision_compare"]
    if compare is not None:
        table.add_section()
        for name, rate in compare["images_per_second"].items():
            table.add_row(f"single-head ablate loop at {name}", f"{rate:,.1f} img/s")
        table.add_row("  bf16 / fp32 (same rounds)", f"{compare['bf16_over_fp32']:.4f}")
    if result.compiled is not None:
        table.add_section()
        loops(result.compiled, "compiled ")
        for name, value in result.summary(result.compiled).items():
            if name != "loop_over_bare":
                table.add_row(f"compiled step time, {name.removesuffix('_over_single').replace('_', ' ')} / single", f"{value:.4f}")
    if result.optuna:
        table.add_section()
        for c in result.optuna:
            table.add_row(f"Optuna per trial, in a study of {c.trials_before} trials", f"{1000 * c.seconds_per_trial:.0f} ms")
            table.add_row(f"  ask + {OPTUNA_EPOCHS} reports + attrs + tell",
                          f"{1000 * c.ask:.0f}+{1000 * c.report:.0f}+{1000 * c.user_attrs:.0f}+{1000 * c.tell:.0f}")
    return table


def pruning_table(study: str, result: dict[str, Any]) -> Table:
    """``--pruning``'s comparison (:func:`ablate.bench.pruning.pruning_pays`) as a rich table."""
    from rich.table import Table

    table = Table(title=f"pruning on {study}: {result['n_trials']} trials of {result['epochs_per_trial']} epochs")
    for col in ("pruner", "finished", "pruned", "epochs trained", "best val acc", "minutes"):
        table.add_column(col)
    for label in (k for k in result if isinstance(result[k], dict)):
        r = result[label]
        table.add_row(label, str(r["finished"]), str(r["pruned"]), str(r["epochs"]), f"{r['best_val_accuracy']:.4f}", f"{r['minutes']:.1f}")
    return table
