"""One benchmark row in its own process: ``python -m edgeblood.bench.worker JOB.json``.

Running each (artifact, runtime, device, threads, batch) in a fresh process makes the peak RSS the
runtime's own (nothing left over from other rows), pins thread settings that are process-wide
(``torch.set_num_threads``, OpenMP pools), and turns a crash inside a runtime into one failed row
instead of a dead benchmark.

The job file names the artifact, the runtime and the test images (an .npz written by the parent);
the worker writes the probabilities it predicted to ``probs_out`` (.npy) and its measurements to
``result`` (JSON). Accuracy and parity are computed by the parent from those probabilities, so the
worker imports nothing but numpy, psutil and the one runtime it benchmarks.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    """This process's peak RSS. On Linux VmHWM (reset by exec), because ru_maxrss of a forked child
    starts from the parent's high-water mark and would report the bench parent's memory instead."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def run_job(job: dict[str, Any], state: dict[str, str] | None = None) -> dict[str, Any]:
    """Load the artifact, predict the requested images at the row's batch size, time the batch call.

    ``state["stage"]`` says how far it got (load / predict / time) when something raises.
    """
    state = {} if state is None else state
    state["stage"] = "setup"
    from edgeblood.bench.measure import TimingConfig, measure_latency
    from edgeblood.runtimes import get_runtime, to_model_input

    batch = int(job["batch"])
    with np.load(job["data"], allow_pickle=False) as npz:
        images = npz["images"]
    n_eval = len(images) if job.get("eval_images") is None else min(int(job["eval_images"]), len(images))
    # The latency input is prepared before anything is timed (tiled when the split is smaller than a batch).
    reps = -(-batch // len(images))
    x_timed = to_model_input(np.concatenate([images] * reps)[:batch] if reps > 1 else images[:batch])

    baseline_rss = _rss_mb()  # python + numpy + the test images, before the runtime is imported or loaded
    state["stage"] = "load"
    runtime = get_runtime(job["runtime"])
    t0 = time.perf_counter()
    model = runtime.load(job["artifact"], device=job["device"], threads=job.get("threads"))
    load_total_s = time.perf_counter() - t0

    state["stage"] = "predict"
    # Predictions at the row's own batch size (exercises the dynamic batch, including a ragged last one).
    t0 = time.perf_counter()
    chunks = [model.predict(to_model_input(images[i : i + batch]), chunk=batch) for i in range(0, n_eval, batch)]
    probs = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    eval_s = time.perf_counter() - t0
    np.save(job["probs_out"], probs.astype(np.float32, copy=False))
    if job.get("real_data"):  # labelled image files, framed by the runner (bench --images)
        with np.load(job["real_data"], allow_pickle=False) as npz:
            real = npz["images"]
        real_probs = [model.predict(to_model_input(real[i : i + batch]), chunk=batch) for i in range(0, len(real), batch)]
        np.save(job["real_probs_out"], np.concatenate(real_probs).astype(np.float32, copy=False))

    state["stage"] = "time"
    timing = TimingConfig(**job.get("timing", {}))
    run_call, input_shape = model.timed_call(batch)  # the runtime's own inference call, nothing of edgeblood's around it
    if input_shape == "static":  # a second compiled model: it must predict what the dynamic one does
        fixed, dynamic = run_call(x_timed), model._run(x_timed)
        if np.abs(fixed - dynamic).max() > 0.02 or (fixed.argmax(1) != dynamic.argmax(1)).any():
            raise RuntimeError("the model compiled for a static batch disagrees with the dynamic-batch one")
    stats = measure_latency(lambda: run_call(x_timed), batch=batch, config=timing)
    return {
        "ok": True,
        "load_s": round(float(model.load_seconds), 6),
        "load_total_s": round(load_total_s, 6),
        "eval_images": int(n_eval),
        "eval_s": round(eval_s, 4),
        "latency": stats.to_dict(),
        "latency_input_shape": input_shape,
        "baseline_rss_mb": round(baseline_rss, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "threads_effective": model.threads,
        "kernels": model.kernels(),
        "artifact_metadata": _small(model.metadata()),
    }


def _small(meta: dict[str, Any]) -> dict[str, Any]:
    """Keep the artifact's self-described identity (not its whole config) for the report."""
    keys = ("model", "model_name", "precision", "target", "source_run", "edgeblood_version")
    return {k: meta[k] for k in keys if k in meta and isinstance(meta[k], (str, int, float))}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m edgeblood.bench.worker JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    state: dict[str, str] = {}
    try:
        result = run_job(job, state)
        code = 0
    except Exception as exc:  # any failure becomes this row's reason; the parent keeps going
        from edgeblood.errors import EdgebloodError

        lines = str(exc).strip().splitlines() or [""]
        reason = lines[0] if isinstance(exc, EdgebloodError) else f"{type(exc).__name__}: {lines[0]}"
        result = {"ok": False, "error": reason[:400], "stage": state.get("stage"), "traceback": traceback.format_exc()[-4000:]}
        code = 1
    Path(job["result"]).write_text(json.dumps(result))
    return code


if __name__ == "__main__":
    sys.exit(main())
