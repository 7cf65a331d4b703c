"""Which torch device a ``--device`` option means: one rule for train, evaluate and explain; and how
many CPU cores this process may run on (the trainer's prefetch choice and the bench's machine record).

It sits in the core of the package (not in ``edgeblood.training``) because evaluation needs it as
much as training does; the torchrun detail - a bare ``cuda`` is the process's own GPU - is passed
in as ``local_rank`` by ``edgeblood.training.distributed.DistContext.device``.
"""

from __future__ import annotations

import os

import torch

from edgeblood.errors import EdgebloodError


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an explicit device that is absent is an error.

    ``local_rank`` (under torchrun only) turns a bare 'cuda' into ``cuda:<local_rank>``.
    """
    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif _mps_available():
            name = "mps"
        else:
            name = "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EdgebloodError("--device cuda asked, but PyTorch sees no CUDA GPU here; use --device cpu or auto")
        return torch.device(f"cuda:{local_rank}" if name == "cuda" and local_rank is not None else name)
    if name == "mps":
        if not _mps_available():
            raise EdgebloodError("--device mps asked, but Apple-silicon MPS is not available here; use --device cpu or auto")
        return torch.device("mps")
    if name != "cpu":
        raise EdgebloodError(f"unknown device '{name}'; use auto, cpu, cuda or mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def available_cores() -> int | None:
    """The cores this process may use: its CPU affinity where the OS has one (Linux), else the machine's
    logical cores (macOS has no affinity call); None when even that is unknown."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
