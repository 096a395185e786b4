"""Helpers of scripts/gpu-check.sh (not part of the package). Each prints one JSON object.

    tiny-study STUDY OUT     the end-to-end study shrunk for the CPU (GPU_CHECK_TINY=1)
    trials STUDY             every trial of the search and the repeats completed, with its attributes,
                             and the report was written (exit 1 and the problems otherwise)
    fused K [--tiny]         train_fused of K seeds on the device against the K seeds one by one
    peak [--tiny]            measured bf16 matmul peak, and training FLOPs per image of a backbone
    workers K A.json ...     aggregate images/s of concurrent bench workers
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# The attributes every completed trial carries (ablate.study.trial: start_trial and record_result).
TRIAL_ATTRS = ("config", "config_hash", "seed", "arm_kind", "versions", "val_accuracy", "test_accuracy",
               "best_epoch", "curves", "n_params", "n_trainable", "wall_time", "device", "images_per_second")


def tiny_study(study: Path, out: Path) -> dict:
    import yaml

    doc = yaml.safe_load(study.read_text())
    doc["dataset"].update(image_size=16, subset=150)
    doc["train"].update(epochs=1, batch_size=16, device="cpu")
    doc["search"]["n_trials"] = 2
    doc["repeats"]["seeds"] = 2
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return {"study": str(out)}


def trials(study: Path) -> dict:
    import optuna

    from ablate.config import load_study
    from ablate.study import fuse_count, repeat_cells, resolve_paths, search_names

    cfg = load_study(study)
    paths = resolve_paths(cfg, study)
    want_cuda = cfg.train.device.startswith("cuda") or (cfg.train.device == "auto" and _cuda())
    problems, counts = [], {}
    searches = [(cfg.name if arm is None else f"{cfg.name}:search:{arm}", cfg.search.n_trials) for arm in search_names(cfg)]
    for name, expected in (*searches, (f"{cfg.name}:repeats", len(repeat_cells(cfg)))):
        found = optuna.load_study(study_name=name, storage=paths.storage).get_trials(deepcopy=False)
        states = [t.state.name for t in found]
        counts[name] = {s: states.count(s) for s in sorted(set(states))}
        if states.count("COMPLETE") != expected or len(states) != expected:
            problems.append(f"{name}: expected {expected} COMPLETE trials, found {counts[name]}")
        for t in found:
            missing = [a for a in TRIAL_ATTRS if a not in t.user_attrs]
            if missing:
                problems.append(f"{name} trial {t.number}: no {', '.join(missing)}")
            fused = (t.user_attrs.get("extras") or {}).get("fused")
            if name.endswith(":repeats") and fuse_count(cfg) > 1 and t.user_attrs.get("arm_kind") != "ensemble" and not fused:
                problems.append(f"{name} trial {t.number}: not trained fused (repeats.fuse {fuse_count(cfg)})")
            ran_on = str(t.user_attrs.get("device", ""))
            if want_cuda and not ran_on.startswith("cuda"):
                problems.append(f"{name} trial {t.number}: ran on {ran_on!r}, not CUDA")
    reports = sorted(str(p) for p in paths.report_dir.glob("*.md")) if paths.report_dir.is_dir() else []
    if not reports:
        problems.append(f"no report under {paths.report_dir}")
    return {"ok": not problems, "problems": problems, "trials": counts, "reports": reports}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def fused(k: int, tiny: bool) -> dict:
    """K seeds of single-head seresnet18 on digits: fused, then one by one, both timed end to end."""
    import torch

    from ablate.config import RunConfig, with_overrides
    from ablate.records import TrialResult
    from ablate.train import train_fused, train_run

    size, epochs, backbone = (16, 1, "test_resnet") if tiny else (32, 3, "seresnet18")
    base = RunConfig()
    cfg = with_overrides(base, {"dataset.image_size": size, "train.epochs": epochs, "model.kind": "single",
                                "model.backbone": backbone, "train.device": "auto"})
    cfgs = [with_overrides(cfg, {"train.seed": s}) for s in range(k)]
    t0 = time.perf_counter()
    outcomes = train_fused(cfgs)
    t1 = time.perf_counter()
    lone = [train_run(c) for c in cfgs]
    t2 = time.perf_counter()
    ok = all(isinstance(o, TrialResult) for o in outcomes)
    return {
        "ok": ok and len({o.curves[0].train_loss for o in outcomes}) == k,
        "k": k, "backbone": backbone, "image_size": size, "epochs": epochs,
        "device": outcomes[0].device if ok else None,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "fused_seconds": t1 - t0, "lone_seconds": t2 - t1, "lone_over_fused_seconds": (t2 - t1) / (t1 - t0),
        "fused_test_accuracy": [o.test_accuracy if isinstance(o, TrialResult) else repr(o) for o in outcomes],
        "lone_test_accuracy": [r.test_accuracy for r in lone],
        "fused_first_loss": [o.curves[0].train_loss if isinstance(o, TrialResult) else None for o in outcomes],
        "lone_first_loss": [r.curves[0].train_loss for r in lone],
        "extras": [o.extras if isinstance(o, TrialResult) else None for o in outcomes],
    }


def peak(tiny: bool, backbone: str, size: int) -> dict:
    """The bf16 matmul rate (TFLOP/s, median of 10) and a backbone's training FLOPs per image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ablate.models import create_backbone

    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = 512 if tiny or device == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    rates = []
    for _ in range(12):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(10):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        rates.append(10 * 2 * n**3 / (time.perf_counter() - t0) / 1e12)
    rates = sorted(rates[2:])
    model = create_backbone(backbone, 10).to(device)
    x = torch.randn(2, 3, size, size, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return {"device": device, "matmul_n": n, "bf16_peak_tflops": rates[len(rates) // 2], "backbone": backbone,
            "image_size": size, "train_gflop_per_image": counter.get_total_flops() / 2 / 1e9}


def workers(k: int, files: list[Path]) -> dict:
    """Sum of concurrent bench processes' single-seed rates (each timed while the others ran)."""
    rates = [json.loads(f.read_text())["images_per_second"]["single"]["ours"] for f in files]
    return {"workers": k, "images_per_second": rates, "aggregate_images_per_second": sum(rates)}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("tiny-study")
    s.add_argument("study", type=Path)
    s.add_argument("out", type=Path)
    s = sub.add_parser("trials")
    s.add_argument("study", type=Path)
    s = sub.add_parser("fused")
    s.add_argument("k", type=int)
    s.add_argument("--tiny", action="store_true")
    s = sub.add_parser("peak")
    s.add_argument("--tiny", action="store_true")
    s.add_argument("--backbone", default="seresnet50")
    s.add_argument("--image-size", type=int, default=224)
    s = sub.add_parser("workers")
    s.add_argument("k", type=int)
    s.add_argument("files", type=Path, nargs="+")
    a = p.parse_args(argv)
    if a.cmd == "tiny-study":
        out = tiny_study(a.study, a.out)
    elif a.cmd == "trials":
        out = trials(a.study)
    elif a.cmd == "fused":
        out = fused(a.k, a.tiny)
    elif a.cmd == "peak":
        out = peak(a.tiny, a.backbone, a.image_size)
    else:
        out = workers(a.k, a.files)
    print(json.dumps(out, indent=2))
    return 0 if out.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
