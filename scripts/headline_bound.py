"""What bounds the bench headline (ONNX Runtime int8 vs PyTorch eager fp32, batch 1): one interleaved run.

Times, alternated round by round in one process at the same thread count, on one input:

* PyTorch eager fp32 as the bench times it (probabilities + the domain output) and without the domain branch;
* the ONNX Runtime artifact as shipped (ONNX Runtime executes every node of the graph even when only
  ``probabilities`` is fetched: microsoft/onnxruntime#16483, #27615; ``only_execute_path_to_fetches``
  exists only in training builds), the same file with the domain and label branches cut off in memory,
  and the per-call floor: an Identity graph through ``run`` and through IO binding;
* the IO-binding variant of the shipped graph (input rebound per call, outputs pre-allocated).

The fair ratios are like for like (both with the domain output, or both without it); the floor says how
much any per-call trick could still win.

    python scripts/headline_bound.py RUN_DIR [ROUNDS] [THREADS]     # RUN_DIR with export/model-int8.onnx
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _session(model: str | bytes, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def probabilities_only(path: Path) -> bytes:
    """The graph with only its ``probabilities`` output and the nodes it needs (what an app could ship)."""
    import onnx

    model = onnx.load(str(path))
    keep = [o for o in model.graph.output if o.name == "probabilities"]
    need, nodes = {"probabilities"}, []
    for node in reversed(model.graph.node):
        if need.intersection(node.output):
            nodes.append(node)
            need.update(node.input)
    del model.graph.output[:], model.graph.node[:]
    model.graph.output.extend(keep)
    model.graph.node.extend(reversed(nodes))
    return model.SerializeToString()


def identity_graph(shape: tuple[int, ...]) -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "floor",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def _io_bound(sess, x: np.ndarray) -> Callable[[], np.ndarray]:
    import onnxruntime as ort

    binding = sess.io_binding()
    outs = {o.name: ort.OrtValue.ortvalue_from_shape_and_type([1, *o.shape[1:]], np.int64 if "int64" in o.type else np.float32)
            for o in sess.get_outputs()}
    for name, value in outs.items():
        binding.bind_ortvalue_output(name, value)
    name = sess.get_inputs()[0].name

    def call() -> np.ndarray:
        binding.bind_cpu_input(name, x)
        sess.run_with_iobinding(binding)
        return outs["probabilities"].numpy()
    return call


def calls(run: str, threads: int) -> dict[str, Callable[[], object]]:
    import torch

    from edgeblood.preprocess import wrap_for_deployment, wrap_run
    from edgeblood.runs import open_run

    torch.set_num_threads(threads)
    opened = open_run(run)
    artifact = opened.export_dir / "model-int8.onnx"
    x = (np.random.default_rng(0).random((1, 3, opened.in_size, opened.in_size)) * 255).astype(np.float32)
    xt = torch.from_numpy(x)
    eager = {"pytorch fp32 (with domain)": wrap_run(opened, with_label=False),
             "pytorch fp32 (no domain)": wrap_for_deployment(opened.model, opened.meta, with_label=False)}
    out: dict[str, Callable[[], object]] = {}
    for name, module in eager.items():
        out[name] = (lambda m: torch.inference_mode()(lambda: m(xt)))(module)
    shipped, pruned, empty = _session(str(artifact), threads), _session(probabilities_only(artifact), threads), _session(identity_graph(x.shape), threads)
    out["ort int8 as shipped"] = lambda: shipped.run(["probabilities"], {"image": x})
    out["ort int8 as shipped, IO binding"] = _io_bound(shipped, x)
    out["ort int8 probabilities only"] = lambda: pruned.run(["probabilities"], {"image": x})
    out["ort floor: Identity run"] = lambda: empty.run(["y"], {"x": x})
    out["ort floor: Identity IO binding"] = _io_bound_identity(empty, x)
    return out


def _io_bound_identity(sess, x: np.ndarray) -> Callable[[], object]:
    binding = sess.io_binding()
    binding.bind_output("y")

    def call() -> object:
        binding.bind_cpu_input("x", x)
        return sess.run_with_iobinding(binding)
    return call


def main(run: str, rounds: int = 12, threads: int = 1) -> None:
    from edgeblood.bench.interleave import InterleaveConfig, interleave

    fns = calls(run, threads)
    timed = interleave(fns, InterleaveConfig(rounds=rounds, calls=300, warmup_calls=30))
    for base in ("pytorch fp32 (with domain)", "pytorch fp32 (no domain)"):
        print(f"x {base}:")
        for name in fns:
            ratio = np.asarray(timed.ratios(base, name))
            print(f"  {name:34s} p50 {timed.p50_ms(name):.4f} ms  median {np.median(ratio):6.2f}x [{ratio.min():.2f}-{ratio.max():.2f}]")
    print(f"({timed.rounds} rounds x {timed.calls_per_round} calls, {threads} thread(s), batch 1, interleaved in one process)")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], *(int(a) for a in sys.argv[2:4]))
