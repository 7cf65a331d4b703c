"""Batched PyTorch inference over uint8 images (the reference every exported runtime is compared to)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from edgeblood.data.batches import Normalizer, to_tensor_nchw


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    images: np.ndarray,
    mean: list[float],
    std: list[float],
    *,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    progress=None,
) -> np.ndarray:
    """Softmax probabilities [N, C] for uint8 NHWC ``images``; the model is put in eval mode."""
    device = torch.device(device)
    model.eval().to(device)
    norm = Normalizer(mean, std, device)
    x_all = to_tensor_nchw(images)
    out = []
    for start in range(0, len(x_all), batch_size):
        x = x_all[start : start + batch_size].to(device).float().div_(255.0)
        out.append(torch.softmax(model(norm(x)).float(), dim=1).cpu())
        if progress is not None:
            progress(len(x))
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)
