"""Measuring what compress made, and recording it: the table's rows and the manifest's entries.

Every artifact is run by the runtime that reads it (ONNX Runtime, OpenVINO, Core ML where it can
predict, PyTorch for checkpoints) on the whole test split, judged by the one parity judge
(``edgeblood.parity``) against the run's PyTorch model, and compared with the SOURCE run's fp32 on
the same runtime: accuracy, macro-F1 and per-class recall deltas in percentage points, top-1
agreement, and its own calibration error. A class losing more than ``RECALL_WARNING_PT`` of recall
is named in a warning. A quantized artifact keeps the temperature fitted for the fp32 model; its
``refit_temperature`` says which temperature its own val outputs would want and what test ECE that
would give, with a line under the table when re-calibrating would move ECE by more than
``REFIT_ECE_NOTE``. The figures go into the run's ``export/manifest.json``: a new entry for a
method-made variant, an ``evaluation`` added to the exporter's entry for fp32 and exporter-made fp16.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeblood.compression.make_artifacts import MadeArtifact
from edgeblood.compression.steps import Steps
from edgeblood.cpu import this_cpu_label
from edgeblood.parity import FAILED, MISMATCH, SKIPPED, precision_class
from edgeblood.targets import get_target

RECALL_WARNING_PT = 2.0  # a class losing more recall than this is named in a warning line
KERNEL_AGREEMENT_MIN = 0.99  # a method's kernel_check below this share of equal top-1 predictions gets a warning line
REFIT_ECE_NOTE = 0.005  # a refitted temperature that would move test ECE by more than this is worth a line under the table
UNSTRUCTURED = "unstructured-magnitude-pruning"


@dataclass
class Row:
    """One variant as the table shows it (and as the manifest records it)."""

    variant: str
    target: str  # pytorch | onnx | openvino | coreml
    precision: str
    path: str | None  # artifact relative to the run's export folder (checkpoint.pt for PyTorch rows)
    size_bytes: int | None
    size_pct: float | None  # % of the source run's fp32 artifact of the same target
    params: int
    macs: int
    measured: dict  # status, accuracy, macro_f1, per_class_recall, n_images, split, runtime, device (or reason)
    delta: dict | None  # vs the source run's fp32 on the same runtime
    baseline: str = ""
    gzip_bytes: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        from edgeblood.compression.measure import jsonable

        d = {k: getattr(self, k) for k in ("variant", "target", "precision", "path", "size_bytes", "size_pct", "params", "macs",
                                            "delta", "baseline", "gzip_bytes", "notes")}
        d["measured"] = jsonable(self.measured)
        return d


@dataclass
class RunReport:
    run_dir: Path
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "title": self.title, "rows": [r.to_dict() for r in self.rows], "notes": self.notes}


@dataclass
class Baseline:
    """What the derived rows of one runtime are compared with: the source run's fp32 on it."""

    measured: dict
    size_bytes: int | None
    label: str


@dataclass
class RunSheet:
    """One run being measured: its report so far and its full test split with the PyTorch reference."""

    run: object
    is_source: bool
    report: RunReport
    test: object  # edgeblood.parity.ParityData
    params: int
    macs: int

    @property
    def compression(self) -> dict:
        return self.run.meta.compression or {}

    def row(self, variant: str, target: str, precision: str, path: str | None, size: int | None, measured: dict) -> Row:
        return Row(variant, target, precision, path, size, None, self.params, self.macs, measured, None)


