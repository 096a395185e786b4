from __future__ import annotations

import pytest
import torch

from ablate.config import parse_study, with_overrides
from ablate.errors import TrainingError
from ablate.train import stage1_config, stage1_path, train_run
from tests.conftest import tiny_study_text


@pytest.fixture(scope="module")
def run_cfg():
    return parse_study(tiny_study_text(epochs=2)).run


def test_same_seed_same_result_on_the_cpu(run_cfg, tmp_path):
    cfg = with_overrides(run_cfg, {"model.kind": "single"})
    seen = []
    a = train_run(cfg, base=tmp_path, on_epoch=seen.append)
    b = train_run(cfg, base=tmp_path)
    assert a.val_accuracy == b.val_accuracy and a.test_accuracy == b.test_accuracy
    assert [e.train_loss for e in a.curves] == [e.train_loss for e in b.curves]
    assert [e.epoch for e in seen] == [1, 2] and seen == list(a.curves)
    assert a.head_similarity is None
    # 150 images: 30 test, 30 validation; accuracy is correct / total
    assert (a.test_accuracy * 30) == pytest.approx(round(a.test_accuracy * 30))
    assert a.val_accuracy == max(e.val_accuracy for e in a.curves)
    assert a.curves[a.best_epoch - 1].val_accuracy == a.val_accuracy
    c = train_run(with_overrides(cfg, {"train.seed": 1}), base=tmp_path)
    assert [e.train_loss for e in c.curves] != [e.train_loss for e in a.curves]


def test_dual_records_head_similarity_and_trains_model2_only(run_cfg, tmp_path):
    result = train_run(with_overrides(run_cfg, {"train.epochs": 1}), base=tmp_path)
    assert -1.0 <= result.head_similarity <= 1.0
    assert result.n_trainable < result.n_params
    assert result.curves[0].penalty is not None
    off = train_run(with_overrides(run_cfg, {"train.epochs": 1, "model.constraint.on": False}), base=tmp_path)
    assert off.curves[0].penalty is None


def test_stage1_trains_model1_once_and_reuses_it(run_cfg, tmp_path):
    cfg = with_overrides(run_cfg, {"train.epochs": 1, "model.model1.init": "stage1"})
    logs = []
    first = train_run(cfg, base=tmp_path, cache_dir=tmp_path / "ck", log=logs.append)
    assert first.extras["stage1"]["reused"] is False and len(logs) == 1
    second = train_run(with_overrides(cfg, {"model.constraint.on": False}), base=tmp_path, cache_dir=tmp_path / "ck")
    assert second.extras["stage1"]["reused"] is True  # NFMCE shares FMCE's stage-1 run of the same seed
    path = stage1_path(cfg, tmp_path / "ck")
    assert path.exists()
    state = torch.load(path, weights_only=True)
    assert "conv1.weight" in state
    # the single-head run of the same seed is that same checkpoint
    assert stage1_path(stage1_config(cfg), tmp_path / "ck") == path
    other_seed = with_overrides(cfg, {"train.seed": 3})
    assert stage1_path(other_seed, tmp_path / "ck") != path


def test_nan_loss_stops_with_a_reason(run_cfg, tmp_path, monkeypatch):
    import ablate.train as train_module

    real = train_module.F.cross_entropy
    monkeypatch.setattr(train_module.F, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(TrainingError, match="loss became nan in epoch 1"):
        train_run(with_overrides(run_cfg, {"model.kind": "single"}), base=tmp_path)


def test_callback_exception_stops_the_run(run_cfg, tmp_path):
    class Stop(Exception):
        pass

    def stop(stats):
        raise Stop(stats.epoch)

    with pytest.raises(Stop):
        train_run(with_overrides(run_cfg, {"model.kind": "single"}), base=tmp_path, on_epoch=stop)


def test_a_fixed_stage1_recipe_is_shared_across_learning_rates(run_cfg, tmp_path):
    cfg = with_overrides(run_cfg, {"model.model1.init": "stage1", "model.model1.lr": 4e-4})
    a = stage1_path(with_overrides(cfg, {"train.lr": 1e-3}), tmp_path)
    b = stage1_path(with_overrides(cfg, {"train.lr": 1e-4}), tmp_path)
    assert a == b
    assert stage1_config(with_overrides(cfg, {"train.lr": 1e-3})).train.lr == 4e-4
    free = with_overrides(run_cfg, {"model.model1.init": "stage1"})
    assert stage1_path(with_overrides(free, {"train.lr": 1e-3}), tmp_path) != stage1_path(free, tmp_path)
