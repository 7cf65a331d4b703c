"""Interleaved batch-1 latency of a run's PyTorch model vs every fp32/int8 artifact in its manifest, in one process.

On a noisy machine, rows measured one after another (as `edgeblood bench` does, one subprocess per
row) can land in different load phases. Alternating short rounds of each runtime puts every round
under the same load and gives a per-round ratio. The technique lives in edgeblood.bench.interleave
(`edgeblood bench` uses it for its headline: the fastest ok artifact vs PyTorch); this script times
every artifact at once, with the bench's own runtime adapters and timed calls (batch 1; OpenVINO on
the model compiled for batch 1, LiteRT/ExecuTorch on their batch-1 signature/method). Artifacts come
from export/manifest.json, so a new target's files are timed with no change here.

    python scripts/interleaved_latency.py runs/se-cnn-28 [ROUNDS] [THREADS]
"""

from __future__ import annotations

import sys

import numpy as np

from edgeblood.bench.interleave import BASELINE, InterleaveConfig, interleave
from edgeblood.runs import open_run
from edgeblood.runtimes import get_runtime


def main(run: str, rounds: int = 15, threads: int = 1, calls: int = 400) -> None:
    models = {BASELINE: get_runtime("pytorch").load(run, threads=threads)}
    opened = open_run(run)
    for entry in opened.manifest()["artifacts"]:
        if entry.get("variant") == "capture" or entry.get("precision") not in ("fp32", "int8") or entry["runtime"] == "coreml":
            continue
        name = f"{entry['runtime']} {entry['precision']} {entry.get('variant', '')}".strip()
        try:
            models[name] = get_runtime(entry["runtime"]).load(opened.export_dir / entry["path"], threads=threads)
        except Exception as exc:  # a runtime that is not installed is skipped, with the reason
            print(f"{name}: skipped ({exc})")
    size = models[BASELINE].input_size or 28
    x = (np.random.default_rng(0).random((1, 3, size, size)) * 255).astype(np.float32)
    fns = {name: (lambda fn: lambda: fn(x))(model.timed_call(1)[0]) for name, model in models.items()}
    timed = interleave(fns, InterleaveConfig(rounds=rounds, calls=calls))
    for name in fns:
        ratio = np.asarray(timed.ratios(BASELINE, name))
        print(f"{name:34s} p50 {timed.p50_ms(name):.4f} ms | x pytorch per round: median {np.median(ratio):.2f} "
              f"[{ratio.min():.2f}-{ratio.max():.2f}] ({timed.rounds} rounds x {timed.calls_per_round} calls, {threads} thread(s), batch 1)")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], *(int(a) for a in sys.argv[2:4]))
