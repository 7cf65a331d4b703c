"""Parameters and MACs, counted by PyTorch's own FLOP counter (torch.utils.flop_counter).

MACs are multiply-accumulates of convolutions and matrix products (FLOPs / 2), the convention of
the published tables; element-wise work (BN, activations, SE scaling) is not counted.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_nonzero_params(model: nn.Module) -> int:
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, in_size: int, channels: int = 3) -> int:
    """MACs of one forward pass on a single ``in_size`` x ``in_size`` image."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    x = torch.zeros(1, channels, in_size, in_size, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2
