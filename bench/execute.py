"""Running planned bench rows: the test split and the reference every row is compared with, one
``python -m edgeblood.bench.worker`` process per row, the machine's load around it, and a second
measurement of the rows that other processes disturbed.

Each row runs in a fresh worker (peak RSS in isolation, process-wide thread pools pinned, a crash
inside a runtime is one failed row). The rows of one (artifact, runtime, device) group share the
verdict of their first load: when it cannot be loaded, the group's other rows fail with that reason
without starting another worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeblood.bench import load
from edgeblood.bench.measure import achieved_gmacs
from edgeblood.bench.peak import ceiling, row_precision
from edgeblood.bench.peak import fraction as peak_fraction
from edgeblood.bench.plan import PARITY_SLICE, SPLIT, Artifact, BenchConfig, Planned, display_path, sha256_mismatch
from edgeblood.bench.results import group_measurement, judge
from edgeblood.parity import FAILED, MISMATCH, OK

ProgressFn = Callable[[dict[str, Any], int, int], None]


# ------------------------------------------------------------------------------------------------ inputs
def load_test_split(run, config: BenchConfig, notes: list[str]) -> dict[str, Any]:
    """The full test split at the run's input size: the data the run was trained on when it is here."""
    from edgeblood.data import load_bloodmnist
    from edgeblood.data.image_folder import is_folder_dataset, load_folder_for_run

    if is_folder_dataset(run.meta.dataset):
        ds = load_folder_for_run(run.meta)
        return {"images": ds.images(SPLIT), "labels": ds.labels(SPLIT), "dataset": ds.metadata(), "describe": ds.describe()}
    trained_on = run.meta.dataset.source
    sample = True if (config.sample is True or trained_on == "sample") else config.sample
    ds = load_bloodmnist(run.in_size, config.data_dir, sample=sample)
    if ds.is_sample and trained_on == "full":
        notes.append(f"{run.name}: trained on full BloodMNIST but the full file was not found here; accuracy is on the embedded sample ({ds.describe()})")
    return {"images": ds.images(SPLIT), "labels": ds.labels(SPLIT), "dataset": ds.metadata(), "describe": ds.describe()}


def load_real_images(run, source: str, out: Path) -> dict[str, Any]:
    """Frame a folder (or CSV) of labelled images with the run's framing once; every accuracy row predicts them."""
    from edgeblood.data.labelled_images import load_framed, read_labelled_images

    items = read_labelled_images(source, run.classes, run.meta.class_names_full)
    images, labels, kept, skipped = load_framed(items, run.in_size, run.framing)
    np.savez(out, images=images)
    return {"path": str(out), "labels": labels, "source": str(items.root), "files": len(kept), "skipped": len(skipped),
            "framing": run.framing.describe()}


def reference(run, data: dict[str, Any]) -> dict[str, Any]:
    """PyTorch fp32 probabilities of the run's checkpoint on the full split: what every row is compared with."""
    from edgeblood.evaluation.metrics import ECE_BINS, accuracy_and_macro_f1, expected_calibration_error
    from edgeblood.evaluation.predict import predict_probs

    probs = predict_probs(run.model, data["images"], run.mean, run.std, batch_size=256)
    acc, f1 = accuracy_and_macro_f1(data["labels"], probs.argmax(1), len(run.classes))
    ece, _ = expected_calibration_error(data["labels"], probs, ECE_BINS)
    return {"probs": probs, "accuracy": acc, "macro_f1": f1, "ece": ece}


def artifact_notes(artifacts: list[Artifact]) -> tuple[set[Path], list[str]]:
    """Artifacts whose file changed since export, and a note for each that did or that failed parity at export."""
    changed = {art.path for art in artifacts if sha256_mismatch(art)}
    notes = []
    for art in artifacts:
        if art.path in changed:
            notes.append(f"{display_path(art.path)}: sha256 differs from export/manifest.json (file changed or corrupt since export)")
        if (art.extra.get("parity") or {}).get("status") == "failed":
            notes.append(f"{display_path(art.path)}: failed its parity check at export time (see export/manifest.json)")
    return changed, notes


