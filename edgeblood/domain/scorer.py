"""The in-graph domain check: how far an image lies from what the model was trained on.

BloodMNIST is one lab, one device and one stain. On cells from another lab a model is wrong on almost
every image while as confident as on its own (issue #26: 12.8 % accuracy on another lab's cells at a
mean top probability of 0.90). The softmax cannot tell, so two distances are measured instead:

* **features**: the Mahalanobis distance (Lee et al., 2018) of the network's penultimate features to
  the nearest class mean, with one covariance shared by the classes, in the top principal components
  of the training features (the full covariance of a 4,096-wide VGG head would not fit an app);
* **image**: the Mahalanobis distance of a few pixel statistics to the training images' — per-channel
  mean and spread (colour, stain, background), sharpness (focus) and the share of dark, stained
  pixels (how much of the window a cell fills: pixel scale).

Both are divided by their threshold, fitted so that a chosen share of the held-in val images lies
above it, so the exported graph's ``domain`` output reads the same in every app: a value above 1 is
outside what training saw. Everything is plain tensor arithmetic (no sort, no conv), so it exports
to ONNX, OpenVINO, Core ML, LiteRT and ExecuTorch; the int8 paths leave it in float
(``domain_only_nodes``, ``domain_only_ops`` and ``DOMAIN_IN_FLOAT`` in ``edgeblood.exporters.<format>.quantize``
for ONNX, OpenVINO and LiteRT).
"""

from __future__ import annotations

import torch
import torch.nn as nn

#: The image statistics, in the order of ``image_statistics``'s columns, and the cause each points to.
IMAGE_STATS = ("mean_r", "mean_g", "mean_b", "spread_r", "spread_g", "spread_b", "sharpness", "dark_share")
STAT_GROUP = {"mean_r": "colour", "mean_g": "colour", "mean_b": "colour", "spread_r": "colour", "spread_g": "colour",
              "spread_b": "colour", "sharpness": "focus", "dark_share": "scale"}
SCORES = ("features", "image")


def image_statistics(image: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] RGB 0-255 -> [N, 8] (see IMAGE_STATS); exportable tensor ops only.

    Sharpness is the mean absolute Laplacian of the grey image relative to its spread, so a dimmer
    or paler lab does not read as blur. The dark share counts pixels darker than 60 % of the image's
    mean grey: stained nuclei and cytoplasm against the smear, i.e. how much of the window a cell
    fills, which follows the pixel scale.
    """
    x = image.float() / 255.0
    mean = x.mean(dim=(2, 3))
    spread = (x - mean[:, :, None, None]).pow(2).mean(dim=(2, 3)).add(1e-6).sqrt()
    grey = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    lap = 4 * grey[:, 1:-1, 1:-1] - grey[:, :-2, 1:-1] - grey[:, 2:, 1:-1] - grey[:, 1:-1, :-2] - grey[:, 1:-1, 2:]
    grey_mean = grey.mean(dim=(1, 2))
    grey_spread = (grey - grey_mean[:, None, None]).pow(2).mean(dim=(1, 2)).add(1e-6).sqrt()
    sharpness = lap.abs().mean(dim=(1, 2)) / (grey_spread + 0.02)
    dark = torch.sigmoid((0.6 * grey_mean[:, None, None] - grey) * 40.0).mean(dim=(1, 2))
    return torch.cat([mean, spread, sharpness[:, None], dark[:, None]], dim=1)


def nearest_mean_distance(x: torch.Tensor, means: torch.Tensor, whiten: torch.Tensor) -> torch.Tensor:
    """min over rows of ``means`` of ||whiten (x - mean)||^2, for [N, D] x, [C, D] means and [K, D] whiten."""
    z = x @ whiten.t()  # [N, K]
    zm = means @ whiten.t()  # [C, K]
    d = (z * z).sum(1, keepdim=True) - 2 * z @ zm.t() + (zm * zm).sum(1)[None, :]
    return d.min(dim=1).values.clamp(min=0)


class DomainScorer(nn.Module):
    """[N, 2] = (feature distance, image distance), each divided by its threshold (> 1: outside)."""

    def __init__(self, feature_means: torch.Tensor, feature_whiten: torch.Tensor, image_mean: torch.Tensor,
                 image_whiten: torch.Tensor, thresholds: torch.Tensor):
        super().__init__()
        self.register_buffer("feature_means", feature_means.float())
        self.register_buffer("feature_whiten", feature_whiten.float())
        self.register_buffer("image_mean", image_mean.float().view(1, -1))
        self.register_buffer("image_whiten", image_whiten.float())
        self.register_buffer("thresholds", thresholds.float().view(1, 2))

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> "DomainScorer":
        return cls(state["feature_means"], state["feature_whiten"], state["image_mean"], state["image_whiten"], state["thresholds"])

    def raw(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        feat = nearest_mean_distance(features.float(), self.feature_means, self.feature_whiten)
        img = nearest_mean_distance(image_statistics(image), self.image_mean, self.image_whiten)
        return torch.stack([feat, img], dim=1)

    def forward(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.raw(image, features) / self.thresholds


class HeadSplit(nn.Module):
    """A registry model cut at its classifier head: ``body(x)`` gives the penultimate features."""

    def __init__(self, body: nn.Module, head: nn.Module):
        super().__init__()
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.head(features), features


def split_at_head(model: nn.Module, num_classes: int) -> HeadSplit | None:
    """The model as (body, head) sharing its weights, or None when the head is not its last operation
    (checked on a probe batch: logits must equal head(body(x)))."""
    import copy

    from edgeblood.errors import EdgebloodError
    from edgeblood.models.head import classifier_head

    try:
        name = classifier_head(model, num_classes)
    except EdgebloodError:
        return None
    head = model.get_submodule(name)
    body = copy.copy(model)  # shallow: shares every parameter; only the head slot is swapped below
    body._modules = dict(model._modules)
    _set_submodule(body, name, nn.Identity())
    split = HeadSplit(body, head).eval()
    in_size = getattr(model, "edgeblood_config", {}).get("in_size", 28)
    probe = torch.rand(2, 3, in_size, in_size)
    with torch.no_grad():
        try:
            logits, features = split(probe)
            ok = features.dim() == 2 and torch.allclose(logits, model.eval()(probe), atol=1e-5)
        except Exception:  # a model whose forward reshapes around the head: no feature score
            ok = False
    return split if ok else None


def _set_submodule(root: nn.Module, dotted: str, module: nn.Module) -> None:
    """Replace ``dotted`` inside ``root`` with ``module``, shallow-copying each container on the way so
    the original model is untouched."""
    import copy

    parts = dotted.split(".")
    node = root
    for part in parts[:-1]:
        child = copy.copy(node._modules[part])
        child._modules = dict(child._modules)
        node._modules[part] = child
        node = child
    node._modules[parts[-1]] = module
