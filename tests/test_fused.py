"""ablate.train.fused: a fused seed is the same experiment as the seed alone.

Fused and lone runs of the same seeds are compared on what must agree exactly or to float
tolerance: the batches each seed sees, in order, and the losses of the first epochs. Final
accuracies are not compared: tiny float differences grow chaotically over training, so any
tolerance would be either seed-noise wide or flaky (issue 11).
"""

from __future__ import annotations

import pytest
import torch

import ablate.train.selfcheck
from ablate.config import ModelConfig, parse_study, with_overrides
from ablate.data import DeviceImages
from ablate.errors import ConfigError
from ablate.models import build_model
from ablate.records import TrialResult
from ablate.seeding import seed_everything
from ablate.train import (TOLERANCES, FusedModel, FusionCheck, check_fused_step, check_fusable, fusion_ok, numerics,
                          stage1_path, train_fused, train_run)
from tests.conftest import tiny_study_text

RTOL = 1e-4


@pytest.fixture(scope="module")
def run_cfg():
    # 60 digits at 16 px: 36 training images, 4 steps of 8 an epoch; 12 validation, 12 test.
    # timm's tiny test_resnet (BatchNorm, 4 stages) keeps a run under a second;
    # seresnet18 is checked step by step below.
    # fp32, not auto: RTOL is float32's reduction-order noise, and auto is bf16 on a CPU with native
    # bf16 (there a bf16 fused and lone first loss differ by 1e-3, bf16's own rounding).
    cfg = parse_study(tiny_study_text(epochs=2)).run
    return with_overrides(cfg, {"dataset.subset": 60, "train.batch_size": 8, "model.kind": "single",
                                "model.backbone": "test_resnet", "train.precision": "fp32"})


def _seeds(cfg, seeds):
    return [with_overrides(cfg, {"train.seed": s}) for s in seeds]


@pytest.fixture
def batch_log(monkeypatch):
    """Every training batch drawn, by the seed of the generator that drew its order: {seed: [(x, y), ...]}."""
    log: dict[int, list] = {}
    real = DeviceImages.batches

    def recording(self, batch_size, *, order=None, augment=None, drop_last=False):
        batches = real(self, batch_size, order=order, augment=augment, drop_last=drop_last)
        if order is None:  # evaluation: no order drawn
            return batches
        return _logged(batches, log.setdefault(order.initial_seed(), []))

    monkeypatch.setattr(DeviceImages, "batches", recording)
    return log


def _logged(batches, into: list):
    for x, y in batches:
        into.append((x.clone(), y.clone()))
        yield x, y


def _assert_same_batches(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)


def _assert_same_first_epoch(fused: TrialResult, lone: TrialResult) -> None:
    """The first epoch's 4 steps. Later epochs drift apart: float differences of 1e-7 between a
    grouped and a plain convolution reach 4e-4 within 8 steps (measured, seresnet18, 2
    threads), as AdamW turns near-zero gradients into steps of the full learning rate."""
    assert [e.epoch for e in fused.curves] == [e.epoch for e in lone.curves]
    for f, l in zip(fused.curves[:1], lone.curves[:1]):
        assert f.train_loss == pytest.approx(l.train_loss, rel=RTOL)
        assert f.lr == l.lr
        if l.penalty is None:
            assert f.penalty is None
        else:
            assert f.penalty == pytest.approx(l.penalty, rel=RTOL)


def _two_models(cfg: ModelConfig, wrap=lambda m: m) -> list[torch.nn.Module]:
    """Seeds 0 and 1 of ``cfg`` in train mode, each built right after its seed is set."""
    models = []
    for seed in (0, 1):
        seed_everything(seed)
        models.append(wrap(build_model(cfg, num_classes=10, image_size=16).train()))
    return models


