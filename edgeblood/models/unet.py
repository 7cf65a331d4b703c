"""U-Net encoder classifier: the contracting path of Ronneberger et al. (2015) with a linear head.

Stages of two 3x3 conv-BN-ReLU layers doubling the width (``base_width`` 32: 32-64-128-256-512)
separated by 2x2 max-pools, global average pooling, dropout and a linear classifier. Pools are
dropped from the front when the input is too small to end at >= 2 px, so a 28 px input runs its
first two stages at full resolution and still ends at 2x2 instead of vanishing.
"""

from __future__ import annotations

import torch.nn as nn

from edgeblood.models.blocks import FeaturesPoolHead, conv_bn_act, downsample_plan, dropout_linear, global_pool
from edgeblood.models.registry import register_model


class UNetEncoder(FeaturesPoolHead):
    def __init__(self, num_classes: int = 8, in_size: int = 28, base_width: int = 32, depth: int = 5, dropout: float = 0.3):
        super().__init__()
        n_pools = downsample_plan(in_size, depth - 1, min_final=2)
        first_pool = depth - 1 - n_pools
        layers: list[nn.Module] = []
        c_in = 3
        for s in range(depth):
            width = base_width * 2**s
            if s > 0 and s - 1 >= first_pool:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            layers += [conv_bn_act(c_in, width, 3), conv_bn_act(width, width, 3)]
            c_in = width
        self.features = nn.Sequential(*layers)
        self.pool = global_pool()
        self.head = dropout_linear(c_in, num_classes, dropout)


@register_model(
    "unet-encoder",
    family="unet",
    description="U-Net contracting path (double conv 32-64-128-256-512) + GAP + linear",
    reference="attention study: U-Net encoder classifier at 64 px",
    published={"in_size": 64},
)
def unet_encoder(num_classes: int = 8, in_size: int = 28, **cfg) -> nn.Module:
    return UNetEncoder(num_classes=num_classes, in_size=in_size, **cfg)
