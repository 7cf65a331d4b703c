"""The report's answer to "which file do I ship?": per run, machine and device, the smallest and the fastest
artifact whose test accuracy is statistically indistinguishable from PyTorch fp32 (bench.stats), with its path,
its runtime and the 95 % interval of its accuracy difference.

Differences inside the noise are not ranked: an int8 file 0.1 pt below fp32 on 3,421 images is as good a
choice as fp32 itself, and the smaller or faster one is recommended. An artifact whose interval lies
below 0 is named as not equivalent, with its interval, so a reader sees why it was passed over.
"""

from __future__ import annotations

import math
from typing import Any

from edgeblood.bench.stats import HIGHER, INDISTINGUISHABLE, LOWER
from edgeblood.parity import OK


def delta_text(row: dict[str, Any], *, interval: bool = True) -> str:
    """'-0.06 pt ≈ [-0.38, +0.20]': the difference to fp32, its verdict (≈ indistinguishable, ↓ lower, ↑ higher)
    and its 95 % interval, in points; '-' without one."""
    diff = row.get("accuracy_vs_fp32")
    if not diff:
        return f"{row['accuracy_delta'] * 100:+.2f}" if row.get("accuracy_delta") is not None else "-"
    mark = {INDISTINGUISHABLE: "≈", LOWER: "↓", HIGHER: "↑"}[diff["verdict"]]
    lo, hi = diff["ci95"]
    return f"{diff['delta'] * 100:+.2f} {mark}" + (f" [{lo * 100:+.2f}, {hi * 100:+.2f}]" if interval else "")


def recommendation_lines(report: dict[str, Any]) -> list[str]:
    """Markdown lines (``**bold**``, ```code```): one block per run x machine x device, then how it was decided."""
    lines: list[str] = []
    multi_machine = len(report["machines"]) > 1
    runs = {(r["machine"], r["name"]): r for r in report["runs"]}
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in report["rows"]:
        if r["status"] == OK and r["batch"] == 1 and r["latency_ms"] and r.get("accuracy_vs_fp32"):
            groups.setdefault((r["machine"], r["run"], r["device"]), []).append(r)
    for (machine, run_name, device), rows in sorted(groups.items()):
        where = f"{run_name} on {machine}, {device}" if multi_machine else f"{run_name}, {device}"
        lines.append(f"**{where}**: " + _choice(rows))
        rejected = _rejected(rows)
        if rejected:
            lines.append(f"{where}: not equivalent to fp32 (interval below 0): {rejected}")
        run = runs.get((machine, run_name))
        if run is not None:
            lines.append(_basis(run, rows))
    return lines


def _choice(rows: list[dict]) -> str:
    equivalent = [r for r in rows if r["accuracy_vs_fp32"]["verdict"] in (INDISTINGUISHABLE, HIGHER)]
    if not equivalent:
        return "no artifact's accuracy is statistically indistinguishable from PyTorch fp32; see the accuracy table"
    smallest = min(equivalent, key=lambda r: (r["size_bytes"] or math.inf, r["latency_ms"]["p50"]))
    fastest = min(equivalent, key=lambda r: (r["latency_ms"]["p50"], r["size_bytes"] or math.inf))
    if (smallest["artifact"], smallest["runtime"]) == (fastest["artifact"], fastest["runtime"]):
        return f"ship {_describe(fastest)}: the smallest and the fastest of the files indistinguishable from fp32"
    return f"smallest: {_describe(smallest)}; fastest: {_describe(fastest)}"


def _describe(r: dict) -> str:
    diff = r["accuracy_vs_fp32"]
    lo, hi = diff["ci95"]
    size = f"{r['size_bytes'] / 1e6:.2f} MB" if r["size_bytes"] else "size unknown"
    threads = f", {r['threads']} thread(s)" if r["threads"] else ""
    return (f"`{r['artifact']}` ({r['runtime']}, {r['precision']}, {size}, p50 {r['latency_ms']['p50']:.3g} ms at batch 1{threads}; "
            f"test accuracy {r['accuracy'] * 100:.2f} %, {diff['delta'] * 100:+.2f} pt vs PyTorch fp32, "
            f"95 % CI {lo * 100:+.2f} to {hi * 100:+.2f} pt)")


def _rejected(rows: list[dict]) -> str:
    seen: dict[tuple, dict] = {}
    for r in rows:
        if r["accuracy_vs_fp32"]["verdict"] == LOWER:
            seen.setdefault((r["artifact"], r["runtime"]), r)
    return "; ".join(f"`{r['artifact']}` ({r['runtime']}) {delta_text(r)} pt" for r in seen.values())


def _basis(run: dict[str, Any], rows: list[dict]) -> str:
    n = run["evaluated_on"]["images"]
    acc = run["reference"]["accuracy"]
    se = math.sqrt(acc * (1 - acc) / n) * 100 if n else float("nan")
    method = rows[0]["accuracy_vs_fp32"]["method"]
    sample = " (embedded sample: too few images to tell small differences apart)" if run["evaluated_on"].get("source") == "sample" else ""
    return (f"{run['name']}: indistinguishable = the 95 % interval of the accuracy difference to PyTorch fp32 on the same {n} test "
            f"images contains 0 ({method}, edgeblood.bench.stats){sample}; one standard error of its {acc * 100:.2f} % is "
            f"{se:.2f} pt, so smaller differences are not ranked.")
