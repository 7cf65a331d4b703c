"""Core ML export: an ML program (.mlpackage) classifier that a Vision app can feed an image.

Input ``image`` is an ``ImageType`` (RGB, the model's size, batch 1 - Core ML batches by calling
predict on several inputs). Core ML's ImageType preprocessing is ``scale * pixel + bias`` with ONE
scale for all channels, so it cannot express BloodMNIST's per-channel std. We therefore keep the
whole normalisation in the graph (the same RawPixelClassifier as ONNX/OpenVINO) and declare
``scale=1, bias=[0, 0, 0]``: Core ML hands the network raw 0-255 RGB pixels, and nothing is
normalised twice. Apps must not add their own scaling.

Outputs (ClassifierConfig with the run's 8 labels): ``classLabel`` (string) and ``probabilities``
(dictionary label -> probability), plus ``domain`` ([1, 2] floats, > 1 = unlike training) where the run
has a domain profile (edgeblood.domain). The domain check's ops stay in float32 in an fp16 model and
keep uncompressed weights in a compressed one (``domain_only_ops``), as every int8 path keeps it in float:
its squared distance is computed in expanded form, which cancels in fp16 (emulated in PyTorch on the
shipped se-cnn-28's val split: median relative error 1.3 %, up to 8x on small distances, the flag changed
on 0.2 % of images), while float32 costs a few hundred kB. Contract metadata goes to
``user_defined_metadata``; author, licence, description and version to the model's standard metadata fields.

On Linux coremltools converts and we validate the spec; predictions need macOS.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import platform
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from edgeblood.contract import DOMAIN_NAME, INPUT_NAME, PROB_NAME
from edgeblood.errors import EdgebloodError, missing_extra
from edgeblood.exporters.coreml.metadata import write_metadata
from edgeblood.targets import ExportJob, ExportOptions, Target, register

if TYPE_CHECKING:
    import torch

LABEL_OUTPUT = "classLabel"
DEFAULT_MIN_TARGET = "iOS16"
NUMERIC_SKIP_REASON = "numeric check skipped: Core ML predictions need macOS"


def require_coremltools():
    if importlib.util.find_spec("coremltools") is None:
        raise missing_extra("coremltools", "coreml")
    with quiet():
        import coremltools as ct
    return ct


def can_predict() -> bool:
    return platform.system() == "Darwin"


@contextlib.contextmanager
def quiet():
    """Silence coremltools' import chatter (untested-torch warning, missing native proxies on Linux) and tqdm bars.

    Its torchao import logs a torch deprecation line (``_pytree.py:630] <enum 'KernelPreference'> ...``)
    through torch's own handler, which holds the real stderr: that logger is turned down here too.
    """
    loggers = [logging.getLogger(name) for name in ("coremltools", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    old_tqdm = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if old_tqdm is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = old_tqdm


def deployment_target(name: str):
    """``"iOS16"`` -> ``ct.target.iOS16`` (case-insensitive); ML programs need iOS15/macOS12 or newer."""
    ct = require_coremltools()
    # __members__, not dir(): the enum's int mixin adds methods to dir(), and aliases (macOS13 = iOS16) only live here
    names = {t.lower(): t for t in ct.target.__members__}
    key = names.get(name.lower())
    if key is None:
        usable = [t for t, v in ct.target.__members__.items() if v.value >= ct.target.iOS15.value]
        raise EdgebloodError(f"unknown Core ML deployment target '{name}'; choose one of: {', '.join(usable)}")
    target = getattr(ct.target, key)
    if target.value < ct.target.iOS15.value:
        raise EdgebloodError(f"ML programs (.mlpackage) need iOS15/macOS12 or newer, not {key}; pass --min-target iOS15 or later")
    return target


def export_coreml(
    model: torch.nn.Module,
    metadata: dict[str, str],
    classes: list[str],
    out_path: str | Path,
    *,
    in_size: int,
    precision: str = "fp32",
    min_target: str = DEFAULT_MIN_TARGET,
) -> dict:
    """Convert ``model`` (a RawPixelClassifier returning probabilities only) to ``out_path`` (.mlpackage)."""
    ct = require_coremltools()
    if precision not in ("fp32", "fp16"):
        raise EdgebloodError(f"Core ML export supports fp32 and fp16 compute precision, not {precision}; "
                             "int8/palettized weights come from `edgeblood compress --target coreml`")
    target = deployment_target(min_target)
    out_path = Path(out_path)
    import torch

    example = torch.full((1, 3, in_size, in_size), 128.0)
    t0 = time.perf_counter()
    with quiet():
        try:
            source = torch.export.export(model.eval(), (example,)).run_decompositions({})
            dialect = "torch.export"
        except Exception:  # coremltools' TorchScript frontend is the older, broader path
            source, dialect = torch.jit.trace(model.eval(), example), "TorchScript"
        # Two steps: to a MIL program in float32, then to the classifier. With a second output (domain) a one-step
        # convert fails (coremltools indexes the frontend's output types by the classifier's outputs, one more than
        # the model's: IndexError in load.py get_func_output); the program, once its output types are cleared, converts.
        prog = ct.convert(
            source,
            inputs=[ct.ImageType(name=INPUT_NAME, shape=(1, 3, in_size, in_size), scale=1.0, bias=[0.0, 0.0, 0.0], color_layout=ct.colorlayout.RGB)],
            convert_to="milinternal", compute_precision=ct.precision.FLOAT32, minimum_deployment_target=target,
        )
        main = prog.functions["main"]
        outputs = [v.name for v in main.outputs]  # (probabilities[, domain]), as RawPixelClassifier returns them
        in_float = domain_only_ops(prog, outputs[1]) if len(outputs) > 1 else set()
        main.output_types = None
        mlmodel = ct.convert(
            prog,
            classifier_config=ct.ClassifierConfig(list(classes), predicted_feature_name=LABEL_OUTPUT, predicted_probabilities_output=outputs[0]),
            convert_to="mlprogram",
            compute_precision=(ct.transform.FP16ComputePrecision(op_selector=lambda op: op.name not in in_float) if precision == "fp16"
                               else ct.precision.FLOAT32),
            minimum_deployment_target=target,
        )
        spec = mlmodel.get_spec()
        probs_name = spec.description.predictedProbabilitiesName
        if probs_name != PROB_NAME:
            ct.utils.rename_feature(spec, probs_name, PROB_NAME)
        if len(outputs) > 1:
            ct.utils.rename_feature(spec, outputs[1], DOMAIN_NAME)
        mlmodel = ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)
        _describe(mlmodel, metadata, classes, in_size, precision)
        mlmodel.save(str(out_path))
    return {
        "converter": f"coremltools {ct.__version__} ({dialect})",
        "format": "mlprogram",
        "minimum_deployment_target": target.name,
        "compute_precision": precision,
        **({"domain_check": "float32 ops" + (" in the fp16 model" if precision == "fp16" else "")} if in_float else {}),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def domain_only_ops(prog, domain_output: str = DOMAIN_NAME) -> set[str]:
    """Names of the ops (consts included) of a MIL program's main function that only the ``domain_output`` needs."""
    block = prog.functions["main"]

    def needed_by(names: set[str]) -> set[str]:
        seen: set[str] = set()
        stack = [v.op for v in block.outputs if v.name in names and v.op is not None]
        while stack:
            op = stack.pop()
            if op.name in seen:
                continue
            seen.add(op.name)
            for value in op.inputs.values():
                stack.extend(v.op for v in (value if isinstance(value, (list, tuple)) else [value]) if v.op is not None)
        return seen

    others = {v.name for v in block.outputs} - {domain_output}
    return needed_by({domain_output}) - needed_by(others)


