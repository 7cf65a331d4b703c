"""Building blocks shared by the model families (each defined once).

Attention: :class:`SqueezeExcite` (channel), :class:`SpatialAttention`, :class:`CBAM` (channel then
spatial) and :func:`make_attention` to pick one by name. Bodies: :func:`conv_bn_act`,
:class:`MBConv` (inverted residual with SE and stochastic depth), :class:`ResidualBlock` (basic
block with a 1x1 projection shortcut), :class:`InceptionBlock` (four-branch, optional residual).
Classifier plumbing: :class:`FeaturesPoolHead` (the ``head(pool(features(x)))`` convention every
convolutional family follows), :func:`global_pool` and :func:`dropout_linear`.
:func:`downsample_plan` decides where a family may halve the resolution so that 28 px inputs are
not pooled away while 224 px inputs keep the published strides.
"""

from __future__ import annotations

import torch
import torch.nn as nn

_INPLACE = (nn.ReLU, nn.SiLU, nn.ReLU6)


def _act(act: type[nn.Module]) -> nn.Module:
    return act(inplace=True) if act in _INPLACE else act()


class FeaturesPoolHead(nn.Module):
    """Base of the convolutional families: ``forward`` is exactly ``head(pool(features(x)))``.

    Subclasses assign ``self.features``, ``self.pool`` and ``self.head`` (in that order, so the
    state-dict keys stay ``features.*``, ``pool.*``, ``head.*``); Grad-CAM, pruning and export rely
    on these names.
    """

    features: nn.Module
    pool: nn.Module
    head: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


def global_pool() -> nn.Sequential:
    """Global average pooling to a flat ``[N, C]`` vector (no parameters)."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())


def dropout_linear(c_in: int, num_classes: int, dropout: float) -> nn.Sequential:
    """The usual classifier head: dropout, then one linear layer (keys ``1.weight``/``1.bias``)."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in, num_classes))


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a scaled channel count to a multiple of ``divisor`` (never below 90 % of it), as MobileNet does."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def conv_bn_act(
    c_in: int,
    c_out: int,
    k: int = 3,
    stride: int = 1,
    groups: int = 1,
    act: type[nn.Module] | None = nn.ReLU,
    padding: int | None = None,
    bias: bool = False,
) -> nn.Sequential:
    pad = k // 2 if padding is None else padding
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, stride, pad, groups=groups, bias=bias), nn.BatchNorm2d(c_out)]
    if act is not None:
        layers.append(_act(act))
    return nn.Sequential(*layers)


def downsample_plan(in_size: int, max_downsamples: int, min_final: int = 4) -> int:
    """How many stride-2 steps an input of ``in_size`` px can take and still end at >= ``min_final`` px.

    Families place their stride-2 steps from the *last* stage backwards, so a 224 px input gets
    the published schedule and a 28 px input keeps full resolution in the stem (no over-downsampling).
    """
    size, n = in_size, 0
    while n < max_downsamples and (size + 1) // 2 >= min_final:
        size = (size + 1) // 2
        n += 1
    return n


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop a residual branch per sample while training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


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


