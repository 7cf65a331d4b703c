"""The PyTorch runtime adapter: a run directory's model, wrapped with the deployment contract.

The reference every artifact is compared with, so it stays in the core of the package (beside the run
contract it reads) rather than in a format's folder; ``edgeblood.runtimes`` loads it by name like the
format adapters in ``edgeblood.exporters.<format>.runtime``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeblood.errors import EdgebloodError
from edgeblood.runtimes import LoadedModel, Runtime, import_ok, register_runtime, timed


@register_runtime
class PyTorchRuntime(Runtime):
    """PyTorch eager on a run directory (or its checkpoint.pt), wrapped with the deployment contract.

    ``threads`` calls ``torch.set_num_threads`` (process-wide: benchmark one configuration per process).
    """

    name = "pytorch"
    extra = ""
    suffixes = (".pt",)

    def available(self) -> tuple[bool, str]:
        return import_ok("torch", "", "torch")

    def devices(self) -> list[str]:
        import torch

        devs = ["cpu"]
        if torch.cuda.is_available():
            devs.append("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            devs.append("mps")
        return devs

    def _load(self, artifact: Path, device: str, threads: int | None) -> LoadedModel:
        import torch

        from edgeblood.contract import artifact_metadata, decode_metadata
        from edgeblood.preprocess import wrap_run
        from edgeblood.runs import CHECKPOINT, open_run

        if artifact.is_file() and artifact.name != CHECKPOINT:
            raise EdgebloodError(f"{artifact}: a PyTorch checkpoint is read from its run directory (the folder `edgeblood train` wrote, "
                                 f"with {CHECKPOINT} and run.json), not as a loose file; pass that folder (runs/<name>) or an exported model")
        if threads is not None:
            torch.set_num_threads(threads)

        def load():
            run = open_run(artifact)
            return run, wrap_run(run, with_label=False).to(device)

        (run, module), seconds = timed(load)

        @torch.inference_mode()
        def outputs(x: np.ndarray) -> tuple:
            out = module(torch.from_numpy(x).to(device))
            return out if isinstance(out, tuple) else (out,)  # (probabilities[, domain])

        def predict(x: np.ndarray) -> np.ndarray:
            return outputs(x)[0].float().cpu().numpy()

        def domain(x: np.ndarray) -> np.ndarray:
            return outputs(x)[1].float().cpu().numpy()

        def both(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            probabilities, checked = outputs(x)[:2]
            return probabilities.float().cpu().numpy(), checked.float().cpu().numpy()

        meta = decode_metadata(artifact_metadata(run.meta, target="pytorch", run_name=run.name))
        return LoadedModel(
            runtime=self.name, device=device, threads=threads or torch.get_num_threads(), artifact=artifact,
            load_seconds=seconds, run=predict, metadata=meta, input_size=run.in_size, handle=module,
            domain_run=domain if module.domain is not None else None, joint_run=both,
        )
