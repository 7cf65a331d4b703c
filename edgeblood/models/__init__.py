"""The model zoo. ``create(name, num_classes=8, in_size=28, **cfg)`` builds any registered model."""

from edgeblood.models.registry import ModelEntry, create, get_entry, list_models, register_model
from edgeblood.models.complexity import count_macs, count_params

# Family modules register themselves on import.
from edgeblood.models import se_cnn  # noqa: E402,F401

__all__ = ["ModelEntry", "count_macs", "count_params", "create", "get_entry", "list_models", "register_model"]