def _describe(mlmodel, metadata: dict[str, str], classes: list[str], in_size: int, precision: str) -> None:
    mlmodel.author = "edgeblood " + metadata.get("edgeblood_version", "")
    mlmodel.license = metadata.get("license", "")
    mlmodel.short_description = f"{metadata.get('description', '')} Data: {metadata.get('credit', '')}"
    mlmodel.version = f"{metadata.get('model_name', 'model')}-{precision}"
    mlmodel.input_description[INPUT_NAME] = f"RGB cell image, {in_size}x{in_size} px, pixels 0-255 (normalisation is inside the model; pass the image as it is)"
    mlmodel.output_description[LABEL_OUTPUT] = "most likely cell type"
    mlmodel.output_description[PROB_NAME] = "probability of each of the 8 cell types (softmax)"
    if DOMAIN_NAME in {o.name for o in mlmodel.get_spec().description.output}:
        mlmodel.output_description[DOMAIN_NAME] = ("domain check [features, image]: distance to the training data over its threshold; "
                                                   "above 1 = unlike what the model was trained on (see the 'domain' metadata)")
    write_metadata(mlmodel, {**metadata, "precision": precision, "target": "coreml"})


def inspect_coreml(path: str | Path) -> dict:
    """What an app sees: input/output names and types, labels, metadata (reads the spec; any OS)."""
    ct = require_coremltools()
    with quiet():
        mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
    spec = mlmodel.get_spec()
    desc = spec.description
    inputs = []
    for inp in desc.input:
        kind = inp.type.WhichOneof("Type")
        item = {"name": inp.name, "type": kind}
        if kind == "imageType":
            img = inp.type.imageType
            item.update(width=img.width, height=img.height, color_space=ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(img.colorSpace))
        inputs.append(item)
    outputs = [{"name": o.name, "type": o.type.WhichOneof("Type")} for o in desc.output]
    return {
        "type": spec.WhichOneof("Type"),
        "specification_version": spec.specificationVersion,
        "inputs": inputs,
        "outputs": outputs,
        "predicted_feature": desc.predictedFeatureName,
        "predicted_probabilities": desc.predictedProbabilitiesName,
        "labels": _labels(spec),
        "author": desc.metadata.author,
        "license": desc.metadata.license,
        "description": desc.metadata.shortDescription,
        "version": desc.metadata.versionString,
        "user_defined_metadata": dict(desc.metadata.userDefined),
    }


