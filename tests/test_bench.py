"""ablate.bench: the figures it prints are complete and agree with each other. No timing thresholds:
speed is the benchmark's to print, never a test's to assert (STYLE.md, practice 10)."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace

import pytest

import ablate.bench.command
from ablate.bench import (
    TARGETS,
    BenchOptions,
    BenchResult,
    LoopRates,
    OptunaCost,
    add_arguments,
    bench_json,
    bench_table,
    main,
    options_from_args,
)
from tests.conftest import fails_in_one_line
from ablate.errors import ConfigError, ModelError

# timm's tiny test network: the whole real run below takes a few seconds on one CPU core.
TINY = ["--backbone", "test_resnet", "--image-size", "16", "--batch-size", "8", "--steps", "2", "--block-steps", "1",
        "--warmup", "1", "--optuna-trials", "2", "--optuna-sizes", "3", "--device", "cpu", "--json"]


def _parse(argv: list[str]) -> argparse.Namespace:
    return add_arguments(argparse.ArgumentParser()).parse_args(argv)


def _positive_numbers(tree, where: str = "") -> list[tuple[str, float]]:
    if isinstance(tree, dict):
        return [item for k, v in tree.items() for item in _positive_numbers(v, f"{where}.{k}")]
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return [(where, tree)]
    return []


def test_main_prints_every_figure_and_the_ratios_agree(capsys):
    assert main(_parse(TINY)) == 0
    out = json.loads(capsys.readouterr().out)

    for key in ("loop_over_bare", "dual_frozen_over_single", "dual_trained_over_single", "data_wait_fraction",
                "device", "images_per_second", "torch", "timm", "optuna", "threads", "backbone", "image_size",
                "batch_size", "optuna_seconds_per_trial", "optuna_overhead", "targets", "git_commit"):
        assert key in out, key
    assert (out["device"], out["backbone"], out["image_size"], out["batch_size"]) == ("cpu", "test_resnet", 16, 8)
    assert (out["timed_steps"], out["block_steps"], out["warmup_steps"]) == (2, 1, 1)
    assert out["threads"] >= 1 and out["compiled"] is None
    for where, value in _positive_numbers(out):
        assert math.isfinite(value) and value > 0, (where, value)

    ips = out["images_per_second"]
    assert set(ips) == {"single", "dual_frozen", "dual_trained"}
    single = ips["single"]["ours"]
    # Every ratio is the quotient of the printed throughputs.
    assert out["loop_over_bare"] == pytest.approx(single / ips["single"]["bare"], rel=1e-12)
    assert out["dual_frozen_over_single"] == pytest.approx(single / ips["dual_frozen"]["ours"], rel=1e-12)
    assert out["dual_trained_over_single"] == pytest.approx(single / ips["dual_trained"]["ours"], rel=1e-12)
    assert out["data_wait_fraction"] == pytest.approx(single / out["data_images_per_second"], rel=1e-12)
    for name, r in ips.items():
        assert out["ours_over_bare"][name] == pytest.approx(r["ours"] / r["bare"], rel=1e-12)
        assert out["step_ms"][name] == pytest.approx(1000 * 8 / r["ours"], rel=1e-12)
    for name, t in out["targets"].items():
        assert t["value"] == out[name]
        assert t["pass"] == (out[name] >= TARGETS[name][1] if TARGETS[name][0] == ">=" else out[name] <= TARGETS[name][1])

    optuna = out["optuna_overhead"]
    assert optuna["timed_trials"] == 2 and optuna["params"] == 4
    assert out["optuna_seconds_per_trial"] == optuna["seconds_per_trial"]["3"]
    # A trial's total dominates each of its parts, trial by trial, so its median does too.
    assert all(p <= optuna["seconds_per_trial"]["3"] for p in optuna["parts"]["3"].values())


def _known_result(**rates: LoopRates) -> BenchResult:
    opts = BenchOptions(steps=8, block_steps=2, warmup=2)
    env = {"device": "cpu", "device_name": "test CPU", "threads": 2, "torch": "t", "timm": "m", "optuna": "o",
           "git_commit": "abc"}
    return BenchResult(opts, env, rates, data_images_per_second=4000.0,
                       optuna=(OptunaCost(100, 0.5, 0.1, 0.3, 0.05, 0.05),))


def test_ratios_and_verdicts_from_known_rates():
    result = _known_result(single=LoopRates(ours=180.0, bare=200.0), dual_frozen=LoopRates(ours=150.0, bare=160.0),
                           dual_trained=LoopRates(ours=90.0, bare=100.0))
    out = bench_json(result)
    assert out["loop_over_bare"] == pytest.approx(0.9)  # below 0.95: fails
    assert out["dual_frozen_over_single"] == pytest.approx(1.2)
    assert out["dual_trained_over_single"] == pytest.approx(2.0)
    assert out["data_wait_fraction"] == pytest.approx(180 / 4000)
    assert out["data_ms_per_step"] == pytest.approx(1000 * 64 / 4000)
    assert {k: t["pass"] for k, t in out["targets"].items()} == {
        "loop_over_bare": False, "data_wait_fraction": True, "dual_frozen_over_single": True,
        "dual_trained_over_single": True}
    assert out["optuna_seconds_per_trial"] == 0.5 and out["optuna_overhead"]["parts"]["100"]["report"] == 0.3
    json.dumps(out)  # serialisable as it stands

    from rich.console import Console

    console = Console(width=200, record=True, color_system=None)
    console.print(bench_table(result))
    text = console.export_text()
    assert "180.0 img/s" in text and "200.0 img/s" in text and "0.900" in text and "1.200" in text
    assert text.count("fail") == 1 and text.count("pass") == 3
    assert "study of 100 trials" in text and "500 ms" in text and "100+300+50+50" in text
    assert "16.00 ms" in text  # a batch made in 64 / 4000 s


def test_flags_a_caller_lacks_take_their_defaults():
    opts = options_from_args(argparse.Namespace(json=True))
    assert opts == BenchOptions()
    parsed = options_from_args(_parse(TINY + ["--skip-optuna", "--compile", "--optuna-sizes", "100", "1000"]))
    assert (parsed.backbone, parsed.steps, parsed.block_steps, parsed.optuna_sizes) == ("test_resnet", 2, 1, (100, 1000))
    assert parsed.skip_optuna and parsed.compile


@pytest.mark.parametrize(("flag", "value"), [("--steps", "0"), ("--image-size", "4"), ("--batch-size", "1"),
                                             ("--optuna-trials", "0"), ("--optuna-sizes", "100 -1"), ("--fuse", "-1")])
def test_bad_counts_fail_naming_the_flag(flag, value):
    with pytest.raises(ConfigError, match=flag):
        options_from_args(_parse([flag, *value.split()]))


def test_unknown_backbone_fails_before_measuring(capsys):
    with pytest.raises(ModelError, match="seresnet19"):
        main(_parse(["--backbone", "seresnet19", "--device", "cpu"]))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fused_seeds_are_timed_against_one_seed_alone(capsys, precision):
    argv = TINY + ["--skip-optuna", "--models", "single", "--fuse", "3", "--precision", precision]
    assert main(_parse(argv)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["precision"] == precision and out["channels_last"] == (precision == "bf16")
    assert out["models"] == ["single"] and set(out["images_per_second"]) == {"single"}
    assert "dual_frozen_over_single" not in out and set(out["targets"]) == {"loop_over_bare", "data_wait_fraction"}
    single, fused = out["images_per_second"]["single"]["ours"], out["fused_images_per_second"]
    assert (out["fuse"], out["fused_model"]) == (3, "single")
    assert out["fused_over_single"] == pytest.approx(fused / single, rel=1e-12)
    assert out["fused_step_ms"] == pytest.approx(1000 * 3 * 8 / fused, rel=1e-12)  # one step of all 3 seeds
    assert out["fused_ms_per_seed_step"] == pytest.approx(out["fused_step_ms"] / 3, rel=1e-12)
    assert out["single_step_ms"] == pytest.approx(out["step_ms"]["single"], rel=1e-12)
    assert out["fused_compiled"] is None  # no --compile


def test_without_fuse_the_fused_keys_are_there_and_empty():
    result = _known_result(single=LoopRates(ours=180.0, bare=200.0), dual_frozen=LoopRates(ours=150.0, bare=160.0),
                           dual_trained=LoopRates(ours=90.0, bare=100.0))
    out = bench_json(result)
    assert out["fuse"] is None and out["fused_images_per_second"] is None and out["fused_over_single"] is None


def test_fused_figures_from_known_rates():
    from ablate.bench import CompiledFused, FusedRates

    result = _known_result(single=LoopRates(ours=200.0, bare=210.0))
    result = replace(result, fused=FusedRates(4, "single", 600.0, {
        "default": CompiledFused(800.0, 30.0, 0, None),
        "reduce-overhead": CompiledFused(1200.0, 45.0, 1, 0)}))
    out = bench_json(result)
    assert out["fused_over_single"] == pytest.approx(3.0)
    assert out["fused_step_ms"] == pytest.approx(1000 * 4 * 64 / 600) and out["single_step_ms"] == pytest.approx(320)
    ro = out["fused_compiled"]["reduce-overhead"]
    assert ro["over_single"] == pytest.approx(6.0) and ro["over_eager"] == pytest.approx(2.0)
    assert ro["graphs_replayed"] is False and out["fused_compiled"]["default"]["graphs_replayed"] is None

    from rich.console import Console

    console = Console(width=200, record=True, color_system=None)
    console.print(bench_table(result))
    text = console.export_text()
    assert "4 seeds fused" in text and "3.0000" in text and "CUDA graphs NOT replayed" in text


def test_compare_precision_times_the_other_precision_in_the_same_rounds(capsys):
    argv = TINY + ["--skip-optuna", "--models", "single", "--precision", "fp32", "--compare-precision"]
    assert main(_parse(argv)) == 0
    out = json.loads(capsys.readouterr().out)
    compare = out["precision_compare"]
    assert set(compare["images_per_second"]) == {"fp32", "bf16"}
    assert compare["images_per_second"]["fp32"] == out["images_per_second"]["single"]["ours"]
    rates = compare["images_per_second"]
    assert compare["bf16_over_fp32"] == pytest.approx(rates["bf16"] / rates["fp32"], rel=1e-12)


def test_without_compare_precision_the_key_is_empty():
    out = bench_json(_known_result(single=LoopRates(ours=180.0, bare=200.0)))
    assert out["precision_compare"] is None


def test_the_json_is_written_after_every_phase_and_a_failing_mode_costs_no_other_figure(tmp_path, monkeypatch):
    """Each compile mode of the fused step is its own phase: one that raises leaves its error in
    the figures; the file holds, after each phase, every figure so far."""
    import ablate.bench.measure
    from ablate.bench import CompiledFused

    def fake(opts, device, numerics, mode):
        if mode == "reduce-overhead":
            raise RuntimeError("graph capture failed\nsecond line")
        return CompiledFused(900.0, 12.0, 0, None, eager_images_per_second=450.0)

    monkeypatch.setattr(ablate.bench.measure, "measure_compiled_fused", fake)
    out = tmp_path / "bench.json"
    snapshots = []
    real_write = ablate.bench.command.write_json
    monkeypatch.setattr(ablate.bench.command, "write_json", lambda obj, path: (snapshots.append(obj), real_write(obj, path)))
    argv = TINY + ["--skip-optuna", "--models", "single", "--fuse", "2", "--compile", "--compile-modes", "default",
                   "reduce-overhead", "--json-out", str(out)]
    monkeypatch.setattr(ablate.bench.measure, "measure_loops", _quick_loops(ablate.bench.measure.measure_loops))
    assert main(_parse(argv)) == 1  # a mode failed
    assert [s["fused_compiled"] and sorted(s["fused_compiled"]) for s in snapshots] == [
        None, ["default"], ["default", "reduce-overhead"], ["default", "reduce-overhead"]]
    written = json.loads(out.read_text())
    assert written == snapshots[-1] and written["compiled"] is not None  # the compiled loops ran after the failure
    modes = written["fused_compiled"]
    assert modes["reduce-overhead"] == {"error": "RuntimeError: graph capture failed"}
    assert modes["default"]["over_eager"] == pytest.approx(2.0)  # against the eager step of its own rounds
    assert modes["default"]["graph_replays"] is None and modes["default"]["graphs_replayed"] is None  # no CUDA here


def _quick_loops(real):
    """measure_loops, with the compiled loops measured eagerly (compiling takes minutes on a CPU)."""
    def quick(opts, device, numerics, *, compiled):
        return real(opts, device, numerics, compiled=False)

    return quick


def test_skip_compiled_loops_compiles_the_fused_step_alone(capsys, monkeypatch):
    import ablate.bench.measure
    from ablate.bench import CompiledFused

    monkeypatch.setattr(ablate.bench.measure, "measure_compiled_fused",
                        lambda opts, device, numerics, mode: CompiledFused(900.0, 12.0, 0, None, 450.0))
    argv = TINY + ["--skip-optuna", "--models", "single", "--fuse", "2", "--compile", "--compile-modes", "default",
                   "--skip-compiled-loops"]
    assert main(_parse(argv)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["compiled"] is None and list(out["fused_compiled"]) == ["default"]


def _fails_in_one_line(capsys, argv: list[str], *needles: str) -> None:
    fails_in_one_line(capsys, ["bench", *argv], *needles)


def test_a_device_torch_does_not_know_is_one_line(capsys):
    _fails_in_one_line(capsys, ["--device", "gpu"], "'gpu'", "cuda:N")


def test_a_cuda_index_past_the_devices_is_one_line(capsys, monkeypatch):
    import torch

    _fails_in_one_line(capsys, ["--device", "cuda:3"], "'cuda:3'", "no CUDA device")  # none here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    _fails_in_one_line(capsys, ["--device", "cuda:3"], "'cuda:3'", "2 CUDA devices", "cuda:1")


def test_a_json_out_in_a_missing_folder_fails_before_measuring(capsys, tmp_path, monkeypatch):
    def measured(*args, **kwargs):
        raise AssertionError("measured before the folder was checked")

    monkeypatch.setattr("ablate.bench.measure.run_bench", measured)
    _fails_in_one_line(capsys, [*TINY, "--json-out", str(tmp_path / "missing" / "x.json")],
                       "--json-out", str(tmp_path / "missing"))
    assert not (tmp_path / "missing").exists()
