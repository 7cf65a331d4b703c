"""The ceiling a row's achieved GMAC/s is compared with: measured on this machine at bench start.

Why measured: the theoretical figure (ISA MACs per cycle x the clock /proc/cpuinfo reports) is wrong
in both directions on real machines. In a VM the reported clock is the nominal one, not the boost
clock the cores run at; Zen 4 executes AVX-512 on 256-bit units; oneDNN, MLAS and the AMX tile unit
reach very different fractions of their paper peak. On a 2-core AMD EPYC with AVX-512 BF16 the old
model printed fp32 rows at up to 142 % of "peak". So before the rows, a compute-bound GEMM runs per
precision and per thread count through the libraries the runtimes use (PyTorch's oneDNN/MKL for
fp32 and bf16 ``torch.mm``; for int8 both ``torch._int_mm`` and ONNX Runtime's MLAS
``MatMulInteger`` u8 x s8, the kernel family of its QLinearConv/QGemm: on a Sapphire Rapids-class
Xeon the latter reaches the AMX int8 tiles, the former only VNNI), a fraction of a second each, best
of a few blocks (the least disturbed one on a shared machine).

The ceiling is the larger of the measured figure and the theoretical one at the clock the fp32
kernel implies (measured fp32 MAC/s per core / fp32 MACs per cycle, when that is above the reported
clock). Measured alone would be a lower bound of the true peak on a busy machine (a neighbour
stealing the core makes the kernel slower, never faster); the theoretical figure alone trusts the
clock. Taking the larger keeps the fraction an honest "at most this close to the limit". A row that
still exceeds it (a Winograd or im2col-free kernel doing fewer real multiplies than the model's
counted MACs, or a runtime using more cores than its thread setting) is capped at 1.0 and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from edgeblood.bench.machine import peak_macs_per_cycle

PRECISIONS = ("fp32", "bf16", "int8")
GEMM_N = 1024  # square GEMM side: 1 G MACs, compute-bound for every precision (512 is not, for AMX int8 on one core)
DEFAULT_KERNEL_S = 0.3  # seconds of timed calls per kernel and thread count
ABOVE_PEAK = "≥ peak: fewer real MACs than counted"  # the cell text of a row beyond its ceiling


def kernel_seconds(max_s: float) -> float:
    """Seconds per micro-kernel for a bench whose rows get ``max_s`` seconds of timing (short in --quick)."""
    return min(DEFAULT_KERNEL_S, max(0.03, max_s / 10))


def measure_peaks(threads: Sequence[int], kernel_s: float = DEFAULT_KERNEL_S) -> dict[str, Any]:
    """Measured GMAC/s per thread count and precision (the best kernel of each), JSON-able. Cached per process:
    one measurement per machine and bench run."""
    return _measure(tuple(sorted(set(int(t) for t in threads))), float(kernel_s))


@lru_cache(maxsize=8)
def _measure(threads: tuple[int, ...], kernel_s: float) -> dict[str, Any]:
    import torch

    t0 = time.perf_counter()
    saved = torch.get_num_threads()
    per_threads: dict[str, dict[str, Any]] = {}
    try:
        for n in threads:
            torch.set_num_threads(n)
            per_threads[str(n)] = {prec: _best_kernel(_kernels(prec, n), kernel_s) for prec in PRECISIONS}
    finally:
        torch.set_num_threads(saved)
    return {"threads": per_threads, "seconds": round(time.perf_counter() - t0, 2), "kernel_s": kernel_s, "gemm_n": GEMM_N,
            "method": f"best of a few ~{kernel_s:g} s blocks of a {GEMM_N}x{GEMM_N}x{GEMM_N} GEMM per precision and thread count"}


def _best_kernel(kernels: list[tuple[str, Callable[[], Callable[[], Any]]]], kernel_s: float) -> dict[str, Any]:
    """Run every kernel that builds here; the fastest one's GMAC/s and name (with the others' figures)."""
    found: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name, build in kernels:
        try:
            found[name] = round(gemm_gmacs(build(), GEMM_N**3, kernel_s), 1)
        except Exception as exc:  # a library or kernel missing here: the other kernels still measure
            errors[name] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ''}"
    if not found:
        return {"gmacs": None, "kernel": None, "kernels": {}, "errors": errors}
    best = max(found, key=found.__getitem__)
    return {"gmacs": found[best], "kernel": best, "kernels": found} | ({"errors": errors} if errors else {})


def gemm_gmacs(call: Callable[[], Any], macs: int, seconds: float, blocks: int = 4) -> float:
    """GMAC/s of ``call`` (``macs`` multiply-accumulates each): the fastest of ``blocks`` blocks of ~seconds/blocks."""
    call()  # first call: allocations, weight prepacking, thread pool start
    t0 = time.perf_counter()
    call()
    once = max(time.perf_counter() - t0, 1e-6)
    reps = max(1, int(seconds / blocks / once))
    best = float("inf")
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(reps):
            call()
        best = min(best, (time.perf_counter() - t0) / reps)
    return macs / best / 1e9


def _kernels(precision: str, threads: int) -> list[tuple[str, Callable[[], Callable[[], Any]]]]:
    """(name, builder of a zero-argument GEMM call) for ``precision``; a builder raises where it cannot run here."""
    n = GEMM_N
    if precision == "int8":
        return [("torch._int_mm s8s8", lambda: _torch_call("int8", n)),
                ("onnxruntime MatMulInteger u8s8 (MLAS)", lambda: _ort_matmul_integer(n, threads))]
    return [(f"torch.mm {precision}", lambda: _torch_call(precision, n))]


def _torch_call(precision: str, n: int) -> Callable[[], Any]:
    import torch

    if precision == "int8":
        a = torch.randint(-128, 127, (n, n), dtype=torch.int8)
        b = torch.randint(-128, 127, (n, n), dtype=torch.int8)
        return lambda: torch._int_mm(a, b)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    return lambda: torch.mm(a, b)


def _ort_matmul_integer(n: int, threads: int) -> Callable[[], Any]:
    """ONNX Runtime's u8 x s8 MatMulInteger with constant weights (prepacked, as QLinearConv/QGemm weights are)."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.integers(-128, 128, (n, n), dtype=np.int8), "w")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "peak",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    a = rng.integers(0, 256, (n, n), dtype=np.uint8)
    return lambda: sess.run(None, {"a": a})


