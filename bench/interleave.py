"""Interleaved A/B latency: the ratio of two runtimes taken under the same conditions.

Rows measured one after another (one worker process per row) can land in different load phases of
a shared machine, so the ratio of two rows mixes the runtimes' speed with the machine's mood. Here
the runtimes are loaded in ONE process with the same thread count and alternated round by round at
batch 1: each round warms a runtime up, times a fixed number of calls and keeps their median; each
round's ratio is taken between medians measured seconds apart, and the headline is the median of the
per-round ratios, reported with their range.

``interleave`` is the technique (used by ``scripts/interleaved_latency.py`` too);
``interleaved_headline`` picks the fastest ok artifact of a bench and times it against PyTorch eager
fp32 in a fresh ``python -m edgeblood.bench.interleave JOB.json`` process.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

BASELINE = "pytorch fp32"  # PyTorch eager on the run's checkpoint: what every speed-up in the report is relative to


@dataclass(frozen=True)
class InterleaveConfig:
    """How many rounds, and how long each runtime runs in one round (which sets the calls per round)."""

    rounds: int = 15
    round_s: float = 0.2  # timed calls of one runtime in one round, in seconds (calls = round_s / the slower call)
    warmup_calls: int = 50  # untimed calls at the start of every round (caches and thread pools after the switch)
    calls: int | None = None  # a fixed number of timed calls per round instead of round_s
    min_calls: int = 10

    @classmethod
    def quick(cls) -> "InterleaveConfig":
        return cls(rounds=5, round_s=0.03, warmup_calls=5)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Interleaved:
    """Per-round medians (ms) of every runtime, in the order they were alternated."""

    round_medians_ms: dict[str, list[float]]
    rounds: int
    calls_per_round: int
    warmup_calls: int

    def ratios(self, base: str, other: str) -> list[float]:
        """``base`` time / ``other`` time per round: how many times faster ``other`` was in each round."""
        return [round(b / o, 6) for b, o in zip(self.round_medians_ms[base], self.round_medians_ms[other])]

    def p50_ms(self, name: str) -> float:
        return round(statistics.median(self.round_medians_ms[name]), 6)


def interleave(calls: dict[str, Callable[[], Any]], config: InterleaveConfig = InterleaveConfig()) -> Interleaved:
    """Alternate ``calls`` (name -> one batch-1 inference on a prepared input) round by round."""
    if config.rounds < 1 or not calls:
        raise ValueError("interleave needs at least one round and one call")
    per_call_s = {name: _warm_up(fn, max(config.warmup_calls, 3)) for name, fn in calls.items()}
    n_calls = config.calls or max(config.min_calls, math.ceil(config.round_s / max(max(per_call_s.values()), 1e-7)))
    medians: dict[str, list[float]] = {name: [] for name in calls}
    clock = time.perf_counter_ns
    for _ in range(config.rounds):
        for name, fn in calls.items():
            for _ in range(config.warmup_calls):
                fn()
            times = np.empty(n_calls, dtype=np.int64)
            for i in range(n_calls):
                t0 = clock()
                fn()
                times[i] = clock() - t0
            medians[name].append(round(float(np.median(times)) / 1e6, 6))
    return Interleaved(round_medians_ms=medians, rounds=config.rounds, calls_per_round=n_calls, warmup_calls=config.warmup_calls)


def _warm_up(fn: Callable[[], Any], n: int) -> float:
    """Seconds per call after ``n`` untimed-for-the-result calls (the median of their times)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


# ------------------------------------------------------------------------------------- the bench headline
def pick_pair(rows: list[dict[str, Any]]) -> tuple[dict | None, dict | None, str | None]:
    """(the PyTorch fp32 row, the fastest other ok artifact's row, why not) among a run's batch-1 CPU rows,
    both at the smallest thread count PyTorch was measured at."""
    from edgeblood.parity import OK

    cpu = [r for r in rows if r["batch"] == 1 and r["device"] == "cpu"]
    torch_rows = [r for r in cpu if r["runtime"] == "pytorch" and r["precision"] == "fp32"]
    torch_ok = [r for r in torch_rows if r["status"] == OK and r["latency_ms"]]
    if not torch_ok:
        if torch_rows:
            how = f"{torch_rows[0]['status']}: {torch_rows[0]['reason']}"
        elif any(r["runtime"] == "pytorch" and r["batch"] is not None for r in rows):
            how = "no batch-1 CPU row; add 1 to --batch"
        else:
            how = f"{next((r['status'] + ': ' + r['reason'] for r in rows if r['runtime'] == 'pytorch'), 'not benchmarked')}; add pytorch to --runtimes"
        return None, None, f"PyTorch fp32 has no ok batch-1 CPU row ({how})"
    base = min(torch_ok, key=lambda r: r["threads"] or 0)
    others = [r for r in cpu if r["status"] == OK and r["latency_ms"] and r["threads"] == base["threads"] and r["id"] != base["id"]]
    if not others:
        return base, None, f"no other artifact has an ok batch-1 CPU row at {base['threads']} thread(s)"
    return base, min(others, key=lambda r: r["latency_ms"]["p50"]), None


