from __future__ import annotations

import sys

import pytest
import torch

import ablate.train.device
from ablate.config import parse_study, with_overrides
from ablate.data import load_images, split_indices
from ablate.errors import TrainingError
from ablate.train import (SEED_SOURCES, EpochSums, FusedLearner, LoneLearner, ensemble_member_configs,
                          ensemble_member_seeds, numerics, on_device, resolve_precision, seeded_models,
                          single_checkpoint_path, stage1_config, stage1_path, train_epoch, train_run)
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


def test_precision_auto_on_cuda_is_bf16_from_compute_capability_8_of_that_device(monkeypatch):
    """Not torch.cuda.is_bf16_supported(): it counts emulation (a V100, 7.0, says True) and asks
    about the current device, not the one the run trains on."""
    capabilities = {0: (8, 0), 1: (7, 0), 2: (9, 0)}  # an A100, a V100, an H100
    asked = []

    def capability(device=None):
        index = torch.device(device).index if device is not None else 0
        asked.append(index)
        return capabilities[0 if index is None else index]

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what it says on a V100
    assert numerics("auto", torch.device("cuda:0")).precision == "bf16"
    assert numerics("auto", torch.device("cuda:1")).precision == "fp32"
    assert numerics("auto", torch.device("cuda:2")).precision == "bf16"
    assert asked == [0, 1, 2]
    assert numerics("bf16", torch.device("cuda:1")).precision == "bf16"  # asked for: given
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert numerics("auto", torch.device("cuda:1")).precision == "bf16"  # planned for, not here


