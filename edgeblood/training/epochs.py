"""The epoch loop: train, validate, keep the best on val, save, report; where a resumed run starts from.

Ctrl-C ends the loop cleanly after the last saved epoch (the caller records and reports it). What
the loop reports goes to the job's callbacks as plain events (edgeblood.training.callbacks); nothing
here prints or draws, and nothing a callback sees comes from a random generator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from edgeblood.config.stages import size_at_epoch
from edgeblood.errors import EdgebloodError
from edgeblood.runs import open_run, save_checkpoint, write_history
from edgeblood.training.callbacks import BatchEnd, EpochEnd, EpochStart, TrainEnd, TrainStart
from edgeblood.training.checkpointing import Standing, restore_rng, save_train_state, seed_everything, stop_cleanly_on_write_failure
from edgeblood.training.init_from import set_backbone_frozen
from edgeblood.training.job import Job
from edgeblood.training.loop import EpochSums, train_one_epoch
from edgeblood.training.loop import evaluate as val_loss_and_accuracy
from edgeblood.training.run_record import resumed_with


@dataclass
class Outcome:
    """How the loop ended."""

    interrupted: bool
    epoch: int  # the epoch the loop was in when it ended
    wall_time_s: float


class Clock:
    """The run's wall time: what earlier sessions (and the autoencoder phase) spent, plus this session's loop."""

    def __init__(self, before: float) -> None:
        self.before, self.started = before, time.perf_counter()

    def total(self) -> float:
        return self.before + time.perf_counter() - self.started


def starting_standing(job: Job, state: dict | None, pretrain_s: float) -> Standing:
    """A new run's starting point, or a resumed run's weights, optimizer, counters and RNG as train_state saved them."""
    if state is None:  # the run's wall time covers both phases of two-phase models
        return Standing(wall_time_s=pretrain_s, pretrain_seconds=job.metadata["training"].get("pretrain_seconds"))
    job.parts.load_state_dict(state)
    standing = Standing.from_state(state)
    _restore_rng(job, state, standing.epoch)
    _keep_pretrain_seconds(job, standing)
    resumed_with(job.metadata, state, job.run_dir)
    if standing.epoch == 0:  # the state written before epoch 1: that epoch's save had failed
        job.events.on_message("resuming from the start: no epoch had been saved")
    else:
        job.events.on_message(f"resuming after epoch {standing.epoch} (best val accuracy so far {standing.best.accuracy:.4f} "
                              f"at epoch {standing.best.epoch})")
    return standing


def _restore_rng(job: Job, state: dict, epoch: int) -> None:
    """Rank 0's generators as saved; under DDP the other ranks draw from their own seeds again (only rank 0 saves its
    state, and every rank drawing rank 0's mixes would train on fewer distinct pairings than the run it continues)."""
    restore_rng(state)
    if job.ctx.rank > 0:
        seed_everything(job.cfg.seed + job.ctx.rank + 7919 * epoch)


def _keep_pretrain_seconds(job: Job, standing: Standing) -> None:
    """A resumed two-phase run skips its autoencoder phase: carry that phase's time over from the run it continues
    (train_state.pt has it since this fix; older states only in run.json, which exists once an epoch was saved)."""
    if job.cfg.pretrain_epochs <= 0:
        return
    if standing.pretrain_seconds is None:
        try:
            standing.pretrain_seconds = open_run(job.run_dir).meta.training.pretrain_seconds
        except EdgebloodError:
            return
    if standing.pretrain_seconds is not None:
        job.metadata["training"]["pretrain_seconds"] = standing.pretrain_seconds


def fit(job: Job, standing: Standing) -> Outcome:
    """The epoch loop, from the epoch after ``standing`` to the last (or early stopping); Ctrl-C ends it cleanly.

    ``on_train_end`` follows whatever ends the loop, an error included, so a display always closes.
    """
    clock = Clock(standing.wall_time_s)
    epoch, status = standing.epoch, "failed"
    job.events.on_train_start(TrainStart(job.run_dir, job.cfg.epochs, standing.epoch, len(job.stream)))
    try:
        for epoch in range(standing.epoch + 1, job.cfg.epochs + 1):
            if _run_epoch(job, standing, epoch, clock):
                status = "stopped early"
                break
        else:
            status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        return Outcome(True, epoch, clock.total())
    finally:
        job.events.on_train_end(TrainEnd(job.run_dir, status, standing.epoch, standing.best.accuracy, standing.best.epoch, clock.total()))
    job.ctx.barrier()
    return Outcome(False, epoch, clock.total())


