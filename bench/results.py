"""Judging bench rows and the algebra over them: parity against the PyTorch reference, the static
columns every row carries, the Pareto front, the ratios within one report and the row order.

Everything here works on row dictionaries (the report.json schema), so a merged report from
several machines goes through the same functions as a fresh bench.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeblood.bench.plan import SPLIT, Artifact, Planned, display_path
from edgeblood.bench.stats import INDISTINGUISHABLE, difference_vs_reference, paired_counts
from edgeblood.parity import FAILED, MISMATCH, OK, SKIPPED, precision_class
from edgeblood.parity_status import STATUSES

SCHEMA = "edgeblood.bench/2"  # /2: the parity judge's status words ("mismatch", was "output mismatch") and thresholds

ROW_KEYS = (
    "id", "machine", "run", "model", "variant", "artifact", "target", "precision", "runtime", "device", "threads", "batch",
    "status", "reason", "split", "accuracy", "macro_f1", "n_images", "accuracy_measured_at", "agreement", "max_abs_diff",
    "parity_images", "latency_ms", "throughput_ips", "latency_input_shape", "load_s", "peak_rss_mb", "runtime_rss_mb", "baseline_rss_mb",
    "size_bytes", "params", "macs", "gmacs", "peak_gmacs", "peak_fraction", "peak_basis", "peak_note", "peak_measured_gmacs",
    "peak_theoretical_gmacs", "pareto",
    "accuracy_delta", "speedup_vs_pytorch", "images_accuracy", "images_n", "kernels", "load", "ece",
    "paired_vs_reference", "accuracy_vs_fp32",
)
# Measured once per (artifact, runtime, device) by the row that predicts the full split; the group's other rows inherit them.
GROUP_KEYS = ("accuracy", "macro_f1", "ece", "n_images", "images_accuracy", "images_n", "paired_vs_reference")


# --------------------------------------------------------------------------------------------- judging
def judge(row: dict, art: Artifact, probs: np.ndarray, data, ref, full_eval: bool, num_classes: int) -> None:
    """Compare a row's probabilities with the PyTorch reference; set accuracy, macro-F1 and ECE (full split) and status.

    ECE is evaluation's 15-bin expected calibration error of the artifact's own probabilities: a
    calibrated checkpoint must stay calibrated through export and quantization, and this is where it shows."""
    from edgeblood.evaluation.metrics import ECE_BINS, accuracy_and_macro_f1, expected_calibration_error
    from edgeblood.parity import ParityData, compare, thresholds_for

    n = len(probs)
    ref_probs = ref["probs"][:n]
    if probs.ndim != 2 or probs.shape[1] != ref_probs.shape[1]:
        row.update(status=MISMATCH, reason=f"output shape {list(probs.shape)} but the reference is [N, {ref_probs.shape[1]}]", n_images=n)
        return
    reference = ParityData(images=None, labels=np.asarray(data["labels"][:n]), reference=ref_probs, split=SPLIT, source="", description="")
    result = compare(probs, reference, thresholds_for(art.precision), check_accuracy=full_eval)
    row.update(agreement=round(result.agreement, 6), max_abs_diff=result.max_abs_diff, parity_images=n)
    if full_eval:
        acc, f1 = accuracy_and_macro_f1(data["labels"][:n], probs.argmax(1), num_classes)
        ece, _ = expected_calibration_error(data["labels"][:n], probs, ECE_BINS)
        row.update(accuracy=acc, macro_f1=f1, ece=ece, n_images=n, accuracy_measured_at={"threads": row["threads"], "batch": row["batch"]},
                   paired_vs_reference=paired_counts(ref_probs.argmax(1) == reference.labels, probs.argmax(1) == reference.labels))
    if result.status == MISMATCH:
        row.update(status=MISMATCH, reason=f"{result.reason} [threshold for {precision_class(art.precision)}]")
    else:
        row.update(status=OK, reason=None)


def group_measurement(row: dict[str, Any]) -> dict[str, Any]:
    """What the full-split row of a group hands to the group's other rows (its figures and its verdict)."""
    return {k: row.get(k) for k in GROUP_KEYS} | {
        "measured_at": {"threads": row["threads"], "batch": row["batch"]},
        "verdict": (row["status"], row["reason"]),
    }


def inherit_group_measurement(row: dict[str, Any], acc: dict[str, Any]) -> None:
    """A slice row takes its artifact's full-split figures; a mismatch on the full split holds for every row of it."""
    row.update({k: acc[k] for k in GROUP_KEYS}, accuracy_measured_at=acc["measured_at"])
    status, reason = acc["verdict"]
    if status == MISMATCH and row["status"] == OK:
        row.update(status=MISMATCH, reason=f"{reason} (full split at {acc['measured_at']['threads']} thread(s), "
                                           f"batch {acc['measured_at']['batch']})")


def finish_row(row: dict, art: Artifact | None, run) -> dict[str, Any]:
    """Fill in the static columns and give every row the same keys (null where not measured)."""
    model = run.meta.model
    row.setdefault("size_bytes", art.size_bytes() if art else None)
    row.setdefault("params", model.params)
    row.setdefault("macs", model.macs)
    for key in ROW_KEYS:
        row.setdefault(key, None)
    row["pareto"] = False
    return {k: row[k] for k in ROW_KEYS}


