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

import contextlib
import json
import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from edgeblood import __version__
from edgeblood.atomic import atomic_path
from edgeblood.data import load_bloodmnist
from edgeblood.data.batches import BatchStream, Normalizer, balanced_class_weights, channel_stats, to_tensor_nchw
from edgeblood.errors import EdgebloodError
from edgeblood.evaluation.evaluate import evaluate_run
from edgeblood.evaluation.temperature import calibrate_run
from edgeblood.info import CREDIT, LICENSE, SHORT_CLASS_NAMES
from edgeblood.models import count_macs, count_params, create, get_entry
from edgeblood.provenance import command_line, git_commit, library_versions, utc_now
from edgeblood.runs import CHECKPOINT, TRAIN_STATE, open_run, save_checkpoint, write_history
from edgeblood.training.config import TrainConfig
from edgeblood.training.distill import distillation_loss, teacher_logits
from edgeblood.training.distributed import DistContext, resolve_precision
from edgeblood.training.init_from import ParentInit, classifier_head, init_from_parent, open_parent, set_backbone_frozen
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
        run_dir, state, cfg = _load_resume_state(Path(resume))
    cfg.validate()
    get_entry(cfg.model)  # an unknown model name fails before any data is loaded
    device = ctx.device(cfg.device)
    cfg.precision = resolve_precision(cfg.precision, device)  # recorded resolved, so --resume keeps it
    ctx.init(device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    _seed_everything(cfg.seed + ctx.rank)
    quiet = not ctx.is_main
    say = (lambda *a, **k: None) if quiet else console.print

    if ctx.enabled and cfg.freeze_backbone:
        raise EdgebloodError("--freeze-backbone changes which parameters train mid-run, which DDP cannot follow; run it in one process")
    parent = open_parent(cfg.init) if cfg.init else None
    data = _load_data(cfg, parent, console, quiet)
    say(f"[bold]data:[/] {data.describe()}" + (f"\n  framing: {data.framing().describe()}" if cfg.data else ""))
    for note in data.notes:
        say(f"  note: {note}")
    if data.is_sample:
        say("[yellow]training on the embedded sample: accuracy figures are smoke-test only, not BloodMNIST results[/]")

    train_x, train_y = data.images("train"), data.labels("train")
    mean, std = channel_stats(train_x)
    classes = data.classes
    model = create(cfg.model, num_classes=len(classes), in_size=cfg.size, **cfg.model_cfg)
    params, macs = count_params(model), count_macs(model, cfg.size)
    if run_dir is None:
        run_dir = _new_run_dir(cfg, created) if ctx.is_main else None
        run_dir = _broadcast_path(run_dir, ctx)
    say(f"[bold]model:[/] {cfg.model} ({params:,} params, {macs / 1e6:.2f} M MACs at {cfg.size} px)  [bold]device:[/] {device}  "
        f"[bold]precision:[/] {cfg.precision}{' channels_last' if cfg.channels_last else ''}  [bold]run:[/] {run_dir}")

    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    metadata = _metadata(cfg, model, data, mean, std, params, macs, device)
    head = _start_from_parent(cfg, model, parent, classes, metadata, run_dir if state is not None else None, say)

    images_t, labels_t = to_tensor_nchw(train_x), torch.from_numpy(train_y)
    soft_targets = None
    if cfg.teacher:
        soft_targets, metadata["training"]["teacher"] = _teacher_targets(cfg, train_y, data.is_sample, device, console, quiet)
        if state is not None:
            _check_same_teacher(run_dir, metadata["training"]["teacher"])
        say(f"[bold]teacher:[/] {cfg.teacher} ({metadata['training']['teacher']['model']} at {metadata['training']['teacher']['in_size']} px, "
            f"train accuracy with 8-view TTA {metadata['training']['teacher']['train_accuracy_tta']:.4f}); "
            f"loss = {cfg.kd_alpha:g} x distillation (T={cfg.kd_temperature:g}) + {1 - cfg.kd_alpha:g} x labels")
    if cfg.oversample_minority:
        keep = _oversample_index(labels_t, len(classes))
        images_t, labels_t = images_t[keep], labels_t[keep]
        soft_targets = soft_targets[keep] if soft_targets is not None else None
    weights = None
    if cfg.weighted_sampler:
        weights = balanced_class_weights(labels_t.numpy(), len(classes))[labels_t]
    stream = BatchStream(images_t, labels_t, cfg.batch_size, augment=cfg.augment, sample_weights=weights,
                         drop_last=len(labels_t) > cfg.batch_size * 4, rank=ctx.rank, world_size=ctx.world_size, seed=cfg.seed)
    val_x = to_tensor_nchw(data.images("val"))
    val_y = torch.from_numpy(data.labels("val"))
    norm = Normalizer(mean, std, device)

    class_w = balanced_class_weights(train_y, len(classes)).to(device) if cfg.class_weights == "balanced" else None
    criterion = nn.CrossEntropyLoss(weight=class_w, label_smoothing=cfg.label_smoothing)

    pretrain_s = 0.0
    if cfg.pretrain_epochs > 0 and state is None:
        t_pre = time.perf_counter()
        _pretrain_autoencoder(model, stream, norm, cfg, device, say, ctx)
        pretrain_s = time.perf_counter() - t_pre
        metadata["training"]["pretrain_seconds"] = round(pretrain_s, 1)

    train_model = ctx.wrap(model, device)
    optimizer = _build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg.schedule, lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=len(stream), warmup_epochs=cfg.warmup_epochs)
    per_step = steps_per_batch(scheduler)
    ema = AveragedModel(model, multi_avg_fn=_warmup_ema(cfg.ema_decay), use_buffers=True) if cfg.ema_decay > 0 else None

    start_epoch, best_acc, best_epoch, history, stale = 1, -1.0, 0, [], 0
    wall_before = pretrain_s  # the run's wall time covers both phases of two-phase models
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and "ema" in state:
            ema.load_state_dict(state["ema"])
        start_epoch = int(state["epoch"]) + 1
        best_acc, best_epoch, stale = float(state["best_acc"]), int(state["best_epoch"]), int(state["stale"])
        history = list(state["history"])
        wall_before = float(state.get("wall_time_s", 0.0))
        torch.set_rng_state(state["rng_torch"])
        metadata["training"].update(command=state.get("command", metadata["training"]["command"]), resumed_with=command_line())
        say(f"[bold]resuming[/] after epoch {start_epoch - 1} (best val accuracy so far {best_acc:.4f} at epoch {best_epoch})")

    autocast = _autocast(cfg.precision, device)
    t_start = time.perf_counter()
    interrupted = False
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=quiet, transient=False,
    )
    epoch = start_epoch - 1
    try:
        with progress:
            epochs_task = progress.add_task("epochs", total=cfg.epochs, completed=start_epoch - 1, info="")
            batch_task = progress.add_task("batches", total=len(stream), info="")
            for epoch in range(start_epoch, cfg.epochs + 1):
                t0 = time.perf_counter()
                stream.set_epoch(epoch)
                progress.reset(batch_task, total=len(stream))
                train_model.train()
                set_backbone_frozen(model, head, frozen=epoch <= cfg.freeze_backbone)
                sums = [0.0, 0.0, 0.0]  # loss*n, correct, n
                for xb, yb, idx in stream.indexed():
                    xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                    xb = norm(xb)
                    if cfg.channels_last:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    xb, targets, perm = _mix(xb, yb, cfg)
                    with autocast:
                        logits = train_model(xb)
                    loss = _loss(criterion, logits.float(), targets)
                    if soft_targets is not None:
                        loss = (1 - cfg.kd_alpha) * loss + cfg.kd_alpha * _soft_loss(logits.float(), soft_targets[idx].to(device), targets, perm, cfg)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip > 0:
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    optimizer.step()
                    if per_step:
                        scheduler.step()
                    if ema is not None:
                        ema.update_parameters(model)
                    n = len(yb)
                    sums[0] += loss.item() * n
                    sums[1] += (logits.argmax(1) == yb).sum().item()
                    sums[2] += n
                    elapsed = time.perf_counter() - t0
                    progress.update(batch_task, advance=1, info=f"loss {sums[0] / sums[2]:.4f}  acc {sums[1] / sums[2]:.4f}  "
                                    f"lr {optimizer.param_groups[0]['lr']:.2e}  {sums[2] * ctx.world_size / max(elapsed, 1e-9):.0f} img/s")
                loss_sum, correct, count = ctx.all_sum(sums, device)
                eval_model = ema.module if ema is not None else model
                val_loss, val_acc = _evaluate(eval_model, val_x, val_y, norm, device, cfg, autocast)
                if not per_step:
                    scheduler.step(val_acc)
                seconds = time.perf_counter() - t0
                row = {"epoch": epoch, "train_loss": loss_sum / count, "train_acc": correct / count, "val_loss": val_loss,
                       "val_acc": val_acc, "lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds, 2),
                       "images_per_s": round(count / seconds, 1)}
                history.append(row)
                improved = val_acc > best_acc
                if improved:
                    best_acc, best_epoch, stale = val_acc, epoch, 0
                else:
                    stale += 1
                wall = wall_before + time.perf_counter() - t_start
                if ctx.is_main:
                    metadata["training"].update(epochs_run=epoch, best_epoch=best_epoch, best_val_accuracy=best_acc,
                                                wall_time_s=round(wall, 1), status="running")
                    if improved:
                        save_checkpoint(run_dir, eval_model, metadata)
                    _write_history(run_dir, history)
                    _save_train_state(run_dir, cfg, model, optimizer, scheduler, ema, epoch, best_acc, best_epoch, stale, history, wall,
                                      metadata["training"]["command"])
                progress.update(epochs_task, advance=1, info=f"val acc {val_acc:.4f} (best {best_acc:.4f} @ {best_epoch})")
                if not console.is_terminal:  # logs and CI get one line per epoch instead of a live bar
                    say(f"epoch {epoch}/{cfg.epochs}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} | "
                        f"val loss {val_loss:.4f} acc {val_acc:.4f} (best {best_acc:.4f} @ {best_epoch}) | "
                        f"lr {row['lr']:.2e} | {seconds:.1f} s, {row['images_per_s']:.0f} img/s")
                if cfg.early_stopping and stale >= cfg.early_stopping:
                    say(f"early stopping: no val improvement for {stale} epochs")
                    break
    except KeyboardInterrupt:
        interrupted = True
    if not interrupted:
        ctx.barrier()

    wall = wall_before + time.perf_counter() - t_start
    if not ctx.is_main:
        ctx.shutdown()
        return run_dir
    _require_first_checkpoint(run_dir, interrupted, ctx, console)
    metadata["training"].update(wall_time_s=round(wall, 1), status="interrupted" if interrupted else "complete", finished=utc_now())
    if interrupted:
        _update_run_json(run_dir, metadata)
        ctx.shutdown()
        say(f"[yellow]interrupted after epoch {epoch - 1 if epoch > 0 else 0}[/]: best checkpoint kept in {run_dir}; "
            f"continue with: edgeblood train --resume {run_dir}")
        raise KeyboardInterrupt
    _update_run_json(run_dir, metadata)
    calibration = calibrate_run(open_run(run_dir), data, device=str(device))
    (run_dir / TRAIN_STATE).unlink(missing_ok=True)
    ctx.shutdown()
    say(f"[bold green]done[/] in {wall / 60:.1f} min; best val accuracy {best_acc:.4f} at epoch {best_epoch}")
    say(f"calibration: temperature {calibration['temperature']:.3f} fitted on val and folded into the head; val ECE "
        f"{calibration['val_ece_before']:.4f} -> {calibration['val_ece_after']:.4f} (accuracy unchanged)")
    if evaluate:  # evaluate_run is imported with the module, see the note at the top
        for split in ("val", "test"):
            evaluate_run(run_dir, split=split, data=data, device=str(device), console=console)
    return run_dir


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
    from edgeblood.runs import open_run

    if parent is not None:
        record = dict(open_run(resumed_run).metadata["training"]["parent"]) if resumed_run else init_from_parent(model, parent, classes).to_dict()
        metadata["training"]["parent"] = record
        say(f"[bold]init:[/] {ParentInit(**record).message()}" + (f"; parent trained at {record['in_size']} px, fine-tuning at {cfg.size} px "
            "(this family's weights do not depend on the input size)" if record["in_size"] != cfg.size else ""))
    return classifier_head(model, len(classes)) if cfg.freeze_backbone else None


