"""`edgeblood pipeline`: the main job in one command - train -> export -> int8 -> bench."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeblood.cli.app import app, console, err_console
from edgeblood.cli.options import split_list
from edgeblood.errors import EdgebloodError


@app.command()
def pipeline(
    model: str = typer.Option("se-cnn", "--model", "-m", help="Registry name (see `edgeblood models`)."),
    size: int = typer.Option(28, "--size", "-s", help="Input size in px: 28, 64, 128 or 224."),
    recipe: str = typer.Option("default", help="Training recipe (default, best, published)."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs (recipe default otherwise; the sample run uses 15)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with bloodmnist*.npz (else $EDGEBLOOD_DATA, else ~/.medmnist)."),
    download: bool = typer.Option(False, "--download", help="Download the official file if missing."),
    sample: bool = typer.Option(False, "--sample", help="Force the embedded sample even when the full data is present."),
    out: Path = typer.Option(Path("runs"), "--out", help="Parent folder of run directories."),
    name: Optional[str] = typer.Option(None, help="Run directory name."),
    targets: str = typer.Option("onnx,openvino,coreml", help="Export targets (those whose library is missing are skipped with a note)."),
    quick_bench: bool = typer.Option(False, "--quick-bench", help="Shorter timing budget in the benchmark (rough figures)."),
) -> None:
    """Train a model on the data it finds (full BloodMNIST when present, else the embedded sample,
    saying which), export it with parity checks, make int8 variants, and benchmark everything.

    Ends by printing the benchmark's table, the interleaved headline (the fastest artifact against
    PyTorch fp32, timed round by round in one process) and the report's path. The benchmark measures
    PyTorch and the runtimes of the targets exported here, nothing else.
    """
    from edgeblood.bench.report import write_report
    from edgeblood.bench.runner import BenchConfig, bench_runs
    from edgeblood.cli.bench import interleave_config, print_summary, timing_config
    from edgeblood.cli.compress import variant_table
    from edgeblood.cli.train import build_config
    from edgeblood.compression.compress_run import CompressOptions, compress
    from edgeblood.data import find_dataset_file
    from edgeblood.exporters.run_export import export_run
    from edgeblood.models import create
    from edgeblood.runs import open_run
    from edgeblood.training import train
    from edgeblood.training.display import RichProgress

    # Only look for the file here: train() loads (and MD5-checks) it once; --download lets train() fetch it.
    use_sample = sample or (find_dataset_file(size, data_dir) is None and not download)
    data_arg = str(data_dir) if data_dir else None
    # Every option is judged before anything is printed or trained: a wrong model name is one line, not a banner and then an error.
    create(model, in_size=size)  # the name and whether the model builds at this size
    cfg = build_config(model=model, size=size, recipe=recipe, model_opts={}, overrides=dict(epochs=epochs or (15 if use_sample else None)),
                       augment_overrides={}, fixed=dict(data_dir=data_arg, download=download, sample=use_sample, out_dir=str(out), name=name))
    wanted = _available_targets(targets)  # before training: a missing extra must not cost a training run
    console.rule("[bold]1/4 train")
    if use_sample:
        console.print("[yellow]full BloodMNIST not found: running the whole path on the embedded sample "
                      "(figures are smoke tests; pass --data-dir or --download for real results)[/]")
    run_dir = train(cfg, callbacks=[RichProgress(console)])
    run = open_run(run_dir)

    console.rule("[bold]2/4 export")
    report = export_run(run, wanted, ("fp32",), data_dir=data_dir, strict=True)
    for art in report.artifacts:
        console.print(f"  {art.get('target')} {art.get('precision')}: {art.get('path')} - parity {art.get('parity', {}).get('status')}",
                      highlight=False)
    for note in report.notes:
        if note.startswith("WARNING:"):
            console.print(note, style="bold yellow", highlight=False, markup=False, soft_wrap=True)

    console.rule("[bold]3/4 int8")
    int8_targets = tuple(t for t in wanted if t in ("onnx", "openvino"))
    for rep in compress(run, CompressOptions(quantize=("int8",), targets=int8_targets, data_dir=data_arg),
                        say=lambda m: console.print(m, highlight=False)):
        console.print(variant_table(rep))

    console.rule("[bold]4/4 bench")
    config = BenchConfig(runtimes=bench_runtimes(wanted), devices=["cpu"], batches=[1, 64], threads=[1, 2], timing=timing_config(quick_bench, None),
                         data_dir=data_arg, sample=True if use_sample else "auto", interleave=interleave_config(quick_bench, None))
    with err_console.status("benchmarking every artifact (one subprocess per row), then the interleaved headline"):
        bench = bench_runs([run], config)
    print_summary(bench, write_report(bench, run.bench_dir))


def bench_runtimes(targets: tuple[str, ...]) -> list[str]:
    """PyTorch (the reference) and the runtimes of the targets this pipeline exported: the runtimes of targets it
    did not export (LiteRT, ExecuTorch by default) would only be rows saying their artifact is missing."""
    from edgeblood.targets import get_target

    return list(dict.fromkeys(["pytorch", *(get_target(t).runtime for t in targets)]))


def _available_targets(text: str) -> tuple[str, ...]:
    """The export targets whose libraries are installed; none at all is an error (before any training)."""
    import importlib.util

    from rich.markup import escape

    from edgeblood.targets import get_target, parse_targets

    chosen = parse_targets(split_list(text))

    def missing(target) -> list[str]:
        libs = [*target.libraries, *(get_target(target.source).libraries if target.source else ())]
        return [m for m in dict.fromkeys(libs) if importlib.util.find_spec(m) is None]

    keep = tuple(t.name for t in chosen if not missing(t))
    if not keep:
        extras = ",".join(dict.fromkeys(t.extra for t in chosen))
        raise EdgebloodError(f"none of the export targets ({', '.join(t.name for t in chosen)}) can run here: their libraries are missing; "
                             f'install them first with pip install "edgeblood[{extras}]" (or "edgeblood[all]")')
    for t in chosen:
        if t.name not in keep:
            hint = escape('pip install "edgeblood[' + t.extra + ']"')
            console.print(f"skipping {t.name}: {' and '.join(missing(t))} not installed ({hint})", style="yellow", highlight=False)
    return keep


def _int8_targets(targets: tuple[str, ...]) -> tuple[str, ...]:
    """The targets with a registered int8 method whose runtime can measure it here (Core ML needs macOS)."""
    from edgeblood.compression.methods import all_methods
    from edgeblood.runtimes import get_runtime
    from edgeblood.targets import get_target

    with_int8 = {m.target for m in all_methods() if m.quantize == "int8"}
    return tuple(t for t in targets if t in with_int8 and get_runtime(get_target(t).runtime).available()[0])
