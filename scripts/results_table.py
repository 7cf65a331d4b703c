"""The published results table: rows collected from run directories into bench/results.json, and the
tables rendered from it: the full one in docs/results.md, a 10-row headline in README.md.

    python scripts/results_table.py add runs/se-cnn-28px [RUN ...]   # (re)collect rows from finished runs
    python scripts/results_table.py add --cpu "Intel Xeon, AMX" RUN   # a run whose run.json predates training.cpu
    python scripts/results_table.py seeds runs/a runs/a-seed1 runs/a-seed2  # mean and spread of one recipe over seeds (row of the first)
    python scripts/results_table.py render                            # rewrite both tables from bench/results.json

A row is only as good as its run directory: fp32 accuracy from metrics.json (PyTorch, full test split),
int8 accuracy from export/manifest.json (the int8 artifact re-measured with its own runtime on the full
test split), latency from bench/report.json (1 thread, batch 1). Missing pieces stay empty, never guessed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgeblood.config import TrainConfig
from edgeblood.config.recipes import get_recipe
from edgeblood.cpu import cpu_label
from edgeblood.manifest import load_manifest
from edgeblood.runs import read_metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling helpers, also when loaded from a file by the tests
from doc_sections import portable_command, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
README = ROOT / "README.md"
PAGE = ROOT / "docs" / "results.md"
SECTION, HEADLINE = "results", "results-headline"  # <!-- NAME:begin/end --> in docs/results.md and README.md
HEADLINE_ROWS = 10
OTHER_LAB_FOLDER = "external/jtsc"  # the other lab's cells under the data folder (../shared/data/external/README.md)

# Published anchors on the official BloodMNIST test split (issue 6); sources as cited there.
ANCHORS = [
    {"model": "ResNet-18 (28)", "size": 28, "params": 11_200_000, "accuracy": 95.8, "source": "MedMNIST v2 benchmark (Yang et al., Sci. Data 2023)"},
    {"model": "Google AutoML Vision", "size": 28, "params": None, "accuracy": 96.6, "source": "MedMNIST v2 benchmark (Yang et al., Sci. Data 2023)"},
    {"model": "VGG16 (end-to-end)", "size": 28, "params": 138_000_000, "accuracy": 94.85, "source": "MedMNIST+ (Doerrich et al. 2024)"},
    {"model": "3-layer CNN", "size": 28, "params": 422_344, "accuracy": 86.52, "source": "422 K-param CNN study"},
    {"model": "CBAM-VGG15", "size": 64, "params": 7_270_000, "accuracy": 98.33, "source": "attention-CNN BloodMNIST study"},
    {"model": "SE-CNN", "size": 64, "params": 460_000, "accuracy": 97.92, "source": "attention-CNN BloodMNIST study"},
    {"model": "VGG16", "size": 64, "params": 138_000_000, "accuracy": 98.20, "source": "MedMNIST+ (Doerrich et al. 2024)"},
    {"model": "DenseNet-121", "size": 128, "params": 8_000_000, "accuracy": 98.90, "source": "MedMNIST+ (Doerrich et al. 2024)"},
    {"model": "skip-connection CNN", "size": 128, "params": 310_000, "accuracy": 96.78, "source": "Padova skip-connection CNN study"},
]

# Systems of the cited studies without a trained row here yet (#18 part 3, #28 item 2), and why. Entries leave the
# table by themselves once a row of that model exists. The VGG estimate scales 2026-12-06's epoch times at 1 thread
# in bf16 on a 2-core AVX-512 BF16 EPYC with a second training running (sa-cnn 60 M MACs 47-60 s, inception 170 M 131 s).
PENDING = [
    {"model": "Padova U-Net encoder (2.19 M), Inception (0.04 M), Inception+Skip (0.05 M)", "study": "Padova skip-connection CNN study",
     "why": "not registered: the study's layer tables are not available offline here, and param counts could not be checked "
            "against the paper; the registry's unet-encoder / inception / inception-skip are the attention study's models"},
    *({"model": name, "study": "attention-CNN BloodMNIST study" + (" (98.33 % @ 64 px)" if name == "cbam-vgg15" else ""),
       "why": "registered, not trained: 7.3 M params, 310 M MACs at 64 px; est. 4 min per epoch at 1 thread in bf16 on a 2-core "
              "AMD EPYC with AVX-512 BF16 (inception, 170 M MACs, took 131 s there), 3.3 h for the published recipe's 50 epochs "
              "(less if early stopping ends it); queued in scripts/queues/cited-systems.txt (python scripts/train_queue.py)"}
      for name in ("vgg15", "se-vgg15", "sa-vgg15", "cbam-vgg15")),
    {"model": "inception", "study": "attention-CNN BloodMNIST study",
     "why": "registered (the attention study's, 0.95 M), not trained: 130 M MACs at 28 px, est. 2.1 h for 30 epochs here"},
    {"model": "inception-skip", "study": "attention-CNN BloodMNIST study",
     "why": "registered (the attention study's, 1.34 M), not trained: 169 M MACs at 28 px, est. 2.7 h for 30 epochs here"},
    *({"model": name, "study": "attention-CNN BloodMNIST study",
       "why": f"registered, not trained yet: {params}, 12.7 M MACs at 28 px, est. 15-20 min for 30 epochs here (the slot went to "
              "the real-pixel augmentation comparison of 2026-12-04)"}
      for name, params in (("sa-cnn", "0.40 M"), ("cbam-cnn", "0.44 M"))),
    {"model": "skip-cnn", "study": "Padova skip-connection CNN study (96.78 % @ 128 px)",
     "why": "registered (0.31 M), not trained yet: 30.5 M MACs at 28 px, est. 30 min for 30 epochs here; at its study's 128 px "
            "about 0.6 G MACs, est. 20 min per epoch"},
    {"model": "unet-encoder", "study": "attention-CNN BloodMNIST study",
     "why": "registered (the attention study's, 4.72 M), not trained: 58 M MACs at 28 px, est. 1 h for 30 epochs here"},
]


def collect(run_dir: Path) -> dict:
    if not (run_dir / "run.json").is_file():
        raise SystemExit(f"{run_dir} is not a run directory (no run.json there); pass finished runs, e.g. runs/se-cnn-28")
    run = json.loads((run_dir / "run.json").read_text())
    if run["dataset"].get("source") == "folder":
        raise SystemExit(f"{run_dir} was trained on the image folder {run['dataset'].get('file')}: this table lists BloodMNIST test-split "
                         "figures only (the fine-tuning table is made by scripts/finetune_table.py)")
    metrics = read_metrics(run_dir)
    test = metrics["test"]
    recalls = _per_class_recall(test)
    worst = min(recalls.items(), key=lambda kv: kv[1]) if recalls else (None, None)
    row = {
        "run": run_dir.name,
        "model": run["model"]["name"],
        "model_config": {k: v for k, v in run["model"]["config"].items() if k not in ("name", "num_classes", "in_size")},
        "size": run["input"]["size"],
        "data": _data_label(run["dataset"]),
        "params": run["model"]["params"],
        "macs": run["model"]["macs"],
        "fp32_accuracy": test["accuracy"],
        "macro_f1": test.get("macro_f1"),
        "worst_class": worst[0],
        "worst_class_recall": worst[1],
        "val_accuracy": metrics.get("val", {}).get("accuracy"),
        "val_originals": _val_originals(metrics),
        "other_lab": _other_lab(metrics),
        "epochs": run["training"].get("epochs_run"),
        "train_minutes": round(run["training"].get("wall_time_s", 0) / 60, 1),
        "train_device": run["training"].get("device"),
        "train_precision": run["training"].get("precision"),
        "train_cpu": cpu_label(run["training"].get("cpu")),
        "command": _command(run["training"]),
        "derived": None,
        "int8": _int8(run_dir),
        "latency": _latency(run_dir),
        "tta_accuracy": (test.get("tta") or {}).get("accuracy"),
        "ece": _ece(test),
        "teacher": _teacher(run["training"].get("teacher")),
        "published": _published(run["model"]["name"]),
    }
    config = run["training"].get("config", {})
    derived = ["minority classes oversampled (--oversample)" if config.get("oversample_minority") else "",
               f"weights averaged over the last {config['swa_epochs']} epochs (--swa)" if config.get("swa_epochs") else ""]
    row["derived"] = "; ".join(d for d in derived if d) or None
    augment = run["training"].get("config", {}).get("augment", {})
    if "jpeg_prob" not in augment:
        row["recipe_note"] = "recipe before real-pixel augmentation"
    elif not any(augment.get(k) for k in ("jpeg_prob", "stain", "crop_shift")) and run["training"].get("recipe") != "published":
        row["recipe_note"] = "real-pixel augmentation off"
    if run["training"].get("recipe") == "published":
        planned = get_recipe("published", run["model"]["name"], run["input"]["size"]).get("epochs")
        given = run["training"].get("config", {}).get("epochs")
        if planned and given and given < planned:
            row["recipe_note"] = f"{given} of the published recipe's {planned} epochs"
    comp = run.get("compression")
    if comp:  # a pruned/sparse child run: its cost is the fine-tune, its command the compress call
        row["derived"] = f"{comp['method']} of {Path(comp['parent_run']).name}"
        row["command"] = comp.get("command", row["command"])
        row["epochs"] = comp.get("finetune", {}).get("epochs", 0)
        row["train_minutes"] = round(comp.get("finetune", {}).get("wall_time_s", 0) / 60, 1)
    return row


def _images_entry(metrics: dict, folder: str) -> dict | None:
    """The `evaluate RUN --images DIR` entry of metrics.json whose DIR ends with ``folder`` (None: never evaluated there)."""
    for key, entry in metrics.items():
        data = entry.get("data") or {} if isinstance(entry, dict) else {}
        if key.startswith("images-") and str(data.get("path", "")).rstrip("/").endswith(folder):
            return entry
    return None


def _val_originals(metrics: dict) -> dict | None:
    """`edgeblood evaluate RUN --images .../pbc-originals/val` (the model's framing): accuracy on the 1,712 captures."""
    entry = _images_entry(metrics, "pbc-originals/val")
    if entry is None:
        return None
    val = metrics.get("val") or {}
    deltas = {c: entry["per_class"][c]["recall"] - val["per_class"][c]["recall"] for c in entry.get("per_class", {}) if c in val.get("per_class", {})}
    worst = max(deltas, key=lambda c: abs(deltas[c])) if deltas else None
    return {"accuracy": entry["accuracy"], "npz_val_accuracy": val.get("accuracy"), "framing": (entry["data"].get("framing") or {}).get("description"),
            "largest_recall_change": {"class": worst, "delta": deltas[worst]} if worst else None}


def _command(training: dict) -> str:
    """The command that trained the run; a run trained on later (`--resume RUN --epochs N`) shows both steps."""
    command = portable_command(training.get("command") or "")
    resumed = training.get("resumed_with") or ""
    return f"{command} && {portable_command(resumed)}" if "--epochs" in resumed else command


def _other_lab(metrics: dict) -> dict | None:
    """`edgeblood evaluate RUN --images .../external/jtsc`: another lab's 297 white cells (issue #26), zero-shot balanced
    accuracy over the classes present and how many the run's domain check flags as unlike its training data."""
    entry = _images_entry(metrics, OTHER_LAB_FOLDER)
    if entry is None:
        return None
    check = entry.get("domain_check") or {}  # absent: evaluated before the count was recorded
    return {"balanced_accuracy": entry["balanced_accuracy"], "images": entry["num_samples"], "flagged": check.get("flagged")}


def _ece(test: dict) -> dict | None:
    """Test-split ECE of the saved (temperature-scaled) model and of the same model before scaling."""
    cal = test.get("calibration") or {}
    if test.get("ece") is None or cal.get("temperature") is None:  # a run made before calibration: its ECE is unscaled
        return None
    return {"calibrated": test["ece"], "uncalibrated": cal.get("ece_uncalibrated"), "temperature": cal.get("temperature")}


def _teacher(info: dict | None) -> str | None:
    return f"{Path(info['run']).name} ({info['model']} @ {info['in_size']} px)" if info else None


def _published(model: str) -> str | None:
    """The study's own figure for a reference model, from the registry (None for edgeblood's models)."""
    from edgeblood.errors import EdgebloodError
    from edgeblood.models import get_entry

    try:
        entry = get_entry(model)
    except EdgebloodError:  # a model since removed from the registry
        return None
    pub = entry.published
    if not pub.get("accuracy"):
        return None
    return f"{pub['accuracy']:.2f} % @ {pub.get('in_size', '?')} px ({entry.reference.split(':')[0]})"


SEED_FREE_KEYS = ("seed", "name", "threads", "channels_last", "data_dir", "out_dir", "device", "keep_state")  # may differ between seed runs


def seed_summary(run_dirs: list[Path]) -> dict:
    """Mean and spread of the test accuracy over runs that differ only in their seed (checked, else SystemExit)."""
    runs, accs = [], []
    for d in run_dirs:
        try:
            runs.append(json.loads((d / "run.json").read_text()))
            accs.append(read_metrics(d)["test"]["accuracy"])
        except (OSError, ValueError, KeyError):
            raise SystemExit(f"{d} has no finished, test-evaluated run (run.json + metrics.json 'test'); finish or evaluate it first") from None
    recipe = [_recipe_of(r) for r in runs]
    for d, r in zip(run_dirs[1:], recipe[1:]):
        if r != recipe[0]:
            diff = sorted(k for k in set(r) | set(recipe[0]) if r.get(k) != recipe[0].get(k))
            raise SystemExit(f"{d} is not the same recipe as {run_dirs[0]} (differs in: {', '.join(diff)}); seeds must differ only in --seed")
    seeds = [r["training"]["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"runs share a seed ({seeds}); pass runs trained with different --seed values")
    mean = sum(accs) / len(accs)
    std = (sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) ** 0.5 if len(accs) > 1 else 0.0
    return {"n": len(accs), "mean": mean, "std": std, "min": min(accs), "max": max(accs), "seeds": seeds,
            "runs": [d.name for d in run_dirs], "accuracies": accs}


def _recipe_of(run: dict) -> dict:
    """What defines a training result: model config, data, training config (seed and plumbing excluded)."""
    config = _with_defaults(run["training"]["config"])
    config = {k: v for k, v in config.items() if k not in SEED_FREE_KEYS and k != "model_cfg"}
    teacher = (run["training"].get("teacher") or {}).get("weights_sha256")
    model = {k: v for k, v in run["model"]["config"].items() if k != "name"}
    return {"model_config": model, "data_md5": run["dataset"].get("md5"), "teacher_weights": teacher,
            **{k: v for k, v in config.items() if k not in ("teacher", "model")}}


def _with_defaults(config: dict) -> dict:
    """A run's training config with the options it predates at their defaults (off: --swa, --keep-state, ...), so a run
    made before an option existed still compares equal to a new run that leaves it off."""
    defaults = json.loads(json.dumps(TrainConfig().to_dict()))  # tuples as run.json stores them: lists
    return {**defaults, **config, "augment": {**defaults["augment"], **config.get("augment", {})}}


def _per_class_recall(test: dict) -> dict:
    return {name: stats["recall"] for name, stats in (test.get("per_class") or {}).items()}


def _data_label(ds: dict) -> str:
    if ds.get("source") == "sample":
        return "embedded sample"
    return f"{ds['size']} px (regenerated)" if ds.get("variant") == "regenerated" else f"{ds['size']} px official"


def _int8(run_dir: Path) -> dict | None:
    best = None
    for art in load_manifest(run_dir / "export")["artifacts"]:
        ev = art.get("evaluation") or {}
        if art.get("precision") == "int8" and ev.get("status") == "ok":
            cand = {"artifact": art["path"], "runtime": ev["runtime"], "accuracy": ev["accuracy"], "macro_f1": ev.get("macro_f1"),
                    "size_bytes": art.get("size_bytes")}
            if best is None or cand["accuracy"] > best["accuracy"]:
                best = cand
    return best


def _latency(run_dir: Path) -> dict | None:
    path = run_dir / "bench" / "report.json"
    if not path.is_file():
        return None
    rows = [r for r in json.loads(path.read_text())["rows"] if r["status"] == "ok" and r["threads"] == 1 and r["batch"] == 1]
    if not rows:
        return None
    fastest = min(rows, key=lambda r: r["latency_ms"]["p50"])
    torch_rows = [r for r in rows if r["runtime"] == "pytorch"]
    return {"variant": fastest["variant"], "runtime": fastest["runtime"], "p50_ms": fastest["latency_ms"]["p50"],
            "pytorch_p50_ms": torch_rows[0]["latency_ms"]["p50"] if torch_rows else None, "machine": fastest["machine"]}


def render(rows: list[dict]) -> str:
    out = ["Official BloodMNIST test split (3,421 images); model selection on val only. fp32 accuracy: PyTorch; int8: the best "
           "int8 artifact re-measured with its own runtime on the full test split; latency: fastest variant, 1 thread, batch 1 "
           "(`edgeblood bench` on a 2-core cloud VM; ratios within one report are what to compare). Train "
           "times are wall-clock on a 2-core VM, often while other trainings and test suites shared it (expect them "
           "2-4x shorter on an idle one), with the CPU that trained where the run recorded it (bf16 on AVX-512 BF16 or "
           "AMX trains about 5x faster than fp32 on AVX2); a pruned row's time is its fine-tune. Commands are shown without the machine's own "
           "`--out` and `--data-dir`. Regenerate: "
           "`python scripts/results_table.py add RUN && python scripts/results_table.py render`.", "",
           "TTA x8: mean logits over 4 rotations x 2 flips (8x compute), reported apart from single-pass accuracy. "
           "Seeds: mean ± sample std over independent trainings of the same command with --seed 0/1/2. "
           "Distilled rows name their teacher (`--teacher`); published: the reference study's own figure for that model.", "",
           "Val originals: the 1,712 original PBC captures behind the val split, framed with the model's framing "
           "(`edgeblood evaluate RUN --images ../shared/data/pbc-originals/val`), beside the npz val accuracy; "
           "'-' where the run was not evaluated on them.", "",
           "Other lab: the 297 white cells of another lab, microscope and stain (JTSC, `../shared/data/external/jtsc`; "
           "`edgeblood evaluate RUN --images ../shared/data/external/jtsc`), zero-shot balanced accuracy over the 5 classes "
           "present, and how many of them the run's domain check flags as unlike its training data (what an app is told; "
           "about 4 % of held-in val images are flagged). '-' where the run was not evaluated on them.", "",
           "ECE: expected calibration error on the test split (15 bins) of the saved model, whose logits are divided by a "
           "temperature fitted on val (training does this), and in brackets the same model before that scaling; '-' where the "
           "run has no temperature scaling or its row was collected before this column existed.", "",
           "| model | data | params | MACs | test acc fp32 | TTA x8 | int8 acc | val originals (npz val) | other lab: bal. acc, flagged "
           "| macro-F1 | worst-class recall | ECE (before T) | latency p50 (variant) | train time | published | command |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (r["size"], -r["fp32_accuracy"])):
        int8 = f"{100 * r['int8']['accuracy']:.2f} % ({r['int8']['runtime']})" if r.get("int8") else "-"
        lat = r.get("latency")
        lat_s = f"{lat['p50_ms']:.3f} ms ({lat['variant']}, {lat['runtime']})" if lat else "-"
        seeds = r.get("seeds")
        acc = f"{100 * r['fp32_accuracy']:.2f} %" + (f" (mean {100 * seeds['mean']:.2f} ± {100 * seeds['std']:.2f}, {seeds['n']} seeds)" if seeds else "")
        tta = f"{100 * r['tta_accuracy']:.2f} %" if r.get("tta_accuracy") else "-"
        worst = f"{r['worst_class']} {100 * r['worst_class_recall']:.1f} %" if r.get("worst_class") else "-"
        orig = r.get("val_originals")
        orig_s = f"{100 * orig['accuracy']:.2f} % ({100 * orig['npz_val_accuracy']:.2f} %)" if orig and orig.get("npz_val_accuracy") else "-"
        lab = r.get("other_lab")
        lab_s = (f"{100 * lab['balanced_accuracy']:.1f} %, " + (f"{lab['flagged']}/{lab['images']} flagged" if lab.get("flagged") is not None
                                                               else "flags not recorded")) if lab else "-"
        ece = r.get("ece")
        ece_s = (f"{ece['calibrated']:.3f}" + (f" ({ece['uncalibrated']:.3f})" if ece.get("uncalibrated") is not None else "")) if ece else "-"
        cfg = ", ".join(f"{k}={json.dumps(v)}" for k, v in (r.get("model_config") or {}).items())
        cpu = f", {r['train_cpu']}" if r.get("train_cpu") else ""
        # Escaped brackets: "[a] [b]" would read as a Markdown reference link on the docs site.
        derived = f" \\[{r['derived']}\\]" if r.get("derived") else ""
        derived += f" \\[{r['recipe_note']}\\]" if r.get("recipe_note") else ""
        derived += f" \\[distilled from {r['teacher']}\\]" if r.get("teacher") else ""
        out.append(f"| {r['model']}{f' ({cfg})' if cfg else ''}{derived} | {r['data']} | {r['params'] / 1e3:,.0f} K | {r['macs'] / 1e6:.1f} M "
                   f"| {acc} | {tta} | {int8} | {orig_s} | {lab_s} | "
                   f"{100 * r['macro_f1']:.2f} % | {worst} | {ece_s} | {lat_s} | {r['train_minutes']} min ({r['epochs']} ep, {r['train_device']}, "
                   f"{r['train_precision']}{cpu}) | {r.get('published') or _published(r['model']) or '-'} | `{portable_command(r['command'] or '')}` |")
    out += ["", "Published anchors (official test split; their numbers, not re-run here unless a row above says so):", "",
            "| model | input | params | test acc | source |", "| --- | --- | ---: | ---: | --- |"]
    for a in ANCHORS:
        params = f"{a['params'] / 1e6:.2f} M" if a["params"] else "-"
        out.append(f"| {a['model']} | {a['size']} px | {params} | {a['accuracy']:.2f} % | {a['source']} |")
    trained = {r["model"] for r in rows}
    pending = [p for p in PENDING if p["model"] not in trained]
    if pending:
        out += ["", "Systems of the cited studies with no trained row yet, and why:", "", "| model | study | status |", "| --- | --- | --- |"]
        out += [f"| {p['model']} | {p['study']} | {p['why']} |" for p in pending]
    return "\n".join(out)



def headline_rows(rows: list[dict], n: int = HEADLINE_ROWS) -> list[dict]:
    """The ``n`` most accurate models, one row each (its best trained row: no pruned, distilled or oversampled variants)."""
    best: dict[tuple[str, int], dict] = {}
    for r in rows:
        if r.get("derived") or r.get("teacher") or r["data"] == "embedded sample":
            continue
        key = (r["model"], r["size"])
        if key not in best or r["fp32_accuracy"] > best[key]["fp32_accuracy"]:
            best[key] = r
    return sorted(best.values(), key=lambda r: -r["fp32_accuracy"])[:n]


def render_headline(rows: list[dict]) -> str:
    """The README's table: the best row of each of the most accurate models, with the columns a newcomer compares."""
    out = ["| model | input | params | MACs | test acc | int8 acc | latency p50 (1 thread) | published |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in headline_rows(rows):
        cfg = ", ".join(f"{k}={json.dumps(v)}" for k, v in (r.get("model_config") or {}).items())
        seeds = r.get("seeds")
        acc = f"{100 * r['fp32_accuracy']:.2f} %" + (f" ({100 * seeds['mean']:.2f} ± {100 * seeds['std']:.2f}, {seeds['n']} seeds)" if seeds else "")
        int8 = f"{100 * r['int8']['accuracy']:.2f} %" if r.get("int8") else "-"
        lat = f"{r['latency']['p50_ms']:.3f} ms" if r.get("latency") else "-"
        out.append(f"| {r['model']}{f' ({cfg})' if cfg else ''} | {r['data']} | {r['params'] / 1e3:,.0f} K | {r['macs'] / 1e6:.1f} M | {acc} "
                   f"| {int8} | {lat} | {r.get('published') or _published(r['model']) or '-'} |")
    return "\n".join(out)


def main(argv: list[str]) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"schema": "edgeblood.results/1", "rows": []}
    if {"-h", "--help"} & set(argv):
        print(__doc__)
    elif argv[:1] == ["add"]:
        by_run = {r["run"]: r for r in data["rows"]}
        cpu = argv[argv.index("--cpu") + 1] if "--cpu" in argv[:-1] else None
        for arg in [a for i, a in enumerate(argv[1:], 1) if a != "--cpu" and argv[i - 1] != "--cpu"]:
            row = collect(Path(arg))
            row["train_cpu"] = row["train_cpu"] or cpu or by_run.get(row["run"], {}).get("train_cpu")  # re-collecting keeps what --cpu said once
            row["seeds"] = by_run.get(row["run"], {}).get("seeds")
            by_run[row["run"]] = row
            print(f"collected {row['run']}: {100 * row['fp32_accuracy']:.2f} %")
        data["rows"] = list(by_run.values())
        data["anchors"] = ANCHORS
        RESULTS.write_text(json.dumps(data, indent=1) + "\n")
    elif argv[:1] == ["seeds"] and len(argv) >= 3:
        dirs = [Path(a) for a in argv[1:]]
        by_run = {r["run"]: r for r in data["rows"]}
        if dirs[0].name not in by_run:
            sys.exit(f"{dirs[0].name} has no row yet; run: python scripts/results_table.py add {dirs[0]}")
        by_run[dirs[0].name]["seeds"] = summary = seed_summary(dirs)
        print(f"{dirs[0].name}: {100 * summary['mean']:.2f} ± {100 * summary['std']:.2f} % over {summary['n']} seeds")
        RESULTS.write_text(json.dumps(data, indent=1) + "\n")
    elif argv[:1] == ["render"]:
        write_section(PAGE, SECTION, render(data["rows"]))
        write_section(README, HEADLINE, render_headline(data["rows"]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
