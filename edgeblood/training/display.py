"""The training display of ``edgeblood train``: rich bars and lines, one :class:`Callback` among others.

What it shows: the trainer's messages (labels in bold, warnings in yellow), a transient bar per
preparation step, two live bars during the epoch loop (epochs with val accuracy and the best so far;
the current epoch's batches with running loss, accuracy, learning rate and images/s, each with its
ETA), one line per epoch instead of the live bars when the output is not a terminal (logs, CI), and
the metrics table of each final evaluation.
"""

from __future__ import annotations

import re

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edgeblood.training.callbacks import BatchEnd, Callback, EpochEnd, EpochStart, Evaluation, Level, TrainEnd, TrainStart

# "data:", "  framing:", "  device:" - a label at the start of a line or after two spaces
_LABEL = re.compile(r"(^|\n|  )([a-z][a-z ]*):(?= )")
_STYLE = {"warning": "yellow", "success": "bold green"}


def styled(text: str, level: Level = "info") -> str:
    """``text`` as rich markup: its own brackets escaped, labels in bold, the line coloured by ``level``."""
    markup = _LABEL.sub(lambda m: f"{m.group(1)}[bold]{m.group(2)}:[/]", escape(text))
    return f"[{_STYLE[level]}]{markup}[/]" if level in _STYLE else markup


class RichProgress(Callback):
    """Rich bars and lines on ``console`` (default: a new ``Console()`` on stdout)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self._bars: Progress | None = None
        self._epochs: TaskID | None = None
        self._batches: TaskID | None = None
        self._step: tuple[str, Progress, TaskID] | None = None  # the preparation step being shown

    def on_message(self, text: str, level: Level = "info") -> None:
        self.console.print(styled(text, level))

    def on_progress(self, task: str, done: int, total: int) -> None:
        if self._step is None or self._step[0] != task:
            self._close_step()
            bar = Progress(TextColumn(f"[bold]{escape(task)}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                           console=self.console, transient=True)
            self._step = (task, bar, bar.add_task(task, total=total))
            bar.start()
        _, bar, task_id = self._step
        bar.update(task_id, completed=done)
        if done >= total:
            self._close_step()

    def _close_step(self) -> None:
        if self._step is not None:
            self._step[1].stop()
            self._step = None

    def on_train_start(self, event: TrainStart) -> None:
        self._close_step()
        self._bars = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
        )
        self._epochs = self._bars.add_task("epochs", total=event.epochs, completed=event.start_epoch, info="")
        self._batches = self._bars.add_task("batches", total=event.batches, info="")
        self._bars.start()

    def on_epoch_start(self, event: EpochStart) -> None:
        if self._bars is not None:
            self._bars.reset(self._batches, total=event.batches, info="")

    def on_batch_end(self, event: BatchEnd) -> None:
        if self._bars is not None:
            self._bars.update(self._batches, advance=1, info=f"loss {event.loss:.4f}  acc {event.accuracy:.4f}  "
                              f"lr {event.lr:.2e}  {event.images_per_s:.0f} img/s")

    def on_epoch_end(self, event: EpochEnd) -> None:
        if self._bars is not None:
            self._bars.update(self._epochs, advance=1, info=f"val acc {event.val_accuracy:.4f} (best {event.best_accuracy:.4f} @ {event.best_epoch})")
        if not self.console.is_terminal:  # logs and CI get one line per epoch instead of a live bar
            self.console.print(epoch_line(event))

    def on_train_end(self, event: TrainEnd) -> None:
        self._close_step()
        if self._bars is not None:
            self._bars.stop()
            self._bars = None

    def on_evaluation(self, event: Evaluation) -> None:
        from edgeblood.evaluation.evaluate import print_evaluation

        print_evaluation(event.metrics, event.run_dir, self.console)


def epoch_line(e: EpochEnd) -> str:
    """The one-line summary of an epoch (what a log gets instead of the live bars)."""
    return (f"epoch {e.epoch}/{e.epochs}: train loss {e.train_loss:.4f} acc {e.train_accuracy:.4f} | "
            f"val loss {e.val_loss:.4f} acc {e.val_accuracy:.4f} (best {e.best_accuracy:.4f} @ {e.best_epoch}) | "
            f"lr {e.lr:.2e} | {e.seconds:.1f} s, {e.images_per_s:.0f} img/s" + (f" at {e.train_px} px" if e.train_px != e.size else ""))
