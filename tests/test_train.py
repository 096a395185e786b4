from __future__ import annotations

import pytest
import torch

import ablate.train.device
from ablate.config import parse_study, with_overrides
from ablate.errors import TrainingError
from ablate.train import (ensemble_member_seeds, numerics, resolve_precision, single_checkpoint_path, stage1_config,
                          stage1_path, train_run)
from tests.conftest import tiny_study_text


@pytest.fixture(scope="module")
def run_cfg():
    return with_overrides(parse_study(tiny_study_text(epochs=2)).run, {"train.precision": "fp32"})


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
    # the single-head run of the same seed and recipe is that same checkpoint
    assert stage1_path(stage1_config(cfg), tmp_path / "ck") == path
    assert first.extras["stage1"]["checkpoint"] == path.name
    assert first.extras["stage1"]["recipe"] == {"lr": cfg.train.lr, "epochs": 1, "weight_decay": cfg.train.weight_decay,
                                                "batch_size": 32, "precision": "fp32"}
    for change in ({"train.seed": 3}, {"train.weight_decay": 0.0}, {"train.precision": "bf16"},
                   {"dataset.augment": False}, {"dataset.image_size": 24}, {"train.batch_size": 16}):
        assert stage1_path(with_overrides(cfg, change), tmp_path / "ck") != path, change
    # where it ran does not change the weights
    assert stage1_path(with_overrides(cfg, {"train.threads": 1}), tmp_path / "ck") == path


def test_a_single_run_serves_as_model1_only_under_its_own_recipe(run_cfg, tmp_path):
    """The bug of issue 8: a single head trained at train.lr saved itself under the key of a
    stage-1 recipe with another lr. Now it saves under its own recipe's key."""
    dual = with_overrides(run_cfg, {"train.epochs": 1, "model.model1.init": "stage1", "model.model1.lr": 4e-4,
                                    "train.lr": 2e-3})
    single = with_overrides(dual, {"model.kind": "single"})
    train_run(single, base=tmp_path, cache_dir=tmp_path / "ck")  # lr 2e-3
    assert not stage1_path(dual, tmp_path / "ck").exists()
    logs = []
    result = train_run(dual, base=tmp_path, cache_dir=tmp_path / "ck", log=logs.append)
    assert result.extras["stage1"]["reused"] is False and result.extras["stage1"]["recipe"]["lr"] == 4e-4
    assert "lr 0.0004" in logs[0]
    # with model1's recipe equal to the single run's, the single run is model1
    same = with_overrides(dual, {"model.model1.lr": 2e-3})
    assert train_run(same, base=tmp_path, cache_dir=tmp_path / "ck").extras["stage1"]["reused"] is True


def test_training_images_and_test_size_are_counted(run_cfg, tmp_path):
    cfg = with_overrides(run_cfg, {"train.epochs": 1, "model.model1.init": "stage1"})
    single = train_run(with_overrides(cfg, {"model.kind": "single"}), base=tmp_path)
    # 150 images: 90 train, batch 32 with drop_last: 64 a epoch; 30 test
    assert single.train_images == 64 and single.n_test == 30
    dual = train_run(cfg, base=tmp_path, cache_dir=tmp_path / "ck")
    assert dual.train_images == 128  # its own epoch and its stage 1


def test_an_ensemble_averages_two_members_of_its_own(run_cfg, tmp_path):
    cfg = with_overrides(run_cfg, {"train.epochs": 1, "model.kind": "ensemble", "train.seed": 2})
    seen = []
    result = train_run(cfg, base=tmp_path, on_epoch=seen.append)
    members = result.extras["ensemble"]
    assert members["member_seeds"] == list(ensemble_member_seeds(2))
    assert not set(members["member_seeds"]) & set(range(1000))  # never the single arm's seeds
    assert [e.epoch for e in seen] == [1, 2] and len(result.curves) == 2
    assert result.train_images == 128 and result.head_similarity is None
    single = train_run(with_overrides(cfg, {"model.kind": "single", "train.seed": members["member_seeds"][0]}),
                       base=tmp_path)
    assert members["member_test_accuracy"][0] == single.test_accuracy  # a member is a plain single run
    assert result.n_params == 2 * single.n_params
    assert 0.0 <= result.test_accuracy <= 1.0 and (result.test_accuracy * 30) == pytest.approx(round(result.test_accuracy * 30))


def test_precision_auto_is_resolved_to_what_the_device_does_natively(monkeypatch, run_cfg):
    cpu = torch.device("cpu")
    assert numerics("fp32", cpu).precision == "fp32"
    assert numerics("bf16", cpu).precision == "bf16"
    monkeypatch.setattr(ablate.train.device, "cpu_has_bf16", lambda: True)
    assert numerics("auto", cpu).precision == "bf16"
    auto = with_overrides(run_cfg, {"train.precision": "auto"})
    assert resolve_precision(auto) == with_overrides(run_cfg, {"train.precision": "bf16"})
    monkeypatch.setattr(ablate.train.device, "cpu_has_bf16", lambda: False)
    assert numerics("auto", cpu).precision == "fp32"
    assert resolve_precision(auto) == with_overrides(run_cfg, {"train.precision": "fp32"})
    assert resolve_precision(run_cfg) is run_cfg  # already concrete: the run itself


def test_the_layout_goes_with_the_precision_and_the_device():
    """One rule for training, fused training and the benchmark: channels_last with bf16 and on CUDA."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not numerics("fp32", cpu).channels_last and numerics("bf16", cpu).channels_last
    assert numerics("fp32", cuda).channels_last and numerics("bf16", cuda).channels_last
    x = torch.zeros(2, 4, 3, 8, 8)  # (K, B, C, H, W): every image channels-last
    assert numerics("bf16", cpu).for_batch(x).stride()[-3:] == (1, 8 * 3, 3)
    assert numerics("fp32", cpu).for_batch(x) is x


def test_a_bf16_run_trains_and_records_its_precision(run_cfg, tmp_path):
    cfg = with_overrides(run_cfg, {"train.epochs": 1, "model.kind": "single", "train.precision": "bf16"})
    result = train_run(cfg, base=tmp_path)
    assert result.extras["precision"] == "bf16" and result.curves[0].train_loss > 0


def test_nan_loss_stops_with_a_reason(run_cfg, tmp_path, monkeypatch):
    real = torch.nn.functional.cross_entropy
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
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
    # the key is the recipe's: the same recipe written out is the same checkpoint, another lr is not
    single = with_overrides(cfg, {"model.kind": "single", "train.lr": 4e-4})
    assert single_checkpoint_path(single, tmp_path) == a
    assert single_checkpoint_path(with_overrides(single, {"train.lr": 1e-3}), tmp_path) != a

