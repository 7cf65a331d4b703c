"""Run a list of trainings one after another, resumably: how the long benchmark trainings are run (issue #28).

Each line of QUEUE holds the options of one `edgeblood train`, with a --name; '#' starts a comment.

    python scripts/train_queue.py scripts/queues/cited-systems.txt --out runs            # start, or continue
    nohup python scripts/train_queue.py QUEUE --out runs --log-dir logs > logs/queue.log 2>&1 &

Run the same command again after any interruption (Ctrl-C, a reboot, a session that ended): a run with
metrics.json is done and skipped, one with train_state.pt continues with `edgeblood train --resume` (losing at
most one epoch), a missing one starts. Runs live under --out, outside the source tree; each training's own
output goes to LOG_DIR/NAME.log, and this script prints one line per run.

A run survives exactly as long as its --out folder: a reboot or a new session on the same machine keeps it, a new
machine does not (the paused 90-epoch se-cnn 64 px run and ResNet-34 of 2026-12-06 were lost that way). Copy --out
somewhere that lasts, or plan a queue line to finish within one session.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from edgeblood.runs import METRICS_FILE, TRAIN_STATE

DONE, RESUME, START, BLOCKED = "done", "resume", "start", "blocked"


class Step(NamedTuple):
    name: str
    action: str  # DONE | RESUME | START | BLOCKED
    argv: list[str]  # the edgeblood arguments to run (empty for DONE/BLOCKED)
    why: str = ""


def read_queue(path: Path) -> list[list[str]]:
    """The option lists of the queue file, one per non-empty line (comments dropped).

    Raises ValueError naming the line whose quoting shlex cannot read."""
    queue = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        try:
            options = shlex.split(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc} in '{line}'; fix the quoting of that line") from None
        if options:
            queue.append(options)
    return queue


def plan(options: list[str], out: Path, data_dir: str | None = None) -> Step:
    """What one queue line needs now, judged from its run directory alone."""
    if "--name" not in options[:-1]:
        return Step("?", BLOCKED, [], f"no --name in '{shlex.join(options)}': a queued run needs a name to be found again")
    name = options[options.index("--name") + 1]
    run_dir = out / name
    more = _more_epochs(options, run_dir)  # the line asks more epochs than a run that kept its state was given
    if more:
        return Step(name, RESUME, ["train", "--resume", str(run_dir), "--epochs", more])
    if (run_dir / METRICS_FILE).is_file():
        return Step(name, DONE, [])
    if (run_dir / TRAIN_STATE).is_file():
        return Step(name, RESUME, ["train", "--resume", str(run_dir)])
    if run_dir.exists() and any(run_dir.iterdir()):
        return Step(name, BLOCKED, [], f"{run_dir} has neither metrics.json nor train_state.pt (it finished without "
                                         "evaluation, or failed before its first epoch): evaluate it or remove it")
    extra = ["--data-dir", data_dir] if data_dir and "--data-dir" not in options else []
    return Step(name, START, ["train", *options, "--out", str(out), *extra])


def _more_epochs(options: list[str], run_dir: Path) -> str | None:
    """The line's --epochs when it is more than the run's own and the run kept train_state.pt (--keep-state): raising
    a line's --epochs then trains that run on (`train --resume RUN --epochs N`), e.g. a published recipe cut short."""
    if "--epochs" not in options[:-1] or not (run_dir / TRAIN_STATE).is_file() or not (run_dir / "run.json").is_file():
        return None
    wanted = options[options.index("--epochs") + 1]
    config = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["training"]["config"]
    return wanted if wanted.isdigit() and int(wanted) > int(config["epochs"]) else None


def run_queue(queue: Path, out: Path, log_dir: Path, data_dir: str | None = None) -> int:
    """Every line in order; returns how many runs are not done at the end (0 = the whole queue is trained)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    open_runs = 0
    for options in read_queue(queue):
        step = plan(options, out, data_dir)
        if step.action in (DONE, BLOCKED):
            print(f"{step.name}: {step.action}{': ' + step.why if step.why else ''}", flush=True)
            open_runs += step.action == BLOCKED
            continue
        t0 = time.monotonic()
        print(f"{step.name}: {step.action} ({time.strftime('%H:%M:%S')}) - log {log_dir / (step.name + '.log')}", flush=True)
        with open(log_dir / f"{step.name}.log", "a", encoding="utf-8") as log:
            rc = subprocess.run([sys.executable, "-m", "edgeblood", *step.argv], stdout=log, stderr=subprocess.STDOUT).returncode
        ok = rc == 0 and (out / step.name / METRICS_FILE).is_file()
        open_runs += not ok
        print(f"{step.name}: {'finished' if ok else f'stopped (exit {rc}); run this again to continue'} after "
              f"{(time.monotonic() - t0) / 60:.1f} min", flush=True)
        if rc in (130, -2):  # Ctrl-C: stop the queue too
            break
    return open_runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("queue", type=Path, help="file with one `edgeblood train` option list per line (each with --name)")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="parent folder of the run directories")
    parser.add_argument("--log-dir", type=Path, default=None, help="where each training's output goes (default: OUT/logs)")
    parser.add_argument("--data-dir", default=None, help="passed to every training that does not set its own")
    args = parser.parse_args(argv)
    if not args.queue.is_file():
        sys.exit(f"no queue file {args.queue}; write one `edgeblood train` option list per line, each with --name")
    try:
        open_runs = run_queue(args.queue, args.out, args.log_dir or args.out / "logs", args.data_dir)
    except ValueError as exc:
        sys.exit(str(exc))
    sys.exit(1 if open_runs else 0)


if __name__ == "__main__":
    main()
