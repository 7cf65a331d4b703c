"""``edgeblood bench`` as a library call: plan the rows, run each in its own worker, judge the results.

One row per (run x artifact x runtime x device x threads x batch), planned by ``bench.plan``, run by
``bench.execute`` in a fresh ``python -m edgeblood.bench.worker`` process each (peak RSS in
isolation, crashes contained), judged and compared by ``bench.results``. The parent holds the
PyTorch fp32 reference probabilities of the run's checkpoint on the full test split and compares
every row's predictions with them:

* accuracy and macro-F1 on the full test split are measured once per (artifact, runtime, device), in
  the row with the most threads and the largest batch, at that row's batch size; the other rows of
  the group predict a slice of the split at their own batch size, which is checked for parity;
* ECE (15 bins, evaluation's function) of each artifact's own probabilities on the full split;
* after the rows of a run, the headline: the fastest ok artifact against PyTorch eager fp32, timed
  interleaved in one process (``bench.interleave``); the per-row ratios are not interleaved;
* the machine's load around every row (other processes' cores, load average, CPU clock) and a
  summary of it per run (``bench.load``);
* status, in the words of the one parity judge (``edgeblood.parity``, the thresholds export and
  compress use too): ``ok``; ``mismatch`` (top-1 agreement, max |p - p_ref| or accuracy beyond the
  threshold for the artifact's precision); ``failed`` (load/predict error, crash, timeout — the rest
  still runs); ``skipped`` (runtime not installed, device absent, Core ML off macOS, ...).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeblood.bench import load
from edgeblood.bench.execute import (
    ProgressFn,
    RunContext,
    RunProgress,
    artifact_notes,
    execute_run,
    load_real_images,
    load_test_split,
    reference,
)
from edgeblood.bench.interleave import interleaved_headline
from edgeblood.bench.machine import machine_info
from edgeblood.bench.peak import kernel_seconds, measure_peaks
from edgeblood.bench.plan import (
    DEVICE_ALIASES,
    PARITY_SLICE,
    SPLIT,
    Artifact,
    BenchConfig,
    Planned,
    _target_hint,
    plan_rows,
    require_artifacts,
    run_artifacts,
    sha256_mismatch,
)
from edgeblood.bench.results import (
    ROW_KEYS,
    SCHEMA,
    add_comparisons,
    finish_rows,
    mark_pareto,
    pareto_front,
    run_entry,
    sort_rows,
)
from edgeblood.bench.results import judge as _judge
from edgeblood.errors import EdgebloodError
from edgeblood.parity import FAILED, MISMATCH, OK, SKIPPED
from edgeblood.parity_status import STATUSES

# Callers import these from here (the CLI, the pipeline, the tests): one place to find the bench's API.
__all__ = [
    "DEVICE_ALIASES", "FAILED", "MISMATCH", "OK", "PARITY_SLICE", "ROW_KEYS", "SCHEMA", "SKIPPED", "SPLIT", "STATUSES",
    "Artifact", "BenchConfig", "Planned", "ProgressFn", "_judge", "_target_hint", "add_comparisons", "bench_runs", "mark_pareto",
    "pareto_front", "plan_rows", "require_artifacts", "run_artifacts", "sha256_mismatch", "sort_rows",
]


def bench_runs(run_dirs: Sequence[Any], config: BenchConfig | None = None, *, progress: ProgressFn | None = None,
               before_row: ProgressFn | None = None, stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Benchmark every artifact of every run (run directories or opened ``Run``s); return the report
    (see report.schema.json). ``before_row``/``progress`` are called with (row, rows done, rows in all),
    ``stage`` with a line that says what runs now when it is not a row (the interleaved headline)."""
    from edgeblood import __version__
    from edgeblood.provenance import command_line, git_commit, utc_now
    from edgeblood.runs import Run, open_run

    config = config or BenchConfig()
    runs = [d if isinstance(d, Run) else open_run(d) for d in run_dirs]
    if not runs:
        raise EdgebloodError("no run directories given; pass one or more runs/<name> folders")
    machine = machine_info(config.label)
    if "cpu" in config.devices:  # the CPU rows' ceiling, measured once per bench (bench.peak)
        if stage:
            stage(f"measuring the CPU peak: fp32/bf16/int8 GEMM micro-kernels at {', '.join(map(str, config.threads))} thread(s)")
        machine["peak"] = measure_peaks(config.threads, kernel_seconds(config.timing.max_s))
    prepared = []
    for run in runs:
        artifacts = require_artifacts(run)
        prepared.append((run, artifacts, plan_rows(run, artifacts, config, machine["label"])))
    counter = RunProgress(total=sum(len(p) for _, _, p in prepared), before_row=before_row, after_row=progress)
    rows: list[dict[str, Any]] = []
    run_entries: list[dict[str, Any]] = []
    notes: list[str] = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeblood-bench-") as tmp:
        for run, artifacts, planned in prepared:
            ctx = _run_context(run, config, machine, Path(tmp), notes)
            run_entries.append(run_entry(run, ctx.data, ctx.ref, machine["label"]))
            if ctx.data.get("real"):
                run_entries[-1]["images"] = {k: v for k, v in ctx.data["real"].items() if k not in ("labels", "path")}
            changed, artifact_lines = artifact_notes(artifacts)
            notes += artifact_lines
            results, group_accuracy = execute_run(ctx, planned, changed, counter, notes)
            run_rows = finish_rows(planned, results, group_accuracy, run)
            run_entries[-1]["interleaved"] = _headline(ctx, artifacts, run_rows, stage)
            loads = [r["load"] for r in run_rows if r.get("load")] + [(run_entries[-1]["interleaved"] or {}).get("load")]
            run_entries[-1]["load"] = load.summary([x for x in loads if x])
            rows += run_rows
    add_comparisons(rows, run_entries)  # first: the Pareto front ranks by its accuracy intervals
    mark_pareto(rows)
    notes += _latency_shape_notes(rows)
    return {
        "schema": SCHEMA,
        "created": utc_now(),
        "edgeblood_version": __version__,
        "git_commit": git_commit(),
        "command": command_line(),
        "split": SPLIT,
        "machines": [machine | {"bench": {"created": utc_now(), "command": command_line(), "settings": config.to_dict(),
                                           "wall_s": round(time.perf_counter() - t_start, 1)}}],
        "runs": run_entries,
        "rows": sort_rows(rows),
        "notes": notes,
    }


