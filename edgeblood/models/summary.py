"""The registry as a table: params and MACs of every model at chosen input sizes.

Models are instantiated on PyTorch's ``meta`` device (shapes only, no memory, no weight init), so
sizing the whole zoo - including the 177 M-param MLP at 224 px - takes seconds; the counts are
identical to those of a real model (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from edgeblood.errors import EdgebloodError
from edgeblood.models.complexity import count_macs, count_params
from edgeblood.models.registry import create, get_entry, list_models


def profile(name: str, in_size: int, num_classes: int = 8, **cfg) -> dict:
    """``{"params": int, "macs": int}`` of ``create(name, num_classes, in_size, **cfg)`` (one image)."""
    with torch.device("meta"):
        model = create(name, num_classes=num_classes, in_size=in_size, **cfg)
    return {"params": count_params(model), "macs": count_macs(model, in_size)}


def zoo_table(
    names: Iterable[str] | None = None,
    sizes: Sequence[int] = (28, 64),
    on_model: Callable[[str], None] | None = None,
) -> list[dict]:
    """One row per registered model: name, family, description, reference, published, and per size
    ``{"params", "macs"}`` (``None`` where the model cannot take that size)."""
    rows = []
    for name in names or list_models():
        entry = get_entry(name)
        per_size: dict[str, dict | None] = {}
        for size in sizes:
            try:
                per_size[str(size)] = profile(name, size)
            except (EdgebloodError, ValueError, RuntimeError):
                per_size[str(size)] = None
        rows.append(
            {
                "name": name,
                "family": entry.family,
                "description": entry.description,
                "reference": entry.reference,
                "published": dict(entry.published),
                "sizes": per_size,
            }
        )
        if on_model:
            on_model(name)
    return rows
