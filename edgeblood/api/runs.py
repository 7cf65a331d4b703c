"""Runs as Python objects: ``edgeblood.train`` and ``edgeblood.load`` return a :class:`Run`.

A :class:`Run` is the run directory of ``edgeblood.runs`` (same files, same contract) with the CLI's
verbs as methods, so a notebook or a lab app does in Python what the commands do, through the same
library functions the commands call (nothing here prints, draws progress bars or exits):

    run = edgeblood.train("se-cnn", 28, sample=True, epochs=2)
    run.export(["onnx"])
    run.evaluate("test")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeblood import runs as _runs
from edgeblood.errors import ExportError
from edgeblood.manifest import MANIFEST

if TYPE_CHECKING:
    from edgeblood.api.classifier import Classifier
    from edgeblood.training.callbacks import Callback


class Run(_runs.Run):
    """An opened run directory (``edgeblood.runs.Run``) that can also export, evaluate, compress and bench itself."""

    @classmethod
    def open(cls, name_or_path: str | os.PathLike) -> "Run":
        """Open a run directory, its checkpoint.pt, or a pretrained model's name (``se-cnn-28``): checked before use."""
        base = _runs.open_run(name_or_path)
        return cls(base.dir, base.meta, _state_dict=base._state_dict)

    def export(
        self,
        targets: Sequence[str] | str = ("onnx",),
        precisions: Sequence[str] | str = ("fp32",),
        *,
        force: bool = False,
        parity_images: int | None = 256,
        data_dir: str | os.PathLike | None = None,
        capture: bool = True,
        **options: Any,
    ):
        """Export to ``targets`` (onnx, openvino, litert, executorch, coreml or all) and check each artifact
        against this run's PyTorch model, as ``edgeblood export`` does; returns the ExportReport.

        Raises ``ExportError`` when nothing was exported or an artifact failed its parity check (the
        manifest still records it): a caller must not ship an artifact that disagrees with its model.
        ``options``: the rest of ``edgeblood.exporters.run_export.export_run`` (min_target, opset, simplify, progress).
        """
        from edgeblood.exporters.run_export import export_run

        report = export_run(self, _names(targets), _names(precisions), force=force, parity_images=parity_images,
                            data_dir=data_dir, capture=capture, strict=False, **options)
        if report.failures:
            failed = ", ".join(f"{a['path']} ({a['parity'].get('status')})" for a in report.failures)
            raise ExportError(f"{failed}: disagrees with the PyTorch model; see {report.export_dir / MANIFEST} for the figures")
        if not report.artifacts:
            raise ExportError(f"nothing was exported for {', '.join(_names(targets))}; " + ("; ".join(report.notes) or "check the targets"))
        return report

    def evaluate(
        self,
        split: str = "test",
        *,
        data_dir: str | os.PathLike | None = None,
        sample: bool | str = "auto",
        download: bool = False,
        device: str = "cpu",
        batch_size: int = 512,
        plots: bool = False,
        tta: bool = False,
    ) -> dict:
        """Metrics on the ``val`` or ``test`` split, as ``edgeblood evaluate`` computes and stores them
        (metrics.json, headline in run.json); returns that split's entry.

        ``sample="auto"`` evaluates on what the run was trained on (embedded sample or the full files).
        Plots are off by default here: a notebook asks for numbers, and plots cost seconds per call.
        """
        from edgeblood.evaluation.evaluate import evaluate_run, load_eval_data

        data = load_eval_data(self, data_dir=data_dir, sample=sample, download=download)
        return evaluate_run(self, split, data=data, device=device, batch_size=batch_size, plots=plots, tta=tta)

    def compress(self, quantize: Sequence[str] | str = ("int8",), **options: Any) -> list:
        """Quantize and/or prune, then measure every variant against this run, as ``edgeblood compress``;
        returns one report per run (this one first, then a pruned run if ``prune`` was given).

        ``options``: the fields of ``edgeblood.compression.options.CompressOptions`` (targets, prune,
        calibration_images, max_drop, ...), checked before any work.
        """
        from edgeblood.compression.compress_run import compress
        from edgeblood.compression.options import CompressOptions

        for key in ("targets", "calibration_methods"):
            if key in options:
                options[key] = tuple(_names(options[key]))
        return compress(self, CompressOptions(quantize=tuple(_names(quantize)), **options))

    def bench(self, out: str | os.PathLike | None = None, **config: Any) -> dict:
        """Benchmark this run's exported artifacts, as ``edgeblood bench``; writes the report
        (json, md, html) to ``out`` (default: the run's bench/ folder) and returns it.

        ``config``: the fields of ``edgeblood.bench.plan.BenchConfig`` (runtimes, batches, threads, ...).
        Export first (``run.export(...)``): a run without artifacts is refused.
        """
        from edgeblood.bench.report import check_writable, write_report
        from edgeblood.bench.runner import BenchConfig, bench_runs

        out_dir = Path(out) if out is not None else self.bench_dir
        check_writable(out_dir)
        report = bench_runs([self], BenchConfig(**config))
        write_report(report, out_dir)
        return report

    def classifier(self, device: str = "cpu", **options: Any) -> "Classifier":
        """A :class:`edgeblood.api.Classifier` on this run's PyTorch model (framing from its contract)."""
        from edgeblood.api.classifier import Classifier

        return Classifier(self, device=device, **options)


