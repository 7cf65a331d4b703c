"""Progressive resizing: the first epochs train on downscaled images, the last ones at the model's size.

A convolutional model with global pooling runs at any input size, and its cost falls with the pixel
count: an epoch at 32 px costs a quarter of one at 64 px. Training most epochs small and finishing
at full size (the "FixRes" effect: the last epochs re-fit the filters and batch-norm statistics to
the size the model is used at) buys a longer schedule for the same compute. Images are augmented at
full size first and downscaled after (antialiased), as a random-resized crop would hand them over;
val, test and every export stay at ``--size``.

The stages themselves (parsing, checks, the size of each epoch) are plain data in
``edgeblood.config.stages``; this module holds the check that needs the model.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from edgeblood.config.stages import Stages
from edgeblood.errors import EdgebloodError


def check_model_takes(model: nn.Module, model_name: str, stages: Stages) -> None:
    """Refuse at the start, not at the first small epoch, a model whose head is sized for one input size.

    A forward pass alone is not proof: a flattening head behind ceil-mode pooling can see the same grid
    at 20 and 28 px and run, while its dense layer then maps other image regions than at full size.
    So the model must pool adaptively (global pooling) and not flatten its feature map, and run.
    """
    pools = any(isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) for m in model.modules())
    if not pools or isinstance(getattr(model, "pool", None), nn.Flatten):
        raise EdgebloodError(f"{model_name} flattens its feature map into a classifier sized for one input size: --progressive-resize "
                             "needs a model with global pooling, e.g. se-cnn-compact (or --model-opt head=gap where the family has it)")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for size, _ in stages:
                param = next(model.parameters())
                model(torch.zeros(1, 3, size, size, device=param.device))
    except RuntimeError as exc:
        why = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise EdgebloodError(f"{model_name} cannot run on {size} px images ({why}): --progressive-resize needs a model "
                             "that takes any input size (global pooling), e.g. se-cnn-compact") from None
    finally:
        model.train(was_training)
