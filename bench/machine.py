"""What machine a benchmark ran on, and what that machine could do at most.

A latency figure means little without the CPU, the ISA extensions the kernels can use, the clock
and the thread settings, so every report carries this section. ``peak_gmacs`` turns the ISA and
clock into the theoretical peak (multiply-accumulates per second): context for the ceiling each
row's achieved GMAC/s is compared with, which ``bench.peak`` measures at bench start (the reported
clock of a VM is not its boost clock, and paper peaks are not what the libraries reach).
"""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

from edgeblood.cpu import cpu_info

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ORT_NUM_THREADS")


def machine_info(label: str | None = None) -> dict[str, Any]:
    """CPU model, cores, ISA flags, clock, GPU, OS, library versions and thread settings (JSON-able)."""
    from edgeblood.devices import available_cores
    from edgeblood.provenance import library_versions

    cpu = cpu_info()
    return {
        "label": label or socket.gethostname(),
        "cpu": cpu,
        "gpu": gpu_info(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "threads": {
            "cores_available": available_cores(),
            "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
        },
    }


def gpu_info() -> list[dict[str, Any]]:
    """GPUs visible to PyTorch (CUDA, MPS); empty on a CPU-only machine. Never initialises a device."""
    gpus: list[dict[str, Any]] = []
    try:
        import torch
    except ImportError:
        return gpus
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append({"name": props.name, "backend": "cuda", "memory_gb": round(props.total_memory / 2**30, 1)})
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        gpus.append({"name": "Apple GPU", "backend": "mps"})
    return gpus


AMX_INT8_MACS = 1024  # per cycle per core: 2048 int8 ops (multiply + add)
AMX_BF16_MACS = 512  # 1024 bf16 ops


def peak_macs_per_cycle(isa: list[str], precision: str, split_512: bool = False) -> tuple[int | None, str]:
    """Multiply-accumulates one core can retire per cycle for ``precision``, and how that was derived.

    ``split_512``: the cores execute 512-bit ops as two 256-bit halves (AMD Zen 4), so AVX-512 retires
    no more fp32 MACs per cycle than AVX2 (2 x 8). This is the theoretical context of the bench's
    ceiling; the ceiling itself is measured at bench start (``bench.peak``).

    fp32: 2 FMA units x SIMD lanes (16 with AVX-512, 8 with AVX2; 4 for NEON x 2-4 units, taken as 4x4).
    int8: with VNNI (AVX-512 VNNI / AVX-VNNI) 4 int8 MACs per 32-bit lane, i.e. 4x fp32; without it
    the pmaddubsw path is taken as 2x fp32. bf16 with AVX512_BF16 (vdpbf16ps) is 2x fp32; fp16/bf16
    otherwise run in fp32 on CPUs without AVX512-FP16/AMX, so they get the fp32 peak.
    AMX (Sapphire Rapids and later): the tile unit (TMUL) retires 2048 int8 or 1024 bf16 operations
    per cycle per core (Intel, 4th Gen Xeon Scalable / Intel AMX overview), i.e. 1024 int8 or 512 bf16
    MACs, which is the peak for int8 (``amx_int8``) and bf16/fp16 (``amx_bf16``; fp16 needs ``amx_fp16``).
    """
    flags = set(isa)
    if "avx512f" in flags and split_512:
        fp32, simd = 2 * 8, "AVX-512 on 256-bit units (Zen 4)"
    elif "avx512f" in flags:
        fp32, simd = 2 * 16, "AVX-512"
    elif "avx2" in flags and "fma" in flags:
        fp32, simd = 2 * 8, "AVX2+FMA"
    elif "neon" in flags or "asimd" in flags:
        fp32, simd = 4 * 4, "NEON (4 units x 4 lanes)"
    else:
        return None, "unknown SIMD width"
    if precision == "int8" and "amx_int8" in flags:
        return AMX_INT8_MACS, f"int8 AMX tiles: {AMX_INT8_MACS} MAC/cycle/core (2048 int8 ops, Intel 4th Gen Xeon)"
    if (precision == "bf16" and "amx_bf16" in flags) or (precision == "fp16" and "amx_fp16" in flags):
        return AMX_BF16_MACS, f"{precision} AMX tiles: {AMX_BF16_MACS} MAC/cycle/core (1024 {precision} ops, Intel 4th Gen Xeon)"
    amx = " (AMX present, not used for this precision)" if "amx_tile" in flags else ""
    if precision == "int8":
        vnni = flags & {"avx512_vnni", "avx_vnni", "asimddp"}
        if vnni:
            return fp32 * 4, f"int8 {'/'.join(sorted(vnni))}: 4 x fp32 {simd} peak{amx}"
        return fp32 * 2, f"int8 without VNNI: 2 x fp32 {simd} peak{amx}"
    if precision in ("fp16", "bf16") and "avx512_fp16" in flags:
        return fp32 * 2, f"fp16 AVX512-FP16: 2 x fp32 {simd} peak{amx}"
    if precision == "bf16" and "avx512_bf16" in flags:  # vdpbf16ps: two bf16 products per 32-bit lane
        return fp32 * 2, f"bf16 AVX512_BF16 (vdpbf16ps): 2 x fp32 {simd} peak{amx}"
    return fp32, f"fp32 {simd}: {fp32} MAC/cycle/core{amx}"


def peak_gmacs(cpu: dict[str, Any], precision: str, threads: int) -> tuple[float | None, str]:
    """Peak GMAC/s of ``threads`` cores at the recorded clock for ``precision`` (None when unknown)."""
    per_cycle, how = peak_macs_per_cycle(cpu.get("isa") or [], precision, split_512=bool(cpu.get("split_512")))
    mhz = cpu.get("clock_mhz")
    if per_cycle is None or not mhz:
        return None, how if per_cycle is None else "clock unknown"
    return round(per_cycle * threads * mhz / 1000.0, 1), f"{how} x {threads} core(s) x {mhz / 1000:.2f} GHz ({cpu.get('clock_source')})"
