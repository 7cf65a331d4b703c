"""How busy the machine was with OTHER work while a row was measured.

A latency is only comparable with the next one if nothing else competed for the cores. Around each
row the runner takes two ``snapshot()``s: the machine's busy CPU time (/proc/stat: user, nice,
system, irq, softirq, steal), this process's and its finished children's CPU time (the row's
worker), the 1-minute load average and the clock. ``foreign_cores`` is the difference that belongs to
neither: how many cores other processes kept busy on average during the row. A row above
``DISTURBED_CORES`` is disturbed: the runner measures it again once at the end and keeps the quieter
measurement, and the report says how many rows were disturbed and by how much.

Linux only (/proc/stat); elsewhere the figures are None and nothing is judged.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

DISTURBED_CORES = 0.25  # other processes' average CPU use during a row, in cores


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
