"""`edgeblood bench`: accuracy against latency, throughput, memory and size for every artifact of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from edgeblood.cli.app import app, console, err_console
from edgeblood.cli.options import positive_ints, split_list
from edgeblood.errors import EdgebloodError


@app.command()
def bench(
    runs: list[Path] = typer.Argument(..., help="One or more run directories (runs/<name>); their export/manifest.json lists the artifacts."),
    runtimes: Optional[str] = typer.Option(None, "--runtimes", "-r", help="Comma-separated: pytorch, onnxruntime, openvino, coreml. Default: all (ones not usable here become skipped rows)."),
    devices: str = typer.Option("cpu", "--devices", "-d", help="Comma-separated: cpu, cuda/gpu, mps, npu, coreml's cpu_and_gpu / cpu_and_ne (ane), or 'all' devices each runtime has."),
    batch: str = typer.Option("1,64", "--batch", "-b", help="Batch sizes, comma-separated. Batch 1 gives the latency table, larger ones the throughput table."),
    threads: str = typer.Option("1,2", "--threads", "-t", help="CPU thread counts, comma-separated; each runtime's thread pool is pinned per row."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder. Default: runs/<name>/bench/ for one run; required for several."),
    quick: bool = typer.Option(False, "--quick", help="Short warm-up and timing budget (smoke tests; the figures are rough)."),
    budget: Optional[float] = typer.Option(None, "--budget", help="Seconds of timing per row before giving up on the 5 % spread target (default 3; more helps on a busy machine)."),
    export: bool = typer.Option(False, "--export", help="Export runs that have no artifacts yet (as `edgeblood export RUN --target all`)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with the BloodMNIST .npz files (default: $EDGEBLOOD_DATA, ~/.medmnist)."),
    sample: bool = typer.Option(False, "--sample", help="Use the embedded sample's test split even when the full data is here."),
    label: Optional[str] = typer.Option(None, "--label", help="This machine's name in the report (default: hostname); it becomes the device column after `report merge`."),
    timeout: float = typer.Option(300.0, "--row-timeout", help="Seconds before one row's worker is stopped and the row marked failed."),
    images: Optional[Path] = typer.Option(None, "--images", help="Labelled image files (class sub-folders or a CSV of path,label), framed with each run's framing: adds a real-image accuracy column, each computed by the artifact's own runtime."),
    rounds: Optional[int] = typer.Option(None, "--rounds", help="Rounds of the interleaved A/B headline (fastest ok artifact vs PyTorch fp32 in one process; default 15, 5 with --quick; 0: no headline)."),
) -> None:
    """Benchmark every exported variant of a run: one row per artifact x runtime x device x threads x batch.

    Each row runs in its own process: it loads the artifact with its runtime, predicts the full
    test split (accuracy, macro-F1, agreement with the PyTorch fp32 model), then times the
    runtime's own inference call until run-to-run spread is within 5 %. Status per row: ok,
    mismatch, failed (with the error; the rest still runs) or skipped (with the reason).
    After the rows, the fastest ok artifact and PyTorch eager fp32 are timed interleaved, round by
    round in one process: that ratio is the report's headline (the per-row ratios are not interleaved).
    Writes report.md, report.json (schema edgeblood.bench/2) and report.html. When the output is not
    a terminal (a log, a pipe), one line per finished row replaces the progress bar.

        edgeblood bench runs/se-cnn
        edgeblood bench runs/se-cnn -r onnxruntime,openvino -d cpu -b 1,64 -t 1,2
        edgeblood bench runs/a runs/b runs/c --out reports/zoo
    """
    from edgeblood.bench.report import check_writable, write_report
    from edgeblood.bench.runner import BenchConfig, require_artifacts
    from edgeblood.runs import open_run

    if timeout <= 0:  # 0 used to fail every row and still exit 0
        raise EdgebloodError(f"--row-timeout takes a positive number of seconds per row, e.g. 300 (got {timeout:g})")
    opened = [open_run(r) for r in runs]
    if out is None and len(opened) > 1:
        raise EdgebloodError(f"{len(opened)} runs share one report; pass --out DIR (e.g. --out reports/zoo)")
    out_dir = out if out is not None else opened[0].bench_dir
    config = BenchConfig(
        runtimes=split_list(runtimes) or None, devices=split_list(devices) or ["cpu"], batches=positive_ints(batch, "--batch"),
        threads=positive_ints(threads, "--threads"), timing=timing_config(quick, budget),
        data_dir=str(data_dir) if data_dir else None, sample=True if sample else "auto", label=label, row_timeout_s=timeout,
        images=str(images) if images else None, interleave=interleave_config(quick, rounds),
    )
    check_writable(out_dir)
    if export:
        _export_missing(opened, data_dir)
    for run in opened:
        require_artifacts(run)  # before the progress bar: the error stays one line

    report = _bench_with_progress(opened, config)
    paths = write_report(report, out_dir)
    print_summary(report, paths)


def _bench_with_progress(opened, config) -> dict:
    """bench_runs under a progress bar on stderr; not on a terminal, one line per finished row on stdout (D20)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from edgeblood.bench.runner import bench_runs

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=err_console, transient=True,
    ) as bar:
        task = bar.add_task("preparing (PyTorch reference on the test split)", total=None)

        def before(row: dict, done: int, total: int) -> None:
            what = " ".join(str(x) for x in (row["run"], row["variant"] or "", row["runtime"], row["device"],
                                             f"threads {row['threads']}" if row["threads"] else "", f"batch {row['batch']}" if row["batch"] else ""))
            bar.update(task, description=what, completed=done, total=total)

        def after(row: dict, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            if not console.is_terminal:  # logs and pipes get one line per row instead of a live bar
                console.print(_row_line(row, done, total), highlight=False, soft_wrap=True)
            if row["status"] == "failed":
                err_console.print(f"[red]failed:[/] {row['id']}: {row['reason']}", highlight=False, soft_wrap=True)

        def stage(what: str) -> None:
            bar.update(task, description=what)
            if not console.is_terminal:
                console.print(what, highlight=False, soft_wrap=True)

        return bench_runs(opened, config, progress=after, before_row=before, stage=stage)


def print_summary(report: dict, paths: dict) -> None:
    """The tables, the notes, the interleaved headline and the machine load, then where the report went
    (`edgeblood bench` and `edgeblood pipeline` end with it)."""
    from edgeblood.bench.recommend import recommendation_lines
    from edgeblood.bench.report import headline_lines, load_lines, rich_tables

    for table in rich_tables(report):
        console.print(table)
    for line in recommendation_lines(report):
        console.print(f"[bold]ship:[/] {escape(line.replace('**', '').replace('`', ''))}", highlight=False, soft_wrap=True)
    for note in report["notes"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    for run in report["runs"]:
        ev = run["evaluated_on"]
        console.print(f"{run['name']}: accuracy on the {ev['split']} split, {ev['images']} images ({ev['describe']})", highlight=False, soft_wrap=True)
    for line in headline_lines(report):
        console.print(f"headline (interleaved): {line.replace('**', '')}", highlight=False, soft_wrap=True)
    for line in load_lines(report):
        console.print(f"machine load: {line}", highlight=False, soft_wrap=True)
    counts = {s: sum(r["status"] == s for r in report["rows"]) for s in ("ok", "mismatch", "failed", "skipped")}
    console.print("rows: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n), highlight=False)
    console.print(f"report: {paths['md']}  {paths['json']}  {paths['html']}", highlight=False, soft_wrap=True)


def _row_line(row: dict, done: int, total: int) -> str:
    """A finished row in one line, for logs: what it measured, its status and its main figures."""
    what = " ".join(str(x) for x in (row["run"], row["variant"] or "-", row["runtime"], row["device"],
                                     f"threads {row['threads']}" if row["threads"] else "", f"batch {row['batch']}" if row["batch"] else "") if x)
    figures = []
    if row.get("latency_ms"):
        figures.append(f"p50 {row['latency_ms']['p50']:.4g} ms")
    if row.get("accuracy") is not None:
        figures.append(f"acc {row['accuracy'] * 100:.2f} %")
    if (row.get("load") or {}).get("foreign_cores") is not None:
        figures.append(f"others {row['load']['foreign_cores']:.2f} cores")
    tail = f" ({row['reason']})" if row.get("reason") else ""
    return f"row {done}/{total} {row['status']}: {what}" + (f": {', '.join(figures)}" if figures else "") + tail


def interleave_config(quick: bool, rounds: Optional[int]):
    import dataclasses

    from edgeblood.bench.interleave import InterleaveConfig

    if rounds is not None and rounds < 0:
        raise EdgebloodError(f"--rounds takes 0 (no interleaved headline) or a positive number of rounds, e.g. 15 (got {rounds})")
    if rounds == 0:
        return None
    config = InterleaveConfig.quick() if quick else InterleaveConfig()
    return dataclasses.replace(config, rounds=rounds) if rounds else config


def _export_missing(opened, data_dir: Optional[Path]) -> None:
    from edgeblood.bench.runner import run_artifacts
    from edgeblood.exporters.run_export import export_run

    for run in opened:
        if len(run_artifacts(run)) > 1:
            continue
        with console.status(f"exporting {run.dir} (onnx, openvino, coreml; fp32) ..."):
            report = export_run(run, ("all",), ("fp32",), data_dir=data_dir, strict=False)
        console.print(f"exported {len(report.artifacts)} artifacts to {report.export_dir}", highlight=False)


def timing_config(quick: bool, budget: Optional[float]):
    import dataclasses

    from edgeblood.bench.measure import TimingConfig

    timing = TimingConfig.quick() if quick else TimingConfig()
    if budget is not None:
        if budget <= 0:
            raise EdgebloodError(f"--budget takes a positive number of seconds (got {budget})")
        timing = dataclasses.replace(timing, max_s=budget)
    return timing