def _names(value: Sequence[str] | str) -> list[str]:
    """``"onnx,openvino"`` or ``["onnx", "openvino"]`` -> ``["onnx", "openvino"]`` (the CLI's comma lists, in Python)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [s.strip() for s in items if s and s.strip()]


def load(name_or_path: str | os.PathLike) -> Run:
    """Open a trained run: a run directory (``runs/se-cnn-28px``) or a pretrained name (``se-cnn-28``).

    Pretrained runs are checksum-verified and copied to ``$EDGEBLOOD_HOME`` first (edgeblood.pretrained):
    a run is written to (exports, metrics), the installed package never is.
    """
    return Run.open(name_or_path)


def train(
    model: str = "se-cnn",
    size: int = 28,
    recipe: str = "default",
    *,
    model_cfg: dict | None = None,
    augment: dict | None = None,
    evaluate: bool = True,
    progress: bool = False,
    callbacks: Sequence[Callback] = (),
    quiet: bool | None = None,
    **options: Any,
) -> Run:
    """Train ``model`` at ``size`` px with ``recipe`` and return the finished run.

    The configuration is ``edgeblood.config.config_from_recipe`` (the recipe, then ``options``),
    exactly what ``edgeblood train`` builds from the same choices: same seed, same recipe, same weights.

    Args:
        model: a registry name (``edgeblood models`` lists them).
        size: input size in px (28, 64, 128 or 224 for BloodMNIST).
        recipe: ``default``, ``best``, ``published`` or ``finetune`` (with ``init``; edgeblood.config.recipes).
        model_cfg: model options (the CLI's ``--model-opt``), e.g. ``{"width_mult": 0.5}``.
        augment: AugmentConfig fields over the recipe's, e.g. ``{"jpeg_prob": 0.0}``.
        evaluate: evaluate on val and test at the end (metrics.json, plots).
        progress: show the CLI's display (rich bars and lines) on stdout; off by default, so a
            notebook stays clean (history.csv keeps the curves either way).
        callbacks: :class:`edgeblood.Callback` objects that receive the run's events (epoch ends with
            val accuracy, batches with loss and images/s, messages); they cannot change the weights.
        quiet: deprecated (the first API release's switch); ``quiet=False`` is ``progress=True``.
        **options: TrainConfig fields (``epochs``, ``lr``, ``seed``, ``sample``, ``out_dir``, ``name``, ...).

    Raises:
        ConfigError: an unknown recipe or option, or a value out of range (before any work).
        EdgebloodError: data that cannot be loaded, a run directory that exists, and the like.
    """
    from edgeblood.config.recipes import config_from_recipe
    from edgeblood.training import train as run_training

    if quiet is not None:
        import warnings

        warnings.warn("edgeblood.train(quiet=...) is deprecated: the display is off by default; pass progress=True to show it",
                      DeprecationWarning, stacklevel=2)
        progress = not quiet
    cfg = config_from_recipe(model, size, recipe, model_cfg=model_cfg, augment=augment, **options)
    hooks = list(callbacks)
    if progress:
        from edgeblood.training.display import RichProgress

        hooks.insert(0, RichProgress())
    run_dir = run_training(cfg, callbacks=hooks, evaluate=evaluate)
    return Run.open(run_dir)
