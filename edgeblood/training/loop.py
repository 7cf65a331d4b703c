"""One epoch of training and one pass of validation: the loop that training and the pruning fine-tune share.

``edgeblood train`` and ``edgeblood compress --prune`` both run the same batch step (mixup/CutMix,
distillation, gradient clipping, per-step schedule, EMA) and judge epochs by the same rule (best val
accuracy, strictly better). Keeping that in one place means a fix to the step reaches both, and a
pruned model is fine-tuned exactly as it was trained.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeblood.data.batches import BatchStream, Normalizer
from edgeblood.training.distill import distillation_loss


@dataclass
class Feed:
    """How a batch of [0, 1] images reaches the model: the device, normalisation, memory format and autocast."""

    norm: Normalizer
    device: torch.device
    channels_last: bool = False
    # One context reused for every batch (``torch.autocast`` objects can be entered again and again).
    autocast: contextlib.AbstractContextManager = field(default_factory=contextlib.nullcontext)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x.to(self.device, non_blocking=True))
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``--precision bf16``, else nothing (the resolved precision: never 'auto')."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class Objective:
    """What one batch's loss is: the labels through ``criterion`` (mixed under mixup/CutMix), and with a teacher a
    distillation term weighted ``kd_alpha`` (``soft_targets`` holds the teacher's logits per training sample)."""

    criterion: nn.Module
    mixup: float = 0.0  # Beta(alpha, alpha); 0 = off
    cutmix: float = 0.0
    soft_targets: torch.Tensor | None = None
    kd_alpha: float = 0.0
    kd_temperature: float = 2.0

    def mix(self, x: torch.Tensor, y: torch.Tensor):
        """Mixup or CutMix (one per batch, chosen at random when both are on); returns the targets and the pairing."""
        choices = [m for m, a in (("mixup", self.mixup), ("cutmix", self.cutmix)) if a > 0]
        if not choices:
            return x, (y, y, 1.0), None
        mode = random.choice(choices)
        alpha = self.mixup if mode == "mixup" else self.cutmix
        lam = float(np.random.beta(alpha, alpha))
        perm = torch.randperm(x.shape[0], device=x.device)
        if mode == "mixup":
            return lam * x + (1 - lam) * x[perm], (y, y[perm], lam), perm
        x, lam = _cutmix(x, perm, lam)
        return x, (y, y[perm], lam), perm

    def loss(self, logits: torch.Tensor, targets, perm: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor:
        # logits.float() per term, as the loss was first written: under bf16 one shared cast would round the
        # summed gradient differently, and a resumed or refactored run would no longer match bit for bit
        loss = _label_loss(self.criterion, logits.float(), targets)
        if self.soft_targets is None:
            return loss
        teacher = self.soft_targets[idx].to(logits.device)
        return (1 - self.kd_alpha) * loss + self.kd_alpha * self._soft_loss(logits.float(), teacher, targets, perm)

    def _soft_loss(self, logits: torch.Tensor, teacher: torch.Tensor, targets, perm: torch.Tensor | None) -> torch.Tensor:
        """Distillation term; under mixup/CutMix the two images' teacher targets are weighted like their labels."""
        lam = targets[2]
        loss = distillation_loss(logits, teacher, self.kd_temperature)
        if perm is None or lam == 1.0:
            return loss
        return lam * loss + (1 - lam) * distillation_loss(logits, teacher[perm], self.kd_temperature)


def _cutmix(x: torch.Tensor, perm: torch.Tensor, lam: float) -> tuple[torch.Tensor, float]:
    """Paste a box of the paired images; lam becomes the share of pixels that stayed."""
    h, w = x.shape[-2:]
    ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = random.randrange(h), random.randrange(w)
    y0, y1, x0, x1 = max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    return x, 1 - (y1 - y0) * (x1 - x0) / (h * w)


def _label_loss(criterion: nn.Module, logits: torch.Tensor, targets) -> torch.Tensor:
    y_a, y_b, lam = targets
    if lam == 1.0:
        return criterion(logits, y_a)
    return lam * criterion(logits, y_a) + (1 - lam) * criterion(logits, y_b)


@dataclass
class Update:
    """One optimizer step after a batch: backpropagate, clip, step, then the per-step schedule and the EMA."""

    module: nn.Module  # the plain model, not a DDP wrapper: its parameters are clipped and averaged
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None  # None: stepped per epoch by the caller (plateau)
    ema: torch.optim.swa_utils.AveragedModel | None = None
    grad_clip: float = 0.0  # max gradient norm; 0 = off

    def __call__(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.module)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


@dataclass
class EpochSums:
    """Running totals of one epoch on this process (summed over ranks by the caller under DDP)."""

    loss_sum: float = 0.0  # batch loss x batch size
    correct: float = 0.0
    count: float = 0.0

    def add(self, loss: float, correct: float, n: int) -> None:
        self.loss_sum += loss * n
        self.correct += correct
        self.count += n

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.count, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.count, 1)

    def as_list(self) -> list[float]:
        return [self.loss_sum, self.correct, self.count]


def train_one_epoch(
    model: nn.Module,
    stream: BatchStream,
    feed: Feed,
    objective: Objective,
    update: Update,
    on_batch: Callable[[int, EpochSums], None] | None = None,
) -> EpochSums:
    """One pass over ``stream`` (its epoch set by the caller); returns this process's sums.

    ``model`` is what is called (a DDP wrapper under torchrun). It runs in the mode the caller left it
    in - ``train()``, plus whatever the caller froze - so a fine-tune that keeps norm layers fixed stays
    so. ``on_batch(step, sums)`` follows every optimizer step (progress bars; ``step`` counts from 1).
    Accuracy is against the unmixed labels.
    """
    sums = EpochSums()
    for step, (xb, yb, idx) in enumerate(stream.indexed(), 1):
        xb, yb = feed.images(xb), yb.to(feed.device, non_blocking=True)
        xb, targets, perm = objective.mix(xb, yb)
        with feed.autocast:
            logits = model(xb)
        loss = objective.loss(logits, targets, perm, idx)
        update(loss)
        sums.add(loss.item(), (logits.argmax(1) == yb).sum().item(), len(yb))
        if on_batch is not None:
            on_batch(step, sums)
    return sums


@torch.no_grad()
def evaluate(model: nn.Module, images_u8: torch.Tensor, labels: torch.Tensor, feed: Feed, batch_size: int = 512) -> tuple[float, float]:
    """Mean cross-entropy (no label smoothing) and accuracy of ``model`` on uint8 NCHW ``images_u8``, in batches."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(labels), batch_size):
        xb = feed.images(images_u8[start : start + batch_size].to(feed.device).float().div_(255.0))
        yb = labels[start : start + batch_size].to(feed.device)
        with feed.autocast:
            logits = model(xb)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    return loss_sum / max(1, len(labels)), correct / max(1, len(labels))


@dataclass
class BestOnVal:
    """The selection rule training and fine-tuning share: an epoch wins only with strictly higher val accuracy
    (the test split never chooses); ``stale`` counts the epochs since the last win (early stopping's patience)."""

    accuracy: float = -1.0
    epoch: int = 0
    stale: int = 0

    def observe(self, epoch: int, accuracy: float) -> bool:
        """Record ``epoch``'s val accuracy; True when it is the new best."""
        if accuracy > self.accuracy:
            self.accuracy, self.epoch, self.stale = accuracy, epoch, 0
            return True
        self.stale += 1
        return False


def build_optimizer(model: nn.Module, name: str, *, lr: float, weight_decay: float, momentum: float = 0.9) -> torch.optim.Optimizer:
    """``adamw`` / ``adam`` / ``sgd`` (Nesterov) over the trainable parameters, with no weight decay on biases and
    norm parameters (standard practice; it matters for small models)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.AdamW(groups, lr=lr)
