"""Progressive resizing's schedule as data: ``[[size_px, epochs], ...]`` parsed, checked and read.

A TrainConfig's ``progressive`` field holds the stages (run.json records them); the training side
(``edgeblood.training.progressive``) checks the model can take them and the epoch loop asks
:func:`size_at_epoch` which size each epoch trains at. Torch-free, like the rest of ``edgeblood.config``.
"""

from __future__ import annotations

from edgeblood.errors import ConfigError

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
            raise ConfigError(f"--progressive-resize takes SIZE:EPOCHS[,SIZE:EPOCHS...], e.g. 32:40,48:10; got '{text}'")
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
