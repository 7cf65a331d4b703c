"""train_state.pt: what a run needs to continue (weights, optimizer, schedule, EMA, counters, RNG), and writes that fail.

A new run writes its first train_state.pt before epoch 1, so every failure after that point leaves
something to ``--resume`` from: a disk that fills up while epoch 1 is saved used to leave a
checkpoint.pt and no train_state.pt, and ``--resume`` then said the run had finished training.
A write that fails (a full disk, a quota, a read-only folder) stops training with one line that
names the fix; the atomic writer keeps the previous files whole, so the run continues from the last
epoch that was saved.
"""

from __future__ import annotations

import contextlib
import errno
import random
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgeblood.atomic import atomic_path
from edgeblood.config.train import TrainConfig
from edgeblood.errors import EdgebloodError
from edgeblood.runs import CHECKPOINT, METRICS_FILE, TRAIN_STATE
from edgeblood.training.loop import BestOnVal
from edgeblood.training.swa import WeightAveraging

# What torch.save's zip writer raises when the disk fills up mid-file (it reports no errno):
# "[enforce fail at inline_container.cc:672] . unexpected pos 3804032 vs 3803920", "basic_ios::clear: iostream error".
_TORCH_WRITE_FAILURE = re.compile(r"inline_container|unexpected pos|basic_ios|iostream error|PytorchStreamWriter|file write failed")
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@dataclass
class Trainables:
    """Everything whose state train_state.pt carries besides the counters."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object  # an LRScheduler or ReduceLROnPlateau: both have state_dict()
    ema: nn.Module | None = None
    swa: WeightAveraging | None = None

    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.swa is not None:
            state["swa"] = self.swa.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        if self.swa is not None and "swa" in state:
            self.swa.load_state_dict(state["swa"])


@dataclass
class Standing:
    """Where a run stands after ``epoch``: the best epoch so far, one history row per epoch, the wall time spent."""

    epoch: int = 0
    best: BestOnVal = field(default_factory=BestOnVal)
    history: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0
    pretrain_seconds: float | None = None  # two-phase models: the autoencoder phase, which a resumed run skips

    @classmethod
    def from_state(cls, state: dict) -> Standing:
        best = BestOnVal(float(state["best_acc"]), int(state["best_epoch"]), int(state["stale"]))
        pretrain = state.get("pretrain_seconds")
        return cls(int(state["epoch"]), best, list(state["history"]), float(state.get("wall_time_s", 0.0)),
                   None if pretrain is None else float(pretrain))


def save_train_state(run_dir: Path, cfg: TrainConfig, parts: Trainables, standing: Standing, training: dict) -> None:
    """Write train_state.pt atomically (the torch RNG state is taken now: call it between epochs).

    ``training`` is run.json's training section: the command and start time that a resumed run keeps as its own."""
    state = {"config": cfg.to_dict(), "command": training["command"], "started": training["started"], **parts.state_dict(), "epoch": standing.epoch,
             "best_acc": standing.best.accuracy, "best_epoch": standing.best.epoch, "stale": standing.best.stale,
             "history": standing.history, "wall_time_s": standing.wall_time_s, "pretrain_seconds": standing.pretrain_seconds,
             "rng_torch": torch.get_rng_state(), **_host_rng_state()}
    with atomic_path(run_dir / TRAIN_STATE) as tmp:
        torch.save(state, tmp)


