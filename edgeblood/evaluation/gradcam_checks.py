"""Are the Grad-CAM maps trustworthy? The sanity checks of Adebayo et al. (NeurIPS 2018) on real cells.

Two checks, both on real test images: on a trained model the map's mass must sit on the stained
cell (``cell_mask``: Otsu on the stain channel) rather than the slide background, and the maps
must change when the weights are randomised (``randomized_copy``; Spearman rho below
``RANDOMISED_RHO_MAX``). ``sanity_check`` runs both and is what ``edgeblood evaluate --explain``
reports; the algorithm itself is in ``gradcam.py``, the pictures in ``plots.py``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn as nn

from edgeblood.evaluation.gradcam import explain


def cell_mask(images: np.ndarray) -> np.ndarray:
    """Boolean [N, H, W]: the stained cell versus the slide background and red cells.

    May-Grunwald-Giemsa stains nuclei and leukocyte cytoplasm purple (blue high, green low), red
    cells pink and the background pale; blue minus green separates purple from both, and Otsu's
    threshold on it splits each image. (Plain darkness would count red cells as "cell" around a
    small platelet.)
    """
    stain = (images[..., 2].astype(np.int64) - images[..., 1].astype(np.int64) + 255) // 2  # 0..255
    masks = np.empty(stain.shape, dtype=bool)
    for i, s in enumerate(stain):
        masks[i] = s > _otsu_threshold(s)
    return masks


def _otsu_threshold(values: np.ndarray) -> float:
    hist = np.bincount(np.clip(values.astype(np.int64).ravel(), 0, 255), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * levels)
    mu0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mu1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(np.argmax(between)) + 0.5  # pixels <= argmax fall below the threshold


def mass_on_mask(cams: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each map's total mass that lies inside its mask (NaN for an all-zero map)."""
    total = cams.reshape(len(cams), -1).sum(1)
    inside = (cams * masks).reshape(len(cams), -1).sum(1)
    return np.divide(inside, total, out=np.full(len(cams), np.nan), where=total > 0)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two maps (0 when either is constant: no ordering to agree on)."""
    from edgeblood.evaluation.metrics import average_ranks

    ra, rb = average_ranks(a.ravel().astype(np.float64)), average_ranks(b.ravel().astype(np.float64))
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every layer re-initialised (the full model-randomisation test)."""
    clone = copy.deepcopy(model)
    torch.manual_seed(seed)
    for module in clone.modules():
        if hasattr(module, "reset_parameters") and callable(module.reset_parameters):
            module.reset_parameters()
        if hasattr(module, "reset_running_stats") and callable(module.reset_running_stats):
            module.reset_running_stats()
    return clone.eval()


def sanity_check(
    model: nn.Module,
    images: np.ndarray,
    mean: list[float],
    std: list[float],
    *,
    layer: str | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict:
    """Is this Grad-CAM telling us something about the model? Two checks on ``images``.

    - cell focus: is the map denser on the stained cell than on the background (its mass share on
      the cell exceeds the cell's area share), and does its peak fall on the cell (pointing game)?
    - model randomisation (Adebayo et al. 2018): rank correlation between the maps of the trained
      model and of a re-initialised copy; a map that does not depend on the weights is an edge
      detector, not an explanation.
    ``passed`` is True when most images are cell-focused and the median correlation stays below
    ``RANDOMISED_RHO_MAX``.
    """
    expl = explain(model, images, mean, std, layer=layer, device=device)
    masks = cell_mask(images)
    mass = mass_on_mask(expl.cams, masks)
    area = masks.reshape(len(masks), -1).mean(1)
    valid = ~np.isnan(mass)
    flat = expl.cams.reshape(len(images), -1)
    peak_on_cell = masks.reshape(len(images), -1)[np.arange(len(images)), flat.argmax(1)] & valid
    rand = explain(randomized_copy(model, seed), images, mean, std, targets=expl.targets, layer=expl.layer, device=device)
    rho = np.array([spearman(a, b) for a, b in zip(expl.cams, rand.cams)])
    enriched = float((mass[valid] > area[valid]).sum() / len(images))
    result = {
        "images": int(len(images)),
        "layer": expl.layer,
        "cell_area_share_mean": float(area.mean()),
        "cam_mass_on_cell_mean": float(np.nanmean(mass)) if valid.any() else None,
        "share_images_cell_enriched": enriched,
        "share_images_peak_on_cell": float(peak_on_cell.mean()),
        "share_images_mass_over_half_on_cell": float((mass[valid] > 0.5).sum() / len(images)),
        "empty_maps": int((~valid).sum()),
        "randomised_spearman_median": float(np.median(rho)),
    }
    result["passed"] = bool(enriched > 0.5 and result["randomised_spearman_median"] < RANDOMISED_RHO_MAX)
    return result


RANDOMISED_RHO_MAX = 0.5


