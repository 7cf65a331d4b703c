"""`edgeblood export`: ONNX, OpenVINO, Core ML, LiteRT and ExecuTorch artifacts, each checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeblood.cli.app import app, console, err_console
from edgeblood.cli.options import file_size, split_list, status_cell, target_help
from edgeblood.manifest import MANIFEST


@app.command()
def export(
    run: Path = typer.Argument(..., help="Run directory made by `edgeblood train` (runs/<name>)."),
    target: str = typer.Option("onnx", "--target", "-t", help=target_help()),
    precision: str = typer.Option("fp32", "--precision", "-p", help="fp32 or fp16 (or fp32,fp16). fp16: OpenVINO fp16 weights, Core ML fp16 compute; ONNX stays fp32."),
    min_target: str = typer.Option("iOS16", "--min-target", help="Core ML minimum deployment target (iOS15, iOS16, iOS17, iOS18, macOS13, ...)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite artifacts that already exist."),
    parity_images: str = typer.Option("256", "--parity-images", help="Test images for the parity check (stratified first N), or 'all' for the whole test split."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with the BloodMNIST .npz files (default: $EDGEBLOOD_DATA, ~/.medmnist)."),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset (default 21)."),
    no_simplify: bool = typer.Option(False, "--no-simplify", help="Skip the onnxslim pass (by default it runs and is kept only when it measurably helps)."),
    capture: bool = typer.Option(True, "--capture/--no-capture", help="Also write model-capture.onnx / openvino/model-capture.xml: whole captures in (uint8 NHWC, any size), the model's framing inside the graph, checked on captures."),
    verify: bool = typer.Option(False, "--verify", help="Export nothing: re-check the artifacts already in export/ against the run's PyTorch model and update manifest.json."),
) -> None:
    """Export a run's model with its contract inside, then check each artifact against PyTorch.

    Every artifact takes RGB pixels 0-255 (float32 NCHW `image`; an RGB image for Core ML) at the
    run's size with normalisation inside the graph, and returns `probabilities` (softmax over the
    8 cell types) plus the predicted `label` (`classLabel` in Core ML). LiteRT (.tflite, Android) and
    ExecuTorch (.pte, XNNPACK) have fixed batches 1 and 64 (signatures / methods). Class names, input
    size, framing, dataset and the run's test accuracy travel in the artifact's metadata.

    Each artifact is run by its own runtime on real test images and compared with the PyTorch
    model: fp32 must agree 100 % with max probability difference < 1e-4, fp16 >= 99.5 % (flips
    between classes PyTorch itself rates as near-ties are reported apart). A mismatch is an
    error (and the artifact is marked "mismatch" in export/manifest.json). Core ML predictions
    need macOS; elsewhere its spec is validated and the numeric check is reported as skipped.

        edgeblood export runs/se-cnn --target all
        edgeblood export runs/se-cnn --target litert,executorch
        edgeblood export runs/se-cnn -t coreml -p fp16 --min-target iOS17
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from edgeblood.exporters.run_export import check_request, export_run, verify_exports
    from edgeblood.runs import open_run

    n_images = _parse_images(parity_images)
    opened = open_run(run)
    if verify:
        with err_console.status("re-checking exported artifacts against PyTorch"):
            report = verify_exports(opened, parity_images=n_images, data_dir=data_dir, strict=False)
        return _show(report)
    check_request(opened, split_list(target), split_list(precision), force=force, min_target=min_target, opset=opset)  # bad input fails before any work
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True,
    ) as bar:
        task = bar.add_task("export", total=None)

        def progress(msg: str, done: int, total: int) -> None:
            bar.update(task, description=msg, completed=done, total=total)

        report = export_run(
            opened, split_list(target), split_list(precision), force=force, parity_images=n_images, data_dir=data_dir,
            min_target=min_target, opset=opset, simplify=False if no_simplify else "auto", strict=False, capture=capture,
            progress=progress,
        )
    _show(report)


def _show(report) -> None:
    """Print the table and parity notes; then fail (exit 2, with the figures) if any artifact failed."""
    from edgeblood.errors import EdgebloodError
    from edgeblood.parity import ParityResult, require_parity

    console.print(artifact_table(report))
    for line in parity_lines(report) + [n for n in report.notes if not n.startswith("parity:")]:
        console.print(line, highlight=False, markup=False, soft_wrap=True, style="bold yellow" if line.startswith("WARNING:") else None)
    console.print(f"manifest: {report.export_dir / MANIFEST}", highlight=False)
    from edgeblood.exporters.run_export import STALE_FIX

    for failed in report.failures:
        fix = {"fix": STALE_FIX.format(run=report.run_dir)} if report.verified else {}
        require_parity(ParityResult.from_dict(failed["parity"]), report.export_dir / failed["path"], **fix)
    if not report.artifacts:
        raise EdgebloodError("nothing was exported")


def artifact_table(report):
    """One row per artifact: target, precision, file, size, parity figures, export time; reasons below."""
    from rich import box
    from rich.table import Table

    table = Table(title=f"{report.run_dir.name}: exported to {report.export_dir}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("target", no_wrap=True)
    table.add_column("prec", no_wrap=True)
    table.add_column("file", overflow="fold", min_width=16)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("parity", no_wrap=True)
    table.add_column("agree %", justify="right", no_wrap=True)
    table.add_column("max|dp|", justify="right", no_wrap=True)
    table.add_column("secs", justify="right", no_wrap=True)
    for a in report.artifacts:
        p = a["parity"]
        status = status_cell(p["status"])
        agree = f"{p['agreement'] * 100:.2f}" + ("*" if p.get("near_tie_flips") else "") if p.get("agreement") is not None else "-"
        diff = f"{p['max_abs_diff']:.1e}" if p.get("max_abs_diff") is not None else "-"
        table.add_row(a["target"], a["precision"], a["path"], file_size(a.get("size_bytes", 0)), status, agree, diff, f"{a['export_seconds']:.1f}")
    return table


def parity_lines(report) -> list[str]:
    """What the parity columns measured, and why a row failed or was skipped."""
    lines = []
    checked = [a["parity"] for a in report.artifacts if a["parity"].get("n_images")]
    if checked:
        p = checked[0]
        runtimes = ", ".join(sorted({f"{c['runtime']}/{c['device']}" for c in checked}))
        lines.append(f"parity: each artifact run by its own runtime ({runtimes}) on {p['n_images']} {p['split']} images ({p['data']}) vs the run's PyTorch model")
    for a in report.artifacts:
        p = a["parity"]
        if p["status"] != "ok" and p.get("reason"):
            lines.append(f"{a['path']}: {p['reason']}")
        if p.get("near_tie_flips"):
            lines.append(
                f"* {a['path']}: {p['near_tie_flips']} top-1 flip(s) on near-ties (PyTorch's top two within "
                f"{p['thresholds'].get('tie_margin', 0):.0e}); {p['decisive_agreement'] * 100:.2f} % agreement excluding them"
            )
    return lines


def _parse_images(value: str) -> int | None:
    from edgeblood.errors import EdgebloodError

    if value.strip().lower() == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise EdgebloodError(f"--parity-images must be a positive number or 'all', not '{value}'")
    return n
