"""The CPU a figure came from: model, cores, ISA extensions and clock.

Training and the bench both record it (run.json ``training.cpu``, the bench report's ``machine.cpu``):
the same command runs 5x faster in bf16 on an AVX512-BF16 or AMX CPU than in fp32 on AVX2, and its
bf16 weights differ, so a time or an accuracy means little without the CPU that made it.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

# ISA extensions that decide which kernels fp32/int8/bf16 inference can use (Linux /proc/cpuinfo names).
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "asimddp", "sve")


def cpu_info() -> dict[str, Any]:
    """CPU model, logical/physical cores, ISA flags and clock (with where the clock figure came from)."""
    import psutil

    info: dict[str, Any] = {
        "model": platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "isa": [],
        "clock_mhz": None,
        "clock_source": None,
    }
    if Path("/proc/cpuinfo").is_file():
        info.update(_linux_cpu(Path("/proc/cpuinfo").read_text(errors="replace")))
    elif platform.system() == "Darwin":
        info.update(_macos_cpu())
    return info


def _linux_cpu(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key and key not in fields:
            fields[key] = value.strip()
    model = fields.get("model name") or fields.get("Model") or fields.get("Hardware")
    if model:
        out["model"] = model
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    out["isa"] = [f for f in ISA_FLAGS if f in flags]
    out["split_512"] = splits_512_bit_ops(fields.get("vendor_id"), fields.get("cpu family"), flags)
    max_mhz = _lscpu_max_mhz()
    if max_mhz:
        out["clock_mhz"], out["clock_source"] = max_mhz, "lscpu max MHz"
    elif fields.get("cpu MHz"):
        out["clock_mhz"] = round(float(fields["cpu MHz"]), 1)
        out["clock_source"] = "/proc/cpuinfo 'cpu MHz' (current clock; turbo may be higher)"
    return out


def splits_512_bit_ops(vendor: str | None, family: str | None, flags: set[str]) -> bool:
    """AMD Zen 4 (family 25 with AVX-512) runs each 512-bit op as two 256-bit halves: half the AVX-512
    MACs per cycle of a core with 512-bit FMA units (Zen 5, family 26, has full-width units)."""
    return vendor == "AuthenticAMD" and family == "25" and "avx512f" in flags


def _lscpu_max_mhz() -> float | None:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"^CPU max MHz:\s*([\d.]+)", text, re.MULTILINE)
    return round(float(match.group(1)), 1) if match else None


def _sysctl(name: str) -> str | None:
    try:
        proc = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def _macos_cpu() -> dict[str, Any]:
    out: dict[str, Any] = {}
    brand = _sysctl("machdep.cpu.brand_string")
    if brand:
        out["model"] = brand
    features = " ".join(filter(None, [_sysctl("machdep.cpu.features"), _sysctl("machdep.cpu.leaf7_features")])).lower()
    tokens = {t.replace("_", "") for t in features.split()}
    isa = [f for f in ISA_FLAGS if f.replace("_", "") in tokens]
    if platform.machine() == "arm64":
        isa = ["neon"] + (["asimddp"] if _sysctl("hw.optional.arm.FEAT_DotProd") == "1" else [])
    out["isa"] = isa
    freq = _sysctl("hw.cpufrequency_max")
    if freq and freq.isdigit():
        out["clock_mhz"], out["clock_source"] = round(int(freq) / 1e6, 1), "sysctl hw.cpufrequency_max"
    return out


def cpu_label(cpu: dict[str, Any] | None) -> str | None:
    """'AMD EPYC, AVX-512 BF16': the model and the widest ISA tier a training or an int8 kernel could use."""
    if not cpu or not cpu.get("model"):
        return None
    isa = set(cpu.get("isa") or [])
    tiers = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 BF16"), ("avx512_vnni", "AVX-512 VNNI"), ("avx512f", "AVX-512"),
             ("avx_vnni", "AVX-VNNI"), ("avx2", "AVX2"), ("asimddp", "NEON dot"), ("neon", "NEON"))
    tier = next((name for flag, name in tiers if flag in isa), None)
    return f"{cpu['model']}, {tier}" if tier else str(cpu["model"])


@cache
def this_cpu_label() -> str | None:
    """``cpu_label`` of the machine this process runs on, read once (cpu_info reads /proc/cpuinfo and asks psutil)."""
    return cpu_label(cpu_info())
