"""New run directories derived from a parent run by pruning (``runs/<name>-pruned50``, ``-sparse50``).

A pruned model is a different model: it gets its own run directory with the full metadata of the
parent plus a ``compression`` section (method, ratio, params/MACs before and after, parent run,
fine-tune record), its own checkpoint, history and metrics - so that ``edgeblood export``/``bench``
treat it like any trained run. The directory is assembled in a hidden temporary folder beside the
target and renamed into place at the end: an error or Ctrl-C leaves nothing half-written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch.nn as nn

from edgeblood.compression import prune as P
from edgeblood.compression.finetune import FinetuneResult, finetune
from edgeblood.errors import EdgebloodError
from edgeblood.models import count_macs, count_params
from edgeblood.models.structure import describe_structure
from edgeblood.provenance import command_line, git_commit, library_versions, utc_now
from edgeblood.runs import Run, build_model, save_checkpoint

Progress = Callable[[str], None]


def derived_name(run: Run, kind: str, ratio: float, by: str = "macs") -> str:
    """``<parent>-pruned50`` (structured, MACs), ``<parent>-pruned50-params``, ``<parent>-sparse50`` (unstructured)."""
    pct = int(round(ratio * 100))
    if kind == "structured":
        return f"{run.name}-pruned{pct}" + ("" if by == "macs" else f"-{by}")
    return f"{run.name}-sparse{pct}"


def structured_run(
    run: Run, data, ratio: float, *, by: str = "macs", importance: str = "magnitude", round_to: int | None = None,
    finetune_epochs: int = 3, lr: float | None = None, device: str = "cpu", out: str | os.PathLike | None = None,
    force: bool = False, say: Progress | None = None, on_batch=None,
) -> Path:
    """Channel-prune ``run``'s model to keep ``1 - ratio`` of its MACs/params, fine-tune, save a new run."""
    say = say or (lambda _msg: None)
    dest = _destination(run, out, derived_name(run, "structured", ratio, by), force)
    result = P.structured_prune(run.model, run.in_size, ratio, by=by, importance=importance, round_to=round_to)
    s = result.summary()
    say(f"structured pruning ({importance} importance, torch-pruning): {s['channel_ratio']:.1%} of channels removed per layer -> "
        f"params {result.params_before:,} -> {result.params_after:,} ({s['params_kept']:.1%}), "
        f"MACs {result.macs_before / 1e6:.2f} M -> {result.macs_after / 1e6:.2f} M ({s['macs_kept']:.1%})")
    model = result.model
    ft = _finetune(model, run, data, finetune_epochs, lr, device, say, on_batch)
    compression = {
        "method": "structured-channel-pruning",
        "library": "torch-pruning",
        "importance": importance,
        "target": by,
        "ratio": ratio,
        "round_to": round_to,
        **s,
    }
    reference = build_model(run.meta)  # unpruned widths: the structure is stored as a difference
    structure = describe_structure(model, reference)
    return _write_run(run, model, data, dest, compression, ft, structure=structure, say=say)


def unstructured_run(
    run: Run, data, amount: float, *, finetune_epochs: int = 0, lr: float | None = None, device: str = "cpu",
    out: str | os.PathLike | None = None, force: bool = False, say: Progress | None = None, on_batch=None,
) -> Path:
    """Zero the smallest ``amount`` of conv/linear weights (global L1), optionally fine-tune with the mask, save a new run."""
    say = say or (lambda _msg: None)
    dest = _destination(run, out, derived_name(run, "unstructured", amount), force)
    model = P.unstructured_prune(run.model, amount)
    ft = _finetune(model, run, data, finetune_epochs, lr, device, say, on_batch)
    P.make_permanent(model)
    raw_before, gz_before = P.weights_bytes(run.model)
    raw_after, gz_after = P.weights_bytes(model)
    sp = P.sparsity(model)
    say(f"unstructured pruning (global L1, torch.nn.utils.prune): weight sparsity {sp['weight_sparsity']:.1%}; "
        f"fp32 weights {raw_after / 1e6:.2f} MB either way (dense tensors), gzip -9 {gz_before / 1e6:.2f} -> {gz_after / 1e6:.2f} MB")
    compression = {
        "method": "unstructured-magnitude-pruning",
        "library": "torch.nn.utils.prune (global_unstructured, L1Unstructured)",
        "ratio": amount,
        **sp,
        "params_before": count_params(run.model),
        "params_after": count_params(model),
        "macs_before": count_macs(run.model, run.in_size),
        "macs_after": count_macs(model, run.in_size),
        "weights_bytes": raw_after,
        "weights_gzip_bytes_before": gz_before,
        "weights_gzip_bytes_after": gz_after,
        "note": "tensors stay dense: file size and latency are unchanged on ONNX Runtime/OpenVINO/Core ML; only compressed (gzip) size shrinks",
    }
    return _write_run(run, model, data, dest, compression, ft, structure=None, say=say)