def _run_epoch(job: Job, standing: Standing, epoch: int, clock: Clock) -> bool:
    """Train one epoch, validate, record and save it; True when early stopping ends the run."""
    cfg = job.cfg
    t0 = time.perf_counter()
    job.stream.set_epoch(epoch)
    train_px = size_at_epoch(cfg.progressive, epoch)
    job.stream.set_image_size(train_px)
    job.events.on_epoch_start(EpochStart(epoch, cfg.epochs, len(job.stream), train_px or cfg.size, cfg.size))
    job.train_model.train()
    set_backbone_frozen(job.model, job.head, frozen=epoch <= cfg.freeze_backbone)
    swa = job.parts.swa
    if swa is not None:
        swa.begin_epoch(epoch, job.update)
    sums = train_one_epoch(job.train_model, job.stream, job.feed, job.objective, job.update, on_batch=_batch_reporter(job, epoch, t0))
    loss_sum, correct, count = job.ctx.all_sum(sums.as_list(), job.device)
    eval_model = job.update.ema.module if job.update.ema is not None else job.model
    if swa is not None and swa.averaging(epoch):
        eval_model = swa.end_epoch(job.model, job.stream, job.feed)
    val_loss, val_acc = val_loss_and_accuracy(eval_model, *job.val, job.feed, cfg.eval_batch_size)
    if job.update.scheduler is None:  # reduce-on-plateau follows val accuracy once per epoch
        job.parts.scheduler.step(val_acc)
    seconds = time.perf_counter() - t0
    row = {"epoch": epoch, "train_loss": loss_sum / count, "train_acc": correct / count, "val_loss": val_loss,
           "val_acc": val_acc, "lr": job.update.lr, "seconds": round(seconds, 2), "images_per_s": round(count / seconds, 1),
           "train_px": train_px or cfg.size}
    standing.history.append(row)
    improved = standing.best.observe(epoch, val_acc)
    if train_px is not None:  # progressive resizing: early stopping's patience counts from the first full-size epoch
        standing.best.stale = 0
    standing.epoch, standing.wall_time_s = epoch, clock.total()
    if job.ctx.is_main:
        _save_epoch(job, standing, eval_model, improved)
    best = standing.best
    job.events.on_epoch_end(EpochEnd(epoch, cfg.epochs, row["train_loss"], row["train_acc"], val_loss, val_acc, best.accuracy, best.epoch,
                                     improved, row["lr"], seconds, row["images_per_s"], row["train_px"], cfg.size))
    if cfg.early_stopping and best.stale >= cfg.early_stopping:
        job.events.on_message(f"early stopping: no val improvement for {best.stale} epochs")
        return True
    return False


def _batch_reporter(job: Job, epoch: int, t0: float) -> Callable[[int, EpochSums], None] | None:
    """``train_one_epoch``'s per-batch hook: a BatchEnd event to the callbacks (None when none listens)."""
    if not job.events.wants_batches:
        return None
    batches, world_size = len(job.stream), job.ctx.world_size

    def report(step: int, sums: EpochSums) -> None:
        elapsed = max(time.perf_counter() - t0, 1e-9)
        job.events.on_batch_end(BatchEnd(epoch, step, batches, sums.loss_sum / sums.count, sums.correct / sums.count, job.update.lr,
                                         sums.count * world_size / elapsed))

    return report


def _save_epoch(job: Job, standing: Standing, eval_model: nn.Module, improved: bool) -> None:
    """The best weights when this epoch improved (every epoch's with --keep last), history.csv and train_state.pt;
    a failed write stops with one line."""
    best = standing.best
    kept = (standing.epoch, standing.history[-1]["val_acc"]) if job.cfg.keeps_last else (best.epoch, best.accuracy)
    job.metadata["training"].update(epochs_run=standing.epoch, best_epoch=best.epoch, best_val_accuracy=best.accuracy,
                                    kept_epoch=kept[0], kept_val_accuracy=kept[1],
                                    wall_time_s=round(standing.wall_time_s, 1), status="running")
    with stop_cleanly_on_write_failure(job.run_dir, f"epoch {standing.epoch}"):
        if improved or job.cfg.keeps_last:
            save_checkpoint(job.run_dir, eval_model, job.metadata)
        write_history(job.run_dir, standing.history)
        save_train_state(job.run_dir, job.cfg, job.parts, standing, job.metadata["training"])

