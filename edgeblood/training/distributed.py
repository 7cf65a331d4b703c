"""Single-process and torchrun (DDP) training share one code path; this module hides the difference.

Under ``torchrun --nproc_per_node N`` the environment carries RANK/WORLD_SIZE/LOCAL_RANK; we join
the process group (gloo on CPU, nccl on CUDA), shard the batches and let only rank 0 write files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from edgeblood.devices import resolve_device


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "DistContext":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(rank=int(os.environ.get("RANK", "0")), world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))

    def device(self, name: str) -> torch.device:
        """The device ``--device name`` means for this process: under torchrun a bare 'cuda' is ``cuda:<local_rank>``."""
        return resolve_device(name, self.local_rank if self.enabled else None)

    def init(self, device: torch.device) -> None:
        if self.enabled and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    def all_sum(self, values: list[float], device: torch.device) -> list[float]:
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def wrap(self, module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``module`` in DistributedDataParallel under torchrun (gradients averaged over ranks), as is otherwise."""
        if not self.enabled:
            return module
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    def broadcast_path(self, path: Path | None) -> Path:
        """Rank 0's ``path`` on every rank (the run directory rank 0 chose); as is in one process."""
        if not self.enabled:
            return path
        box = [str(path) if path else None]
        dist.broadcast_object_list(box, src=0)
        return Path(box[0])

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def shutdown(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'bf16' where bf16 is native (CPU AMX/AVX512-BF16, CUDA bf16), else 'fp32'."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if _cpu_has_native_bf16() else "fp32"
    return "fp32"


def _cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"amx_bf16", "avx512_bf16"} & flags)
    except OSError:
        pass
    return False
