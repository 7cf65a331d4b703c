"""Residual networks: the Padova skip-connection CNN and ResNet-18/34 adapted to small inputs.

- ``skip-cnn``: three residual blocks 32/64/128, each with a 1x1 projection shortcut and a 2x2
  max-pool after it, global average pooling, dense 64, dropout 0.3 (~0.31 M params, Padova study).
- ``resnet18`` / ``resnet34``: He et al.'s basic-block ResNets (widths 64-128-256-512, depths
  2-2-2-2 / 3-4-6-3, an 8-way linear head: 11,180,616 / 21,288,776 params with the ImageNet stem).
  ``stem="auto"`` keeps the ImageNet stem (7x7 stride-2 conv + max-pool) when the input is large
  enough to end at >= 4 px (128 and 224 px) and otherwise swaps in a 3x3 stride-1 conv, followed by
  a max-pool only if the input can afford it (64 px), so 28 px inputs end at 4x4, not 1x1.
  Every ResNet takes ``attention`` ('se', 'sa', 'cbam') inside each block and ``drop_path``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from edgeblood.models.blocks import FeaturesPoolHead, ResidualBlock, conv_bn_act, downsample_plan, dropout_linear, global_pool
from edgeblood.models.registry import register_model


class SkipCNN(FeaturesPoolHead):
    def __init__(
        self,
        num_classes: int = 8,
        in_size: int = 28,
        widths: Sequence[int] = (32, 64, 128),
        hidden: int = 64,
        dropout: float = 0.3,
        attention: str | None = None,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        n_pools = downsample_plan(in_size, len(widths), min_final=3)
        for i, width in enumerate(widths):
            layers.append(ResidualBlock(c_in, width, attention=attention, project=True))
            if i < n_pools:
                layers.append(nn.MaxPool2d(2))
            c_in = width
        self.features = nn.Sequential(*layers)
        self.pool = global_pool()
        self.head = nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes))


class ResNet(FeaturesPoolHead):
    def __init__(
        self,
        num_classes: int = 8,
        in_size: int = 28,
        depths: Sequence[int] = (2, 2, 2, 2),
        widths: Sequence[int] = (64, 128, 256, 512),
        stem: str = "auto",
        attention: str | None = None,
        drop_path: float = 0.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        if len(depths) != len(widths):
            raise ValueError("depths and widths need one entry per stage")
        stage_downs = len(widths) - 1
        if stem == "auto":
            stem_downs = max(0, downsample_plan(in_size, stage_downs + 2) - stage_downs)
            stem = {0: "small", 1: "small-pool", 2: "imagenet"}[stem_downs]
        c0 = widths[0]
        if stem == "imagenet":
            self.stem = nn.Sequential(conv_bn_act(3, c0, 7, 2), nn.MaxPool2d(3, 2, 1))
        elif stem == "small-pool":
            self.stem = nn.Sequential(conv_bn_act(3, c0, 3), nn.MaxPool2d(3, 2, 1))
        elif stem == "small":
            self.stem = conv_bn_act(3, c0, 3)
        else:
            raise ValueError("stem must be 'auto', 'imagenet', 'small-pool' or 'small'")
        total = sum(depths)
        blocks: list[nn.Module] = []
        c_in, k = c0, 0
        for s, (depth, width) in enumerate(zip(depths, widths)):
            for b in range(depth):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks.append(ResidualBlock(c_in, width, stride, attention=attention, drop_path=drop_path * k / max(1, total - 1)))
                c_in, k = width, k + 1
        self.features = nn.Sequential(self.stem, *blocks)
        self.pool = global_pool()
        self.head = dropout_linear(c_in, num_classes, dropout) if dropout else nn.Linear(c_in, num_classes)


@register_model(
    "skip-cnn",
    family="resnet",
    description="3 residual blocks 32/64/128 with 1x1 projection shortcuts, GAP, dense 64, dropout 0.3",
    reference="Padova study: skip-connection CNN, ~0.31 M params",
    published={"params": 310_000, "in_size": 128, "accuracy": 96.78},
)
def skip_cnn(num_classes: int = 8, in_size: int = 28, **cfg) -> nn.Module:
    return SkipCNN(num_classes=num_classes, in_size=in_size, **cfg)


@register_model(
    "resnet18",
    family="resnet",
    description="ResNet-18 (basic blocks 2-2-2-2), stem adapted to the input size",
    reference="EfficientNet study: ResNet-18 baseline, 11.18 M params at 224 px",
    published={"params": 11_180_000, "in_size": 224},
)
def resnet18(num_classes: int = 8, in_size: int = 28, **cfg) -> nn.Module:
    cfg.setdefault("depths", (2, 2, 2, 2))
    return ResNet(num_classes=num_classes, in_size=in_size, **cfg)


@register_model(
    "resnet34",
    family="resnet",
    description="ResNet-34 (basic blocks 3-4-6-3), stem adapted to the input size (64 px in the study)",
    reference="attention study: ResNet-34 at 64 px",
    published={"in_size": 64},
)
def resnet34(num_classes: int = 8, in_size: int = 28, **cfg) -> nn.Module:
    cfg.setdefault("depths", (3, 4, 6, 3))
    return ResNet(num_classes=num_classes, in_size=in_size, **cfg)
