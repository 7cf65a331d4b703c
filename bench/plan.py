"""What ``edgeblood bench`` will measure: the settings, the benchable files of a run, and one planned
row per (artifact x runtime x device x threads x batch).

Combinations that cannot run here (runtime not installed, device absent, no artifact for a runtime)
are planned as ``skipped`` rows with the reason, so the report says what was not measured and why.
Of each (artifact, runtime, device) group, the row with the most threads and the largest batch is the
one that predicts the full test split (``full_eval``); the others check parity on a slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeblood.bench.interleave import InterleaveConfig
from edgeblood.bench.measure import TimingConfig
from edgeblood.errors import EdgebloodError
from edgeblood.manifest import MANIFEST
from edgeblood.parity import SKIPPED, THRESHOLDS

SPLIT = "test"
PARITY_SLICE = 64  # images predicted by rows that do not measure the full split

# A device name a user types -> the runtime's own device name.
DEVICE_ALIASES = {
    "coreml": {"cpu": "cpu_only", "gpu": "cpu_and_gpu", "ane": "cpu_and_ne", "npu": "cpu_and_ne", "neural_engine": "cpu_and_ne"},
    "onnxruntime": {"gpu": "cuda"},
    "pytorch": {"gpu": "cuda"},
}


@dataclass
class BenchConfig:
    """What to benchmark. ``runtimes=None`` means every registered runtime (absent ones become skipped rows)."""

    runtimes: Sequence[str] | None = None
    devices: Sequence[str] = ("cpu",)
    batches: Sequence[int] = (1, 64)
    threads: Sequence[int] = (1, 2)
    timing: TimingConfig = field(default_factory=TimingConfig)
    data_dir: str | None = None
    sample: bool | str = "auto"
    label: str | None = None
    row_timeout_s: float = 300.0
    precisions: Sequence[str] | None = None  # only these artifact precisions (None: all)
    images: str | None = None  # labelled image files (class folders or CSV): a real-image accuracy column per artifact
    # The headline: the fastest ok artifact vs PyTorch fp32, interleaved in one process (None: no headline).
    interleave: InterleaveConfig | None = field(default_factory=InterleaveConfig)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runtimes": list(self.runtimes) if self.runtimes else None,
            "devices": list(self.devices),
            "batches": list(self.batches),
            "threads": list(self.threads),
            "timing": self.timing.to_dict(),
            "row_timeout_s": self.row_timeout_s,
            "images": self.images,
            "parity_slice_images": PARITY_SLICE,
            "interleave": self.interleave.to_dict() if self.interleave else None,
            "tolerances": {k: dict(v) for k, v in THRESHOLDS.items()},
        }


@dataclass
class Artifact:
    """One benchable file of a run: the checkpoint (PyTorch) or an entry of export/manifest.json."""

    path: Path
    target: str
    precision: str
    runtime: str
    label: str  # short name for tables, e.g. "onnx int8"
    manifest_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def size_bytes(self) -> int | None:
        """Bytes on disk: the checkpoint for PyTorch, .xml + .bin for OpenVINO, the whole .mlpackage folder."""
        from edgeblood.manifest import artifact_size

        p = self.path / "checkpoint.pt" if self.runtime == "pytorch" and self.path.is_dir() else self.path
        return artifact_size(p) if p.exists() else None


# --------------------------------------------------------------------------------------- artifacts
def run_artifacts(run) -> list[Artifact]:
    """The run's checkpoint plus everything its export manifest lists, in manifest order."""
    from edgeblood.manifest import load_manifest

    arts = [Artifact(path=run.dir, target="pytorch", precision="fp32", runtime="pytorch", label="pytorch fp32")]
    entries = load_manifest(run.export_dir)["artifacts"] if run.export_dir.is_dir() else []
    arts += [a for a in (_manifest_artifact(run, entry) for entry in entries) if a is not None]
    seen: dict[str, int] = {}
    for a in arts:
        seen[a.label] = seen.get(a.label, 0) + 1
    for a in arts:  # two entries with the same target/precision (e.g. static and dynamic int8): name the file
        if seen[a.label] > 1:
            a.label = f"{a.label} ({a.path.name})"
    return arts


def _manifest_artifact(run, entry: dict[str, Any]) -> Artifact | None:
    """The bench's view of one manifest entry; None for entries that are not a bench row."""
    from edgeblood.runtimes import runtime_for_artifact

    rel = entry.get("path")
    if not rel or entry.get("variant") == "capture":
        return None  # capture: whole frames in (uint8 NHWC, any size), checked on captures at export, not on the test arrays
    path = run.export_dir / rel
    try:
        runtime = entry.get("runtime") or runtime_for_artifact(path).name
    except EdgebloodError:
        return None  # a file no runtime reads is not a bench row
    target = str(entry.get("target") or path.suffix.lstrip("."))
    precision = str(entry.get("precision") or "fp32")
    variant = entry.get("variant") or entry.get("method")
    label = f"{target} {precision}" + (f" {variant}" if variant else "")
    return Artifact(path=path, target=target, precision=precision, runtime=runtime, label=label,
                    manifest_sha256=entry.get("sha256"), extra={"parity": entry.get("parity")})


