"""``compress``: choose the entries, make them, then measure and record each one.

    reports = compress("runs/se-cnn-28px", CompressOptions(quantize=("int8",), targets=("onnx", "openvino")))

Choosing is :func:`plan_variants` (the registered quantization methods' variants for every requested
target, ``edgeblood.compression.methods``). Making is ``edgeblood.compression.make_artifacts``
(quantized variants, missing fp32 baselines, pruned run directories). Measuring and recording is
``edgeblood.compression.measure_and_record`` (every row run by its own runtime on the full test
split, judged by the parity judge, compared with the SOURCE run's fp32 on the same runtime, written
to the run's ``export/manifest.json``). One ``RunReport`` per run: the source run first, then each
run directory derived by pruning (exported the same way).
"""

from __future__ import annotations

from edgeblood.compression.make_artifacts import ArtifactMaker
from edgeblood.compression.measure_and_record import RECALL_WARNING_PT, Recorder, Row, RunReport, accuracy_control_line
from edgeblood.compression.methods import Variant, all_methods, variants_for
from edgeblood.compression.options import DEFAULT_MAX_DROP, CompressOptions
from edgeblood.compression.steps import Progress, Say, Steps
from edgeblood.errors import EdgebloodError
from edgeblood.targets import get_target

__all__ = ["DEFAULT_MAX_DROP", "RECALL_WARNING_PT", "CompressOptions", "Progress", "Row", "RunReport", "Say", "accuracy_control_line",
           "compress", "plan_variants"]


def compress(run, options: CompressOptions, *, say: Say | None = None, progress: Progress | None = None) -> list[RunReport]:
    """Make and measure everything ``options`` asks for; returns one report per run (source first)."""
    from edgeblood.compression.measure import data_for_run
    from edgeblood.runs import Run, open_run

    options.validate()
    say = say or (lambda _m: None)
    run = run if isinstance(run, Run) else open_run(run)
    variants = plan_variants(options, say)
    _require_libraries(options, variants)
    data = data_for_run(run, options.data_dir)
    steps = Steps(progress, total=_count_steps(options, variants))
    say(f"data: {data.describe()}")
    if data.is_sample:
        say("[yellow]embedded sample: every accuracy below is a smoke-test figure on 96 test images, not a BloodMNIST result[/]")
    _refuse_existing(run, variants, options)

    maker = ArtifactMaker(run=run, data=data, options=options, say=say, steps=steps)
    maker.choose_calibration()
    recorder = Recorder(run, data, steps)
    reports = [_make_and_measure(run, variants, maker, recorder)]
    derived = maker.derived_runs()
    reports += [_make_and_measure(child, variants, maker, recorder) for child in derived]
    from edgeblood.exporters.model_card import write_model_card

    for child in [run, *derived]:  # the card lists the artifacts and compression: keep it in step with the manifest
        if child.export_dir.is_dir():
            write_model_card(child)
    steps.step("done")
    return reports


def _make_and_measure(run, variants: list[Variant], maker: ArtifactMaker, recorder: Recorder) -> RunReport:
    """Rows for ``run``: PyTorch fp32, then per target its fp32 artifact and the variants, each measured as soon as it is made."""
    sheet = recorder.begin(run)
    for target in maker.options.targets:
        fp32 = maker.fp32_baseline(run, target)
        recorder.add_fp32(sheet, fp32)
        for v in (v for v in variants if v.target == target):
            recorder.add_variant(sheet, maker.variant(run, v, fp32))
    if sheet.is_source:
        sheet.report.notes.extend(maker.source_notes())
    return sheet.report


def plan_variants(options: CompressOptions, say: Say) -> list[Variant]:
    """The registered methods' variants for every requested target (edgeblood.compression.methods)."""
    o = options
    out = [v for t in o.targets for v in variants_for(get_target(t), o)]
    chosen = {v.method.name for v in out if v.method is not None}
    if "int8" in o.quantize and o.max_drop not in (None, DEFAULT_MAX_DROP) and not any(m.bounds_accuracy_drop for m in all_methods() if m.name in chosen):
        bounded = sorted({m.target for m in all_methods() if m.bounds_accuracy_drop})
        say(f"[yellow]note:[/] --max-drop applies to the int8 methods of {', '.join(bounded)}; add --target {bounded[0]} to use it")
    return out


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
