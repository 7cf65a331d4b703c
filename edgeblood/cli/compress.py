"""`edgeblood compress`: int8/fp16 quantization and pruning, every variant re-measured on the test split."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeblood.cli.app import app, console, err_console
from edgeblood.cli.options import file_size, split_list, status_cell, target_help
from edgeblood.manifest import MANIFEST


@app.command()
def compress(
    run: Path = typer.Argument(..., help="Run directory made by `edgeblood train` (runs/<name>)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", "-q", help="int8 and/or fp16 (comma-separated) post-training quantization."),
    target: str = typer.Option("onnx", "--target", "-t", help=target_help()),
    calibration_images: int = typer.Option(512, "--calibration-images", help="Calibration images for int8: a class-stratified subset of the TRAIN split."),
    calibration_method: str = typer.Option("minmax", "--calibration-method", help="ONNX Runtime static int8 calibration: minmax, entropy, percentile (comma-separated: one variant each)."),
    max_drop: float = typer.Option(0.3, "--max-drop", help="Percentage points of VAL accuracy an int8 artifact may lose vs fp32; above it, ONNX Runtime keeps the most harmful layers in float and OpenVINO runs NNCF accuracy control (100 = no bound)."),
    no_dynamic: bool = typer.Option(False, "--no-dynamic", help="Skip the ONNX Runtime dynamic int8 comparison variant."),
    prune: Optional[float] = typer.Option(None, "--prune", help="Structured channel pruning: fraction of MACs (or params, see --prune-by) to remove, in (0, 1)."),
    prune_by: str = typer.Option("macs", "--prune-by", help="What --prune measures: macs or params."),
    importance: str = typer.Option("magnitude", "--importance", help="Channel importance for structured pruning: magnitude (L2 of each channel group), bn-scale, lamp."),
    round_to: Optional[int] = typer.Option(None, "--round-to", help="Keep channel counts multiples of this (e.g. 8 for SIMD-friendly widths)."),
    finetune_epochs: int = typer.Option(3, "--finetune-epochs", help="Fine-tune epochs after pruning (0 = none); best epoch on val is kept."),
    finetune_lr: Optional[float] = typer.Option(None, "--finetune-lr", help="Fine-tune learning rate (default: a tenth of the run's)."),
    unstructured: Optional[float] = typer.Option(None, "--unstructured", help="Unstructured magnitude pruning (comparison): fraction of weights to zero, in (0, 1)."),
    device: str = typer.Option("cpu", "--device", help="Device for fine-tuning (cpu, cuda, mps)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the calibration subset and of fine-tuning."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with the BloodMNIST .npz files (default: $EDGEBLOOD_DATA, ~/.medmnist)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace compressed artifacts / pruned run directories that already exist."),
) -> None:
    """Compress a run and show what each variant costs in accuracy and saves in size, params and MACs.

    Quantization is post-training, calibrated on a class-stratified subset of the train split:
    ONNX Runtime static int8 (QDQ, per-channel weights; MinMax/Entropy/Percentile) with dynamic int8
    as a comparison point; OpenVINO int8 with NNCF (both bounded by --max-drop on val); Core ML
    int8 weights and 6/4-bit palettization; LiteRT full-integer int8 (ai-edge-quantizer, float I/O);
    ExecuTorch PT2E int8 for XNNPACK; fp16 for ONNX, OpenVINO and Core ML. Pruning makes a NEW run
    directory (runs/<name>-pruned50, -sparse50) that exports and benchmarks like any other.

    Every variant is evaluated on the full test split with its own runtime and compared with the
    fp32 model on the same runtime: accuracy, macro-F1 and the per-class recall that dropped most.
    Results go to runs/<name>/export/manifest.json.

        edgeblood compress runs/se-cnn --quantize int8 --target onnx,openvino
        edgeblood compress runs/se-cnn --quantize int8 --target litert,executorch
        edgeblood compress runs/se-cnn --prune 0.5 --finetune-epochs 3
        edgeblood compress runs/se-cnn -q int8 -t openvino --max-drop 0.5
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from edgeblood.compression.compress_run import CompressOptions
    from edgeblood.compression.compress_run import compress as run_compress

    options = CompressOptions(
        quantize=tuple(split_list(quantize)), targets=tuple(split_list(target)), calibration_images=calibration_images,
        calibration_methods=tuple(split_list(calibration_method)), max_drop=max_drop, dynamic=not no_dynamic,
        prune=prune, prune_by=prune_by, importance=importance, round_to=round_to, finetune_epochs=finetune_epochs,
        finetune_lr=finetune_lr, unstructured=unstructured, force=force, data_dir=str(data_dir) if data_dir else None,
        device=device, seed=seed,
    )
    options.validate()  # bad input fails before any work
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task("compress", total=None)

        def progress(msg: str, done: int, total: int) -> None:
            bar.update(task, description=msg, completed=done, total=total)

        def say(msg: str) -> None:
            bar.console.print(msg, highlight=False, soft_wrap=True)

        reports = run_compress(run, options, say=say, progress=progress)
    for report in reports:
        console.print(variant_table(report))
        for note in report.notes + row_notes(report):
            console.print(f"  {note}", highlight=False, soft_wrap=True)
    console.print(measured_line(reports), highlight=False, soft_wrap=True)
    console.print(f"manifest: {reports[0].run_dir / 'export' / MANIFEST}", highlight=False)


