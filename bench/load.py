"""How busy the machine was with OTHER work while a row was measured.

A latency is only comparable with the next one if nothing else competed for the cores. Around each
row the runner takes two ``snapshot()``s: the machine's busy CPU time (/proc/stat: user, nice,
system, irq, softirq, steal), this process's and its finished children's CPU time (the row's
worker), the 1-minute load average and the clock. ``foreign_cores`` is the difference that belongs to
neither: how many cores other processes kept busy on average during the row. A row above
``DISTURBED_CORES`` is disturbed: the runner measures it again once at the end and keeps the quieter
measurement, and the report says how many rows were disturbed and by how much.

While a row runs, ``LoadMeter`` also samples the CPU clock (a throttled or boosting core changes a
latency as much as a neighbour does): the kernel's cpufreq figure where the machine exposes it
(/sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq), else /proc/cpuinfo's "cpu MHz" (in a VM this
is often the host's nominal clock and does not move), else "not readable".

Linux only (/proc/stat); elsewhere the figures are None and nothing is judged.
"""

from __future__ import annotations

import os
import resource
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DISTURBED_CORES = 0.25  # other processes' average CPU use during a row, in cores
CLOCK_SAMPLE_S = 0.2  # how often the CPU clock is read while a row runs
NOT_READABLE = "not readable"
CPUFREQ_GLOB = "cpu[0-9]*/cpufreq/scaling_cur_freq"


@dataclass(frozen=True)
class Snapshot:
    wall: float
    busy_s: float | None  # the whole machine's busy CPU seconds since boot
    own_s: float  # this process + its waited-for children
    loadavg_1m: float | None


def _machine_busy_s() -> float | None:
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def snapshot() -> Snapshot:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return Snapshot(time.perf_counter(), _machine_busy_s(), me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, load)


def foreign_cores(before: Snapshot, after: Snapshot) -> float | None:
    """Average number of cores other processes used between the two snapshots (None where unknown)."""
    wall = after.wall - before.wall
    if before.busy_s is None or after.busy_s is None or wall <= 0:
        return None
    foreign = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    return round(max(0.0, foreign) / wall, 3)


def is_disturbed(cores: float | None) -> bool:
    return cores is not None and cores > DISTURBED_CORES


# ---------------------------------------------------------------------------------------------- clock
def cpu_mhz(sys_cpu: Path = Path("/sys/devices/system/cpu"), cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[float | None, str]:
    """The mean current clock of the machine's CPUs in MHz, and where it was read (or ``NOT_READABLE``)."""
    khz = []
    for path in sorted(sys_cpu.glob(CPUFREQ_GLOB)):
        try:
            khz.append(int(path.read_text().strip()))
        except (OSError, ValueError):
            continue
    if khz:
        return round(statistics.fmean(khz) / 1000.0, 1), "cpufreq scaling_cur_freq"
    try:
        lines = cpuinfo.read_text(errors="replace").splitlines()
    except OSError:
        return None, NOT_READABLE
    mhz = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "cpu MHz":
            try:
                mhz.append(float(value))
            except ValueError:
                continue
    return (round(statistics.fmean(mhz), 1), "/proc/cpuinfo cpu MHz") if mhz else (None, NOT_READABLE)


class LoadMeter:
    """Around a measured stretch (``with LoadMeter() as meter: ...``): the two snapshots that give
    ``foreign_cores`` and the CPU clock read every ``CLOCK_SAMPLE_S`` while it runs (by a thread of
    this process, so its own CPU time counts as the bench's, not as foreign)."""

    def __init__(self, interval_s: float = CLOCK_SAMPLE_S) -> None:
        self.interval_s = interval_s
        self.clock: list[float] = []
        self.clock_source = NOT_READABLE
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="edgeblood-clock", daemon=True)
        self.before: Snapshot | None = None
        self.after: Snapshot | None = None

    def _sample(self) -> None:
        while True:
            mhz, self.clock_source = cpu_mhz()
            if mhz is None:
                return
            self.clock.append(mhz)
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> "LoadMeter":
        self.before = snapshot()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.after = snapshot()

    def figures(self) -> dict[str, Any]:
        """The row's ``load`` record: other processes' cores, the 1-minute load average and the clock seen."""
        assert self.before is not None and self.after is not None, "figures() after the with block"
        return {
            "foreign_cores": foreign_cores(self.before, self.after),
            "loadavg_1m": self.after.loadavg_1m,
            "cpu_mhz": round(statistics.fmean(self.clock), 1) if self.clock else None,
            "cpu_mhz_range": [min(self.clock), max(self.clock)] if self.clock else None,
            "cpu_mhz_samples": len(self.clock),
            "cpu_mhz_source": self.clock_source,
        }


def summary(loads: list[dict[str, Any]]) -> dict[str, Any]:
    """One record for a whole bench (the report's load section): how busy others kept the machine and the clock seen."""
    def values(key: str) -> list[float]:
        return [x[key] for x in loads if x.get(key) is not None]

    cores, avg = values("foreign_cores"), values("loadavg_1m")
    lows = [x["cpu_mhz_range"][0] for x in loads if x.get("cpu_mhz_range")]
    highs = [x["cpu_mhz_range"][1] for x in loads if x.get("cpu_mhz_range")]
    sources = sorted({x["cpu_mhz_source"] for x in loads if x.get("cpu_mhz_range")})
    return {
        "measurements": len(loads),
        "disturbed_cores": DISTURBED_CORES,
        "foreign_cores_median": round(statistics.median(cores), 3) if cores else None,
        "foreign_cores_max": max(cores) if cores else None,
        "disturbed": sum(is_disturbed(x.get("foreign_cores")) for x in loads),
        "remeasured": sum(bool(x.get("remeasured")) for x in loads),
        "loadavg_1m_range": [min(avg), max(avg)] if avg else None,
        "cpu_mhz_range": [min(lows), max(highs)] if lows else None,
        "cpu_mhz_source": ", ".join(sources) if sources else NOT_READABLE,
    }
