"""Grad-CAM (Selvaraju et al., ICCV 2017): where in the image a conv model found its evidence.

For a target class c and a convolutional layer with activations A (channels k, positions ij):
weights w_k = mean_ij dy_c/dA_kij, map = ReLU(sum_k w_k A_k), upsampled bilinearly to the input.

Hand-written on forward hooks and ``torch.autograd.grad`` because the maintained
pytorch-grad-cam package imports torchvision, which is not a dependency of edgeblood (and is
broken in this environment). The implementation is small and checked by the sanity tests of
Adebayo et al. (NeurIPS 2018): maps must change when the weights are randomised, and on a trained
model they must sit on the stained cell rather than the slide background (``sanity_check``).

The default layer is the last convolutional stage whose output still has a spatial extent > 1 px
(later 1x1 maps - e.g. inside squeeze-excitation gates - carry no "where"); see
``default_target_layer``. Any module can be chosen by name instead.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeblood.data.batches import Normalizer, to_tensor_nchw
from edgeblood.errors import EdgebloodError

DISPLAY_PX = 168  # overlays are upscaled so a 28 px cell is visible


@dataclass
class Explanation:
    """Grad-CAM maps for a batch: ``cams`` [N, H, W] in [0, 1] at the input resolution."""

    cams: np.ndarray
    probs: np.ndarray
    targets: np.ndarray  # the class each map explains (the prediction unless given)
    layer: str

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(1)


def _probe(model: nn.Module, in_size: int) -> list[tuple[str, nn.Module, object]]:
    """(name, module, output) of every submodule, in the order they finish, for one blank image."""
    done: list[tuple[str, nn.Module, object]] = []
    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: done.append((name, m, o)))
        for name, module in model.named_modules()
        if name
    ]
    was_training = model.training
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, in_size, in_size, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return done


def conv_layers(model: nn.Module, in_size: int) -> list[tuple[str, tuple[int, ...]]]:
    """(name, output shape) of every Conv2d in execution order for one ``in_size`` px input."""
    return [(n, tuple(o.shape)) for n, m, o in _probe(model, in_size) if isinstance(m, nn.Conv2d)]


def default_target_layer(model: nn.Module, in_size: int) -> str:
    """The last convolutional stage that still has a spatial map, as a module name.

    Start from the last Conv2d whose output is larger than 1x1 and has more than one channel
    (one-channel convs are spatial-attention gates, not features), then climb to the largest
    enclosing module whose output keeps that spatial size - the conv-BN-activation unit, the
    residual block after its addition, the whole inception module after its concatenation. Those
    are the rectified, complete features Grad-CAM is defined on; on se-cnn at 28 px the raw conv
    output gave all-zero maps for 6 % of test images, the unit output for none.
    """
    probe = _probe(model, in_size)
    out_of = {name: out for name, _m, out in probe}
    kids = {name: [n for n, _m, _o in probe if n.rpartition(".")[0] == name] for name, _m, _o in probe}
    convs = [n for n, m, o in probe if isinstance(m, nn.Conv2d) and _spatial(o) and o.shape[1] > 1]
    if not convs:
        name = getattr(model, "edgeblood_config", {}).get("name", type(model).__name__)
        raise EdgebloodError(f"model '{name}' has no convolution with a spatial output at {in_size} px, so Grad-CAM has nothing to map; "
                             "explain a conv-based model")
    target = convs[-1]
    size = tuple(out_of[target].shape[-2:])
    parent = target.rpartition(".")[0]
    while parent and parent in out_of and _spatial(out_of[parent]) and tuple(out_of[parent].shape[-2:]) == size:
        target, parent = parent, parent.rpartition(".")[0]
    # A Sequential that just hands on its last block's output (e.g. ``features``) is named by that block.
    modules = dict(model.named_modules())
    while isinstance(modules[target], nn.Sequential):
        same = [k for k in kids.get(target, []) if out_of[k] is out_of[target] and kids.get(k)]
        if not same:
            break
        target = same[-1]
    return target


def _spatial(out) -> bool:
    return isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-1] * out.shape[-2] > 1


class GradCAM:
    """Grad-CAM on one named layer of ``model`` (``layer=None``: the default target layer)."""

    def __init__(self, model: nn.Module, in_size: int, layer: str | None = None):
        self.model = model.eval()
        modules = dict(model.named_modules())
        self.layer_name = layer or default_target_layer(model, in_size)
        if self.layer_name not in modules:
            convs = [n for n, _ in conv_layers(model, in_size)]
            raise EdgebloodError(f"model has no layer '{self.layer_name}'; pick one of its conv layers: {', '.join(convs[-6:])}")
        self.layer = modules[self.layer_name]

    def __call__(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised NCHW batch -> (maps [N, H, W] in [0, 1] at input size, logits [N, C])."""
        store: dict[str, torch.Tensor] = {}

        def hook(_module, _inputs, output):
            if not isinstance(output, torch.Tensor):
                raise EdgebloodError(f"layer '{self.layer_name}' does not output a single tensor; choose a conv layer for Grad-CAM")
            store["act"] = output
            return output.clone()  # downstream in-place ops (ReLU(inplace=True)) must not overwrite A

        handle = self.layer.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                x = x.detach().requires_grad_(True)  # gradients flow even through frozen (requires_grad=False) layers
                logits = self.model(x)
                if "act" not in store:
                    raise EdgebloodError(f"layer '{self.layer_name}' is not used in the forward pass; choose another layer")
                if targets is None:
                    targets = logits.argmax(1)
                score = logits.gather(1, targets.view(-1, 1).to(logits.device)).sum()
                (grads,) = torch.autograd.grad(score, store["act"])
        finally:
            handle.remove()
        act = store["act"].detach()
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * act).sum(1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
        return (cam / peak).clamp_(0, 1), logits.detach()


def explain(
    model: nn.Module,
    images: np.ndarray,
    mean: list[float],
    std: list[float],
    *,
    targets: np.ndarray | None = None,
    layer: str | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> Explanation:
    """Grad-CAM maps for uint8 NHWC ``images`` (raw pixels, normalised here as in training)."""
    device = torch.device(device)
    model = model.eval().to(device)
    cam = GradCAM(model, images.shape[1], layer)
    norm = Normalizer(mean, std, device)
    x_all = to_tensor_nchw(images)
    cams, probs = [], []
    for start in range(0, len(x_all), batch_size):
        x = norm(x_all[start : start + batch_size].to(device).float().div_(255.0))
        t = None if targets is None else torch.as_tensor(np.asarray(targets[start : start + batch_size]), dtype=torch.long)
        maps, logits = cam(x, t)
        cams.append(maps.cpu())
        probs.append(torch.softmax(logits.float(), 1).cpu())
    probs_np = torch.cat(probs).numpy()
    chosen = probs_np.argmax(1) if targets is None else np.asarray(targets, dtype=np.int64)
    return Explanation(cams=torch.cat(cams).numpy().astype(np.float32), probs=probs_np, targets=chosen, layer=cam.layer_name)


# --- sanity checks -------------------------------------------------------------------------------------


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


# --- pictures ------------------------------------------------------------------------------------------


def overlay(image: np.ndarray, cam: np.ndarray, *, alpha: float = 0.45, size: int = DISPLAY_PX, cmap: str = "jet") -> np.ndarray:
    """The cell image with the Grad-CAM map blended on top, upscaled to ``size`` px (uint8 HxWx3)."""
    import matplotlib
    from PIL import Image

    base = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    heat = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    heat = F.interpolate(heat, size=(size, size), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1).numpy()
    colour = matplotlib.colormaps[cmap](heat)[..., :3] * 255.0
    return np.clip((1 - alpha) * base + alpha * colour, 0, 255).astype(np.uint8)


def save_overlay(image: np.ndarray, cam: np.ndarray, dest: str | os.PathLike, *, size: int = DISPLAY_PX) -> Path:
    """PNG with the image and its overlay side by side (no text: the file name says what it is)."""
    from PIL import Image

    from edgeblood.atomic import atomic_path

    big = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))
    pair = np.concatenate([big, np.full((size, 4, 3), 255, np.uint8), overlay(image, cam, size=size)], axis=1)
    dest = Path(dest)
    with atomic_path(dest, suffix=".png") as tmp:
        Image.fromarray(pair).save(tmp, format="PNG")
    return dest


