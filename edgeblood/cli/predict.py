"""`edgeblood predict`: classify image files with an exported model (or a run directory)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from edgeblood.cli.app import app, console, err_console
from edgeblood.cli.options import RED_CELL_HELP, UM_PER_PX_HELP
from edgeblood.errors import EdgebloodError
from edgeblood.framing import FRAMING_OPTION_HELP, Framing
from edgeblood.pixel_scale import TRAINING_RED_CELL_PX, choose_scale, parse_red_cell_option, scale_hint, training_dark_share


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command()
def predict(
    model: Path = typer.Argument(..., help="Exported model (model.onnx, openvino/model.xml, model.tflite, model.pte, model.mlpackage on macOS; model-capture.onnx or openvino/model-capture.xml take whole captures and frame them inside the graph) or a run directory."),
    images: list[Path] = typer.Argument(..., help="Image files and/or folders (walked recursively): PNG, JPEG, TIFF 8/16-bit, RGB/RGBA/grey, any size."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="How many classes to list per image, most probable first."),
    fmt: Optional[OutputFormat] = typer.Option(None, "--format", "-f", help="table (screen), csv or json. Default: table, or the --out file's extension."),
    reject_below: Optional[float] = typer.Option(None, "--reject-below", help="Flag an image for human review when its top probability is below this (e.g. 0.7)."),
    review_rate: Optional[float] = typer.Option(None, "--review-rate", help="Flag this share of images for review (e.g. 0.05): the threshold that flagged that share of the val split, read from the model."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the csv/json result to this file (atomically) instead of stdout."),
    device: str = typer.Option("cpu", help="Runtime device: cpu, or cuda / gpu / cpu_and_ne where the runtime has it."),
    threads: Optional[int] = typer.Option(None, help="Inference threads (runtime default otherwise)."),
    batch_size: int = typer.Option(64, help="Images per runtime call."),
    framing: str = typer.Option("model", "--framing", help=FRAMING_OPTION_HELP),
    red_cell_px: Optional[str] = typer.Option(None, "--red-cell-px", help=RED_CELL_HELP),
    um_per_px: Optional[float] = typer.Option(None, "--um-per-px", help=UM_PER_PX_HELP),
) -> None:
    """Classify cell images: predicted class, probability, top-k, and a review flag for low confidence.

    Each image is framed as the model's training images were cut from their captures (its
    metadata says how: for BloodMNIST a centred 200x200 px window of a 360x363 capture, bilinear
    resize, and the JPEG q75 step of the official 28 px file); class names and size come from the
    model's metadata too. Single-cell crops already framed like training images: --framing cell-crop.
    A capture variant (model-capture.onnx, openvino/model-capture.xml) gets each whole capture and
    frames it inside its graph, as an app would call it.
    Unreadable files are reported and skipped; the rest of the batch still runs.

        edgeblood predict runs/se-cnn/export/model.onnx captures/ -k 3 -f csv
        edgeblood predict runs/se-cnn/export/model-capture.onnx captures/
        edgeblood predict runs/se-cnn/export/model.onnx crops/ --framing cell-crop
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from edgeblood.atomic import check_output_file, write_text
    from edgeblood.inference import count_files, open_model, predict_files

    _check_options(top_k=top_k, reject_below=reject_below, review_rate=review_rate, batch_size=batch_size, threads=threads, framing=framing)
    fmt = _resolve_format(fmt, out)
    if out is not None:
        check_output_file(out)  # before any prediction: a bad path must not cost the whole batch
    loaded = open_model(model, device=device, threads=threads)
    if review_rate is not None:
        reject_below = _threshold_for(loaded, review_rate, reject_below)
    base = Framing.parse(framing, loaded.framing)
    scale = choose_scale(red_cell_px, um_per_px, files=_files_for_auto(images, red_cell_px), size=loaded.input_size, framing=base,
                         dark_share=training_dark_share(loaded.domain_info))
    if scale.estimate is not None:
        err_console.print(f"pixel scale: estimated {scale.estimate:g} px per red cell (training captures: {TRAINING_RED_CELL_PX:g})", highlight=False)
    chosen = scale.framing(base)
    loaded.check_framing(chosen)  # a capture variant frames inside its graph: refused before any output
    err_console.print(f"model: {loaded.describe()}", highlight=False)
    own = " (inside the model's graph)" if loaded.takes_captures else " (the model's)"
    err_console.print(f"framing: {chosen.describe()}" + (own if chosen == loaded.framing else f" (--framing {framing}; the model's: {loaded.framing.describe()})"),
                      highlight=False, soft_wrap=True)
    total = count_files(images)
    with Progress(
        TextColumn("classifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=True, disable=total < 2 * batch_size,
    ) as bar:
        task = bar.add_task("predict", total=total)
        report = predict_files(
            loaded, images, top_k=top_k, reject_below=reject_below, batch_size=batch_size,
            framing=chosen, progress=lambda n: bar.advance(task, n),
        )

    for _, why in report.skipped_inputs:
        err_console.print(f"[yellow]skipped:[/] {why}", highlight=False, soft_wrap=True)
    for row in report.rows:
        if row.error and fmt is not OutputFormat.table:
            err_console.print(f"[red]failed:[/] {row.error}", highlight=False, soft_wrap=True)

    if fmt is OutputFormat.table:
        console.print(_table(report))
    else:
        text = report.to_csv() if fmt is OutputFormat.csv else report.to_json()
        if out is not None:
            write_text(out, text)
            err_console.print(f"wrote {out} ({fmt.value}, {report.n_files} rows)", highlight=False)
        else:
            typer.echo(text, nl=False)
    err_console.print(report.summary(), highlight=False, soft_wrap=True)
    for line in report.warnings:
        err_console.print(f"[bold yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    if scale.red_cell_px is None and report.n_outside and report.n_outside >= report.n_predicted / 2:  # a folder the check rejects
        hint = scale_hint([row.file for row in report.rows if row.error is None], size=loaded.input_size, framing=base,
                          dark_share=training_dark_share(loaded.domain_info))
        if hint:
            err_console.print(f"[yellow]{hint}[/]", highlight=False, soft_wrap=True)
    if report.n_predicted == 0:  # every file failed: a script must not read this as success
        first = next((r.error for r in report.rows if r.error), "")
        raise EdgebloodError(f"none of the {report.n_files} files could be classified (first: {first})")


def _files_for_auto(images: list[Path], red_cell_px: str | None) -> list[Path]:
    """The image files --red-cell-px auto estimates from (none needed otherwise)."""
    from edgeblood.imageio import find_images

    return find_images(images) if parse_red_cell_option(red_cell_px)[1] else []


def _check_options(*, top_k: int, reject_below: float | None, review_rate: float | None, batch_size: int, threads: int | None, framing: str) -> None:
    """Every option value that can be judged without the model, before the model loads or a file is read."""
    Framing.parse(framing)  # spelling and ranges (fraction:0 used to fail every file, one by one)
    checks = [
        (top_k >= 1, f"--top-k is how many classes to list per image, at least 1 (got {top_k})"),
        (batch_size >= 1, f"--batch-size is images per runtime call, at least 1 (got {batch_size})"),
        (threads is None or threads >= 1, f"--threads must be at least 1, or left out for the runtime's default (got {threads})"),
        (reject_below is None or 0 <= reject_below <= 1, f"--reject-below is a probability between 0 and 1, e.g. 0.7 (got {reject_below})"),
        (review_rate is None or 0 <= review_rate <= 1, f"--review-rate is a share of images between 0 and 1, e.g. 0.05 (got {review_rate})"),
    ]
    for ok, message in checks:
        if not ok:
            raise EdgebloodError(message)


def _resolve_format(fmt: OutputFormat | None, out: Path | None) -> OutputFormat:
    if out is None:
        return fmt or OutputFormat.table
    by_suffix = {".csv": OutputFormat.csv, ".json": OutputFormat.json}.get(out.suffix.lower())
    if fmt is None:
        fmt = by_suffix
    if fmt in (None, OutputFormat.table):
        raise EdgebloodError(f"--out {out}: files are written as csv or json; pass --format csv|json or name the file .csv/.json")
    return fmt


def _threshold_for(loaded, rate: float, reject_below: float | None) -> float:
    """--review-rate R -> the top-probability threshold that flagged R of the val images (the model's review table)."""
    from edgeblood.evaluation.temperature import threshold_for_rate

    if reject_below is not None:
        raise EdgebloodError("--review-rate picks the threshold itself; give --review-rate or --reject-below, not both")
    if not loaded.review_table:
        raise EdgebloodError(f"{loaded.path} has no review table in its metadata (trained before calibration); calibrate the run with "
                             "`edgeblood evaluate RUN --calibrate` and export it again, or use --reject-below")
    threshold = threshold_for_rate(loaded.review_table, rate)
    near = min(loaded.review_table, key=lambda r: abs(r["review_rate"] - rate))
    acc = near["accepted_accuracy"]
    err_console.print(f"review rate {rate:.1%}: flagging top probability < {threshold:.4f}, the threshold that flagged that share of the val split"
                      + (f" (val accuracy on the accepted images at {near['review_rate']:.0%}: {acc:.2%})" if acc is not None else ""), highlight=False)
    return threshold


def _table(report):
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("file", overflow="fold")
    table.add_column("predicted")
    table.add_column("probability", justify="right")
    table.add_column(f"top-{report.top_k}")
    if report.reject_below is not None:
        table.add_column(f"review (<{report.reject_below:.2f})")
    checked = report.n_outside is not None
    if checked:
        table.add_column("unlike training")
    for r in report.rows:
        if r.error:
            reason = r.error.removeprefix(f"{r.file}: ")  # the file is already in the first column
            cells = [escape(r.file), "[red]failed[/]", "", f"[red]{escape(reason)}[/]"]
        else:
            topk = "\n".join(f"{p:.3f} {c}" for c, p in r.top_k)
            cells = [escape(r.file), r.predicted, f"{r.probability:.3f}", topk]
        if report.reject_below is not None:
            cells.append("[bold yellow]REVIEW[/]" if r.review else "")
        if checked:
            cells.append(f"[bold red]OUTSIDE[/] {r.cause}" if r.outside else "")
        table.add_row(*cells)
    return table