def _host_rng_state() -> dict:
    """Python's and NumPy's generators as plain tensors and numbers (weights_only-loadable).

    Mixup and CutMix draw their mode, box and mixing weight from these, so a resumed run that
    restored only torch's generator drew different mixes from the interrupted one.
    """
    version, words, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"rng_python": {"version": version, "state": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
             "rng_numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                           "cached": float(cached)}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # the mixup pairing and dropout draw on the GPU there
        state["rng_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Put back every generator train_state.pt saved (older states carry torch's only)."""
    torch.set_rng_state(state["rng_torch"])
    if "rng_python" in state:
        py = state["rng_python"]
        random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    if "rng_numpy" in state:
        npy = state["rng_numpy"]
        np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"]))
    if "rng_cuda" in state and torch.cuda.is_available() and torch.cuda.device_count() == len(state["rng_cuda"]):
        torch.cuda.set_rng_state_all(state["rng_cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (mixup draws from the first two, everything else from torch)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


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


EXTENDABLE_SCHEDULES = ("plateau", "constant")  # their learning rate does not depend on the run's epoch count


def extend_epochs(run_dir: Path, state: dict, cfg: TrainConfig, epochs: int | None, is_main: bool = True) -> TrainConfig:
    """The config a resumed run goes on with: as saved, or trained on to ``epochs``.

    Training on is refused where it would not be the same training continued: a schedule shaped by the epoch
    count (onecycle, cosine: the learning rate already applied would have been another), or a run that early
    stopping ended (it would stop again at once). A finished run's evaluations belong to its earlier weights, so
    metrics.json is set aside (metrics-epoch<E>.json) and val and test are evaluated again at the end."""
    done = int(state["epoch"])
    stopped_early = bool(cfg.early_stopping) and int(state["stale"]) >= cfg.early_stopping
    if epochs is None:
        if done >= cfg.epochs or stopped_early:
            more = "" if stopped_early else f"; to train on, add --epochs N (more than {done}) to --resume"
            raise EdgebloodError(f"{run_dir} finished training ({done} epochs{', ended by early stopping' if stopped_early else ''}){more}")
        return cfg
    if epochs <= done:
        raise EdgebloodError(f"{run_dir} has trained {done} epochs already; --epochs must be more than that to train on")
    if cfg.swa_epochs:
        raise EdgebloodError(f"{run_dir} averages the weights of its last epochs (--swa {cfg.swa_epochs}), which more epochs would move, so training "
                             f"on would not continue the same run; start a new run with --epochs {epochs}")
    if cfg.schedule not in EXTENDABLE_SCHEDULES:
        raise EdgebloodError(f"{run_dir} uses the {cfg.schedule} schedule, whose learning rate is shaped by the epoch count, so training "
                             f"on would not continue the same run; start a new run with --epochs {epochs} (or use --schedule plateau)")
    if stopped_early:
        raise EdgebloodError(f"{run_dir} was ended by early stopping (no val gain for {state['stale']} epochs): more epochs would "
                             f"stop again at once; start a new run without --early-stopping to train longer")
    metrics = run_dir / METRICS_FILE
    if is_main and metrics.is_file():
        metrics.replace(run_dir / f"metrics-epoch{done}.json")
    cfg.epochs = epochs
    return cfg


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


@contextlib.contextmanager
def stop_cleanly_on_write_failure(run_dir: Path, doing: str, then: str | None = None) -> Iterator[None]:
    """Turn a failed write while saving ``doing`` (a full disk, a quota, a read-only folder) into one line with the fix.

    OSError is always a write failure here; a RuntimeError only when it is torch.save's zip writer
    running out of room (it gives no errno). Anything else is a bug and keeps its traceback.
    ``then`` is the step after the fix (default: ``--resume`` when the run can continue, else run again).
    """
    try:
        yield
    except OSError as exc:
        raise EdgebloodError(write_failure_message(run_dir, doing, exc, then)) from exc
    except RuntimeError as exc:
        if not _TORCH_WRITE_FAILURE.search(str(exc)):
            raise
        raise EdgebloodError(write_failure_message(run_dir, doing, exc, then)) from exc


def write_failure_message(run_dir: Path, doing: str, exc: BaseException, then: str | None = None) -> str:
    """One line: what could not be written, why (with the free space), and how to go on from the files that survived."""
    no_space = not isinstance(exc, OSError) or exc.errno in _NO_SPACE
    why = (exc.strerror or type(exc).__name__) if isinstance(exc, OSError) else "the file could not be written to the end"
    with contextlib.suppress(OSError):
        why += f"; {shutil.disk_usage(run_dir).free / 2**20:.0f} MiB free there"
    fix = "free space on that disk" if no_space else f"make {run_dir} writable"
    if then:
        return f"could not save {doing} in {run_dir} ({why}) - {fix}, {then}"
    if (run_dir / CHECKPOINT).is_file() and (run_dir / TRAIN_STATE).is_file():
        return (f"could not save {doing} in {run_dir} ({why}); the run is kept as it was before - {fix}, "
                f"then continue with: edgeblood train --resume {run_dir}")
    return f"could not save {doing} in {run_dir} ({why}); nothing was kept - {fix}, then run the command again"