def plot_class_grid(
    images: np.ndarray,
    y_true: np.ndarray,
    expl: Explanation,
    classes: list[str],
    cls: int,
    dest: str | os.PathLike,
    *,
    per_side: int = 4,
    seed: int = 0,
    title: str = "",
) -> Path:
    """One class: correctly classified examples (left) and misclassified ones (right), each as
    image + Grad-CAM overlay of the class the model predicted."""
    from edgeblood.evaluation.plots import ERROR_RED, _figure, save_figure

    rng = np.random.default_rng(seed)
    of_class = y_true == cls
    right = np.flatnonzero(of_class & (expl.preds == y_true))
    wrong = np.flatnonzero(of_class & (expl.preds != y_true))
    right = np.sort(rng.choice(right, min(per_side, len(right)), replace=False)) if len(right) else right
    wrong = np.sort(rng.choice(wrong, min(per_side, len(wrong)), replace=False)) if len(wrong) else wrong
    rows = max(1, len(right), len(wrong))
    fig = _figure(8.2, 2.1 * rows + 0.8, grid=True)
    axes = np.asarray(fig.subplots(rows, 4)).reshape(rows, 4)
    for ax in axes.ravel():
        ax.axis("off")
    for col, picked, ok in ((0, right, True), (2, wrong, False)):
        if len(picked) == 0:
            axes[0, col].text(0.5, 0.5, "none" if ok else "no mistakes", ha="center", va="center", transform=axes[0, col].transAxes)
        for r, i in enumerate(picked):
            p = expl.preds[i]
            axes[r, col].imshow(images[i], interpolation="bicubic")
            axes[r, col].set_title("correct" if ok else f"true {classes[cls]}", fontsize=7)
            axes[r, col + 1].imshow(overlay(images[i], expl.cams[i]))
            axes[r, col + 1].set_title(f"pred {classes[p]} {expl.probs[i, p]:.2f}", fontsize=7, color="black" if ok else ERROR_RED)
    n_cls = int(of_class.sum())
    fig.suptitle(
        title or f"Grad-CAM, {classes[cls]}: {len(right)} correct (left) / {len(wrong)} misclassified (right) shown of {n_cls}; layer {expl.layer}",
        fontsize=9,
    )
    return save_figure(fig, dest)