class Recorder:
    """Measures the artifacts of the source run and of the runs derived from it, and records them."""

    def __init__(self, source, data, steps: Steps):
        self.source = source
        self.data = data
        self.steps = steps
        self.baselines: dict[str, Baseline] = {}  # target (or "pytorch") -> the source run's fp32 on that runtime
        self._val: tuple | None = None

    def val_split(self) -> tuple:
        """Val images in the deployment layout and their labels (what a quantized artifact's temperature is refitted on)."""
        if self._val is None:
            from edgeblood.runtimes import to_model_input

            self._val = (to_model_input(self.data.images("val")), self.data.labels("val"))
        return self._val

    # ------------------------------------------------------------------------------------ rows
    def begin(self, run) -> RunSheet:
        """A report for ``run`` with its PyTorch fp32 row (the checkpoint, measured on the test split)."""
        from edgeblood.compression.measure import measure_model, test_split_with_reference

        is_source = run is self.source
        report = RunReport(run_dir=run.dir, title=report_title(run, self.source))
        sheet = RunSheet(run, is_source, report, None, int(run.meta.model.params), int(run.meta.model.macs))
        self.steps.step(f"{run.name}: PyTorch fp32 on the test split")
        pt = measure_model(run.model, self.data.images("test"), self.data.labels("test"), run.classes, run.mean, run.std)
        row = sheet.row("fp32", "pytorch", "fp32", "checkpoint.pt", run.checkpoint_path.stat().st_size, pt)
        if is_source:
            self.baselines["pytorch"] = Baseline(pt, row.size_bytes, "PyTorch fp32 of " + run.name)
        else:
            self._compare_checkpoint(row, sheet.compression)
        report.rows.append(row)
        sheet.test = test_split_with_reference(run, self.data)
        return sheet

    def add_fp32(self, sheet: RunSheet, made: MadeArtifact) -> Row:
        """The target's fp32 row: the baseline of its runtime in the source run, compared with it in a derived run."""
        run = sheet.run
        if made.note and sheet.is_source:
            sheet.report.notes.append(made.note)
        self.steps.step(f"{run.name}: {made.target} fp32 on the test split")
        m = measure_on_test(made.path, sheet.test, "fp32", run.classes)
        row = sheet.row("fp32", made.target, "fp32", made.rel, artifact_size(made.path), m)
        if sheet.is_source:
            self.baselines[made.target] = Baseline(m, row.size_bytes, f"{made.target} fp32 of {run.name}")
        else:
            self.compare(row, made.target)
            if sheet.compression.get("method") == UNSTRUCTURED:
                self._note_gzip(row, made)
        _annotate(row, m)
        record_evaluation(run, made.rel, m, row.delta)
        sheet.report.rows.append(row)
        return row

    def add_variant(self, sheet: RunSheet, made: MadeArtifact) -> Row:
        """A quantized (or fp16) variant's row, compared with its target's fp32; recorded in the manifest."""
        v, run = made.variant, sheet.run
        self.steps.step(f"{run.name}: {v.target} {v.label} on the test split")
        val = self.val_split() if precision_class(v.precision) == "quantized" else None
        m = measure_on_test(made.path, sheet.test, v.precision, run.classes, val=val)
        row = sheet.row(v.label, v.target, v.precision, v.path, artifact_size(made.path), m)
        if made.details.get("accuracy_control"):
            row.notes.append(accuracy_control_line(made.details["accuracy_control"]))
        kernel_warning = kernel_check_line(made.details.get("kernel_check"))
        if kernel_warning:
            row.notes.append(kernel_warning)
        if refit_matters(m.get("refit_temperature")):
            row.notes.append(refit_line(m["refit_temperature"]))
        self.compare(row, v.target)
        _annotate(row, m)
        if v.via_exporter:
            record_evaluation(run, v.path, m, row.delta)
        else:
            record_variant(run, made, row)
        sheet.report.rows.append(row)
        return row

    # ----------------------------------------------------------------------------- comparing
    def compare(self, row: Row, target: str) -> None:
        """Deltas against the source run's fp32 on the same runtime; a class losing too much recall is named."""
        from edgeblood.compression.measure import delta

        base = self.baselines[target]
        row.delta = delta(row.measured, base.measured)
        lost = {c: pt for c, pt in ((row.delta or {}).get("per_class_recall_pt") or {}).items() if pt < -RECALL_WARNING_PT}
        if lost:
            row.notes.append("WARNING: " + ", ".join(f"{c} recall {pt:+.1f} pt" for c, pt in sorted(lost.items(), key=lambda kv: kv[1]))
                             + f" on the test split (more than {RECALL_WARNING_PT:g} pt lost against {base.label})")
        row.size_pct = 100.0 * row.size_bytes / base.size_bytes if row.size_bytes and base.size_bytes else None
        row.baseline = base.label

    def _compare_checkpoint(self, row: Row, compression: dict) -> None:
        """A derived run's checkpoint against the source's (sparsity only shows in its gzip size)."""
        from edgeblood.compression.measure import delta

        base = self.baselines["pytorch"]
        row.delta = delta(row.measured, base.measured)
        row.size_pct = 100.0 * row.size_bytes / base.size_bytes
        row.baseline = base.label
        if compression.get("method") == UNSTRUCTURED:
            row.gzip_bytes = compression.get("weights_gzip_bytes_after")
            row.notes.append(f"weight sparsity {compression.get('weight_sparsity', 0):.1%}; gzip of fp32 weights "
                             f"{compression.get('weights_gzip_bytes_before', 0) / 1e6:.2f} -> {compression.get('weights_gzip_bytes_after', 0) / 1e6:.2f} MB")

    def _note_gzip(self, row: Row, made: MadeArtifact) -> None:
        from edgeblood.compression.measure import gzip_size

        row.gzip_bytes = gzip_size(made.path)
        base_gz = gzip_size(self.source.export_dir / made.rel)
        row.notes.append(f"gzip -9: {base_gz / 1e6:.2f} -> {row.gzip_bytes / 1e6:.2f} MB; same dense file size and math")


