"""The trainer's entry point: ``train(TrainConfig)`` -> a run directory, new or resumed.

Guarantees a user can rely on:
* ``checkpoint.pt`` holds the best weights so far (selected on the val split only), written atomically after every
  epoch that improves - or, with --keep last, after every epoch; ``train_state.pt`` holds everything needed to resume.
* Ctrl-C loses at most the current epoch: ``edgeblood train --resume runs/<name>`` continues.
* The same code runs under ``torchrun`` (DDP); only rank 0 writes and reports.
* The trainer prints nothing itself: what it has to say goes to callbacks (edgeblood.training.callbacks;
  the CLI passes the rich display), and callbacks draw no random numbers, so they never change the weights.

The pieces: edgeblood.training.job builds what the loop needs, edgeblood.training.epochs runs the
epochs, edgeblood.training.run_record writes run.json; this module starts, finishes and evaluates.

The evaluator is imported with this module, not when training ends: an edgeblood upgraded under a
long training was otherwise half old (modules loaded at start) and half new (the evaluator), and the
final evaluation failed with an ImportError (seen twice here; the checkpoint survived, the test
figures had to be made with ``edgeblood evaluate``).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from edgeblood.config.train import TrainConfig
from edgeblood.domain.profile import fit_run_profile
from edgeblood.errors import EdgebloodError
from edgeblood.evaluation.evaluate import evaluate_run
from edgeblood.evaluation.temperature import calibrate_run
from edgeblood.models import get_entry
from edgeblood.provenance import utc_now
from edgeblood.runs import CHECKPOINT, TRAIN_STATE, open_run
from edgeblood.training.callbacks import Callback, Callbacks, Evaluation
from edgeblood.training.checkpointing import Standing, extend_epochs, load_train_state, save_train_state, seed_everything, stop_cleanly_on_write_failure
from edgeblood.training.distributed import DistContext, resolve_precision
from edgeblood.training.epochs import Outcome, fit, starting_standing
from edgeblood.training.job import Job, prepare
from edgeblood.training.run_record import update_run_json


def train(cfg: TrainConfig, *, resume: str | Path | None = None, callbacks: Sequence[Callback] = (), evaluate: bool = True,
          epochs: int | None = None) -> Path:
    """Train a model as described by ``cfg`` (or resume the run at ``resume``); returns the run directory.

    ``callbacks`` receive the run's messages and progress (nothing is printed without one; the CLI
    passes ``edgeblood.training.display.RichProgress``). With ``resume``, ``cfg`` is ignored: the run
    continues as its train_state.pt was configured. ``evaluate`` runs the val and test evaluations
    at the end (metrics.json, plots). ``epochs`` with ``resume`` trains on to that many epochs: a run that kept its
    train_state.pt (``keep_state``), finished or not, with a schedule that does not depend on the epoch count.

    A new run that fails or is interrupted before its first checkpoint leaves no empty run directory
    behind (which would also push the next run's default name to ``-2``). Ctrl-C raises
    KeyboardInterrupt after the run is recorded as interrupted; user-fixable problems raise
    ``EdgebloodError``.
    """
    created: list[Path] = []  # the run folder this call makes (never another training's, even in the same --out)
    try:
        return _train(cfg, resume=resume, callbacks=callbacks, evaluate=evaluate, created=created, epochs=epochs)
    except BaseException:
        for folder in created:
            if not (folder / CHECKPOINT).exists():
                shutil.rmtree(folder, ignore_errors=True)
        raise


def _train(cfg: TrainConfig, *, resume: str | Path | None, callbacks: Sequence[Callback], evaluate: bool, created: list[Path],
           epochs: int | None = None) -> Path:
    ctx = DistContext.from_env()
    events = Callbacks(callbacks if ctx.is_main else ())  # one process reports
    run_dir, state = None, None
    if epochs is not None and resume is None:
        raise EdgebloodError("epochs to train on are given with --resume RUN; a new run takes --epochs as usual")
    if resume is not None:
        run_dir = Path(resume)
        state, cfg = load_train_state(run_dir)
        cfg = extend_epochs(run_dir, state, cfg, epochs, ctx.is_main)
    device = _start_process(cfg, ctx)
    job, pretrain_s = prepare(cfg, ctx, device, events, run_dir, state is not None, created)
    standing = starting_standing(job, state, pretrain_s)
    if state is None and ctx.is_main:  # so that a failure while saving epoch 1 (a full disk) still leaves a run to --resume
        with stop_cleanly_on_write_failure(job.run_dir, "the starting state"):
            save_train_state(job.run_dir, cfg, job.parts, standing, job.metadata["training"])
    outcome = fit(job, standing)
    return _finish(job, standing, outcome, evaluate)


def _start_process(cfg: TrainConfig, ctx: DistContext) -> torch.device:
    """Check the config, pick the device and precision, join the process group, seed."""
    cfg.validate()
    get_entry(cfg.model)  # an unknown model name fails before any data is loaded
    device = ctx.device(cfg.device)
    cfg.precision = resolve_precision(cfg.precision, device)  # recorded resolved, so --resume keeps it
    ctx.init(device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed + ctx.rank)
    return device


def _require_first_checkpoint(job: Job, interrupted: bool) -> None:
    """Stop here when no epoch finished: Ctrl-C stays an interrupt (exit 130), anything else an error."""
    if (job.run_dir / CHECKPOINT).exists():
        return
    job.ctx.shutdown()
    if interrupted:
        job.events.on_message("interrupted before the first epoch finished: nothing was saved, no run directory kept", "warning")
        raise KeyboardInterrupt
    raise EdgebloodError("training stopped before the first epoch finished; nothing was saved - run the command again")


def _finish(job: Job, standing: Standing, outcome: Outcome, evaluate: bool) -> Path:
    """After the loop: record the outcome, calibrate, drop train_state.pt and evaluate (rank 0; the others just leave)."""
    ctx, run_dir, events = job.ctx, job.run_dir, job.events
    if not ctx.is_main:
        ctx.shutdown()
        return run_dir
    _require_first_checkpoint(job, outcome.interrupted)
    job.metadata["training"].update(wall_time_s=round(outcome.wall_time_s, 1), status="interrupted" if outcome.interrupted else "complete",
                                    finished=utc_now())
    if outcome.interrupted:
        update_run_json(run_dir, job.metadata)
        ctx.shutdown()
        events.on_message(f"interrupted after epoch {outcome.epoch - 1 if outcome.epoch > 0 else 0}: best checkpoint kept in {run_dir}; "
                          f"continue with: edgeblood train --resume {run_dir}", "warning")
        raise KeyboardInterrupt
    with stop_cleanly_on_write_failure(run_dir, "the trained run"):
        update_run_json(run_dir, job.metadata)
        calibration = calibrate_run(open_run(run_dir), job.data, device=str(job.device))
        domain = fit_run_profile(open_run(run_dir), job.data)
    if not job.cfg.keep_state:
        (run_dir / TRAIN_STATE).unlink(missing_ok=True)
    ctx.shutdown()
    _report_done(job, standing, outcome, calibration, domain)
    if evaluate:  # evaluate_run is imported with the module, see the note at the top
        _evaluate_splits(job)
    return run_dir


def _report_done(job: Job, standing: Standing, outcome: Outcome, calibration: dict, domain: dict | None) -> None:
    say = job.events.on_message
    what = f"the average of the last {job.cfg.swa_epochs} epochs' weights (--swa" if job.cfg.swa_epochs else "the last epoch's weights (--keep last"
    kept = f"; kept {what}, val accuracy {standing.history[-1]['val_acc']:.4f})" if job.cfg.keeps_last and standing.history else ""
    say(f"done in {outcome.wall_time_s / 60:.1f} min; best val accuracy {standing.best.accuracy:.4f} at epoch {standing.best.epoch}{kept}", "success")
    say(f"calibration: temperature {calibration['temperature']:.3f} fitted on val and folded into the head; val ECE "
        f"{calibration['val_ece_before']:.4f} -> {calibration['val_ece_after']:.4f} (accuracy unchanged)")
    say(f"domain check: {domain['val_flagged']:.1%} of val flagged as unlike training (target <= {domain['flag_rate_target']:.0%}); "
        "exports carry it as their 'domain' output" if domain else "domain check: not available for this model (its head is not its last layer)")


def _evaluate_splits(job: Job) -> None:
    """val then test; a full disk here (train_state.pt is gone: training is done) points to `edgeblood evaluate`."""
    for split in ("val", "test"):
        rest = f"edgeblood evaluate {job.run_dir} --split {split}" + (" and --split test" if split == "val" else "")
        with stop_cleanly_on_write_failure(job.run_dir, f"the {split} evaluation", then=f"then run: {rest}"):
            entry = evaluate_run(job.run_dir, split=split, data=job.data, device=str(job.device))
        job.events.on_evaluation(Evaluation(job.run_dir, split, entry))
