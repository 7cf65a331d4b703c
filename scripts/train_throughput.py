"""Training images/s of the real engine pieces: today's engine against each candidate, interleaved.

Issue #18 asks for >= 2x training throughput; on a shared, loaded machine two runs made one after the
other land in different load phases, so each candidate runs in the SAME process as the baseline, in
alternating rounds (A B, B A, ...) of the same number of images, with the same threads and seed. The
figure is the median of the per-round ratios (candidate img/s / baseline img/s) and its range, with
the load average (os.getloadavg) beside it.

What one step is: the engine's inner loop for the default recipe (edgeblood.config.recipes) on real
BloodMNIST train images: index the in-memory uint8 batch, convert, augment (crop, rot90, flips, stain,
JPEG round trip), normalise, forward, label-smoothed cross-entropy, backward, AdamW, one-cycle
scheduler step, the per-batch ``.item()`` metrics and the progress-bar update.

The baseline is the engine as of commit 8f0f10e (before issue #18): its augmentation is kept below as
``legacy_augment_batch`` so that the ratio stays "against today's engine" after the library changes.

    python scripts/train_throughput.py --model se-cnn --size 28 --threads 1 --candidates channels-last,fused-aug
    python scripts/train_throughput.py --all --threads 1,2                 # every model/size/candidate, resumable
    python scripts/train_throughput.py --profile --model se-cnn --size 28 --threads 1

Results are appended to --results (JSON lines); a (model, size, threads, candidate) already there is
skipped unless --force, so a long sweep can be cut into invocations of a few minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from torch.profiler import ProfilerActivity, profile, record_function

from edgeblood.cli.train import build_config
from edgeblood.config import AugmentConfig
from edgeblood.data import load_bloodmnist
from edgeblood.data.batches import BatchStream, Normalizer, channel_stats, to_tensor_nchw
from edgeblood.models import count_macs, create
from edgeblood.training.distributed import resolve_precision
from edgeblood.training.schedules import build_scheduler

CONFIGS = (("se-cnn", 28), ("se-cnn-compact", 28), ("se-cnn", 64))
BASE_BATCH = 128
DEFAULT_BASELINE = "engine at 8f0f10e"


@dataclass(frozen=True)
class Variant:
    """One way of running the training step; the baseline is all defaults (the engine before #18)."""

    augment: str = "legacy"  # legacy (the pre-#18 copy below) | library (edgeblood.data.augment now) | none | no-jpeg
    channels_last: bool = False
    compile: bool = False  # torch.compile(model) with inductor
    batch_scale: int = 1  # batch = 128 x this, peak LR x sqrt(this)
    mkldnn: bool = True  # torch.backends.mkldnn.enabled
    prefetch: bool = False  # a second thread builds and augments the next batch while this one trains
    lazy_sync: bool = False  # metrics summed as tensors, one .item() per round instead of two per batch
    threads: int = 0  # intra-op threads for this variant's rounds (0: the comparison's --threads)


CANDIDATES: dict[str, Variant] = {
    "channels-last": Variant(channels_last=True),
    "compile": Variant(compile=True),
    "compile+channels-last": Variant(compile=True, channels_last=True),
    "fused-aug": Variant(augment="library"),  # one grid_sample for crop+rot90+flip, JPEG decode without Image.open
    "no-jpeg (share)": Variant(augment="no-jpeg"),  # not a candidate: measures what the JPEG round trip costs
    "no-aug (share)": Variant(augment="none"),  # not a candidate: measures what all augmentation costs
    "batch-256": Variant(batch_scale=2),
    "mkldnn-off": Variant(mkldnn=False),
    "lazy-sync": Variant(lazy_sync=True),
    "prefetch-thread": Variant(prefetch=True),
    "kept-no-prefetch": Variant(augment="library", channels_last=True),
    "kept": Variant(augment="library", channels_last=True, prefetch=True),
    # the two cores as 1 model thread + 1 data thread, against the baseline's intra-op threads (run with --threads 2)
    "kept-1-thread+data-thread": Variant(augment="library", channels_last=True, prefetch=True, threads=1),
}


# --- the pre-#18 augmentation (edgeblood/data/augment.py at 8f0f10e), labelled for the profiler ---

def legacy_augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    from edgeblood.data.augment import color_jitter, random_jpeg, random_resized_crop

    n = x.shape[0]
    if cfg.crop_area != (1.0, 1.0) or cfg.crop_shift > 0:
        with record_function("augment: crop (grid_sample)"):
            x = random_resized_crop(x, cfg.crop_area, cfg.crop_ratio, generator, shift=cfg.crop_shift)
    if cfg.rot90:
        with record_function("augment: rot90 (clone + index)"):
            k = torch.randint(0, 4, (n,), generator=generator)
            out = x.clone()
            for turns in (1, 2, 3):
                idx = (k == turns).nonzero(as_tuple=True)[0]
                if idx.numel():
                    out[idx] = torch.rot90(x[idx], turns, dims=(-2, -1))
            x = out
    if cfg.flips:
        with record_function("augment: flip (where)"):
            flip = torch.rand(n, generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if cfg.color_jitter > 0:
        with record_function("augment: colour jitter"):
            x = color_jitter(x, cfg.color_jitter, generator)
    if cfg.stain > 0:
        with record_function("augment: stain gain"):
            gain = 1 + (torch.rand(n, 3, generator=generator) * 2 - 1) * cfg.stain
            x = (x * gain.to(x.dtype)[:, :, None, None]).clamp(0, 1)
    if cfg.jpeg_prob > 0:
        with record_function("augment: JPEG round trip (Pillow)"):
            x = random_jpeg(x, cfg.jpeg_prob, cfg.jpeg_quality, generator)
    return x


class LegacyBatchStream(BatchStream):
    """BatchStream.indexed as it was at 8f0f10e: uint8 index, float, the legacy augmentation."""

    augment_fn = staticmethod(legacy_augment_batch)

    def indexed(self):
        order = self._order()
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch * 31 + self.rank)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            with record_function("batch: index uint8 + to float"):
                x = self.images[idx].float().div_(255.0)
            if self.augment is not None:
                with record_function("augment"):
                    x = self.augment_fn(x, self.augment, g)
            yield x, self.labels[idx], idx


# --- one trainer per variant: its own model, optimiser, scheduler and stream, all seeded alike ---

class Trainer:
    def __init__(self, variant: Variant, model_name: str, size: int, data, seed: int = 0):
        self.variant = variant
        cfg = build_config(model=model_name, size=size, recipe="default", model_opts={}, overrides={}, augment_overrides={},
                           fixed=dict(seed=seed, threads=0, precision="auto"))
        self.precision = resolve_precision(cfg.precision, torch.device("cpu"))
        torch.manual_seed(seed)
        self.batch_size = BASE_BATCH * variant.batch_scale
        self.lr = cfg.lr * math.sqrt(variant.batch_scale)
        self.model = create(model_name, num_classes=8, in_size=size)
        if variant.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.forward = torch.compile(self.model) if variant.compile else self.model
        self.optimizer = _adamw(self.model, self.lr, cfg.weight_decay)
        images, labels, mean, std = data
        augment = cfg.augment
        if variant.augment == "no-jpeg":
            augment = replace(augment, jpeg_prob=0.0)
        legacy = variant.augment in ("legacy", "no-jpeg")
        stream_cls = LegacyBatchStream if legacy else BatchStream
        # the library's own prefetch (edgeblood.data.batches) for library streams; the legacy stream gets the
        # same thing from this script (self.pool)
        self.stream = stream_cls(images, labels, self.batch_size, augment=None if variant.augment == "none" else augment,
                                 drop_last=True, seed=seed, prefetch=variant.prefetch and not legacy)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, lr=self.lr, epochs=cfg.epochs,
                                         steps_per_epoch=len(self.stream), warmup_epochs=cfg.warmup_epochs)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.norm = Normalizer(mean, std)
        self.autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bf16" else contextlib.nullcontext()
        self.epoch, self.batches = 0, iter(())
        self.pool = ThreadPoolExecutor(1) if variant.prefetch and legacy else None
        self.sums = [0.0, 0.0, 0]
        self.compile_s = None

    def _next_batch(self):
        for _ in range(2):
            try:
                with record_function("next batch (index + augment)"):
                    x, y, _ = next(self.batches)
                return x, y
            except StopIteration:
                self.epoch += 1
                self.stream.set_epoch(self.epoch)
                self.batches = iter(self.stream.indexed())
        raise RuntimeError("empty stream")

    def step(self, xb: torch.Tensor, yb: torch.Tensor, progress=None, task=None) -> None:
        """The engine's inner loop body (edgeblood/training/engine.py at 8f0f10e)."""
        xb = self.norm(xb)
        if self.variant.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with record_function("forward"), self.autocast:
            logits = self.forward(xb)
        with record_function("loss"):
            loss = self.criterion(logits.float(), yb)
        with record_function("optimizer zero_grad"):
            self.optimizer.zero_grad(set_to_none=True)
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer step (AdamW)"):
            self.optimizer.step()
        with record_function("scheduler step"):
            self.scheduler.step()
        with record_function("metrics (.item() sync)"):
            n = len(yb)
            if self.variant.lazy_sync:
                self.sums[0] += loss.detach() * n
                self.sums[1] += (logits.argmax(1) == yb).sum()
            else:
                self.sums[0] += loss.item() * n
                self.sums[1] += (logits.argmax(1) == yb).sum().item()
            self.sums[2] += n
        if progress is not None:
            with record_function("progress bar"):
                info = "" if self.variant.lazy_sync else (
                    f"loss {self.sums[0] / self.sums[2]:.4f}  acc {self.sums[1] / self.sums[2]:.4f}  "
                    f"lr {self.optimizer.param_groups[0]['lr']:.2e}")
                progress.update(task, advance=n, info=info)

    def run(self, images: int, progress=None, task=None) -> float:
        """Train on ``images`` images (whole batches); returns the wall seconds (CPU seconds of the process in .cpu_s)."""
        n_batches = max(1, images // self.batch_size)
        threads = torch.get_num_threads()
        if self.variant.threads:
            torch.set_num_threads(self.variant.threads)
        flags = contextlib.nullcontext() if self.variant.mkldnn else torch.backends.mkldnn.flags(enabled=False)
        t0, c0 = time.perf_counter(), time.process_time()
        with flags:
            if self.pool is None:
                for _ in range(n_batches):
                    xb, yb = self._next_batch()
                    self.step(xb, yb, progress, task)
            else:  # the next batch is built while this one trains; nothing is prepared before the round starts
                pending = self.pool.submit(self._next_batch)
                for i in range(n_batches):
                    xb, yb = pending.result()
                    if i + 1 < n_batches:
                        pending = self.pool.submit(self._next_batch)
                    self.step(xb, yb, progress, task)
            if self.variant.lazy_sync:  # the one sync per epoch the engine would do
                self.sums = [float(self.sums[0]), float(self.sums[1]), self.sums[2]]
        self.cpu_s = time.process_time() - c0
        wall = time.perf_counter() - t0
        torch.set_num_threads(threads)
        return wall


def _adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The engine's optimiser: no weight decay on biases and norm parameters."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def load_train(size: int, data_dir: str):
    data = load_bloodmnist(size, data_dir)
    train_x = data.images("train")
    mean, std = channel_stats(train_x)
    return to_tensor_nchw(train_x), torch.from_numpy(data.labels("train")), mean, std


def _machine() -> str:
    flags = ""
    with contextlib.suppress(OSError):
        flags = next((line for line in open("/proc/cpuinfo", encoding="utf-8") if line.startswith("flags")), "")
    isa = "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else "AVX-512" if "avx512f" in flags else \
        "AVX2" if "avx2" in flags else "no AVX2"
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo", encoding="utf-8") if line.startswith("model name")), "?") \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    return f"{model}, {os.cpu_count()} cores, {isa}"


# --- interleaved comparison ---

def compare(name: str, variant: Variant, model: str, size: int, threads: int, data, rounds: int, images: int,
            console: Console, baseline: str = "") -> dict:
    torch.set_num_threads(threads)
    base = Trainer(CANDIDATES[baseline] if baseline else Variant(), model, size, data)
    cand = Trainer(variant, model, size, data)
    if variant.compile:  # compile time apart: the first steps (forward + backward graphs) against a steady one
        t0 = time.perf_counter()
        cand.run(cand.batch_size * 2)
        first = time.perf_counter() - t0
        steady = cand.run(cand.batch_size)
        cand.compile_s = first - 2 * steady
    ratios, ips_base, ips_cand, loads, cpu_base, cpu_cand = [], [], [], [], [], []
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{model} {size}px {threads}t: {name}", total=(rounds + 1) * 2 * images, info="")
        for r in range(rounds + 1):  # round 0 warms both up and is not counted
            order = (base, cand) if r % 2 == 0 else (cand, base)
            seconds, cpu = {}, {}
            for t in order:
                seconds[id(t)] = t.run(images, progress, task)
                cpu[id(t)] = t.cpu_s
            load = os.getloadavg()[0]
            if r == 0:
                continue
            b = images // base.batch_size * base.batch_size / seconds[id(base)]
            c = images // cand.batch_size * cand.batch_size / seconds[id(cand)]
            ips_base.append(b)
            ips_cand.append(c)
            ratios.append(c / b)
            loads.append(load)
            cpu_base.append(images // base.batch_size * base.batch_size / cpu[id(base)])
            cpu_cand.append(images // cand.batch_size * cand.batch_size / cpu[id(cand)])
    for t in (base, cand):
        if t.pool is not None:
            t.pool.shutdown()
    return {
        "model": model, "size": size, "threads": threads, "candidate": name, "variant": asdict(variant),
        "baseline": baseline or DEFAULT_BASELINE,
        "precision": base.precision, "rounds": rounds, "images_per_round": images,
        "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "baseline_img_s": statistics.median(ips_base), "candidate_img_s": statistics.median(ips_cand),
        # images per CPU-second of this process: near what one idle core would do at 1 thread, whatever the load
        "baseline_img_cpu_s": statistics.median(cpu_base), "candidate_img_cpu_s": statistics.median(cpu_cand),
        # per-round ratio of images per CPU-second: at 1 thread without a data thread, the steadier figure on a loaded machine
        "cpu_ratio_median": statistics.median(c / b for c, b in zip(cpu_cand, cpu_base)),
        "cpu_ratio_min": min(c / b for c, b in zip(cpu_cand, cpu_base)),
        "cpu_ratio_max": max(c / b for c, b in zip(cpu_cand, cpu_base)),
        "load_mean": sum(loads) / len(loads), "load_min": min(loads), "load_max": max(loads),
        "compile_s": cand.compile_s, "machine": _machine(), "torch": torch.__version__,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _default_images(size: int) -> int:
    return 640 if size <= 32 else 256


def _done(results: Path) -> set[tuple]:
    if not results.exists():
        return set()
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {(r["model"], r["size"], r["threads"], r["candidate"], r.get("baseline", DEFAULT_BASELINE).replace(DEFAULT_BASELINE, ""))
            for r in rows}


def print_table(rows: list[dict], console: Console) -> None:
    table = Table(title=f"training img/s, candidate / baseline per interleaved round ({rows[0]['machine']}, {rows[0]['precision']})")
    for col in ("model", "px", "thr", "candidate", "wall ratio", "range", "base img/s", "cand img/s", "img/CPU-s base, cand",
                "CPU ratio (range)", "load (mean, min-max)", "compile s"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["model"], str(r["size"]), str(r["threads"]), r["candidate"], f"{r['ratio_median']:.3f}",
                      f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}", f"{r['baseline_img_s']:.0f}", f"{r['candidate_img_s']:.0f}",
                      f"{r['baseline_img_cpu_s']:.0f}, {r['candidate_img_cpu_s']:.0f}",
                      f"{r['cpu_ratio_median']:.3f} ({r['cpu_ratio_min']:.2f}-{r['cpu_ratio_max']:.2f})" if "cpu_ratio_median" in r else "",
                      f"{r['load_mean']:.1f} ({r['load_min']:.1f}-{r['load_max']:.1f})",
                      f"{r['compile_s']:.0f}" if r.get("compile_s") is not None else "")
    console.print(table)


# --- profile of one epoch-equivalent ---

LABELS = ("next batch (index + augment)", "batch: index uint8 + to float", "augment", "augment: crop (grid_sample)", "augment: rot90 (clone + index)",
          "augment: flip (where)", "augment: stain gain", "augment: JPEG round trip (Pillow)", "forward", "loss",
          "optimizer zero_grad", "backward", "optimizer step (AdamW)", "scheduler step", "metrics (.item() sync)", "progress bar")


def _first_conv_macs(model: nn.Module, size: int) -> int:
    """MACs of the first convolution, whose input gradient nobody needs (backward skips it)."""
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    out = -(-size // conv.stride[0])
    return out * out * conv.out_channels * conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]


def profile_epoch(model: str, size: int, threads: int, data, variant: Variant, console: Console, batches: int | None = None,
                  ghz: float = 2.45) -> dict:
    torch.set_num_threads(threads)
    trainer = Trainer(variant, model, size, data)
    trainer.run(trainer.batch_size * 3)  # warm-up (and compilation) outside the profile
    n = batches or len(trainer.stream)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"profiling {n} batches", total=n * trainer.batch_size, info="")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            load0 = os.getloadavg()[0]
            wall = trainer.run(n * trainer.batch_size, progress, task)
    totals = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages() if e.key in LABELS}
    ops = sorted(((e.key, e.self_cpu_time_total / 1e6) for e in prof.key_averages() if e.key.startswith("aten::")),
                 key=lambda kv: -kv[1])[:15]
    top = [k for k in LABELS if not k.startswith("augment") and not k.startswith("batch:")]
    accounted = sum(totals.get(k, 0.0) for k in top)
    table = Table(title=f"{model} {size} px, {threads} thread(s), {n} batches of {trainer.batch_size} "
                        f"({n * trainer.batch_size} images), {trainer.precision}, wall {wall:.1f} s, load {load0:.1f}")
    table.add_column("part")
    table.add_column("s")
    table.add_column("% of wall")
    for k in LABELS:
        if k in totals:
            indent = "    " if k.startswith("augment:") else "  " if k.startswith(("augment", "batch:")) else ""
            table.add_row(indent + k, f"{totals[k]:.2f}", f"{100 * totals[k] / wall:.1f}")
    table.add_row("normalise + Python between labels", f"{wall - accounted:.2f}", f"{100 * (wall - accounted) / wall:.1f}")
    console.print(table)
    images = n * trainer.batch_size
    conv_s = sum(s for k, s in ops if k in ("aten::convolution_backward", "aten::mkldnn_convolution", "aten::_slow_conv2d_forward",
                                                "aten::_slow_conv2d_backward"))
    share = trainer.cpu_s / wall  # the CPU share this thread got on a loaded machine: op times are wall times in the thread
    macs = 3 * count_macs(trainer.model, size) - _first_conv_macs(trainer.model, size)  # forward + grad input + grad weight
    peak = 16 * ghz * 1e9  # AVX2 fp32: 2 FMA units x 8 lanes per cycle per core
    console.print(f"{images / trainer.cpu_s:.0f} images per CPU-second ({trainer.cpu_s:.1f} CPU-s, {share:.0%} of the wall on this thread); "
                  f"{macs / 1e6:.1f} M MACs per image forward+backward -> {images * macs / trainer.cpu_s / 1e9:.1f} GMAC per CPU-second = "
                  f"{images * macs / trainer.cpu_s / peak:.0%} of one core's AVX2 fp32 peak ({peak / 1e9:.1f} GMAC/s at {ghz} GHz); "
                  f"inside the convolution kernels {images * macs / (conv_s * share) / peak:.0%}")
    ops_table = Table(title="top aten ops by self time (% of wall)")
    ops_table.add_column("op")
    ops_table.add_column("s")
    ops_table.add_column("%")
    for k, s in ops:
        ops_table.add_row(k, f"{s:.2f}", f"{100 * s / wall:.1f}")
    console.print(ops_table)
    return {"model": model, "size": size, "threads": threads, "variant": asdict(variant), "batches": n, "wall_s": wall,
            "img_s": n * trainer.batch_size / wall, "cpu_s": trainer.cpu_s, "parts_s": totals, "top_ops_s": dict(ops), "load": load0,
            "precision": trainer.precision, "machine": _machine(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="se-cnn")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--all", action="store_true", help="every model/size of issue #18 (se-cnn 28, se-cnn-compact 28, se-cnn 64)")
    ap.add_argument("--threads", default="1", help="comma-separated thread counts, e.g. 1,2")
    ap.add_argument("--candidates", default="kept", help=f"comma-separated, or 'all': {', '.join(CANDIDATES)}")
    ap.add_argument("--baseline", default="", help="compare against this candidate instead of the engine before #18")
    ap.add_argument("--rounds", type=int, default=6, help="counted rounds per comparison (one more warms up)")
    ap.add_argument("--images", type=int, default=0, help="images per variant per round (default 1280 at 28 px, 512 at 64 px)")
    ap.add_argument("--data-dir", default=os.environ.get("EDGEBLOOD_DATA", "../shared/data"), help="default: $EDGEBLOOD_DATA, else ../shared/data")
    ap.add_argument("--results", default="logs/h18-train-throughput.jsonl")
    ap.add_argument("--force", action="store_true", help="measure again what --results already holds")
    ap.add_argument("--profile", action="store_true", help="profile one epoch-equivalent of the baseline instead")
    ap.add_argument("--profile-variant", default="", help="profile this candidate instead of the baseline")
    ap.add_argument("--ghz", type=float, default=2.45, help="core clock for the share-of-peak line of --profile")
    ap.add_argument("--budget-s", type=float, default=480, help="stop starting new comparisons after this many seconds")
    args = ap.parse_args()
    console = Console(width=None if os.isatty(1) else 160)
    configs = CONFIGS if args.all else ((args.model, args.size),)
    threads = [int(t) for t in args.threads.split(",")]
    results = Path(args.results)
    console.print(f"machine: {_machine()}; torch {torch.__version__}; precision auto -> "
                  f"{resolve_precision('auto', torch.device('cpu'))}")
    if args.baseline and args.baseline not in CANDIDATES:
        raise SystemExit(f"unknown --baseline {args.baseline}; choose from {', '.join(CANDIDATES)}")
    if args.profile:
        model, size = configs[0]
        variant = CANDIDATES[args.profile_variant] if args.profile_variant else Variant()
        row = profile_epoch(model, size, threads[0], load_train(size, args.data_dir), variant, console, ghz=args.ghz)
        row["profile"] = args.profile_variant or "baseline"
        results.parent.mkdir(parents=True, exist_ok=True)
        with results.with_name(results.stem + "-profile.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        return
    names = list(CANDIDATES) if args.candidates == "all" else [c.strip() for c in args.candidates.split(",")]
    unknown = [c for c in names if c not in CANDIDATES]
    if unknown:
        raise SystemExit(f"unknown candidate(s) {', '.join(unknown)}; choose from {', '.join(CANDIDATES)}")
    done = set() if args.force else _done(results)
    start, rows, skipped = time.perf_counter(), [], 0
    for model, size in configs:
        data = None
        for t in threads:
            for name in names:
                if (model, size, t, name, args.baseline) in done:
                    skipped += 1
                    continue
                if time.perf_counter() - start > args.budget_s:
                    console.print(f"[yellow]budget of {args.budget_s:.0f} s spent[/]: run the same command again to continue")
                    return _finish(rows, results, console)
                data = data or load_train(size, args.data_dir)
                try:
                    row = compare(name, CANDIDATES[name], model, size, t, data, args.rounds, args.images or _default_images(size), console,
                                  args.baseline)
                except Exception as exc:  # e.g. inductor without a compiler: recorded, the sweep goes on
                    console.print(f"[red]{model} {size}px {t}t {name} failed[/]: {type(exc).__name__}: {str(exc)[:300]}")
                    continue
                rows.append(row)
                results.parent.mkdir(parents=True, exist_ok=True)
                with results.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
                versus = f" vs {args.baseline}" if args.baseline else ""
                console.print(f"{model} {size}px {t}t {name}{versus}: x{row['ratio_median']:.3f} [{row['ratio_min']:.2f}-{row['ratio_max']:.2f}] "
                              f"({row['baseline_img_s']:.0f} -> {row['candidate_img_s']:.0f} img/s; per CPU-second x{row['cpu_ratio_median']:.3f} "
                              f"[{row['cpu_ratio_min']:.2f}-{row['cpu_ratio_max']:.2f}]; load {row['load_mean']:.1f})")
    if skipped:
        console.print(f"{skipped} comparison(s) already in {results} (--force to measure again)")
    _finish(rows, results, console)


def _finish(rows: list[dict], results: Path, console: Console) -> None:
    if rows:
        print_table(rows, console)


if __name__ == "__main__":
    main()
