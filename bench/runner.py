"""``edgeblood bench`` as a library call: plan the rows, run each in its own worker, judge the results.

One row per (run x artifact x runtime x device x threads x batch). Each row runs in a fresh
``python -m edgeblood.bench.worker`` process (peak RSS in isolation, crashes contained). The parent
holds the PyTorch fp32 reference probabilities of the run's checkpoint on the full test split and
compares every row's predictions with them:

* accuracy and macro-F1 on the full test split are measured once per (artifact, runtime, device), in
  the row with the most threads and the largest batch, at that row's batch size; the other rows of
  the group predict a slice of the split at their own batch size, which is checked for parity;
* status, in the words of the one parity judge (``edgeblood.parity``, the thresholds export and
  compress use too): ``ok``; ``mismatch`` (top-1 agreement, max |p - p_ref| or accuracy beyond the
  threshold for the artifact's precision); ``failed`` (load/predict error, crash, timeout — the rest
  still runs); ``skipped`` (runtime not installed, device absent, Core ML off macOS, ...).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeblood.bench import load
from edgeblood.bench.machine import machine_info, peak_gmacs
from edgeblood.bench.measure import TimingConfig, achieved_gmacs
from edgeblood.errors import EdgebloodError
from edgeblood.manifest import MANIFEST
from edgeblood.parity import FAILED, MISMATCH, OK, SKIPPED, STATUSES, THRESHOLDS, precision_class

SCHEMA = "edgeblood.bench/2"  # /2: the parity judge's status words ("mismatch", was "output mismatch") and thresholds
SPLIT = "test"
PARITY_SLICE = 64  # images predicted by rows that do not measure the full split

# A device name a user types -> the runtime's own device name.
DEVICE_ALIASES = {
    "coreml": {"cpu": "cpu_only", "gpu": "cpu_and_gpu", "ane": "cpu_and_ne", "npu": "cpu_and_ne", "neural_engine": "cpu_and_ne"},
    "onnxruntime": {"gpu": "cuda"},
    "pytorch": {"gpu": "cuda"},
}


@dataclass
class BenchConfig:
    """What to benchmark. ``runtimes=None`` means every registered runtime (absent ones become skipped rows)."""

    runtimes: Sequence[str] | None = None
    devices: Sequence[str] = ("cpu",)
    batches: Sequence[int] = (1, 64)
    threads: Sequence[int] = (1, 2)
    timing: TimingConfig = field(default_factory=TimingConfig)
    data_dir: str | None = None
    sample: bool | str = "auto"
    label: str | None = None
    row_timeout_s: float = 300.0
    precisions: Sequence[str] | None = None  # only these artifact precisions (None: all)
    images: str | None = None  # labelled image files (class folders or CSV): a real-image accuracy column per artifact

    def to_dict(self) -> dict[str, Any]:
        return {
            "runtimes": list(self.runtimes) if self.runtimes else None,
            "devices": list(self.devices),
            "batches": list(self.batches),
            "threads": list(self.threads),
            "timing": self.timing.to_dict(),
            "row_timeout_s": self.row_timeout_s,
            "images": self.images,
            "parity_slice_images": PARITY_SLICE,
            "tolerances": {k: dict(v) for k, v in THRESHOLDS.items()},
        }


@dataclass
class Artifact:
    """One benchable file of a run: the checkpoint (PyTorch) or an entry of export/manifest.json."""

    path: Path
    target: str
    precision: str
    runtime: str
    label: str  # short name for tables, e.g. "onnx int8"
    manifest_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def size_bytes(self) -> int | None:
        """Bytes on disk: the checkpoint for PyTorch, .xml + .bin for OpenVINO, the whole .mlpackage folder."""
        from edgeblood.manifest import artifact_size

        p = self.path / "checkpoint.pt" if self.runtime == "pytorch" and self.path.is_dir() else self.path
        return artifact_size(p) if p.exists() else None


# --------------------------------------------------------------------------------------- artifacts
def run_artifacts(run) -> list[Artifact]:
    """The run's checkpoint plus everything its export manifest lists, in manifest order."""
    from edgeblood.manifest import load_manifest
    from edgeblood.runtimes import runtime_for_artifact

    arts = [Artifact(path=run.dir, target="pytorch", precision="fp32", runtime="pytorch", label="pytorch fp32")]
    entries = load_manifest(run.export_dir)["artifacts"] if run.export_dir.is_dir() else []
    for entry in entries:
        rel = entry.get("path")
        if not rel:
            continue
        path = run.export_dir / rel
        if entry.get("variant") == "capture":
            continue  # whole frames in (uint8 NHWC, any size): checked on captures at export, not on the test arrays
        try:
            runtime = entry.get("runtime") or runtime_for_artifact(path).name
        except EdgebloodError:
            continue  # a file no runtime reads is not a bench row
        target = str(entry.get("target") or path.suffix.lstrip("."))
        precision = str(entry.get("precision") or "fp32")
        variant = entry.get("variant") or entry.get("method")
        label = f"{target} {precision}" + (f" {variant}" if variant else "")
        arts.append(Artifact(path=path, target=target, precision=precision, runtime=runtime, label=label,
                             manifest_sha256=entry.get("sha256"), extra={"parity": entry.get("parity")}))
    seen: dict[str, int] = {}
    for a in arts:
        seen[a.label] = seen.get(a.label, 0) + 1
    for a in arts:  # two entries with the same target/precision (e.g. static and dynamic int8): name the file
        if seen[a.label] > 1:
            a.label = f"{a.label} ({a.path.name})"
    return arts


