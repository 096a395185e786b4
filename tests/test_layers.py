"""The shape of the package (STYLE.md, issue 15): data flows one way, each rule is written once,
no module or function grows past what a reader holds in their head, tests use public names.

These read the source; they run nothing and time nothing.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ablate"

# Low to high: a module may import ablate modules of its own rank or lower, never higher.
RANKS = {
    "errors": 0,
    "config": 1, "records": 1, "seeding": 1, "analysis": 1,
    "data": 2, "models": 2, "plots": 2,
    "train": 3,
    "stats": 4,
    "study": 5,
    "report": 6,
    "bench": 7,
    "console": 8, "cli": 8, "__main__": 8, "__init__": 8,
}
# Third-party packages a layer must not use: training knows nothing of Optuna; statistics and the
# report are pure (no torch, no Optuna); the records at the bottom need neither.
FORBIDDEN = {
    "train": {"optuna", "optuna_dashboard"},
    "data": {"optuna"}, "models": {"optuna"},
    "stats": {"torch", "timm", "optuna", "pydantic"},
    "report": {"torch", "timm", "optuna"},
    "config": {"torch", "optuna", "numpy", "pandas"}, "analysis": {"torch", "optuna", "numpy", "pandas"},
    "errors": {"torch", "optuna"}, "records": {"torch", "optuna"}, "seeding": {"optuna"},
}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _layer(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "ablate":  # from ablate import stats
                names.update(f"ablate.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_flow_one_way(path):
    layer = _layer(path)
    for name in _imports(ast.parse(path.read_text())):
        top, _, rest = name.partition(".")
        if top == "ablate" and rest:
            target = rest.split(".")[0]
            assert RANKS[target] <= RANKS[layer], f"{layer} imports {name}, a higher layer"
        assert top not in FORBIDDEN.get(layer, set()), f"{layer} imports {top}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_small(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.end_lineno - node.lineno + 1 <= MAX_FUNCTION_LINES, f"{node.name} at line {node.lineno}"


def _defined_in(name: str) -> list[str]:
    return [str(p.relative_to(PACKAGE)) for p in _modules()
            if re.search(rf"^\s*def {name}\(", p.read_text(), flags=re.MULTILINE)]


@pytest.mark.parametrize(("name", "home"), [
    ("numerics", "train/device.py"),  # precision and memory layout, for lone, fused and bench runs
    ("resolve_precision", "train/device.py"),  # where train.precision: auto becomes concrete
    ("recipe", "config/run.py"),  # the stage-1 recipe
    ("arm_overrides", "config/study.py"),  # an arm's settings (resolved once: StudyConfig.arms)
    ("stage1_config", "train/stage1.py"),
    ("repeat_config", "study/repeats.py"),
])
def test_one_definition_of_each_rule(name, home):
    assert _defined_in(name) == [home]


def test_the_layout_rule_is_written_once():
    """channels_last is chosen in train/device.py alone; elsewhere only that choice is applied."""
    chosen = [str(p.relative_to(PACKAGE)) for p in _modules() if "torch.channels_last" in p.read_text()]
    assert chosen == ["train/device.py"]


def test_tests_use_public_names_of_ablate():
    private = re.compile(r"from ablate[\w.]* import [^\n]*\b_[a-z]\w*|\bablate(?:\.\w+)*\._[a-z]\w*")
    for path in sorted((ROOT / "tests").glob("*.py")):
        found = private.findall(path.read_text())
        assert not found, f"{path.name} reaches private names: {found}"
