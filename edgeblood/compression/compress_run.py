"""``compress``: every requested variant made, re-measured on the full test split, recorded, tabulated.

    reports = compress("runs/se-cnn-28px", CompressOptions(quantize=("int8",), targets=("onnx", "openvino")))

One ``RunReport`` per run: the source run (its fp32 artifacts and their quantized variants) and each
run directory derived by pruning (exported the same way). Every row is measured with the runtime
that reads its artifact (ONNX Runtime, OpenVINO, Core ML where it can predict, PyTorch for
checkpoints) on the whole test split, and compared with the SOURCE run's fp32 on the same runtime:
accuracy, macro-F1 and per-class recall deltas in percentage points, plus top-1 agreement.
Compressed artifacts are recorded in the run's ``export/manifest.json`` next to the exporter's entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeblood.compression.methods import QUANTIZE_CHOICES, QuantizeJob, Variant, all_methods, variants_for
from edgeblood.errors import EdgebloodError
from edgeblood.parity import FAILED, MISMATCH, SKIPPED
from edgeblood.targets import choices_text, get_target, parse_targets

DEFAULT_MAX_DROP = 0.3  # percentage points of val accuracy (issue 19: a bound a user can rely on, checked on val, not test)
RECALL_WARNING_PT = 2.0  # a class losing more recall than this is named in a warning line
Progress = Callable[[str, int, int], None]  # (what is happening, steps done, steps in all)
Say = Callable[[str], None]


@dataclass
class CompressOptions:
    quantize: tuple[str, ...] = ()
    targets: tuple[str, ...] = ("onnx",)
    calibration_images: int = 512
    calibration_methods: tuple[str, ...] = ("minmax",)
    max_drop: float | None = DEFAULT_MAX_DROP  # percentage points of val accuracy an int8 artifact may lose (ORT, OpenVINO fall back)
    dynamic: bool = True  # ONNX Runtime dynamic int8 as a comparison point
    palettize_bits: tuple[int, ...] = (6, 4)  # Core ML palettization variants made with --quantize int8
    prune: float | None = None  # fraction of MACs/params to remove (structured)
    prune_by: str = "macs"
    importance: str = "magnitude"
    round_to: int | None = None
    finetune_epochs: int = 3
    finetune_lr: float | None = None
    unstructured: float | None = None  # fraction of weights to zero (unstructured, for comparison)
    force: bool = False
    data_dir: str | None = None
    device: str = "cpu"  # for fine-tuning
    seed: int = 0

    def validate(self) -> None:
        from edgeblood.compression.onnx_quant import CALIBRATION_METHODS
        from edgeblood.compression.prune import IMPORTANCES, PRUNE_BY, check_ratio

        self.quantize = tuple(dict.fromkeys(q.lower() for q in self.quantize))
        try:
            self.targets = tuple(t.name for t in parse_targets(self.targets))
        except EdgebloodError:
            raise EdgebloodError(f"unknown --target in '{','.join(self.targets)}'; choose {choices_text()}") from None
        self.calibration_methods = tuple(dict.fromkeys(m.lower() for m in self.calibration_methods))
        for q in self.quantize:
            if q not in QUANTIZE_CHOICES:
                raise EdgebloodError(f"--quantize must be int8 or fp16 (got '{q}')")
        for m in self.calibration_methods:
            if m not in CALIBRATION_METHODS:
                raise EdgebloodError(f"--calibration-method must be one of {', '.join(CALIBRATION_METHODS)} (got '{m}')")
        if not self.quantize and self.prune is None and self.unstructured is None:
            raise EdgebloodError("nothing to do: pass --quantize int8|fp16 and/or --prune RATIO / --unstructured RATIO")
        if "int8" in self.quantize and self.calibration_images < 1:
            raise EdgebloodError(f"--calibration-images must be at least 1 (got {self.calibration_images}); 512 is the default")
        if self.prune is not None:
            check_ratio(self.prune, "--prune")
        if self.unstructured is not None:
            check_ratio(self.unstructured, "--unstructured")
        if self.prune_by not in PRUNE_BY:
            raise EdgebloodError(f"--prune-by must be one of {', '.join(PRUNE_BY)} (got '{self.prune_by}')")
        if self.importance not in IMPORTANCES:
            raise EdgebloodError(f"--importance must be one of {', '.join(IMPORTANCES)} (got '{self.importance}')")
        if self.finetune_epochs < 0:
            raise EdgebloodError(f"--finetune-epochs must be >= 0 (got {self.finetune_epochs})")
        if self.max_drop is not None and not 0 < self.max_drop <= 100:
            raise EdgebloodError(f"--max-drop is in percentage points of val accuracy and must be in (0, 100] (got {self.max_drop}; 100 = no bound)")
        if self.round_to is not None and self.round_to < 1:
            raise EdgebloodError(f"--round-to must be >= 1 (got {self.round_to})")


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


def compress(run, options: CompressOptions, *, say: Say | None = None, progress: Progress | None = None) -> list[RunReport]:
    """Make and measure everything ``options`` asks for; returns one report per run (source first)."""
    from edgeblood.compression.calibration import calibration_set, to_contract
    from edgeblood.compression.measure import data_for_run
    from edgeblood.runs import Run, open_run

    options.validate()
    say = say or (lambda _m: None)
    run = run if isinstance(run, Run) else open_run(run)
    variants = plan_variants(options, say)
    _require_libraries(options, variants)
    data = data_for_run(run, options.data_dir)
    session = _Session(run=run, data=data, options=options, say=say, progress=progress)
    session.total = _count_steps(options, variants)
    say(f"data: {data.describe()}")
    if data.is_sample:
        say("[yellow]embedded sample: every accuracy below is a smoke-test figure on 96 test images, not a BloodMNIST result[/]")

    _refuse_existing(run, variants, options)
    if "int8" in options.quantize:
        session.calibration = calibration_set(data.images("train"), data.labels("train"), options.calibration_images, options.seed)
        n_train = len(data.labels("train"))
        say(f"calibration: {len(session.calibration)} train images, stratified by class (seed {options.seed})"
            + (f" - all of the train split, fewer than the {options.calibration_images} asked" if options.calibration_images > n_train else ""))
        if options.max_drop is not None:
            session.validation = (to_contract(data.images("val")), data.labels("val"))

    reports = [session.measure_run(run, variants, source=True)]
    derived = []
    if options.prune is not None:
        derived.append(session.pruned_run())
    if options.unstructured is not None:
        derived.append(session.sparse_run())
    for child in derived:
        reports.append(session.measure_run(child, variants, source=False))
    from edgeblood.exporters.model_card import write_model_card

    for child in [run, *derived]:  # the card lists the artifacts and compression: keep it in step with the manifest
        if child.export_dir.is_dir():
            write_model_card(child)
    session.step("done")
    return reports


def plan_variants(options: CompressOptions, say: Say) -> list[Variant]:
    """The registered methods' variants for every requested target (edgeblood.compression.methods)."""
    o = options
    out = [v for t in o.targets for v in variants_for(get_target(t), o)]
    chosen = {v.method.name for v in out if v.method is not None}
    if "int8" in o.quantize and o.max_drop not in (None, DEFAULT_MAX_DROP) and not any(m.bounds_accuracy_drop for m in all_methods() if m.name in chosen):
        bounded = sorted({m.target for m in all_methods() if m.bounds_accuracy_drop})
        say(f"[yellow]note:[/] --max-drop applies to the int8 methods of {', '.join(bounded)}; add --target {bounded[0]} to use it")
    return out