# --------------------------------------------------------------------------------------------- one run
@dataclass
class RunContext:
    """What every row of one run needs: the run, its test split (in memory and as the workers' .npz),
    the reference probabilities, the bench settings, the machine and a scratch folder."""

    run: Any
    data: dict[str, Any]
    data_path: Path
    ref: dict[str, Any]
    config: BenchConfig
    machine: dict[str, Any]
    tmp: Path


@dataclass
class RunProgress:
    """Rows done out of rows in all (across every run of the bench) and the callbacks that hear of them."""

    total: int
    done: int = 0
    before_row: ProgressFn | None = None
    after_row: ProgressFn | None = None


def execute_run(ctx: RunContext, planned: list[Planned], changed: set[Path], progress: RunProgress,
                notes: list[str]) -> tuple[dict[int, dict[str, Any]], dict[tuple, dict]]:
    """Run every planned row of one run (full-split rows first), then re-measure the disturbed ones.

    Returns the rows by plan index and each group's full-split measurement (see results.group_measurement)."""
    group_failures: dict[tuple, str] = {}
    group_accuracy: dict[tuple, dict] = {}
    results: dict[int, dict[str, Any]] = {}
    for i in sorted(range(len(planned)), key=lambda i: not planned[i].full_eval):  # accuracy rows first
        p = planned[i]
        if progress.before_row:
            progress.before_row(p.row, progress.done, progress.total)
        if p.row["status"] is None:
            _execute_planned(ctx, p, i, changed, group_failures, group_accuracy)
        p.row.pop("_stage", None)
        results[i] = p.row
        progress.done += 1
        if progress.after_row:
            progress.after_row(p.row, progress.done, progress.total)
    remeasure_disturbed(ctx, planned, results, notes)
    return results, group_accuracy


def _execute_planned(ctx: RunContext, p: Planned, index: int, changed: set[Path], group_failures: dict[tuple, str],
                     group_accuracy: dict[tuple, dict]) -> None:
    """One row to be measured: failed at once when its group could not load, else run in a worker."""
    if p.group in group_failures:
        p.row.update(status=FAILED, reason=group_failures[p.group])
        return
    execute_row(ctx, p, index)
    if p.row["status"] == FAILED and p.artifact.path in changed:
        p.row["reason"] += "; its sha256 differs from export/manifest.json (changed or corrupt since export): re-export it"
    if p.row["status"] == FAILED and p.row.pop("_stage", None) == "load":
        group_failures[p.group] = p.row["reason"]
    if p.full_eval and p.row.get("accuracy") is not None:
        group_accuracy[p.group] = group_measurement(p.row)


def remeasure_disturbed(ctx: RunContext, planned: list[Planned], results: dict[int, dict], notes: list[str]) -> None:
    """Measure every row that other processes disturbed once more, after the others; keep the quieter of the two."""
    measured = [i for i, r in results.items() if r["status"] in (OK, MISMATCH) and r.get("load")]
    disturbed = [i for i in measured if load.is_disturbed(results[i]["load"]["foreign_cores"])]
    if not disturbed:
        return
    worst = max(results[i]["load"]["foreign_cores"] for i in disturbed)
    still = 0
    for i in disturbed:
        first = dict(results[i])
        p = planned[i]
        execute_row(ctx, p, i)
        second = p.row.get("load") or {}
        if p.row["status"] not in (OK, MISMATCH) or (second.get("foreign_cores") or 0) >= (first["load"]["foreign_cores"] or 0):
            p.row.clear()
            p.row.update(first)
        p.row["load"] = {**p.row["load"], "remeasured": True, "first_foreign_cores": first["load"]["foreign_cores"]}
        still += load.is_disturbed(p.row["load"]["foreign_cores"])
        results[i] = p.row
    notes.append(f"machine load: {len(disturbed)} of {len(measured)} rows of {ctx.run.name} ran while other processes kept more than "
                 f"{load.DISTURBED_CORES:g} cores busy (worst {worst:.2f}); each was measured again after the others and the quieter "
                 f"measurement kept; {still} still disturbed (column 'load' in report.json) - compare their ratios with care")


