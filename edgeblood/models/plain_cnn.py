"""Plain convolutional stacks of the published baselines: conv blocks, pooling, a dense head.

- ``cnn-baseline``: 3 conv layers 32/64/128 (3x3, no padding, max-pool after the first two),
  flatten, dense 256-128-8. Exactly 422,344 params at 28 px, the figure of the baseline table.
  (``padding="same"`` with ``pools=[1,1,1]`` also gives 422,344 at 28 px; the valid-padding form
  is the classic Keras one and is the default.)
- ``padova-cnn``: the Padova study's baseline, 3 blocks conv3x3(bias)-BN-ReLU-max-pool-dropout 0.25
  (32/64/128), flatten, dense 128, dropout 0.5: 4,289,160 params at 128 px (published 4.29 M).
- ``simple-cnn``: the EfficientNet study's SimpleCNN, 4 blocks conv-BN-ReLU-max-pool 64-128-256-512,
  adaptive average pooling to 7x7 (so any input size works and the count does not depend on it),
  dense 1024-512. 27.77 M params; the study reports 26.08 M at 224 px, which no standard reading
  of its description reproduces (a 7x7x512 flatten into 1024 units alone is 25.7 M).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from edgeblood.models.blocks import FeaturesPoolHead, conv_bn_act, global_pool
from edgeblood.models.registry import register_model


class PlainCNN(FeaturesPoolHead):
    """Conv blocks (``convs_per_block`` convs, optional BN, optional max-pool and dropout) + dense head.

    ``head`` is "flatten" (the published form; the dense layer grows with the input size), "gap"
    (global average pooling) or "adaptive" (average-pool to ``pool_size`` x ``pool_size`` first).
    """

    def __init__(
        self,
        num_classes: int = 8,
        in_size: int = 28,
        widths: Sequence[int] = (32, 64, 128),
        convs_per_block: int = 1,
        kernel_size: int = 3,
        padding: str = "same",
        batch_norm: bool = True,
        conv_bias: bool = False,
        pools: Sequence[int] | None = None,
        block_dropout: float = 0.0,
        hidden: Sequence[int] = (128,),
        dropout: float = 0.0,
        head: str = "flatten",
        pool_size: int = 7,
    ):
        super().__init__()
        if padding not in ("same", "valid"):
            raise ValueError("padding must be 'same' or 'valid'")
        if head not in ("flatten", "gap", "adaptive"):
            raise ValueError("head must be 'flatten', 'gap' or 'adaptive'")
        pools = list(pools) if pools is not None else [1] * len(widths)
        if len(pools) != len(widths):
            raise ValueError("pools needs one 0/1 flag per block")
        pad = kernel_size // 2 if padding == "same" else 0
        layers: list[nn.Module] = []
        c_in, size = 3, in_size
        for width, pool in zip(widths, pools):
            for _ in range(convs_per_block):
                if batch_norm:
                    layers.append(conv_bn_act(c_in, width, kernel_size, padding=pad, bias=conv_bias))
                else:
                    layers += [nn.Conv2d(c_in, width, kernel_size, padding=pad, bias=True), nn.ReLU(inplace=True)]
                c_in = width
                size -= kernel_size - 1 - 2 * pad
            if pool:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            if block_dropout:
                layers.append(nn.Dropout(block_dropout))
            if size < 1:
                raise ValueError(f"a {in_size} px input is reduced to nothing; use a larger input or fewer pools")
        self.features = nn.Sequential(*layers)
        if head == "flatten":
            self.pool: nn.Module = nn.Flatten()
            feat = c_in * size * size
        elif head == "gap":
            self.pool = global_pool()
            feat = c_in
        else:
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(pool_size), nn.Flatten())
            feat = c_in * pool_size * pool_size
        dense: list[nn.Module] = []
        for h in hidden:
            dense += [nn.Linear(feat, h), nn.ReLU(inplace=True)]
            if dropout:
                dense.append(nn.Dropout(dropout))
            feat = h
        dense.append(nn.Linear(feat, num_classes))
        self.head = nn.Sequential(*dense)


def _build(defaults: dict, num_classes: int, in_size: int, cfg: dict) -> PlainCNN:
    return PlainCNN(num_classes=num_classes, in_size=in_size, **{**defaults, **cfg})


@register_model(
    "cnn-baseline",
    family="plain-cnn",
    description="3 conv 32/64/128 (3x3 valid, 2 max-pools) + dense 256-128: the CNN baseline",
    reference="baseline study: CNN baseline, 422,344 params at 28 px",
    published={"params": 422_344, "in_size": 28, "accuracy": 86.52},
)
def cnn_baseline(num_classes: int = 8, in_size: int = 28, **cfg) -> nn.Module:
    defaults = dict(widths=(32, 64, 128), padding="valid", batch_norm=False, pools=(1, 1, 0), hidden=(256, 128), dropout=0.0)
    return _build(defaults, num_classes, in_size, cfg)


@register_model(
    "padova-cnn",
    family="plain-cnn",
    description="Padova baseline: 3 conv-BN-pool-dropout blocks 32/64/128, dense 128, dropout 0.5",
    reference="Padova study: baseline CNN, 4.29 M params at 128 px",
    published={"params": 4_290_000, "in_size": 128},
)
def padova_cnn(num_classes: int = 8, in_size: int = 128, **cfg) -> nn.Module:
    defaults = dict(widths=(32, 64, 128), conv_bias=True, block_dropout=0.25, hidden=(128,), dropout=0.5)
    return _build(defaults, num_classes, in_size, cfg)


@register_model(
    "simple-cnn",
    family="plain-cnn",
    description="SimpleCNN: 4 conv-BN-pool blocks 64-128-256-512, 7x7 adaptive pool, dense 1024-512",
    reference="EfficientNet study: SimpleCNN baseline, 26.08 M params at 224 px (ours: 27.77 M, see module doc)",
    published={"params": 26_080_000, "in_size": 224},
)
def simple_cnn(num_classes: int = 8, in_size: int = 224, **cfg) -> nn.Module:
    defaults = dict(widths=(64, 128, 256, 512), conv_bias=True, head="adaptive", pool_size=7, hidden=(1024, 512), dropout=0.5)
    return _build(defaults, num_classes, in_size, cfg)