@dataclass
class _Session:
    run: object
    data: object
    options: CompressOptions
    say: Say
    progress: Progress | None
    calibration: np.ndarray | None = None
    validation: tuple[np.ndarray, np.ndarray] | None = None
    baselines: dict = field(default_factory=dict)  # target -> (measurement, size_bytes, label)
    total: int = 1
    done: int = 0

    def step(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message, self.done, self.total)
        self.done += 1

    # ------------------------------------------------------------------------------------- plan
    def _calibration_info(self) -> dict:
        return {"images": int(len(self.calibration)), "split": "train", "stratified": True, "seed": self.options.seed} if self.calibration is not None else {}

    # ------------------------------------------------------------------------------- derived runs
    def pruned_run(self):
        from edgeblood.compression.pruned_run import structured_run
        from edgeblood.runs import open_run

        o = self.options
        self.step(f"structured pruning to {1 - o.prune:.0%} of the {o.prune_by} + {o.finetune_epochs} fine-tune epoch(s)")
        path = structured_run(self.run, self.data, o.prune, by=o.prune_by, importance=o.importance, round_to=o.round_to,
                              finetune_epochs=o.finetune_epochs, lr=o.finetune_lr, device=o.device, force=o.force, say=self.say,
                              on_batch=self._finetune_progress("structured pruning"))
        return open_run(path)

    def sparse_run(self):
        from edgeblood.compression.pruned_run import unstructured_run
        from edgeblood.runs import open_run

        o = self.options
        self.step(f"unstructured pruning of {o.unstructured:.0%} of the weights + {o.finetune_epochs} fine-tune epoch(s)")
        path = unstructured_run(self.run, self.data, o.unstructured, finetune_epochs=o.finetune_epochs, lr=o.finetune_lr,
                                device=o.device, force=o.force, say=self.say, on_batch=self._finetune_progress("unstructured pruning"))
        return open_run(path)

    def _finetune_progress(self, what: str):
        def on_batch(epoch: int, batch: int, batches: int) -> None:
            if self.progress is not None:
                self.progress(f"{what}: fine-tune epoch {epoch}/{self.options.finetune_epochs}, batch {batch}/{batches}", self.done, self.total)
        return on_batch

    # ---------------------------------------------------------------------------------- measure
    def measure_run(self, run, variants: list[Variant], *, source: bool) -> RunReport:
        """Rows for ``run``: PyTorch fp32, then per target its fp32 artifact and the variants."""
        from edgeblood.compression.measure import delta, measure_model

        comp = run.metadata.get("compression") or {}
        title = run.name if source else f"{run.name}: {_derived_label(comp)} (from {self.run.name})"
        report = RunReport(run_dir=run.dir, title=title)
        params, macs = int(run.metadata["model"]["params"]), int(run.metadata["model"]["macs"])
        self.step(f"{run.name}: PyTorch fp32 on the test split")
        pt = measure_model(run.model, self.data.images("test"), self.data.labels("test"), run.classes, run.mean, run.std)
        size = run.checkpoint_path.stat().st_size
        row = Row("fp32", "pytorch", "fp32", "checkpoint.pt",
                  size, None, params, macs, pt, None, baseline="")
        if source:
            self.baselines["pytorch"] = (pt, size, "PyTorch fp32 of " + run.name)
        else:
            row.delta = delta(pt, self.baselines["pytorch"][0])
            row.size_pct = 100.0 * size / self.baselines["pytorch"][1]
            row.baseline = self.baselines["pytorch"][2]
            if comp.get("method") == "unstructured-magnitude-pruning":
                row.gzip_bytes = comp.get("weights_gzip_bytes_after")
                row.notes.append(f"weight sparsity {comp.get('weight_sparsity', 0):.1%}; gzip of fp32 weights "
                                 f"{comp.get('weights_gzip_bytes_before', 0) / 1e6:.2f} -> {comp.get('weights_gzip_bytes_after', 0) / 1e6:.2f} MB")
        report.rows.append(row)

        test = self._test_data(run)
        for target in self.options.targets:
            fp32_rel = get_target(target).fp32_path
            fp32 = self._ensure_fp32(run, target, report if source else None)
            self.step(f"{run.name}: {target} fp32 on the test split")
            m = self._measure(fp32, test, "fp32")
            fp32_size = _artifact_size(fp32)
            row = Row("fp32", target, "fp32", fp32_rel, fp32_size, None, params, macs, m, None)
            if source:
                self.baselines[target] = (m, fp32_size, f"{target} fp32 of {run.name}")
            else:
                self._compare(row, target)
                if comp.get("method") == "unstructured-magnitude-pruning":
                    from edgeblood.compression.measure import gzip_size

                    row.gzip_bytes = gzip_size(fp32)
                    base_gz = gzip_size(self.run.export_dir / fp32_rel)
                    row.notes.append(f"gzip -9: {base_gz / 1e6:.2f} -> {row.gzip_bytes / 1e6:.2f} MB; same dense file size and math")
            _annotate(row, m)
            self._record_evaluation(run, fp32_rel, m, row.delta)
            report.rows.append(row)
            for v in (v for v in variants if v.target == target):
                report.rows.append(self._make_variant(run, v, fp32, test, params, macs, source))
        if source and "coreml" in self.options.targets and "int8" in self.options.quantize:
            from edgeblood.compression.coreml_compress import activation_skip_reason

            why = activation_skip_reason()
            if why:
                report.notes.append(f"Core ML W8A8 (activation) quantization: {why}")
        return report

    def _make_variant(self, run, v: Variant, fp32: Path, test, params: int, macs: int, source: bool) -> Row:
        from edgeblood import manifest as mf

        dest = run.export_dir / v.path
        self.step(f"{run.name}: {v.target} {v.label}")
        if v.via_exporter:  # fp16 OpenVINO/Core ML are exports (parity-checked there); reuse one unless --force
            if self.options.force or not dest.exists():
                from edgeblood.exporters.run_export import export_run

                export_run(run, [v.target], [v.precision], force=True, data_dir=self.options.data_dir, strict=False)
            details = {}
        else:
            details = v.method.make(QuantizeJob(source=fp32, dest=dest, calibration=self.calibration, calibration_info=self._calibration_info(),
                                                validation=self.validation, options=self.options, params=dict(v.params), run=run))
        self.step(f"{run.name}: {v.target} {v.label} on the test split")
        m = self._measure(dest, test, v.precision)
        row = Row(v.label, v.target, v.precision, v.path, _artifact_size(dest), None, params, macs, m, None)
        if details.get("accuracy_control"):
            row.notes.append(accuracy_control_line(details["accuracy_control"]))
        self._compare(row, v.target)
        _annotate(row, m)
        if v.via_exporter:
            self._record_evaluation(run, v.path, m, row.delta)
        else:
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
                **({"method": v.method.name}),
                "input": fp32_entry.get("input"),
                "outputs": fp32_entry.get("outputs"),
                "compression": details,
                "evaluation": _evaluation(m),
                "delta_vs_fp32": row.delta,
                "delta_baseline": row.baseline,
            })
        return row

    def _compare(self, row: Row, target: str) -> None:
        from edgeblood.compression.measure import delta

        base, base_size, label = self.baselines[target]
        row.delta = delta(row.measured, base)
        lost = {c: pt for c, pt in ((row.delta or {}).get("per_class_recall_pt") or {}).items() if pt < -RECALL_WARNING_PT}
        if lost:
            row.notes.append("WARNING: " + ", ".join(f"{c} recall {pt:+.1f} pt" for c, pt in sorted(lost.items(), key=lambda kv: kv[1]))
                             + f" on the test split (more than {RECALL_WARNING_PT:g} pt lost against {label})")
        row.size_pct = 100.0 * row.size_bytes / base_size if row.size_bytes and base_size else None
        row.baseline = label

    def _ensure_fp32(self, run, target: str, report: RunReport | None) -> Path:
        """The run's fp32 artifact of ``target``, exported (and parity-checked) first when missing."""
        path = run.export_dir / get_target(target).fp32_path
        if not path.exists():
            from edgeblood.exporters.run_export import export_run

            self.step(f"{run.name}: exporting {target} fp32 (baseline)")
            export_run(run, [target], ["fp32"], data_dir=self.options.data_dir)
            if report is not None:
                report.notes.append(f"exported {target} fp32 first (it was missing): {path}")
        return path

    def _test_data(self, run):
        """The FULL test split in the deployment layout, with the run's PyTorch probabilities."""
        import torch

        from edgeblood.compression.calibration import to_contract
        from edgeblood.parity import ParityData
        from edgeblood.preprocess import wrap_for_deployment

        images = to_contract(self.data.images("test"))
        module = wrap_for_deployment(run.model, run.metadata, with_label=False)
        with torch.inference_mode():
            ref = torch.cat([module(torch.from_numpy(images[i : i + 512])) for i in range(0, len(images), 512)]).numpy()
        desc = "embedded sample" if self.data.is_sample else self.data.describe() if self.data.source == "folder" else \
            f"BloodMNIST {run.in_size} px {self.data.variant}"
        return ParityData(images=images, labels=self.data.labels("test"), reference=ref, split="test",
                          source=self.data.source, description=desc)

    def _measure(self, path: Path, test, precision: str) -> dict:
        """Full-test-split figures of ``path`` with its own runtime, plus agreement with PyTorch fp32."""
        from edgeblood.compression.measure import summarize
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
        m = summarize(test.labels, probs, list(self.run.classes), **context)
        m["parity"] = parity.to_dict()
        if parity.status == MISMATCH:
            m["status"], m["reason"] = MISMATCH, f"exported but wrong: {parity.reason}"
        return m

    def _record_evaluation(self, run, rel: str, m: dict, d: dict | None) -> None:
        """Add the full-test-split figures to an existing manifest entry (fp32 / exporter-made fp16)."""
        from edgeblood import manifest as mf

        entry = mf.find_artifact(run.export_dir, rel)
        if entry is None:
            return
        entry = dict(entry)
        entry["evaluation"] = _evaluation(m)
        if d is not None:
            entry["delta_vs_fp32"] = d
        mf.record_artifact(run.export_dir, entry)