# ---------------------------------------------------------------------------------- measuring

def measure_on_test(path: Path, test, precision: str, classes: list[str], *, val: tuple | None = None) -> dict:
    """Full-test-split figures of ``path`` with its own runtime, and the parity judge's verdict against PyTorch fp32.

    With ``val`` (images, labels), also the temperature that would minimise the artifact's own val NLL
    (``refit_temperature``): a quantized artifact inherits the fp32 model's, which int8 may no longer suit.
    """
    from edgeblood.compression.measure import refit_temperature, summarize
    from edgeblood.parity import compare, thresholds_for
    from edgeblood.runtimes import runtime_for_artifact

    runtime = runtime_for_artifact(path)
    ok, why = runtime.available()
    context = {"split": "test", "runtime": runtime.name, "device": "cpu_only" if runtime.name == "coreml" else "cpu"}
    if not ok:
        return {"status": SKIPPED, "reason": f"not measured here: {why}", **context}
    loaded = runtime.load(path, device=context["device"])
    probs = loaded.predict(test.images)
    parity = compare(probs, test, thresholds_for(precision), runtime=runtime.name, device=context["device"])
    if parity.status == MISMATCH and parity.agreement is None:  # no usable outputs (wrong shape)
        return {"status": FAILED, "reason": parity.reason, "parity": parity.to_dict(), **context}
    m = summarize(test.labels, probs, list(classes), **context)
    m["parity"] = parity.to_dict()
    # int8 kernels differ between CPUs (VNNI or not, AMX, NEON dot), so the figure says which one measured it
    m["cpu"] = this_cpu_label()
    if parity.status == MISMATCH:
        m["status"], m["reason"] = MISMATCH, f"exported but wrong: {parity.reason}"
    if val is not None and len(val[1]):
        m["refit_temperature"] = refit_temperature(loaded.predict(val[0]), val[1], probs, test.labels)
    return m


def refit_matters(refit: dict | None) -> bool:
    return refit is not None and abs(refit["test_ece_refit"] - refit["test_ece"]) > REFIT_ECE_NOTE


def refit_line(refit: dict) -> str:
    """Whether re-calibrating after quantization would matter, in one line."""
    return (f"temperature refitted on its own val outputs (x{refit['temperature']:.3g}) would move test ECE {refit['test_ece']:.3f} -> "
            f"{refit['test_ece_refit']:.3f}; it keeps the fp32 run's temperature (manifest: evaluation.refit_temperature)")


def accuracy_control_line(record: dict) -> str:
    """What --max-drop did for one artifact, in one line (val split; the table's figures are test)."""
    first, bound = record["drop_pt_all_layers"], record["max_drop_pt"]
    if not record.get("fell_back"):
        return f"val drop {first:.2f} pt within --max-drop {bound:g} (all layers int8)"
    kept = record.get("float_nodes") or []
    what = (f"kept {len(kept)} layer(s) in float ({', '.join(n['node'] + ' ' + n['op'] for n in kept[:4])}{', ...' if len(kept) > 4 else ''})"
            if kept else record.get("method", "fell back"))
    verdict = "" if record.get("met") else "; STILL ABOVE the bound, best found kept"
    return f"val drop {first:.2f} pt > --max-drop {bound:g}: {what} -> val drop {record['drop_pt']:.2f} pt{verdict} (manifest: compression.accuracy_control)"


