"""The training loop: data in memory, batched augmentation, best-on-val checkpoints, resumable.

Guarantees a user can rely on:
* ``checkpoint.pt`` always holds the best weights so far (selected on the val split only), written
  atomically after every epoch that improves; ``train_state.pt`` holds everything needed to resume.
* Ctrl-C loses at most the current epoch: ``edgeblood train --resume runs/<name>`` continues.
* The same code runs under ``torchrun`` (DDP); only rank 0 writes.

The evaluator is imported with this module, not when training ends: an edgeblood upgraded under a
long training was otherwise half old (modules loaded at start) and half new (the evaluator), and the
final evaluation failed with an ImportError (seen twice here; the checkpoint survived, the test
figures had to be made with ``edgeblood evaluate``).
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from edgeblood import __version__
from edgeblood.config.stages import describe_stages, size_at_epoch
from edgeblood.config.train import TrainConfig
from edgeblood.data import load_bloodmnist
from edgeblood.data.batches import BatchStream, Normalizer, balanced_class_weights, channel_stats, to_tensor_nchw
from edgeblood.devices import available_cores
from edgeblood.domain.profile import fit_run_profile
from edgeblood.errors import EdgebloodError
from edgeblood.evaluation.evaluate import evaluate_run
from edgeblood.evaluation.temperature import calibrate_run
from edgeblood.info import CREDIT, LICENSE, SHORT_CLASS_NAMES
from edgeblood.models import count_macs, count_params, create, get_entry
from edgeblood.provenance import command_line, git_commit, library_versions, utc_now
from edgeblood.run_metadata import TrainingInfo
from edgeblood.runs import CHECKPOINT, TRAIN_STATE, open_run, save_checkpoint, write_history
from edgeblood.training.checkpointing import Standing, Trainables, load_train_state, restore_rng, save_train_state, stop_cleanly_on_write_failure
from edgeblood.training.distill import teacher_logits
from edgeblood.training.distributed import DistContext, resolve_precision
from edgeblood.training.init_from import ParentInit, classifier_head, init_from_parent, open_parent, set_backbone_frozen
from edgeblood.training.loop import BestOnVal, EpochSums, Feed, Objective, Update, autocast_for, build_optimizer, train_one_epoch
from edgeblood.training.loop import evaluate as val_loss_and_accuracy  # train(evaluate=...) names the final evaluation
from edgeblood.training.progressive import check_model_takes
from edgeblood.training.schedules import build_scheduler, steps_per_batch


def train(cfg: TrainConfig, *, resume: str | Path | None = None, console: Console | None = None, evaluate: bool = True) -> Path:
    """Train a model as described by ``cfg`` (or resume the run at ``resume``); returns the run directory.

    A new run that fails or is interrupted before its first checkpoint leaves no empty run directory
    behind (which would also push the next run's default name to ``-2``).
    """
    created: list[Path] = []  # the run folder this call makes (never another training's, even in the same --out)
    try:
        return _train(cfg, resume=resume, console=console, evaluate=evaluate, created=created)
    except BaseException:
        for folder in created:
            if not (folder / CHECKPOINT).exists():
                shutil.rmtree(folder, ignore_errors=True)
        raise


def _require_first_checkpoint(run_dir: Path, interrupted: bool, ctx: DistContext, console: Console) -> None:
    """Stop here when no epoch finished: Ctrl-C stays an interrupt (exit 130), anything else an error."""
    if (run_dir / CHECKPOINT).exists():
        return
    ctx.shutdown()
    if interrupted:
        console.print("[yellow]interrupted before the first epoch finished[/]: nothing was saved, no run directory kept")
        raise KeyboardInterrupt
    raise EdgebloodError("training stopped before the first epoch finished; nothing was saved - run the command again")


def _train(cfg: TrainConfig, *, resume: str | Path | None, console: Console | None, evaluate: bool, created: list[Path]) -> Path:
    console = console or Console()
    ctx = DistContext.from_env()
    run_dir, state = None, None
    if resume is not None:
        run_dir = Path(resume)
        state, cfg = load_train_state(run_dir)
    device = _start_process(cfg, ctx)
    job, pretrain_s = _prepare(cfg, ctx, device, console, run_dir, state is not None, created)
    standing = _standing(job, state, pretrain_s)
    if state is None and ctx.is_main:  # so that a failure while saving epoch 1 (a full disk) still leaves a run to --resume
        with stop_cleanly_on_write_failure(job.run_dir, "the starting state"):
            save_train_state(job.run_dir, cfg, job.parts, standing, job.metadata["training"]["command"])
    outcome = _fit(job, standing)
    return _finish(job, standing, outcome, evaluate)


@dataclass
class _Job:
    """A training ready to run: what the epoch loop and the final steps work with."""

    cfg: TrainConfig
    ctx: DistContext
    device: torch.device
    console: Console
    say: Callable[..., None]
    data: object  # SplitArrays: BloodMNIST or an image folder
    run_dir: Path
    metadata: dict
    model: nn.Module
    train_model: nn.Module  # ``model``, DDP-wrapped under torchrun
    head: str | None  # trained alone during --freeze-backbone epochs
    stream: BatchStream
    val: tuple[torch.Tensor, torch.Tensor]
    feed: Feed
    objective: Objective
    update: Update  # its scheduler is None for the per-epoch schedule (reduce-on-plateau)
    parts: Trainables


@dataclass
class _Outcome:
    interrupted: bool
    epoch: int  # the epoch the loop was in when it ended
    wall_time_s: float


def _say_nothing(*_args, **_kwargs) -> None:
    """``say`` on ranks other than 0 under torchrun: one process prints."""


def _start_process(cfg: TrainConfig, ctx: DistContext) -> torch.device:
    """Check the config, pick the device and precision, join the process group, seed."""
    cfg.validate()
    get_entry(cfg.model)  # an unknown model name fails before any data is loaded
    device = ctx.device(cfg.device)
    cfg.precision = resolve_precision(cfg.precision, device)  # recorded resolved, so --resume keeps it
    ctx.init(device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    _seed_everything(cfg.seed + ctx.rank)
    return device


def _prepare(cfg: TrainConfig, ctx: DistContext, device: torch.device, console: Console, run_dir: Path | None, resumed: bool,
             created: list[Path]) -> tuple[_Job, float]:
    """Data, model, run directory, batches, loss and optimizer, in the order the random generators were first used
    (a resumed or refactored run must draw the same numbers); returns the job and the autoencoder phase's seconds."""
    quiet = not ctx.is_main
    say = _say_nothing if quiet else console.print
    if ctx.enabled and cfg.freeze_backbone:
        raise EdgebloodError("--freeze-backbone changes which parameters train mid-run, which DDP cannot follow; run it in one process")
    parent = open_parent(cfg.init) if cfg.init else None
    data = _load_data(cfg, parent, console, quiet)
    _describe_data(cfg, data, say)
    model, metadata, run_dir = _create_model(cfg, data, device, ctx, run_dir, created, say)
    head = _start_from_parent(cfg, model, parent, data.classes, metadata, run_dir if resumed else None, say)
    stream, objective = _training_batches(cfg, data, metadata, run_dir, resumed, device, ctx, console, say)
    val = (to_tensor_nchw(data.images("val")), torch.from_numpy(data.labels("val")))
    feed = Feed(Normalizer(metadata["input"]["mean"], metadata["input"]["std"], device), device, cfg.channels_last,
                autocast_for(cfg.precision, device))
    pretrain_s = _first_phase(cfg, model, stream, feed, metadata, device, ctx, say, resumed)
    train_model, update, parts = _optimization(cfg, model, len(stream), ctx, device)
    job = _Job(cfg, ctx, device, console, say, data, run_dir, metadata, model, train_model, head, stream, val, feed, objective, update, parts)
    return job, pretrain_s


def _describe_data(cfg: TrainConfig, data, say) -> None:
    say(f"[bold]data:[/] {data.describe()}" + (f"\n  framing: {data.framing().describe()}" if cfg.data else ""))
    for note in data.notes:
        say(f"  note: {note}")
    if data.is_sample:
        say("[yellow]training on the embedded sample: accuracy figures are smoke-test only, not BloodMNIST results[/]")


def _create_model(cfg: TrainConfig, data, device: torch.device, ctx: DistContext, run_dir: Path | None, created: list[Path],
                  say) -> tuple[nn.Module, dict, Path]:
    """The model on its device, its run metadata, and the run directory (made here for a new run)."""
    mean, std = channel_stats(data.images("train"))
    model = create(cfg.model, num_classes=len(data.classes), in_size=cfg.size, **cfg.model_cfg)
    params, macs = count_params(model), count_macs(model, cfg.size)
    if run_dir is None:
        run_dir = _broadcast_path(_new_run_dir(cfg, created) if ctx.is_main else None, ctx)
    say(f"[bold]model:[/] {cfg.model} ({params:,} params, {macs / 1e6:.2f} M MACs at {cfg.size} px)  [bold]device:[/] {device}  "
        f"[bold]precision:[/] {cfg.precision}{' channels_last' if cfg.channels_last else ''}  [bold]run:[/] {run_dir}")
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.progressive:
        check_model_takes(model, cfg.model, cfg.progressive)
        say(f"[bold]progressive resizing:[/] {describe_stages(cfg.progressive, cfg.size, cfg.epochs)} (val and test at {cfg.size} px)")
    return model, _metadata(cfg, model, data, mean, std, params, macs, device), run_dir


def _training_batches(cfg: TrainConfig, data, metadata: dict, run_dir: Path, resumed: bool, device: torch.device, ctx: DistContext,
                      console: Console, say) -> tuple[BatchStream, Objective]:
    """The train split as batches (this rank's shard; oversampled / weighted as asked) and the loss on them."""
    train_y = data.labels("train")
    images_t, labels_t = to_tensor_nchw(data.images("train")), torch.from_numpy(train_y)
    soft_targets = None
    if cfg.teacher:
        soft_targets = _distillation_targets(cfg, train_y, data.is_sample, metadata, run_dir, resumed, device, console, say, quiet=not ctx.is_main)
    if cfg.oversample_minority:
        keep = _oversample_index(labels_t, len(data.classes))
        images_t, labels_t = images_t[keep], labels_t[keep]
        soft_targets = soft_targets[keep] if soft_targets is not None else None
    weights = balanced_class_weights(labels_t.numpy(), len(data.classes))[labels_t] if cfg.weighted_sampler else None
    stream = BatchStream(images_t, labels_t, cfg.batch_size, augment=cfg.augment, sample_weights=weights,
                         drop_last=len(labels_t) > cfg.batch_size * 4, rank=ctx.rank, world_size=ctx.world_size, seed=cfg.seed,
                         prefetch=prefetch_pays(ctx.enabled))
    class_w = balanced_class_weights(train_y, len(data.classes)).to(device) if cfg.class_weights == "balanced" else None
    criterion = nn.CrossEntropyLoss(weight=class_w, label_smoothing=cfg.label_smoothing)
    return stream, Objective(criterion, cfg.mixup, cfg.cutmix, soft_targets, cfg.kd_alpha, cfg.kd_temperature)


def prefetch_pays(distributed: bool) -> bool:
    """Build the next batch (index, convert, augment) in a background thread only when a core is left over for it.

    Measured (#18, 2-core AVX2 EPYC, fp32, interleaved): +8 % training images/s for se-cnn 28 px at 1
    torch thread; with torch on every core the extra thread only competes with the model's kernels.
    The batches are identical either way, so this is a speed choice, never an accuracy one.
    """
    return not distributed and torch.get_num_threads() < (available_cores() or 1)


def _distillation_targets(cfg: TrainConfig, train_y: np.ndarray, sample: bool, metadata: dict, run_dir: Path, resumed: bool,
                          device: torch.device, console: Console, say, *, quiet: bool) -> torch.Tensor:
    """--teacher: its 8-view logits for every train image (recorded in ``training.teacher``)."""
    soft_targets, teacher = _teacher_targets(cfg, train_y, sample, device, console, quiet)
    metadata["training"]["teacher"] = teacher
    if resumed:
        _check_same_teacher(run_dir, teacher)
    say(f"[bold]teacher:[/] {cfg.teacher} ({teacher['model']} at {teacher['in_size']} px, "
        f"train accuracy with 8-view TTA {teacher['train_accuracy_tta']:.4f}); "
        f"loss = {cfg.kd_alpha:g} x distillation (T={cfg.kd_temperature:g}) + {1 - cfg.kd_alpha:g} x labels")
    return soft_targets


def _first_phase(cfg: TrainConfig, model: nn.Module, stream: BatchStream, feed: Feed, metadata: dict, device: torch.device,
                 ctx: DistContext, say, resumed: bool) -> float:
    """Two-phase models (--pretrain-epochs): train the autoencoder and freeze the encoder; returns its seconds.

    A resumed run skips the phase (its weights are in train_state) but freezes the encoder again: the
    optimizer state was saved over phase 2's parameters only, and would not load over all of them.
    """
    if cfg.pretrain_epochs <= 0:
        return 0.0
    if resumed:
        model.freeze_encoder()
        return 0.0
    t_pre = time.perf_counter()
    _pretrain_autoencoder(model, stream, feed.norm, cfg, device, say, ctx)
    pretrain_s = time.perf_counter() - t_pre
    metadata["training"]["pretrain_seconds"] = round(pretrain_s, 1)
    return pretrain_s


def _optimization(cfg: TrainConfig, model: nn.Module, steps_per_epoch: int, ctx: DistContext,
                  device: torch.device) -> tuple[nn.Module, Update, Trainables]:
    """The (DDP-wrapped) model to call, the optimizer step with its schedule and EMA, and what train_state saves."""
    train_model = ctx.wrap(model, device)
    optimizer = build_optimizer(model, cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    scheduler = build_scheduler(optimizer, cfg.schedule, lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
                                warmup_epochs=cfg.warmup_epochs)
    ema = AveragedModel(model, multi_avg_fn=_warmup_ema(cfg.ema_decay), use_buffers=True) if cfg.ema_decay > 0 else None
    update = Update(model, optimizer, scheduler if steps_per_batch(scheduler) else None, ema, cfg.grad_clip)
    return train_model, update, Trainables(model, optimizer, scheduler, ema)


def _standing(job: _Job, state: dict | None, pretrain_s: float) -> Standing:
    """A new run's starting point, or a resumed run's weights, optimizer, counters and RNG as train_state saved them."""
    if state is None:  # the run's wall time covers both phases of two-phase models
        return Standing(wall_time_s=pretrain_s, pretrain_seconds=job.metadata["training"].get("pretrain_seconds"))
    job.parts.load_state_dict(state)
    standing = Standing.from_state(state)
    _restore_rng(job, state, standing.epoch)
    _keep_pretrain_seconds(job, standing)
    job.metadata["training"].update(command=state.get("command", job.metadata["training"]["command"]), resumed_with=command_line())
    if standing.epoch == 0:  # the state written before epoch 1: that epoch's save had failed
        job.say("[bold]resuming[/] from the start: no epoch had been saved")
    else:
        job.say(f"[bold]resuming[/] after epoch {standing.epoch} (best val accuracy so far {standing.best.accuracy:.4f} at epoch {standing.best.epoch})")
    return standing


class _Clock:
    """The run's wall time: what earlier sessions (and the autoencoder phase) spent, plus this session's loop."""

    def __init__(self, before: float) -> None:
        self.before, self.started = before, time.perf_counter()

    def total(self) -> float:
        return self.before + time.perf_counter() - self.started


class _Bars:
    """Two live bars: epochs, and the batches of the current epoch with running loss, accuracy, lr and speed."""

    def __init__(self, progress: Progress, epochs: int, done: int, batches: int) -> None:
        self.progress = progress
        self.epochs = progress.add_task("epochs", total=epochs, completed=done, info="")
        self.batches = progress.add_task("batches", total=batches, info="")

    def new_epoch(self, batches: int) -> None:
        self.progress.reset(self.batches, total=batches)

    def batch_callback(self, t0: float, update: Update, world_size: int) -> Callable[[int, EpochSums], None]:
        def show(_step: int, sums: EpochSums) -> None:
            elapsed = time.perf_counter() - t0
            self.progress.update(self.batches, advance=1, info=f"loss {sums.loss_sum / sums.count:.4f}  acc {sums.correct / sums.count:.4f}  "
                                 f"lr {update.lr:.2e}  {sums.count * world_size / max(elapsed, 1e-9):.0f} img/s")
        return show

    def end_epoch(self, val_acc: float, best: BestOnVal) -> None:
        self.progress.update(self.epochs, advance=1, info=f"val acc {val_acc:.4f} (best {best.accuracy:.4f} @ {best.epoch})")


def _fit(job: _Job, standing: Standing) -> _Outcome:
    """The epoch loop, from the epoch after ``standing`` to the last (or early stopping); Ctrl-C ends it cleanly."""
    clock = _Clock(standing.wall_time_s)
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=job.console, disable=not job.ctx.is_main, transient=False,
    )
    epoch = standing.epoch
    try:
        with progress:
            bars = _Bars(progress, job.cfg.epochs, standing.epoch, len(job.stream))
            for epoch in range(standing.epoch + 1, job.cfg.epochs + 1):
                if _run_epoch(job, standing, epoch, bars, clock):
                    break
    except KeyboardInterrupt:
        return _Outcome(True, epoch, clock.total())
    job.ctx.barrier()
    return _Outcome(False, epoch, clock.total())


def _run_epoch(job: _Job, standing: Standing, epoch: int, bars: _Bars, clock: _Clock) -> bool:
    """Train one epoch, validate, record and save it; True when early stopping ends the run."""
    cfg = job.cfg
    t0 = time.perf_counter()
    job.stream.set_epoch(epoch)
    train_px = size_at_epoch(cfg.progressive, epoch)
    job.stream.set_image_size(train_px)
    bars.new_epoch(len(job.stream))
    job.train_model.train()
    set_backbone_frozen(job.model, job.head, frozen=epoch <= cfg.freeze_backbone)
    sums = train_one_epoch(job.train_model, job.stream, job.feed, job.objective, job.update,
                           on_batch=bars.batch_callback(t0, job.update, job.ctx.world_size))
    loss_sum, correct, count = job.ctx.all_sum(sums.as_list(), job.device)
    eval_model = job.update.ema.module if job.update.ema is not None else job.model
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
    bars.end_epoch(val_acc, best)
    if not job.console.is_terminal:  # logs and CI get one line per epoch instead of a live bar
        job.say(f"epoch {epoch}/{cfg.epochs}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} | "
                f"val loss {val_loss:.4f} acc {val_acc:.4f} (best {best.accuracy:.4f} @ {best.epoch}) | "
                f"lr {row['lr']:.2e} | {seconds:.1f} s, {row['images_per_s']:.0f} img/s" + (f" at {train_px} px" if train_px else ""))
    if cfg.early_stopping and best.stale >= cfg.early_stopping:
        job.say(f"early stopping: no val improvement for {best.stale} epochs")
        return True
    return False


def _save_epoch(job: _Job, standing: Standing, eval_model: nn.Module, improved: bool) -> None:
    """The best weights when this epoch improved, history.csv and train_state.pt; a failed write stops with one line."""
    best = standing.best
    job.metadata["training"].update(epochs_run=standing.epoch, best_epoch=best.epoch, best_val_accuracy=best.accuracy,
                                    wall_time_s=round(standing.wall_time_s, 1), status="running")
    with stop_cleanly_on_write_failure(job.run_dir, f"epoch {standing.epoch}"):
        if improved:
            save_checkpoint(job.run_dir, eval_model, job.metadata)
        _write_history(job.run_dir, standing.history)
        save_train_state(job.run_dir, job.cfg, job.parts, standing, job.metadata["training"]["command"])


def _finish(job: _Job, standing: Standing, outcome: _Outcome, evaluate: bool) -> Path:
    """After the loop: record the outcome, calibrate, drop train_state.pt and evaluate (rank 0; the others just leave)."""
    ctx, run_dir, say = job.ctx, job.run_dir, job.say
    if not ctx.is_main:
        ctx.shutdown()
        return run_dir
    _require_first_checkpoint(run_dir, outcome.interrupted, ctx, job.console)
    job.metadata["training"].update(wall_time_s=round(outcome.wall_time_s, 1), status="interrupted" if outcome.interrupted else "complete",
                                    finished=utc_now())
    if outcome.interrupted:
        _update_run_json(run_dir, job.metadata)
        ctx.shutdown()
        say(f"[yellow]interrupted after epoch {outcome.epoch - 1 if outcome.epoch > 0 else 0}[/]: best checkpoint kept in {run_dir}; "
            f"continue with: edgeblood train --resume {run_dir}")
        raise KeyboardInterrupt
    with stop_cleanly_on_write_failure(run_dir, "the trained run"):
        _update_run_json(run_dir, job.metadata)
        calibration = calibrate_run(open_run(run_dir), job.data, device=str(job.device))
        domain = fit_run_profile(open_run(run_dir), job.data)
    (run_dir / TRAIN_STATE).unlink(missing_ok=True)
    ctx.shutdown()
    say(f"[bold green]done[/] in {outcome.wall_time_s / 60:.1f} min; best val accuracy {standing.best.accuracy:.4f} at epoch {standing.best.epoch}")
    say(f"calibration: temperature {calibration['temperature']:.3f} fitted on val and folded into the head; val ECE "
        f"{calibration['val_ece_before']:.4f} -> {calibration['val_ece_after']:.4f} (accuracy unchanged)")
    say(f"domain check: {domain['val_flagged']:.1%} of val flagged as unlike training (target <= {domain['flag_rate_target']:.0%}); "
        "exports carry it as their 'domain' output" if domain else "domain check: not available for this model (its head is not its last layer)")
    if evaluate:  # evaluate_run is imported with the module, see the note at the top
        _evaluate_splits(job)
    return run_dir


def _evaluate_splits(job: _Job) -> None:
    """val then test; a full disk here (train_state.pt is gone: training is done) points to `edgeblood evaluate`."""
    for split in ("val", "test"):
        rest = f"edgeblood evaluate {job.run_dir} --split {split}" + (" and --split test" if split == "val" else "")
        with stop_cleanly_on_write_failure(job.run_dir, f"the {split} evaluation", then=f"then run: {rest}"):
            evaluate_run(job.run_dir, split=split, data=job.data, device=str(job.device), console=job.console)


# --------------------------------------------------------------------------------------------- helpers

def _load_data(cfg: TrainConfig, parent, console: Console, quiet: bool):
    """BloodMNIST, or the user's image folder framed as ``--framing`` says (default: as the parent was, else cell crops)."""
    if not cfg.data:
        return load_bloodmnist(cfg.size, cfg.data_dir, download=cfg.download, sample=cfg.sample)
    from edgeblood.data.image_folder import load_image_folder
    from edgeblood.framing import Framing

    if parent is None and (cfg.framing or "").split("+")[0].strip() == "model":
        raise EdgebloodError("--framing model reuses the framing of the model being fine-tuned; it needs --init RUN (or use cell-crop, window:PX, fraction:F)")
    text = cfg.framing or ("model" if parent is not None else "cell-crop")
    framing = Framing.parse(text, parent.framing if parent is not None else None)
    return load_image_folder(cfg.data, cfg.size, framing=framing, split=cfg.split, split_seed=cfg.split_seed,
                             reference_classes=parent.classes if parent is not None else None, progress_factory=_bar_factory(console, quiet))


def _bar_factory(console: Console, quiet: bool):
    """A transient progress bar per long step of data preparation (decoding an image folder)."""
    def start(total: int, label: str):
        bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                       console=console, disable=quiet, transient=True)
        task = bar.add_task(label, total=total)
        bar.start()

        def advance(n: int) -> None:
            bar.advance(task, n)
            if bar.tasks[0].completed >= total:
                bar.stop()
        return advance
    return start


