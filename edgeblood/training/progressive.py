"""Progressive resizing: the first epochs train on downscaled images, the last ones at the model's size.

A convolutional model with global pooling runs at any input size, and its cost falls with the pixel
count: an epoch at 32 px costs a quarter of one at 64 px. Training most epochs small and finishing
at full size (the "FixRes" effect: the last epochs re-fit the filters and batch-norm statistics to
the size the model is used at) buys a longer schedule for the same compute. Images are augmented at
full size first and downscaled after (antialiased), as a random-resized crop would hand them over;
val, test and every export stay at ``--size``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from edgeblood.errors import EdgebloodError

Stages = list[list[int]]  # [[size_px, epochs], ...] in training order (JSON-able, for run.json)


def parse_stages(text: str) -> Stages:
    """``"32:40,48:10"`` -> [[32, 40], [48, 10]]; one line naming the form when it does not parse."""
    stages = []
    for part in text.split(","):
        size, sep, epochs = part.strip().partition(":")
        try:
            stage = [int(size), int(epochs)] if sep else None
        except ValueError:
            stage = None
        if stage is None:
            raise EdgebloodError(f"--progressive-resize takes SIZE:EPOCHS[,SIZE:EPOCHS...], e.g. 32:40,48:10; got '{text}'")
        stages.append(stage)
    return stages


def stage_problems(stages: Stages, size: int, epochs: int) -> list[str]:
    """Why these stages do not fit a run at ``size`` px for ``epochs`` epochs (empty when they do)."""
    problems = []
    sizes = [s for s, _ in stages]
    if any(s < 8 or s >= size for s in sizes):
        problems.append(f"--progressive-resize sizes must be from 8 px up to below --size {size}, got {sizes}")
    if sizes != sorted(set(sizes)):
        problems.append(f"--progressive-resize sizes must grow stage by stage, got {sizes}")
    if any(e < 1 for _, e in stages):
        problems.append(f"--progressive-resize: each stage needs at least 1 epoch, got {stages}")
    if sum(e for _, e in stages) >= epochs:
        problems.append(f"--progressive-resize stages take {sum(e for _, e in stages)} epochs of --epochs {epochs}: "
                        "leave at least one epoch at full size")
    return problems


def size_at_epoch(stages: Stages | None, epoch: int) -> int | None:
    """The training image size of ``epoch`` (1-based); None = full size."""
    end = 0
    for size, epochs in stages or []:
        end += epochs
        if epoch <= end:
            return size
    return None


def describe_stages(stages: Stages, size: int, epochs: int) -> str:
    """``32 px for epochs 1-40, 48 px for epochs 41-50, then 64 px for epochs 51-60``."""
    def span(first: int, last: int) -> str:
        return f"epoch {first}" if first == last else f"epochs {first}-{last}"

    parts, start = [], 1
    for px, n in stages:
        parts.append(f"{px} px for {span(start, start + n - 1)}")
        start += n
    return ", ".join(parts) + f", then {size} px for {span(start, epochs)}"


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
