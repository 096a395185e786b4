"""What the command line shows: live progress of a run, the best search trials, a plan's table.

Drawn with rich; the study layer hands over records and events and prints nothing itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["Display", "print_search_summaries", "print_plan", "short"]


def short(v: Any) -> str:
    """A parameter value as a table shows it: floats to 3 significant digits."""
    return f"{v:.3g}" if isinstance(v, float) else str(v)


class Display:
    """Trials done / pruned / failed, the current trial's epoch and accuracy, the best so far
    (``ablate.study.Events``). Live in a terminal; one line per trial otherwise."""

    def __init__(self, live: bool):
        from rich.console import Console

        self.console = Console(stderr=False)
        self.live = live and self.console.is_terminal
        self.counts = {"complete": 0, "pruned": 0, "fail": 0}
        self.best: tuple[float, int] | None = None
        self.current = ""
        self.label, self.total = "", 0
        self._live = None

    def __enter__(self) -> Display:
        if self.live:
            from rich.live import Live

            self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
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

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def phase(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.counts = {"complete": 0, "pruned": 0, "fail": 0}
        self.best = None
        self._refresh()

    def trial_started(self, study: str, number: int, params: dict[str, Any]) -> None:
        shown = ", ".join(f"{k.split('.')[-1]}={short(v)}" for k, v in params.items())
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


def print_search_summaries(summaries, cfg, paths) -> None:
    """Each search's best trials (``ablate.study.search_summaries``) and how to see the rest."""
    from rich.console import Console
    from rich.table import Table

    from ablate.study import redact

    console = Console()
    for s in summaries:
        table = Table(title=f"best trials of {s.study_name}")
        for col in ("trial", "val acc", "test acc", "params", "head sim", "minutes"):
            table.add_column(col)
        for t in s.best:
            sim = t.user_attrs.get("head_similarity")
            table.add_row(
                str(t.number), f"{t.value:.4f}", f"{t.user_attrs.get('test_accuracy', float('nan')):.4f}",
                ", ".join(f"{k.split('.')[-1]}={short(v)}" for k, v in t.params.items()),
                "-" if sim is None else f"{sim:.3f}", f"{t.user_attrs.get('wall_time', 0) / 60:.1f}",
            )
        console.print(table)
        console.print(f"trials: {s.complete} complete, {s.pruned} pruned, {s.failed} failed "
                      f"(test accuracy is recorded, never used to choose)")
    console.print(f"dashboard: ablate dashboard {_relative(paths.study_file)}   "
                  f"(or: optuna-dashboard {redact(paths.storage)} --artifact-dir {paths.artifacts})")


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def print_plan(plan: dict[str, Any]) -> None:
    """``ablate plan``'s table and sentences, from ``ablate.study.plan_study``'s dict."""
    from rich.console import Console

    console = Console()
    console.print(_plan_table(plan))
    sd, rope = plan["sd"], plan["rope"]
    console.print(f"alpha {plan['alpha']:g} over {_plural(plan['comparisons'], 'comparison')} "
                  f"({_plural(len(plan['contrasts']), 'contrast')} x {_plural(len(plan['datasets']), 'data set')}): "
                  f"{plan['alpha_per_comparison']:.4g} each (Bonferroni)")
    console.print(f"sd of paired differences: {sd:g} points ({plan['sd_source']}); "
                  f"effect: {plan['effect']:g} points ({plan['effect_source']}); "
                  f"rope: +/-{rope:g} points ({plan['rope_source']})")
    console.print(f"by simulation, per comparison ({plan['simulations']:,} studies per scenario, "
                  f"seed {plan['simulation_seed']}, MC error +/- {plan['mc_se']:.4f} at alpha):")
    for label, value in _plan_rates(plan):
        console.print(f"  {label}: {value}")
    for line in _plan_warnings(plan):
        console.print(line)
    console.print(_cost_line(plan["cost"]))


def _cost_line(cost: dict[str, Any]) -> str:
    """What the whole study costs, from ``ablate.study.cost.StudyCost``."""
    images = ("the training images are unknown (the data set is not here to count)" if cost["training_images"] is None
              else f"{cost['training_images']:,} training images ({cost['images_per_epoch']:,} an epoch)")
    return (f"the whole study, at most: {cost['runs']} training runs ({cost['search_runs']} search trials, "
            f"{cost['confirm_runs']} confirmation runs, {cost['stage1_runs']} stage-1 runs, {cost['repeat_runs']} "
            f"repeat runs), {cost['epochs']:,} epochs, {images}; pruning and an early stop only save")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _plan_table(plan: dict[str, Any]):
    from rich.table import Table

    sd, rope, looks = plan["sd"], plan["rope"], plan["looks"]
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
    return table


def _plan_rates(plan: dict[str, Any]) -> list[tuple[str, str]]:
    fixed = plan["fixed_seeds_same_power"]
    return [
        ("false 'better', arms equal", f"{plan['false_positive_rate']:.4f} "
                                       f"(whole study: at most {plan['familywise_false_positive_bound']:.4f})"),
        ("false 'equivalent', true diff = rope", f"{plan['false_equivalence_rate']:.4f}"),
        (f"power against {plan['effect']:g} points", f"{plan['power']:.3f}"),
        ("expected seeds with that effect", f"{plan['expected_seeds']:.1f} of at most {plan['max_seeds']}"),
        ("expected seeds with equal arms", f"{plan['expected_seeds_equal_arms']:.1f}"),
        ("fixed design with the same power" + (" (0.999)" if plan["power"] > 0.999 else ""),
         "more than 100,000 seeds" if fixed is None else f"{fixed} seeds"),
    ]


def _plan_warnings(plan: dict[str, Any]) -> list[str]:
    lines, looks, rope, sd = [], plan["looks"], plan["rope"], plan["sd"]
    for k, b in enumerate(plan["boundaries"], start=1):
        if len(looks) > 1 and (b["t"] is None or b["t"] > 10):
            need = "can never stop" if b["t"] is None else f"needs |t| > {b['t']:.1f}"
            lines.append(f"  look {k} ({b['n']} seeds) {need}: in practice no contrast stops there")
    last = plan["boundaries"][-1]
    if last["half_width"] is None or last["half_width"] >= rope:
        limit = rope * last["n"] ** 0.5 / last["t"] if last["t"] else 0.0
        lines.append(f"  equivalence within +/-{rope:g} needs a paired sd below {limit:.3g} points by "
                     f"{last['n']} seeds: at sd {sd:g} no contrast can end 'equivalent'")
    return lines
