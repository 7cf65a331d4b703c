"""Everything a training needs before its first epoch, built in one order: data, model, run directory, batches,
loss, any autoencoder phase, optimizer.

The order is the order in which the random generators were first used: a resumed or refactored run
must draw the same numbers, so a step moved here changes the weights a seed trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from edgeblood.config.stages import describe_stages
from edgeblood.config.train import SWA_LR_FACTOR, TrainConfig
from edgeblood.data import load_bloodmnist
from edgeblood.data.batches import BatchStream, Normalizer, balanced_class_weights, channel_stats, to_tensor_nchw
from edgeblood.devices import available_cores
from edgeblood.errors import EdgebloodError
from edgeblood.info import SHORT_CLASS_NAMES
from edgeblood.models import count_macs, count_params, create
from edgeblood.runs import open_run
from edgeblood.training.callbacks import Callbacks
from edgeblood.training.checkpointing import Trainables
from edgeblood.training.distill import teacher_logits
from edgeblood.training.distributed import DistContext
from edgeblood.training.init_from import ParentInit, classifier_head, init_from_parent, open_parent
from edgeblood.training.loop import Feed, Objective, Update, autocast_for, build_optimizer
from edgeblood.training.pretrain import first_phase
from edgeblood.training.progressive import check_model_takes
from edgeblood.training.run_record import new_run_dir, run_metadata
from edgeblood.training.schedules import build_scheduler, steps_per_batch
from edgeblood.training.swa import WeightAveraging


@dataclass
class Job:
    """A training ready to run: what the epoch loop and the final steps work with."""

    cfg: TrainConfig
    ctx: DistContext
    device: torch.device
    events: Callbacks  # this rank's callbacks (none on ranks other than 0)
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


def prepare(cfg: TrainConfig, ctx: DistContext, device: torch.device, events: Callbacks, run_dir: Path | None, resumed: bool,
            created: list[Path]) -> tuple[Job, float]:
    """The job, in the order the random generators were first used; returns it and the autoencoder phase's seconds."""
    if ctx.enabled and cfg.freeze_backbone:
        raise EdgebloodError("--freeze-backbone changes which parameters train mid-run, which DDP cannot follow; run it in one process")
    parent = open_parent(cfg.init) if cfg.init else None
    data = _load_data(cfg, parent, events)
    _describe_data(cfg, data, events)
    model, metadata, run_dir = _create_model(cfg, data, device, ctx, run_dir, created, events)
    head = _start_from_parent(cfg, model, parent, data.classes, metadata, run_dir if resumed else None, events)
    stream, objective = _training_batches(cfg, data, metadata, run_dir, resumed, device, ctx, events)
    val = (to_tensor_nchw(data.images("val")), torch.from_numpy(data.labels("val")))
    feed = Feed(Normalizer(metadata["input"]["mean"], metadata["input"]["std"], device), device, cfg.channels_last,
                autocast_for(cfg.precision, device))
    pretrain_s = first_phase(cfg, model, stream, feed.norm, metadata, device, ctx, events, resumed)
    train_model, update, parts = _optimization(cfg, model, len(stream), ctx, device)
    job = Job(cfg, ctx, device, events, data, run_dir, metadata, model, train_model, head, stream, val, feed, objective, update, parts)
    return job, pretrain_s


def _load_data(cfg: TrainConfig, parent, events: Callbacks):
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
                             reference_classes=parent.classes if parent is not None else None,
                             progress_factory=lambda total, label: events.progress_counter(total, label))


def _describe_data(cfg: TrainConfig, data, events: Callbacks) -> None:
    events.on_message(f"data: {data.describe()}" + (f"\n  framing: {data.framing().describe()}" if cfg.data else ""))
    for note in data.notes:
        events.on_message(f"  note: {note}")
    if data.is_sample:
        events.on_message("training on the embedded sample: accuracy figures are smoke-test only, not BloodMNIST results", "warning")


def _create_model(cfg: TrainConfig, data, device: torch.device, ctx: DistContext, run_dir: Path | None, created: list[Path],
                  events: Callbacks) -> tuple[nn.Module, dict, Path]:
    """The model on its device, its run metadata, and the run directory (made here for a new run)."""
    mean, std = channel_stats(data.images("train"))
    model = create(cfg.model, num_classes=len(data.classes), in_size=cfg.size, **cfg.model_cfg)
    params, macs = count_params(model), count_macs(model, cfg.size)
    if run_dir is None:
        run_dir = ctx.broadcast_path(new_run_dir(cfg, created) if ctx.is_main else None)
    events.on_message(f"model: {cfg.model} ({params:,} params, {macs / 1e6:.2f} M MACs at {cfg.size} px)  device: {device}  "
                      f"precision: {cfg.precision}{' channels_last' if cfg.channels_last else ''}  run: {run_dir}")
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.progressive:
        check_model_takes(model, cfg.model, cfg.progressive)
        events.on_message(f"progressive resizing: {describe_stages(cfg.progressive, cfg.size, cfg.epochs)} (val and test at {cfg.size} px)")
    return model, run_metadata(cfg, model, data, mean, std, params, macs, device), run_dir


