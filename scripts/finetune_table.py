"""What fine-tuning buys a lab: BloodMNIST models as they are, fine-tuned with --init, and trained from scratch,
all on one deterministic split of a labelled image folder (issue 17's table).

    python scripts/finetune_table.py --data ../shared/data/pbc-originals/val --out runs/ft \\
        --parent runs/aug-se-cnn-28 --parent runs/aug-se-cnn-64 [--page docs/results.md]

For each parent run: (a) the parent predicts the folder's test part (framed as it was trained);
(b) ``edgeblood train --data DIR --split S --init PARENT`` (the parent's model, size and framing);
(c) the same architecture trained from scratch on the train part alone, with the same framing, for
each ``--scratch-epochs``. Every training is a CLI call (the command is printed beside its figure);
finished runs are reused, so an interrupted table resumes. Writes ``OUT/finetune.json``, prints the
markdown table and, with ``--page``, writes it into that page's ``finetune-table`` section. Model selection
is on the folder's val part; the test part is read once.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgeblood.data.image_folder import load_image_folder
from edgeblood.evaluation.metrics import compute_metrics
from edgeblood.evaluation.predict import predict_probs
from edgeblood.runs import open_run, read_metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling helpers
from doc_sections import portable_command, write_section  # noqa: E402


def _row(label: str, kind: str, labels: np.ndarray, probs: np.ndarray, classes: list[str], wall_s: float | None, command: str) -> dict:
    m = compute_metrics(labels, probs, classes)
    worst = min(m["per_class"], key=lambda c: m["per_class"][c]["recall"])
    return {"model": label, "kind": kind, "accuracy": m["accuracy"], "n": int(len(labels)), "worst_class": worst,
            "worst_class_recall": m["per_class"][worst]["recall"], "balanced_accuracy": m["balanced_accuracy"], "wall_s": wall_s, "command": command}


def _train(args, name: str, extra: list[str]) -> Path:
    run_dir = args.out / name
    command = ["edgeblood", "train", "--data", str(args.data), "--split", args.split, "--threads", str(args.threads),
               "--out", str(args.out), "--name", name, *extra]
    if "test" not in read_metrics(run_dir):
        if (run_dir / "train_state.pt").is_file():
            command = ["edgeblood", "train", "--resume", str(run_dir)]
        print("$", shlex.join(command), flush=True)
        subprocess.run([sys.executable, "-m", "edgeblood", *command[1:]], check=True)
    return run_dir


def _trained_row(args, run_dir: Path, label: str, kind: str) -> dict:
    run = open_run(run_dir)
    test = run.metrics()["test"]
    worst = min(test["per_class"], key=lambda c: test["per_class"][c]["recall"])
    training = run.meta.training
    return {"model": label, "kind": kind, "accuracy": test["accuracy"], "n": test["num_samples"], "worst_class": worst,
            "worst_class_recall": test["per_class"][worst]["recall"], "balanced_accuracy": test["balanced_accuracy"],
            "wall_s": training.wall_time_s, "command": training.command, "run": str(run_dir),
            "best_epoch": training.best_epoch, "val_accuracy": run.metrics().get("val", {}).get("accuracy")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--parent", type=Path, action="append", required=True)
    ap.add_argument("--split", default="0.6,0.2,0.2")
    ap.add_argument("--finetune-epochs", type=int, default=20)
    ap.add_argument("--scratch-epochs", type=int, action="append")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--page", type=Path, help="also write the table into this page's finetune-table section (docs/results.md)")
    args = ap.parse_args()
    args.scratch_epochs = args.scratch_epochs or [30]
    ratios = [float(r) for r in args.split.split(",")]
    rows = []
    for parent_dir in args.parent:
        parent = open_run(parent_dir)
        tag = f"{parent.model_name}-{parent.in_size}"
        data = load_image_folder(args.data, parent.in_size, framing=parent.framing, split=ratios, reference_classes=parent.classes)
        probs = predict_probs(parent.model, data.images("test"), parent.mean, parent.std)
        rows.append(_row(tag, f"(a) BloodMNIST model as it is ({parent.name})", data.labels("test"), probs, parent.classes, None,
                         f"edgeblood train ... (see {parent.name}/run.json)"))
        ft = _train(args, f"{tag}-ft", ["--init", str(parent_dir), "--epochs", str(args.finetune_epochs)])
        rows.append(_trained_row(args, ft, tag, f"(b) fine-tuned --init, {args.finetune_epochs} epochs"))
        model_opts = [f"{k}={json.dumps(v)}" for k, v in parent.meta.model.options.items()]
        for epochs in args.scratch_epochs:
            scratch = _train(args, f"{tag}-scratch-{epochs}", ["--model", parent.model_name, "--size", str(parent.in_size), "--framing",
                                                                parent.framing.short(), "--epochs", str(epochs),
                                                                *[a for o in model_opts for a in ("--model-opt", o)]])
            rows.append(_trained_row(args, scratch, tag, f"(c) from scratch on the train part, {epochs} epochs"))
    (args.out / "finetune.json").write_text(json.dumps({"data": str(args.data), "split": args.split, "test_images": rows[0]["n"], "rows": rows}, indent=1))
    n = rows[0]["n"]
    lines = [f"Test part: {n} images of {args.data.name if args.data.is_absolute() else args.data} (stratified split {args.split}, "
             f"split seed 0); one seed per row, so one standard error of an accuracy near 96 % is {100 * math.sqrt(0.96 * 0.04 / n):.1f} pt.", "",
             "| model | what | test acc | balanced acc | worst class (recall) | train wall time | command |",
             "| --- | --- | ---: | ---: | --- | ---: | --- |"]
    for r in rows:
        wall = f"{r['wall_s'] / 60:.1f} min" if r.get("wall_s") else "-"
        lines.append(f"| {r['model']} px | {r['kind']} | {100 * r['accuracy']:.2f} % | {100 * r['balanced_accuracy']:.2f} % | "
                     f"{r['worst_class']} {100 * r['worst_class_recall']:.1f} % | {wall} | `{portable_command(r['command'])}` |")
    print("\n" + "\n".join(lines))
    if args.page:
        write_section(args.page, "finetune-table", "\n".join(lines))


if __name__ == "__main__":
    main()
