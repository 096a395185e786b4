"""Training: ``train_run(cfg) -> TrialResult`` for one seed, ``train_fused(cfgs)`` for K seeds
as one vmapped model. torch, timm and torchvision; no Optuna.

- :mod:`ablate.train.device`: the device, the cores, and the numerics (precision and memory
  layout, decided in one function for training, fused training and ``ablate bench``);
- :mod:`ablate.train.stage1`: the stage-1 checkpoint that serves as DueHeadNet's model1;
- :mod:`ablate.train.loop`: the one training loop (setup, step, epoch, best epoch) that the
  lone run, the fused run and the benchmark share;
- :mod:`ablate.train.lone`: the lone run and the ensemble control;
- :mod:`ablate.train.fused`: the fused run;
- :mod:`ablate.train.selfcheck`: whether fused training is right on a device and in a
  precision (:func:`fusion_ok`, the study's gate before it fuses).
"""

from ablate.train.device import Numerics, available_cores, cpu_has_bf16, numerics, resolve_device, resolve_precision
from ablate.train.fused import SEED_FIELDS, FusedLearner, FusedModel, check_fusable, train_fused
from ablate.train.lone import LoneLearner, ensemble_member_configs, ensemble_member_seeds, evaluate_ensemble, train_run
from ablate.train.loop import (SEED_SOURCES, EpochSums, Evaluation, Fit, Learner, evaluate, fit, on_device,
                               predictions_of, seeded_models, train_epoch, train_step)
from ablate.train.selfcheck import FUSION_CHECKS, TOLERANCES, FusionCheck, Tolerance, check_fused_step, fusion_ok
from ablate.train.stage1 import single_checkpoint_path, stage1_config, stage1_path, stage1_run_config

__all__ = [
    "train_run",
    "train_fused",
    "check_fusable",
    "SEED_FIELDS",
    "SEED_SOURCES",
    "fusion_ok",
    "check_fused_step",
    "FusionCheck",
    "Tolerance",
    "TOLERANCES",
    "FUSION_CHECKS",
    "resolve_device",
    "resolve_precision",
    "numerics",
    "Numerics",
    "cpu_has_bf16",
    "available_cores",
    "stage1_config",
    "stage1_run_config",
    "stage1_path",
    "single_checkpoint_path",
    "ensemble_member_seeds",
    "ensemble_member_configs",
    "FusedModel",
    "Learner",
    "LoneLearner",
    "FusedLearner",
    "Fit",
    "EpochSums",
    "fit",
    "seeded_models",
    "train_step",
    "train_epoch",
    "evaluate",
    "Evaluation",
    "predictions_of",
    "on_device",
    "evaluate_ensemble",
]