def _destination(run: Run, out: str | os.PathLike | None, name: str, force: bool) -> Path:
    dest = Path(out) if out is not None else run.dir.parent / name
    if dest.resolve() == run.dir.resolve():
        raise EdgebloodError(f"the pruned run would overwrite its parent {run.dir}; choose another --out")
    if dest.exists() and not force:
        raise EdgebloodError(f"{dest} already exists; pass --force to replace it (or remove it)")
    return dest


def _finetune(model: nn.Module, run: Run, data, epochs: int, lr, device: str, say: Progress, on_batch) -> FinetuneResult | None:
    if epochs < 0:
        raise EdgebloodError(f"--finetune-epochs must be >= 0 (got {epochs})")
    if epochs == 0:
        return None
    train_cfg = run.meta.training.config or {}
    ft = finetune(model, (data.images("train"), data.labels("train")), (data.images("val"), data.labels("val")),
                  run.mean, run.std, epochs, train_cfg, lr=lr, device=device, seed=int(train_cfg.get("seed", 0)), on_batch=on_batch)
    say(f"fine-tune {epochs} epoch(s) at lr {ft.lr:.2e} on {data.describe()}: val accuracy {ft.val_accuracy_before:.4f} -> "
        f"{ft.val_accuracy_after:.4f} (best epoch {ft.best_epoch}, {ft.wall_time_s:.0f} s)")
    return ft


def _write_run(parent: Run, model: nn.Module, data, dest: Path, compression: dict, ft: FinetuneResult | None,
               *, structure: dict | None, say: Progress) -> Path:
    model.eval().cpu()
    compression.update(
        parent_run=str(parent.dir),
        parent_metrics=parent.meta.metrics,
        finetune=ft.to_dict() if ft else {"epochs": 0},
        command=command_line(),
        created=utc_now(),
    )
    meta = replace(
        parent.meta,
        created=utc_now(),
        model=replace(parent.meta.model, params=count_params(model), macs=count_macs(model, parent.in_size), structure=structure or None),
        compression=compression,
        versions=library_versions(),
        git_commit=git_commit(),
        metrics={},  # the parent's figures do not describe this model; evaluate_run fills them in
        domain=None,  # the parent's profile describes the parent's features; refitted below
    )

    # Assemble in <runs>/.tmp-XXXX/<name> so that the run already has its final name while it is
    # evaluated (plots and tables carry it), then move it into place in one rename.
    dest.parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp = holder / dest.name
    try:
        tmp.mkdir()
        save_checkpoint(tmp, model, meta)
        if ft is not None:
            from edgeblood.runs import write_history

            write_history(tmp, ft.history)
        from edgeblood.domain.profile import fit_run_profile
        from edgeblood.evaluation.evaluate import evaluate_run
        from edgeblood.evaluation.temperature import calibrate_run
        from edgeblood.runs import open_run

        calibrate_run(open_run(tmp), data)  # pruning and fine-tuning change the confidence: refit T for this model
        fit_run_profile(open_run(tmp), data)  # and the features: refit the domain check's profile
        for split in ("val", "test"):  # metrics.json, headline metrics and (test) plots, as `edgeblood evaluate` writes them
            entry = evaluate_run(tmp, split, data=data, plots=split == "test")
        if dest.exists():  # --force: replace the previous derived run
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    finally:
        shutil.rmtree(holder, ignore_errors=True)
    say(f"wrote {dest} (test accuracy {entry['accuracy']:.4f}, macro-F1 {entry['macro_f1']:.4f}, PyTorch CPU, {entry['num_samples']} images)")
    return dest