@pytest.mark.parametrize("fused_kernel", [None, True])
def test_adamw_on_stacked_tensors_is_k_adamws(fused_kernel):
    """Elementwise, so one AdamW over stacked tensors is K AdamWs: the for-each kernel and the
    fused kernel (``fused=True``, what CUDA runs) alike."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 3, 3, 3), (4,), (10, 4)]
    lone = [[torch.randn(s, generator=gen).requires_grad_() for s in shapes] for _ in range(3)]
    stacked = [torch.stack([p[i].detach() for p in lone]).requires_grad_() for i in range(len(shapes))]
    opts = [torch.optim.AdamW(p, lr=1e-2, weight_decay=5e-4, fused=fused_kernel) for p in lone]
    fused = torch.optim.AdamW(stacked, lr=1e-2, weight_decay=5e-4, fused=fused_kernel)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(fused, T_max=5)
    scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5) for o in opts]
    for _ in range(5):
        grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(3)]
        for params, g in zip(lone, grads):
            for p, gi in zip(params, g):
                p.grad = gi
        for i, p in enumerate(stacked):
            p.grad = torch.stack([g[i] for g in grads])
        for o, s in zip(opts, scheds):
            o.step()
            s.step()
        fused.step()
        sched.step()
    for i, p in enumerate(stacked):
        for k in range(3):
            torch.testing.assert_close(p[k], lone[k][i], rtol=0, atol=1e-7)


@pytest.mark.parametrize("kind", ["single", "dual"])
def test_one_fused_step_is_each_model_alone(kind):
    """Outputs, gradients and BatchNorm running statistics, model by model; model1 frozen in eval mode."""
    cfg = ModelConfig(kind=kind, backbone="seresnet18", model1={"init": "random", "freeze": True})
    models = _two_models(cfg)
    fused = FusedModel(models).train()
    x = torch.randn(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(0))  # (K, B, 3, S, S)
    logits, map1, map2 = fused(x)
    logits.square().sum().backward()
    grads = {n: p.grad for n, p in fused.stacked.named_parameters() if p.requires_grad}
    state = fused.stacked.state_dict()
    for k, m in enumerate(models):
        lone_logits, lone_map1, lone_map2 = m(x[k])
        torch.testing.assert_close(logits[k], lone_logits, rtol=1e-5, atol=1e-5)
        if kind == "dual":
            torch.testing.assert_close(map1[k], lone_map1, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(map2[k], lone_map2, rtol=1e-5, atol=1e-5)
        else:
            assert map1 is None and map2 is None
        lone_logits.square().sum().backward()
        for n, p in m.named_parameters():
            if p.requires_grad:
                # A gradient element is a float32 sum over the batch and every position, taken in
                # another order by the grouped (vmapped) convolution than by the lone one: its
                # rounding error scales with the tensor's magnitudes, not with that element's own
                # value, which may cancel to near zero. So the absolute tolerance is 1e-5 of the
                # tensor's largest gradient (about 80 float32 ulps of it). Measured on the 2-core
                # CPU, 1 and 2 threads: at most 7.5e-6 of it beyond rtol (seresnet18, layer1.1.bn2);
                # the stem's 4.5e-5 against its largest gradient of 31. An element off by more
                # than 1e-5 of its tensor's scale (plus 1e-4 of itself) still fails: a seed given
                # another seed's batch, gradient or BatchNorm statistics is off by its own size.
                scale = p.grad.abs().max().item()
                torch.testing.assert_close(grads[n][k], p.grad, rtol=1e-4, atol=1e-5 * scale)
            else:
                assert n not in grads
        for n, b in m.state_dict().items():  # running means, variances, batch counts
            torch.testing.assert_close(state[n][k], b, rtol=1e-5, atol=1e-6)
    if kind == "dual":  # a frozen model1 ran in eval mode: its statistics did not move
        assert not fused.template.model1.training and fused.template.model2.training
        assert int(state["model1.bn1.num_batches_tracked"][0]) == 0
        assert int(state["model2.bn1.num_batches_tracked"][0]) == 1


def test_fused_seeds_see_their_lone_batches_and_have_their_lone_losses(run_cfg, tmp_path, batch_log):
    """Runs that differ in their seeds fuse: seed 1 draws its own train / validation partition,
    seed 2 its own initialisation, order and augmentation seeds; each sees its lone batches."""
    cfgs = [with_overrides(run_cfg, {"train.seed": 0}),
            with_overrides(run_cfg, {"train.seed": 1, "dataset.partition_seed": 3}),
            with_overrides(run_cfg, {"train.seed": 2, "train.init_seed": 9, "train.order_seed": 7,
                                     "train.augment_seed": 8})]
    seen = {s: [] for s in (0, 1, 2)}
    fused = train_fused(cfgs, base=tmp_path, on_epoch=[seen[s].append for s in (0, 1, 2)])
    fused_batches = dict(batch_log)
    batch_log.clear()
    lone = [train_run(c, base=tmp_path) for c in cfgs]

    assert all(isinstance(r, TrialResult) for r in fused)
    for s, order, f, l in zip((0, 1, 2), (0, 1, 7), fused, lone):
        assert len(fused_batches[order]) == 2 * 4  # 2 epochs of 4 steps
        _assert_same_batches(fused_batches[order], batch_log[order])
        _assert_same_first_epoch(f, l)
        assert seen[s] == list(f.curves)  # each seed's callback got its own seed's epochs
        assert f.extras["fused"] == {"k": 3, "index": s, "seeds": [0, 1, 2], "precision": "fp32"}
        assert (f.n_params, f.n_trainable, f.head_similarity) == (l.n_params, l.n_trainable, None)
        assert f.val_accuracy == max(e.val_accuracy for e in f.curves)
        assert f.curves[f.best_epoch - 1].val_accuracy == f.val_accuracy
        # every seed predicts every example of the one test split, at its best epoch
        assert f.predictions.example == l.predictions.example == fused[0].predictions.example
        assert f.predictions.label == l.predictions.label and len(f.predictions.example) == f.n_test == 12
        assert f.test_accuracy == sum(a == b for a, b in zip(f.predictions.label, f.predictions.predicted)) / 12
    # (seed 1's lone run trains on partition 3's training split: the same batches fused mean the same split)
    # per-seed records are per seed: different data orders, different losses
    assert len({f.curves[0].train_loss for f in fused}) == 3


def test_fused_dueheadnet_trains_its_stage1_runs_fused_and_matches_lone_runs(run_cfg, tmp_path, batch_log):
    dual = with_overrides(run_cfg, {"model.kind": "dual", "model.model1.init": "stage1", "train.epochs": 1,
                                    "train.precision": "fp32"})  # resolved, as the stage-1 key holds it
    cfgs = _seeds(dual, (3, 4))
    cache = tmp_path / "ck"
    logs = []
    fused = train_fused(cfgs, base=tmp_path, cache_dir=cache, log=logs.append)
    assert len(logs) == 1 and "seeds 3, 4" in logs[0] and "fused" in logs[0]  # one fused stage-1 run for both
    fused_batches = dict(batch_log)
    batch_log.clear()
    lone = [train_run(c, base=tmp_path, cache_dir=cache) for c in cfgs]
    for c, f, l in zip(cfgs, fused, lone):
        assert f.extras["stage1"]["checkpoint"] == stage1_path(c, cache).name and f.extras["stage1"]["reused"] is False
        assert f.extras["stage1"]["recipe"] == l.extras["stage1"]["recipe"]  # the same stage-1 recipe and key
        assert f.extras["stage1"]["key"] == l.extras["stage1"]["key"]
        assert l.extras["stage1"]["reused"] is True  # the lone run found the fused stage-1 checkpoint
        seed = c.train.seed
        # fused: stage 1 (1 epoch of 4 steps), then DueHeadNet (4 steps), drawn as the lone DueHeadNet draws
        _assert_same_batches(fused_batches[seed][4:], batch_log[seed])
        _assert_same_first_epoch(f, l)
        assert f.n_trainable < f.n_params and -1.0 <= f.head_similarity <= 1.0
        assert f.head_similarity == pytest.approx(l.head_similarity, abs=0.05)
    a, b = (torch.load(stage1_path(c, cache), weights_only=True) for c in cfgs)
    assert a.keys() == b.keys() and not torch.equal(a["fc.weight"], b["fc.weight"])  # each seed its own stage-1 model


def test_a_callback_that_raises_stops_only_its_own_seed(run_cfg, tmp_path):
    class Pruned(Exception):
        pass

    def prune(stats):
        raise Pruned(stats.epoch)

    outcomes = train_fused(_seeds(run_cfg, (0, 1)), base=tmp_path, on_epoch=[None, prune])
    assert isinstance(outcomes[0], TrialResult) and len(outcomes[0].curves) == 2
    assert isinstance(outcomes[1], Pruned) and outcomes[1].args == (1,)


def test_only_configs_that_differ_in_their_seeds_fuse(run_cfg):
    check_fusable(_seeds(run_cfg, (0, 1)))
    check_fusable([run_cfg, with_overrides(run_cfg, {"train.seed": 1, "train.init_seed": 4, "train.order_seed": 5,
                                                     "train.augment_seed": 6, "dataset.partition_seed": 7})])
    with pytest.raises(ConfigError, match=r"also differs in dataset.split_seed"):
        check_fusable([run_cfg, with_overrides(run_cfg, {"train.seed": 1, "dataset.split_seed": 1})])
    with pytest.raises(ConfigError, match=r"differ only in their seeds .*; seed 1 also differs in train.lr"):
        check_fusable([run_cfg, with_overrides(run_cfg, {"train.seed": 1, "train.lr": 1e-2})])
    with pytest.raises(ConfigError, match="seeds must differ"):
        check_fusable([run_cfg, run_cfg])
    with pytest.raises(ConfigError, match="no configs"):
        check_fusable([])
    with pytest.raises(ConfigError, match="2 configs but 1 on_epoch"):
        train_fused(_seeds(run_cfg, (0, 1)), on_epoch=[None])


def test_precision_names():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert numerics("fp32", cuda).precision == "fp32" and numerics("bf16", cpu).precision == "bf16"
    assert numerics("auto", cuda).precision == "bf16"
    assert numerics("auto", cpu).precision in ("fp32", "bf16")
    with pytest.raises(ConfigError, match="expected auto, fp32 or bf16"):
        numerics("fp16", cpu)


# bf16 BatchNorm under vmap: measured with seresnet18 at 16 px, 8 images a seed, on the 2-core CPU:
# logits within 0.007 of their largest value, gradients within 0.018 of their tensor's largest,
# running statistics within 1e-5 (both sides round the same bf16 inputs and weights; only the
# order of the sums differs). The bound leaves room for other CPUs and thread counts; a seed
# given another seed's batch or gradient is off by about its own size.
BF16_TOLERANCE = 0.05


def _bf16_like_cuda_autocast(model: torch.nn.Module) -> torch.nn.Module:
    """Convolutions and the classifier in bf16, BatchNorm in float32: the mix CUDA autocast hands
    a BatchNorm (bf16 activations, float32 weights and running statistics)."""
    model.to(torch.bfloat16)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.float()
    return model


@pytest.mark.parametrize("kind", ["single", "dual"])
def test_fused_batchnorm_takes_bf16_activations(kind):
    """The path CUDA autocast takes, forced on the CPU: vmap over batch_norm with bf16 input and
    float32 statistics fails in torch itself (pytorch issues 192617, 184890); FusedModel computes
    its BatchNorm in float32 and matches each model alone within BF16_TOLERANCE."""
    cfg = ModelConfig(kind=kind, backbone="seresnet18", model1={"init": "random", "freeze": True})
    models = _two_models(cfg, _bf16_like_cuda_autocast)
    fused = FusedModel(models).train()
    x = torch.randn(2, 8, 3, 16, 16, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    logits, _, _ = fused(x)
    assert logits.dtype == torch.bfloat16
    logits.float().square().sum().backward()
    grads = {n: p.grad for n, p in fused.stacked.named_parameters() if p.requires_grad}
    state = fused.stacked.state_dict()
    for k, m in enumerate(models):
        lone_logits, _, _ = m(x[k])
        lone_logits.float().square().sum().backward()
        torch.testing.assert_close(logits[k].float(), lone_logits.float(), rtol=0,
                                   atol=BF16_TOLERANCE * lone_logits.float().abs().max().item())
        for n, p in m.named_parameters():
            if p.requires_grad:
                scale = p.grad.float().abs().max().item()
                torch.testing.assert_close(grads[n][k].float(), p.grad.float(), rtol=0, atol=BF16_TOLERANCE * scale)
        for n, b in m.state_dict().items():
            torch.testing.assert_close(state[n][k].float(), b.float(), rtol=0,
                                       atol=BF16_TOLERANCE * b.float().abs().max().item() + 1e-6)


# ---------------------------------------------------------------------------------------------
# The self-check: fused training is used on a device only after it matches lone training there


@pytest.fixture
def fresh_checks(monkeypatch):
    monkeypatch.setattr(ablate.train.selfcheck, "FUSION_CHECKS", {})


def test_the_fusion_check_passes_in_fp32_and_is_remembered(run_cfg, fresh_checks, monkeypatch):
    check = check_fused_step(run_cfg)
    assert check.ok and check.numbers == "fp32" and check.tolerance == TOLERANCES["fp32"]
    assert set(check.worst) == {"loss", "gradients", "buffers"} and all(0 <= v <= 1 for v in check.worst.values())
    assert "match them alone" in check.reason and "\n" not in check.reason
    calls = []
    real = ablate.train.selfcheck.check_fused_step
    monkeypatch.setattr(ablate.train.selfcheck, "check_fused_step", lambda cfg: calls.append(cfg) or real(cfg))
    first = fusion_ok(run_cfg)
    assert first[0] and fusion_ok(with_overrides(run_cfg, {"train.seed": 7, "train.lr": 1e-3})) == first
    assert len(calls) == 1  # once per device, torch version, precision and model
    fusion_ok(with_overrides(run_cfg, {"model.kind": "dual"}))
    assert len(calls) == 2


def test_a_fused_step_that_differs_from_lone_fails_the_check_with_its_reason(run_cfg, fresh_checks, monkeypatch):
    real = FusedModel.forward

    def off(self, x, shared=False):  # seed 1 computes something else
        logits, map1, map2 = real(self, x, shared)
        return logits * torch.tensor([1.0, 1.5]).view(2, 1, 1), map1, map2

    monkeypatch.setattr(FusedModel, "forward", off)
    ok, reason = fusion_ok(run_cfg)
    assert not ok and "seed 1" in reason and "times the fp32 tolerance" in reason and "\n" not in reason


def test_fusion_that_cannot_run_is_refused_never_raised(run_cfg, fresh_checks, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("expected scalar type BFloat16 but found Float\nmore")

    monkeypatch.setattr(torch, "vmap", broken)
    ok, reason = fusion_ok(run_cfg)
    assert not ok and reason.endswith("RuntimeError: expected scalar type BFloat16 but found Float")
    ok, reason = fusion_ok(with_overrides(run_cfg, {"model.kind": "ensemble"}))
    assert not ok and "ensemble" in reason


def test_an_out_of_memory_check_is_asked_again_and_other_answers_are_kept(run_cfg, fresh_checks, monkeypatch):
    calls, raising = [], [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")]

    def check(cfg):
        calls.append(cfg)
        if raising:
            raise raising.pop()
        return FusionCheck(True, "cpu", torch.__version__, "fp32", "fp32", TOLERANCES["fp32"], {}, {}, "matches")

    monkeypatch.setattr(ablate.train.selfcheck, "check_fused_step", check)
    ok, reason = fusion_ok(run_cfg)
    assert not ok and "OutOfMemoryError: CUDA out of memory" in reason and "checked again next time" in reason
    assert fusion_ok(run_cfg) == (True, "matches") and fusion_ok(run_cfg) == (True, "matches")
    assert len(calls) == 2  # the out-of-memory answer was not kept; the next one was
    raising.append(RuntimeError("vmap: no batching rule"))
    other = with_overrides(run_cfg, {"model.head": "mlp"})
    first = fusion_ok(other)
    assert not first[0] and "no batching rule" in first[1] and "next time" not in first[1]
    assert fusion_ok(other) == first and len(calls) == 3  # a lasting failure is kept


@pytest.mark.parametrize("change", [{"model.head": "mlp"}, {"dataset.image_size": 24}, {"train.compile": True}])
def test_what_changes_the_checked_step_is_checked_anew(run_cfg, fresh_checks, monkeypatch, change):
    calls = []
    monkeypatch.setattr(ablate.train.selfcheck, "check_fused_step", lambda cfg: calls.append(cfg) or FusionCheck(
        True, "cpu", torch.__version__, "fp32", "fp32", TOLERANCES["fp32"], {}, {}, "matches"))
    fusion_ok(run_cfg)
    fusion_ok(with_overrides(run_cfg, change))
    assert len(calls) == 2 and calls[1].model_dump() == with_overrides(run_cfg, change).model_dump()


def test_with_compile_on_the_reason_says_the_compiled_step_is_not_checked(run_cfg, fresh_checks):
    ok, reason = fusion_ok(with_overrides(run_cfg, {"train.compile": True}))
    assert ok and reason.endswith("the compiled step (train.compile) is not checked, only the eager one")
    assert "compiled" not in fusion_ok(run_cfg)[1]


def test_a_fused_model_moved_after_a_step_trains_its_new_tensors():
    """forward's parameter and buffer dicts are kept between steps; a conversion (.to(), here a
    round trip through bf16) puts new buffers in place of the old, and the next step must update
    those, not the old ones."""
    cfg = ModelConfig(kind="single", backbone="test_resnet")
    fused = FusedModel(_two_models(cfg)).train()
    x = torch.randn(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(0))  # (K, B, 3, S, S)
    fused(x)
    old = dict(fused.stacked.named_buffers())
    fused.bfloat16().float()
    new = {n: b for n, b in fused.stacked.named_buffers() if n.endswith("running_mean")}
    assert new and all(b is not old[n] for n, b in new.items())
    before = {n: b.clone() for n, b in new.items()}
    fused(x)
    assert all(not torch.equal(new[n], b) for n, b in before.items())
