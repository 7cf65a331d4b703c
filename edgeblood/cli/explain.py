"""`edgeblood explain`: Grad-CAM heatmaps of a run's model on image files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeblood.cli.app import app, console, err_console
from edgeblood.framing import FRAMING_OPTION_HELP


@app.command()
def explain(
    run: Path = typer.Argument(..., help="Run directory written by `edgeblood train` (runs/<name>)."),
    images: list[Path] = typer.Argument(..., help="Image files and/or folders (walked recursively). Folders named after classes (basophil/, platelet/, ...) give correct-vs-misclassified grids."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default RUN/plots/explain)."),
    layer: Optional[str] = typer.Option(None, "--layer", help="Module name to take Grad-CAM at (default: the last conv stage with a spatial map)."),
    target: Optional[str] = typer.Option(None, "--target", help="Explain this class for every image instead of the predicted one."),
    device: str = typer.Option("auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps."),
    framing: str = typer.Option("model", "--framing", help=FRAMING_OPTION_HELP),
) -> None:
    """Grad-CAM (Selvaraju et al. 2017): which part of each cell image drove the model's decision.

    Writes one PNG per image (image | heatmap overlay) and a grid per class, and prints the
    prediction and how much of each heatmap lies on the stained cell.

        edgeblood explain runs/se-cnn-28 cells/
        edgeblood explain runs/se-cnn-28 cell1.png cell2.jpg --target neutrophil
    """
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from edgeblood.atomic import check_output_dir
    from edgeblood.evaluation.explain import explain_images
    from edgeblood.framing import Framing
    from edgeblood.runs import open_run

    run = open_run(run)
    chosen = Framing.parse(framing, run.framing)
    check_output_dir(out if out is not None else run.plots_dir / "explain")

    with Progress(TextColumn("writing overlays"), BarColumn(), MofNCompleteColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task("explain", total=None)
        result = explain_images(run, images, out_dir=out, layer=layer, target=target, device=device,
                                framing=chosen, progress=lambda k: bar.advance(task, k))
    for _path, why in result.skipped:
        err_console.print(f"[yellow]skipped:[/] {escape(why)}", highlight=False, soft_wrap=True)

    r = result.run
    table = Table(title=f"Grad-CAM of {r.name} ({r.model_name}), layer {result.layer} · runtime pytorch · device {result.device} · "
                        f"framing: {result.framing}",
                  title_justify="left", show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("file", overflow="fold")
    if result.labels is not None:
        table.add_column("true (folder)")
    table.add_column("predicted")
    table.add_column("probability", justify="right")
    if target:
        table.add_column("explained")
    table.add_column("map on stained cell", justify="right")
    for i, path in enumerate(result.files):
        pred = int(result.preds[i])
        cells = [escape(str(path))]
        if result.labels is not None:
            cells.append(r.classes[result.labels[i]])
        wrong = result.labels is not None and result.labels[i] != pred
        cells += [f"[red]{r.classes[pred]}[/]" if wrong else r.classes[pred], f"{result.probs[i, pred]:.3f}"]
        if target:
            cells.append(r.classes[result.targets[i]])
        share = result.on_cell[i]
        cells.append("empty map" if share != share else f"{100 * share:.0f}%")
        table.add_row(*cells)
    console.print(table)
    console.print(f"overlays: {result.out_dir} ({len(result.overlays)} PNG, image | heatmap)", highlight=False, soft_wrap=True)
    console.print(f"grids:    {', '.join(p.name for p in result.grids)}", highlight=False, soft_wrap=True)
