"""Which layer of a registry model is its classifier head (fine-tuning re-initialises it, calibration scales it)."""

from __future__ import annotations

import torch.nn as nn

from edgeblood.errors import EdgebloodError


def classifier_head(model: nn.Module, num_classes: int) -> str:
    """Name of the last Linear layer with ``num_classes`` outputs (every registry family ends in one)."""
    heads = [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if not heads:
        raise EdgebloodError(f"{type(model).__name__} has no Linear layer with {num_classes} outputs to use as its classifier head")
    return heads[-1]
