"""Training: ``train(TrainConfig)`` produces a run directory (see edgeblood.runs); the config is edgeblood.config."""

from edgeblood.training.engine import train

__all__ = ["train"]
