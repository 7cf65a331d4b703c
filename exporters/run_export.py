"""``export_run``: every requested artifact of a run, staged, parity-checked, moved into place, recorded.

Artifacts are written into a staging folder inside the run directory and moved into
``runs/<name>/export/`` only when complete, so an error (or Ctrl-C) never leaves half an artifact
behind. What each target writes, and where, is declared by the target itself (``edgeblood.targets``);
the built-in layout:

    export/model.onnx                   ONNX fp32 (fp16/int8 variants come from `edgeblood compress`)
    export/openvino/model.xml (+.bin)   OpenVINO IR fp32;  openvino/model-fp16.xml  fp16 weights
    export/model.mlpackage              Core ML ML program fp32;  model-fp16.mlpackage  fp16 compute
    export/model.tflite                 LiteRT fp32, signatures batch 1 / 64 (int8: edgeblood compress)
    export/model.pte                    ExecuTorch fp32 (XNNPACK), methods batch 1 / 64 (int8: edgeblood compress)
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
from edgeblood.parity import (
    DEFAULT_IMAGES,
    FAILED,
    NOT_SHIPPABLE,
    SKIPPED,
    ParityData,
    ParityResult,
    check_parity,
    load_parity_data,
    require_parity,
    thresholds_for,
)
from edgeblood.provenance import utc_now
from edgeblood.targets import ExportJob, ExportOptions, Target, all_targets, get_target, parse_targets

EXPORT_PRECISIONS = ("fp32", "fp16")  # int8 and the other compressed precisions come from `edgeblood compress`
STALE_FIX = "re-export it from this run with `edgeblood export {run} --force`"

Progress = Callable[[str, int, int], None]  # (what is happening, steps done, steps in all)
Pair = tuple[Target, str]  # (target, precision)


@dataclass
class ExportReport:
    run_dir: Path
    export_dir: Path
    artifacts: list[dict] = field(default_factory=list)  # manifest entries, in export order
    notes: list[str] = field(default_factory=list)
    verified: bool = False  # made by verify_exports (a failure means stale/wrong files, not a bad export)

    @property
    def failures(self) -> list[dict]:
        return [a for a in self.artifacts if a["parity"].get("status") in NOT_SHIPPABLE]


def plan(targets: Sequence[str], precisions: Sequence[str]) -> tuple[list[Pair], list[str]]:
    """The (target, precision) pairs to export, in export order, and notes about requested pairs that are not exports."""
    chosen = parse_targets(targets)
    precisions = [p.lower() for p in precisions]
    for p in precisions:
        if p not in EXPORT_PRECISIONS:
            hint = "; int8 comes from `edgeblood compress --quantize int8`" if p.startswith("int") else ""
            raise EdgebloodError(f"unknown precision '{p}'; choose fp32 or fp16{hint}")
    pairs, notes = [], []
    for target in chosen:
        for p in dict.fromkeys(precisions):
            if p in target.artifacts:
                pairs.append((target, p))
            else:
                notes.append(f"no {target.title} {p} export: {target.title} is exported in {', '.join(target.artifacts)} only; other "
                             f"precisions come from `edgeblood compress --quantize ... --target {target.name}` where a method exists "
                             "(`edgeblood compress --help`)")
    if not pairs:
        raise EdgebloodError(notes[0] if notes else "nothing to export; pass --target")
    return pairs, notes


def check_request(
    run, targets: Sequence[str], precisions: Sequence[str], *, force: bool = False, min_target: str = "iOS16", opset: int | None = None
) -> tuple[list[Pair], list[str]]:
    """Every check that needs no work: targets, precisions, converters installed, options, outputs free, folder writable."""
    pairs, notes = plan(targets, precisions)
    options = ExportOptions(opset=opset, min_target=min_target)
    for target in dict.fromkeys(t for t, _ in pairs):
        target.require()
        if target.source:
            get_target(target.source).require()
        if target.check_options:
            target.check_options(options)
    existing = [run.export_dir / t.artifacts[p] for t, p in pairs if (run.export_dir / t.artifacts[p]).exists()]
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

    ``capture``: also write the whole-capture variant of each fp32 artifact whose target has one
    (framing in the graph) and check it on captures (the PBC val originals when here) against the
    Python framing path.

    ``strict``: raise an EdgebloodError with the figures after all artifacts are recorded if any
    failed its parity check (the CLI prints its table first, then raises).
    """
    from edgeblood.runs import Run, open_run

    run = run if isinstance(run, Run) else open_run(run)
    pairs, notes = check_request(run, targets, precisions, force=force, min_target=min_target, opset=opset)
    options = ExportOptions(opset=opset, simplify=simplify, min_target=min_target)
    export_dir = run.export_dir
    requested = {t.name for t, _ in pairs}
    # targets converted from another target's fp32 artifact that was not asked for: made in staging only
    hidden_sources = list(dict.fromkeys(get_target(t.source) for t, _ in pairs if t.source and t.source not in requested))
    captures = [t for t, p in pairs if capture and p == "fp32" and t.capture is not None]

    report = ExportReport(run_dir=run.dir, export_dir=export_dir, notes=notes)
    step = _stepper(progress, total=3 + 2 * len(pairs) + len(hidden_sources) + 2 * len(captures))
    step(f"loading {'all' if parity_images is None else parity_images} parity test images")
    data = _parity_data_if_any_runs_here(run, pairs, parity_images, data_dir, report)

    staging = Path(tempfile.mkdtemp(prefix=".export-staging-", dir=run.dir))
    try:
        sources: dict[str, Path] = {}  # target name -> its fp32 artifact made in this export (what later targets convert)
        for source in hidden_sources:
            step(f"exporting {source.name} (the source of {', '.join(t.title for t, _ in pairs if t.source == source.name)})")
            sources[source.name] = _export_hidden_source(run, source, staging, options, sources)
        for target, precision in pairs:
            dest = _export_and_record(run, target, precision, staging, options, sources, data, report, step)
            if precision == "fp32":
                sources[target.name] = dest
        if captures:
            _export_captures(run, captures, staging, export_dir, sources, options, data_dir, parity_images, report, step)
        step("writing MODEL_CARD.md")
        report.notes.append(f"model card: {write_model_card(run, export_dir)}")
        step("done")
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    if strict:
        for failed in report.failures:
            require_parity(ParityResult.from_dict(failed["parity"]), export_dir / failed["path"])
    return report


