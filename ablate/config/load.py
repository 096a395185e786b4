"""Reading a study file: YAML (1.2 booleans, no tags that run code) into a :class:`StudyConfig`."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import yaml
from pydantic import ValidationError

from ablate.config.run import _first_error
from ablate.config.study import StudyConfig
from ablate.errors import ConfigError

__all__ = ["load_study", "parse_study"]


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study file.

    Raises:
        ConfigError: the file is missing, is not YAML, uses a tag the safe loader refuses,
            has an unknown key (with a did-you-mean), a wrong type or an out-of-range value.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read study file ({exc.strerror})") from None
    return parse_study(text, source=str(path))


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only true/false are booleans.

    YAML 1.1 also reads on/off/yes/no as booleans, which would turn the key ``on`` of
    ``constraint: {on: true}`` into ``True``.
    """


_SafeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_study(text: str, source: str = "<study>") -> StudyConfig:
    try:
        raw = yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}:{where} invalid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level (got {type(raw).__name__})")
    raw = copy.deepcopy(raw)
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_error(exc, StudyConfig)}") from None

