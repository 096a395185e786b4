"""The models compared in FMCE: a single timm backbone, and DueHeadNet (two backbones, maps summed).

DueHeadNet follows the paper's public code: ``model1`` (the "pretrained" head) and ``model2``
(a fresh ``timm.create_model``) both run ``forward_features`` on the same image; the two
(B, C, H, W) maps are summed and one classifier turns the sum into logits. The FMCE penalty
is the cosine similarity of model2's map to model1's map, with model1's map as a detached
target, so minimising it pushes model2 toward features model1 does not have.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ablate.config import ModelConfig
from ablate.errors import ModelError

__all__ = [
    "SERESNETS",
    "check_backbone",
    "create_backbone",
    "SingleHeadNet",
    "DueHeadNet",
    "build_model",
    "fmce_penalty",
    "head_similarity",
    "count_parameters",
]

SERESNETS = ("seresnet18", "seresnet34", "seresnet50", "seresnet101", "seresnet152")


def check_backbone(name: str) -> None:
    """Raises ModelError unless ``name`` is a timm model name."""
    import timm

    if name in SERESNETS or timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ModelError(
        f"model.backbone: unknown backbone {name!r}{hint}; expected a timm model name, "
        f"e.g. {', '.join(SERESNETS)}"
    )


def create_backbone(name: str, num_classes: int, *, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    """A timm model; ImageNet weights come only from a local file or the local Hugging Face cache."""
    import timm

    check_backbone(name)
    if not pretrained:
        return timm.create_model(name, num_classes=num_classes)
    file = weights or _cached_imagenet_weights(name)
    if weights is not None and not Path(weights).is_file():
        raise ModelError(f"model.model1.weights: file {weights} does not exist")
    return timm.create_model(name, num_classes=num_classes, pretrained=True, pretrained_cfg_overlay={"file": file})


def _cached_imagenet_weights(name: str) -> str:
    """The local path of timm's ImageNet weights for ``name``; never touches the network."""
    from huggingface_hub import constants, try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        raise ModelError(
            f"model.model1.init: imagenet: timm has no ImageNet weights for {name!r} "
            f"(among SE-ResNets only seresnet50 has them); use init: stage1 or random, "
            f"or give a checkpoint file as model.model1.weights"
        )
    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(hub_id, filename)
        if isinstance(path, str):
            return path
    raise ModelError(
        f"model.model1.init: imagenet: no local weights for {name!r} and no network; download "
        f"{hub_id} into the Hugging Face cache ({constants.HF_HUB_CACHE}) or set "
        f"model.model1.weights: /path/to/{name}.safetensors"
    )


class SingleHeadNet(nn.Module):
    """One timm backbone with its own pooling and classifier (the paper's single-head baseline)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return self.backbone(x), None, None


class DueHeadNet(nn.Module):
    """Two backbones on the same image; feature maps summed; one classifier.

    Args:
        model1: the first head. With ``freeze`` it runs under ``no_grad`` in eval mode and
            costs only its forward pass (no gradient buffers, BatchNorm statistics fixed).
        model2: the second head, always trained.
        head: ``linear`` (global average pool of the sum, then Linear) or ``mlp`` (flatten the
            summed map, Linear(C*H*W, 512), GELU, Linear(512, classes), as in the paper's code).
        image_size: needed by the ``mlp`` head to size its first layer.
    """

    def __init__(self, model1: nn.Module, model2: nn.Module, num_classes: int, *, head: str = "linear",
                 freeze: bool = True, image_size: int = 32):
        super().__init__()
        for m in (model1, model2):
            m.reset_classifier(0)  # the per-backbone classifiers are unused: drop their weights
        self.model1, self.model2, self.freeze = model1, model2, freeze
        if freeze:
            model1.requires_grad_(False)
        channels = model2.num_features
        if head == "linear":
            self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
        elif head == "mlp":
            h, w = _feature_hw(model2, image_size)
            self.classifier = nn.Sequential(
                nn.Flatten(), nn.Linear(channels * h * w, 512), nn.GELU(), nn.Linear(512, num_classes)
            )
        else:
            raise ModelError(f"model.head: unknown head {head!r}; expected linear or mlp")

    def train(self, mode: bool = True) -> DueHeadNet:
        super().train(mode)
        if self.freeze:
            self.model1.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (logits (B, K), map1 (B, C, H, W), map2 (B, C, H, W))."""
        if self.freeze:
            with torch.no_grad():
                map1 = self.model1.forward_features(x)
        else:
            map1 = self.model1.forward_features(x)
        map2 = self.model2.forward_features(x)
        return self.classifier(map1 + map2), map1, map2


def _feature_hw(backbone: nn.Module, image_size: int) -> tuple[int, int]:
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        fmap = backbone.forward_features(torch.zeros(1, 3, image_size, image_size))
    backbone.train(was_training)
    return fmap.shape[-2], fmap.shape[-1]


def build_model(cfg: ModelConfig, num_classes: int, image_size: int, model1_state: dict | None = None) -> nn.Module:
    """The model a run trains. ``model1_state`` is a stage-1 single-head checkpoint for model1."""
    if cfg.kind == "single":
        return SingleHeadNet(create_backbone(cfg.backbone, num_classes))
    if cfg.model1.init == "imagenet":
        model1 = create_backbone(cfg.backbone, num_classes, pretrained=True, weights=cfg.model1.weights)
    else:
        model1 = create_backbone(cfg.backbone, num_classes)
        if cfg.model1.init == "stage1":
            if model1_state is None:
                raise ModelError("model.model1.init: stage1 needs the stage-1 checkpoint")
            model1.load_state_dict(model1_state)
    model2 = create_backbone(cfg.backbone, num_classes)
    return DueHeadNet(model1, model2, num_classes, head=cfg.head, freeze=cfg.model1.freeze, image_size=image_size)


def fmce_penalty(map2: torch.Tensor, map1: torch.Tensor, target: str = "map") -> torch.Tensor:
    """Mean cosine similarity of model2's features to model1's (detached) features.

    ``map``: along channels at every spatial location, averaged over batch and locations
    (``F.cosine_similarity(map2, map1, dim=1).mean()``, the paper's code). ``pooled``: the
    cosine of the globally pooled (B, C) vectors. 1 for identical features, 0 for orthogonal.
    """
    map1 = map1.detach()
    if target == "pooled":
        return F.cosine_similarity(map2.mean(dim=(2, 3)), map1.mean(dim=(2, 3)), dim=1).mean()
    return F.cosine_similarity(map2, map1, dim=1).mean()


def head_similarity(map1: torch.Tensor, map2: torch.Tensor) -> torch.Tensor:
    """Per-image mean cosine similarity of the two heads' maps, (B,)."""
    return F.cosine_similarity(map2.float(), map1.float(), dim=1).flatten(1).mean(1)


@dataclass(frozen=True)
class ParamCount:
    total: int
    trainable: int


def count_parameters(model: nn.Module) -> ParamCount:
    params = list(model.parameters())
    return ParamCount(sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad))