def finish_rows(planned: list[Planned], results: dict[int, dict[str, Any]], group_accuracy: dict[tuple, dict], run) -> list[dict[str, Any]]:
    """The run's rows in plan order, slice rows completed with their group's full-split measurement."""
    rows = []
    for i, p in enumerate(planned):
        row = results[i]
        acc = group_accuracy.get(p.group)
        if not p.full_eval and row["status"] in (OK, MISMATCH) and acc:
            inherit_group_measurement(row, acc)
        rows.append(finish_row(row, p.artifact, run))
    return rows


def run_entry(run, data: dict[str, Any], ref: dict[str, Any], machine_label: str) -> dict[str, Any]:
    """The report's record of one run: what it is, what it was evaluated on, and the reference figures."""
    meta = run.meta
    return {
        "machine": machine_label,
        "name": run.name,
        "path": display_path(run.dir),
        "model": run.model_name,
        "params": meta.model.params,
        "macs": meta.model.macs,
        "input_size": run.in_size,
        "trained_on": meta.dataset.to_dict(),
        "evaluated_on": data["dataset"] | {"split": SPLIT, "images": int(len(data["labels"])), "describe": data["describe"]},
        "reference": {"runtime": "pytorch", "device": "cpu", "precision": "fp32", "split": SPLIT,
                      "accuracy": ref["accuracy"], "macro_f1": ref["macro_f1"], "ece": ref.get("ece")},
    }


# ------------------------------------------------------------------------------------ pareto, sorting
def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (latency, accuracy) points: True where no other point is at least as fast and as accurate
    and strictly better in one of the two."""
    return [
        not any(lo <= lat and ao >= acc and (lo < lat or ao > acc) for j, (lo, ao) in enumerate(points) if j != i)
        for i, (lat, acc) in enumerate(points)
    ]


def ranked_accuracy(row: dict[str, Any], reference_accuracy: float | None = None) -> float | None:
    """The accuracy a ranking may use: the reference's for a row statistically indistinguishable from it
    (bench.stats), so differences within the noise (0.06-0.15 pt on 3,421 images) decide nothing."""
    diff = row.get("accuracy_vs_fp32") or {}
    if row["accuracy"] is None:
        return None
    # rounded to 0.001 pt: the stored delta is rounded, and the reference's accuracy must come out equal for every such row
    return round(row["accuracy"] - diff["delta"] if diff.get("verdict") == INDISTINGUISHABLE else row["accuracy"], 5)


def mark_pareto(rows: list[dict[str, Any]]) -> None:
    """Mark ok batch-1 rows on the accuracy-vs-p50-latency Pareto front of their machine; accuracies within
    the noise of the fp32 reference count as equal to it (``ranked_accuracy``), so only the fastest of them is on it."""
    by_machine: dict[str, list[dict]] = {}
    for r in rows:
        r["pareto"] = False
        if r["status"] == OK and r["batch"] == 1 and r["accuracy"] is not None and r["latency_ms"]:
            by_machine.setdefault(r["machine"], []).append(r)
    for cands in by_machine.values():
        for r, on_front in zip(cands, pareto_front([(c["latency_ms"]["p50"], ranked_accuracy(c)) for c in cands])):
            r["pareto"] = on_front


def add_comparisons(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> None:
    """Ratios within one bench (what the README quotes): accuracy change vs the run's PyTorch fp32
    reference, and speed-up vs the PyTorch fp32 row on the same machine, device, threads and batch."""
    ref_acc = {(r["machine"], r["name"]): r["reference"]["accuracy"] for r in runs}
    torch_p50 = {
        (r["machine"], r["run"], r["device"], r["threads"], r["batch"]): r["latency_ms"]["p50"]
        for r in rows if r["runtime"] == "pytorch" and r["status"] == OK and r["latency_ms"]
    }
    for r in rows:
        acc0 = ref_acc.get((r["machine"], r["run"]))
        r["accuracy_delta"] = None if r["accuracy"] is None or acc0 is None else round(r["accuracy"] - acc0, 6)
        diff = difference_vs_reference(r["accuracy"], r.get("n_images"), acc0, r.get("paired_vs_reference"))
        r["accuracy_vs_fp32"] = diff.to_dict() if diff is not None else None
        base = torch_p50.get((r["machine"], r["run"], r["device"], r["threads"], r["batch"]))
        if base is None and r["device"] != "cpu":  # e.g. a Core ML/ANE row: compare with PyTorch on the CPU
            base = torch_p50.get((r["machine"], r["run"], "cpu", r["threads"], r["batch"]))
        r["speedup_vs_pytorch"] = round(base / r["latency_ms"]["p50"], 3) if base and r["latency_ms"] else None


def sort_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Machine, then batch, then measured rows by p50 latency (fastest first), then mismatched/failed/skipped."""
    def key(r):
        lat = r["latency_ms"]["p50"] if r["latency_ms"] else float("inf")
        return (r["machine"], r["batch"] or 10**9, STATUSES.index(r["status"]) if r["status"] in (FAILED, SKIPPED) else 0, lat, r["id"])

    return sorted(rows, key=key)
