"""What a training writes about itself: run.json's metadata, the run directory's name, run.json's updates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch.nn as nn

from edgeblood import __version__
from edgeblood.config.train import TrainConfig
from edgeblood.cpu import cpu_info
from edgeblood.errors import EdgebloodError
from edgeblood.info import CREDIT, LICENSE
from edgeblood.provenance import command_line, git_commit, library_versions, utc_now
from edgeblood.run_metadata import TrainingInfo
from edgeblood.runs import TRAIN_STATE, open_run


def run_metadata(cfg: TrainConfig, model: nn.Module, data, mean, std, params: int, macs: int, device) -> dict:
    """run.json as the training starts (schema edgeblood.run/1); ``training`` and ``metrics`` fill in as it goes."""
    return {
        "schema": "edgeblood.run/1",
        "created": utc_now(),
        "model": {"name": cfg.model, "config": dict(model.edgeblood_config), "params": params, "macs": macs},
        "classes": list(data.classes),
        "class_names_full": list(data.class_names_full),
        "input": {"size": cfg.size, "channels": 3, "channel_order": "RGB", "layout": "NCHW", "dtype": "float32",
                  "range": [0, 255], "mean": mean, "std": std, "normalisation": "(x / 255 - mean) / std, mean/std of the train split",
                  "framing": data.framing().to_dict()},
        "dataset": data.metadata(),
        "training": {"command": command_line(), "recipe": cfg.recipe, "config": cfg.to_dict(), "seed": cfg.seed,
                     "device": str(device), "precision": cfg.precision, "cpu": cpu_info(), "started": utc_now()},
        "versions": library_versions(),
        "edgeblood_version": __version__,
        "git_commit": git_commit(),
        "metrics": {},
        "license": f"model weights: Apache-2.0; training data: {LICENSE}",
        "credit": CREDIT,
    }


def new_run_dir(cfg: TrainConfig, created: list[Path]) -> Path:
    """Make the run directory: ``--name`` as given (refused when taken), else ``<model>-<size>px`` with ``-2``, ``-3``... when taken.

    A folder made here is appended to ``created``, so that a training that fails before its first
    checkpoint removes it again (and never another training's folder).
    """
    base = Path(cfg.out_dir).expanduser()
    name = cfg.name or f"{cfg.model}-{cfg.size}px" + (f"-{Path(cfg.data).stem}" if cfg.data else "") + ("-ft" if cfg.init else "") + \
        ("-sample" if cfg.sample else "")
    run_dir = base / name
    if cfg.name is None:
        k = 2
        while run_dir.exists():
            run_dir = base / f"{name}-{k}"
            k += 1
    elif run_dir.exists() and any(run_dir.iterdir()):
        resumable = (run_dir / TRAIN_STATE).exists()
        raise EdgebloodError(f"{run_dir} already exists; choose another --name" +
                             (f", or continue it with --resume {run_dir}" if resumable else " (that run finished training: nothing to resume)"))
    existed = run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgebloodError(f"cannot create {run_dir}: {exc.strerror}; pass a writable --out") from None
    if not existed:
        created.append(run_dir)
    return run_dir


def update_run_json(run_dir: Path, metadata: dict) -> None:
    """Refresh the training section of the saved checkpoint metadata (weights unchanged)."""
    run = open_run(run_dir)
    training = TrainingInfo.from_dict({**run.meta.training.to_dict(), **metadata["training"]}, where=str(run_dir / "run.json"), path="training")
    run.meta = replace(run.meta, training=training)
    run.save()


def resumed_with(metadata: dict, state: dict, run_dir: Path) -> None:
    """A resumed run keeps the command and start time it began with and records the command that resumed it
    (a train_state.pt older than its 'started' key: the start time from run.json, once an epoch had saved one)."""
    training = metadata["training"]
    started = state.get("started")
    if started is None:
        try:
            started = open_run(run_dir).meta.training.started
        except EdgebloodError:
            started = None
    training.update(command=state.get("command", training["command"]), started=started or training["started"], resumed_with=command_line())
