from __future__ import annotations

import pytest
import timm
import torch

from ablate.config import ModelConfig
from ablate.errors import ModelError
from ablate.models import (
    SERESNETS,
    DueHeadNet,
    build_model,
    check_backbone,
    count_parameters,
    create_backbone,
    fmce_penalty,
)


def test_penalty_is_one_for_identical_maps_and_zero_for_orthogonal_ones():
    a = torch.zeros(2, 4, 3, 3)
    a[:, 0] = 1.0
    b = torch.zeros(2, 4, 3, 3)
    b[:, 1] = 2.0
    assert fmce_penalty(a, a).item() == pytest.approx(1.0)
    assert fmce_penalty(b, a).item() == pytest.approx(0.0)
    assert fmce_penalty(-a, a).item() == pytest.approx(-1.0)
    assert fmce_penalty(b, a, target="pooled").item() == pytest.approx(0.0)
    assert fmce_penalty(a * 3, a, target="pooled").item() == pytest.approx(1.0)


def test_penalty_is_averaged_over_locations():
    target = torch.zeros(1, 2, 1, 2)
    target[0, 0] = 1.0  # both locations point along channel 0
    x = torch.zeros(1, 2, 1, 2)
    x[0, 0, 0, 0] = 1.0  # location 0: identical (cos 1)
    x[0, 1, 0, 1] = 1.0  # location 1: orthogonal (cos 0)
    assert fmce_penalty(x, target).item() == pytest.approx(0.5)


def _tiny_dual(freeze: bool) -> DueHeadNet:
    torch.manual_seed(0)
    m1, m2 = create_backbone("seresnet18", 3), create_backbone("seresnet18", 3)
    return DueHeadNet(m1, m2, 3, freeze=freeze, image_size=16)


def test_gradient_reaches_model2_but_not_a_frozen_model1():
    net = _tiny_dual(freeze=True).train()
    x = torch.randn(4, 3, 16, 16)
    logits, map1, map2 = net(x)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])) + fmce_penalty(map2, map1)
    loss.backward()
    assert all(p.grad is None for p in net.model1.parameters())
    assert not any(p.requires_grad for p in net.model1.parameters())
    assert all(p.grad is not None for p in net.model2.parameters() if p.requires_grad)
    assert net.classifier[-1].weight.grad.abs().sum() > 0
    assert not net.model1.training and net.model2.training  # frozen BN statistics stay fixed


def test_penalty_gradient_does_not_reach_unfrozen_model1_through_the_target():
    net = _tiny_dual(freeze=False).train()
    _, map1, map2 = net(torch.randn(4, 3, 16, 16))
    fmce_penalty(map2, map1).backward()
    assert all(p.grad is None for p in net.model1.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.model2.parameters())


@pytest.mark.parametrize("backbone", SERESNETS)
def test_logits_shapes_and_parameter_counts(backbone):
    torch.manual_seed(0)
    classes = 7
    features = timm.create_model(backbone, num_classes=0).num_features
    trunk = sum(p.numel() for p in timm.create_model(backbone, num_classes=0).parameters())
    x = torch.randn(2, 3, 16, 16)
    single = build_model(ModelConfig(kind="single", backbone=backbone), classes, 16).eval()
    dual = build_model(ModelConfig(backbone=backbone, model1={"init": "random"}), classes, 16).eval()
    with torch.no_grad():
        assert single(x)[0].shape == (2, classes)
        logits, map1, map2 = dual(x)
    assert logits.shape == (2, classes)
    assert map1.shape == map2.shape and map1.shape[:2] == (2, features)
    assert features == (512 if backbone in ("seresnet18", "seresnet34") else 2048)
    linear = features * classes + classes
    assert count_parameters(single).total == trunk + linear
    dual_counts = count_parameters(dual)
    assert dual_counts.total == 2 * trunk + linear
    assert dual_counts.trainable == trunk + linear  # model1 frozen


def test_mlp_head_follows_the_paper_code():
    net = build_model(ModelConfig(head="mlp", model1={"init": "random"}), 5, 32).eval()
    first, last = net.classifier[1], net.classifier[3]
    assert (first.in_features, first.out_features) == (512 * 1 * 1, 512)
    assert isinstance(net.classifier[2], torch.nn.GELU) and last.out_features == 5
    assert net(torch.randn(2, 3, 32, 32))[0].shape == (2, 5)


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ModelError) as info:
        check_backbone("seresnet19")
    assert "seresnet18" in str(info.value) and "seresnet152" in str(info.value)


def test_imagenet_init_offline_says_where_to_put_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="model.model1.weights"):
        build_model(ModelConfig(backbone="seresnet50", model1={"init": "imagenet"}), 3, 16)
    with pytest.raises(ModelError, match="no ImageNet weights for 'seresnet18'"):
        build_model(ModelConfig(backbone="seresnet18", model1={"init": "imagenet"}), 3, 16)


def test_imagenet_init_loads_a_local_file(tmp_path):
    torch.manual_seed(1)
    reference = timm.create_model("seresnet18", num_classes=1000)
    path = tmp_path / "seresnet18.pth"
    torch.save(reference.state_dict(), path)
    net = build_model(ModelConfig(model1={"init": "imagenet", "weights": str(path)}), 3, 16)
    assert torch.equal(net.model1.conv1.weight, reference.conv1.weight)