def require_artifacts(run) -> list[Artifact]:
    """``run_artifacts``, or the one-line error that offers to export when the run has none."""
    artifacts = run_artifacts(run)
    if len(artifacts) == 1:
        raise EdgebloodError(
            f"{run.dir} has no exported artifacts (no entries in {run.export_dir / MANIFEST}); "
            f"export them first with `edgeblood export {run.dir} --target all` (or add --export to `edgeblood bench`)"
        )
    return artifacts


def sha256_mismatch(art: Artifact) -> bool:
    """True when the file on disk is not the one export/manifest.json recorded (changed or corrupt)."""
    from edgeblood.manifest import artifact_sha256

    if not art.manifest_sha256 or not art.path.exists():
        return False
    return artifact_sha256(art.path) != art.manifest_sha256


# ------------------------------------------------------------------------------------------ planning
@dataclass
class Planned:
    row: dict[str, Any]
    artifact: Artifact | None = None
    full_eval: bool = False
    group: tuple = ()


def plan_rows(run, artifacts: list[Artifact], config: BenchConfig, machine_label: str) -> list[Planned]:
    """Expand artifacts x runtimes x devices x threads x batches; unusable combinations become skipped rows."""
    from edgeblood.runtimes import get_runtime, list_runtimes

    wanted = [get_runtime(r).name for r in config.runtimes] if config.runtimes else list_runtimes()
    batches = sorted(set(int(b) for b in config.batches))
    threads = sorted(set(int(t) for t in config.threads))
    if not batches or min(batches) < 1 or not threads or min(threads) < 1:
        raise EdgebloodError("--batch and --threads take positive integers, e.g. --batch 1,64 --threads 1,2")
    planned: list[Planned] = []
    for rt_name in wanted:
        runtime = get_runtime(rt_name)
        arts = [a for a in artifacts if a.runtime == rt_name]
        if config.precisions:
            arts = [a for a in arts if a.precision in config.precisions]
        base = {"machine": machine_label, "run": run.name, "model": run.model_name, "runtime": rt_name}
        if not arts:
            planned.append(Planned(_row(base, None, device="-", status=SKIPPED,
                                        reason=f"no {rt_name} artifact in {run.export_dir}; "
                                               f"export one with `edgeblood export {run.dir} --target {_target_hint(rt_name)}`")))
            continue
        ok, why = runtime.available()
        available_devices = runtime.devices() if ok else []
        for art in arts:
            for dev_req in config.devices:
                device = "all" if dev_req == "all" else DEVICE_ALIASES.get(rt_name, {}).get(dev_req.lower(), dev_req.lower())
                devices = available_devices if device == "all" else [device]
                if not ok:
                    planned.append(Planned(_row(base, art, device=device, status=SKIPPED, reason=why), art))
                    continue
                for dev in devices:
                    if dev not in available_devices:
                        reason = f"device '{dev}' not available to {rt_name} here (available: {', '.join(available_devices) or 'none'})"
                        planned.append(Planned(_row(base, art, device=dev, status=SKIPPED, reason=reason), art))
                        continue
                    # Core ML has no thread knob; GPUs/NPUs are not driven by CPU threads (and OpenVINO
                    # rejects a CPU thread count for them): one row per batch with the runtime's default.
                    thread_list: list[int | None] = list(threads) if (dev == "cpu" and rt_name != "coreml") else [None]
                    group = (art.path, rt_name, dev)
                    for t in thread_list:
                        for b in batches:
                            full = (t == thread_list[-1]) and (b == batches[-1])
                            planned.append(Planned(_row(base, art, device=dev, threads=t, batch=b), art, full, group))
    return planned