def interleaved_headline(rows: list[dict[str, Any]], artifacts: dict[str, str], data_path: Path, tmp: Path,
                         config: InterleaveConfig, timeout_s: float) -> dict[str, Any]:
    """The fastest ok artifact of a run against PyTorch eager fp32, interleaved in one worker process.

    ``artifacts`` maps a row's variant label to the file (or run folder) its runtime loads."""
    from edgeblood.bench import load
    from edgeblood.parity import FAILED, OK, SKIPPED

    base, fast, why = pick_pair(rows)
    if fast is None:
        return {"status": SKIPPED, "reason": why}
    record: dict[str, Any] = {
        "status": None, "reason": None, "baseline": base["variant"], "variant": fast["variant"], "runtime": fast["runtime"],
        "artifact": fast["artifact"], "device": "cpu", "threads": base["threads"], "batch": 1,
        "non_interleaved_ratio": round(base["latency_ms"]["p50"] / fast["latency_ms"]["p50"], 3),  # the two rows' p50s
    }
    job = {"models": {"baseline": {"runtime": base["runtime"], "artifact": artifacts[base["variant"]]},
                      "artifact": {"runtime": fast["runtime"], "artifact": artifacts[fast["variant"]]}},
           "threads": base["threads"], "data": str(data_path), "config": config.to_dict(), "result": str(tmp / "interleaved.json")}
    job_path = tmp / "interleaved-job.json"
    job_path.write_text(json.dumps(job))
    env = dict(os.environ) | {var: str(base["threads"]) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    try:
        with load.LoadMeter() as meter:
            proc = subprocess.run([sys.executable, "-m", "edgeblood.bench.interleave", str(job_path)], env=env,
                                  capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return record | {"status": FAILED, "reason": f"timed out after {timeout_s:.0f} s"}
    record["load"] = meter.figures()
    result_path = Path(job["result"])
    result = json.loads(result_path.read_text()) if result_path.is_file() else {
        "ok": False, "error": ([ln for ln in proc.stderr.splitlines() if ln.strip()][-1:] or [f"exit code {proc.returncode}"])[0][:300]}
    if not result.get("ok"):
        return record | {"status": FAILED, "reason": result.get("error") or "unknown error"}
    timed = Interleaved(**result["interleaved"])
    ratios = timed.ratios("baseline", "artifact")
    return record | {
        "status": OK, "rounds": timed.rounds, "calls_per_round": timed.calls_per_round, "warmup_calls": timed.warmup_calls,
        "ratio": float(np.median(ratios)), "ratio_range": [min(ratios), max(ratios)], "round_ratios": ratios,
        "p50_ms": {"baseline": timed.p50_ms("baseline"), "artifact": timed.p50_ms("artifact")},
        "round_p50_ms": {"baseline": timed.round_medians_ms["baseline"], "artifact": timed.round_medians_ms["artifact"]},
    }


# ------------------------------------------------------------------------------------------ the worker
def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Load every model of the job with the same thread count, then interleave their batch-1 calls on one test image."""
    from edgeblood.runtimes import get_runtime, to_model_input

    with np.load(job["data"], allow_pickle=False) as npz:
        x = to_model_input(npz["images"][:1])
    calls = {}
    for name, spec in job["models"].items():
        model = get_runtime(spec["runtime"]).load(spec["artifact"], device="cpu", threads=job["threads"])
        fn = model.timed_call(1)[0]
        calls[name] = (lambda fn: lambda: fn(x))(fn)
    timed = interleave(calls, InterleaveConfig(**job["config"]))
    return {"ok": True, "interleaved": asdict(timed)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m edgeblood.bench.interleave JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    try:
        result, code = run_job(job), 0
    except Exception as exc:  # the headline fails with the reason; the rows already measured stand
        lines = str(exc).strip().splitlines() or [""]
        result, code = {"ok": False, "error": f"{type(exc).__name__}: {lines[0]}"[:400]}, 1
    Path(job["result"]).write_text(json.dumps(result))
    return code


if __name__ == "__main__":
    sys.exit(main())
