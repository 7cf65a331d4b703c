"""Inception networks (Szegedy et al. 2015): GoogLeNet's 3a/3b/4a modules on a small stem.

Stem: 3x3 conv-BN-ReLU to 64 ch (stride 2) and a max-pool. Body: inception
3a (-> 256 ch), 3b (-> 480), max-pool, 4a (-> 512); each module has 1x1, 1x1->3x3,
1x1->3x3->3x3 (factorised 5x5) and pool->1x1 branches with BN. Head: global average pooling,
dropout 0.4, linear. ``inception-skip`` adds a residual shortcut around every module (1x1
projection when the width changes), the attention study's "inception with skip connections".
``width_mult`` scales all branch widths. Stride-2 steps are dropped from the front on small inputs
so the 4a module sees >= 7 px (28 px: modules at 14 and 7 px; 64 px: 16 and 8 px).
"""

from __future__ import annotations

import torch.nn as nn

from edgeblood.models.blocks import FeaturesPoolHead, InceptionBlock, conv_bn_act, downsample_plan, dropout_linear, global_pool
from edgeblood.models.registry import register_model

# (c1, c3_reduce, c3, c5_reduce, c5, pool_proj) of GoogLeNet's 3a, 3b and 4a modules.
GOOGLENET_MODULES = ((64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), (192, 96, 208, 16, 48, 64))


class Inception(FeaturesPoolHead):
    def __init__(
        self,
        num_classes: int = 8,
        in_size: int = 28,
        stem_channels: int = 64,
        width_mult: float = 1.0,
        residual: bool = False,
        dropout: float = 0.4,
    ):
        super().__init__()
        # Published order of the stride-2 steps: stem conv, stem pool, pool before 4a. Steps are
        # dropped from the front until the 4a module sees >= 7 px (28 px: 14 -> 7; 64 px: 16 -> 8).
        downs = downsample_plan(in_size, 3, min_final=7)
        layers: list[nn.Module] = [conv_bn_act(3, stem_channels, 3, stride=2 if downs >= 3 else 1)]
        if downs >= 2:
            layers.append(nn.MaxPool2d(3, 2, 1))
        c_in = stem_channels
        for i, widths in enumerate(GOOGLENET_MODULES):
            if i == 2 and downs >= 1:
                layers.append(nn.MaxPool2d(3, 2, 1))
            block = InceptionBlock(c_in, *[max(8, int(round(w * width_mult))) for w in widths], residual=residual)
            layers.append(block)
            c_in = block.out_channels
        self.features = nn.Sequential(*layers)
        self.pool = global_pool()
        self.head = dropout_linear(c_in, num_classes, dropout)


@register_model(
    "inception",
    family="inception",
    description="GoogLeNet-style inception modules 3a-3b-4a on a 3x3 stem, GAP, dropout 0.4",
    reference="attention study: Inception at 64 px",
    published={"in_size": 64},
)
def inception(num_classes: int = 8, in_size: int = 28, **cfg) -> nn.Module:
    return Inception(num_classes=num_classes, in_size=in_size, **cfg)


@register_model(
    "inception-skip",
    family="inception",
    description="inception modules 3a-3b-4a with residual (skip) shortcuts around each module",
    reference="attention study: Inception with skip connections at 64 px",
    published={"in_size": 64},
)
def inception_skip(num_classes: int = 8, in_size: int = 28, **cfg) -> nn.Module:
    cfg.setdefault("residual", True)
    return Inception(num_classes=num_classes, in_size=in_size, **cfg)
