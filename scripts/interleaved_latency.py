"""Interleaved batch-1 latency of a run's PyTorch model vs every fp32/int8 artifact in its manifest, in one process.

On a noisy machine, rows measured one after another (as `edgeblood bench` does, one subprocess per
row) can land in different load phases. Alternating short rounds of each runtime puts every round
under the same load and gives a per-round ratio. Uses the bench's own runtime adapters and timed
calls (1 thread, batch 1; OpenVINO on the model compiled for batch 1, LiteRT/ExecuTorch on their batch-1
signature/method). Artifacts come from export/manifest.json, so a new target's files are timed with no change here.

    python scripts/interleaved_latency.py runs/se-cnn-28 [ROUNDS]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from edgeblood.runs import open_run
from edgeblood.runtimes import get_runtime


def main(run: str, rounds: int = 15, calls: int = 400) -> None:
    models = {"pytorch fp32": get_runtime("pytorch").load(run, threads=1)}
    size = models["pytorch fp32"].input_size or 28
    for entry in open_run(run).manifest()["artifacts"]:
        if entry.get("variant") == "capture" or entry.get("precision") not in ("fp32", "int8") or entry["runtime"] == "coreml":
            continue
        name = f"{entry['runtime']} {entry['precision']} {entry.get('variant', '')}".strip()
        try:
            models[name] = get_runtime(entry["runtime"]).load(f"{run}/export/{entry['path']}", threads=1)
        except Exception as exc:  # a runtime that is not installed is skipped, with the reason
            print(f"{name}: skipped ({exc})")
    x = (np.random.default_rng(0).random((1, 3, size, size)) * 255).astype(np.float32)
    fns = {name: model.timed_call(1)[0] for name, model in models.items()}
    medians: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(50):
                fn(x)
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                fn(x)
                times.append(time.perf_counter() - t0)
            medians[name].append(float(np.median(times)) * 1e3)
    base = np.asarray(medians["pytorch fp32"])
    for name, values in medians.items():
        ratio = base / np.asarray(values)
        print(f"{name:34s} p50 {np.median(values):.4f} ms | x pytorch per round: median {np.median(ratio):.2f} "
              f"[{ratio.min():.2f}-{ratio.max():.2f}] ({rounds} rounds x {calls} calls, 1 thread, batch 1)")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 15)
