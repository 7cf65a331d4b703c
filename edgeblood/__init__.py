"""edgeblood: blood-cell classification from training to an app on a device.

    import edgeblood
    clf = edgeblood.Classifier("se-cnn-28")
    print(clf.predict(["cell.png"])[0].predicted)

``train``, ``load``, ``Classifier``, ``Run`` and ``Callback`` (edgeblood.api) are loaded on first use, so
``import edgeblood`` (and the CLI's ``--help``) does not import torch; so are ``config_from_recipe``,
``TrainConfig`` and ``AugmentConfig`` (edgeblood.config, torch-free: building a configuration never
loads the trainer). The error family (``EdgebloodError`` and its kinds, edgeblood.errors) is light and
imported here.
"""

from edgeblood.errors import (
    ConfigError,
    DataError,
    EdgebloodError,
    ExportError,
    MissingExtraError,
    ModelError,
    RunError,
)

__version__ = "0.1.0"

_API = ("Callback", "Classifier", "Run", "load", "train")
_CONFIG = ("AugmentConfig", "TrainConfig", "config_from_recipe")

__all__ = ["__version__", *_API, *_CONFIG, "ConfigError", "DataError", "EdgebloodError", "ExportError", "MissingExtraError", "ModelError", "RunError"]


def __getattr__(name: str):
    """``edgeblood.train`` & co.: import edgeblood.api (torch and all) only when one of them is used;
    ``edgeblood.config_from_recipe`` & co. from edgeblood.config (no torch)."""
    if name in _API:
        from edgeblood import api

        return getattr(api, name)
    if name in _CONFIG:
        from edgeblood import config

        return getattr(config, name)
    raise AttributeError(f"module 'edgeblood' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API) | set(_CONFIG))