def _target_hint(runtime: str) -> str:
    from edgeblood.targets import target_for_runtime

    target = target_for_runtime(runtime)
    return target.name if target is not None else "all"


def _row(base: dict, art: Artifact | None, *, device: str, threads: int | None = None, batch: int | None = None,
         status: str | None = None, reason: str | None = None) -> dict[str, Any]:
    row = dict(base)
    row.update({
        "artifact": _display_path(art.path) if art else None,
        "variant": art.label if art else None,
        "target": art.target if art else None,
        "precision": art.precision if art else None,
        "device": device,
        "threads": threads,
        "batch": batch,
        "status": status,
        "reason": reason,
        "split": SPLIT,
    })
    row["id"] = "/".join(str(x) for x in (row["machine"], row["run"], row["variant"] or "-", row["runtime"], device,
                                           f"t{threads}" if threads else "t-", f"b{batch}" if batch else "b-"))
    return row


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------------- running
ProgressFn = Callable[[dict[str, Any], int, int], None]


def bench_runs(run_dirs: Sequence[Any], config: BenchConfig | None = None, *,
               progress: ProgressFn | None = None, before_row: ProgressFn | None = None) -> dict[str, Any]:
    """Benchmark every artifact of every run (run directories or opened ``Run``s); return the report
    (see report.schema.json). ``before_row``/``progress`` are called with (row, rows done, rows in all)."""
    from edgeblood import __version__
    from edgeblood.provenance import command_line, git_commit, utc_now
    from edgeblood.runs import Run, open_run

    config = config or BenchConfig()
    runs = [d if isinstance(d, Run) else open_run(d) for d in run_dirs]
    if not runs:
        raise EdgebloodError("no run directories given; pass one or more runs/<name> folders")
    machine = machine_info(config.label)
    prepared = []
    for run in runs:
        artifacts = require_artifacts(run)
        prepared.append((run, artifacts, plan_rows(run, artifacts, config, machine["label"])))
    total = sum(len(p) for _, _, p in prepared)
    done = 0
    rows: list[dict[str, Any]] = []
    run_entries: list[dict[str, Any]] = []
    notes: list[str] = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeblood-bench-") as tmp:
        for run, artifacts, planned in prepared:
            data = _load_test_split(run, config, notes)
            data_path = Path(tmp) / f"{run.name}-test.npz"
            np.savez(data_path, images=data["images"])
            ref = _reference(run, data)
            run_entries.append(_run_entry(run, data, ref, machine["label"]))
            if config.images:
                data["real"] = _load_real_images(run, config.images, Path(tmp) / f"{run.name}-images.npz")
                run_entries[-1]["images"] = {k: v for k, v in data["real"].items() if k not in ("labels", "path")}
            changed = {art.path for art in artifacts if sha256_mismatch(art)}
            for art in artifacts:
                if art.path in changed:
                    notes.append(f"{_display_path(art.path)}: sha256 differs from export/manifest.json (file changed or corrupt since export)")
                if (art.extra.get("parity") or {}).get("status") == "failed":
                    notes.append(f"{_display_path(art.path)}: failed its parity check at export time (see export/manifest.json)")
            group_failures: dict[tuple, str] = {}
            group_accuracy: dict[tuple, dict] = {}
            order = sorted(range(len(planned)), key=lambda i: not planned[i].full_eval)  # accuracy rows first
            results: dict[int, dict[str, Any]] = {}
            for i in order:
                p = planned[i]
                if before_row:
                    before_row(p.row, done, total)
                if p.row["status"] is None:
                    if p.group in group_failures:
                        p.row.update(status=FAILED, reason=group_failures[p.group])
                    else:
                        _execute(p, run, data, data_path, ref, config, machine, Path(tmp), i)
                        if p.row["status"] == FAILED and p.artifact.path in changed:
                            p.row["reason"] += "; its sha256 differs from export/manifest.json (changed or corrupt since export): re-export it"
                        if p.row["status"] == FAILED and p.row.pop("_stage", None) == "load":
                            group_failures[p.group] = p.row["reason"]
                        if p.full_eval and p.row.get("accuracy") is not None:
                            group_accuracy[p.group] = {k: p.row.get(k) for k in ("accuracy", "macro_f1", "n_images", "images_accuracy", "images_n")} | {
                                "measured_at": {"threads": p.row["threads"], "batch": p.row["batch"]},
                                "verdict": (p.row["status"], p.row["reason"])}
                p.row.pop("_stage", None)
                results[i] = p.row
                done += 1
                if progress:
                    progress(p.row, done, total)
            _remeasure_disturbed(planned, results, run, data, data_path, ref, config, machine, Path(tmp), notes)
            for i, p in enumerate(planned):
                row = results[i]
                acc = group_accuracy.get(p.group)
                if not p.full_eval and row["status"] in (OK, MISMATCH) and acc:
                    row.update(accuracy=acc["accuracy"], macro_f1=acc["macro_f1"], n_images=acc["n_images"],
                               accuracy_measured_at=acc["measured_at"], images_accuracy=acc["images_accuracy"], images_n=acc["images_n"])
                    status, reason = acc["verdict"]
                    if status == MISMATCH and row["status"] == OK:  # the artifact's accuracy verdict holds for every row of it
                        row.update(status=MISMATCH, reason=f"{reason} (full split at {acc['measured_at']['threads']} thread(s), "
                                                           f"batch {acc['measured_at']['batch']})")
                rows.append(_finish(row, p.artifact, run))
    mark_pareto(rows)
    add_comparisons(rows, run_entries)
    looped = sorted({r["runtime"] for r in rows if r.get("latency_input_shape") == "batch-1 calls"})
    if looped:
        notes.append(f"{', '.join(looped)}: artifacts of fixed batch sizes (1 and 64); a row of another batch is timed as that many "
                     "batch-1 calls (latency_input_shape 'batch-1 calls')")
    static = sorted({r["runtime"] for r in rows if r.get("latency_input_shape") == "static"})
    if static:
        notes.append(f"{', '.join(static)}: latency and throughput are timed on the model compiled (OpenVINO) or exported "
                     "(LiteRT signatures, ExecuTorch methods) for the row's batch, as an app serving that batch deploys it; accuracy "
                     "comes from predicting the whole split (OpenVINO: the dynamic-batch model; LiteRT/ExecuTorch: batches of 64, the rest one by one)")
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


