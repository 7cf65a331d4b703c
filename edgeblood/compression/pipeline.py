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

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeblood.errors import EdgebloodError

QUANTIZE = ("int8", "fp16")
TARGETS = ("onnx", "openvino", "coreml")
RUNTIME_OF = {"onnx": "onnxruntime", "openvino": "openvino", "coreml": "coreml", "pytorch": "pytorch"}
FP32_PATHS = {"onnx": "model.onnx", "openvino": "openvino/model.xml", "coreml": "model.mlpackage"}
# Quantized artifacts are not held to parity thresholds (they are expected to differ from fp32);
# their agreement with PyTorch is recorded and their accuracy deltas are the verdict.
UNBOUNDED = {"min_agreement": None, "max_abs_diff": None}

Progress = Callable[[str, int, int], None]  # (what is happening, steps done, steps in all)
Say = Callable[[str], None]


@dataclass
class CompressOptions:
    quantize: tuple[str, ...] = ()
    targets: tuple[str, ...] = ("onnx",)
    calibration_images: int = 512
    calibration_methods: tuple[str, ...] = ("minmax",)
    max_drop: float | None = None  # percentage points of val accuracy (OpenVINO accuracy control)
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
        self.targets = tuple(dict.fromkeys(t.lower() for t in self.targets))
        if "all" in self.targets:
            self.targets = TARGETS
        self.calibration_methods = tuple(dict.fromkeys(m.lower() for m in self.calibration_methods))
        for q in self.quantize:
            if q not in QUANTIZE:
                raise EdgebloodError(f"--quantize must be int8 or fp16 (got '{q}')")
        for t in self.targets:
            if t not in TARGETS:
                raise EdgebloodError(f"unknown --target '{t}'; choose onnx, openvino, coreml or all")
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
        if self.max_drop is not None and not 0 < self.max_drop < 100:
            raise EdgebloodError(f"--max-drop is in percentage points of val accuracy and must be in (0, 100) (got {self.max_drop})")
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
        from edgeblood.compression.evaluate import jsonable

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
class _Variant:
    """A compressed artifact to make from a run's fp32 artifact of ``target``."""

    label: str
    target: str
    precision: str
    rel_path: str
    make: Callable[[Path, Path], dict]  # (fp32 artifact, destination) -> details for the manifest
    via_exporter: bool = False  # made by edgeblood.exporters (fp16 OpenVINO/Core ML): path decided there
    tag: str = ""  # manifest "variant": what tells it apart from other artifacts of the same precision (bench labels)


