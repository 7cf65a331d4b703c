"""Phase 1 of two-phase models (``--pretrain-epochs``, the autoclassifier): reconstruction training, then a frozen encoder."""

from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeblood.config.train import TrainConfig
from edgeblood.data.batches import BatchStream, Normalizer
from edgeblood.errors import EdgebloodError
from edgeblood.training.callbacks import Callback
from edgeblood.training.distributed import DistContext


def first_phase(cfg: TrainConfig, model: nn.Module, stream: BatchStream, norm: Normalizer, metadata: dict, device: torch.device,
                ctx: DistContext, events: Callback, resumed: bool) -> float:
    """Train the autoencoder and freeze the encoder when the config asks for it; returns the phase's seconds.

    A resumed run skips the phase (its weights are in train_state) but freezes the encoder again: the
    optimizer state was saved over phase 2's parameters only, and would not load over all of them.
    """
    if cfg.pretrain_epochs <= 0:
        return 0.0
    if resumed:
        model.freeze_encoder()
        return 0.0
    t_pre = time.perf_counter()
    pretrain_autoencoder(model, stream, norm, cfg, device, events, ctx)
    pretrain_s = time.perf_counter() - t_pre
    metadata["training"]["pretrain_seconds"] = round(pretrain_s, 1)
    return pretrain_s


def pretrain_autoencoder(model: nn.Module, stream: BatchStream, norm: Normalizer, cfg: TrainConfig, device: torch.device, events: Callback,
                         ctx: DistContext) -> None:
    """Reconstruction training for ``cfg.pretrain_epochs``, then freeze the encoder.

    Under torchrun the autoencoder is DDP-wrapped like the classifier in phase 2, so every rank's
    shard trains one shared encoder (unwrapped, each rank trained its own and phase 2 kept rank 0's).
    """
    if not all(hasattr(model, a) for a in ("autoencoder", "reconstruct", "freeze_encoder")):
        raise EdgebloodError(f"--pretrain-epochs needs a model with an autoencoder (e.g. autoclassifier), not {cfg.model}")
    autoencoder = ctx.wrap(model.autoencoder, device)
    opt = torch.optim.AdamW([p for p in autoencoder.parameters() if p.requires_grad], lr=1e-3)
    autoencoder.train()
    for epoch in range(1, cfg.pretrain_epochs + 1):
        stream.set_epoch(10_000 + epoch)
        total, n = 0.0, 0
        for xb, _ in stream:
            xb = norm(xb.to(device))
            loss = F.mse_loss(autoencoder(xb), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + loss.item() * len(xb), n + len(xb)
        total, n = ctx.all_sum([total, n], device)
        events.on_message(f"autoencoder pre-training epoch {epoch}/{cfg.pretrain_epochs}: reconstruction MSE {total / max(n, 1):.4f}"
                          + (f" (all {ctx.world_size} ranks)" if ctx.enabled else ""))
    # phase 2's optimizer never sees the frozen parameters, so it would never clear their last phase-1
    # gradients, and gradient clipping over model.parameters() would count them on every step
    opt.zero_grad(set_to_none=True)
    model.freeze_encoder()