# ------------------------------------------------------------------------------------------- the ceiling
def implied_clock_mhz(cpu: dict[str, Any], peaks: dict[str, Any] | None) -> float | None:
    """The clock the fp32 kernel proves the cores ran at (its per-core MAC/s over fp32 MACs per cycle), or None."""
    per_cycle, _ = peak_macs_per_cycle(cpu.get("isa") or [], "fp32", split_512=bool(cpu.get("split_512")))
    if not per_cycle or not peaks:
        return None
    rates = [(v.get("fp32") or {}).get("gmacs") for v in peaks["threads"].values()]
    per_core = [r / int(t) for t, r in zip(peaks["threads"], rates) if r]
    return round(max(per_core) * 1000 / per_cycle, 1) if per_core else None


def ceiling(cpu: dict[str, Any], peaks: dict[str, Any] | None, precision: str, threads: int) -> dict[str, Any]:
    """The ceiling for a CPU row: max(measured, theoretical at the larger of reported and implied clock), with both
    figures and a basis string that names the ISA and the per-core figures."""
    per_cycle, isa = peak_macs_per_cycle(cpu.get("isa") or [], precision, split_512=bool(cpu.get("split_512")))
    reported, implied = cpu.get("clock_mhz"), implied_clock_mhz(cpu, peaks)
    mhz = max(filter(None, (reported, implied)), default=None)
    theoretical = round(per_cycle * threads * mhz / 1000, 1) if (per_cycle and mhz) else None
    m = ((peaks or {}).get("threads", {}).get(str(threads)) or {}).get(precision) or {}
    measured = m.get("gmacs")
    peak = max(filter(None, (measured, theoretical)), default=None)
    clock_how = ("unknown clock" if not mhz else f"{mhz / 1000:.2f} GHz ("
                 + ("implied by the fp32 kernel, above the reported " + f"{reported / 1000:.2f} GHz" if (implied and (not reported or implied > reported))
                    else str(cpu.get("clock_source"))) + ")")
    theo_text = f"theoretical {theoretical:g} = {isa} x {threads} core(s) x {clock_how}" if theoretical else f"theoretical: {isa}, {clock_how}"
    meas_text = (f"measured {measured:g} ({measured / threads:.1f}/core, {m['kernel']}, {threads} thread(s))" if measured
                 else "measured: none (no kernel ran at this thread count)")
    used = "measured" if (measured and peak == measured) else "theoretical"
    return {"peak_gmacs": peak, "measured_gmacs": measured, "theoretical_gmacs": theoretical,
            "basis": f"{precision} ceiling = {used}: {meas_text}; {theo_text}"}


def row_precision(precision: str) -> str:
    """Which ceiling an artifact precision runs against: int8 and bf16 their own, the rest (fp32, fp16 weights
    computed in fp32 on CPUs) fp32."""
    p = precision.lower()
    return "int8" if "int8" in p else "bf16" if "bf16" in p else "fp32"


def fraction(gmacs: float | None, peak: float | None) -> tuple[float | None, str | None]:
    """(achieved / peak, capped at 1.0; a note when the row exceeded the ceiling)."""
    if not gmacs or not peak:
        return None, None
    raw = gmacs / peak
    if raw <= 1.0:
        return round(raw, 4), None
    return 1.0, f"{ABOVE_PEAK} ({raw:.2f}x the ceiling)"
