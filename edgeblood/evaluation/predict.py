"""Batched PyTorch inference over uint8 images (the reference every exported runtime is compared to).

``tta=True`` averages over the 8 dihedral views of each image (4 rotations x optional flip): blood
cells have no orientation, so the views are equally valid and their mean is a cheap ensemble. It
costs 8x the compute, so TTA figures are always reported apart from single-pass accuracy.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from edgeblood.data.batches import Normalizer, to_tensor_nchw

TTA_VIEWS = 8


def dihedral_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 rotations/flips of an NCHW batch (identity first)."""
    views = [torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]
    return views + [v.flip(-1) for v in views]


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: np.ndarray,
    mean: list[float],
    std: list[float],
    *,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    tta: bool = False,
    progress=None,
) -> np.ndarray:
    """Logits [N, C] (float32) for uint8 NHWC ``images``; with ``tta`` the mean logits of the 8 views."""
    device = torch.device(device)
    model.eval().to(device)
    norm = Normalizer(mean, std, device)
    x_all = to_tensor_nchw(images)
    out = []
    for start in range(0, len(x_all), batch_size):
        x = norm(x_all[start : start + batch_size].to(device).float().div_(255.0))
        views = dihedral_views(x) if tta else [x]
        out.append(torch.stack([model(v).float() for v in views]).mean(0).cpu())
        if progress is not None:
            progress(len(x))
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def predict_probs(
    model: nn.Module,
    images: np.ndarray,
    mean: list[float],
    std: list[float],
    *,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    tta: bool = False,
    progress=None,
) -> np.ndarray:
    """Softmax probabilities [N, C] for uint8 NHWC ``images``; the model is put in eval mode."""
    logits = predict_logits(model, images, mean, std, batch_size=batch_size, device=device, tta=tta, progress=progress)
    if logits.size == 0:
        return logits
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()
