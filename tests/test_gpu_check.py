"""scripts/gpu-check.sh on the CPU: its install step (wheels without network, a spare where a
requirement is unmet) and its correctness gate (fused against lone), as the lent GPU machine
will run them (GPU_CHECK_TINY=1), and what comes back: at most 8 files, none in a folder.

The wheels here are made in the test, so nothing is downloaded: scripts/gpu-wheels.sh fetches
the real ones where pip works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent


def _wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel of one package whose ``VALUE`` is its version."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VALUE = {version!r}\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\n" f"Name: {name}\nVersion: {version}\n"
                            + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{f},,\n" for f in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as z:
        for arcname, text in files.items():
            z.writestr(arcname, text)
    return path


def test_the_install_and_gate_steps_run_on_the_cpu_and_bring_back_three_files(tmp_path):
    wheels = tmp_path / "wheels"
    _wheel(wheels, "gpucheckprobe", "0.1", requires=("gpucheckspare>=1.0",))
    _wheel(wheels / "spare", "gpucheckspare", "1.2")
    _wheel(wheels / "spare", "gpucheckunused", "1.0")  # a spare nothing needs stays out
    out = tmp_path / "out"
    env = {**os.environ, "GPU_CHECK_TINY": "1", "GPU_CHECK_STEPS": "install imports gate",
           "GPU_CHECK_WHEELS": str(wheels), "PYTHON": sys.executable, "TMPDIR": str(tmp_path), "GPU_CHECK_KEEP": "1"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh"), str(out)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    assert sorted(p.name for p in out.iterdir()) == ["gpu-check.log", "rest.tar.gz", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["name"], s["status"]) for s in summary["steps"]] == [("install", "ok"), ("imports", "ok"), ("gate", "ok")]
    assert summary["ok"] and summary["tiny"] is True

    install = summary["figures"]["install"]
    assert install["wheels"] == ["gpucheckprobe-0.1-py3-none-any.whl"]
    assert install["spares_installed"] == ["gpucheckspare-1.2-py3-none-any.whl"]
    assert install["unmet"][0]["requires"] == "gpucheckspare>=1.0" and install["unmet"][0]["found"] is None
    [site] = tmp_path.glob("gpu-check.*/site")
    assert (site / "gpucheckprobe" / "__init__.py").exists() and (site / "gpucheckspare" / "__init__.py").exists()
    assert not (site / "gpucheckunused").exists()

    imports = summary["figures"]["imports"]
    assert imports["ok"] and imports["failed"] == {} and imports["modules"] > 40

    gate = summary["figures"]["gate"]
    assert gate["passed"]["fp32"] and gate["verdict"] in ("fp32", "bf16")
    for kind in ("single", "dual"):
        check = gate["checks"][f"{kind}/fp32"]
        assert check["ok"] and set(check["worst"]) == {"loss", "gradients", "buffers"}
        assert all(0 <= v <= 1 for v in check["worst"].values())
    # the probe sees the vmapped convolutions as grouped ones, 2 seeds a group
    assert any("groups=2" in key for key in gate["convolutions"]["fp32"]["fused"])
    assert all("groups=1" in key for key in gate["convolutions"]["fp32"]["lone"])
    assert gate["host_syncs"] is None  # measured on CUDA only

    log = (out / "gpu-check.log").read_text()
    assert "gate: ok" in log and "later steps run in" in log
    with tarfile.open(out / "rest.tar.gz") as tar:
        names = tar.getnames()
    assert {"gate.json", "gate.err", "steps.tsv"} <= set(names) and not any(n.startswith("site") for n in names)


def test_the_wheels_are_what_ablate_needs_and_the_machine_lacks():
    """The closure of ablate's requirements (pyproject.toml's, not a possibly stale installed
    metadata's), less what the lent machine has (nothing of torch's)."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "wheels"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    names = {w.split("==")[0] for w in listed["wheels"]}
    assert {"optuna", "pydantic", "pydantic-core", "sqlalchemy", "alembic", "colorlog", "mako", "opda"} <= names
    assert not names & {"torch", "torchvision", "timm", "numpy", "scipy", "pandas", "typing-extensions", "psycopg"}
    assert [w.split("==")[0] for w in listed["spares"]] == ["typing-extensions"]