def compress(run, options: CompressOptions, *, say: Say | None = None, progress: Progress | None = None) -> list[RunReport]:
    """Make and measure everything ``options`` asks for; returns one report per run (source first)."""
    from edgeblood.compression.calibration import calibration_set, to_contract
    from edgeblood.compression.evaluate import data_for_run
    from edgeblood.runs import Run, open_run

    options.validate()
    say = say or (lambda _m: None)
    run = run if isinstance(run, Run) else open_run(run)
    _require_libraries(options)
    data = data_for_run(run, options.data_dir)
    session = _Session(run=run, data=data, options=options, say=say, progress=progress)
    session.total = _count_steps(options)
    say(f"data: {data.describe()}")
    if data.is_sample:
        say("[yellow]embedded sample: every accuracy below is a smoke-test figure on 96 test images, not a BloodMNIST result[/]")

    variants = session.variants()
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
    def variants(self) -> list[_Variant]:
        from edgeblood.compression import coreml_compress as cm
        from edgeblood.compression import onnx_quant as oq

        o = self.options
        out: list[_Variant] = []
        for target in o.targets:
            if "int8" in o.quantize and target == "onnx":
                for method in o.calibration_methods:
                    rel = "model-int8.onnx" if method == o.calibration_methods[0] else f"model-int8-{method}.onnx"
                    out.append(_Variant(f"int8 static ({method})", "onnx", "int8", rel,
                                        self._onnx_static(method), tag=f"static QDQ {method}"))
                if o.dynamic:
                    out.append(_Variant("int8 dynamic", "onnx", "int8-dynamic",
                                        "model-int8-dynamic.onnx",
                                        lambda src, dst: _timed(oq.quantize_dynamic, src, dst,
                                                                details={"method": "onnxruntime quantize_dynamic", "weights": "uint8 (ConvInteger)"}),
                                        tag="dynamic"))
            if "fp16" in o.quantize and target == "onnx":
                out.append(_Variant("fp16", "onnx", "fp16", "model-fp16.onnx",
                                    lambda src, dst: _timed(oq.convert_fp16, src, dst, details={"method": "onnxruntime.transformers.float16, keep_io_types"})))
            if "int8" in o.quantize and target == "openvino":
                out.append(_Variant("int8 NNCF", "openvino", "int8", "openvino/model-int8.xml", self._openvino(None), tag="nncf"))
                if o.max_drop is not None:
                    out.append(_Variant(f"int8 NNCF acc-control {o.max_drop:g}pt", "openvino", "int8",
                                        "openvino/model-int8-acc.xml", self._openvino(o.max_drop), tag=f"nncf accuracy-control {o.max_drop:g}pt"))
            if "fp16" in o.quantize and target == "openvino":
                out.append(_Variant("fp16", "openvino", "fp16", "openvino/model-fp16.xml", None, via_exporter=True))
            if "int8" in o.quantize and target == "coreml":
                out.append(_Variant("int8 weights", "coreml", "int8-weights", "model-int8.mlpackage",
                                    lambda src, dst: _timed(cm.quantize_weights_int8, src, dst,
                                                            details={"method": "coremltools linear_quantize_weights int8 per-channel symmetric"}),
                                    tag="linear weights"))
                for bits in o.palettize_bits:
                    out.append(_Variant(f"{bits}-bit palette", "coreml", f"palettized-{bits}bit", f"model-palettized{bits}.mlpackage",
                                        (lambda b: lambda src, dst: _timed(cm.palettize, src, dst, b,
                                                                           details={"method": f"coremltools palettize_weights kmeans {b} bit"}))(bits),
                                        tag="k-means"))
            if "fp16" in o.quantize and target == "coreml":
                out.append(_Variant("fp16", "coreml", "fp16", "model-fp16.mlpackage", None, via_exporter=True))
        if "int8" in o.quantize and o.max_drop is not None and "openvino" not in o.targets:
            self.say("[yellow]note:[/] --max-drop applies to OpenVINO int8 (NNCF accuracy control); add --target openvino to use it")
        return out

    def _onnx_static(self, method: str):
        from edgeblood.compression import onnx_quant as oq

        def make(src: Path, dst: Path) -> dict:
            return _timed(oq.quantize_static, src, dst, self.calibration, method, details={
                "method": "onnxruntime quantize_static, QDQ, per-channel symmetric int8 weights, asymmetric uint8 activations",
                "calibration": self._calibration_details(method), "float_ops": list(oq.FLOAT_ONLY_OPS)})
        return make

    def _openvino(self, max_drop: float | None):
        from edgeblood.compression import openvino_quant as ovq

        def make(src: Path, dst: Path) -> dict:
            t0 = time.perf_counter()
            _, info = ovq.quantize(src, dst, self.calibration, max_drop=max_drop, validation=self.validation if max_drop is not None else None)
            return {"seconds": round(time.perf_counter() - t0, 3), "method": info.method, "preset": info.preset,
                    "bias_correction": info.bias_correction,
                    "calibration": self._calibration_details("nncf min-max (preset " + info.preset + ")"),
                    **({"max_drop_pt": info.max_drop_pt, "validation": "val split"} if info.max_drop_pt is not None else {}),
                    "notes": info.notes}
        return make

    def _calibration_details(self, method: str) -> dict:
        return {"images": int(len(self.calibration)), "split": "train", "stratified": True, "seed": self.options.seed, "method": method}

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
    def measure_run(self, run, variants: list[_Variant], *, source: bool) -> RunReport:
        """Rows for ``run``: PyTorch fp32, then per target its fp32 artifact and the variants."""
        from edgeblood.compression.evaluate import delta, measure_model

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
            fp32 = self._ensure_fp32(run, target, report if source else None)
            self.step(f"{run.name}: {target} fp32 on the test split")
            m = self._measure(fp32, test, "fp32")
            fp32_size = _artifact_size(fp32)
            row = Row("fp32", target, "fp32", FP32_PATHS[target], fp32_size, None, params, macs, m, None)
            if source:
                self.baselines[target] = (m, fp32_size, f"{target} fp32 of {run.name}")
            else:
                self._compare(row, target)
                if comp.get("method") == "unstructured-magnitude-pruning":
                    from edgeblood.compression.evaluate import gzip_size

                    row.gzip_bytes = gzip_size(fp32)
                    base_gz = gzip_size(self.run.export_dir / FP32_PATHS[target])
                    row.notes.append(f"gzip -9: {base_gz / 1e6:.2f} -> {row.gzip_bytes / 1e6:.2f} MB; same dense file size and math")
            _annotate(row, m)
            self._record_evaluation(run, FP32_PATHS[target], m, row.delta)
            report.rows.append(row)
            for v in (v for v in variants if v.target == target):
                report.rows.append(self._make_variant(run, v, fp32, test, params, macs, source))
        if source and "coreml" in self.options.targets and "int8" in self.options.quantize:
            from edgeblood.compression.coreml_compress import activation_skip_reason

            why = activation_skip_reason()
            if why:
                report.notes.append(f"Core ML W8A8 (activation) quantization: {why}")
        return report

    def _make_variant(self, run, v: _Variant, fp32: Path, test, params: int, macs: int, source: bool) -> Row:
        from edgeblood import manifest as mf

        dest = run.export_dir / v.rel_path
        self.step(f"{run.name}: {v.target} {v.label}")
        if v.via_exporter:  # fp16 OpenVINO/Core ML are exports (parity-checked there); reuse one unless --force
            if self.options.force or not dest.exists():
                from edgeblood.exporters.pipeline import export_run

                export_run(run, [v.target], [v.precision], force=True, data_dir=self.options.data_dir, strict=False)
            details = {}
        else:
            details = v.make(fp32, dest)
        self.step(f"{run.name}: {v.target} {v.label} on the test split")
        m = self._measure(dest, test, v.precision)
        row = Row(v.label, v.target, v.precision, v.rel_path, _artifact_size(dest), None, params, macs, m, None)
        self._compare(row, v.target)
        _annotate(row, m)
        if v.via_exporter:
            self._record_evaluation(run, v.rel_path, m, row.delta)
        else:
            fp32_entry = mf.find_artifact(run.export_dir, FP32_PATHS[v.target]) or {}
            mf.record_artifact(run.export_dir, {
                "target": v.target,
                "precision": v.precision,
                **({"variant": v.tag} if v.tag else {}),
                "path": v.rel_path,
                "runtime": RUNTIME_OF[v.target],
                "parity": m.get("parity") or {"status": "skipped", "reason": m.get("reason", "")},
                "export_seconds": details.pop("seconds", None),
                "source_run": run.name,
                "source_artifact": FP32_PATHS[v.target],
                "input": fp32_entry.get("input"),
                "outputs": fp32_entry.get("outputs"),
                "compression": details,
                "evaluation": _evaluation(m),
                "delta_vs_fp32": row.delta,
                "delta_baseline": row.baseline,
            })
        return row

    def _compare(self, row: Row, target: str) -> None:
        from edgeblood.compression.evaluate import delta

        base, base_size, label = self.baselines[target]
        row.delta = delta(row.measured, base)
        row.size_pct = 100.0 * row.size_bytes / base_size if row.size_bytes and base_size else None
        row.baseline = label

    def _ensure_fp32(self, run, target: str, report: RunReport | None) -> Path:
        """The run's fp32 artifact of ``target``, exported (and parity-checked) first when missing."""
        path = run.export_dir / FP32_PATHS[target]
        if not path.exists():
            from edgeblood.exporters.pipeline import export_run

            self.step(f"{run.name}: exporting {target} fp32 (baseline)")
            export_run(run, [target], ["fp32"], data_dir=self.options.data_dir)
            if report is not None:
                report.notes.append(f"exported {target} fp32 first (it was missing): {path}")
        return path

    def _test_data(self, run):
        """The FULL test split in the deployment layout, with the run's PyTorch probabilities."""
        import torch

        from edgeblood.compression.calibration import to_contract
        from edgeblood.exporters.parity import ParityData
        from edgeblood.preprocess import wrap_for_deployment

        images = to_contract(self.data.images("test"))
        module = wrap_for_deployment(run.model, run.metadata, with_label=False)
        with torch.inference_mode():
            ref = torch.cat([module(torch.from_numpy(images[i : i + 512])) for i in range(0, len(images), 512)]).numpy()
        desc = "embedded sample" if self.data.is_sample else f"BloodMNIST {run.in_size} px {self.data.variant}"
        return ParityData(images=images, labels=self.data.labels("test"), reference=ref, split="test",
                          source=self.data.source, description=desc)

    def _measure(self, path: Path, test, precision: str) -> dict:
        """Full-test-split figures of ``path`` with its own runtime, plus agreement with PyTorch fp32."""
        from edgeblood.compression.evaluate import summarize
        from edgeblood.exporters.parity import THRESHOLDS, compare
        from edgeblood.runtimes import runtime_for_artifact

        runtime = runtime_for_artifact(path)
        ok, why = runtime.available()
        context = {"split": "test", "runtime": runtime.name, "device": "cpu_only" if runtime.name == "coreml" else "cpu"}
        if not ok:
            return {"status": "skipped", "reason": f"not measured here: {why}", **context}
        loaded = runtime.load(path, device=context["device"])
        probs = loaded.predict(test.images)
        thresholds = THRESHOLDS.get(precision, UNBOUNDED)
        parity = compare(probs, test, dict(thresholds), runtime=runtime.name, device=context["device"])
        if parity.status == "failed" and parity.agreement is None:
            return {"status": "failed", "reason": parity.reason, "parity": parity.to_dict(), **context}
        m = summarize(test.labels, probs, list(self.run.classes), **context)
        m["parity"] = parity.to_dict()
        if parity.status == "failed":
            m["status"], m["reason"] = "failed", f"exported but wrong: {parity.reason}"
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

