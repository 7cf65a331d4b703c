"""Timing one inference call so that the figure can be trusted.

``measure_latency`` times only the callable it is given (the runtime's own inference call on a
batch prepared beforehand), after a warm-up, in *blocks* of calls. It keeps adding blocks until the
medians of the last ``window`` blocks agree within ``spread_target`` (default 5 %), or until the
time budget runs out; the result says which (``converged``), so a noisy figure is never passed off
as a stable one. Percentiles come from the individual calls of the stable window.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TimingConfig:
    """How long to warm up and measure. ``quick()`` is for smoke tests and CI."""

    warmup_s: float = 0.3
    warmup_min_iters: int = 5
    block_s: float = 0.25  # target duration of one block of calls
    min_block_iters: int = 5
    window: int = 3  # blocks whose medians must agree
    spread_target: float = 0.05
    max_s: float = 3.0  # measurement budget per configuration (warm-up excluded)

    @classmethod
    def quick(cls) -> "TimingConfig":
        return cls(warmup_s=0.05, warmup_min_iters=2, block_s=0.04, min_block_iters=3, window=3, max_s=0.4)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LatencyStats:
    """Per-call latency of one configuration (milliseconds) and how it was obtained."""

    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    iterations: int  # calls in the stable window the statistics come from
    total_iterations: int  # all timed calls (warm-up excluded)
    blocks: int
    block_spread: float  # (max - min) / median of the window's block medians
    converged: bool
    warmup_iterations: int
    seconds: float

    @property
    def throughput_ips(self) -> float:
        """Images per second at this batch size, from the median call time."""
        return self.batch * 1000.0 / self.p50_ms if self.p50_ms > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["throughput_ips"] = round(self.throughput_ips, 2)
        for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "block_spread", "seconds"):
            d[key] = round(d[key], 6)
        return d


def measure_latency(call: Callable[[], Any], *, batch: int, config: TimingConfig = TimingConfig()) -> LatencyStats:
    """Time ``call()`` (which must run one inference on pre-prepared data) until block medians agree."""
    clock = time.perf_counter_ns
    start = time.perf_counter()
    # Warm-up: first calls allocate, JIT or pick kernels; they are never timed into the result.
    warm: list[int] = []
    while len(warm) < config.warmup_min_iters or (time.perf_counter() - start) < config.warmup_s:
        t0 = clock()
        call()
        warm.append(clock() - t0)
        if len(warm) >= 10_000:
            break
    per_call_s = max(float(np.median(warm)) / 1e9, 1e-7)
    block_iters = max(config.min_block_iters, int(math.ceil(config.block_s / per_call_s)))

    blocks: list[np.ndarray] = []
    t_measure = time.perf_counter()
    converged = False
    while True:
        samples = np.empty(block_iters, dtype=np.int64)
        for i in range(block_iters):
            t0 = clock()
            call()
            samples[i] = clock() - t0
        blocks.append(samples)
        if len(blocks) >= config.window:
            spread = _spread(blocks[-config.window :])
            if spread <= config.spread_target:
                converged = True
                break
        if time.perf_counter() - t_measure >= config.max_s and len(blocks) >= min(2, config.window):
            break
    window = blocks[-config.window :]
    ms = np.concatenate(window).astype(np.float64) / 1e6
    return LatencyStats(
        batch=batch,
        p50_ms=float(np.percentile(ms, 50)),
        p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)),
        mean_ms=float(ms.mean()),
        std_ms=float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
        min_ms=float(ms.min()),
        iterations=int(len(ms)),
        total_iterations=int(sum(len(b) for b in blocks)),
        blocks=len(blocks),
        block_spread=_spread(window),
        converged=converged,
        warmup_iterations=len(warm),
        seconds=time.perf_counter() - start,
    )


def _spread(blocks: list[np.ndarray]) -> float:
    medians = np.array([np.median(b) for b in blocks], dtype=np.float64)
    mid = float(np.median(medians))
    return float((medians.max() - medians.min()) / mid) if mid > 0 else 0.0


def achieved_gmacs(macs_per_image: int | None, batch: int, seconds_per_call: float) -> float | None:
    """Multiply-accumulates per second actually retired (GMAC/s) for one call on ``batch`` images."""
    if not macs_per_image or seconds_per_call <= 0:
        return None
    return macs_per_image * batch / seconds_per_call / 1e9
