"""VGG15 and its attention variants (SE-, SA-, CBAM-VGG15) of the BloodMNIST attention study.

VGG16's layout at half width (stages 32-64-128-256-256, 3x3 conv-BN-ReLU, 2x2 max-pool after each
stage) with one conv of the last stage and one of the two 4096-unit dense layers removed: 12 conv
layers, dense 4096, dropout 0.5, classifier. The study gives only the name and the CBAM-VGG15 size
(7.27 M params at 64 px); this reading lands at 7.34 M (within 1 %). An attention block ('se',
'sa', 'cbam'; reduction 16) follows every stage. Pools are skipped (ceil-mode pooling, at most 5)
when the input would shrink below 2 px, and the last map is average-pooled to 2x2 before
flattening, so the parameter count is the same at every input size (at 64 px that pool is a no-op).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from edgeblood.models.blocks import FeaturesPoolHead, conv_bn_act, downsample_plan, make_attention
from edgeblood.models.registry import register_model


class VGG(FeaturesPoolHead):
    def __init__(
        self,
        num_classes: int = 8,
        in_size: int = 28,
        depths: Sequence[int] = (2, 2, 3, 3, 2),
        widths: Sequence[int] = (32, 64, 128, 256, 256),
        attention: str = "none",
        attention_ratio: int = 16,
        hidden: Sequence[int] = (4096,),
        dropout: float = 0.5,
        pool_size: int = 2,
    ):
        super().__init__()
        if len(depths) != len(widths):
            raise ValueError("depths and widths need one entry per stage")
        n_pools = downsample_plan(in_size, len(widths), min_final=pool_size)
        first_pool = len(widths) - n_pools  # skip the earliest pools on small inputs
        layers: list[nn.Module] = []
        c_in = 3
        for s, (depth, width) in enumerate(zip(depths, widths)):
            for _ in range(depth):
                layers.append(conv_bn_act(c_in, width, 3))
                c_in = width
            layers.append(make_attention(attention, width, attention_ratio))
            if s >= first_pool:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(pool_size), nn.Flatten())
        feat = c_in * pool_size * pool_size
        dense: list[nn.Module] = []
        for h in hidden:
            dense += [nn.Linear(feat, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            feat = h
        dense.append(nn.Linear(feat, num_classes))
        self.head = nn.Sequential(*dense)


def _variant(name: str, attention: str, label: str, published: dict | None = None) -> None:
    @register_model(
        name,
        family="vgg",
        description=f"VGG15 (12 conv 32-256 + dense 4096){label}",
        reference=f"attention study: {name.upper()} at 64 px"
        + (f", {published['params'] / 1e6:.2f} M params" if published and "params" in published else ""),
        published=published or {"in_size": 64},
    )
    def factory(num_classes: int = 8, in_size: int = 28, **cfg) -> nn.Module:
        cfg.setdefault("attention", attention)
        return VGG(num_classes=num_classes, in_size=in_size, **cfg)


_variant("vgg15", "none", "")
_variant("se-vgg15", "se", " with squeeze-excitation after every stage")
_variant("sa-vgg15", "sa", " with spatial attention after every stage")
_variant("cbam-vgg15", "cbam", " with CBAM after every stage", {"params": 7_270_000, "in_size": 64, "accuracy": 98.33})
