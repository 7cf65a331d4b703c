"""Another lab's cells, one table (issue #26 item 5): in-domain, zero-shot, after `adapt`, after k-shot fine-tuning.

    python scripts/external_table.py RUN [RUN ...] --external DATA/external/jtsc --originals DATA/pbc-originals/val \\
        --out reports/external [--shots 5,10,25,all] [--folds 10] [--recipe finetune] [--page docs/results.md]

Per run: BloodMNIST test accuracy (its metrics.json), the share of the held-in val captures the domain check
flags, then on the external folder: accuracy, balanced accuracy and per-class recall zero-shot, after
`edgeblood adapt` (no labels), and after fine-tuning (`train --init`) on k labelled images per class.
The k-shot rows are cross-validated: per fold, a stratified fifth of each class is the test set, k
images per class of the rest train (and, with so few labels, also serve as the val set that picks the
epoch: declared, not tuned on the test fifth). Classes with fewer than 5 images (the one JTSC basophil)
are left out of the fine-tuning rows and said so. The external set's duplicates were dropped upstream
(its PROVENANCE.md), so no cell lies in two splits.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeblood.atomic import write_json, write_text
from edgeblood.cli.app import console
from edgeblood.data.labelled_images import read_labelled_images
from edgeblood.domain.adapt import adapt_run
from edgeblood.evaluation.evaluate import domain_flags, evaluate_images
from edgeblood.imageio import load_images
from edgeblood.runs import open_run

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling helpers
from doc_sections import RESULTS_PAGE, write_section  # noqa: E402

SECTION = "external-table"  # <!-- external-table:begin/end --> in docs/results.md
MIN_PER_CLASS = 5


def scores(run_dir: Path, folder: Path) -> dict:
    """Accuracy on the folder and the share the domain check flags (None: the run has no check), from one evaluation."""
    entry = evaluate_images(run_dir, folder, plots=False)
    recall = {c: round(v["recall"], 4) for c, v in entry["per_class"].items() if v["support"]}
    check = entry.get("domain_check")
    return {"accuracy": entry["accuracy"], "balanced_accuracy": entry["balanced_accuracy"], "recall": recall,
            "images": entry["data"]["files"], "flagged": check["share_flagged"] if check else None}


def flagged_share(run_dir: Path, folder: Path) -> float | None:
    """The share of a folder (labelled or not) the run's domain check flags; reads the run, writes nothing to it."""
    run = open_run(run_dir)
    images, _ = load_images([folder], run.in_size, framing=run.framing)
    check = domain_flags(run, images)
    return check["share_flagged"] if check else None


def adapted(run_dir: Path, folder: Path, work: Path) -> Path:
    run = open_run(run_dir)
    images, files = load_images([folder], run.in_size, framing=run.framing)
    dest = work / f"{run.name}-adapted"
    adapt_run(run, images, files, framing=run.framing, out_dir=dest)
    return dest


def k_shot(run_dir: Path, folder: Path, k: int | None, folds: int, work: Path, recipe: str = "finetune") -> dict:
    """Mean and spread over ``folds`` of fine-tuning (``train --init RUN --recipe finetune``) on k labelled images per class
    (None: all the rest)."""
    from edgeblood.config import config_from_recipe
    from edgeblood.training import train
    from edgeblood.training.display import RichProgress

    items = read_labelled_images(folder, open_run(run_dir).classes)
    by_class: dict[str, list[Path]] = {}
    for f, label in zip(items.files, items.labels):
        by_class.setdefault(items.classes[label], []).append(Path(f))
    kept = {c: fs for c, fs in by_class.items() if len(fs) >= MIN_PER_CLASS}
    results = []
    for fold in range(folds):
        rng = np.random.default_rng(fold)
        root = work / f"k{k or 'all'}-f{fold}"
        for c, fs in kept.items():
            order = [fs[i] for i in rng.permutation(len(fs))]
            n_test = max(1, round(len(fs) / 5))
            test, rest = order[:n_test], order[n_test:]
            train_files = rest if k is None else rest[:k]
            for split, chosen in (("train", train_files), ("val", train_files), ("test", test)):
                (root / "data" / split / c).mkdir(parents=True, exist_ok=True)
                for f in chosen:
                    shutil.copy(f, root / "data" / split / c / f.name)
        run = open_run(run_dir)
        cfg = config_from_recipe(run.model_name, run.in_size, recipe, data=str(root / "data"), init=str(run_dir), out_dir=str(root), name="ft", seed=fold)
        out = train(cfg, callbacks=[RichProgress(console)], evaluate=False)
        results.append(scores(out, root / "data" / "test"))
    bal = [r["balanced_accuracy"] for r in results]
    return {"k": k or "all", "folds": folds, "classes": sorted(kept), "balanced_accuracy": float(np.mean(bal)), "std": float(np.std(bal)),
            "accuracy": float(np.mean([r["accuracy"] for r in results]))}


def table(rows: list[dict]) -> str:
    lines = ["| run | BloodMNIST test | val captures flagged | external flagged | zero-shot bal. acc (acc) | after adapt | "
             + " | ".join(f"{s['k']}-shot" for s in rows[0]["shots"]) + " |",
             "| --- | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * len(rows[0]["shots"])]
    for r in rows:
        zs, ad = r["zero_shot"], r["adapted"]
        shots = " | ".join(f"{s['balanced_accuracy']:.1%} ± {s['std']:.1%}" for s in r["shots"])
        lines.append(f"| {r['run']} | {r['test_accuracy']:.2%} | {r['val_flagged']:.1%} | {r['external_flagged']:.1%} | "
                     f"{zs['balanced_accuracy']:.1%} ({zs['accuracy']:.1%}) | {ad['balanced_accuracy']:.1%} ({ad['accuracy']:.1%}) | {shots} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--external", type=Path, required=True)
    ap.add_argument("--originals", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("reports/external"))
    ap.add_argument("--shots", default="5,10,25,all")
    ap.add_argument("--folds", type=int, default=10, help="repeated stratified splits per k (3 folds moved the 10-shot mean by 5 pt)")
    ap.add_argument("--recipe", default="finetune", help="the fine-tuning recipe (edgeblood train --recipe)")
    ap.add_argument("--page", type=Path, help=f"write the table into this page's {SECTION} section (e.g. {RESULTS_PAGE.relative_to(RESULTS_PAGE.parents[1])})")
    args = ap.parse_args()
    shots = [None if s == "all" else int(s) for s in args.shots.split(",")]
    rows = []
    for run_dir in args.runs:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            adapted_dir = adapted(run_dir, args.external, work)
            zero_shot = scores(run_dir, args.external)
            rows.append({
                "run": run_dir.name, "test_accuracy": open_run(run_dir).meta.metric("test", "accuracy"),
                "val_flagged": flagged_share(run_dir, args.originals), "external_flagged": zero_shot["flagged"],
                "zero_shot": zero_shot, "adapted": scores(adapted_dir, args.external),
                "shots": [k_shot(run_dir, args.external, k, args.folds, work, args.recipe) for k in shots],
            })
        console.print(table(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "external.json", rows)
    md = table(rows)
    write_text(args.out / "external.md", md + "\n")
    if args.page:
        write_section(args.page, SECTION, md)

if __name__ == "__main__":
    main()