def _labels(spec) -> list[str]:
    """Class labels of a classifier: NeuralNetwork classifiers store them in the spec, ML programs in the classify op."""
    if spec.WhichOneof("Type") == "neuralNetworkClassifier":
        return list(spec.neuralNetworkClassifier.stringClassLabels.vector)
    if spec.WhichOneof("Type") != "mlProgram":
        return []
    for function in spec.mlProgram.functions.values():
        block = function.block_specializations[function.opset]
        for op in block.operations:
            if op.type == "classify":
                arg = op.inputs["classes"].arguments[0]
                return [v.immediateValue.tensor.strings.values[0] for v in arg.value.immediateValue.list.values]
    return []


def validate_coreml(path: str | Path, classes: list[str], in_size: int, metadata: dict[str, str] | None = None) -> dict:
    """Check the spec against the contract; raise EdgebloodError listing every mismatch. Returns the inspection."""
    info = inspect_coreml(path)
    problems = []
    inp = info["inputs"]
    if len(inp) != 1 or inp[0]["name"] != INPUT_NAME or inp[0]["type"] != "imageType":
        problems.append(f"input should be one image named '{INPUT_NAME}', found {inp}")
    elif (inp[0]["width"], inp[0]["height"], inp[0]["color_space"]) != (in_size, in_size, "RGB"):
        problems.append(f"input should be RGB {in_size}x{in_size}, found {inp[0]['color_space']} {inp[0]['width']}x{inp[0]['height']}")
    outs = {o["name"]: o["type"] for o in info["outputs"]}
    expected = {LABEL_OUTPUT: "stringType", PROB_NAME: "dictionaryType"}
    with_domain = DOMAIN_NAME in json.loads(info["user_defined_metadata"].get("outputs") or "[]")
    if outs != expected | ({DOMAIN_NAME: "multiArrayType"} if with_domain else {}):
        problems.append(f"outputs should be {LABEL_OUTPUT} (string) and {PROB_NAME} (dictionary)"
                        f"{f' and {DOMAIN_NAME} (array)' if with_domain else ''}, found {outs}")
    if info["labels"] != list(classes):
        problems.append(f"labels should be {list(classes)}, found {info['labels']}")
    if metadata:
        stored = info["user_defined_metadata"]
        missing = [k for k in metadata if k not in stored]
        if missing:
            problems.append(f"metadata keys missing: {', '.join(missing)}")
    if problems:
        raise EdgebloodError(f"Core ML model {path} does not match the contract: {'; '.join(problems)}")
    return info


# ----------------------------------------------------------------------------------- the target

def _export_target(job: ExportJob) -> dict:
    from edgeblood.preprocess import wrap_run

    run = job.run
    model = wrap_run(run, with_label=False)  # Core ML adds classLabel itself; the domain output where the run has a profile
    return export_coreml(model, job.metadata, run.classes, job.out, in_size=run.in_size, precision=job.precision,
                         min_target=job.options.min_target)


def image_input(size: int) -> dict:
    """Core ML's input: an image (Vision scales the capture to it), raw 0-255 RGB, no scale or bias."""
    return {"name": INPUT_NAME, "type": "image", "color": "RGB", "width": size, "height": size, "batch": 1, "scale": 1.0, "bias": [0, 0, 0]}


def _validate(path: Path, run) -> None:
    validate_coreml(path, run.classes, run.in_size)


def _check_options(options: ExportOptions) -> None:
    deployment_target(options.min_target)


TARGET = register(Target(
    name="coreml", title="Core ML", runtime="coreml", extra="coreml", libraries=("coremltools",),
    artifacts={"fp32": "model.mlpackage", "fp16": "model-fp16.mlpackage"}, outputs=(PROB_NAME, LABEL_OUTPUT),
    export=_export_target, input_contract=image_input, order=30, validate=_validate, check_options=_check_options,
    description="Core ML ML program (.mlpackage) for iOS/macOS apps (Vision image input); predictions need macOS",
))
