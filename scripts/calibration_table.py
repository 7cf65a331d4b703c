"""ECE before and after temperature scaling for trained runs (issue 19's table), without touching them.

    python scripts/calibration_table.py --out runs/cal runs/aug-se-cnn-28 runs/aug-se-cnn-64 [--page docs/results.md]

Each run is copied to OUT/<name> (checkpoint, run.json, metrics), calibrated there on its val split
(``edgeblood evaluate COPY --calibrate``) and evaluated on test. The table gives the temperature, ECE on
val and test before and after, the test accuracy before and after (equal by construction: the argmax
does not move), and the val accuracy on accepted images at a 5 % review rate. It prints the table and,
with ``--page``, writes it into that page's ``calibration-table`` section.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from edgeblood.runs import CHECKPOINT, HISTORY_FILE, METRICS_FILE, RUN_JSON, open_run, read_metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling helpers
from doc_sections import write_section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--page", type=Path, help="also write the table into this page's calibration-table section (docs/results.md)")
    args = ap.parse_args()
    rows = []
    for src in args.runs:
        dest = args.out / src.name
        if not (dest / CHECKPOINT).is_file():
            dest.mkdir(parents=True, exist_ok=True)
            for name in (CHECKPOINT, RUN_JSON, METRICS_FILE, HISTORY_FILE):
                if (src / name).is_file():
                    shutil.copy2(src / name, dest / name)
        before = read_metrics(src).get("test", {})
        if open_run(dest).meta.calibration is None:
            subprocess.run([sys.executable, "-m", "edgeblood", "evaluate", str(dest), "--calibrate", "--split", "test", "--no-plots"], check=True)
        run = open_run(dest)
        record, test = run.meta.calibration, read_metrics(dest)["test"]
        at5 = next(r for r in record.review_thresholds if r.review_rate == 0.05)
        rows.append((src.name, run.model_name, run.in_size, record.temperature, record.val_ece_before, record.val_ece_after,
                     test["calibration"]["ece_uncalibrated"], test["calibration"]["ece"], before.get("accuracy"), test["accuracy"],
                     at5.threshold, at5.accepted_accuracy))
    lines = ["| run | model | px | T | val ECE before -> after | test ECE before -> after | test acc before / after | 5 % review: threshold, val acc kept |",
             "| --- | --- | ---: | ---: | --- | --- | --- | --- |"]
    for name, model, px, t, vb, va, tb, ta, acc0, acc1, thr, acc5 in rows:
        acc0_text = f"{100 * acc0:.2f}" if acc0 is not None else "-"
        lines.append(f"| {name} | {model} | {px} | {t:.3f} | {vb:.4f} -> {va:.4f} | {tb:.4f} -> {ta:.4f} | {acc0_text} / {100 * acc1:.2f} % | "
                     f"< {thr:.3f}, {100 * acc5:.2f} % |")
    print("\n".join(lines))
    if args.page:
        write_section(args.page, "calibration-table", "\n".join(lines))

if __name__ == "__main__":
    main()
