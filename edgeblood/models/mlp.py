"""MLNN: the multilayer perceptron reference (flattened pixels -> hidden -> classes).

At 28 px this is the published 2352 -> 1180 -> 8 network (2,785,988 params). The input layer grows
with the square of the input size (58 M params at 128 px), which is the point of the reference:
it shows what convolution buys.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from edgeblood.models.registry import register_model


class MLNN(nn.Module):
    def __init__(self, num_classes: int = 8, in_size: int = 28, hidden: Sequence[int] = (1180,), dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        feat = 3 * in_size * in_size
        for h in hidden:
            layers += [nn.Linear(feat, h), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            feat = h
        layers.append(nn.Linear(feat, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_model(
    "mlnn",
    family="mlp",
    description="multilayer perceptron on raw pixels: (in_size^2 * 3) -> 1180 -> classes",
    reference="baseline study: MLNN 2352 -> 1180 -> 8 at 28 px",
    published={"params": 2_785_988, "in_size": 28},
)
def mlnn(num_classes: int = 8, in_size: int = 28, **cfg) -> nn.Module:
    return MLNN(num_classes=num_classes, in_size=in_size, **cfg)
