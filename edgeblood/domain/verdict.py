"""Reading the ``domain`` output for people: which images are unlike training, and why a folder is.

An artifact's ``domain`` output holds two distances divided by their thresholds (edgeblood.domain.scorer);
an image is *outside* when either is above 1. Its likely cause comes from the pixel statistics the
artifact's metadata describes: the group (colour, focus, scale) furthest from the training images, in
training standard deviations; when only the feature distance is high the cause is the content (a cell
type, stain pattern or artefact the network did not learn). A folder gets one verdict line when its
share of outside images is well above the share the thresholds flag on held-in val images.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: A folder is reported as unlike the training data when more than this share of its images is outside
#: (the thresholds flag about 4 % of held-in val images; 15 % of 20 in-domain images happens < 5 % of the time).
FOLDER_SHARE = 0.15
CAUSE_TEXT = {"colour": "colour (stain, white balance or background)", "focus": "focus (sharpness)",
              "scale": "scale (how much of the window a cell fills: pixel size or framing)",
              "content": "content (the network's features: an unfamiliar cell, stain pattern or artefact)"}


@dataclass(frozen=True)
class DomainCheck:
    """Per image: (feature, image) scores, whether it is outside, and the likely cause when it is."""

    scores: np.ndarray  # [N, 2]
    outside: np.ndarray  # [N] bool
    causes: list[str | None]


def check_images(domain: np.ndarray, stats: np.ndarray | None, info: Mapping[str, Any] | None) -> DomainCheck:
    """Outside flags and causes for a batch: ``domain`` the artifact's output, ``stats`` the images' pixel
    statistics (edgeblood.domain.scorer.image_statistics; None when the batch is whole captures)."""
    domain = np.asarray(domain, dtype=np.float64).reshape(len(domain), -1)
    outside = (domain > 1).any(1)
    groups = stat_group_of(stats, info) if stats is not None and info else [None] * len(domain)
    causes: list[str | None] = []
    for row, out, group in zip(domain, outside, groups):
        if not out:
            causes.append(None)
        elif row[1] > 1 and group is not None:
            causes.append(group)
        elif row[0] > 1:
            causes.append("content")
        else:
            causes.append(group or "image statistics")
    return DomainCheck(scores=domain, outside=outside, causes=causes)


def stat_group_of(stats: np.ndarray, info: Mapping[str, Any]) -> list[str]:
    """Per image, the group of pixel statistics furthest from training (by |z| against the stored means/stds)."""
    image_stats = info.get("image_stats") or {}
    mean, std, groups = (np.asarray(image_stats.get(k, []), dtype=object) for k in ("mean", "std", "groups"))
    if not len(mean) or len(mean) != stats.shape[1]:
        return ["image statistics"] * len(stats)
    z = np.abs((stats - mean.astype(float)) / (std.astype(float) + 1e-9))
    names = sorted(set(groups.tolist()))
    per_group = np.stack([z[:, groups == name].max(1) for name in names], 1)
    return [names[i] for i in per_group.argmax(1)]


def folder_verdict(outside: Sequence[bool], causes: Sequence[str | None], val_flagged: float | None) -> str | None:
    """The one line for a set of images when too many are outside, else None."""
    n, k = len(outside), int(sum(outside))
    if n == 0 or k == 0 or k / n <= FOLDER_SHARE:
        return None
    counted = Counter(c for c in causes if c)
    likely = ", ".join(f"{CAUSE_TEXT.get(c, c)}: {m}" for c, m in counted.most_common())
    ref = f" (held-in val images: {val_flagged:.1%})" if val_flagged is not None else ""
    return (f"these images do not look like the training data: {k} of {n} outside{ref}; likely cause: {likely}. "
            "Predictions on them are unreliable: adapt the model to this lab (`edgeblood adapt RUN --images DIR`) or fine-tune it on "
            "labelled images of this lab (`edgeblood train --data DIR --init RUN`)")
