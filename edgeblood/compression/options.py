"""What ``edgeblood compress`` was asked to do, checked before any work (bad input is one line, not a traceback)."""

from __future__ import annotations

from dataclasses import dataclass

from edgeblood.compression.methods import QUANTIZE_CHOICES
from edgeblood.errors import EdgebloodError
from edgeblood.targets import choices_text, parse_targets

DEFAULT_MAX_DROP = 0.3  # percentage points of val accuracy (issue 19: a bound a user can rely on, checked on val, not test)


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
        """Normalise the lists and refuse what cannot work, naming the option and its valid values."""
        self._check_choices()
        if not self.quantize and self.prune is None and self.unstructured is None:
            raise EdgebloodError("nothing to do: pass --quantize int8|fp16 and/or --prune RATIO / --unstructured RATIO")
        if "int8" in self.quantize and self.calibration_images < 1:
            raise EdgebloodError(f"--calibration-images must be at least 1 (got {self.calibration_images}); 512 is the default")
        self._check_pruning()
        if self.max_drop is not None and not 0 < self.max_drop <= 100:
            raise EdgebloodError(f"--max-drop is in percentage points of val accuracy and must be in (0, 100] (got {self.max_drop}; 100 = no bound)")
        if self.round_to is not None and self.round_to < 1:
            raise EdgebloodError(f"--round-to must be >= 1 (got {self.round_to})")

    def _check_choices(self) -> None:
        from edgeblood.exporters.onnx.quantize import CALIBRATION_METHODS

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

    def _check_pruning(self) -> None:
        from edgeblood.compression.prune import IMPORTANCES, PRUNE_BY, check_ratio

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
