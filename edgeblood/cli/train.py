"""`edgeblood train`: train a registry model on BloodMNIST into a run directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgeblood.cli.app import app, console
from edgeblood.data.image_folder import parse_split
from edgeblood.errors import EdgebloodError

#: What the default recipe sets (se-cnn at 28 px) for each option left to ``--recipe``, shown in ``--help``.
#: Written out rather than derived so that each reads as a person would say it ("0 (5 for autoclassifier)");
#: tests/test_cli_faults.py checks it against the recipe itself.
DEFAULT_RECIPE_VALUES = {
    "epochs": "60", "batch_size": "128", "lr": "0.003", "optimizer": "adamw", "schedule": "onecycle", "weight_decay": "0.0005",
    "label_smoothing": "0.1", "class_weights": "none", "weighted_sampler": "off", "oversample": "off", "mixup": "0", "cutmix": "0",
    "ema": "0", "swa": "0", "swa_lr": "0", "grad_clip": "0", "early_stopping": "0", "keep": "best", "rot90": "on", "flips": "on", "crop_area": "0.9,1.1", "color_jitter": "0",
    "crop_shift": "0.03", "stain_jitter": "0.05", "jpeg_aug": "0.5", "hed_scale": "0.3", "hed_shift": "0.1", "white_balance": "0.2",
    "brightness": "0.15", "gamma": "0.25", "zoom": "1,1", "blur": "0.025", "lab_aug": "0.25", "pretrain_epochs": "0 (5 for autoclassifier)",
    "channels_last": "on (off for mlnn, resnet18, resnet34)",
}


def _recipe_help(text: str, option: str) -> str:
    """An option the recipe sets: its help says so and gives the default recipe's value (rich markup escaped)."""
    return f"{text} \\[default: from --recipe; {DEFAULT_RECIPE_VALUES[option]} in the default recipe]"


