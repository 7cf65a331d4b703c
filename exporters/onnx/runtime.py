"""The ONNX Runtime adapter: ``.onnx`` artifacts (plain and capture variants) behind ``edgeblood.runtimes``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeblood.runtimes import LoadedModel, Runtime, import_ok, register_runtime, timed


@register_runtime
class OnnxRuntime(Runtime):
    """ONNX Runtime; devices map to execution providers (cuda -> CUDA EP, coreml -> CoreML EP)."""

    name = "onnxruntime"
    extra = "onnx"
    suffixes = (".onnx",)
    _PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "coreml": "CoreMLExecutionProvider"}

    def available(self) -> tuple[bool, str]:
        return import_ok("onnxruntime", "onnx")

    def devices(self) -> list[str]:
        if not self.available()[0]:
            return []
        import onnxruntime as ort

        have = set(ort.get_available_providers())
        return [dev for dev, prov in self._PROVIDERS.items() if prov in have]

    def _load(self, artifact: Path, device: str, threads: int | None) -> LoadedModel:
        import onnxruntime as ort

        from edgeblood.contract import DOMAIN_NAME, decode_metadata

        # Measured at batch 1 on the se-cnn-28 int8 artifact (interleaved vs PyTorch eager, 1 thread, Xeon with AMX, shared
        # VM; scripts/headline_bound.py): the default ORT_ENABLE_ALL level matters (EXTENDED is 2.2x slower: the int8
        # NHWC transformer is a layout-level pass); IO binding with pre-allocated outputs gains < 1 % (8.26x -> 8.33x,
        # within the rounds' range) and denormals-as-zero, QDQ cleanup and arena settings nothing, so the plain
        # session.run is kept. ONNX Runtime runs the whole graph (domain branch included) whatever outputs are fetched.
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0  # 0 = onnxruntime's default (one per physical core)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        providers = [self._PROVIDERS[device]] + ([] if device == "cpu" else ["CPUExecutionProvider"])
        sess, seconds = timed(lambda: ort.InferenceSession(str(artifact), sess_options=opts, providers=providers))
        inp = sess.get_inputs()[0]
        out_names = [o.name for o in sess.get_outputs()]
        prob = "probabilities" if "probabilities" in out_names else out_names[0]
        in_dtype = {"tensor(float16)": np.float16, "tensor(uint8)": np.uint8}.get(inp.type, np.float32)
        frames = in_dtype is np.uint8 and len(inp.shape) == 4 and inp.shape[-1] == 3  # a capture variant: NHWC frames
        size = inp.shape[-1] if isinstance(inp.shape[-1], int) and not frames else None

        def output(name: str) -> Callable[[np.ndarray], np.ndarray]:
            return lambda x: sess.run([name], {inp.name: x.astype(in_dtype, copy=False)})[0]

        def both(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            probabilities, checked = sess.run([prob, DOMAIN_NAME], {inp.name: x.astype(in_dtype, copy=False)})
            return probabilities, checked

        meta = decode_metadata(dict(sess.get_modelmeta().custom_metadata_map))
        return LoadedModel(
            runtime=self.name, device=device, threads=threads, artifact=artifact,
            load_seconds=seconds, run=output(prob), metadata=meta, input_size=size, handle=sess, takes_frames=frames,
            domain_run=output(DOMAIN_NAME) if DOMAIN_NAME in out_names else None, joint_run=both,
        )
