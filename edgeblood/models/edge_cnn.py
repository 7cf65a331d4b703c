"""edge-cnn: compact residual + SE + depthwise CNNs designed for accuracy per parameter at 28 px.

Built from the same MBConv blocks as ``mbconv-se`` (inverted residuals with identity shortcuts,
squeeze-excitation reduced 4x from the block input, SiLU, stochastic depth) but laid out for
BloodMNIST's small cells: the stem and first stage run at full resolution on 28 px inputs, only
two stride-2 steps follow (28 -> 14 -> 7, the last stage works at 7x7), and there is no wide 1x1
head conv (it would hold a third of the parameters). On 64 px the stem takes one more stride-2
step (64 -> 32 -> 16 -> 8). Expansion 4 instead of 6 keeps the 1x1 convs, where the parameters sit,
small.

- ``edge-cnn``: stem 24, stages 24 (x1, e1) / 40 (x2) / 80 (x3) / 112 (x2): 402,920 params,
  22 M MACs at 28 px - the ~0.3-0.5 M headline model.
- ``edge-cnn-tiny``: stem 16, stages 16 / 24 (x2) / 32 (x2) / 48: 46,876 params, 4.6 M MACs at
  28 px - the <= 50 K model.

``width_mult`` and ``depth_mult`` scale either one (channels rounded to multiples of 8, blocks per
stage rounded up), e.g. ``create("edge-cnn", width_mult=0.75)``.
"""

from __future__ import annotations

import torch.nn as nn

from edgeblood.models.efficientnet import EfficientNet
from edgeblood.models.registry import register_model

# (expand, channels, repeats, kernel, stride); the stem's stride 2 is dropped on 28 px inputs.
EDGE_STAGES = ((1, 24, 1, 3, 1), (4, 40, 2, 3, 2), (4, 80, 3, 3, 2), (4, 112, 2, 3, 1))
EDGE_TINY_STAGES = ((1, 16, 1, 3, 1), (4, 24, 2, 3, 2), (4, 32, 2, 3, 2), (4, 48, 1, 3, 1))


def _edge(defaults: dict, num_classes: int, in_size: int, cfg: dict) -> nn.Module:
    params = dict(head_channels=0, se_ratio=4, act="silu", min_final=7)
    params.update(defaults)
    params.update(cfg)
    return EfficientNet(num_classes=num_classes, in_size=in_size, **params)


@register_model(
    "edge-cnn",
    family="edge-cnn",
    description="compact MBConv+SE CNN for 28 px (stem 24, stages 24-40-80-112, no over-downsampling)",
    reference="edgeblood: compact headline model for 28 px",
)
def edge_cnn(num_classes: int = 8, in_size: int = 28, **cfg) -> nn.Module:
    defaults = dict(stages=EDGE_STAGES, stem_channels=24, drop_path=0.1, dropout=0.2)
    return _edge(defaults, num_classes, in_size, cfg)


@register_model(
    "edge-cnn-tiny",
    family="edge-cnn",
    description="<= 50 K-param MBConv+SE CNN for 28 px (stem 16, stages 16-24-32-48)",
    reference="edgeblood: smallest headline model (<= 50 K params)",
)
def edge_cnn_tiny(num_classes: int = 8, in_size: int = 28, **cfg) -> nn.Module:
    defaults = dict(stages=EDGE_TINY_STAGES, stem_channels=16, drop_path=0.05, dropout=0.1)
    return _edge(defaults, num_classes, in_size, cfg)