def _stepper(progress: Progress | None, total: int) -> Callable[[str], None]:
    """A ``step(message)`` that reports each step of ``total`` to ``progress`` (steps done before this one)."""
    done = 0

    def step(msg: str) -> None:
        nonlocal done
        if progress is not None:
            progress(msg, done, total)
        done += 1

    return step


def _parity_data_if_any_runs_here(run, pairs: list[Pair], parity_images: int | None, data_dir, report: ExportReport) -> ParityData | None:
    """The parity images, loaded only when one of the requested targets' runtimes predicts on this machine."""
    from edgeblood.runtimes import get_runtime

    if not any(get_runtime(t.runtime).available()[0] for t, _ in pairs):
        return None
    data = load_parity_data(run, parity_images, data_dir=data_dir)
    report.notes.append(f"parity: {len(data.labels)} {data.split} images from the {data.description} vs the run's PyTorch model")
    if data.warning:
        report.notes.append(f"WARNING: {data.warning}")
    return data


def _export_hidden_source(run, source: Target, staging: Path, options: ExportOptions, sources: dict[str, Path]) -> Path:
    """The fp32 artifact of a target that was not requested but that a requested one converts, made in staging only."""
    from edgeblood.contract import artifact_metadata

    out = staging / "source" / source.fp32_path
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = artifact_metadata(run.meta, target=source.name, run_name=run.name)
    source.export(ExportJob(run=run, precision="fp32", out=out, metadata=meta, options=options, sources=dict(sources)))
    return out


