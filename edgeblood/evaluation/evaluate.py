"""Evaluate a run directory on one split: metrics.json, the run's headline numbers, plots.

The data is the data the run was trained on: a run trained on the embedded sample is evaluated on
the sample, a run trained on the full BloodMNIST files on the full files. A full-data run is never
evaluated on the sample (those numbers would be compared with published tables and mean nothing):
if the files are missing, that is an error that says where to put them.

metrics.json holds one entry per split, ``{"val": {...}, "test": {...}}``; each entry records the
data (source, file, MD5), runtime ("pytorch"), device and a fingerprint of the weights, so an entry
left from an earlier checkpoint is recognised and dropped instead of being reported beside new ones.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgeblood.atomic import exclusive_lock, write_json
from edgeblood.data.bloodmnist import SPLITS, BloodMNIST, load_bloodmnist, load_sample
from edgeblood.data.image_folder import FolderDataset, load_folder_for_run
from edgeblood.devices import resolve_device
from edgeblood.errors import EdgebloodError
from edgeblood.evaluation.metrics import compute_metrics, format_metrics_table
from edgeblood.evaluation.plots import write_evaluation_plots
from edgeblood.evaluation.predict import TTA_VIEWS, predict_probs
from edgeblood.provenance import utc_now
from edgeblood.runs import HISTORY_FILE, Run, open_run, read_metrics
from edgeblood.runs import METRICS_FILE as METRICS_JSON  # the run contract (edgeblood.runs) owns the file and its reader

RUNTIME = "pytorch"
HEADLINE = ("accuracy", "macro_f1", "balanced_accuracy", "mean_confidence")
EXPLAIN_PER_SIDE = 4  # Grad-CAM grid: correct and misclassified examples per class
SANITY_IMAGES = 64


def evaluate_run(
    run_dir: str | os.PathLike | Run,
    split: str = "test",
    *,
    data_dir: str | os.PathLike | None = None,
    data: BloodMNIST | None = None,
    sample: bool | str = "auto",
    download: bool = False,
    device: str = "cpu",
    batch_size: int = 512,
    plots: bool = True,
    explain: bool = False,
    gradcam_layer: str | None = None,
    tta: bool = False,
    console=None,
    progress=None,
) -> dict:
    """Evaluate ``run_dir`` on ``split`` ("val" or "test") and write the results into the run.

    ``sample``: "auto" uses the data the run was trained on; True forces the embedded sample (only
    for sample-trained runs); False forces the full files. ``data`` skips loading (the trainer
    passes what it trained on). ``console`` (rich) prints the table and where files went;
    ``progress(n_images)`` is called as batches finish. ``tta`` adds an entry["tta"] block with the
    8-view test-time-augmentation figures; the headline numbers stay single-pass. Returns the entry.
    """
    if split not in SPLITS:
        raise EdgebloodError(f"unknown split '{split}'; choose val or test (train is what the model learned from)")
    run = run_dir if isinstance(run_dir, Run) else open_run(run_dir)
    data = data if data is not None else load_eval_data(run, data_dir=data_dir, sample=sample, download=download)
    _check_compatible(run, data)
    device = _resolve_device(device)

    images, labels = data.images(split), data.labels(split)
    label = f"{run.name} ({run.model_name}) · {split} · {len(labels)} images{' (SAMPLE)' if data.is_sample else ''} · {RUNTIME} {device}"
    data_block = {**data.metadata(), "description": data.describe(), "evaluated_split_size": int(len(labels)), "notes": _data_notes(run, data)}
    return _evaluate_arrays(run, split, images, labels, data_block, label=label, device=device, batch_size=batch_size, plots=plots,
                            explain=explain, gradcam_layer=gradcam_layer, tta=tta, console=console, progress=progress)


def evaluate_images(
    run_dir: str | os.PathLike | Run,
    source,
    *,
    framing=None,
    device: str = "cpu",
    batch_size: int = 512,
    plots: bool = True,
    console=None,
    progress=None,
    load_progress=None,
) -> dict:
    """Evaluate on a lab's labelled images (class folders or a CSV of path,label, or an already listed
    ``LabelledImages``), framed like training.

    The entry lands in metrics.json under ``images-<folder name>`` beside val/test, with the same
    metrics and plots, plus the framing, the file count and the files that could not be read.
    ``framing`` (an ``edgeblood.framing.Framing``) defaults to the run's own.
    """
    from edgeblood.data.labelled_images import LabelledImages, load_framed, read_labelled_images

    run = run_dir if isinstance(run_dir, Run) else open_run(run_dir)
    device = _resolve_device(device)
    framing = framing or run.framing
    items = source if isinstance(source, LabelledImages) else read_labelled_images(source, run.classes, run.meta.class_names_full)
    images, labels, kept, skipped = load_framed(items, run.in_size, framing, progress=load_progress)
    key = f"images-{re.sub(r'[^A-Za-z0-9._-]+', '_', items.name) or 'folder'}"
    data_block = {
        "name": "images", "source": "images", "path": str(items.root), "layout": items.layout, "files": len(kept),
        "skipped_files": [{"file": str(f), "reason": why} for f, why in skipped],
        "framing": framing.to_dict(), "evaluated_split_size": int(len(labels)),
        "description": f"{items.describe()}, framed as: {framing.describe()}"
                       + (f"; {len(skipped)} file(s) skipped (unreadable)" if skipped else ""),
        "notes": [] if framing == run.framing else [f"framing differs from the run's own ({run.framing.describe()})"],
    }
    label = f"{run.name} ({run.model_name}) · {items.name} · {len(labels)} images · {RUNTIME} {device}"
    return _evaluate_arrays(run, key, images, labels, data_block, label=label, device=device, batch_size=batch_size, plots=plots,
                            console=console, progress=progress, domain_check=_domain_check(run, images, device, batch_size))


def _domain_check(run: Run, images: np.ndarray, device: str, batch_size: int) -> dict | None:
    """domain_flags, or why it could not run: the accuracy is still worth recording without it."""
    try:
        return domain_flags(run, images, device=device, batch_size=batch_size)
    except EdgebloodError as exc:
        return {"error": str(exc)}


def domain_flags(run: Run, images: np.ndarray, device: str = "cpu", batch_size: int = 512) -> dict | None:
    """How many of a lab's images the run's domain check calls unlike training: the ``domain`` output every
    export carries (> 1 = outside), computed here by the same PyTorch wrapper the exports are traced from.
    A folder is where this matters: on another lab's cells accuracy can fall to chance while the softmax
    stays confident (issue #26), so the share flagged is reported beside the accuracy. None without a profile."""
    if not run.meta.domain:
        return None
    from edgeblood.preprocess import wrap_run
    from edgeblood.runtimes import to_model_input

    module = wrap_run(run, with_label=False).to(device)
    with torch.inference_mode():
        scores = torch.cat([module(torch.from_numpy(to_model_input(images[i : i + batch_size])).to(device))[1].float().cpu()
                            for i in range(0, len(images), batch_size)]).numpy()
    run.model.cpu()
    outside = (scores > 1).any(1)
    return {"images": int(len(scores)), "flagged": int(outside.sum()), "share_flagged": float(outside.mean()) if len(scores) else 0.0,
            "flagged_by_features": int((scores[:, 0] > 1).sum()), "flagged_by_image_statistics": int((scores[:, 1] > 1).sum()),
            "val_flagged": run.meta.domain.get("val_flagged"),
            "meaning": "the run's domain check (its exports' 'domain' output): an image is flagged when either distance "
                       "exceeds its threshold, fitted so that a small share of the held-in val images (val_flagged) is"}


def _evaluate_arrays(run: Run, split: str, images: np.ndarray, labels: np.ndarray, data_block: dict, *, label: str, device: str,
                     batch_size: int, plots: bool, explain: bool = False, gradcam_layer: str | None = None, tta: bool = False,
                     console=None, progress=None, domain_check: dict | None = None) -> dict:
    """Predict, score, plot and record one evaluation (an official split or a folder of images)."""
    model = run.model
    t0 = time.perf_counter()
    probs = predict_probs(model, images, run.mean, run.std, batch_size=batch_size, device=device, progress=progress)
    seconds = time.perf_counter() - t0
    model.cpu()
    entry = {
        "split": split,
        "runtime": RUNTIME,
        "device": str(device),
        "model": run.model_name,
        "weights_sha256": weights_fingerprint(model),
        "data": data_block,
        "evaluated_at": utc_now(),
        "predict_seconds": round(seconds, 3),
        **compute_metrics(labels, probs, run.classes),
    }
    entry["calibration"] = _calibration_block(run, labels, probs, entry["ece"])
    if domain_check is not None:
        entry["domain_check"] = domain_check

    files: list[Path] = []
    if plots:
        files += write_evaluation_plots(run.plots_dir, split, entry, images, labels, probs,
                                        history=run.dir / HISTORY_FILE, label=label, run_name=run.name)
    if explain:
        entry["gradcam"], grid_files = explain_split(run, images, labels, probs, split, device=device, layer=gradcam_layer, label=label)
        files += grid_files
    entry["plots"] = [str(p.relative_to(run.dir)) for p in files]
    if tta:
        entry["tta"] = _tta_metrics(model, images, labels, run, device, batch_size, progress)

    metrics_path = run.dir / METRICS_JSON
    # Two evaluations of one run (val here, test in another shell) must not drop each other's split:
    # metrics.json is merged, and run.json's headline rebuilt from it, under one lock.
    with exclusive_lock(metrics_path.with_name(f".{METRICS_JSON}.lock")):
        merged = _merge_metrics_json(metrics_path, split, entry)
        run.meta = replace(run.meta, metrics={s: {k: e[k] for k in HEADLINE if k in e} for s, e in merged.items()})
        run.save(model)
    if console is not None:
        print_evaluation(entry, run, console)
    return entry


def _calibration_block(run: Run, labels: np.ndarray, probs: np.ndarray, ece: float) -> dict:
    """ECE with and without the run's temperature, and what the val review thresholds do on this split."""
    from edgeblood.evaluation.metrics import expected_calibration_error
    from edgeblood.evaluation.temperature import review_table, uncalibrated

    calibrated, t = run.meta.calibration is not None, run.meta.temperature
    block = {"temperature": t, "calibrated": calibrated, "ece": ece,
             "ece_uncalibrated": expected_calibration_error(labels, uncalibrated(probs, t))[0] if calibrated else ece}
    if run.meta.review_thresholds:
        conf, correct = probs.max(1), probs.argmax(1) == labels
        block["review"] = [{"val_review_rate": r.review_rate, "threshold": r.threshold, "flagged": float((conf < r.threshold).mean()),
                            "accepted_accuracy": float(correct[conf >= r.threshold].mean()) if (conf >= r.threshold).any() else None}
                           for r in run.meta.review_thresholds if r.review_rate in (0.01, 0.02, 0.05, 0.1, 0.2)]
    elif len(labels):
        block["review"] = [{"review_rate": r["review_rate"], "threshold": r["threshold"], "accepted_accuracy": r["accepted_accuracy"]}
                           for r in review_table(probs, labels, (0.05, 0.1))]
    return block


def _tta_metrics(model: nn.Module, images: np.ndarray, labels: np.ndarray, run: Run, device: str, batch_size: int, progress=None) -> dict:
    """Accuracy with the mean prediction over 8 rotations/flips (8x the compute of one pass)."""
    probs = predict_probs(model, images, run.mean, run.std, batch_size=batch_size, device=device, tta=True,
                          progress=None if progress is None else (lambda n: progress(n * TTA_VIEWS)))
    model.cpu()
    m = compute_metrics(labels, probs, run.classes)
    worst = min(m["per_class"], key=lambda c: m["per_class"][c]["recall"])
    return {"views": TTA_VIEWS, "method": "mean logits over 4 rotations x 2 flips", "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
            "balanced_accuracy": m["balanced_accuracy"], "worst_class": worst, "worst_class_recall": m["per_class"][worst]["recall"]}


def load_eval_data(run: Run, *, data_dir=None, sample: bool | str = "auto", download: bool = False) -> BloodMNIST:
    """The data to evaluate ``run`` on (see the module docstring for the rules)."""
    if run.meta.dataset.is_folder:
        return load_folder_for_run(run.meta)
    trained_on = run.meta.dataset.source or "full"
    size = run.in_size
    use_sample = trained_on == "sample" if sample == "auto" else bool(sample)
    if use_sample:
        if trained_on != "sample":
            raise EdgebloodError(
                f"run {run.name} was trained on the full BloodMNIST data; evaluating it on the embedded sample would "
                f"report numbers that compare with nothing - evaluate on the full {size} px data (--data-dir, EDGEBLOOD_DATA or --download)"
            )
        return load_sample(size)
    try:
        return load_bloodmnist(size, data_dir, download=download, sample=False)
    except EdgebloodError as exc:
        if "not found" not in str(exc):
            raise
        from edgeblood.data.bloodmnist import candidate_dirs
        from edgeblood.info import FILES

        looked = ", ".join(str(d) for d in candidate_dirs(data_dir))
        why = (f"run {run.name} was trained on the full data and is only evaluated on it" if trained_on != "sample"
               else "the full data was asked for (--full)")
        raise EdgebloodError(
            f"BloodMNIST {size} px ({FILES[size]['name']}) not found in: {looked}; {why} - add --download or point "
            "--data-dir / EDGEBLOOD_DATA at the folder holding it"
        ) from None


def explain_split(run: Run, images: np.ndarray, labels: np.ndarray, probs: np.ndarray, split: str, *,
                  device: str = "cpu", layer: str | None = None, label: str = "") -> tuple[dict, list[Path]]:
    """Grad-CAM grids per class for ``split`` plus the sanity check; returns (summary, files).

    Grad-CAM runs only on the examples the grids show (chosen from the predictions already made),
    so explaining the full test split costs seconds, not a second pass over it.
    """
    from edgeblood.evaluation.gradcam import explain
    from edgeblood.evaluation.gradcam_checks import sanity_check
    from edgeblood.evaluation.plots import write_class_grids

    preds = probs.argmax(1)
    rng = np.random.default_rng(0)
    chosen: list[int] = []
    for cls in np.unique(labels):
        for pool in (np.flatnonzero((labels == cls) & (preds == cls)), np.flatnonzero((labels == cls) & (preds != cls))):
            chosen += list(rng.choice(pool, min(EXPLAIN_PER_SIDE, len(pool)), replace=False)) if len(pool) else []
    idx = np.sort(np.asarray(chosen, dtype=np.int64))
    model = run.model
    expl = explain(model, images[idx], run.mean, run.std, layer=layer, device=device)
    files = write_class_grids(images[idx], labels[idx], expl, run.classes, run.plots_dir / "gradcam",
                              prefix=f"gradcam_{split}", per_side=EXPLAIN_PER_SIDE, label=label)
    check_idx = _stratified(labels, SANITY_IMAGES)
    summary = {"method": "Grad-CAM", "layer": expl.layer, "target": "predicted class",
               "sanity": sanity_check(model, images[check_idx], run.mean, run.std, layer=expl.layer, device=device)}
    model.cpu()
    return summary, files


def print_evaluation(entry: dict, run: Run | Path, console) -> None:
    """What `edgeblood evaluate` prints: the data used, the compact table, where the files are.

    ``run`` is the run or its directory (a training's display has the directory only: its events carry no objects).
    """
    run_dir = run if isinstance(run, Path) else run.dir
    data = entry["data"]
    colour = "yellow" if data.get("source") == "sample" else "green"
    console.print(f"data: [{colour}]{data['description']}[/]", highlight=False, soft_wrap=True)
    for note in data.get("notes", []):
        console.print(f"  note: {note}", highlight=False, soft_wrap=True)
    what = f"{entry['split']} split" if entry["split"] in SPLITS else f"{data.get('path', entry['split'])}"
    title = (f"{run_dir.name} ({entry['model']}) · {what}, {entry['num_samples']} images"
             f"{' of the SAMPLE' if data.get('source') == 'sample' else ''} · runtime {entry['runtime']} · device {entry['device']}")
    console.print(format_metrics_table(entry, title=title))
    if entry["top_confusions"]:
        top = ", ".join(f"{c['true']}→{c['predicted']} {c['count']}" for c in entry["top_confusions"][:3])
        console.print(f"most frequent confusions ({entry['split']}, true→predicted): {top}", highlight=False)
    if "tta" in entry:
        t = entry["tta"]
        console.print(f"test-time augmentation ({t['views']} views, {t['views']}x compute; reported apart from the single-pass figures): "
                      f"accuracy {100 * t['accuracy']:.2f}%  macro F1 {100 * t['macro_f1']:.2f}%", highlight=False, soft_wrap=True)
    if "domain_check" in entry and "error" in entry["domain_check"]:
        console.print(f"[yellow]domain check: not computed[/] ({entry['domain_check']['error']})", highlight=False, soft_wrap=True)
    elif "domain_check" in entry:
        d = entry["domain_check"]
        console.print(f"domain check: {d['flagged']} of {d['images']} images ({100 * d['share_flagged']:.1f} %) flagged as unlike the "
                      f"training data ({d['flagged_by_features']} by their features, {d['flagged_by_image_statistics']} by pixel statistics)"
                      + (f"; of the held-in val split, {100 * d['val_flagged']:.1f} % are" if d.get("val_flagged") is not None else ""),
                      highlight=False, soft_wrap=True)
    if "gradcam" in entry:
        s = entry["gradcam"]["sanity"]
        verdict = "[green]passed[/]" if s["passed"] else "[red]FAILED[/]"
        console.print(
            f"Grad-CAM sanity on {s['images']} {entry['split']} images (layer {s['layer']}): {verdict} - map denser on the stained cell "
            f"than on background for {100 * s['share_images_cell_enriched']:.0f}% of images, peak on the cell for "
            f"{100 * s['share_images_peak_on_cell']:.0f}%; rank correlation with a weight-randomised model {s['randomised_spearman_median']:.2f} (median)",
            highlight=False, soft_wrap=True,
        )
    console.print(f"metrics: {run_dir / METRICS_JSON} (entry \"{entry['split']}\"; headline in run.json)", highlight=False, soft_wrap=True)
    if entry["plots"]:
        folders = sorted({str((run_dir / p).parent) for p in entry["plots"]})
        console.print(f"plots:   {', '.join(folders)} ({len(entry['plots'])} PNG files)", highlight=False, soft_wrap=True)


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the model's state (names, dtypes, shapes, bytes): same weights, same fingerprint."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _merge_metrics_json(path: Path, split: str, entry: dict) -> dict:
    """Add ``entry`` to metrics.json, dropping entries of other weights; returns what was written (caller holds the lock)."""
    current = read_metrics(path.parent)
    merged = {s: e for s, e in current.items() if isinstance(e, dict) and e.get("weights_sha256") == entry["weights_sha256"]}
    if "tta" not in entry and "tta" in merged.get(split, {}):  # same weights: a plain re-evaluation keeps the TTA figures
        entry["tta"] = merged[split]["tta"]
    merged[split] = entry
    merged = {s: merged[s] for s in sorted(merged, key=lambda s: (SPLITS + (s,)).index(s))}
    write_json(path, merged)
    return merged


def _check_compatible(run: Run, data: BloodMNIST | FolderDataset) -> None:
    if data.size != run.in_size:
        raise EdgebloodError(f"run {run.name} takes {run.in_size} px images but the data is {data.size} px; load the {run.in_size} px data")
    if len(run.classes) != len(data.classes):
        raise EdgebloodError(f"run {run.name} has {len(run.classes)} classes, the data {len(data.classes)} ({data.describe()}); "
                             "evaluate it on the data it was trained on, or on a folder of its classes with --images")


def _data_notes(run: Run, data: BloodMNIST) -> list[str]:
    notes = list(data.notes)
    trained = run.meta.dataset
    if trained.source and trained.source != data.source:
        notes.append(f"the run was trained on the {trained.source} data but is evaluated on the {data.source} data")
    elif data.source == "full" and trained.md5 and data.md5 and trained.md5 != data.md5:
        notes.append(f"evaluated on a different file (md5 {data.md5}) than the run was trained on (md5 {trained.md5})")
    return notes


def _resolve_device(device: str) -> str:
    return str(resolve_device(str(device)))


def _stratified(labels: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` indices spread evenly over the classes (deterministic)."""
    classes = np.unique(labels)
    per = max(1, n // max(len(classes), 1))
    rng = np.random.default_rng(1)
    idx = [rng.choice(np.flatnonzero(labels == c), min(per, int((labels == c).sum())), replace=False) for c in classes]
    return np.sort(np.concatenate(idx)) if idx else np.zeros(0, dtype=np.int64)
