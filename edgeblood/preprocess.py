"""The deployment contract in one module: raw RGB pixels in, class probabilities (and label) out.

Exported models wrap the trained network in ``RawPixelClassifier`` so that normalisation lives in
the graph and an app never re-implements preprocessing. Contract (documented in the README):

* input ``image``: float32, NCHW, RGB, values 0-255, ``size`` x ``size`` px, dynamic batch;
* output ``probabilities``: float32 [N, 8], softmax; output ``label``: int64 [N], argmax;
* output ``domain`` (runs with a domain profile, edgeblood.domain): float32 [N, 2], the feature and
  image distances to the training data divided by their thresholds; above 1 = unlike training.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from edgeblood.contract import INPUT_NAME, LABEL_NAME, PROB_NAME
from edgeblood.errors import EdgebloodError
from edgeblood.run_metadata import RunMetadata, as_run_metadata

__all__ = ["INPUT_NAME", "LABEL_NAME", "PROB_NAME", "RawPixelClassifier", "wrap_for_deployment", "wrap_run"]


class RawPixelClassifier(nn.Module):
    def __init__(self, model: nn.Module, mean: list[float], std: list[float], with_label: bool = True, domain: nn.Module | None = None,
                 num_classes: int | None = None):
        super().__init__()
        self.model = model
        self.with_label = with_label
        # domain: a DomainScorer; the network is then run as (body, head) so the features feed it
        self.domain = domain
        self.split = None
        if domain is not None:
            from edgeblood.domain.scorer import split_at_head

            # The head is found by its output width, the run's class count: not the profile's rows, which are the
            # classes present where it was fitted (an adapted run's pseudo-labels can miss one).
            classes = num_classes or getattr(model, "edgeblood_config", {}).get("num_classes") or domain.feature_means.shape[0]
            self.split = split_at_head(model, classes)
            if self.split is None:
                raise EdgebloodError(f"{type(model).__name__}: a domain profile needs a model whose classifier head is its last operation "
                                     f"(one Linear layer with {classes} outputs); refit it with the run's own model or delete domain.pt")
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        # (x/255 - mean)/std == x * scale + shift
        self.register_buffer("scale", 1.0 / (255.0 * std_t))
        self.register_buffer("shift", -mean_t / std_t)

    def forward(self, image: torch.Tensor):
        x = image * self.scale + self.shift
        if self.split is not None:
            logits, features = self.split(x)
            probs = torch.softmax(logits, dim=1)
            domain = self.domain(image, features)
            if self.with_label:
                return probs, torch.argmax(probs, dim=1), domain
            return probs, domain
        probs = torch.softmax(self.model(x), dim=1)
        if self.with_label:
            return probs, torch.argmax(probs, dim=1)
        return probs


def wrap_run(run, with_label: bool = True) -> RawPixelClassifier:
    """``wrap_for_deployment`` of a Run, with its domain profile (domain.pt) when run.json says it has one."""
    from edgeblood.domain.profile import DOMAIN_FILE, load_profile

    domain = load_profile(run.dir) if run.meta.domain else None
    if run.meta.domain and domain is None:
        raise EdgebloodError(f"{run.dir}: run.json has a domain profile but {DOMAIN_FILE} is missing; copy it from where the run was trained, "
                             "or refit it with `edgeblood evaluate RUN --calibrate`")
    return wrap_for_deployment(run.model, run.meta, with_label=with_label, domain=domain)


def wrap_for_deployment(model: nn.Module, metadata: RunMetadata | Mapping[str, Any], with_label: bool = True,
                        domain: nn.Module | None = None) -> RawPixelClassifier:
    """Wrap a run's model (eval mode, fp32, CPU) with the preprocessing stored in its metadata (``Run.meta``);
    with ``domain`` (the run's DomainScorer) the wrapper also returns the ``domain`` output."""
    meta = as_run_metadata(metadata)
    return RawPixelClassifier(model, list(meta.input.mean), list(meta.input.std), with_label=with_label, domain=domain,
                              num_classes=len(meta.classes)).eval()