def report_title(run, source) -> str:
    """The source run's name, or what a derived run is and where it came from."""
    if run is source:
        return run.name
    return f"{run.name}: {_derived_label(run.meta.compression or {})} (from {source.name})"


def _derived_label(comp: dict) -> str:
    if comp.get("method") == "structured-channel-pruning":
        return (f"channel-pruned by {comp.get('target', 'macs')}, keeps {comp.get('macs_kept', 0):.1%} of MACs and "
                f"{comp.get('params_kept', 0):.1%} of params, {comp.get('finetune', {}).get('epochs', 0)} fine-tune epoch(s)")
    if comp.get("method") == UNSTRUCTURED:
        return f"{comp.get('weight_sparsity', 0):.0%} of weights zeroed"
    return comp.get("method", "derived")


def _annotate(row: Row, m: dict) -> None:
    if m.get("status") != "ok" and m.get("reason"):
        row.notes.append(m["reason"])


def artifact_size(path: Path) -> int | None:
    from edgeblood.manifest import artifact_size as size

    return size(path) if Path(path).exists() else None


# ---------------------------------------------------------------------------------- recording

def record_variant(run, made: MadeArtifact, row: Row) -> None:
    """A new manifest entry for a method-made variant: how it was made, its contract (the fp32's) and its figures."""
    from edgeblood import manifest as mf

    v, m, details = made.variant, row.measured, made.details
    target = get_target(v.target)
    fp32_entry = mf.find_artifact(run.export_dir, target.fp32_path) or {}
    mf.record_artifact(run.export_dir, {
        "target": v.target,
        "precision": v.precision,
        **({"variant": v.tag} if v.tag else {}),
        "path": v.path,
        "runtime": target.runtime,
        "parity": m.get("parity") or {"status": SKIPPED, "reason": m.get("reason", "")},
        "export_seconds": details.pop("seconds", None),
        "source_run": run.name,
        "source_artifact": target.fp32_path,
        "method": v.method.name,
        "input": fp32_entry.get("input"),
        "outputs": _outputs_of(fp32_entry.get("outputs"), v),
        "compression": details,
        "evaluation": evaluation_record(m),
        "delta_vs_fp32": row.delta,
        "delta_baseline": row.baseline,
    })


def record_evaluation(run, rel: str, m: dict, d: dict | None) -> None:
    """Add the full-test-split figures to an existing manifest entry (fp32 / exporter-made fp16)."""
    from edgeblood import manifest as mf

    entry = mf.find_artifact(run.export_dir, rel)
    if entry is None:
        return
    entry = dict(entry)
    entry["evaluation"] = evaluation_record(m)
    if d is not None:
        entry["delta_vs_fp32"] = d
    mf.record_artifact(run.export_dir, entry)


def evaluation_record(m: dict) -> dict:
    """A measurement as the manifest keeps it: no raw predictions, no parity (the entry has its own)."""
    from edgeblood.compression.measure import jsonable

    return {k: v for k, v in jsonable(m).items() if k != "parity"}


def _outputs_of(fp32_outputs, variant) -> list[str] | None:
    """The fp32 artifact's outputs, less ``domain`` for the one int8 variant built without it (ExecuTorch PT2E)."""
    if fp32_outputs is None or variant.target != "executorch":
        return fp32_outputs
    return [o for o in fp32_outputs if o != "domain"]


def kernel_check_line(record: dict | None) -> str | None:
    """The WARNING under compress's table when this CPU's int8 kernels do not compute the model's arithmetic, else None.

    A method that can run its artifact two ways (fused kernels, and an unfused reference that follows the model's
    rounding) records ``kernel_check``; ONNX Runtime's static int8 does (edgeblood.exporters.onnx.kernel_check).
    Near-tie flips do not count (``decisive_agreement``).
    """
    if not record or record["decisive_agreement"] >= KERNEL_AGREEMENT_MIN:
        return None
    return (f"WARNING: on this CPU ({record['cpu']}) the int8 kernels agree with the model's own int8 arithmetic on only "
            f"{100 * record['decisive_agreement']:.1f} % of {record['images']} images (near-ties aside; largest probability difference "
            f"{record['max_abs_diff']:.2f}): its accuracy here is this CPU's, and another CPU may give another (manifest: compression.kernel_check)")
