"""The model zoo. ``create(name, num_classes=8, in_size=28, **cfg)`` builds any registered model.

Conventions every convolutional family follows (Grad-CAM, pruning and export rely on them):
``model.features`` is the convolutional trunk and ends at the last spatial feature map,
``model.pool`` turns it into a vector and ``model.head`` classifies; ``forward`` is exactly
``head(pool(features(x)))``. Options (``**cfg``) are plain JSON values so ``model.edgeblood_config``
rebuilds the model from a run's metadata.
"""

from edgeblood.models.registry import ModelEntry, create, get_entry, list_models, register_model
from edgeblood.models.complexity import count_macs, count_params

# Family modules register themselves on import.
from edgeblood.models import se_cnn  # noqa: E402,F401
from edgeblood.models import mlp  # noqa: E402,F401
from edgeblood.models import plain_cnn  # noqa: E402,F401
from edgeblood.models import resnet  # noqa: E402,F401
from edgeblood.models import efficientnet  # noqa: E402,F401
from edgeblood.models import vgg  # noqa: E402,F401
from edgeblood.models import unet  # noqa: E402,F401
from edgeblood.models import inception  # noqa: E402,F401
from edgeblood.models import autoencoder  # noqa: E402,F401
from edgeblood.models import edge_cnn  # noqa: E402,F401

__all__ = ["ModelEntry", "count_macs", "count_params", "create", "get_entry", "list_models", "register_model"]