def _load_test_split(run, config: BenchConfig, notes: list[str]) -> dict[str, Any]:
    """The full test split at the run's input size: the data the run was trained on when it is here."""
    from edgeblood.data import load_bloodmnist
    from edgeblood.data.image_folder import is_folder_dataset, load_folder_for_run

    if is_folder_dataset(run.metadata.get("dataset")):
        ds = load_folder_for_run(run.metadata)
        return {"images": ds.images(SPLIT), "labels": ds.labels(SPLIT), "dataset": ds.metadata(), "describe": ds.describe()}
    trained_on = (run.metadata.get("dataset") or {}).get("source")
    sample = True if (config.sample is True or trained_on == "sample") else config.sample
    ds = load_bloodmnist(run.in_size, config.data_dir, sample=sample)
    if ds.is_sample and trained_on == "full":
        notes.append(f"{run.name}: trained on full BloodMNIST but the full file was not found here; accuracy is on the embedded sample ({ds.describe()})")
    return {"images": ds.images(SPLIT), "labels": ds.labels(SPLIT), "dataset": ds.metadata(), "describe": ds.describe()}


def _load_real_images(run, source: str, out: Path) -> dict[str, Any]:
    """Frame a folder (or CSV) of labelled images with the run's framing once; every accuracy row predicts them."""
    from edgeblood.data.labelled_images import load_framed, read_labelled_images

    items = read_labelled_images(source, run.classes, run.metadata.get("class_names_full"))
    images, labels, kept, skipped = load_framed(items, run.in_size, run.framing)
    np.savez(out, images=images)
    return {"path": str(out), "labels": labels, "source": str(items.root), "files": len(kept), "skipped": len(skipped),
            "framing": run.framing.describe()}