def _export_and_record(run, target: Target, precision: str, staging: Path, options: ExportOptions, sources: dict[str, Path],
                       data: ParityData | None, report: ExportReport, step: Callable[[str], None]) -> Path:
    """One requested artifact: exported into staging, parity-checked, moved into export/, recorded in the manifest."""
    from edgeblood.contract import artifact_metadata

    rel = target.artifacts[precision]
    staged = staging / "out" / rel
    staged.parent.mkdir(parents=True, exist_ok=True)
    step(f"exporting {target.name} {precision}")
    t0 = time.perf_counter()
    meta = artifact_metadata(run.meta, precision=precision, target=target.name, run_name=run.name)
    details = target.export(ExportJob(run=run, precision=precision, out=staged, metadata=meta, options=options, sources=dict(sources)))
    seconds = time.perf_counter() - t0

    step(f"checking {target.name} {precision} against PyTorch")
    parity = check_artifact(target, precision, staged, data, run)
    dest = run.export_dir / rel
    _move_into_place(staged, dest)
    entry = {
        "target": target.name,
        "precision": precision,
        "path": rel,
        "runtime": target.runtime,
        "parity": parity.to_dict(),
        "export_seconds": round(seconds, 3),
        "source_run": run.name,
        "input": target.input_contract(run.in_size),
        "outputs": artifact_outputs(target, meta),
        "details": details,
    }
    mf.record_artifact(run.export_dir, entry)
    report.artifacts.append(mf.find_artifact(run.export_dir, rel) or entry)
    return dest


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
    known = {t.name: t for t in all_targets()}
    entries = [a for a in manifest["artifacts"] if a.get("target") in known and a.get("precision") in known[a["target"]].artifacts
               and a.get("variant") != "capture"]  # capture variants are checked on captures, at export
    if not entries:
        raise EdgebloodError(f"{run.export_dir} has no exported artifacts to verify; run `edgeblood export {run.dir}` first")
    data = load_parity_data(run, parity_images, data_dir=data_dir)
    report = ExportReport(run_dir=run.dir, export_dir=run.export_dir, verified=True, notes=[f"WARNING: {data.warning}"] if data.warning else [])
    for entry in entries:
        path = run.export_dir / entry["path"]
        if not path.exists():
            parity = ParityResult(status=FAILED, reason=f"{path} is missing; re-export with `edgeblood export --force`")
        else:
            parity = check_artifact(known[entry["target"]], entry["precision"], path, data, run)
        updated = {**entry, "parity": parity.to_dict(), "verified": utc_now()}
        for key in ("files", "size_bytes", "sha256"):  # recomputed from the files on disk
            updated.pop(key, None)
        mf.record_artifact(run.export_dir, updated)
        report.artifacts.append(mf.find_artifact(run.export_dir, entry["path"]) or updated)
    if strict:
        for failed in report.failures:
            require_parity(ParityResult.from_dict(failed["parity"]), run.export_dir / failed["path"], STALE_FIX.format(run=run.dir))
    return report


def _export_captures(run, targets: list[Target], staging: Path, export_dir: Path, sources: dict[str, Path], options: ExportOptions,
                     data_dir, parity_images, report: ExportReport, step) -> None:
    """The whole-capture variants (exporters/capture.py), parity-checked on captures, moved into place, recorded."""
    from edgeblood.contract import artifact_metadata
    from edgeblood.exporters.capture import check_capture_parity, load_capture_parity_frames, replace_jpeg

    frames, labels, description = load_capture_parity_frames(run, data_dir, parity_images)
    report.notes.append(f"capture variants: run on {len(frames)} whole frames ({description}) and compared with the Python path "
                        f"({replace_jpeg(run.framing).describe()}, then PyTorch); pass: >= 99.5 % top-1 agreement")
    for target in targets:
        rel = target.capture.path
        staged = staging / "capture" / rel
        step(f"exporting {target.name} capture variant (framing in the graph)")
        t0 = time.perf_counter()
        meta = artifact_metadata(run.meta, target=target.name, run_name=run.name)
        details = target.capture.build(ExportJob(run=run, precision="fp32", out=staged, metadata=meta, options=options, sources=dict(sources)),
                                       sources[target.name])
        seconds = time.perf_counter() - t0
        step(f"checking {target.name} capture variant on {len(frames)} captures")
        parity = check_capture_parity(staged, run, frames, labels, description)
        _move_into_place(staged, export_dir / rel)
        entry = {"target": target.name, "precision": "fp32", "variant": "capture", "path": rel, "runtime": target.runtime,
                 "parity": parity, "export_seconds": round(seconds, 3), "source_run": run.name, "input": details.pop("input"),
                 "outputs": artifact_outputs(target, meta), "details": details}
        mf.record_artifact(export_dir, entry)
        report.artifacts.append(mf.find_artifact(export_dir, rel) or entry)


def check_artifact(target: Target, precision: str, path: Path, data: ParityData | None, run) -> ParityResult:
    """The target's own spec validation (if it has one), then the numeric check wherever its runtime predicts here."""
    validated = ""
    if target.validate is not None:
        try:
            target.validate(path, run)
        except EdgebloodError as exc:
            return ParityResult(status=FAILED, runtime=target.runtime, reason=str(exc), thresholds=thresholds_for(precision))
        validated = "spec validated (inputs, outputs, labels, metadata); "
    if data is None:
        from edgeblood.runtimes import get_runtime

        why = get_runtime(target.runtime).available()[1]
        return ParityResult(status=SKIPPED, runtime=target.runtime, reason=f"{validated}numeric check skipped: {why}")
    result = check_parity(path, data, precision=precision)
    if result.status == SKIPPED and validated:
        result.reason = validated + result.reason
    return result


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


def artifact_outputs(target, meta: dict[str, str]) -> list[str]:
    """The target's outputs, plus ``domain`` where the artifact's contract says its graph carries the domain check."""
    import json

    from edgeblood.contract import DOMAIN_NAME

    listed = json.loads(meta.get("outputs") or "[]")
    return list(target.outputs) + ([DOMAIN_NAME] if DOMAIN_NAME in listed and DOMAIN_NAME not in target.outputs else [])
