"""train_state.pt: what a run needs to continue (weights, optimizer, schedule, EMA, counters, RNG), saved and read back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from edgeblood.atomic import atomic_path
from edgeblood.errors import EdgebloodError
from edgeblood.runs import CHECKPOINT, TRAIN_STATE
from edgeblood.training.config import TrainConfig
from edgeblood.training.loop import BestOnVal


@dataclass
class Trainables:
    """Everything whose state train_state.pt carries besides the counters."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object  # an LRScheduler or ReduceLROnPlateau: both have state_dict()
    ema: nn.Module | None = None

    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])


@dataclass
class Standing:
    """Where a run stands after ``epoch``: the best epoch so far, one history row per epoch, the wall time spent."""

    epoch: int = 0
    best: BestOnVal = field(default_factory=BestOnVal)
    history: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0

    @classmethod
    def from_state(cls, state: dict) -> Standing:
        best = BestOnVal(float(state["best_acc"]), int(state["best_epoch"]), int(state["stale"]))
        return cls(int(state["epoch"]), best, list(state["history"]), float(state.get("wall_time_s", 0.0)))


def save_train_state(run_dir: Path, cfg: TrainConfig, parts: Trainables, standing: Standing, command: str) -> None:
    """Write train_state.pt atomically (the torch RNG state is taken now: call it between epochs)."""
    state = {"config": cfg.to_dict(), "command": command, **parts.state_dict(), "epoch": standing.epoch,
             "best_acc": standing.best.accuracy, "best_epoch": standing.best.epoch, "stale": standing.best.stale,
             "history": standing.history, "wall_time_s": standing.wall_time_s, "rng_torch": torch.get_rng_state()}
    with atomic_path(run_dir / TRAIN_STATE) as tmp:
        torch.save(state, tmp)


def load_train_state(run_dir: Path) -> tuple[dict, TrainConfig]:
    """train_state.pt of ``run_dir`` (weights only) and the config the run was started with; one line when there is none."""
    path = run_dir / TRAIN_STATE
    if not path.is_file():
        raise EdgebloodError(_why_nothing_to_resume(run_dir))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EdgebloodError(f"{path} is unreadable ({type(exc).__name__}); the run cannot be resumed, start a new one") from None
    return state, TrainConfig.from_dict(state["config"])


def _why_nothing_to_resume(run_dir: Path) -> str:
    if not (run_dir / CHECKPOINT).is_file():
        return f"{run_dir} has no {TRAIN_STATE} to resume from; check the path (runs/<name>)"
    missing = [s for s in ("val", "test") if s not in _evaluated_splits(run_dir)]
    then = (f"; its evaluation did not finish ({', '.join(missing)} missing): run `edgeblood evaluate {run_dir} --split "
            f"{missing[0]}`" + (f" and `--split {missing[1]}`" if len(missing) > 1 else "") if missing
            else "; evaluate or export it, or start a new run with another --name")
    return f"{run_dir} finished training (no {TRAIN_STATE}), so there is nothing to resume{then}"


def _evaluated_splits(run_dir: Path) -> set[str]:
    from edgeblood.evaluation.evaluate import read_metrics

    return {s for s, e in read_metrics(run_dir).items() if isinstance(e, dict)}
