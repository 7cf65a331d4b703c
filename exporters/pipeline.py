"""``export_run``: every requested artifact of a run, staged, parity-checked, moved into place, recorded.

Artifacts are written into a staging folder inside the run directory and moved into
``runs/<name>/export/`` only when complete, so an error (or Ctrl-C) never leaves half an artifact
behind. Layout:

    export/model.onnx                   ONNX fp32 (fp16/int8 variants come from `edgeblood compress`)
    export/openvino/model.xml (+.bin)   OpenVINO IR fp32;  openvino/model-fp16.xml  fp16 weights
    export/model.mlpackage              Core ML ML program fp32;  model-fp16.mlpackage  fp16 compute
    export/model-capture.onnx           whole captures in (uint8 NHWC, any size), framing inside the graph;
    export/openvino/model-capture.xml   the same for OpenVINO (exporters/capture.py)
    export/manifest.json                every artifact: size, sha256, parity, export time
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgeblood import manifest as mf
from edgeblood.errors import EdgebloodError
from edgeblood.exporters.model_card import write_model_card
from edgeblood.exporters.parity import DEFAULT_IMAGES, ParityData, ParityResult, check_parity, load_parity_data, require_parity, thresholds_for
from edgeblood.provenance import utc_now

TARGETS = ("onnx", "openvino", "coreml")
PRECISIONS = ("fp32", "fp16")
ARTIFACT_PATHS = {
    ("onnx", "fp32"): "model.onnx",
    ("openvino", "fp32"): "openvino/model.xml",
    ("openvino", "fp16"): "openvino/model-fp16.xml",
    ("coreml", "fp32"): "model.mlpackage",
    ("coreml", "fp16"): "model-fp16.mlpackage",
}
STALE_FIX = "re-export it from this run with `edgeblood export {run} --force`"
RUNTIME_OF = {"onnx": "onnxruntime", "openvino": "openvino", "coreml": "coreml"}
CAPTURE_PATHS = {"onnx": "model-capture.onnx", "openvino": "openvino/model-capture.xml"}

Progress = Callable[[str, int, int], None]  # (what is happening, steps done, steps in all)


@dataclass
class ExportReport:
    run_dir: Path
    export_dir: Path
    artifacts: list[dict] = field(default_factory=list)  # manifest entries, in export order
    notes: list[str] = field(default_factory=list)
    verified: bool = False  # made by verify_exports (a failure means stale/wrong files, not a bad export)

    @property
    def failures(self) -> list[dict]:
        return [a for a in self.artifacts if a["parity"].get("status") == "failed"]


def plan(targets: Sequence[str], precisions: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """The (target, precision) pairs to export and notes about requested pairs that are not exports."""
    targets = [t.lower() for t in targets]
    precisions = [p.lower() for p in precisions]
    if "all" in targets:
        targets = list(TARGETS)
    for t in targets:
        if t not in TARGETS:
            raise EdgebloodError(f"unknown target '{t}'; choose onnx, openvino, coreml or all")
    for p in precisions:
        if p not in PRECISIONS:
            hint = "; int8 comes from `edgeblood compress --quantize int8`" if p.startswith("int") else ""
            raise EdgebloodError(f"unknown precision '{p}'; choose fp32 or fp16{hint}")
    pairs, notes = [], []
    for t in dict.fromkeys(targets):
        for p in dict.fromkeys(precisions):
            if (t, p) in ARTIFACT_PATHS:
                pairs.append((t, p))
            else:
                notes.append(f"ONNX {p} is made by `edgeblood compress --quantize {p} --target onnx`; exported ONNX is fp32")
    pairs.sort(key=lambda tp: (TARGETS.index(tp[0]), PRECISIONS.index(tp[1])))  # ONNX first: OpenVINO converts it
    if not pairs:
        raise EdgebloodError(notes[0] if notes else "nothing to export; pass --target")
    return pairs, notes


def check_request(
    run, targets: Sequence[str], precisions: Sequence[str], *, force: bool = False, min_target: str = "iOS16", opset: int | None = None
) -> tuple[list[tuple[str, str]], list[str]]:
    """Every check that needs no work: targets, precisions, converters installed, outputs free, folder writable."""
    pairs, notes = plan(targets, precisions)
    _require_libraries({t for t, _ in pairs})
    if opset is not None and any(t in ("onnx", "openvino") for t, _ in pairs):
        from edgeblood.exporters.capture import MIN_OPSET
        from edgeblood.exporters.onnx import DEFAULT_OPSET

        if not MIN_OPSET <= opset <= DEFAULT_OPSET:  # torch's exporter writes >= 18; the capture variant needs 18 (antialias)
            raise EdgebloodError(f"--opset must be between {MIN_OPSET} and {DEFAULT_OPSET} (got {opset}); ONNX Runtime >= 1.18 and OpenVINO read all of them")
    if any(t == "coreml" for t, _ in pairs):
        from edgeblood.exporters.coreml import deployment_target

        deployment_target(min_target)
    existing = [run.export_dir / ARTIFACT_PATHS[p] for p in pairs if (run.export_dir / ARTIFACT_PATHS[p]).exists()]
    if existing and not force:
        shown = ", ".join(str(d) for d in existing[:3])
        raise EdgebloodError(f"{shown} already exist{'s' if len(existing) == 1 else ''}; pass --force to overwrite")
    _require_writable(run.export_dir)
    return pairs, notes


def export_run(
    run,
    targets: Sequence[str] = ("onnx",),
    precisions: Sequence[str] = ("fp32",),
    *,
    force: bool = False,
    parity_images: int | None = DEFAULT_IMAGES,
    data_dir: str | os.PathLike | None = None,
    min_target: str = "iOS16",
    opset: int | None = None,
    simplify: bool | str = "auto",
    strict: bool = True,
    capture: bool = True,
    progress: Progress | None = None,
) -> ExportReport:
    """Export ``run`` (a Run or a run directory) to the requested targets and check each artifact.

    ``capture``: also write the whole-capture variant of each fp32 ONNX/OpenVINO model (framing in the
    graph) and check it on captures (the PBC val originals when here) against the Python framing path.

    ``strict``: raise an EdgebloodError with the figures after all artifacts are recorded if any
    failed its parity check (the CLI prints its table first, then raises).
    """
    from edgeblood.runs import Run, open_run

    run = run if isinstance(run, Run) else open_run(run)
    pairs, notes = check_request(run, targets, precisions, force=force, min_target=min_target, opset=opset)
    export_dir = run.export_dir
    dests = {pair: export_dir / ARTIFACT_PATHS[pair] for pair in pairs}

    report = ExportReport(run_dir=run.dir, export_dir=export_dir, notes=notes)
    needs_source_onnx = any(t == "openvino" for t, _ in pairs) and ("onnx", "fp32") not in pairs
    capture_targets = [t for t, p in pairs if capture and p == "fp32" and t in CAPTURE_PATHS]
    total = 3 + 2 * len(pairs) + needs_source_onnx + 2 * len(capture_targets)
    done = 0

    def step(msg: str) -> None:
        nonlocal done
        if progress is not None:
            progress(msg, done, total)
        done += 1

    step(f"loading {'all' if parity_images is None else parity_images} parity test images")
    data = load_parity_data(run, parity_images, data_dir=data_dir) if any(t != "coreml" for t, _ in pairs) or _coreml_predicts() else None
    if data is not None:
        report.notes.append(f"parity: {len(data.labels)} {data.split} images from the {data.description} vs the run's PyTorch model")

    staging = Path(tempfile.mkdtemp(prefix=".export-staging-", dir=run.dir))
    try:
        source_onnx = staging / "source" / "model.onnx"  # what OpenVINO converts (the same graph as model.onnx)
        if needs_source_onnx:
            step("exporting onnx (the source of the OpenVINO IR)")
            _export_onnx(run, source_onnx, opset, simplify)
        for target, precision in pairs:
            rel = ARTIFACT_PATHS[(target, precision)]
            staged = staging / "out" / rel
            staged.parent.mkdir(parents=True, exist_ok=True)
            step(f"exporting {target} {precision}")
            t0 = time.perf_counter()
            details = _export_one(run, target, precision, staged, source_onnx, opset=opset, simplify=simplify, min_target=min_target)
            seconds = time.perf_counter() - t0
            if target == "onnx":
                source_onnx.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(staged, source_onnx)

            step(f"checking {target} {precision} against PyTorch")
            parity = _check(target, precision, staged, data, run)
            _move_into_place(staged, dests[(target, precision)])
            entry = {
                "target": target,
                "precision": precision,
                "path": rel,
                "runtime": RUNTIME_OF[target],
                "parity": parity.to_dict(),
                "export_seconds": round(seconds, 3),
                "source_run": run.name,
                "input": _input_contract(target, run.in_size),
                "outputs": ["probabilities", "classLabel"] if target == "coreml" else ["probabilities", "label"],
                "details": details,
            }
            mf.record_artifact(export_dir, entry)
            report.artifacts.append(mf.find_artifact(export_dir, rel) or entry)
        if capture_targets:
            _export_captures(run, capture_targets, staging, export_dir, source_onnx, data_dir, parity_images, report, step)
        step("writing MODEL_CARD.md")
        report.notes.append(f"model card: {write_model_card(run, export_dir)}")
        step("done")
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    if strict:
        for failed in report.failures:
            require_parity(ParityResult(**{k: v for k, v in failed["parity"].items()}), export_dir / failed["path"])
    return report


def verify_exports(
    run,
    *,
    parity_images: int | None = DEFAULT_IMAGES,
    data_dir: str | os.PathLike | None = None,
    strict: bool = True,
) -> ExportReport:
    """Re-run the parity check of every fp32/fp16 artifact recorded in the run's manifest and record
    the new results (e.g. after copying a run, or after the checkpoint changed under its exports)."""
    from edgeblood.runs import Run, open_run

    run = run if isinstance(run, Run) else open_run(run)
    manifest = mf.load_manifest(run.export_dir)
    entries = [a for a in manifest["artifacts"] if a.get("precision") in PRECISIONS and a.get("target") in TARGETS
               and a.get("variant") != "capture"]  # capture variants are checked on captures, at export
    if not entries:
        raise EdgebloodError(f"{run.export_dir} has no exported artifacts to verify; run `edgeblood export {run.dir}` first")
    data = load_parity_data(run, parity_images, data_dir=data_dir)
    report = ExportReport(run_dir=run.dir, export_dir=run.export_dir, verified=True)
    for entry in entries:
        path = run.export_dir / entry["path"]
        if not path.exists():
            parity = ParityResult(status="failed", reason=f"{path} is missing; re-export with `edgeblood export --force`")
        else:
            parity = _check(entry["target"], entry["precision"], path, data, run)
        updated = {**entry, "parity": parity.to_dict(), "verified": utc_now()}
        for key in ("files", "size_bytes", "sha256"):  # recomputed from the files on disk
            updated.pop(key, None)
        mf.record_artifact(run.export_dir, updated)
        report.artifacts.append(mf.find_artifact(run.export_dir, entry["path"]) or updated)
    if strict:
        for failed in report.failures:
            require_parity(ParityResult(**failed["parity"]), run.export_dir / failed["path"], STALE_FIX.format(run=run.dir))
    return report


def _export_onnx(run, out: Path, opset: int | None, simplify: bool | str) -> dict:
    from edgeblood.contract import artifact_metadata
    from edgeblood.exporters.onnx import DEFAULT_OPSET, export_onnx
    from edgeblood.preprocess import wrap_for_deployment

    out.parent.mkdir(parents=True, exist_ok=True)
    meta = artifact_metadata(run.metadata, target="onnx", run_name=run.name)
    return export_onnx(wrap_for_deployment(run.model, run.metadata), meta, out, in_size=run.in_size, opset=opset or DEFAULT_OPSET, simplify=simplify)


def _export_one(run, target: str, precision: str, out: Path, source_onnx: Path, *, opset, simplify, min_target: str) -> dict:
    from edgeblood.contract import artifact_metadata

    if target == "onnx":
        return _export_onnx(run, out, opset, simplify)
    meta = artifact_metadata(run.metadata, precision=precision, target=target, run_name=run.name)
    if target == "openvino":
        from edgeblood.exporters.openvino import export_openvino

        details = export_openvino(source_onnx, meta, out, precision=precision)
        details["source"] = "the ONNX export of this run (same graph as model.onnx)"
        return details
    from edgeblood.exporters.coreml import export_coreml
    from edgeblood.preprocess import wrap_for_deployment

    model = wrap_for_deployment(run.model, run.metadata, with_label=False)  # Core ML adds classLabel itself
    return export_coreml(model, meta, run.classes, out, in_size=run.in_size, precision=precision, min_target=min_target)


def _export_captures(run, targets: list[str], staging: Path, export_dir: Path, source_onnx: Path, data_dir, parity_images,
                     report: ExportReport, step) -> None:
    """The whole-capture variants (exporters/capture.py), parity-checked on captures, moved into place, recorded."""
    from edgeblood.contract import artifact_metadata
    from edgeblood.exporters.capture import build_capture_model, build_capture_openvino, check_capture_parity, load_capture_parity_frames, replace_jpeg

    frames, labels, description = load_capture_parity_frames(run, data_dir, parity_images)
    report.notes.append(f"capture variants: run on {len(frames)} whole frames ({description}) and compared with the Python path "
                        f"({replace_jpeg(run.framing).describe()}, then PyTorch); pass: >= 99.5 % top-1 agreement")
    for target in targets:
        rel = CAPTURE_PATHS[target]
        staged = staging / "capture" / rel
        step(f"exporting {target} capture variant (framing in the graph)")
        t0 = time.perf_counter()
        meta = artifact_metadata(run.metadata, target=target, run_name=run.name)
        if target == "onnx":
            details = build_capture_model(source_onnx, run.framing, run.in_size, staged, meta)
        else:
            details = build_capture_openvino(export_dir / ARTIFACT_PATHS[("openvino", "fp32")], run.framing, run.in_size, staged, meta)
        seconds = time.perf_counter() - t0
        step(f"checking {target} capture variant on {len(frames)} captures")
        parity = check_capture_parity(staged, run, frames, labels, description)
        _move_into_place(staged, export_dir / rel)
        entry = {"target": target, "precision": "fp32", "variant": "capture", "path": rel, "runtime": RUNTIME_OF[target],
                 "parity": parity, "export_seconds": round(seconds, 3), "source_run": run.name, "input": details.pop("input"),
                 "outputs": ["probabilities", "label"], "details": details}
        mf.record_artifact(export_dir, entry)
        report.artifacts.append(mf.find_artifact(export_dir, rel) or entry)


def _input_contract(target: str, size: int) -> dict:
    if target == "coreml":
        return {"name": "image", "type": "image", "color": "RGB", "width": size, "height": size, "batch": 1, "scale": 1.0, "bias": [0, 0, 0]}
    return {"name": "image", "shape": ["N", 3, size, size], "layout": "NCHW", "dtype": "float32", "range": [0, 255], "channel_order": "RGB"}


def _check(target: str, precision: str, staged: Path, data: ParityData | None, run) -> ParityResult:
    """Spec validation for Core ML, then the numeric check wherever the runtime can predict here."""
    if target == "coreml":
        from edgeblood.exporters.coreml import NUMERIC_SKIP_REASON, can_predict, validate_coreml

        try:
            validate_coreml(staged, run.classes, run.in_size)
        except EdgebloodError as exc:
            return ParityResult(status="failed", runtime="coreml", reason=str(exc), thresholds=thresholds_for(precision))
        if not can_predict() or data is None:
            result = ParityResult(status="skipped", runtime="coreml", reason=f"spec validated (inputs, outputs, labels, metadata); {NUMERIC_SKIP_REASON}")
            return result
    return check_parity(staged, data, precision=precision)


def _coreml_predicts() -> bool:
    from edgeblood.exporters.coreml import can_predict

    return can_predict()


def _require_libraries(targets: set[str]) -> None:
    """Fail before any work when a target's converter is missing (with the pip extra to install)."""
    if targets & {"onnx", "openvino"}:
        from edgeblood.exporters.onnx import require_onnx

        require_onnx()
    if "openvino" in targets:
        from edgeblood.exporters.openvino import require_openvino

        require_openvino()
    if "coreml" in targets:
        from edgeblood.exporters.coreml import require_coremltools

        require_coremltools()


def _require_writable(export_dir: Path) -> None:
    """Refuse early when the export folder (or the run folder that will hold it) is not writable."""
    if export_dir.exists() and not export_dir.is_dir():
        raise EdgebloodError(f"{export_dir} is a file, not a folder; move it away so the artifacts can be written there")
    probe = export_dir if export_dir.exists() else export_dir.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise EdgebloodError(f"cannot write to {probe} (permission denied); make it writable or copy the run somewhere writable")


def _move_into_place(staged: Path, dest: Path) -> None:
    """Move a finished artifact (file, IR pair or .mlpackage folder) over ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if staged.is_dir():
        backup = None
        if dest.exists():
            backup = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, backup)
        os.replace(staged, dest)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        return
    for f in mf.artifact_files(staged)[::-1]:  # .bin before .xml: the .xml appears only with its weights
        with contextlib.suppress(FileNotFoundError):
            os.replace(f, dest.parent / f.name)
