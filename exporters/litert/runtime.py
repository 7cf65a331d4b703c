"""The LiteRT adapter: ``.tflite`` files with fixed-batch signatures behind ``edgeblood.runtimes``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeblood.errors import EdgebloodError
from edgeblood.exporters.litert.metadata import read_litert_metadata
from edgeblood.runtimes import LoadedModel, Runtime, fixed_batch_predict, import_ok, register_runtime, timed


@register_runtime
class LiteRTRuntime(Runtime):
    """LiteRT (TensorFlow Lite) interpreter with its default XNNPACK delegate (ai-edge-litert).

    A .tflite artifact holds fixed-batch signatures (exporters/litert/export.py: batch 1 and 64). ``predict``
    runs whole chunks through the largest one and the rest image by image through batch 1; a benchmark
    times each batch on the signature of exactly that batch (``timed_call``), as an app would call it.
    """

    name = "litert"
    extra = "litert"
    suffixes = (".tflite",)

    def available(self) -> tuple[bool, str]:
        return import_ok("ai_edge_litert", "litert", "ai-edge-litert")

    def devices(self) -> list[str]:
        return ["cpu"] if self.available()[0] else []

    def _load(self, artifact: Path, device: str, threads: int | None) -> LoadedModel:
        from ai_edge_litert.interpreter import Interpreter

        from edgeblood.contract import DOMAIN_NAME, INPUT_NAME, PROB_NAME
        from edgeblood.native_output import silenced

        @silenced()  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
        def load():
            interpreter = Interpreter(model_path=str(artifact), **({"num_threads": threads} if threads else {}))
            runners = {}
            for name in interpreter.get_signature_list():
                runner = interpreter.get_signature_runner(name)
                shape = runner.get_input_details()[INPUT_NAME]["shape"]
                runner(**{INPUT_NAME: np.zeros(shape, np.float32)})  # XNNPACK is applied at the first invoke: part of loading
                runners[int(shape[0])] = runner
            return interpreter, runners

        (interpreter, runners), seconds = timed(load)
        if 1 not in runners:
            raise EdgebloodError(f"{artifact} has no batch-1 signature (found batches {sorted(runners)}); re-export it with `edgeblood export`")
        shape = runners[1].get_input_details()[INPUT_NAME]["shape"]

        calls = {batch: _signature_call(runner, INPUT_NAME, PROB_NAME) for batch, runner in runners.items()}
        predict = fixed_batch_predict(calls)
        has_domain = DOMAIN_NAME in runners[1].get_output_details()
        domain = fixed_batch_predict({b: _signature_call(r, INPUT_NAME, DOMAIN_NAME) for b, r in runners.items()}) if has_domain else None
        joint = fixed_batch_predict({b: _signature_call(r, INPUT_NAME, PROB_NAME, DOMAIN_NAME) for b, r in runners.items()}) if has_domain else None
        return LoadedModel(domain_run=domain, joint_run=joint,
            runtime=self.name, device=device, threads=threads, artifact=artifact, load_seconds=seconds, run=predict,
            metadata=read_litert_metadata(artifact), input_size=int(shape[2]) if len(shape) == 4 else None, handle=interpreter,
            fixed_batch_call=calls.get,
        )


def _signature_call(runner: Any, input_name: str, *output_names: str) -> Callable[[np.ndarray], Any]:
    """One output of the signature, or the tuple of several from the same invoke."""
    if len(output_names) == 1:
        return lambda x: runner(**{input_name: x})[output_names[0]]
    return lambda x: tuple(outputs[name] for outputs in [runner(**{input_name: x})] for name in output_names)
