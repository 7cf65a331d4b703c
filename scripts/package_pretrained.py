"""Put a trained run into the package as a pretrained model (edgeblood.pretrained), with its card and checksums.

    python scripts/package_pretrained.py RUN --name se-cnn-28 --strip /path/to/runs=runs --strip /path/to/data=DATA
    python scripts/package_pretrained.py --render            # only rewrite README's table of shipped models

Copies checkpoint.pt (re-saved with its metadata's machine paths replaced as --strip says), domain.pt and
metrics.json into edgeblood/pretrained_models/NAME/, writes MODEL_CARD.md from the run's own figures, and
records every file's SHA-256 in edgeblood/pretrained_models/index.json (which the package verifies on load),
then rewrites README's ``pretrained`` section from that index.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_sections import ROOT, write_section  # noqa: E402

from edgeblood.atomic import write_json, write_text
from edgeblood.pretrained import INDEX, PACKAGE_DIR, sha256
from edgeblood.run_metadata import RunMetadata
from edgeblood.runs import METRICS_FILE, open_run, save_checkpoint


def strip_paths(obj, pairs: list[tuple[str, str]]):
    if isinstance(obj, str):
        for old, new in pairs:
            obj = obj.replace(old, new)
        return obj
    if isinstance(obj, list):
        return [strip_paths(v, pairs) for v in obj]
    if isinstance(obj, dict):
        return {k: strip_paths(v, pairs) for k, v in obj.items()}
    return obj


def card(name: str, meta: dict, metrics: dict) -> str:
    test, val = metrics.get("test", {}), metrics.get("val", {})
    captures = metrics.get("images-val", {})  # `evaluate RUN --images DATA/pbc-originals/val`
    t = meta["training"]
    lines = [
        f"# {name}: {meta['model']['name']} at {meta['input']['size']} px (pretrained, shipped with edgeblood)",
        "",
        f"- **Model:** {meta['model']['name']}, {meta['model']['params']:,} parameters, {meta['model']['macs'] / 1e6:.2f} M MACs per image.",
        f"- **Trained:** `{t['command']}` (recipe `{t['recipe']}`, seed {t['seed']}, {t.get('epochs_run')} epochs, "
        f"precision {t['precision']}, {t.get('wall_time_s', 0) / 60:.1f} min), edgeblood {meta.get('edgeblood_version')}, commit {meta.get('git_commit')}.",
        f"- **Data:** BloodMNIST {meta['dataset'].get('size')} px ({meta['dataset'].get('variant')}), official train/val/test split, "
        f"md5 {meta['dataset'].get('md5')}.",
        f"- **Input:** {meta['input']['framing']['description']}; RGB 0-255, normalisation inside every export.",
        "",
        "| split | images | accuracy | balanced accuracy | macro F1 | ECE |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, m in (("BloodMNIST test (npz)", test), ("BloodMNIST val (npz)", val), ("val captures (1,712 PBC originals, framed)", captures)):
        if m:
            lines.append(f"| {label} | {m.get('num_samples', '')} | {m['accuracy']:.2%} | {m['balanced_accuracy']:.2%} | {m['macro_f1']:.2%} | "
                         f"{m.get('ece', float('nan')):.4f} |")
    dom = meta.get("domain") or {}
    if dom:
        lines += ["", f"- **Domain check:** {dom.get('val_flagged', 0):.1%} of held-in val images flagged as unlike training "
                  "(thresholds set on val for about 4 %); exports carry it as the `domain` output. It flags every image of another lab's set "
                  "(JTSC, 297 cells) for the 28 px default model: use `edgeblood adapt` or fine-tune for another lab."]
    lines += ["", f"- **Licence:** {meta.get('license')}", f"- **Credit:** {meta.get('credit')}", ""]
    return "\n".join(lines)


def pretrained_table(models: list[dict]) -> str:
    """README's table of the shipped models, from index.json (the figures the model cards carry)."""
    lines = ["| name | model | input | params | BloodMNIST test | val captures (1,712 PBC originals) |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for m in sorted(models, key=lambda m: -m["params"]):
        captures = "-" if m.get("val_captures_accuracy") is None else f"{m['val_captures_accuracy']:.2%}"
        lines.append(f"| `{m['name']}` | {m['model']} | {m['size']} px | {m['params'] / 1000:,.0f} K | {m['test_accuracy']:.2%} | {captures} |")
    return "\n".join(lines)


def render_readme() -> None:
    write_section(ROOT / "README.md", "pretrained", pretrained_table(json.loads((PACKAGE_DIR / INDEX).read_text())["models"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, nargs="?")
    ap.add_argument("--name")
    ap.add_argument("--strip", action="append", default=[], help="OLD=NEW replacement applied to every metadata string")
    ap.add_argument("--render", action="store_true", help="only rewrite README's table of shipped models")
    args = ap.parse_args()
    if args.render or args.run is None or not args.name:
        if not args.render:
            ap.error("give RUN and --name to package a run, or --render")
        render_readme()
        return
    pairs = [tuple(s.split("=", 1)) for s in args.strip]
    run = open_run(args.run)
    meta = strip_paths(run.meta.to_dict(), pairs)
    dest = PACKAGE_DIR / args.name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    save_checkpoint(dest, run.model, RunMetadata.from_dict(meta))
    shutil.copy2(args.run / "domain.pt", dest / "domain.pt")
    metrics = strip_paths(json.loads((args.run / METRICS_FILE).read_text()), pairs)
    write_json(dest / METRICS_FILE, metrics)
    write_text(dest / "MODEL_CARD.md", card(args.name, meta, metrics))
    files = {p.name: sha256(p) for p in sorted(dest.iterdir()) if p.is_file()}
    index_path = PACKAGE_DIR / INDEX
    entries = {e["name"]: e for e in json.loads(index_path.read_text())["models"]} if index_path.is_file() else {}
    test = metrics.get("test", {})
    captures = metrics.get("images-val", {})  # `evaluate RUN --images DATA/pbc-originals/val`
    entries[args.name] = {"name": args.name, "model": meta["model"]["name"], "size": meta["input"]["size"], "params": meta["model"]["params"],
                          "recipe": meta["training"]["recipe"], "test_accuracy": test.get("accuracy"),
                          "val_captures_accuracy": captures.get("accuracy"), "license": meta.get("license"), "files": files}
    write_json(index_path, {"schema": "edgeblood.pretrained/1", "models": [entries[k] for k in sorted(entries)]})
    print(f"packaged {args.name}: {', '.join(files)} -> {dest}")
    render_readme()


if __name__ == "__main__":
    main()