def parse_model_opts(pairs: list[str]) -> dict:
    """``key=value`` pairs; values are parsed as JSON when they can be (numbers, lists, booleans)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise EdgebloodError(f"--model-opt takes key=value (e.g. width_mult=0.5), got '{pair}'")
        key, value = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@app.command()
def train(
    ctx: typer.Context,
    model: str = typer.Option("se-cnn", "--model", "-m", help="Registry name (see `edgeblood models`)."),
    size: int = typer.Option(28, "--size", "-s", help="Input size in px: 28, 64, 128 or 224."),
    recipe: str = typer.Option("default", help="Training recipe: default (fast, strong), best (headline), published (the study's settings), finetune (a lab's few labelled images with --init: small batches, many epochs)."),
    model_opt: list[str] = typer.Option([], "--model-opt", help="Model option key=value (repeatable), e.g. --model-opt width_mult=0.5."),
    epochs: Optional[int] = typer.Option(None, help=_recipe_help("Epochs.", "epochs")),
    batch_size: Optional[int] = typer.Option(None, help=_recipe_help("Batch size per process.", "batch_size")),
    lr: Optional[float] = typer.Option(None, help=_recipe_help("Peak learning rate.", "lr")),
    optimizer: Optional[str] = typer.Option(None, help=_recipe_help("adamw, adam or sgd.", "optimizer")),
    schedule: Optional[str] = typer.Option(None, help=_recipe_help("onecycle, cosine (with warmup), plateau or constant.", "schedule")),
    weight_decay: Optional[float] = typer.Option(None, help=_recipe_help("Weight decay (not applied to biases/norms).", "weight_decay")),
    label_smoothing: Optional[float] = typer.Option(None, help=_recipe_help("Label smoothing for the cross-entropy.", "label_smoothing")),
    class_weights: Optional[str] = typer.Option(None, help=_recipe_help("none or balanced (scikit-learn's formula).", "class_weights")),
    weighted_sampler: Optional[bool] = typer.Option(None, "--weighted-sampler/--no-weighted-sampler", help=_recipe_help("Sample batches with class-balanced weights.", "weighted_sampler")),
    oversample: Optional[bool] = typer.Option(None, "--oversample/--no-oversample", help=_recipe_help("Augmentation-based oversampling of minority classes.", "oversample")),
    mixup: Optional[float] = typer.Option(None, help=_recipe_help("Mixup Beta alpha (0 = off).", "mixup")),
    cutmix: Optional[float] = typer.Option(None, help=_recipe_help("CutMix Beta alpha (0 = off).", "cutmix")),
    ema: Optional[float] = typer.Option(None, help=_recipe_help("EMA decay of weights, e.g. 0.999 (0 = off); the EMA model is saved.", "ema")),
    swa: Optional[int] = typer.Option(None, "--swa", help=_recipe_help("Stochastic weight averaging: average the weights of the last N epochs, run at a constant --swa-lr after the schedule (0 = off); the final average is the model kept.", "swa")),
    swa_lr: Optional[float] = typer.Option(None, "--swa-lr", help=_recipe_help("Constant learning rate of the --swa epochs (0 = --lr x 0.1).", "swa_lr")),
    grad_clip: Optional[float] = typer.Option(None, help=_recipe_help("Clip gradient norm (0 = off).", "grad_clip")),
    early_stopping: Optional[int] = typer.Option(None, help=_recipe_help("Patience in epochs on val accuracy (0 = off); best weights are kept.", "early_stopping")),
    keep: Optional[str] = typer.Option(None, help=_recipe_help("Weights to keep: best (selected on val) or last (the final epoch's; for a val split that is not independent, e.g. few-shot). With --swa the final average is kept.", "keep")),
    keep_state: bool = typer.Option(False, "--keep-state", help="Keep train_state.pt (weights, optimizer, schedule) after the last epoch, so `--resume RUN --epochs N` can train on later: for plateau and constant schedules. About 3x the weights on disk."),
    rot90: Optional[bool] = typer.Option(None, "--rot90/--no-rot90", help=_recipe_help("Random 90-degree rotations.", "rot90")),
    flips: Optional[bool] = typer.Option(None, "--flips/--no-flips", help=_recipe_help("Random flips.", "flips")),
    crop_area: Optional[str] = typer.Option(None, help=_recipe_help("Random resized crop: LOW or LOW,HIGH share of the window's area (above 1 zooms out); LOW alone keeps the recipe's HIGH; 1,1 = off.", "crop_area")),
    color_jitter: Optional[float] = typer.Option(None, help=_recipe_help("Colour jitter strength (0 = off).", "color_jitter")),
    crop_shift: Optional[float] = typer.Option(None, help=_recipe_help("Random window offset as a fraction of its side, e.g. 0.03 (0 = off).", "crop_shift")),
    stain_jitter: Optional[float] = typer.Option(None, help=_recipe_help("Per-channel stain/white-balance gain jitter, e.g. 0.05 (0 = off).", "stain_jitter")),
    jpeg_aug: Optional[float] = typer.Option(None, help=_recipe_help("Share of training images given a JPEG round trip at a random quality 60-95 (0 = off); covers captures with and without JPEG.", "jpeg_aug")),
    hed_scale: Optional[float] = typer.Option(None, "--hed-scale", help=_recipe_help("Another lab's stain: each stain's amount (haematoxylin, eosin, DAB colour deconvolution) times 1 +- this per image, e.g. 0.3 (0 = off).", "hed_scale")),
    hed_shift: Optional[float] = typer.Option(None, "--hed-shift", help=_recipe_help("Another lab's stain: optical density added to each stain, +- this per image, e.g. 0.1 (0 = off).", "hed_shift")),
    white_balance: Optional[float] = typer.Option(None, "--white-balance", help=_recipe_help("Another lamp or camera white balance (the background colour): per-channel gain exp(+-this), e.g. 0.2 (0 = off).", "white_balance")),
    brightness: Optional[float] = typer.Option(None, "--brightness", help=_recipe_help("Exposure: one gain exp(+-this) per image, e.g. 0.15 (0 = off).", "brightness")),
    gamma: Optional[float] = typer.Option(None, "--gamma", help=_recipe_help("Camera tone curve: x ** exp(+-this) per image, e.g. 0.25 (0 = off).", "gamma")),
    zoom: Optional[str] = typer.Option(None, "--zoom", help=_recipe_help("Another pixel scale: cells LOW..HIGH times their size (log-uniform; above 1 larger, below 1 smaller on their own background), e.g. 0.67,1.5; 1,1 = off.", "zoom")),
    blur: Optional[float] = typer.Option(None, "--blur", help=_recipe_help("Focus: Gaussian blur of sigma up to this share of the image side, e.g. 0.025 (0.7 px at 28 px; 0 = off).", "blur")),
    lab_aug: Optional[float] = typer.Option(None, "--lab-aug", help=_recipe_help("Share of training images given the other-lab augmentations (--hed-*, --white-balance, --brightness, --gamma, --zoom, --blur) together; the rest keep PBC's look and scale.", "lab_aug")),
    pretrain_epochs: Optional[int] = typer.Option(None, help=_recipe_help("Autoencoder pre-training epochs (two-phase models).", "pretrain_epochs")),
    progressive_resize: Optional[str] = typer.Option(None, "--progressive-resize", help="SIZE:EPOCHS[,SIZE:EPOCHS...]: train the first epochs on images downscaled to SIZE px (after augmentation), then the next stage, the rest at --size; val, test and exports stay at --size. E.g. 32:40,48:10 with --size 64 --epochs 60. Needs a model with global pooling (se-cnn-compact, edge-cnn, mbconv-se; se-cnn only with --model-opt head=gap)."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="Distil from this trained run (any input size, e.g. a 64 px run for a 28 px student)."),
    kd_alpha: Optional[float] = typer.Option(None, help="Weight of the distillation term (rest on the labels). \\[default: 0.7]"),
    kd_temperature: Optional[float] = typer.Option(None, help="Distillation temperature. \\[default: 2]"),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps."),
    precision: str = typer.Option("auto", help="auto (bf16 where the CPU/GPU computes it natively: AMX/AVX512-BF16, CUDA; else fp32), fp32 or bf16 (autocast)."),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", help=_recipe_help("channels_last (NHWC) activations: 1.1-1.4x faster training steps on CPU for the convolutional families.", "channels_last")),
    threads: int = typer.Option(0, help="PyTorch CPU threads (0 = default)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with bloodmnist*.npz (else $EDGEBLOOD_DATA, else ~/.medmnist)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Train on your own labelled images instead of BloodMNIST: DIR/{train,val,test}/<class>/*, DIR/<class>/* (split here, see --split) or a CSV of path,label[,split]."),
    split: Optional[str] = typer.Option(None, "--split", help="train,val,test shares for --data DIR/<class>/* (stratified per class, deterministic). \\[default: 0.8,0.1,0.1]"),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the --split (kept apart from --seed, so several training seeds share one split)."),
    framing: Optional[str] = typer.Option(None, "--framing", help="How to cut --data images: model (the --init run's framing; the default with --init), cell-crop (default otherwise), window:PX, fraction:F; +no-jpeg / +jpeg:Q."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from this trained run's weights (fine-tuning); model and size default to the run's. Same classes: all weights; other classes: the head is re-initialised."),
    freeze_backbone: int = typer.Option(0, "--freeze-backbone", help="With --init: train only the classifier head for this many first epochs."),
    download: bool = typer.Option(False, "--download", help="Download the official file if it is missing (MD5-checked)."),
    sample: bool = typer.Option(False, "--sample", help="Use the embedded 512-image sample (offline smoke test)."),
    out: Path = typer.Option(Path("runs"), "--out", help="Parent folder of run directories."),
    name: Optional[str] = typer.Option(None, help="Run directory name (default: <model>-<size>px)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted run directory; with --epochs N, train a run that kept its state (--keep-state) on to N epochs."),
    evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="Evaluate on val and test when training ends."),
) -> None:
    """Train a model; writes runs/<name>/ (checkpoint.pt, run.json, history.csv, metrics.json, plots/).

    Model selection uses the val split only; the test split is evaluated once at the end.
    """
    from edgeblood.config import TrainConfig, parse_stages
    from edgeblood.training import train as run_training
    from edgeblood.training.display import RichProgress

    if resume is not None:
        _refuse_options_with_resume(ctx)
        run_dir = run_training(TrainConfig(), resume=resume, callbacks=[RichProgress(console)], evaluate=evaluate, epochs=epochs)
        console.print(f"run directory: {run_dir}")
        return
    if teacher is None and (kd_alpha is not None or kd_temperature is not None):
        raise EdgebloodError("--kd-alpha and --kd-temperature weight a distillation term; they need --teacher RUN (a trained run to distil from)")
    model_opts = parse_model_opts(model_opt)
    if init is not None:
        model, size, model_opts = _parent_model(init, ctx, model, size, model_opts)
    cfg = build_config(
        model=model, size=size, recipe=recipe, model_opts=model_opts,
        overrides=dict(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, schedule=schedule,
                       weight_decay=weight_decay, label_smoothing=label_smoothing, class_weights=class_weights,
                       weighted_sampler=weighted_sampler, oversample_minority=oversample, mixup=mixup, cutmix=cutmix,
                       ema_decay=ema, swa_epochs=swa, swa_lr=swa_lr, grad_clip=grad_clip, early_stopping=early_stopping, keep=keep, keep_state=keep_state or None,
                       pretrain_epochs=pretrain_epochs,
                       teacher=str(teacher.resolve()) if teacher else None, kd_alpha=kd_alpha, kd_temperature=kd_temperature,
                       channels_last=channels_last, progressive=parse_stages(progressive_resize) if progressive_resize else None),
        augment_overrides=dict(rot90=rot90, flips=flips, color_jitter=color_jitter, stain=stain_jitter, jpeg_prob=jpeg_aug, crop_shift=crop_shift,
                               crop_area=None if crop_area is None else _area_range(crop_area), hed_scale=hed_scale, hed_shift=hed_shift,
                               white_balance=white_balance, brightness=brightness, gamma=gamma, blur=blur, lab_prob=lab_aug,
                               zoom=None if zoom is None else _zoom_range(zoom)),
        fixed=dict(seed=seed, device=device, precision=precision, threads=threads,
                   data_dir=str(data_dir) if data_dir else None, download=download, sample=sample, out_dir=str(out), name=name,
                   data=str(data.resolve()) if data else None, split=list(parse_split(split)) if split else None, split_seed=split_seed,
                   framing=framing, init=str(init.resolve()) if init else None, freeze_backbone=freeze_backbone),
    )
    run_dir = run_training(cfg, callbacks=[RichProgress(console)], evaluate=evaluate)
    console.print(f"run directory: {run_dir}")


def _on_command_line(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)  # compared by name: Typer vendors click's ParameterSource since 0.2x
    return source is not None and source.name == "COMMANDLINE"


def _parent_model(init: Path, ctx: typer.Context, model: str, size: int, model_opts: dict) -> tuple[str, int, dict]:
    """--init RUN: the parent's model, size and model options, unless given on the command line."""
    from edgeblood.training.init_from import open_parent

    parent = open_parent(init)
    config = parent.meta.model.options
    if _on_command_line(ctx, "model") and model != parent.model_name:
        raise EdgebloodError(f"--init {init} is a {parent.model_name} run, not {model}; drop --model (fine-tuning keeps the parent's architecture)")
    return parent.model_name, size if _on_command_line(ctx, "size") else parent.in_size, model_opts or config