def _start_from_parent(cfg: TrainConfig, model: nn.Module, parent, classes: list[str], metadata: dict, resumed_run: Path | None, say) -> str | None:
    """--init: load the parent's weights (a new run) or keep the record the run started with (a resumed
    one: its weights come from train_state) in ``training.parent``; returns the head to train alone
    during --freeze-backbone epochs (None when nothing is frozen)."""
    if parent is not None:
        record = open_run(resumed_run).meta.training.parent.to_dict() if resumed_run else init_from_parent(model, parent, classes).to_dict()
        metadata["training"]["parent"] = record
        say(f"[bold]init:[/] {ParentInit(**record).message()}" + (f"; parent trained at {record['in_size']} px, fine-tuning at {cfg.size} px "
            "(this family's weights do not depend on the input size)" if record["in_size"] != cfg.size else ""))
    return classifier_head(model, len(classes)) if cfg.freeze_backbone else None


def _warmup_ema(decay: float):
    """EMA whose decay ramps up as min(decay, (1 + n) / (10 + n)) over the first updates (as timm does).

    With a fixed 0.999 the EMA of a 30-epoch run is still ~40 % initial weights after 10 epochs, so
    early checkpoints (and early stopping) would judge an average with the untrained network.
    """

    def update(ema_params, current_params, n_averaged) -> None:
        n = float(n_averaged)
        get_ema_multi_avg_fn(min(decay, (1 + n) / (10 + n)))(ema_params, current_params, n_averaged)

    return update