def _timed(fn, *args, details: dict) -> dict:
    """Run one compression step; its manifest details, with the time it took and, when the step returns
    a dict, what it reports about itself (e.g. the graph rewrites of quantize_static)."""
    t0 = time.perf_counter()
    result = fn(*args)
    return {"seconds": round(time.perf_counter() - t0, 3), **details, **(result if isinstance(result, dict) else {})}


def _evaluation(m: dict) -> dict:
    from edgeblood.compression.evaluate import jsonable

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


def _count_steps(o: CompressOptions) -> int:
    per_target_variants = 0
    for t in o.targets:
        if "int8" in o.quantize:
            per_target_variants += {"onnx": len(o.calibration_methods) + int(o.dynamic), "openvino": 1 + int(o.max_drop is not None),
                                    "coreml": 1 + len(o.palettize_bits)}[t]
        if "fp16" in o.quantize:
            per_target_variants += 1
    per_run = 1 + 2 * len(o.targets) + 2 * per_target_variants
    runs = 1 + (o.prune is not None) + (o.unstructured is not None)
    return runs * per_run + (runs - 1) + 1


def _require_libraries(o: CompressOptions) -> None:
    """Fail before any work when a needed library is missing (with the pip extra that installs it)."""
    import importlib.util

    from edgeblood.errors import missing_extra

    needs = []
    if "onnx" in o.targets or "openvino" in o.targets:
        needs += [("onnx", "onnx", "onnx"), ("onnxruntime", "onnxruntime", "onnx")]
    if "openvino" in o.targets:
        needs += [("openvino", "openvino", "openvino")]
        if "int8" in o.quantize:
            needs += [("nncf", "nncf", "openvino")]
    if "coreml" in o.targets:
        needs += [("coremltools", "coremltools", "coreml")]
    if o.prune is not None:
        needs += [("torch_pruning", "torch-pruning", "prune")]
    for module, package, extra in needs:
        if importlib.util.find_spec(module) is None:
            raise missing_extra(package, extra)


def _refuse_existing(run, variants: list[_Variant], o: CompressOptions) -> None:
    """Refuse before any work when outputs exist (unless --force): nothing is overwritten by surprise."""
    from edgeblood.compression.pruned_run import derived_name

    existing = [run.export_dir / v.rel_path for v in variants if not v.via_exporter]
    if o.prune is not None:
        existing.append(run.dir.parent / derived_name(run, "structured", o.prune, o.prune_by))
    if o.unstructured is not None:
        existing.append(run.dir.parent / derived_name(run, "unstructured", o.unstructured))
    existing = [p for p in existing if p.exists()]
    if existing and not o.force:
        shown = ", ".join(str(p) for p in existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise EdgebloodError(f"{shown} already exist{'s' if len(existing) == 1 else ''}; pass --force to replace")
