"""Learning-rate schedules, all stepped once per optimizer step except reduce-on-plateau (per epoch)."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR, ReduceLROnPlateau


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, *, lr: float, epochs: int, steps_per_epoch: int, warmup_epochs: float):
    total = max(1, epochs * steps_per_epoch)
    if name == "onecycle":
        return OneCycleLR(optimizer, max_lr=lr, total_steps=total, pct_start=min(0.3, max(0.05, warmup_epochs / max(epochs, 1))))
    if name == "cosine":
        warmup = int(warmup_epochs * steps_per_epoch)
        return LambdaLR(optimizer, lambda step: _warmup_cosine(step, warmup, total))
    if name == "plateau":
        return ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=3)
    return LambdaLR(optimizer, lambda step: 1.0)


def _warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def steps_per_batch(scheduler) -> bool:
    """True when the scheduler advances every optimizer step (False: once per epoch on val accuracy)."""
    return isinstance(scheduler, LRScheduler) and not isinstance(scheduler, ReduceLROnPlateau)
