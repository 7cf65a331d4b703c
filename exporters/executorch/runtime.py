"""The ExecuTorch adapter: ``.pte`` programs delegated to XNNPACK behind ``edgeblood.runtimes``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeblood.errors import EdgebloodError
from edgeblood.exporters.executorch.metadata import read_executorch_metadata
from edgeblood.runtimes import LoadedModel, Runtime, fixed_batch_predict, import_ok, register_runtime, timed


@register_runtime
class ExecuTorchRuntime(Runtime):
    """ExecuTorch's Python runtime on a .pte program whose graph is delegated to XNNPACK.

    ``threads`` resets XNNPACK's thread pool (process-wide, through the pybindings' underscore API
    ``_unsafe_reset_threadpool``: the only handle the Python runtime has; benchmark one setting per
    process). The runtime hands tensors over as torch tensors, so torch is loaded in the process.
    """

    name = "executorch"
    extra = "executorch"
    suffixes = (".pte",)

    def available(self) -> tuple[bool, str]:
        return import_ok("executorch", "executorch")

    def devices(self) -> list[str]:
        return ["cpu"] if self.available()[0] else []

    def _load(self, artifact: Path, device: str, threads: int | None) -> LoadedModel:
        import torch

        from edgeblood.native_output import silenced

        with silenced():  # CPU-probe lines ("[cpuinfo_utils.cpp:87] Failed to open midr file") at first use
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
            from executorch.runtime import Runtime as ProgramRuntime

            if threads is not None:
                _unsafe_reset_threadpool(threads)

        @silenced()
        def load():
            program = ProgramRuntime.get().load_program(str(artifact))
            return program, [program.load_method(n) for n in sorted(program.method_names) if n.startswith("forward")]

        (program, methods), seconds = timed(load)

        def call(method: Any, index: int = 0) -> Callable[[np.ndarray], np.ndarray]:
            return lambda x: method.execute([torch.from_numpy(x)])[index].numpy()

        def call_both(method: Any, domain_index: int) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
            def both(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                outputs = method.execute([torch.from_numpy(x)])
                return outputs[0].numpy(), outputs[domain_index].numpy()

            return both

        batches = {int(m.metadata.input_tensor_meta(0).sizes()[0]): m for m in methods}  # the batch each method was exported for
        calls = {b: call(m) for b, m in batches.items()}
        if 1 not in calls:
            raise EdgebloodError(f"{artifact} has no batch-1 forward method (found batches {sorted(calls)}); re-export it with `edgeblood export`")
        predict = fixed_batch_predict(calls)
        meta = read_executorch_metadata(program)
        size = int(meta["input_size"]) if str(meta.get("input_size", "")).isdigit() else None
        outputs = list(meta.get("outputs") or [])
        domain = joint = None
        if "domain" in outputs:  # (probabilities, label, domain): the index the contract lists it at
            domain = fixed_batch_predict({b: call(m, outputs.index("domain")) for b, m in batches.items()})
            joint = fixed_batch_predict({b: call_both(m, outputs.index("domain")) for b, m in batches.items()})
        return LoadedModel(domain_run=domain, joint_run=joint,
            runtime=self.name, device=device, threads=threads, artifact=artifact, load_seconds=seconds, run=predict,
            metadata=meta, input_size=size, handle=program, fixed_batch_call=calls.get,
        )
