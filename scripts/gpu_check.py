"""Helpers of scripts/gpu-check.sh and scripts/gpu-wheels.sh (not part of the package).

Each prints one JSON object (and, with ``--out FILE``, writes it there too).

    wheels                   (here) the packages the lent machine lacks that ablate needs, with the
                             versions installed here; and the spares (it has them, at versions unrecorded)
    install WHEELS SITE      (there) WHEELS/*.whl into SITE without network, then from WHEELS/spare
                             a wheel for each requirement of theirs the machine's packages do not meet
    imports                  every ablate module and every command's imports, the versions, the device
    gate [--tiny]            fused against lone (K = 2; fp32 and bf16; single and dual): losses,
                             gradients, buffers; what the fused convolutions run as; host syncs in
                             a training epoch (CUDA); the verdict: the precision later steps use
    study SRC DST --precision P [--tiny]   the end-to-end study, at that precision (shrunk: --tiny)
    trials STUDY             every trial of the search and the repeats completed, with its attributes,
                             and the report was written (exit 1 and the problems otherwise)
    peak [--tiny]            measured bf16 matmul peak, and training FLOPs per image of a backbone
    workers K DIR -- CMD...  K copies of a bench command at once (each --json-out DIR/workerI.json);
                             their aggregate images/s
    digest WORK              the key figures so far, a line each (the end of the log)
    summarize WORK OUT       OUT/summary.json (every figure so far) and OUT/rest.tar.gz (WORK's files)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

# The attributes every completed trial carries (ablate.study.trial: start_trial and record_result).
TRIAL_ATTRS = ("config", "config_hash", "seed", "arm_kind", "versions", "val_accuracy", "test_accuracy",
               "best_epoch", "curves", "n_params", "n_trainable", "wall_time", "device", "images_per_second")

# The Python packages the lent H200 machine has (its image 'cuda', as its documentation lists
# them, read there on 2026-11-17: /work/.library/device/KINDS.md). Its python3 is 3.12 with
# torch 2.11.0+cu130; it reaches no package registry.
MACHINE_HAS = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())
# Requirements of ablate the machine need not have: the PostgreSQL driver (a check uses SQLite).
NOT_NEEDED = frozenset({"psycopg", "psycopg-binary"})
# Spares: packages the machine has at a version its documentation does not record, required at
# a lower bound by what travels (pydantic-core needs typing-extensions >= 4.16). Each travels
# as a small pure-Python wheel in .whl/spare/ and is installed there only if the machine's own
# version falls short (subcommand spares).
SPARES = frozenset({"typing-extensions"})


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _requirements(dist) -> list:
    """A distribution's requirements that apply on the machine (Python 3.12, Linux), no extras."""
    return _applicable(dist.requires or [])


def _applicable(texts) -> list:
    """The requirements among ``texts`` that apply on the machine (Python 3.12, Linux), no extras."""
    from packaging.requirements import Requirement

    env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "platform_python_implementation": "CPython", "implementation_name": "cpython", "extra": ""}
    out = []
    for text in texts:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(env):
            out.append(req)
    return out


def wheels(pyproject: Path = Path(__file__).resolve().parent.parent / "pyproject.toml") -> dict:
    """What ablate needs that the machine lacks, with its requirements' closure, at the versions
    installed here (the lead's environment); and the spares.

    ablate's own requirements are read from ``pyproject.toml``'s ``[project].dependencies``, not
    from its installed metadata: an editable install's egg-info is not rewritten when a
    requirement is added (opda was missing from it, and the lent machine could not import
    ablate.stats). The closure beyond them is read from what is installed here.
    """
    import tomllib
    from importlib.metadata import distribution

    todo = _applicable(tomllib.loads(pyproject.read_text())["project"]["dependencies"])
    need: dict[str, str] = {}
    spare: dict[str, str] = {}
    while todo:
        req = todo.pop()
        name = _name(req.name)
        if name in NOT_NEEDED or name in need:
            continue
        if name in MACHINE_HAS:
            if name in SPARES and req.specifier:
                spare[name] = distribution(name).version
            continue
        dist = distribution(name)
        need[name] = dist.version
        todo += _requirements(dist)
    return {"wheels": [f"{n}=={v}" for n, v in sorted(need.items())],
            "spares": [f"{n}=={v}" for n, v in sorted(spare.items())]}