def write_class_grids(
    images: np.ndarray,
    y_true: np.ndarray,
    expl: Explanation,
    classes: list[str],
    out_dir: str | os.PathLike,
    *,
    prefix: str = "gradcam",
    per_side: int = 4,
    label: str = "",
) -> list[Path]:
    """One grid PNG per class present in ``y_true`` (``{prefix}_{class}.png``)."""
    out_dir = Path(out_dir)
    paths = []
    for cls in np.unique(y_true):
        slug = classes[cls].replace(" ", "_")
        title = f"Grad-CAM ({expl.layer}), true class {classes[cls]}: correct left, misclassified right (map of the predicted class)"
        if label:
            title += f"\n{label}"
        paths.append(plot_class_grid(images, y_true, expl, classes, int(cls), out_dir / f"{prefix}_{slug}.png", per_side=per_side, title=title))
    return paths


def plot_overview_grid(
    images: np.ndarray,
    expl: Explanation,
    classes: list[str],
    names: list[str],
    dest: str | os.PathLike,
    *,
    limit: int = 24,
    title: str = "",
) -> Path:
    """Unlabelled images: image and Grad-CAM overlay pairs, titled with file name and prediction."""
    from edgeblood.evaluation.plots import _figure, save_figure

    n = min(len(images), limit)
    pairs_per_row = 3
    rows = max(1, math.ceil(n / pairs_per_row))
    fig = _figure(2.0 * 2 * pairs_per_row, 2.2 * rows + 0.8, grid=True)
    axes = np.asarray(fig.subplots(rows, 2 * pairs_per_row)).reshape(rows, 2 * pairs_per_row)
    for ax in axes.ravel():
        ax.axis("off")
    for k in range(n):
        r, c = divmod(k, pairs_per_row)
        t = expl.targets[k]
        axes[r, 2 * c].imshow(images[k], interpolation="bicubic")
        axes[r, 2 * c].set_title(names[k][:28], fontsize=7)
        axes[r, 2 * c + 1].imshow(overlay(images[k], expl.cams[k]))
        axes[r, 2 * c + 1].set_title(f"{classes[t]} {expl.probs[k, t]:.2f}", fontsize=7)
    more = f" (first {n} of {len(images)})" if len(images) > n else ""
    fig.suptitle(title or f"Grad-CAM, layer {expl.layer}{more}", fontsize=9)
    return save_figure(fig, dest)