# ------------------------------------------------------------------------------------------ helpers

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


def _evaluation(m: dict) -> dict:
    from edgeblood.compression.measure import jsonable

    return {k: v for k, v in jsonable(m).items() if k != "parity"}


def _annotate(row: Row, m: dict) -> None:
    if m.get("status") != "ok" and m.get("reason"):
        row.notes.append(m["reason"])


def _artifact_size(path: Path) -> int | None:
    from edgeblood.manifest import artifact_size

    return artifact_size(path) if Path(path).exists() else None


def _derived_label(comp: dict) -> str:
    if comp.get("method") == "structured-channel-pruning":
        return (f"channel-pruned by {comp.get('target', 'macs')}, keeps {comp.get('macs_kept', 0):.1%} of MACs and "
                f"{comp.get('params_kept', 0):.1%} of params, {comp.get('finetune', {}).get('epochs', 0)} fine-tune epoch(s)")
    if comp.get("method") == "unstructured-magnitude-pruning":
        return f"{comp.get('weight_sparsity', 0):.0%} of weights zeroed"
    return comp.get("method", "derived")


def _count_steps(o: CompressOptions, variants: list[Variant]) -> int:
    per_run = 1 + 2 * len(o.targets) + 2 * len(variants)
    runs = 1 + (o.prune is not None) + (o.unstructured is not None)
    return runs * per_run + (runs - 1) + 1


def _require_libraries(o: CompressOptions, variants: list[Variant]) -> None:
    """Fail before any work when a needed library is missing (with the pip extra that installs it)."""
    from edgeblood.errors import require_modules

    for target in o.targets:
        get_target(target).require()
    needs = [lib for v in variants if v.method is not None for lib in v.method.libraries]
    if o.prune is not None:
        needs += [("torch_pruning", "torch-pruning", "prune")]
    require_modules(dict.fromkeys(needs))


def _refuse_existing(run, variants: list[Variant], o: CompressOptions) -> None:
    """Refuse before any work when outputs exist (unless --force): nothing is overwritten by surprise."""
    from edgeblood.compression.pruned_run import derived_name

    existing = [run.export_dir / v.path for v in variants if not v.via_exporter]
    if o.prune is not None:
        existing.append(run.dir.parent / derived_name(run, "structured", o.prune, o.prune_by))
    if o.unstructured is not None:
        existing.append(run.dir.parent / derived_name(run, "unstructured", o.unstructured))
    existing = [p for p in existing if p.exists()]
    if existing and not o.force:
        shown = ", ".join(str(p) for p in existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise EdgebloodError(f"{shown} already exist{'s' if len(existing) == 1 else ''}; pass --force to replace")