# Haematology abbreviations keep the worst-class column narrow (legend printed under the tables).
ABBREV = {"basophil": "BAS", "eosinophil": "EOS", "erythroblast": "ERB", "immature granulocyte": "IG", "lymphocyte": "LYM",
          "monocyte": "MON", "neutrophil": "NEU", "platelet": "PLT"}


def variant_table(report):
    """The report's title line above its table: variant | size (% of fp32) | params | MACs | test acc | macro-F1 |
    Δacc vs fp32 | worst class (ΔF1: manifest).

    The title is its own line, wrapped at the console's width: as a rich table title it was wrapped at the
    table's natural width and then cropped to the console's, so a word fell off the end of the first line
    whenever the table was wider than the console (80 columns, COLUMNS=80 in a log). It is plain text, too:
    a run name with [brackets] is not read as markup."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("variant", min_width=18)
    for col in ("size (%fp32)", "params", "MACs", "acc %", "F1 %", "Δacc pt", "worst Δrecall"):
        table.add_column(col, justify="left" if col == "worst Δrecall" else "right", no_wrap=True)
    for r in report.rows:
        m, d = r.measured, r.delta
        status = m.get("status")
        acc = f"{100 * m['accuracy']:.2f}" if status == "ok" else (
            f"[bold red]{100 * m['accuracy']:.2f} MISMATCH[/]" if status == "mismatch" and m.get("accuracy") is not None else status_cell(status))
        size = file_size(r.size_bytes) + ("" if r.size_pct is None else f" ({r.size_pct:.0f}%)")
        table.add_row(
            f"{r.target} {r.variant}", size, _count(r.params), _count(r.macs), acc,
            f"{100 * m['macro_f1']:.2f}" if m.get("macro_f1") is not None else "-",
            _signed(d["accuracy_pt"]) if d else "-",
            _worst(d),
        )
    return Group(Text(report.title, style="table.title"), table)


def row_notes(report) -> list[str]:
    """Notes under a table; one line per distinct reason (e.g. every Core ML row skipped off macOS)."""
    grouped: dict[str, list[str]] = {}
    for r in report.rows:
        for n in r.notes:
            grouped.setdefault(n, []).append(f"{r.target} {r.variant}")
    return [f"{', '.join(rows)}: {note}" for note, rows in grouped.items()]


def measured_line(reports) -> str:
    rows = [r for rep in reports for r in rep.rows if r.measured.get("status") == "ok"]
    if not rows:
        return "no variant could be measured here"
    n = rows[0].measured["n_images"]
    runtimes = ", ".join(sorted({f"{r.measured['runtime']}/{r.measured['device']}" for r in rows}))
    cpus = sorted({r.measured["cpu"] for r in rows if r.measured.get("cpu")})
    on_cpu = f" on {' / '.join(cpus)}" if cpus else ""
    legend = ", ".join(f"{v}={k}" for k, v in ABBREV.items())
    return (f"measured: accuracy and macro-F1 on all {n} test images, each row by its own runtime ({runtimes}){on_cpu}; "
            f"Δ = percentage points vs the source run's fp32 on the same runtime (worst Δrecall: the class that lost most); "
            f"%fp32 = file size vs that fp32 file; MACs per image. {legend}")


def _worst(d: dict | None) -> str:
    if not d:
        return "-"
    if d["worst_class_recall_pt"] >= 0:
        return "none lost"
    return f"{ABBREV.get(d['worst_class'], d['worst_class'])} {_signed(d['worst_class_recall_pt'])}"


def _signed(x: float) -> str:
    colour = "red" if x < -0.3 else ("green" if x > 0.3 else "")
    text = f"{x:+.2f}"
    return f"[{colour}]{text}[/]" if colour else text


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"
