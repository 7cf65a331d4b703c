"""`edgeblood adapt`: fit a run to another lab's unlabelled images (pixel scale, colour, BatchNorm)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeblood.cli.app import app, console, err_console
from edgeblood.cli.options import RED_CELL_HELP, UM_PER_PX_HELP
from edgeblood.errors import EdgebloodError
from edgeblood.framing import FRAMING_OPTION_HELP


@app.command()
def adapt(
    run: Path = typer.Argument(..., help="Run directory written by `edgeblood train` (runs/<name>)."),
    images: Path = typer.Option(..., "--images", help="Folder of the lab's captures (walked recursively; labels not needed)."),
    red_cell_px: Optional[str] = typer.Option(None, "--red-cell-px", help=RED_CELL_HELP),
    um_per_px: Optional[float] = typer.Option(None, "--um-per-px", help=UM_PER_PX_HELP),
    colour: bool = typer.Option(True, "--colour/--no-colour", help="Set the input normalisation to the lab's per-channel mean/std."),
    batchnorm: bool = typer.Option(True, "--batchnorm/--no-batchnorm", help="Re-estimate BatchNorm statistics on the lab's images (AdaBN)."),
    framing: str = typer.Option("model", "--framing", help=FRAMING_OPTION_HELP),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="New run directory (default: RUN-adapted-FOLDER beside RUN)."),
) -> None:
    """Adapt a trained run to another lab without labels, into a new run directory.

    Re-estimates what unlabelled captures can tell: the pixel scale (the capture window covering
    the same area of the smear as training), the colour (input normalisation) and the BatchNorm
    statistics. The new run's exports carry all three, and its domain check is refitted on the
    lab's images. Export, predict and bench it as any run.

        edgeblood adapt runs/se-cnn-28px --images lab_captures/
        edgeblood adapt runs/se-cnn-28px --images lab_crops/ --red-cell-px 40
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from edgeblood.domain.adapt import MIN_IMAGES, adapt_run
    from edgeblood.framing import Framing
    from edgeblood.imageio import find_images
    from edgeblood.pixel_scale import TRAINING_RED_CELL_PX, choose_scale, training_dark_share
    from edgeblood.runs import open_run

    opened = open_run(run)
    if not images.is_dir():
        raise EdgebloodError(f"--images {images} is not a folder; pass the folder of the lab's captures")
    files = find_images([images])
    if len(files) < MIN_IMAGES:
        raise EdgebloodError(f"--images {images} holds {len(files)} image files; adapt needs at least {MIN_IMAGES} of the lab's captures "
                             "(PNG, JPEG, TIFF, BMP)")
    base = Framing.parse(framing, opened.framing)
    scale = choose_scale(red_cell_px, um_per_px, files=files, size=opened.in_size, framing=base,
                         dark_share=training_dark_share(opened.meta.domain), estimate_unset=True)
    if scale.source and scale.estimate is not None:
        err_console.print(f"pixel scale: estimated {scale.estimate:g} px per red cell (training captures: {TRAINING_RED_CELL_PX:g})", highlight=False)
    if scale.hint():
        err_console.print(f"[yellow]{scale.hint()}[/]", highlight=False, soft_wrap=True)
    chosen = scale.framing(base)
    dest = out or opened.dir.with_name(f"{opened.name}-adapted-{images.resolve().name}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task(f"reading and framing {images}", total=len(files))
        lab_images, used = _read(files, opened.in_size, chosen, lambda: bar.advance(task, 1))
        bn = bar.add_task("re-estimating BatchNorm statistics", total=2 * len(lab_images) * 4 // 5)
        record = adapt_run(opened, lab_images, used, framing=chosen, out_dir=dest, colour=colour, batchnorm=batchnorm,
                           scale_note=scale.note(), progress=lambda k: bar.advance(bn, k))
    console.print(f"adapted {opened.name} to {images} ({record['images']} images): {record['method']}", highlight=False, soft_wrap=True)
    console.print(f"framing: {chosen.describe()}", highlight=False, soft_wrap=True)
    console.print(f"new run: {dest} (export it with `edgeblood export {dest} --target onnx`)", highlight=False)


def _read(files, size: int, framing, step):
    """The readable files framed (unreadable ones are reported and skipped, as predict does)."""
    import numpy as np

    from edgeblood.imageio import load_image

    images, used = [], []
    for file in files:
        try:
            images.append(load_image(file, size, framing=framing))
            used.append(file)
        except EdgebloodError as exc:
            err_console.print(f"[yellow]skipped:[/] {exc}", highlight=False, soft_wrap=True)
        step()
    return (np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)), used