def install(wheels_dir: Path, site: Path) -> dict:
    """``wheels_dir``'s wheels into ``site`` (no index, no dependencies: the closure travels),
    then the spares that are needed (:func:`spares`)."""
    found = sorted(wheels_dir.glob("*.whl"))
    if not found:
        return {"ok": False, "error": f"no wheels in {wheels_dir}: run scripts/gpu-wheels.sh where pip works, "
                                      f"and carry .whl"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, found)], check=True)
    extra = spares(site, wheels_dir / "spare")
    return {**extra, "wheels": [w.name for w in found], "seconds": round(time.perf_counter() - t0, 1)}


def spares(site: Path, spare_dir: Path) -> dict:
    """Install into ``site`` a spare wheel for each requirement of what ``site`` holds that the
    machine's packages do not meet (a missing package, or a version below the bound)."""
    from importlib.metadata import PackageNotFoundError, distributions, version

    unmet = []
    for dist in distributions(path=[str(site)]):
        for req in _requirements(dist):
            try:
                have = version(req.name)
            except PackageNotFoundError:
                have = None
            if have is None or not req.specifier.contains(have, prereleases=True):
                unmet.append({"package": dist.metadata["Name"], "requires": str(req), "found": have,
                              "name": _name(req.name)})
    used = []
    for u in unmet:
        wheel = next((w for w in sorted(spare_dir.glob("*.whl")) if _name(w.name.split("-")[0]) == u["name"]), None)
        if wheel is not None and str(wheel) not in used:
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                            "--no-cache-dir", "--upgrade", "--target", str(site), str(wheel)], check=True)
            used.append(str(wheel))
            u["spare"] = wheel.name
    return {"unmet": unmet, "spares_installed": [Path(w).name for w in used],
            "ok": all("spare" in u for u in unmet)}


def imports() -> dict:
    """Import every ablate module and the optional ones its commands use; every command's --help."""
    import contextlib
    import importlib
    import io
    import pkgutil
    import platform

    import ablate

    failed, modules = {}, []
    for info in pkgutil.walk_packages(ablate.__path__, "ablate."):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
            modules.append(info.name)
        except Exception as exc:  # noqa: BLE001 - every failure is the finding
            failed[info.name] = f"{type(exc).__name__}: {exc}"
    for name in ("optuna_dashboard", "sqlalchemy", "alembic", "pydantic"):
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001
            failed[name] = f"{type(exc).__name__}: {exc}"
    from ablate.cli import main as cli

    for command in ("", "run", "check", "report", "plan", "dashboard", "bench"):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                cli([command, "--help"] if command else ["--help"])
            except SystemExit as exc:
                if exc.code not in (0, None):
                    failed[f"ablate {command} --help"] = f"exit {exc.code}"
    return {"ok": not failed, "failed": failed, "modules": len(modules), "python": platform.python_version(),
            **_environment()}