# --------------------------------------------------------------------------------------------- one row
def execute_row(ctx: RunContext, p: Planned, index: int) -> None:
    """Run one row in a worker process and fill in its measurements and status."""
    row = p.row
    job = _job(ctx, p, index)
    job_path = ctx.tmp / f"job-{index}.json"
    job_path.write_text(json.dumps(job))
    env = dict(os.environ)
    if row["threads"]:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(row["threads"])
    try:
        with load.LoadMeter() as meter:
            proc = subprocess.run([sys.executable, "-m", "edgeblood.bench.worker", str(job_path)], env=env,
                                  capture_output=True, text=True, timeout=ctx.config.row_timeout_s)
        row["load"] = meter.figures()
    except subprocess.TimeoutExpired:
        row.update(status=FAILED, reason=f"timed out after {ctx.config.row_timeout_s:.0f} s")
        return
    result = _worker_result(proc, Path(job["result"]))
    if not result.get("ok"):
        row.update(status=FAILED, reason=result.get("error") or "unknown error", _stage=result.get("stage"))
        return
    judge(row, p.artifact, np.load(job["probs_out"]), ctx.data, ctx.ref, p.full_eval, len(ctx.run.classes))
    if job["real_data"]:  # the real-image accuracy, by this artifact's own runtime
        real = np.load(job["real_probs_out"])
        row.update(images_accuracy=float((real.argmax(1) == ctx.data["real"]["labels"]).mean()), images_n=int(len(real)))
    _record_measurements(ctx, p, result)


def _job(ctx: RunContext, p: Planned, index: int) -> dict[str, Any]:
    row, n, tmp = p.row, len(ctx.data["labels"]), ctx.tmp
    return {
        "artifact": str(p.artifact.path), "runtime": row["runtime"], "device": row["device"], "threads": row["threads"],
        "batch": row["batch"], "data": str(ctx.data_path),
        "eval_images": None if p.full_eval else min(n, max(PARITY_SLICE, 2 * row["batch"])),
        "probs_out": str(tmp / f"probs-{index}.npy"), "result": str(tmp / f"result-{index}.json"),
        "real_data": ctx.data["real"]["path"] if (p.full_eval and ctx.data.get("real")) else None,
        "real_probs_out": str(tmp / f"real-probs-{index}.npy"),
        "timing": ctx.config.timing.to_dict(),
    }


def _worker_result(proc: subprocess.CompletedProcess, result_path: Path) -> dict[str, Any]:
    """The worker's result file, or a failure that says how the worker died."""
    if result_path.is_file():
        return json.loads(result_path.read_text())
    tail = [line for line in (proc.stderr or "").strip().splitlines() if line.strip()][-1:] or ["no output"]
    how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
    return {"ok": False, "error": f"worker crashed ({how}): {tail[0][:300]}"}


def _record_measurements(ctx: RunContext, p: Planned, result: dict[str, Any]) -> None:
    """Latency, memory and compute columns of a row from its worker's result."""
    row, art = p.row, p.artifact
    lat = result["latency"]
    row.update(
        latency_ms={k.removesuffix("_ms"): lat[k] for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms")}
        | {k: lat[k] for k in ("iterations", "total_iterations", "blocks", "block_spread", "converged", "warmup_iterations")},
        throughput_ips=lat["throughput_ips"],
        latency_input_shape=result.get("latency_input_shape", "dynamic"),
        kernels=result.get("kernels"),
        load_s=result["load_s"],
        peak_rss_mb=result["peak_rss_mb"],
        runtime_rss_mb=round(result["peak_rss_mb"] - result["baseline_rss_mb"], 1),
        baseline_rss_mb=result["baseline_rss_mb"],
    )
    gmacs = achieved_gmacs(ctx.run.meta.model.macs, row["batch"], lat["p50_ms"] / 1000.0)
    row["gmacs"] = round(gmacs, 2) if gmacs is not None else None
    if row["device"] == "cpu":  # the ceiling: measured at bench start or theoretical at the measured clock, whichever is larger
        top = ceiling(ctx.machine["cpu"], ctx.machine.get("peak"), row_precision(art.precision), int(row["threads"] or 1))
        row.update(peak_gmacs=top["peak_gmacs"], peak_basis=top["basis"], peak_measured_gmacs=top["measured_gmacs"],
                   peak_theoretical_gmacs=top["theoretical_gmacs"])
    else:
        row.update(peak_gmacs=None, peak_basis=f"no peak model for device '{row['device']}'")
    # Never above 1.0: a row beyond the ceiling (fewer real multiplies than counted MACs) is capped and says so.
    row["peak_fraction"], row["peak_note"] = peak_fraction(gmacs, row["peak_gmacs"])