class ChannelAttention(nn.Module):
    """CBAM's channel gate: one shared MLP over average- *and* max-pooled descriptors (Woo et al. 2018)."""

    def __init__(self, channels: int, ratio: int = 16):
        super().__init__()
        hidden = max(1, channels // ratio)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean((2, 3), keepdim=True))
        mx = self.mlp(x.amax((2, 3), keepdim=True))
        return x * torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """Spatial gate: a k x k conv over the channel-wise mean and max maps says *where* to look."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(desc)))


class CBAM(nn.Module):
    """Convolutional block attention module: channel gate, then spatial gate."""

    def __init__(self, channels: int, ratio: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, ratio)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


ATTENTIONS = ("none", "se", "sa", "cbam")


def make_attention(kind: str | None, channels: int, ratio: int = 16) -> nn.Module:
    """The attention block called ``kind`` ('se', 'sa', 'cbam' or 'none') for ``channels`` channels."""
    kind = (kind or "none").lower()
    if kind == "none":
        return nn.Identity()
    if kind == "se":
        return SqueezeExcite(channels, ratio)
    if kind == "sa":
        return SpatialAttention()
    if kind == "cbam":
        return CBAM(channels, ratio)
    raise ValueError(f"unknown attention '{kind}'; choose one of {', '.join(ATTENTIONS)}")


class MBConv(nn.Module):
    """Inverted residual (MobileNetV2/EfficientNet): 1x1 expand, k x k depthwise, SE, 1x1 project.

    ``se_ratio`` is the reduction relative to the block's *input* channels (EfficientNet's
    convention, 4 = 0.25); 0 disables SE. The identity shortcut is used when shapes allow it, and
    its residual branch is dropped per sample with probability ``drop_path`` (stochastic depth).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        expand: float = 6,
        kernel_size: int = 3,
        stride: int = 1,
        se_ratio: int = 4,
        act: type[nn.Module] = nn.SiLU,
        drop_path: float = 0.0,
    ):
        super().__init__()
        mid = int(round(c_in * expand))
        layers: list[nn.Module] = []
        if mid != c_in:
            layers.append(conv_bn_act(c_in, mid, 1, act=act))
        layers.append(conv_bn_act(mid, mid, kernel_size, stride, groups=mid, act=act))
        if se_ratio:
            layers.append(SqueezeExcite(mid, hidden=max(1, c_in // se_ratio), act=act))
        layers.append(conv_bn_act(mid, c_out, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and c_in == c_out
        self.drop_path = DropPath(drop_path) if self.use_residual and drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + self.drop_path(out) if self.use_residual else out


class ResidualBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN, shortcut = identity or a 1x1 conv-BN projection.

    The projection is used whenever channels or stride change (or always, with ``project=True``);
    an optional attention block (SE/SA/CBAM) re-weights the residual branch before the addition.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int = 1,
        attention: str | None = None,
        attention_ratio: int = 16,
        project: bool | None = None,
        act: type[nn.Module] = nn.ReLU,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.conv1 = conv_bn_act(c_in, c_out, 3, stride, act=act)
        self.conv2 = conv_bn_act(c_out, c_out, 3, act=None)
        self.attention = make_attention(attention, c_out, attention_ratio)
        needs = stride != 1 or c_in != c_out
        if project or (project is None and needs):
            self.shortcut: nn.Module = conv_bn_act(c_in, c_out, 1, stride, act=None)
        elif needs:
            raise ValueError("a block that changes shape needs a projection shortcut")
        else:
            self.shortcut = nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = _act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Shortcut first, so the last conv executed is conv2 (Grad-CAM picks the last conv run).
        identity = self.shortcut(x)
        out = self.attention(self.conv2(self.conv1(x)))
        return self.act(identity + self.drop_path(out))


class InceptionBlock(nn.Module):
    """GoogLeNet inception module with BN: 1x1 | 1x1->3x3 | 1x1->3x3->3x3 | 3x3 max-pool->1x1, concatenated.

    The 5x5 branch is factorised into two 3x3 convs (Inception v2). With ``residual=True`` the
    input is added back (through a 1x1 projection when the widths differ): the inception-skip model.
    """

    def __init__(
        self,
        c_in: int,
        c1: int,
        c3_reduce: int,
        c3: int,
        c5_reduce: int,
        c5: int,
        pool_proj: int,
        residual: bool = False,
        act: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        self.branch1 = conv_bn_act(c_in, c1, 1, act=act)
        self.branch3 = nn.Sequential(conv_bn_act(c_in, c3_reduce, 1, act=act), conv_bn_act(c3_reduce, c3, 3, act=act))
        self.branch5 = nn.Sequential(
            conv_bn_act(c_in, c5_reduce, 1, act=act), conv_bn_act(c5_reduce, c5, 3, act=act), conv_bn_act(c5, c5, 3, act=act)
        )
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn_act(c_in, pool_proj, 1, act=act))
        self.out_channels = c1 + c3 + c5 + pool_proj
        self.residual = residual
        if residual:
            self.shortcut: nn.Module = (
                nn.Identity() if c_in == self.out_channels else conv_bn_act(c_in, self.out_channels, 1, act=None)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.shortcut(x) if self.residual else None  # first: keep the branches' convs last
        out = torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], dim=1)
        return out + identity if identity is not None else out
