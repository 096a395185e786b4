"""ablate.analysis: the analysis settings and the sequential design, read, checked and written back."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.analysis import AnalysisSettings, SequentialPlan
from ablate.errors import ConfigError

REPORTS = Path(__file__).resolve().parent.parent / "reports"


@pytest.mark.parametrize("name", ["fmce-digits", "fmce-paper"])
def test_committed_analysis_json_reads_and_writes_back_byte_for_byte(name):
    path = REPORTS / name / "analysis.json"
    settings = AnalysisSettings.read(path)
    assert settings.to_json() == path.read_text(encoding="utf-8")
    assert settings.sequential is None and '"sequential"' not in settings.to_json()


def test_a_sequential_design_is_written_after_the_other_keys():
    plan = SequentialPlan(looks=(3, 6, 9), spending="pocock", comparisons=3)
    text = AnalysisSettings(title="t", sequential=plan).to_json()
    assert text.endswith(
        '"note": null,\n  "sequential": {\n    "looks": [\n      3,\n      6,\n      9\n    ],\n'
        '    "spending": "pocock",\n    "comparisons": 3\n  }\n}\n'
    )
    assert text.startswith('{\n  "title": "t",\n  "contrasts": null,\n  "rope": null,\n  "alpha": 0.05,\n')


def test_read_gives_the_defaults_for_nulls_and_names_the_file(tmp_path):
    path = tmp_path / "analysis.json"
    path.write_text('{"alpha": null, "rope": 1, "contrasts": [["a", "b"]], '
                    '"sequential": {"looks": [2, 4], "spending": "obrien-fleming", "comparisons": 1}}')
    settings = AnalysisSettings.read(path)
    assert settings.alpha == 0.05 and settings.rope == 1.0 and settings.contrasts == (("a", "b"),)
    assert settings.sequential == SequentialPlan(looks=(2, 4), spending="obrien-fleming", comparisons=1)
    path.write_text('{"alpha": 2}')
    with pytest.raises(ConfigError, match=r"analysis.json: alpha must be in \(0, 1\), got 2.0"):
        AnalysisSettings.read(path)
    with pytest.raises(ConfigError, match="nope.json: no such file"):
        AnalysisSettings.read(tmp_path / "nope.json")


def test_with_changes_checks_what_changes():
    settings = AnalysisSettings(title="t", rope=0.2)
    changed = settings.with_changes(alpha=0.01, contrasts=[("a", "b")])
    assert (changed.title, changed.rope, changed.alpha, changed.contrasts) == ("t", 0.2, 0.01, (("a", "b"),))
    assert settings.alpha == 0.05  # frozen: the original is unchanged
    with pytest.raises(ConfigError, match="rope must be a finite number of points >= 0, got -1.0"):
        settings.with_changes(rope=-1.0)
    with pytest.raises(ConfigError, match="smallest effect must be a finite number of points > 0"):
        settings.with_changes(smallest_effect=0.0)
    with pytest.raises(ConfigError, match="unknown key 'ropes'"):
        settings.with_changes(ropes=0.1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"looks": (3, 3), "spending": "pocock", "comparisons": 1}, "(looks: (3, 3))"),
        ({"looks": (1, 3), "spending": "pocock", "comparisons": 1}, "(looks: (1, 3))"),
        ({"looks": (3, 6), "spending": "wald", "comparisons": 1}, "sequential.spending 'wald' is not one of"),
        ({"looks": (3, 6), "spending": "pocock", "comparisons": 0}, "(comparisons: 0)"),
        ({"looks": (3, 6), "spending": "pocock"}, "sequential must be {looks: [increasing seed counts >= 2]"),
    ],
)
def test_sequential_plan_names_the_bad_value(fields, message):
    with pytest.raises(ConfigError) as info:
        SequentialPlan(**fields)
    assert message in str(info.value)


def test_vary_is_written_only_when_recorded_and_read_back(tmp_path):
    settings = AnalysisSettings(title="t", vary=("init", "split"))
    text = settings.to_json()
    assert text.endswith('"note": null,\n  "vary": [\n    "init",\n    "split"\n  ]\n}\n')
    path = tmp_path / "analysis.json"
    path.write_text(text)
    assert AnalysisSettings.read(path) == settings and AnalysisSettings.read(path).to_json() == text
    assert '"vary"' not in AnalysisSettings(title="t").to_json()  # older files write back as they were
    plan = SequentialPlan(looks=(5, 10), spending="pocock", comparisons=1)
    both = AnalysisSettings(vary=("order",), sequential=plan).to_json()
    assert both.index('"vary"') < both.index('"sequential"')


@pytest.mark.parametrize("vary", [["weights"], [], ["init", "init"], "init", [["init"]]])
def test_vary_names_the_sources_a_seed_can_draw(vary):
    with pytest.raises(ConfigError, match="vary must be a list of distinct sources out of init, order, augment, split"):
        AnalysisSettings(vary=vary)