def _teacher_targets(cfg: TrainConfig, train_y: np.ndarray, sample: bool, device, console, quiet: bool) -> tuple[torch.Tensor, dict]:
    with Progress(TextColumn("[bold]teacher logits (8 views)"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, disable=quiet, transient=True) as bar:
        task = bar.add_task("teacher", total=len(train_y))
        return teacher_logits(cfg.teacher, train_y, list(SHORT_CLASS_NAMES), data_dir=cfg.data_dir, sample=sample, download=cfg.download,
                              device=device, progress=lambda n: bar.advance(task, n))


def _keep_pretrain_seconds(job: _Job, standing: Standing) -> None:
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


def _restore_rng(job: _Job, state: dict, epoch: int) -> None:
    """Rank 0's generators as saved; under DDP the other ranks draw from their own seeds again (only rank 0 saves its
    state, and every rank drawing rank 0's mixes would train on fewer distinct pairings than the run it continues)."""
    restore_rng(state)
    if job.ctx.rank > 0:
        _seed_everything(job.cfg.seed + job.ctx.rank + 7919 * epoch)


def _check_same_teacher(run_dir: Path, teacher: dict) -> None:
    """A resumed run must keep distilling from the weights it started with (its metadata records them)."""
    try:
        started = open_run(run_dir).meta.training.teacher
    except EdgebloodError:
        return
    if started is not None and started.weights_sha256 and started.weights_sha256 != teacher["weights_sha256"]:
        raise EdgebloodError(f"the teacher {teacher['run']} has other weights than when this run started (it was retrained); "
                             "resuming would change the targets mid-run - start a new run")


def _oversample_index(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Sample indices that repeat minority-class images until every class matches the largest (augmentation varies the copies)."""
    counts = torch.bincount(labels, minlength=num_classes)
    target = int(counts.max())
    g = torch.Generator().manual_seed(0)
    extra = []
    for c, n in enumerate(counts.tolist()):
        if 0 < n < target:
            idx = (labels == c).nonzero(as_tuple=True)[0]
            extra.append(idx[torch.randint(0, n, (target - n,), generator=g)])
    return torch.cat([torch.arange(len(labels)), *extra])


def _pretrain_autoencoder(model, stream, norm, cfg, device, say, ctx: DistContext) -> None:
    """Phase 1 of two-phase models (autoclassifier): reconstruction training, then freeze the encoder.

    Under torchrun the autoencoder is DDP-wrapped like the classifier in phase 2, so every rank's
    shard trains one shared encoder (unwrapped, each rank trained its own and phase 2 kept rank 0's).
    """
    if not all(hasattr(model, a) for a in ("autoencoder", "reconstruct", "freeze_encoder")):
        raise EdgebloodError(f"--pretrain-epochs needs a model with an autoencoder (e.g. autoclassifier), not {cfg.model}")
    autoencoder = ctx.wrap(model.autoencoder, device)
    opt = torch.optim.AdamW([p for p in autoencoder.parameters() if p.requires_grad], lr=1e-3)
    autoencoder.train()
    for epoch in range(1, cfg.pretrain_epochs + 1):
        stream.set_epoch(10_000 + epoch)
        total, n = 0.0, 0
        for xb, _ in stream:
            xb = norm(xb.to(device))
            loss = F.mse_loss(autoencoder(xb), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + loss.item() * len(xb), n + len(xb)
        total, n = ctx.all_sum([total, n], device)
        say(f"autoencoder pre-training epoch {epoch}/{cfg.pretrain_epochs}: reconstruction MSE {total / max(n, 1):.4f}"
            + (f" (all {ctx.world_size} ranks)" if ctx.enabled else ""))
    # phase 2's optimizer never sees the frozen parameters, so it would never clear their last phase-1
    # gradients, and gradient clipping over model.parameters() would count them on every step
    opt.zero_grad(set_to_none=True)
    model.freeze_encoder()


def _metadata(cfg: TrainConfig, model, data, mean, std, params: int, macs: int, device) -> dict:
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
                     "device": str(device), "precision": cfg.precision, "started": utc_now()},
        "versions": library_versions(),
        "edgeblood_version": __version__,
        "git_commit": git_commit(),
        "metrics": {},
        "license": f"model weights: Apache-2.0; training data: {LICENSE}",
        "credit": CREDIT,
    }


def _new_run_dir(cfg: TrainConfig, created: list[Path]) -> Path:
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


def _broadcast_path(path: Path | None, ctx: DistContext) -> Path:
    if not ctx.enabled:
        return path
    import torch.distributed as dist

    box = [str(path) if path else None]
    dist.broadcast_object_list(box, src=0)
    return Path(box[0])


def _write_history(run_dir: Path, history: list[dict]) -> None:
    write_history(run_dir, history)


def _update_run_json(run_dir: Path, metadata: dict) -> None:
    """Refresh the training section of the saved checkpoint metadata (weights unchanged)."""
    run = open_run(run_dir)
    training = TrainingInfo.from_dict({**run.meta.training.to_dict(), **metadata["training"]}, where=str(run_dir / "run.json"), path="training")
    run.meta = replace(run.meta, training=training)
    run.save()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