def _reference(run, data: dict[str, Any]) -> dict[str, Any]:
    """PyTorch fp32 probabilities of the run's checkpoint on the full split: what every row is compared with."""
    from edgeblood.evaluation.metrics import accuracy_and_macro_f1
    from edgeblood.evaluation.predict import predict_probs

    probs = predict_probs(run.model, data["images"], run.mean, run.std, batch_size=256)
    acc, f1 = accuracy_and_macro_f1(data["labels"], probs.argmax(1), len(run.classes))
    return {"probs": probs, "accuracy": acc, "macro_f1": f1}


def _run_entry(run, data: dict[str, Any], ref: dict[str, Any], machine_label: str) -> dict[str, Any]:
    meta = run.metadata
    return {
        "machine": machine_label,
        "name": run.name,
        "path": _display_path(run.dir),
        "model": run.model_name,
        "params": meta["model"].get("params"),
        "macs": meta["model"].get("macs"),
        "input_size": run.in_size,
        "trained_on": meta.get("dataset", {}),
        "evaluated_on": data["dataset"] | {"split": SPLIT, "images": int(len(data["labels"])), "describe": data["describe"]},
        "reference": {"runtime": "pytorch", "device": "cpu", "precision": "fp32", "split": SPLIT,
                      "accuracy": ref["accuracy"], "macro_f1": ref["macro_f1"]},
    }


def _remeasure_disturbed(planned: list[Planned], results: dict[int, dict], run, data, data_path: Path, ref, config: BenchConfig,
                         machine, tmp: Path, notes: list[str]) -> None:
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
        _execute(p, run, data, data_path, ref, config, machine, tmp, i)
        second = p.row.get("load") or {}
        if p.row["status"] not in (OK, MISMATCH) or (second.get("foreign_cores") or 0) >= (first["load"]["foreign_cores"] or 0):
            p.row.clear()
            p.row.update(first)
        p.row["load"] = {**p.row["load"], "remeasured": True, "first_foreign_cores": first["load"]["foreign_cores"]}
        still += load.is_disturbed(p.row["load"]["foreign_cores"])
        results[i] = p.row
    notes.append(f"machine load: {len(disturbed)} of {len(measured)} rows of {run.name} ran while other processes kept more than "
                 f"{load.DISTURBED_CORES:g} cores busy (worst {worst:.2f}); each was measured again after the others and the quieter "
                 f"measurement kept; {still} still disturbed (column 'load' in report.json) - compare their ratios with care")