def build_config(*, model: str, size: int, recipe: str, model_opts: dict, overrides: dict, augment_overrides: dict, fixed: dict):
    """Recipe first, then every option the user gave explicitly (None = not given): the library's
    ``config_from_recipe``, so the CLI and ``edgeblood.train()`` build the same TrainConfig."""
    from edgeblood.config.recipes import config_from_recipe

    return config_from_recipe(model, size, recipe, model_cfg=model_opts, augment=augment_overrides, **overrides, **fixed)


def _area_range(text: str) -> tuple[float, float | None]:
    """``--crop-area 0.9`` -> (0.9, None: the recipe's upper bound); ``0.9,1.1`` -> (0.9, 1.1)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise EdgebloodError(f"--crop-area takes LOW or LOW,HIGH (shares of the window's area, e.g. 0.9 or 0.9,1.1), got {text!r}")
    return (values[0], values[1] if len(values) == 2 else None)


def _zoom_range(text: str) -> tuple[float, float]:
    """``--zoom 0.67,1.5`` -> (0.67, 1.5); one value Z -> (1/Z, Z) when above 1, else (Z, 1/Z)."""
    try:
        values = [float(p) for p in text.split(",")]
    except ValueError:
        values = []
    if len(values) == 1 and values[0] > 0:
        values = sorted((values[0], 1 / values[0]))
    if len(values) != 2:
        raise EdgebloodError(f"--zoom takes LOW,HIGH or one factor Z for 1/Z..Z (scale of the cells, e.g. 0.67,1.5 or 1.5), got {text!r}")
    return (values[0], values[1])


def _refuse_options_with_resume(ctx: typer.Context) -> None:
    """--resume continues a run exactly as configured; any other option given would be silently ignored."""
    given = [f"--{name.replace('_', '-')}" for name in ctx.params if name not in ("resume", "evaluate", "epochs") and _on_command_line(ctx, name)]
    if given:
        raise EdgebloodError(f"--resume continues the run with the settings it was started with, so {', '.join(given)} would be "
                             "ignored; drop them (--epochs N alone trains on), or start a new run (--name) with the settings you want")
