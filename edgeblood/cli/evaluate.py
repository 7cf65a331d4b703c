"""`edgeblood evaluate`: metrics, plots (and optionally Grad-CAM grids) of a run on val or test."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from edgeblood.atomic import check_output_dir
from edgeblood.cli.app import app, console, err_console
from edgeblood.cli.options import RED_CELL_HELP, UM_PER_PX_HELP
from edgeblood.errors import EdgebloodError
from edgeblood.framing import FRAMING_OPTION_HELP


class Split(str, Enum):
    test = "test"
    val = "val"


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run directory written by `edgeblood train` (runs/<name>)."),
    split: Split = typer.Option(Split.test, "--split", "-s", help="Which official split to evaluate on."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with bloodmnist[_SIZE].npz (else $EDGEBLOOD_DATA, then ~/.medmnist)."),
    download: bool = typer.Option(False, "--download", help="Fetch the official file (MD5-checked) when it is not found."),
    sample: Optional[bool] = typer.Option(
        None, "--sample/--full",
        help="Data to use. Default: what the run was trained on (embedded sample or full files). "
             "--full evaluates a sample-trained run on the real data; a full-data run is never evaluated on the sample.",
    ),
    device: str = typer.Option("auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps."),
    batch_size: int = typer.Option(512, help="Images per forward pass."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write confusion matrices, per-class bars, calibration and sample grids to RUN/plots/."),
    explain: bool = typer.Option(False, "--explain", help="Also write Grad-CAM grids per class (correct vs misclassified) and a Grad-CAM sanity check."),
    layer: Optional[str] = typer.Option(None, "--layer", help="Grad-CAM layer (module name); default: the last conv stage with a spatial map."),
    tta: bool = typer.Option(False, "--tta", help="Also report test-time augmentation (mean over 8 rotations/flips, 8x compute), apart from the single-pass figures."),
    images: Optional[Path] = typer.Option(None, "--images", help="Evaluate on your own labelled images instead of a BloodMNIST split: a folder of class sub-folders (ImageFolder layout) or a CSV of path,label. Also says how many of them the run's domain check flags as unlike its training data."),
    framing: str = typer.Option("model", "--framing", help=FRAMING_OPTION_HELP + " Used with --images."),
    red_cell_px: Optional[str] = typer.Option(None, "--red-cell-px", help=RED_CELL_HELP),
    um_per_px: Optional[float] = typer.Option(None, "--um-per-px", help=UM_PER_PX_HELP),
    calibrate: bool = typer.Option(False, "--calibrate", help="First fit the temperature on the val split and fold it into the model (runs trained before calibration existed; training does it itself). Changes the weights' fingerprint: re-export afterwards."),
) -> None:
    """Accuracy, balanced accuracy, macro/weighted precision-recall-F1, per-class sensitivity and
    specificity, one-vs-rest AUC, calibration (ECE, NLL) and the confusion matrix of a run.

    Results go to RUN/metrics.json (one entry per split), the headline numbers to run.json, and
    the plots to RUN/plots/.

        edgeblood evaluate runs/se-cnn-28 --split test
        edgeblood evaluate runs/se-cnn-28 --split val --explain
        edgeblood evaluate runs/se-cnn-28 --tta
        edgeblood evaluate runs/se-cnn-28 --images pbc-originals/val
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from edgeblood.devices import resolve_device
    from edgeblood.evaluation.evaluate import evaluate_run, load_eval_data, print_evaluation
    from edgeblood.runs import open_run

    opened = open_run(run)
    device = str(resolve_device(device))  # 'auto' resolved once, for --calibrate as for the evaluation
    if plots:
        check_output_dir(opened.plots_dir, "plots folder")
    if images is not None and calibrate:
        raise EdgebloodError("--calibrate fits the temperature on the run's own val split; run `edgeblood evaluate RUN --calibrate` first, then --images")
    if images is None and (red_cell_px is not None or um_per_px is not None):
        raise EdgebloodError("--red-cell-px / --um-per-px frame your own captures; BloodMNIST splits are framed already - add --images DIR")
    if images is not None:
        _evaluate_images(opened, images, framing, device=device, batch_size=batch_size, plots=plots, scale=(red_cell_px, um_per_px))
        return
    data = load_eval_data(opened, data_dir=data_dir, sample="auto" if sample is None else sample, download=download)
    if calibrate:
        from edgeblood.evaluation.temperature import calibrate_run

        record = calibrate_run(opened, data, device=device)
        console.print(f"calibration: temperature {record['temperature']:.3f} (fitted on val, folded into {record['head']}); val ECE "
                      f"{record['val_ece_before']:.4f} -> {record['val_ece_after']:.4f}; re-export the run so its artifacts carry it", highlight=False)
    n = len(data.labels(split.value))
    with Progress(TextColumn(f"evaluating on {split.value}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err_console, transient=True, disable=n <= batch_size) as bar:
        task = bar.add_task("evaluate", total=n * (9 if tta else 1))  # TTA: 8 more passes over the split
        entry = evaluate_run(opened, split.value, data=data, device=device, batch_size=batch_size, plots=plots, explain=explain,
                             gradcam_layer=layer, tta=tta, progress=lambda k: bar.advance(task, k))
    print_evaluation(entry, opened, console)


def _evaluate_images(run, images: Path, framing: str, *, device: str, batch_size: int, plots: bool,
                     scale: tuple[str | None, float | None] = (None, None)) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from edgeblood.data.labelled_images import read_labelled_images
    from edgeblood.evaluation.evaluate import evaluate_images, print_evaluation
    from edgeblood.framing import Framing
    from edgeblood.pixel_scale import TRAINING_RED_CELL_PX, choose_scale, training_dark_share

    base = Framing.parse(framing, run.framing)
    items = read_labelled_images(images, run.classes, run.meta.class_names_full)  # listed once, framed below
    choice = choose_scale(*scale, files=list(items.files), size=run.in_size, framing=base, dark_share=training_dark_share(run.meta.domain))
    if choice.estimate is not None:
        err_console.print(f"pixel scale: estimated {choice.estimate:g} px per red cell (training captures: {TRAINING_RED_CELL_PX:g})", highlight=False)
    chosen = choice.framing(base)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task(f"reading and framing {images}", total=len(items.files))
        entry = evaluate_images(run, items, framing=chosen, device=device, batch_size=batch_size, plots=plots,
                                load_progress=lambda k: bar.advance(task, k))
    for item in entry["data"]["skipped_files"]:
        err_console.print(f"[yellow]skipped:[/] {item['reason']}", highlight=False, soft_wrap=True)
    print_evaluation(entry, run, console)