def require_artifacts(run) -> list[Artifact]:
    """``run_artifacts``, or the one-line error that offers to export when the run has none."""
    artifacts = run_artifacts(run)
    if len(artifacts) == 1:
        raise EdgebloodError(
            f"{run.dir} has no exported artifacts (no entries in {run.export_dir / MANIFEST}); "
            f"export them first with `edgeblood export {run.dir} --target all` (or add --export to `edgeblood bench`)"
        )
    return artifacts


def sha256_mismatch(art: Artifact) -> bool:
    """True when the file on disk is not the one export/manifest.json recorded (changed or corrupt)."""
    from edgeblood.manifest import artifact_sha256

    if not art.manifest_sha256 or not art.path.exists():
        return False
    return artifact_sha256(art.path) != art.manifest_sha256


# ------------------------------------------------------------------------------------------ planning
@dataclass
class Planned:
    row: dict[str, Any]
    artifact: Artifact | None = None
    full_eval: bool = False
    group: tuple = ()


def plan_rows(run, artifacts: list[Artifact], config: BenchConfig, machine_label: str) -> list[Planned]:
    """Expand artifacts x runtimes x devices x threads x batches; unusable combinations become skipped rows."""
    from edgeblood.runtimes import get_runtime, list_runtimes

    wanted = [get_runtime(r).name for r in config.runtimes] if config.runtimes else list_runtimes()
    batches = sorted(set(int(b) for b in config.batches))
    threads = sorted(set(int(t) for t in config.threads))
    if not batches or min(batches) < 1 or not threads or min(threads) < 1:
        raise EdgebloodError("--batch and --threads take positive integers, e.g. --batch 1,64 --threads 1,2")
    planned: list[Planned] = []
    for rt_name in wanted:
        arts = [a for a in artifacts if a.runtime == rt_name and (not config.precisions or a.precision in config.precisions)]
        base = {"machine": machine_label, "run": run.name, "model": run.model_name, "runtime": rt_name}
        if not arts:
            planned.append(Planned(_row(base, None, device="-", status=SKIPPED,
                                        reason=f"no {rt_name} artifact in {run.export_dir}; "
                                               f"export one with `edgeblood export {run.dir} --target {_target_hint(rt_name)}`")))
            continue
        ok, why = get_runtime(rt_name).available()
        usable = (why, get_runtime(rt_name).devices() if ok else None)
        for art in arts:
            for dev_req in config.devices:
                planned += _plan_device(base, art, dev_req, usable, threads, batches)
    return planned


def _plan_device(base: dict, art: Artifact, dev_req: str, usable: tuple[str, list[str] | None], threads: list[int],
                 batches: list[int]) -> list[Planned]:
    """The rows of one artifact on one requested device ('all': every device its runtime has here).
    ``usable``: (why the runtime is unavailable, its devices here or None when it is unavailable)."""
    rt_name = base["runtime"]
    why, available_devices = usable
    device = "all" if dev_req == "all" else DEVICE_ALIASES.get(rt_name, {}).get(dev_req.lower(), dev_req.lower())
    if available_devices is None:
        return [Planned(_row(base, art, device=device, status=SKIPPED, reason=why), art)]
    planned: list[Planned] = []
    for dev in available_devices if device == "all" else [device]:
        if dev not in available_devices:
            reason = f"device '{dev}' not available to {rt_name} here (available: {', '.join(available_devices) or 'none'})"
            planned.append(Planned(_row(base, art, device=dev, status=SKIPPED, reason=reason), art))
            continue
        # Core ML has no thread knob; GPUs/NPUs are not driven by CPU threads (and OpenVINO
        # rejects a CPU thread count for them): one row per batch with the runtime's default.
        thread_list: list[int | None] = list(threads) if (dev == "cpu" and rt_name != "coreml") else [None]
        group = (art.path, rt_name, dev)
        for t in thread_list:
            for b in batches:
                full = (t == thread_list[-1]) and (b == batches[-1])
                planned.append(Planned(_row(base, art, device=dev, threads=t, batch=b), art, full, group))
    return planned


def _target_hint(runtime: str) -> str:
    from edgeblood.targets import target_for_runtime

    target = target_for_runtime(runtime)
    return target.name if target is not None else "all"


def _row(base: dict, art: Artifact | None, *, device: str, threads: int | None = None, batch: int | None = None,
         status: str | None = None, reason: str | None = None) -> dict[str, Any]:
    row = dict(base)
    row.update({
        "artifact": display_path(art.path) if art else None,
        "variant": art.label if art else None,
        "target": art.target if art else None,
        "precision": art.precision if art else None,
        "device": device,
        "threads": threads,
        "batch": batch,
        "status": status,
        "reason": reason,
        "split": SPLIT,
    })
    row["id"] = "/".join(str(x) for x in (row["machine"], row["run"], row["variant"] or "-", row["runtime"], device,
                                           f"t{threads}" if threads else "t-", f"b{batch}" if batch else "b-"))
    return row


def display_path(path: Path) -> str:
    """The path relative to the working directory when it is below it (shorter tables), else as given."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
