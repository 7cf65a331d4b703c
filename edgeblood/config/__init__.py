"""The declarative half of training: what a run is (``TrainConfig``, ``AugmentConfig``) and the named
recipes that fill it in (``config_from_recipe``), with no torch anywhere below this package.

    from edgeblood.config import config_from_recipe
    cfg = config_from_recipe("se-cnn", 28, "default", epochs=10)   # a TrainConfig; nothing trains yet

Kept apart from ``edgeblood.training`` (which loads torch) so that ``edgeblood train --help``, a
notebook that builds or inspects a configuration, and a tool that reads run.json's ``training.config``
stay light, and so that the CLI and the Python API apply a recipe through one function.
"""

from edgeblood.config.augment import AugmentConfig
from edgeblood.config.recipes import FINETUNE_LR_FACTOR, RECIPES, config_from_recipe, get_recipe, recipe_names
from edgeblood.config.stages import Stages, parse_stages
from edgeblood.config.train import OPTIMIZERS, PRECISIONS, SCHEDULES, TrainConfig

__all__ = [
    "AugmentConfig", "FINETUNE_LR_FACTOR", "OPTIMIZERS", "PRECISIONS", "RECIPES", "SCHEDULES", "Stages", "TrainConfig",
    "config_from_recipe", "get_recipe", "parse_stages", "recipe_names",
]