def _autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _warmup_ema(decay: float):
    """EMA whose decay ramps up as min(decay, (1 + n) / (10 + n)) over the first updates (as timm does).

    With a fixed 0.999 the EMA of a 30-epoch run is still ~40 % initial weights after 10 epochs, so
    early checkpoints (and early stopping) would judge an average with the untrained network.
    """

    def update(ema_params, current_params, n_averaged) -> None:
        n = float(n_averaged)
        get_ema_multi_avg_fn(min(decay, (1 + n) / (10 + n)))(ema_params, current_params, n_averaged)

    return update


def _mix(x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig):
    """Mixup or CutMix (one per batch, chosen at random when both are on); returns soft-target info."""
    choices = [m for m, a in (("mixup", cfg.mixup), ("cutmix", cfg.cutmix)) if a > 0]
    if not choices:
        return x, (y, y, 1.0), None
    mode = random.choice(choices)
    alpha = cfg.mixup if mode == "mixup" else cfg.cutmix
    lam = float(np.random.beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], device=x.device)
    if mode == "mixup":
        x = lam * x + (1 - lam) * x[perm]
    else:
        h, w = x.shape[-2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = random.randrange(h), random.randrange(w)
        y0, y1, x0, x1 = max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    return x, (y, y[perm], lam), perm


def _loss(criterion: nn.Module, logits: torch.Tensor, targets) -> torch.Tensor:
    y_a, y_b, lam = targets
    if lam == 1.0:
        return criterion(logits, y_a)
    return lam * criterion(logits, y_a) + (1 - lam) * criterion(logits, y_b)


def _soft_loss(logits: torch.Tensor, teacher: torch.Tensor, targets, perm: torch.Tensor | None, cfg: TrainConfig) -> torch.Tensor:
    """Distillation term; under mixup/cutmix the two images' teacher targets are weighted like their labels."""
    lam = targets[2]
    loss = distillation_loss(logits, teacher, cfg.kd_temperature)
    if perm is None or lam == 1.0:
        return loss
    return lam * loss + (1 - lam) * distillation_loss(logits, teacher[perm], cfg.kd_temperature)


def _teacher_targets(cfg: TrainConfig, train_y: np.ndarray, sample: bool, device, console, quiet: bool) -> tuple[torch.Tensor, dict]:
    with Progress(TextColumn("[bold]teacher logits (8 views)"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, disable=quiet, transient=True) as bar:
        task = bar.add_task("teacher", total=len(train_y))
        return teacher_logits(cfg.teacher, train_y, list(SHORT_CLASS_NAMES), data_dir=cfg.data_dir, sample=sample, download=cfg.download,
                              device=device, progress=lambda n: bar.advance(task, n))


def _check_same_teacher(run_dir: Path, teacher: dict) -> None:
    """A resumed run must keep distilling from the weights it started with (run.json records them)."""
    try:
        started = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["training"].get("teacher") or {}
    except (OSError, ValueError, KeyError):
        return
    if started.get("weights_sha256") and started["weights_sha256"] != teacher["weights_sha256"]:
        raise EdgebloodError(f"the teacher {teacher['run']} has other weights than when this run started (it was retrained); "
                             "resuming would change the targets mid-run - start a new run")


@torch.no_grad()
def _evaluate(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, norm: Normalizer, device, cfg: TrainConfig, autocast) -> tuple[float, float]:
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(y), cfg.eval_batch_size):
        xb = norm(x_u8[start : start + cfg.eval_batch_size].to(device).float().div_(255.0))
        if cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        yb = y[start : start + cfg.eval_batch_size].to(device)
        with autocast:
            logits = model(xb)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    return loss_sum / max(1, len(y)), correct / max(1, len(y))


def _build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and norm parameters (standard practice; matters for small models).
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


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


def _save_train_state(run_dir, cfg, model, optimizer, scheduler, ema, epoch, best_acc, best_epoch, stale, history, wall, command) -> None:
    state = {"config": cfg.to_dict(), "command": command, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "epoch": epoch, "best_acc": best_acc, "best_epoch": best_epoch,
             "stale": stale, "history": history, "wall_time_s": wall, "rng_torch": torch.get_rng_state()}
    if ema is not None:
        state["ema"] = ema.state_dict()
    with atomic_path(run_dir / TRAIN_STATE) as tmp:
        torch.save(state, tmp)


def _load_resume_state(run_dir: Path) -> tuple[Path, dict, TrainConfig]:
    path = run_dir / TRAIN_STATE
    if not path.is_file():
        if (run_dir / CHECKPOINT).is_file():
            missing = [s for s in ("val", "test") if s not in _evaluated_splits(run_dir)]
            then = (f"; its evaluation did not finish ({', '.join(missing)} missing): run `edgeblood evaluate {run_dir} --split "
                    f"{missing[0]}`" + (f" and `--split {missing[1]}`" if len(missing) > 1 else "") if missing
                    else "; evaluate or export it, or start a new run with another --name")
            raise EdgebloodError(f"{run_dir} finished training (no {TRAIN_STATE}), so there is nothing to resume{then}")
        raise EdgebloodError(f"{run_dir} has no {TRAIN_STATE} to resume from; check the path (runs/<name>)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EdgebloodError(f"{path} is unreadable ({type(exc).__name__}); the run cannot be resumed, start a new one") from None
    return run_dir, state, TrainConfig.from_dict(state["config"])


def _evaluated_splits(run_dir: Path) -> set[str]:
    from edgeblood.evaluation.evaluate import read_metrics

    return {s for s, e in read_metrics(run_dir).items() if isinstance(e, dict)}


def _update_run_json(run_dir: Path, metadata: dict) -> None:
    """Refresh the training section of the saved checkpoint metadata (weights unchanged)."""
    from edgeblood.runs import open_run

    run = open_run(run_dir)
    run.metadata["training"].update(metadata["training"])
    run.save()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