def _run_context(run, config: BenchConfig, machine: dict[str, Any], tmp: Path, notes: list[str]) -> RunContext:
    """Load the run's test split (and --images), save it for the workers and compute the PyTorch reference."""
    data = load_test_split(run, config, notes)
    data_path = tmp / f"{run.name}-test.npz"
    np.savez(data_path, images=data["images"])
    ref = reference(run, data)
    if config.images:
        data["real"] = load_real_images(run, config.images, tmp / f"{run.name}-images.npz")
    return RunContext(run=run, data=data, data_path=data_path, ref=ref, config=config, machine=machine, tmp=tmp)


def _headline(ctx: RunContext, artifacts: list[Artifact], rows: list[dict[str, Any]],
              stage: Callable[[str], None] | None) -> dict[str, Any] | None:
    """The run's interleaved A/B latency of its fastest ok artifact vs PyTorch eager fp32 (or why there is none;
    None when it was turned off)."""
    if ctx.config.interleave is None:
        return None
    if stage:
        stage(f"{ctx.run.name}: interleaved A/B latency, fastest ok artifact vs pytorch fp32 ({ctx.config.interleave.rounds} rounds)")
    paths = {a.label: str(a.path) for a in artifacts}
    return interleaved_headline(rows, paths, ctx.data_path, ctx.tmp, ctx.config.interleave, ctx.config.row_timeout_s)


def _latency_shape_notes(rows: list[dict[str, Any]]) -> list[str]:
    """Rows whose latency was not timed on one dynamic-batch call say how it was timed."""
    notes = []
    looped = sorted({r["runtime"] for r in rows if r.get("latency_input_shape") == "batch-1 calls"})
    if looped:
        notes.append(f"{', '.join(looped)}: artifacts of fixed batch sizes (1 and 64); a row of another batch is timed as that many "
                     "batch-1 calls (latency_input_shape 'batch-1 calls')")
    static = sorted({r["runtime"] for r in rows if r.get("latency_input_shape") == "static"})
    if static:
        notes.append(f"{', '.join(static)}: latency and throughput are timed on the model compiled (OpenVINO) or exported "
                     "(LiteRT signatures, ExecuTorch methods) for the row's batch, as an app serving that batch deploys it; accuracy "
                     "comes from predicting the whole split (OpenVINO: the dynamic-batch model; LiteRT/ExecuTorch: batches of 64, the rest one by one)")
    return notes
