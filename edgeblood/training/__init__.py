"""Training: ``train(TrainConfig)`` produces a run directory (see edgeblood.runs); the config is edgeblood.config.

What a running training reports goes to ``Callback`` objects (edgeblood.training.callbacks); the
CLI's rich display is one of them (edgeblood.training.display).
"""

from edgeblood.training.callbacks import Callback
from edgeblood.training.engine import train

__all__ = ["Callback", "train"]
