"""A short fine-tune after pruning (recover what removing channels/weights cost).

Kept deliberately small and isolated: ``edgeblood.training.train`` builds a model from scratch and has
no entry point for continuing an existing (pruned) network, so this loop reuses its pieces - the
in-memory ``BatchStream``, the run's own augmentation, label smoothing and weight decay - with a
cosine-decayed AdamW at a fraction of the original learning rate. If the training engine grows a
``finetune(model, ...)`` function, swap ``finetune`` below for it; nothing else depends on the loop.
Best-on-val weights are kept (the pruned model before any fine-tuning is a candidate too), the same
selection rule as training, so the test split is never used to choose.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from edgeblood.data.augment import AugmentConfig
from edgeblood.data.batches import BatchStream, Normalizer, to_tensor_nchw

FINETUNE_LR_FACTOR = 0.1  # fine-tune at a tenth of the run's peak learning rate


@dataclass
class FinetuneResult:
    epochs: int
    lr: float
    best_epoch: int  # 0 = the pruned model before fine-tuning was best on val
    val_accuracy_before: float
    val_accuracy_after: float
    history: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("epochs", "lr", "best_epoch", "val_accuracy_before", "val_accuracy_after", "history", "wall_time_s")}


def finetune(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    mean: list[float],
    std: list[float],
    epochs: int,
    train_config: dict | None = None,
    *,
    lr: float | None = None,
    device: str = "cpu",
    seed: int = 0,
    on_batch: Callable[[int, int, int], None] | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` in place for ``epochs`` on ``train`` (uint8 NHWC, labels); returns what happened.

    ``on_batch(epoch, batch, batches_per_epoch)`` is called after every optimizer step (progress bars).
    """
    cfg = dict(train_config or {})
    lr = float(lr if lr is not None else cfg.get("lr", 3e-3) * FINETUNE_LR_FACTOR)
    augment = AugmentConfig.from_dict(cfg["augment"]) if isinstance(cfg.get("augment"), dict) else AugmentConfig()
    batch_size = int(cfg.get("batch_size", 128))
    criterion = nn.CrossEntropyLoss(label_smoothing=float(cfg.get("label_smoothing", 0.0)))
    device_t = torch.device(device)
    model.to(device_t)
    norm = Normalizer(mean, std, device_t)
    images, labels = to_tensor_nchw(train[0]), torch.from_numpy(np.asarray(train[1], dtype=np.int64))
    stream = BatchStream(images, labels, batch_size, augment=augment, drop_last=len(labels) > batch_size * 4, seed=seed)
    val_x, val_y = to_tensor_nchw(val[0]), torch.from_numpy(np.asarray(val[1], dtype=np.int64))

    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": float(cfg.get("weight_decay", 5e-4))},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    total_steps = max(1, epochs * len(stream))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))

    t0 = time.perf_counter()
    before = val_accuracy(model, val_x, val_y, norm)
    best_acc, best_epoch, best_state = before, 0, copy.deepcopy(model.state_dict())
    history = []
    for epoch in range(1, epochs + 1):
        stream.set_epoch(epoch)
        model.train()
        loss_sum, n = 0.0, 0
        for step, (xb, yb) in enumerate(stream, 1):
            xb, yb = norm(xb.to(device_t)), yb.to(device_t)
            loss = criterion(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum, n = loss_sum + loss.item() * len(yb), n + len(yb)
            if on_batch is not None:
                on_batch(epoch, step, len(stream))
        acc = val_accuracy(model, val_x, val_y, norm)
        history.append({"epoch": epoch, "train_loss": loss_sum / max(n, 1), "val_acc": acc, "lr": optimizer.param_groups[0]["lr"]})
        if acc > best_acc:
            best_acc, best_epoch, best_state = acc, epoch, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval().cpu()
    return FinetuneResult(epochs, lr, best_epoch, before, best_acc, history, round(time.perf_counter() - t0, 1))


@torch.no_grad()
def val_accuracy(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, norm: Normalizer, batch_size: int = 512) -> float:
    model.eval()
    correct = 0
    device = norm.mean.device
    for start in range(0, len(y), batch_size):
        xb = norm(x_u8[start : start + batch_size].to(device).float().div_(255.0))
        correct += (model(xb).argmax(1).cpu() == y[start : start + batch_size]).sum().item()
    return correct / max(1, len(y))