def _execute(p: Planned, run, data, data_path: Path, ref, config: BenchConfig, machine, tmp: Path, index: int) -> None:
    """Run one row in a worker process and fill in its measurements and status."""
    row, art = p.row, p.artifact
    n = len(data["labels"])
    job = {
        "artifact": str(art.path), "runtime": row["runtime"], "device": row["device"], "threads": row["threads"],
        "batch": row["batch"], "data": str(data_path),
        "eval_images": None if p.full_eval else min(n, max(PARITY_SLICE, 2 * row["batch"])),
        "probs_out": str(tmp / f"probs-{index}.npy"), "result": str(tmp / f"result-{index}.json"),
        "real_data": data["real"]["path"] if (p.full_eval and data.get("real")) else None,
        "real_probs_out": str(tmp / f"real-probs-{index}.npy"),
        "timing": config.timing.to_dict(),
    }
    job_path = tmp / f"job-{index}.json"
    job_path.write_text(json.dumps(job))
    env = dict(os.environ)
    if row["threads"]:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(row["threads"])
    result_path = Path(job["result"])
    before = load.snapshot()
    try:
        proc = subprocess.run([sys.executable, "-m", "edgeblood.bench.worker", str(job_path)], env=env,
                              capture_output=True, text=True, timeout=config.row_timeout_s)
        after = load.snapshot()
        row["load"] = {"foreign_cores": load.foreign_cores(before, after), "loadavg_1m": after.loadavg_1m}
    except subprocess.TimeoutExpired:
        row.update(status=FAILED, reason=f"timed out after {config.row_timeout_s:.0f} s")
        return
    if not result_path.is_file():
        tail = [line for line in (proc.stderr or "").strip().splitlines() if line.strip()][-1:] or ["no output"]
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
        row.update(status=FAILED, reason=f"worker crashed ({how}): {tail[0][:300]}")
        return
    result = json.loads(result_path.read_text())
    if not result.get("ok"):
        row.update(status=FAILED, reason=result.get("error") or "unknown error", _stage=result.get("stage"))
        return
    probs = np.load(job["probs_out"])
    _judge(row, art, probs, data, ref, p.full_eval, len(run.classes))
    if job["real_data"]:  # the real-image accuracy, by this artifact's own runtime
        real = np.load(job["real_probs_out"])
        row.update(images_accuracy=float((real.argmax(1) == data["real"]["labels"]).mean()), images_n=int(len(real)))
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
    macs = run.metadata["model"].get("macs")
    seconds = lat["p50_ms"] / 1000.0
    gmacs = achieved_gmacs(macs, row["batch"], seconds)
    row["gmacs"] = round(gmacs, 2) if gmacs is not None else None
    if row["device"] == "cpu":
        peak_precision = "int8" if precision_class(art.precision) == "quantized" and "int8" in art.precision.lower() else "fp32"
        peak, basis = peak_gmacs(machine["cpu"], peak_precision, int(row["threads"] or 1))
    else:
        peak, basis = None, f"no peak model for device '{row['device']}'"
    row["peak_gmacs"], row["peak_basis"] = peak, basis
    row["peak_fraction"] = round(gmacs / peak, 4) if (gmacs and peak) else None


def _judge(row: dict, art: Artifact, probs: np.ndarray, data, ref, full_eval: bool, num_classes: int) -> None:
    """Compare a row's probabilities with the PyTorch reference; set accuracy (full split) and status."""
    from edgeblood.evaluation.metrics import accuracy_and_macro_f1
    from edgeblood.parity import ParityData, compare, thresholds_for

    n = len(probs)
    ref_probs = ref["probs"][:n]
    if probs.ndim != 2 or probs.shape[1] != ref_probs.shape[1]:
        row.update(status=MISMATCH, reason=f"output shape {list(probs.shape)} but the reference is [N, {ref_probs.shape[1]}]", n_images=n)
        return
    reference = ParityData(images=None, labels=np.asarray(data["labels"][:n]), reference=ref_probs, split=SPLIT, source="", description="")
    result = compare(probs, reference, thresholds_for(art.precision), check_accuracy=full_eval)
    row.update(agreement=round(result.agreement, 6), max_abs_diff=result.max_abs_diff, parity_images=n)
    if full_eval:
        acc, f1 = accuracy_and_macro_f1(data["labels"][:n], probs.argmax(1), num_classes)
        row.update(accuracy=acc, macro_f1=f1, n_images=n, accuracy_measured_at={"threads": row["threads"], "batch": row["batch"]})
    if result.status == MISMATCH:
        row.update(status=MISMATCH, reason=f"{result.reason} [threshold for {precision_class(art.precision)}]")
    else:
        row.update(status=OK, reason=None)