def _environment() -> dict:
    from importlib.metadata import version

    import torch

    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        env.update(device=torch.cuda.get_device_name(), capability=".".join(map(str, torch.cuda.get_device_capability())),
                   memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    for name in ("torchvision", "timm", "numpy", "optuna", "pydantic", "sqlalchemy", "typing-extensions"):
        try:
            env[name] = version(name)
        except Exception:  # noqa: BLE001
            env[name] = None
    return env


def gate(tiny: bool) -> dict:
    """Fused against lone, K = 2, in fp32 and bf16, for a single head and a DueHeadNet (model1
    frozen, FMCE on); the convolutions' numbers; host syncs in an epoch. The verdict is the
    precision the later steps use: bf16 where both models pass in bf16, else fp32 where they
    pass in fp32, else none (fusion is wrong here)."""
    from ablate.train import check_fused_step

    checks = {}
    for kind in ("single", "dual"):
        for precision in ("fp32", "bf16"):
            cfg = _gate_config(tiny, kind, precision)
            try:
                checks[f"{kind}/{precision}"] = check_fused_step(cfg).as_dict()
            except Exception as exc:  # noqa: BLE001 - an error is the finding
                checks[f"{kind}/{precision}"] = {"ok": False, "reason": f"{type(exc).__name__}: {exc}"}
    passed = {p: all(checks[f"{k}/{p}"]["ok"] for k in ("single", "dual")) for p in ("fp32", "bf16")}
    verdict = "bf16" if passed["bf16"] else "fp32" if passed["fp32"] else "none"
    return {"ok": verdict != "none", "verdict": verdict, "passed": passed, "checks": checks,
            "convolutions": {p: _conv_probe(_gate_config(tiny, "single", p)) for p in ("fp32", "bf16")},
            "host_syncs": _host_syncs(_gate_config(tiny, "single", "bf16" if verdict == "bf16" else "fp32"))}


def _gate_config(tiny: bool, kind: str, precision: str):
    from ablate.config import RunConfig, with_overrides

    return with_overrides(RunConfig(), {
        "model.kind": kind, "model.backbone": "test_resnet" if tiny else "seresnet18", "model.model1.init": "random",
        "model.model1.freeze": True, "model.constraint.on": kind == "dual", "dataset.image_size": 16 if tiny else 32,
        "train.precision": precision, "train.device": "auto", "train.batch_size": 8})


def _fused_and_lone(cfg):
    """A fused learner of 2 seeds of ``cfg`` and the lone learner of the first, on ``cfg``'s device."""
    from ablate.config import with_overrides
    from ablate.train import FusedLearner, LoneLearner, resolve_device, seeded_models

    device = resolve_device(cfg.train.device)
    cfgs = [with_overrides(cfg, {"train.seed": s}) for s in (0, 1)]
    fused = FusedLearner(cfgs, seeded_models(cfgs, 10, device), device)
    [model] = seeded_models(cfgs[:1], 10, device)
    return fused, LoneLearner(cfgs[0], model, device), device


def _conv_probe(cfg) -> dict:
    """What one training step's convolutions run as, fused and alone: dtype, groups, layout (counts)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class Probe(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen: dict[str, int] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            packet = func.overloadpacket
            if packet in (torch.ops.aten.convolution, torch.ops.aten.convolution_backward):
                forward = packet is torch.ops.aten.convolution
                x, groups = (args[0], args[8]) if forward else (args[1], args[9])
                layout = ("channels_last" if x.dim() == 4 and not x.is_contiguous()
                          and x.is_contiguous(memory_format=torch.channels_last) else
                          "contiguous" if x.is_contiguous() else "strided")
                key = f"{'forward' if forward else 'backward'} {str(x.dtype).removeprefix('torch.')} groups={groups} {layout}"
                self.seen[key] = self.seen.get(key, 0) + 1
            return func(*args, **(kwargs or {}))

    fused, lone, device = _fused_and_lone(cfg)
    out = {}
    for label, learner, shape in (("fused", fused, (2, 8)), ("lone", lone, (8,))):
        x = torch.randn(*shape, 3, cfg.dataset.image_size, cfg.dataset.image_size, device=device)
        y = torch.randint(0, 10, shape, device=device)
        with Probe() as probe:
            _steps(learner, [(x, y)])
        out[label] = probe.seen
    return out


def _steps(learner, batches) -> None:
    from ablate.train import EpochSums, train_epoch

    shape = (learner.k,) if learner.fused else ()
    train_epoch(learner.step_model, learner.opt, batches, learner.objective, learner.numerics,
                EpochSums.zeros(shape, learner.device))


def _host_syncs(cfg) -> dict | None:
    """Host syncs CUDA reports (``torch.cuda.set_sync_debug_mode``) in one whole training epoch
    after one of warm-up, lone and fused, through the learner's own ``train_epoch`` (the
    epoch's pinned, non-blocking copies of its order and augmentation included); None off CUDA."""
    from ablate.train import resolve_device

    if resolve_device(cfg.train.device).type != "cuda":
        return None
    return _syncs_in_an_epoch(cfg)


def _syncs_in_an_epoch(cfg) -> dict:
    import warnings

    import torch

    from ablate.data import DeviceImages

    fused, lone, device = _fused_and_lone(cfg)
    size = cfg.dataset.image_size
    images = torch.randint(0, 256, (6 * 8, 3, size, size), dtype=torch.uint8)
    data = DeviceImages(images, torch.randint(0, 10, (6 * 8,)), device)
    out = {}
    for label, learner in (("lone", lone), ("fused", fused)):
        splits = [data] * learner.k
        learner.train_epoch(splits)  # warm-up: cuDNN's kernel choice, the allocators' first blocks
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                sums = learner.train_epoch(splits)  # the epoch's draws, copies and steps
        finally:
            torch.cuda.set_sync_debug_mode(0)
        out[label] = {"steps": len(data) // learner.batch_size, "syncs": len(caught),
                      "first": [str(w.message)[:200] for w in caught[:3]], "images": int(sums.images)}
    return out


def study(src: Path, dst: Path, precision: str, tiny: bool) -> dict:
    """The end-to-end study at the gate's precision; shrunk for the CPU with ``tiny``."""
    import yaml

    doc = yaml.safe_load(src.read_text())
    if precision in ("fp32", "bf16"):
        doc["train"]["precision"] = precision
    if tiny:
        doc["dataset"].update(image_size=16, subset=150)
        doc["train"].update(epochs=1, batch_size=16, device="cpu")
        doc["model"]["backbone"] = "test_resnet"
        doc["search"]["n_trials"] = 2
        doc["repeats"]["seeds"] = 2
    dst.write_text(yaml.safe_dump(doc, sort_keys=False))
    return {"study": str(dst), "precision": doc["train"].get("precision", "auto"), "tiny": tiny}


def trials(study_file: Path) -> dict:
    import optuna

    from ablate.config import load_study
    from ablate.study import fuse_count, repeat_cells, resolve_paths, searches
    from ablate.study.storage import repeats_study_name, search_study_name

    cfg = load_study(study_file)
    paths = resolve_paths(cfg, study_file)
    want_cuda = cfg.train.device.startswith("cuda") or (cfg.train.device == "auto" and _cuda())
    problems, counts, fused = [], {}, 0
    studies = [(search_study_name(cfg, s.arm, s.replicate), cfg.search.n_trials) for s in searches(cfg)]
    for name, expected in (*studies, (repeats_study_name(cfg), len(repeat_cells(cfg)))):
        found = optuna.load_study(study_name=name, storage=paths.storage).get_trials(deepcopy=False)
        states = [t.state.name for t in found]
        counts[name] = {s: states.count(s) for s in sorted(set(states))}
        if states.count("COMPLETE") != expected or len(states) != expected:
            problems.append(f"{name}: expected {expected} COMPLETE trials, found {counts[name]}")
        for t in found:
            missing = [a for a in TRIAL_ATTRS if a not in t.user_attrs]
            if missing:
                problems.append(f"{name} trial {t.number}: no {', '.join(missing)}")
            extras = t.user_attrs.get("extras") or {}
            fused += bool(extras.get("fused"))
            if (name.endswith(":repeats") and fuse_count(cfg) > 1 and t.user_attrs.get("arm_kind") != "ensemble"
                    and not extras.get("fused") and "fusion" not in t.user_attrs):
                problems.append(f"{name} trial {t.number}: neither trained fused (repeats.fuse {fuse_count(cfg)}) "
                                f"nor says why not")
            ran_on = str(t.user_attrs.get("device", ""))
            if want_cuda and not ran_on.startswith("cuda"):
                problems.append(f"{name} trial {t.number}: ran on {ran_on!r}, not CUDA")
    reports = sorted(str(p) for p in paths.report_dir.glob("*.md")) if paths.report_dir.is_dir() else []
    if not reports:
        problems.append(f"no report under {paths.report_dir}")
    return {"ok": not problems, "problems": problems, "trials": counts, "fused_trials": fused, "reports": reports}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


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


def workers(k: int, work: Path, command: list[str]) -> dict:
    """K copies of a bench ``command`` at once, each with ``ABLATE_THREADS`` = cores / K and its
    JSON in ``work``; the sum of their single-seed rates. Each is timed while the others run,
    only roughly: one that starts its timed rounds before the others are up shows as faster
    (seen on the CPU: 173 against 3 x 53 img/s)."""
    files = [work / f"worker{i}.json" for i in range(1, k + 1)]
    env = {**os.environ, "ABLATE_THREADS": str(max(1, (os.cpu_count() or 1) // k))}
    procs = [subprocess.Popen([*command, "--json-out", str(f)], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(f.with_suffix(".err"), "w")) for f in files]
    codes = [p.wait() for p in procs]
    rates = []
    for f in files:
        try:
            rates.append(json.loads(f.read_text())["images_per_second"]["single"]["ours"])
        except (OSError, ValueError, KeyError):
            rates.append(None)
    done = [r for r in rates if r is not None]
    return {"ok": len(done) == k, "workers": k, "exit_codes": codes, "images_per_second": rates,
            "aggregate_images_per_second": sum(done)}


# ---------------------------------------------------------------------------------------------
# What comes back: at most 8 files, 2 folders down; here 3 (summary.json, the log, rest.tar.gz)

TAR_LIMIT = 15 * 2**20  # a file that comes back is at most 16 MiB
SKIPPED_IN_TAR = ("site", "cache", "wheels")  # installed packages, data and model caches


def summarize(work: Path, out: Path) -> dict:
    """``out/summary.json``: every step's status and every figure so far (each step's JSON whole);
    ``out/rest.tar.gz``: the other files of ``work`` (errors, logs, the study and its report)."""
    steps = []
    for line in (work / "steps.tsv").read_text().splitlines() if (work / "steps.tsv").exists() else []:
        name, status, rc, seconds, limit = line.split("\t")
        steps.append({"name": name, "status": status, "rc": int(rc), "seconds": int(seconds), "limit": int(limit)})
    figures, errors = {}, {}
    for step in steps:
        figure = _read_json(work / f"{step['name']}.json")
        err = work / f"{step['name']}.err"
        text = err.read_text(errors="replace") if err.exists() else ""
        reasons = sorted({m.strip() for m in re.findall(r"skipping cudagraphs[^\n]*", text)})
        if reasons and isinstance(figure, dict):
            figure["cudagraph_skip_reasons"] = reasons[:20]
        if figure is not None:
            figures[step["name"]] = figure
        if step["status"] != "ok" and text:
            errors[step["name"]] = text.splitlines()[-25:]
    meta = _read_json(work / "meta.json") or {}
    summary = {**meta, "elapsed_s": int(time.time() - meta.get("started", time.time())),
               "steps": steps, "ok": all(s["status"] == "ok" for s in steps), "figures": figures, "errors": errors}
    _write(out / "summary.json", json.dumps(summary, indent=1, default=str))
    _tar(work, out / "rest.tar.gz")
    return {"ok": True, "steps": len(steps), "figures": sorted(figures)}


def digest(work: Path) -> dict:
    """One line per step's key figures, from the step JSONs in ``work``."""
    lines = []
    tsv = work / "steps.tsv"
    order = [line.split("\t")[0] for line in tsv.read_text().splitlines()] if tsv.exists() else []
    for name in order:
        d = _read_json(work / f"{name}.json")
        if not isinstance(d, dict) or name in ("meta", "install", "e2e-study"):
            continue
        if name == "gate":
            worst = {k: {q: round(v, 3) for q, v in c.get("worst", {}).items()} for k, c in d["checks"].items()}
            lines.append(f"gate: verdict {d['verdict']}; worst error over tolerance {worst}; "
                         f"host syncs {d.get('host_syncs')}")
        elif "fused_images_per_second" in d:
            single = (d.get("images_per_second", {}).get("single") or {}).get("ours")
            lines.append(f"{name}: {d.get('backbone')} {d.get('image_size')} px {d.get('precision')}, K={d['fuse']}: "
                         f"fused {_r(d['fused_images_per_second'])} img/s, single {_r(single)} img/s, "
                         f"fused/single {_r(d.get('fused_over_single'), 3)}; loop/bare {_r(d.get('loop_over_bare'), 3)}")
            for mode, c in (d.get("fused_compiled") or {}).items():
                lines.append(f"  {mode}: " + (c["error"] if "error" in c else
                             f"{_r(c['images_per_second'])} img/s, over eager {_r(c['over_eager'], 3)}, "
                             f"compile {_r(c['compile_seconds'])} s, graph replays {c['graph_replays']}, "
                             f"skips {c['cudagraph_skips']}"))
        elif name == "e2e-trials":
            lines.append(f"e2e: trials {d['trials']}; fused {d.get('fused_trials')}; problems {d['problems'][:3]}")
        elif name == "peak":
            lines.append(f"peak: bf16 matmul {_r(d['bf16_peak_tflops'])} TFLOP/s; {d['backbone']} "
                         f"{_r(d['train_gflop_per_image'], 2)} GFLOP per training image")
        elif name == "workers":
            lines.append(f"workers: {d['workers']} at once, {_r(d['aggregate_images_per_second'])} img/s together")
        elif name == "imports":
            lines.append(f"imports: python {d['python']}, torch {d['torch']}, {d.get('device', 'no CUDA')}; "
                         f"failed {d['failed'] or 'none'}")
    return {"lines": lines}


def _r(value, digits: int = 0):
    return value if not isinstance(value, float) else round(value, digits) if digits else round(value)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _tar(work: Path, dest: Path) -> None:
    """Every file of ``work`` but the installed packages, caches and checkpoints; without the
    databases and figures too when that is over the limit of a file that comes back."""
    for leave_out in ((".tmp", ".pyc", ".pt"), (".tmp", ".pyc", ".pt", ".db", ".png")):
        tmp = dest.with_name(dest.name + ".tmp")
        with tarfile.open(tmp, "w:gz") as tar:
            for path in sorted(work.rglob("*")):
                rel = path.relative_to(work)
                if path.is_file() and rel.parts[0] not in SKIPPED_IN_TAR and not path.name.endswith(leave_out):
                    tar.add(path, arcname=str(rel))
        if tmp.stat().st_size <= TAR_LIMIT:
            break
    os.replace(tmp, dest)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("wheels")
    s = sub.add_parser("install")
    s.add_argument("wheels", type=Path)
    s.add_argument("site", type=Path)
    sub.add_parser("imports")
    s = sub.add_parser("gate")
    s.add_argument("--tiny", action="store_true")
    s = sub.add_parser("study")
    s.add_argument("src", type=Path)
    s.add_argument("dst", type=Path)
    s.add_argument("--precision", default="auto")
    s.add_argument("--tiny", action="store_true")
    s = sub.add_parser("trials")
    s.add_argument("study", type=Path)
    s = sub.add_parser("peak")
    s.add_argument("--tiny", action="store_true")
    s.add_argument("--backbone", default="seresnet50")
    s.add_argument("--image-size", type=int, default=224)
    s = sub.add_parser("workers")
    s.add_argument("k", type=int)
    s.add_argument("work", type=Path)
    s.add_argument("command", nargs=argparse.REMAINDER)
    s = sub.add_parser("digest")
    s.add_argument("work", type=Path)
    s = sub.add_parser("summarize")
    s.add_argument("work", type=Path)
    s.add_argument("dest", type=Path)
    a = p.parse_args(argv)
    run = {
        "wheels": lambda: wheels(),
        "install": lambda: install(a.wheels, a.site),
        "imports": lambda: imports(),
        "gate": lambda: gate(a.tiny),
        "study": lambda: study(a.src, a.dst, a.precision, a.tiny),
        "trials": lambda: trials(a.study),
        "peak": lambda: peak(a.tiny, a.backbone, a.image_size),
        "workers": lambda: workers(a.k, a.work, a.command[1:] if a.command[:1] == ["--"] else a.command),
        "summarize": lambda: summarize(a.work, a.dest),
        "digest": lambda: digest(a.work),
    }
    out = run[a.cmd]()
    if a.cmd == "digest":
        print("\n".join(out["lines"]))
        return 0
    text = json.dumps(out, indent=2, default=str)
    print(text)
    if a.out is not None:
        _write(a.out, text)
    return 0 if out.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
