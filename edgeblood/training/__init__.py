"""Training: ``train(TrainConfig)`` produces a run directory (see edgeblood.runs)."""

from edgeblood.training.config import TrainConfig
from edgeblood.training.engine import train

__all__ = ["TrainConfig", "train"]
