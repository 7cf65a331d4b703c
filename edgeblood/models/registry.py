"""The model registry: ``@register_model`` on a factory, ``create(name, ...)`` to build one.

Every built model remembers how it was built (``model.edgeblood_config``) so a run directory can
rebuild it from JSON metadata alone - checkpoints never need pickled classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch.nn as nn

from edgeblood.errors import EdgebloodError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., nn.Module]
    family: str
    description: str
    reference: str = ""  # the study a reference model reproduces
    published: dict = field(default_factory=dict)  # published figures, e.g. {"params": 422344, "in_size": 28}


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, family: str, description: str, reference: str = "", published: dict | None = None):
    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' registered twice")
        _REGISTRY[name] = ModelEntry(name, factory, family, description, reference, dict(published or {}))
        return factory

    return wrap


def create(name: str, num_classes: int = 8, in_size: int = 28, **cfg) -> nn.Module:
    """Build a registered model for ``in_size`` px RGB input; extra keyword arguments tune the family."""
    entry = get_entry(name)
    try:
        model = entry.factory(num_classes=num_classes, in_size=in_size, **cfg)
    except TypeError as exc:
        raise EdgebloodError(f"model '{name}' does not take these options ({exc}); see `edgeblood models`") from None
    except ValueError as exc:  # e.g. an input size too small for the model's pooling stages
        raise EdgebloodError(f"model '{name}' cannot be built at {in_size} px with {cfg or 'its defaults'}: {exc}") from None
    model.edgeblood_config = {"name": name, "num_classes": num_classes, "in_size": in_size, **cfg}
    return model


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise EdgebloodError(f"unknown model '{name}'; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_models() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def _ensure_loaded() -> None:
    # Importing the package registers every family module.
    import edgeblood.models  # noqa: F401
