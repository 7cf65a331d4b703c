"""Making what ``edgeblood compress`` measures: quantized variants through the method registry, the fp32
baselines they start from, and the run directories derived by pruning.

Nothing here measures or records an accuracy: a made artifact goes to
``edgeblood.compression.measure_and_record``, which runs it on the test split and writes the manifest.
The calibration subset (train split, stratified) and the val images a method may bound its accuracy
drop with (``--max-drop``) are chosen once per compress and handed to every method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeblood.compression.methods import QuantizeJob, Variant
from edgeblood.compression.options import CompressOptions
from edgeblood.compression.steps import Say, Steps
from edgeblood.targets import get_target


@dataclass
class MadeArtifact:
    """An artifact on disk, ready to be measured: what it is, where it is and how it was made."""

    target: str
    precision: str
    rel: str  # path inside the run's export folder (the manifest's key)
    path: Path
    variant: Variant | None = None  # None: the target's fp32 baseline
    details: dict = field(default_factory=dict)  # the method's compression details (empty for exporter-made artifacts)
    note: str = ""  # something the report should say about how it was made


@dataclass
class ArtifactMaker:
    run: object  # the source run (edgeblood.runs.Run)
    data: object  # its data (edgeblood.data splits)
    options: CompressOptions
    say: Say
    steps: Steps
    calibration: np.ndarray | None = None
    validation: tuple[np.ndarray, np.ndarray] | None = None

    def choose_calibration(self) -> None:
        """The int8 calibration subset and, under --max-drop, the val images; announced once."""
        from edgeblood.compression.calibration import calibration_set, to_contract

        o, data = self.options, self.data
        if "int8" not in o.quantize:
            return
        self.calibration = calibration_set(data.images("train"), data.labels("train"), o.calibration_images, o.seed)
        n_train = len(data.labels("train"))
        self.say(f"calibration: {len(self.calibration)} train images, stratified by class (seed {o.seed})"
                 + (f" - all of the train split, fewer than the {o.calibration_images} asked" if o.calibration_images > n_train else ""))
        if o.max_drop is not None:
            self.validation = (to_contract(data.images("val")), data.labels("val"))

    # ----------------------------------------------------------------------------- artifacts
    def fp32_baseline(self, run, target: str) -> MadeArtifact:
        """The run's fp32 artifact of ``target``, exported (and parity-checked) first when missing."""
        rel = get_target(target).fp32_path
        path = run.export_dir / rel
        note = ""
        if not path.exists():
            from edgeblood.exporters.run_export import export_run

            self.steps.step(f"{run.name}: exporting {target} fp32 (baseline)")
            export_run(run, [target], ["fp32"], data_dir=self.options.data_dir)
            note = f"exported {target} fp32 first (it was missing): {path}"
        return MadeArtifact(target, "fp32", rel, path, note=note)

    def variant(self, run, v: Variant, fp32: MadeArtifact) -> MadeArtifact:
        """One registered method's artifact made from the fp32 baseline (fp16 OpenVINO/Core ML: the exporter's)."""
        dest = run.export_dir / v.path
        self.steps.step(f"{run.name}: {v.target} {v.label}")
        if v.via_exporter:  # parity-checked by the exporter; an existing one is reused unless --force
            if self.options.force or not dest.exists():
                from edgeblood.exporters.run_export import export_run

                export_run(run, [v.target], [v.precision], force=True, data_dir=self.options.data_dir, strict=False)
            details = {}
        else:
            details = v.method.make(QuantizeJob(source=fp32.path, dest=dest, calibration=self.calibration, calibration_info=self._calibration_info(),
                                                validation=self.validation, options=self.options, params=dict(v.params), run=run))
        return MadeArtifact(v.target, v.precision, v.path, dest, variant=v, details=details)

    def _calibration_info(self) -> dict:
        if self.calibration is None:
            return {}
        return {"images": int(len(self.calibration)), "split": "train", "stratified": True, "seed": self.options.seed}

    def source_notes(self) -> list[str]:
        """What the source run's report should say about variants that could not be made here."""
        if "coreml" in self.options.targets and "int8" in self.options.quantize:
            from edgeblood.exporters.coreml.quantize import activation_skip_reason

            why = activation_skip_reason()
            if why:
                return [f"Core ML W8A8 (activation) quantization: {why}"]
        return []

    # --------------------------------------------------------------------------- derived runs
    def derived_runs(self) -> list:
        """The run directories --prune / --unstructured ask for, made (and fine-tuned) now, in that order."""
        runs = []
        if self.options.prune is not None:
            runs.append(self.pruned_run())
        if self.options.unstructured is not None:
            runs.append(self.sparse_run())
        return runs

    def pruned_run(self):
        from edgeblood.compression.pruned_run import structured_run
        from edgeblood.runs import open_run

        o = self.options
        self.steps.step(f"structured pruning to {1 - o.prune:.0%} of the {o.prune_by} + {o.finetune_epochs} fine-tune epoch(s)")
        path = structured_run(self.run, self.data, o.prune, by=o.prune_by, importance=o.importance, round_to=o.round_to,
                              finetune_epochs=o.finetune_epochs, lr=o.finetune_lr, device=o.device, force=o.force, say=self.say,
                              on_batch=self._finetune_progress("structured pruning"))
        return open_run(path)

    def sparse_run(self):
        from edgeblood.compression.pruned_run import unstructured_run
        from edgeblood.runs import open_run

        o = self.options
        self.steps.step(f"unstructured pruning of {o.unstructured:.0%} of the weights + {o.finetune_epochs} fine-tune epoch(s)")
        path = unstructured_run(self.run, self.data, o.unstructured, finetune_epochs=o.finetune_epochs, lr=o.finetune_lr,
                                device=o.device, force=o.force, say=self.say, on_batch=self._finetune_progress("unstructured pruning"))
        return open_run(path)

    def _finetune_progress(self, what: str):
        def on_batch(epoch: int, batch: int, batches: int) -> None:
            self.steps.show(f"{what}: fine-tune epoch {epoch}/{self.options.finetune_epochs}, batch {batch}/{batches}")
        return on_batch
