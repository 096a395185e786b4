"""The study file, parsed once at the edge into frozen, validated records.

Everything after :func:`load_study` takes these typed objects, never raw dicts. A bad file
fails here with one line naming the key, the value and what was expected, before any
storage file or run folder exists.

Layering: standard library, PyYAML and pydantic only. Names that need torch or timm to
check (backbones, data sets on disk) are checked by ``ablate.study.check_study``.
"""

from ablate.config.load import load_study, parse_study
from ablate.config.run import (ConstraintConfig, DatasetConfig, Model1Config, ModelConfig, RunConfig, TrainConfig,
                               config_hash, get_path, with_overrides)
from ablate.config.study import (CONTROLS, DEFAULT_ARMS, MIN_FIRST_LOOK, Arm, Choices, ConfirmConfig, Dimension,
                                 PrunerConfig, Range, RepeatsConfig, SamplerConfig, SearchConfig, SequentialSeeds,
                                 StudyConfig, arm_overrides, base_run)

__all__ = [
    "DatasetConfig",
    "TrainConfig",
    "Model1Config",
    "ConstraintConfig",
    "ModelConfig",
    "RunConfig",
    "Choices",
    "Range",
    "SamplerConfig",
    "PrunerConfig",
    "ConfirmConfig",
    "SearchConfig",
    "SequentialSeeds",
    "RepeatsConfig",
    "StudyConfig",
    "load_study",
    "parse_study",
    "with_overrides",
    "config_hash",
    "get_path",
    "DEFAULT_ARMS",
    "CONTROLS",
    "base_run",
    "arm_overrides",
    "Arm",
    "MIN_FIRST_LOOK",
    "Dimension",
]