def _finish(row: dict, art: Artifact | None, run) -> dict[str, Any]:
    """Fill in the static columns and give every row the same keys (null where not measured)."""
    meta = run.metadata["model"]
    row.setdefault("size_bytes", art.size_bytes() if art else None)
    row.setdefault("params", meta.get("params"))
    row.setdefault("macs", meta.get("macs"))
    for key in ROW_KEYS:
        row.setdefault(key, None)
    row["pareto"] = False
    return {k: row[k] for k in ROW_KEYS}


ROW_KEYS = (
    "id", "machine", "run", "model", "variant", "artifact", "target", "precision", "runtime", "device", "threads", "batch",
    "status", "reason", "split", "accuracy", "macro_f1", "n_images", "accuracy_measured_at", "agreement", "max_abs_diff",
    "parity_images", "latency_ms", "throughput_ips", "latency_input_shape", "load_s", "peak_rss_mb", "runtime_rss_mb", "baseline_rss_mb",
    "size_bytes", "params", "macs", "gmacs", "peak_gmacs", "peak_fraction", "peak_basis", "pareto",
    "accuracy_delta", "speedup_vs_pytorch", "images_accuracy", "images_n", "kernels", "load",
)


# ------------------------------------------------------------------------------------ pareto, sorting
def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (latency, accuracy) points: True where no other point is at least as fast and as accurate
    and strictly better in one of the two."""
    return [
        not any(lo <= lat and ao >= acc and (lo < lat or ao > acc) for j, (lo, ao) in enumerate(points) if j != i)
        for i, (lat, acc) in enumerate(points)
    ]


def mark_pareto(rows: list[dict[str, Any]]) -> None:
    """Mark ok batch-1 rows on the accuracy-vs-p50-latency Pareto front of their machine."""
    by_machine: dict[str, list[dict]] = {}
    for r in rows:
        r["pareto"] = False
        if r["status"] == OK and r["batch"] == 1 and r["accuracy"] is not None and r["latency_ms"]:
            by_machine.setdefault(r["machine"], []).append(r)
    for cands in by_machine.values():
        for r, on_front in zip(cands, pareto_front([(c["latency_ms"]["p50"], c["accuracy"]) for c in cands])):
            r["pareto"] = on_front


def add_comparisons(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> None:
    """Ratios within one bench (what the README quotes): accuracy change vs the run's PyTorch fp32
    reference, and speed-up vs the PyTorch fp32 row on the same machine, device, threads and batch."""
    ref_acc = {(r["machine"], r["name"]): r["reference"]["accuracy"] for r in runs}
    torch_p50 = {
        (r["machine"], r["run"], r["device"], r["threads"], r["batch"]): r["latency_ms"]["p50"]
        for r in rows if r["runtime"] == "pytorch" and r["status"] == OK and r["latency_ms"]
    }
    for r in rows:
        acc0 = ref_acc.get((r["machine"], r["run"]))
        r["accuracy_delta"] = None if r["accuracy"] is None or acc0 is None else round(r["accuracy"] - acc0, 6)
        base = torch_p50.get((r["machine"], r["run"], r["device"], r["threads"], r["batch"]))
        if base is None and r["device"] != "cpu":  # e.g. a Core ML/ANE row: compare with PyTorch on the CPU
            base = torch_p50.get((r["machine"], r["run"], "cpu", r["threads"], r["batch"]))
        r["speedup_vs_pytorch"] = round(base / r["latency_ms"]["p50"], 3) if base and r["latency_ms"] else None


def sort_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Machine, then batch, then measured rows by p50 latency (fastest first), then mismatched/failed/skipped."""
    def key(r):
        lat = r["latency_ms"]["p50"] if r["latency_ms"] else float("inf")
        return (r["machine"], r["batch"] or 10**9, STATUSES.index(r["status"]) if r["status"] in (FAILED, SKIPPED) else 0, lat, r["id"])

    return sorted(rows, key=key)
