"""Training reports to callbacks (issue #27 item 2): plain events, no output without one, the same weights with or without.

The trainer used to draw its own rich bars; now ``edgeblood train`` passes the rich display and
``edgeblood.train()`` passes none unless asked, so a notebook's output is its own and a user can log
each epoch from a callback.
"""

from __future__ import annotations

import csv
import io
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest
import torch
from rich.console import Console

import edgeblood
from edgeblood.runs import CHECKPOINT
from edgeblood.training.callbacks import BatchEnd, Callback, Callbacks, EpochEnd, Evaluation, TrainEnd, TrainStart
from edgeblood.training.display import RichProgress, styled

TINY = dict(sample=True, batch_size=64, precision="fp32", threads=1, model_cfg={"widths": [8, 16, 32, 64]})
PLAIN = (int, float, str, bool, Path, dict)


class Recorder(Callback):
    """Every event, in order, as (hook, payload)."""

    def __init__(self, stop_at_batch: tuple[int, int] | None = None) -> None:
        self.events: list[tuple[str, object]] = []
        self.stop_at_batch = stop_at_batch

    def on_message(self, text, level="info"):
        self.events.append(("message", (text, level)))

    def on_train_start(self, event):
        self.events.append(("train_start", event))

    def on_epoch_start(self, event):
        self.events.append(("epoch_start", event))

    def on_batch_end(self, event):
        self.events.append(("batch_end", event))
        if self.stop_at_batch == (event.epoch, event.step):
            raise KeyboardInterrupt  # what Ctrl-C in a notebook cell does, mid-epoch

    def on_epoch_end(self, event):
        self.events.append(("epoch_end", event))

    def on_train_end(self, event):
        self.events.append(("train_end", event))

    def on_evaluation(self, event):
        self.events.append(("evaluation", event))

    def of(self, hook: str) -> list:
        return [payload for name, payload in self.events if name == hook]


def test_events_are_plain_data_in_order_and_match_the_history(tmp_path, capsys):
    rec = Recorder()
    run = edgeblood.train("se-cnn", 28, epochs=2, seed=1, out_dir=str(tmp_path), name="r", callbacks=[rec], **TINY)
    assert capsys.readouterr().out == "", "edgeblood.train prints nothing without progress=True"
    hooks = [name for name, _ in rec.events if name != "message"]
    batches = rec.of("train_start")[0].batches
    per_epoch = ["epoch_start", *["batch_end"] * batches, "epoch_end"]
    assert hooks == ["train_start", *per_epoch, *per_epoch, "train_end", "evaluation", "evaluation"]
    for _, event in rec.events:
        if is_dataclass(event):
            assert all(isinstance(getattr(event, f.name), PLAIN) for f in fields(event)), event
    with open(run.dir / "history.csv") as f:
        history = list(csv.DictReader(f))
    ends: list[EpochEnd] = rec.of("epoch_end")
    assert [e.epoch for e in ends] == [1, 2] and [e.epochs for e in ends] == [2, 2]
    for row, e in zip(history, ends):
        assert float(row["val_acc"]) == pytest.approx(e.val_accuracy) and float(row["train_loss"]) == pytest.approx(e.train_loss)
    last_batch: BatchEnd = rec.of("batch_end")[-1]
    assert last_batch.step == batches and last_batch.loss == pytest.approx(ends[-1].train_loss) and last_batch.images_per_s > 0
    end: TrainEnd = rec.of("train_end")[0]
    assert end.status == "complete" and end.epochs_run == 2 and end.run_dir == run.dir
    assert end.best_accuracy == max(e.val_accuracy for e in ends)
    assert [e.split for e in rec.of("evaluation")] == ["val", "test"]
    assert isinstance(rec.of("evaluation")[1], Evaluation) and rec.of("evaluation")[1].metrics["split"] == "test"
    messages = [text for text, _ in rec.of("message")]
    assert messages[0].startswith("data: ") and any(m.startswith("model: se-cnn") for m in messages)
    assert messages[-3].startswith("done in ") and rec.of("message")[-3][1] == "success"


def test_callbacks_do_not_change_the_weights(tmp_path):
    """The same seed trains bit-identical weights with the full display and a recorder attached, or with nothing."""
    quiet = edgeblood.train(epochs=1, seed=2, out_dir=str(tmp_path), name="none", evaluate=False, **TINY)
    sink = Console(file=io.StringIO(), force_terminal=True, width=120)
    busy = edgeblood.train(epochs=1, seed=2, out_dir=str(tmp_path), name="busy", evaluate=False,
                           callbacks=[RichProgress(sink), Recorder()], **TINY)
    a = torch.load(quiet.dir / CHECKPOINT, weights_only=True)["state_dict"]
    b = torch.load(busy.dir / CHECKPOINT, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "batches" in sink.file.getvalue() and "img/s" in sink.file.getvalue()


def test_an_interrupt_from_a_hook_keeps_the_last_epoch_and_says_how_to_resume(tmp_path):
    rec = Recorder(stop_at_batch=(2, 2))
    with pytest.raises(KeyboardInterrupt):
        edgeblood.train(epochs=3, out_dir=str(tmp_path), name="cut", evaluate=False, callbacks=[rec], **TINY)
    end: TrainEnd = rec.of("train_end")[0]
    assert end.status == "interrupted" and end.epochs_run == 1
    text, level = rec.of("message")[-1]
    assert level == "warning" and "interrupted after epoch 1" in text and f"--resume {tmp_path / 'cut'}" in text
    assert (tmp_path / "cut" / CHECKPOINT).is_file()


def test_the_rich_display_writes_one_line_per_epoch_to_a_log():
    log = Console(file=io.StringIO(), force_terminal=False, width=200)
    display = RichProgress(log)
    display.on_train_start(TrainStart(Path("runs/x"), 2, 0, 3))
    display.on_epoch_end(EpochEnd(1, 2, 1.5, 0.4, 1.2, 0.5, 0.5, 1, True, 1e-3, 2.0, 640.0, 16, 28))
    display.on_train_end(TrainEnd(Path("runs/x"), "complete", 1, 0.5, 1, 2.0))
    out = log.file.getvalue()
    assert "epoch 1/2: train loss 1.5000 acc 0.4000 | val loss 1.2000 acc 0.5000 (best 0.5000 @ 1)" in out and "at 16 px" in out


def test_styled_messages_escape_their_own_brackets_and_bold_labels():
    assert styled("data: folder [red] of images") == "[bold]data:[/] folder \\[red] of images"
    out = Console(file=io.StringIO(), width=100)
    out.print(styled("data: folder [red] of images"))
    assert out.file.getvalue() == "data: folder [red] of images\n"
    assert styled("model: m  device: cpu") == "[bold]model:[/] m  [bold]device:[/] cpu"
    assert styled("interrupted", "warning") == "[yellow]interrupted[/]"


def test_only_overridden_batch_hooks_cost_a_batch_event():
    class EpochsOnly(Callback):
        def on_epoch_end(self, event):
            pass

    assert not Callbacks([EpochsOnly()]).wants_batches and not Callbacks().wants_batches
    assert Callbacks([EpochsOnly(), Recorder()]).wants_batches
    seen = []

    class Counting(Callback):
        def on_progress(self, task, done, total):
            seen.append((task, done, total))

    advance = Callbacks([Counting()]).progress_counter(10, "decode")
    advance(4)
    advance(6)
    assert seen == [("decode", 0, 10), ("decode", 4, 10), ("decode", 10, 10)]
