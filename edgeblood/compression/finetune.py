"""A short fine-tune after pruning (recover what removing channels/weights cost).

It runs the training loop's own epoch and validation pass (``edgeblood.training.loop``) on the
pruned network, with the run's augmentation, label smoothing and weight decay, and a cosine-decayed
AdamW at a fraction of the run's learning rate. Best-on-val weights are kept by training's rule (the
pruned model before any fine-tuning is a candidate too), so the test split is never used to choose.
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

from edgeblood.config.augment import AugmentConfig
from edgeblood.data.batches import BatchStream, Normalizer, to_tensor_nchw
from edgeblood.training.loop import BestOnVal, Feed, Objective, Update, build_optimizer, evaluate, train_one_epoch

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
    device_t = torch.device(device)
    model.to(device_t)
    feed = Feed(Normalizer(mean, std, device_t), device_t)
    images, labels = to_tensor_nchw(train[0]), torch.from_numpy(np.asarray(train[1], dtype=np.int64))
    stream = BatchStream(images, labels, batch_size, augment=augment, drop_last=len(labels) > batch_size * 4, seed=seed)
    val_x, val_y = to_tensor_nchw(val[0]), torch.from_numpy(np.asarray(val[1], dtype=np.int64))
    objective = Objective(nn.CrossEntropyLoss(label_smoothing=float(cfg.get("label_smoothing", 0.0))))
    optimizer = build_optimizer(model, "adamw", lr=lr, weight_decay=float(cfg.get("weight_decay", 5e-4)))
    update = Update(model, optimizer, _cosine_to_zero(optimizer, max(1, epochs * len(stream))))

    t0 = time.perf_counter()
    before = evaluate(model, val_x, val_y, feed)[1]
    best, best_state = BestOnVal(before, 0), copy.deepcopy(model.state_dict())
    history = []
    # Dropout and mixup draw from torch's global generator: seeding it here (inside a fork, so the
    # caller's stream is left as it was) makes the same prune + fine-tune give the same weights.
    with torch.random.fork_rng(devices=[device_t] if device_t.type == "cuda" else []):
        torch.manual_seed(seed)
        for epoch in range(1, epochs + 1):
            stream.set_epoch(epoch)
            model.train()
            progress = None if on_batch is None else (lambda step, _sums, e=epoch: on_batch(e, step, len(stream)))
            sums = train_one_epoch(model, stream, feed, objective, update, on_batch=progress)
            acc = evaluate(model, val_x, val_y, feed)[1]
            history.append({"epoch": epoch, "train_loss": sums.loss, "val_acc": acc, "lr": update.lr})
            if best.observe(epoch, acc):
                best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval().cpu()
    return FinetuneResult(epochs, lr, best.epoch, before, best.accuracy, history, round(time.perf_counter() - t0, 1))


def _cosine_to_zero(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Half a cosine from the fine-tune lr to 0 over every step (no warm-up: the weights are trained already)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
