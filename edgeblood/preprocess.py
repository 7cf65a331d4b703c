"""The deployment contract in one module: raw RGB pixels in, class probabilities (and label) out.

Exported models wrap the trained network in ``RawPixelClassifier`` so that normalisation lives in
the graph and an app never re-implements preprocessing. Contract (documented in the README):

* input ``image``: float32, NCHW, RGB, values 0-255, ``size`` x ``size`` px, dynamic batch;
* output ``probabilities``: float32 [N, 8], softmax; output ``label``: int64 [N], argmax.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from edgeblood.contract import INPUT_NAME, LABEL_NAME, PROB_NAME
from edgeblood.run_metadata import RunMetadata, as_run_metadata

__all__ = ["INPUT_NAME", "LABEL_NAME", "PROB_NAME", "RawPixelClassifier", "wrap_for_deployment"]


class RawPixelClassifier(nn.Module):
    def __init__(self, model: nn.Module, mean: list[float], std: list[float], with_label: bool = True):
        super().__init__()
        self.model = model
        self.with_label = with_label
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        # (x/255 - mean)/std == x * scale + shift
        self.register_buffer("scale", 1.0 / (255.0 * std_t))
        self.register_buffer("shift", -mean_t / std_t)

    def forward(self, image: torch.Tensor):
        probs = torch.softmax(self.model(image * self.scale + self.shift), dim=1)
        if self.with_label:
            return probs, torch.argmax(probs, dim=1)
        return probs


def wrap_for_deployment(model: nn.Module, metadata: RunMetadata | Mapping[str, Any], with_label: bool = True) -> RawPixelClassifier:
    """Wrap a run's model (eval mode, fp32, CPU) with the preprocessing stored in its metadata (``Run.meta``)."""
    inp = as_run_metadata(metadata).input
    return RawPixelClassifier(model, list(inp.mean), list(inp.std), with_label=with_label).eval()