def _start_from_parent(cfg: TrainConfig, model: nn.Module, parent, classes: list[str], metadata: dict, resumed_run: Path | None,
                       events: Callbacks) -> str | None:
    """--init: load the parent's weights (a new run) or keep the record the run started with (a resumed
    one: its weights come from train_state) in ``training.parent``; returns the head to train alone
    during --freeze-backbone epochs (None when nothing is frozen)."""
    if parent is not None:
        record = open_run(resumed_run).meta.training.parent.to_dict() if resumed_run else init_from_parent(model, parent, classes).to_dict()
        metadata["training"]["parent"] = record
        events.on_message(f"init: {ParentInit(**record).message()}" + (f"; parent trained at {record['in_size']} px, fine-tuning at {cfg.size} px "
                          "(this family's weights do not depend on the input size)" if record["in_size"] != cfg.size else ""))
    return classifier_head(model, len(classes)) if cfg.freeze_backbone else None


def _training_batches(cfg: TrainConfig, data, metadata: dict, run_dir: Path, resumed: bool, device: torch.device, ctx: DistContext,
                      events: Callbacks) -> tuple[BatchStream, Objective]:
    """The train split as batches (this rank's shard; oversampled / weighted as asked) and the loss on them."""
    train_y = data.labels("train")
    images_t, labels_t = to_tensor_nchw(data.images("train")), torch.from_numpy(train_y)
    soft_targets = None
    if cfg.teacher:
        soft_targets = _distillation_targets(cfg, train_y, data.is_sample, metadata, run_dir, resumed, device, events)
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
                          device: torch.device, events: Callbacks) -> torch.Tensor:
    """--teacher: its 8-view logits for every train image (recorded in ``training.teacher``)."""
    progress = events.progress_counter(len(train_y), "teacher logits (8 views)")
    soft_targets, teacher = teacher_logits(cfg.teacher, train_y, list(SHORT_CLASS_NAMES), data_dir=cfg.data_dir, sample=sample,
                                           download=cfg.download, device=device, progress=progress)
    metadata["training"]["teacher"] = teacher
    if resumed:
        check_same_teacher(run_dir, teacher)
    events.on_message(f"teacher: {cfg.teacher} ({teacher['model']} at {teacher['in_size']} px, "
                      f"train accuracy with 8-view TTA {teacher['train_accuracy_tta']:.4f}); "
                      f"loss = {cfg.kd_alpha:g} x distillation (T={cfg.kd_temperature:g}) + {1 - cfg.kd_alpha:g} x labels")
    return soft_targets


def check_same_teacher(run_dir: Path, teacher: dict) -> None:
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


def _optimization(cfg: TrainConfig, model: nn.Module, steps_per_epoch: int, ctx: DistContext,
                  device: torch.device) -> tuple[nn.Module, Update, Trainables]:
    """The (DDP-wrapped) model to call, the optimizer step with its schedule and EMA, and what train_state saves."""
    train_model = ctx.wrap(model, device)
    optimizer = build_optimizer(model, cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    # with --swa the run's schedule ends where the averaged epochs begin; they keep a constant rate of their own
    scheduler = build_scheduler(optimizer, cfg.schedule, lr=cfg.lr, epochs=cfg.epochs - cfg.swa_epochs, steps_per_epoch=steps_per_epoch,
                                warmup_epochs=cfg.warmup_epochs)
    ema = AveragedModel(model, multi_avg_fn=_warmup_ema(cfg.ema_decay), use_buffers=True) if cfg.ema_decay > 0 else None
    swa = None
    if cfg.swa_epochs:
        swa = WeightAveraging(model, optimizer, epochs=cfg.swa_epochs, total=cfg.epochs, lr=cfg.swa_lr or cfg.lr * SWA_LR_FACTOR,
                              steps_per_epoch=steps_per_epoch)
    update = Update(model, optimizer, scheduler if steps_per_batch(scheduler) else None, ema, cfg.grad_clip)
    return train_model, update, Trainables(model, optimizer, scheduler, ema, swa)


def _warmup_ema(decay: float):
    """EMA whose decay ramps up as min(decay, (1 + n) / (10 + n)) over the first updates (as timm does).

    With a fixed 0.999 the EMA of a 30-epoch run is still ~40 % initial weights after 10 epochs, so
    early checkpoints (and early stopping) would judge an average with the untrained network.
    """

    def update(ema_params, current_params, n_averaged) -> None:
        n = float(n_averaged)
        get_ema_multi_avg_fn(min(decay, (1 + n) / (10 + n)))(ema_params, current_params, n_averaged)

    return update
