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

The algorithm only: the sanity checks are in ``gradcam_checks.py``, the overlays and grids with the
other evaluation pictures in ``plots.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeblood.data.batches import Normalizer, to_tensor_nchw
from edgeblood.errors import EdgebloodError


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