def test_the_layout_goes_with_the_precision_and_the_device():
    """One rule for training, fused training and the benchmark: channels_last with bf16 and on CUDA."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not numerics("fp32", cpu).channels_last and numerics("bf16", cpu).channels_last
    assert numerics("fp32", cuda).channels_last and numerics("bf16", cuda).channels_last
    x = torch.zeros(4, 3, 8, 8)  # (B, C, H, W)
    assert numerics("bf16", cpu).for_batch(x).stride() == (3 * 8 * 8, 1, 8 * 3, 3)
    assert numerics("fp32", cpu).for_batch(x) is x
    fused = torch.zeros(2, 4, 3, 8, 8)  # (K, B, C, H, W): vmap copies it into (B, K * C, H, W) anyway
    assert numerics("bf16", cpu).for_batch(fused) is fused


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



# ---------------------------------------------------------------------------------------------
# Sources of variance, predictions, and a step without host syncs (issues 16 and 18)

@pytest.fixture(scope="module")
def small_cfg(run_cfg):
    # 60 digits at 16 px: 36 training images, 4 steps of 8 an epoch; 12 validation, 12 test
    return with_overrides(run_cfg, {"dataset.subset": 60, "train.batch_size": 8, "model.kind": "single",
                                    "model.backbone": "test_resnet", "train.epochs": 1})


def _first_epoch(cfg, tmp_path):
    images = load_images(cfg.dataset, tmp_path)
    [data] = on_device(images, [split_indices(images.labels, cfg.dataset, images.official_test)], torch.device("cpu"))
    [model] = seeded_models([cfg], images.num_classes, torch.device("cpu"))
    return list(LoneLearner(cfg, model, torch.device("cpu")).stream(data.train, 0))


def test_each_source_of_variance_draws_from_its_own_seed(small_cfg, tmp_path):
    def weights(cfg):
        [model] = seeded_models([cfg], 10, torch.device("cpu"))
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(weights(with_overrides(small_cfg, {"train.init_seed": 5})),
                       weights(with_overrides(small_cfg, {"train.seed": 5})))
    assert not torch.equal(weights(small_cfg), weights(with_overrides(small_cfg, {"train.seed": 5})))
    assert torch.equal(weights(small_cfg), weights(with_overrides(small_cfg, {"train.order_seed": 5,
                                                                              "train.augment_seed": 5})))
    # order from order_seed, augmentation from augment_seed, each whatever the other is
    a = _first_epoch(with_overrides(small_cfg, {"train.seed": 0, "train.order_seed": 5}), tmp_path)
    b = _first_epoch(with_overrides(small_cfg, {"train.seed": 5, "train.augment_seed": 0, "train.init_seed": 0}),
                     tmp_path)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    c = _first_epoch(with_overrides(small_cfg, {"train.order_seed": 5, "train.augment_seed": 6}), tmp_path)
    assert all(torch.equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))  # same order
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))  # other crops and flips
    d = _first_epoch(small_cfg, tmp_path)
    assert not all(torch.equal(ya, yd) for (_, ya), (_, yd) in zip(a, d))


def test_a_run_predicts_every_test_example_at_its_best_epoch(small_cfg, tmp_path):
    cfg = with_overrides(small_cfg, {"dataset.partition_seed": 4})
    result = train_run(cfg, base=tmp_path)
    images = load_images(cfg.dataset, tmp_path)
    splits = split_indices(images.labels, cfg.dataset)
    p = result.predictions
    assert list(p.example) == splits.test.tolist() and len(p.example) == result.n_test == 12
    assert list(p.label) == images.labels[splits.test].tolist()
    assert all(0 <= c < 10 for c in p.predicted)
    assert result.test_accuracy == sum(a == b for a, b in zip(p.label, p.predicted)) / 12
    # another partition: the same test examples
    other = train_run(with_overrides(cfg, {"dataset.partition_seed": 5}), base=tmp_path)
    assert other.predictions.example == p.example and other.predictions.label == p.label


def test_an_ensemble_predicts_with_its_averaged_logits(small_cfg, tmp_path):
    result = train_run(with_overrides(small_cfg, {"model.kind": "ensemble"}), base=tmp_path)
    p = result.predictions
    assert len(p.example) == 12 and result.test_accuracy == sum(a == b for a, b in zip(p.label, p.predicted)) / 12


def test_ensemble_members_take_each_source_from_its_own_seed(small_cfg):
    """Members differ from each other in every source; a source held fixed across cells (here the
    initialisation, at 0) stays fixed across cells for each member."""
    cells = [with_overrides(small_cfg, {"model.kind": "ensemble", "train.seed": s, "train.init_seed": 0})
             for s in (1, 2)]
    members = [ensemble_member_configs(c) for c in cells]
    for one, two in members:
        assert one.model.kind == two.model.kind == "single"
        assert all(one.train.seed_of(s) != two.train.seed_of(s) for s in SEED_SOURCES)
        assert one.dataset == two.dataset == cells[0].dataset
    for m in (0, 1):
        assert members[0][m].train.seed_of("init") == members[1][m].train.seed_of("init") == ensemble_member_seeds(0)[m]
        assert members[0][m].train.seed_of("order") != members[1][m].train.seed_of("order")
        assert members[0][m].train.seed_of("order") == ensemble_member_seeds(1)[m]


def test_the_stage1_key_holds_the_partition_and_every_seed(run_cfg, tmp_path):
    cfg = with_overrides(run_cfg, {"model.model1.init": "stage1", "train.seed": 3})
    path = stage1_path(cfg, tmp_path)
    for change in ({"dataset.partition_seed": 5}, {"train.init_seed": 9}, {"train.order_seed": 9},
                   {"train.augment_seed": 9}):
        assert stage1_path(with_overrides(cfg, change), tmp_path) != path, change
    # the same run spelt out is the same checkpoint (and a run that sets none keeps its old key)
    same = {"train.init_seed": 3, "train.order_seed": 3, "train.augment_seed": 3, "dataset.partition_seed": 0}
    assert stage1_path(with_overrides(cfg, same), tmp_path) == path
    # two arms of one cell (FMCE and NFMCE, same seeds and partition) share one stage-1 run
    cell = {"dataset.partition_seed": 5, "train.init_seed": 7, "train.order_seed": 8, "train.augment_seed": 9}
    fmce = with_overrides(cfg, {**cell, "model.constraint.on": True})
    nfmce = with_overrides(cfg, {**cell, "model.constraint.on": False})
    assert stage1_path(fmce, tmp_path) == stage1_path(nfmce, tmp_path) != path


class _SyncTrap:
    """Records every call, made from ablate's own code, that would make the host wait for the
    device: reading a value (item, tolist, cpu, numpy, bool, float, int, index), a copy to a
    device that is not non_blocking, a tensor made from host data on a device, a synchronize."""

    READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")

    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        for name in self.READS:
            monkeypatch.setattr(torch.Tensor, name, self._wrap(getattr(torch.Tensor, name), name, lambda *a, **k: True))
        monkeypatch.setattr(torch.Tensor, "to", self._wrap(torch.Tensor.to, "to", self._blocking_copy))
        for fn in ("tensor", "as_tensor"):
            monkeypatch.setattr(torch, fn, self._wrap(getattr(torch, fn), fn, lambda *a, **k: "device" in k))
        monkeypatch.setattr(torch.cuda, "synchronize", self._wrap(torch.cuda.synchronize, "synchronize",
                                                                  lambda *a, **k: True))

    @staticmethod
    def _blocking_copy(*args, **kwargs) -> bool:
        to_device = "device" in kwargs or any(isinstance(a, (torch.device, str, torch.Tensor)) for a in args[1:])
        return to_device and not kwargs.get("non_blocking", False)

    def _wrap(self, real, name, counts):
        def wrapped(*args, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith("ablate.") and counts(*args, **kwargs):
                self.calls.append(f"{name} from {caller}")
            return real(*args, **kwargs)

        return wrapped


@pytest.mark.parametrize("fused", [False, True])
def test_a_training_step_makes_no_host_sync(small_cfg, tmp_path, monkeypatch, fused):
    """The epoch's random numbers are drawn and moved before its first step; the steps then cut,
    augment, normalise, forward, backward and step without one host sync. The epoch's sums are
    read once, after its last step (the trap sees that read: it would see one in a step)."""
    cfg = with_overrides(small_cfg, {"dataset.augment": True})
    cpu = torch.device("cpu")
    images = load_images(cfg.dataset, tmp_path)
    cfgs = [cfg, with_overrides(cfg, {"train.seed": 1, "dataset.partition_seed": 3})] if fused else [cfg]
    data = on_device(images, [split_indices(images.labels, c.dataset) for c in cfgs], cpu)
    models = seeded_models(cfgs, images.num_classes, cpu)
    learner = FusedLearner(cfgs, models, cpu) if fused else LoneLearner(cfg, models[0], cpu)
    streams = [learner.stream(d.train, k) for k, d in enumerate(data)]  # the epoch's draws and copies
    batches = ((torch.stack([b[0] for b in bs]), torch.stack([b[1] for b in bs])) for bs in zip(*streams)) \
        if fused else streams[0]
    trap = _SyncTrap(monkeypatch)
    sums = train_epoch(learner.step_model, learner.opt, batches, learner.objective, learner.numerics,
                       EpochSums.zeros((len(cfgs),) if fused else (), cpu))
    assert sums.images == 32 and trap.calls == []
    sums.means()
    assert trap.calls and all(call.startswith("tolist from ablate.train.loop") for call in trap.calls)
