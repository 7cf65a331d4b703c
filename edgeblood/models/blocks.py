"""Building blocks shared by the model families (each defined once)."""

from __future__ import annotations

import torch
import torch.nn as nn


def conv_bn_act(c_in: int, c_out: int, k: int = 3, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
    if act is not None:
        layers.append(act(inplace=True) if act in (nn.ReLU, nn.SiLU, nn.ReLU6) else act())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): channel gates from globally pooled features."""

    def __init__(self, channels: int, ratio: int = 4, hidden: int | None = None, act: type[nn.Module] = nn.ReLU):
        super().__init__()
        hidden = hidden or max(1, channels // ratio)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(s))))
