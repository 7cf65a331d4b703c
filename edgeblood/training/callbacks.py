"""What a training tells the outside world while it runs: plain events to any number of callbacks.

The trainer draws no bars and prints nothing; it reports. ``edgeblood train`` passes the rich
display (``edgeblood.training.display.RichProgress``), ``edgeblood.train()`` passes none unless asked
(``progress=True``), and a notebook or a lab's tracker subclasses :class:`Callback` for its own
logging::

    class Log(edgeblood.Callback):
        def on_epoch_end(self, e):
            print(e.epoch, e.val_accuracy)

    edgeblood.train("se-cnn", 28, sample=True, epochs=3, callbacks=[Log()])

Events are frozen dataclasses of numbers, strings and paths (no tensors, no model), built from what
the trainer computed anyway: a callback cannot change the training, and calling one draws no random
numbers, so a run trains the same weights with or without callbacks. Under ``torchrun`` only rank 0
reports. An exception raised in a callback stops the training like any other error (the best
checkpoint so far stays, ``--resume`` continues).

No torch here: this module is the contract between the trainer and whoever watches it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: How a message should stand out: ``warning`` (yellow: interrupted, sample data), ``success`` (done).
Level = Literal["info", "warning", "success"]

#: How the epoch loop ended: all epochs, early stopping's patience, Ctrl-C, or an error.
Status = Literal["complete", "stopped early", "interrupted", "failed"]


@dataclass(frozen=True)
class TrainStart:
    """The epoch loop is about to start (after data, model and any autoencoder phase are ready)."""

    run_dir: Path
    epochs: int  # the run's last epoch
    start_epoch: int  # epochs already done: 0 for a new run, the saved epoch for a resumed one
    batches: int  # batches per epoch on this process


@dataclass(frozen=True)
class EpochStart:
    """An epoch begins."""

    epoch: int  # 1-based
    epochs: int
    batches: int
    train_px: int  # the image size trained at this epoch (below ``size`` during progressive resizing)
    size: int  # the run's input size (val, test and exports)


@dataclass(frozen=True)
class BatchEnd:
    """One optimizer step done; loss and accuracy are the epoch's running means on this process."""

    epoch: int
    step: int  # 1-based within the epoch
    batches: int
    loss: float
    accuracy: float
    lr: float
    images_per_s: float  # this epoch so far, over all processes


@dataclass(frozen=True)
class EpochEnd:
    """An epoch was trained, validated and saved (checkpoint.pt when ``improved``, history.csv, train_state.pt)."""

    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    best_accuracy: float  # best val accuracy so far (selection uses val only)
    best_epoch: int
    improved: bool
    lr: float
    seconds: float
    images_per_s: float
    train_px: int
    size: int


@dataclass(frozen=True)
class TrainEnd:
    """The epoch loop ended; calibration and the final evaluation (``on_evaluation``) may follow."""

    run_dir: Path
    status: Status
    epochs_run: int  # the last epoch that finished
    best_accuracy: float
    best_epoch: int
    wall_time_s: float


@dataclass(frozen=True)
class Evaluation:
    """A split evaluated after training (metrics.json holds the same ``metrics`` entry)."""

    run_dir: Path
    split: str
    metrics: dict


class Callback:
    """Base class for training callbacks: override the hooks you need, the rest do nothing."""

    def on_message(self, text: str, level: Level = "info") -> None:
        """A line for a person: what data and model were chosen, resuming, done, calibration, interruptions."""

    def on_progress(self, task: str, done: int, total: int) -> None:
        """A preparation step's progress (decoding an image folder, a teacher's logits): ``done`` of ``total``."""

    def on_train_start(self, event: TrainStart) -> None:
        """Before the first epoch of this session."""

    def on_epoch_start(self, event: EpochStart) -> None:
        """Before an epoch's first batch."""

    def on_batch_end(self, event: BatchEnd) -> None:
        """After every optimizer step (keep it cheap: it runs once per batch)."""

    def on_epoch_end(self, event: EpochEnd) -> None:
        """After an epoch is validated and saved."""

    def on_train_end(self, event: TrainEnd) -> None:
        """After the epoch loop, however it ended (also after Ctrl-C or an error, so displays can close)."""

    def on_evaluation(self, event: Evaluation) -> None:
        """After the final evaluation of a split (val, then test)."""


class Callbacks(Callback):
    """Several callbacks as one: each hook calls every callback in order.

    ``wants_batches`` is False when no callback overrides ``on_batch_end``, so the trainer skips
    building an event per batch for nothing.
    """

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)
        self.wants_batches = any(type(c).on_batch_end is not Callback.on_batch_end for c in self.callbacks)

    def on_message(self, text: str, level: Level = "info") -> None:
        for c in self.callbacks:
            c.on_message(text, level)

    def on_progress(self, task: str, done: int, total: int) -> None:
        for c in self.callbacks:
            c.on_progress(task, done, total)

    def on_train_start(self, event: TrainStart) -> None:
        for c in self.callbacks:
            c.on_train_start(event)

    def on_epoch_start(self, event: EpochStart) -> None:
        for c in self.callbacks:
            c.on_epoch_start(event)

    def on_batch_end(self, event: BatchEnd) -> None:
        for c in self.callbacks:
            c.on_batch_end(event)

    def on_epoch_end(self, event: EpochEnd) -> None:
        for c in self.callbacks:
            c.on_epoch_end(event)

    def on_train_end(self, event: TrainEnd) -> None:
        for c in self.callbacks:
            c.on_train_end(event)

    def on_evaluation(self, event: Evaluation) -> None:
        for c in self.callbacks:
            c.on_evaluation(event)

    def progress_counter(self, total: int, task: str) -> Callable[[int], None]:
        """A ``progress(n)`` function that adds ``n`` to ``task``'s count and reports it (the library's progress hooks take one)."""
        done = 0
        self.on_progress(task, 0, total)

        def advance(n: int) -> None:
            nonlocal done
            done += n
            self.on_progress(task, done, total)

        return advance
