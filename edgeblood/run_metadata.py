"""What run.json holds, as types: the model, its input contract, classes, data, training and calibration.

Like timm's ``PretrainedCfg``, the metadata of a run is one typed record (``RunMetadata``) instead of a
nested dict read by key in many modules. Two promises shape it:

* **Validated on the way in.** Checkpoints travel between machines; a file written elsewhere (or by hand)
  with ``classes`` that are not strings or an ``input.size`` that is not a whole number fails when it is
  opened, with one line naming the key, not deep inside an export with a traceback.
* **Exactly the same on the way out.** run.json and checkpoint.pt are files people diff and other tools
  read, and every version of edgeblood has written ``edgeblood.run/1``. ``from_dict(d).to_dict() == d``
  with the keys in their original order: each section keeps the keys it does not know in ``extra`` and
  remembers the order it was read in, and a key an older run lacks is not added when it is re-saved.

The sections are frozen dataclasses; change one with ``dataclasses.replace`` (their dict fields, such as
``model.config`` or ``metrics``, are plain dicts and are copied on the way in and out).
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, TypeVar

from edgeblood.errors import EdgebloodError
from edgeblood.framing import Framing, stored_or_dataset_framing

SCHEMA = "edgeblood.run/1"
#: ``dataset.source`` of runs trained on an image folder (BloodMNIST runs: "full" or "sample").
FOLDER_SOURCE = "folder"

S = TypeVar("S", bound="_Section")


# ----------------------------------------------------------------------------------------- kinds
@dataclass(frozen=True)
class _Kind:
    """How one key is checked and stored: ``what`` names it in the error line."""

    what: str
    accepts: Callable[[Any], bool]
    load: Callable[[Any], Any] = copy.deepcopy  # JSON value -> stored value
    dump: Callable[[Any], Any] = copy.deepcopy  # stored value -> JSON value


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _list_of(test: Callable[[Any], bool], what: str) -> _Kind:
    return _Kind(what, lambda v: isinstance(v, list) and all(test(x) for x in v), tuple, list)


INT = _Kind("a whole number", _is_int)
NUMBER = _Kind("a number", _is_number)
TEXT = _Kind("a string", lambda v: isinstance(v, str))
MAPPING = _Kind("a mapping (JSON object)", lambda v: isinstance(v, dict))
TEXTS = _list_of(lambda v: isinstance(v, str), "a list of strings")
NUMBERS = _list_of(_is_number, "a list of numbers")
INTS = _list_of(_is_int, "a list of whole numbers")


def _spec(kind: _Kind | type | tuple, *, key: str | None = None, required: bool = False, default: Any = None,
          factory: Callable[[], Any] | None = None, omit_none: bool = False) -> Any:
    """A typed key of a section: its JSON ``key`` (default: the field's name), kind, and whether it must be there.

    ``kind`` is a ``_Kind`` or a ``_Section`` subclass (a nested section), or a 1-tuple holding one (a list of them).
    ``omit_none``: None means "absent" for this key, so setting it to None removes the key.
    """
    meta = {"kind": kind, "key": key, "required": required, "omit_none": omit_none}
    if required:
        return field(metadata=meta)
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _extra() -> Any:
    return field(default_factory=dict, metadata={"extra": True})


def _order() -> Any:
    # the keys (in order) the section was read from; None for a section made in code
    return field(default=None, compare=False, repr=False)


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _bad(where: str, path: str, what: str, value: Any) -> EdgebloodError:
    return EdgebloodError(f"{where}: run metadata '{path}' must be {what}, not {_show(value)}; the run was not written by edgeblood "
                          "or was changed by hand: restore its run.json/checkpoint.pt from where it was trained, or retrain it")


def _default_of(f) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


class _Section:
    """from_dict / to_dict for a frozen dataclass whose fields carry ``_spec`` metadata."""

    extra: dict[str, Any]
    _keys: tuple[str, ...] | None

    @classmethod
    def _typed(cls):
        return [(f, f.metadata["key"] or f.name) for f in fields(cls) if "kind" in f.metadata]

    @classmethod
    def from_dict(cls: type[S], d: Any, *, where: str = "run metadata", path: str = "") -> S:
        if not isinstance(d, Mapping):
            raise _bad(where, path or "(top level)", "a mapping (JSON object)", d)
        values: dict[str, Any] = {}
        typed = cls._typed()
        for f, key in typed:
            full = f"{path}.{key}" if path else key
            if key not in d:
                if f.metadata["required"]:
                    raise EdgebloodError(f"{where}: run metadata lacks '{full}', so the model cannot be rebuilt; "
                                         "use a run written by `edgeblood train`, or retrain it")
                continue
            values[f.name] = _load(f.metadata["kind"], d[key], f.metadata["required"], where, full)
        known = {key for _, key in typed}
        extra = {k: copy.deepcopy(v) for k, v in d.items() if k not in known}
        section = cls(**values, extra=extra, _keys=tuple(d))
        section._check(where, path)
        return section

    def _check(self, where: str, path: str) -> None:
        """Rules across keys (a section overrides it)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f, key in self._typed():
            value = getattr(self, f.name)
            if self._keys is None or (value is None and f.metadata["omit_none"]):
                keep = value is not None
            else:
                keep = key in self._keys or value != _default_of(f)
            if keep:
                out[key] = _dump(f.metadata["kind"], value)
        out.update(copy.deepcopy(self.extra))
        if self._keys is None:
            return out
        first = [k for k in self._keys if k in out]
        return {k: out[k] for k in first + [k for k in out if k not in self._keys]}


def _load(kind: Any, value: Any, required: bool, where: str, path: str) -> Any:
    if value is None and not required:
        return None
    if isinstance(kind, tuple):  # a list of sections
        if not isinstance(value, list):
            raise _bad(where, path, "a list", value)
        return tuple(kind[0].from_dict(v, where=where, path=f"{path}[{i}]") for i, v in enumerate(value))
    if isinstance(kind, type):
        return kind.from_dict(value, where=where, path=path)
    if not kind.accepts(value):
        raise _bad(where, path, kind.what, value)
    try:
        return kind.load(value)
    except EdgebloodError as exc:  # a nested record's own check (e.g. Framing's)
        raise EdgebloodError(f"{where}: run metadata '{path}' is invalid: {exc}") from None


def _dump(kind: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(kind, tuple):
        return [v.to_dict() for v in value]
    if isinstance(kind, type):
        return value.to_dict()
    return kind.dump(value)


# --------------------------------------------------------------------------------------- sections
@dataclass(frozen=True, kw_only=True)
class ModelInfo(_Section):
    """The network: its registry name, the config ``models.create`` rebuilds it from, its size."""

    name: str = _spec(TEXT, required=True)
    config: dict[str, Any] = _spec(MAPPING, required=True)  # create(config["name"], **rest)
    params: int | None = _spec(INT)
    macs: int | None = _spec(INT)
    structure: dict[str, Any] | None = _spec(MAPPING, omit_none=True)  # channel widths of a pruned run (edgeblood.models.structure)
    extra: dict[str, Any] = _extra()
    _keys: tuple[str, ...] | None = _order()

    @property
    def options(self) -> dict[str, Any]:
        """The config without what every model takes (name, classes, input size): the family's own options (--model-opt)."""
        return {k: v for k, v in self.config.items() if k not in ("name", "num_classes", "in_size")}

    def _check(self, where: str, path: str) -> None:
        if not isinstance(self.config.get("name"), str):
            raise _bad(where, f"{path}.config.name", "the registry name of the model (a string)", self.config.get("name"))


def _load_framing(value: dict) -> Framing | None:
    return Framing.from_dict(value) if value else None  # {} = not recorded, as edgeblood.framing reads it


FRAMING = _Kind("a framing (JSON object)", lambda v: isinstance(v, dict), _load_framing, lambda f: f.to_dict())


@dataclass(frozen=True, kw_only=True)
class InputContract(_Section):
    """What the network takes: raw RGB pixels 0-255 of a ``size`` px square framed as ``framing``, NCHW float32;
    ``mean``/``std`` (of the train split, on 0-1 pixels) are baked into every exported graph."""

    size: int = _spec(INT, required=True)
    channels: int = _spec(INT, default=3)
    channel_order: str = _spec(TEXT, default="RGB")
    layout: str = _spec(TEXT, default="NCHW")
    dtype: str = _spec(TEXT, default="float32")
    value_range: tuple[float, ...] = _spec(NUMBERS, key="range", default=(0, 255))
    mean: tuple[float, ...] = _spec(NUMBERS, required=True)
    std: tuple[float, ...] = _spec(NUMBERS, required=True)
    normalisation: str | None = _spec(TEXT)
    # How a training image was cut from its capture. Runs made before it was recorded get BloodMNIST's
    # (RunMetadata derives it from the dataset) with framing_recorded False, and run.json stays without it;
    # set framing_recorded=True with a new framing to record one.
    framing: Framing | None = _spec(FRAMING)
    framing_recorded: bool = True
    extra: dict[str, Any] = _extra()
    _keys: tuple[str, ...] | None = _order()
    _framing_stored: Any = field(default=None, compare=False, repr=False)  # as the file had it: written back unchanged

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "run metadata", path: str = "") -> InputContract:
        section = super().from_dict(d, where=where, path=path)
        return replace(section, _framing_stored=copy.deepcopy(d.get("framing")))

    def _check(self, where: str, path: str) -> None:
        for name in ("mean", "std"):
            if len(getattr(self, name)) != self.channels:
                raise _bad(where, f"{path}.{name}", f"{self.channels} numbers (one per channel)", list(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        stored, framing = self._framing_stored, self.framing
        if not self.framing_recorded:  # derived, not read: write back only what the file had
            if "framing" in (self._keys or ()):
                out["framing"] = copy.deepcopy(stored)
            else:
                out.pop("framing", None)
        elif isinstance(stored, dict) and stored and Framing.from_dict(stored) == framing and stored.get("source", "") == framing.source:
            out["framing"] = copy.deepcopy(stored)  # an older wording of its description stays as it was
        return out


@dataclass(frozen=True, kw_only=True)
class SplitSpec(_Section):
    """How a folder run's files were split: the folder's own train/val/test, or stratified by edgeblood."""

    kind: str | None = _spec(TEXT)  # "given" | "stratified"
    ratios: tuple[float, ...] | None = _spec(NUMBERS)
    seed: int | None = _spec(INT)
    extra: dict[str, Any] = _extra()
    _keys: tuple[str, ...] | None = _order()


@dataclass(frozen=True, kw_only=True)
class DatasetInfo(_Section):
    """The data a run was trained on. BloodMNIST runs and image-folder runs record different keys: the
    ones edgeblood reads back are typed, the rest (folder statistics, skipped files, ...) stay in ``extra``."""

    name: str | None = _spec(TEXT)
    kind: str | None = _spec(TEXT)  # "image-folder" for folder runs
    source: str | None = _spec(TEXT)  # "full" | "sample" (BloodMNIST) | FOLDER_SOURCE
    size: int | None = _spec(INT)
    variant: str | None = _spec(TEXT)
    file: str | None = _spec(TEXT)
    md5: str | None = _spec(TEXT)
    layout: str | None = _spec(TEXT)
    files: int | None = _spec(INT)
    content_sha256: str | None = _spec(TEXT)
    split: SplitSpec | None = _spec(SplitSpec)  # folder runs
    split_sizes: dict[str, int] | None = _spec(MAPPING)
    train_class_counts: tuple[int, ...] | None = _spec(INTS)
    notes: tuple[str, ...] | None = _spec(TEXTS)
    skipped_files: int | None = _spec(INT)  # folder runs: unreadable files left out
    duplicates_across_splits: int | None = _spec(INT)  # folder runs: the same bytes in two splits (leakage)
    extra: dict[str, Any] = _extra()
    _keys: tuple[str, ...] | None = _order()

    @property
    def is_folder(self) -> bool:
        return self.source == FOLDER_SOURCE


@dataclass(frozen=True, kw_only=True)
class TeacherInfo(_Section):
    """The run a student was distilled from (``train --teacher``)."""

    run: str | None = _spec(TEXT)
    weights_sha256: str | None = _spec(TEXT)
    model: str | None = _spec(TEXT)
    in_size: int | None = _spec(INT)
    params: int | None = _spec(INT)
    test_accuracy: float | None = _spec(NUMBER)
    train_accuracy_tta: float | None = _spec(NUMBER)
    views: int | None = _spec(INT)
    extra: dict[str, Any] = _extra()
    _keys: tuple[str, ...] | None = _order()


@dataclass(frozen=True, kw_only=True)
class ParentInfo(_Section):
    """The run a fine-tune started from (``train --init``; edgeblood.training.init_from.ParentInit)."""

    run: str | None = _spec(TEXT)
    weights_sha256: str | None = _spec(TEXT)
    model: str | None = _spec(TEXT)
    in_size: int | None = _spec(INT)
    classes: tuple[str, ...] | None = _spec(TEXTS)
    loaded: str | None = _spec(TEXT)  # "all" | "backbone"
    head: str | None = _spec(TEXT)
    copied_head_classes: tuple[str, ...] | None = _spec(TEXTS)
    test_accuracy: float | None = _spec(NUMBER)
    extra: dict[str, Any] = _extra()
    _keys: tuple[str, ...] | None = _order()


@dataclass(frozen=True, kw_only=True)
class TrainingInfo(_Section):
    """How the weights were made, in the order the trainer records it (start, per epoch, end)."""

    command: str | None = _spec(TEXT)
    recipe: str | None = _spec(TEXT)
    config: dict[str, Any] | None = _spec(MAPPING)  # TrainConfig.to_dict()
    seed: int | None = _spec(INT)
    device: str | None = _spec(TEXT)
    precision: str | None = _spec(TEXT)
    cpu: dict[str, Any] | None = _spec(MAPPING)  # edgeblood.cpu.cpu_info() of the machine that trained
    started: str | None = _spec(TEXT)
    teacher: TeacherInfo | None = _spec(TeacherInfo)
    parent: ParentInfo | None = _spec(ParentInfo)
    pretrain_seconds: float | None = _spec(NUMBER)
    resumed_with: str | None = _spec(TEXT)
    epochs_run: int | None = _spec(INT)
    best_epoch: int | None = _spec(INT)
    best_val_accuracy: float | None = _spec(NUMBER)
    kept_epoch: int | None = _spec(INT)  # the epoch whose weights checkpoint.pt holds (best_epoch unless --keep last or --swa)
    kept_val_accuracy: float | None = _spec(NUMBER)
    wall_time_s: float | None = _spec(NUMBER)
    status: str | None = _spec(TEXT)  # "running" | "complete" | "interrupted"
    finished: str | None = _spec(TEXT)
    extra: dict[str, Any] = _extra()
    _keys: tuple[str, ...] | None = _order()


@dataclass(frozen=True, kw_only=True)
class ReviewThreshold(_Section):
    """One row of the val review table: flag images below ``threshold`` and ``review_rate`` of them go to a person."""

    review_rate: float = _spec(NUMBER, required=True)
    threshold: float = _spec(NUMBER, required=True)
    flagged: float | None = _spec(NUMBER)
    accepted_accuracy: float | None = _spec(NUMBER)
    extra: dict[str, Any] = _extra()
    _keys: tuple[str, ...] | None = _order()


@dataclass(frozen=True, kw_only=True)
class CalibrationInfo(_Section):
    """Temperature scaling fitted on val and folded into the head (edgeblood.evaluation.temperature)."""

    method: str | None = _spec(TEXT)
    temperature: float | None = _spec(NUMBER)  # relative to the trained network: 1 = as trained
    fitted_on: str | None = _spec(TEXT)
    images: int | None = _spec(INT)
    head: str | None = _spec(TEXT)
    val_ece_before: float | None = _spec(NUMBER)
    val_ece_after: float | None = _spec(NUMBER)
    val_nll_before: float | None = _spec(NUMBER)
    val_nll_after: float | None = _spec(NUMBER)
    review_thresholds: tuple[ReviewThreshold, ...] = _spec((ReviewThreshold,), default=())
    extra: dict[str, Any] = _extra()
    _keys: tuple[str, ...] | None = _order()


@dataclass(frozen=True, kw_only=True)
class RunMetadata(_Section):
    """run.json: everything downstream (evaluate, export, compress, bench, predict) needs to use the weights."""

    schema: str | None = _spec(TEXT)
    created: str | None = _spec(TEXT)
    model: ModelInfo = _spec(ModelInfo, required=True)
    classes: tuple[str, ...] = _spec(TEXTS, required=True)
    class_names_full: tuple[str, ...] | None = _spec(TEXTS)
    input: InputContract = _spec(InputContract, required=True)
    dataset: DatasetInfo = _spec(DatasetInfo, required=True)
    training: TrainingInfo = _spec(TrainingInfo, factory=TrainingInfo)
    versions: dict[str, str] | None = _spec(MAPPING)
    edgeblood_version: str | None = _spec(TEXT)
    git_commit: str | None = _spec(TEXT)
    metrics: dict[str, dict[str, Any]] = _spec(MAPPING, factory=dict)  # headline figures per split (metrics.json has the rest)
    license: str | None = _spec(TEXT)
    credit: str | None = _spec(TEXT)
    calibration: CalibrationInfo | None = _spec(CalibrationInfo)
    compression: dict[str, Any] | None = _spec(MAPPING)  # a pruned run: method, ratio, parent, fine-tune record
    domain: dict[str, Any] | None = _spec(MAPPING)  # the domain check's thresholds and image statistics (edgeblood.domain)
    extra: dict[str, Any] = _extra()
    _keys: tuple[str, ...] | None = _order()

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "run metadata", path: str = "") -> RunMetadata:
        meta = super().from_dict(d, where=where, path=path)
        if meta.input.framing is not None:
            return meta
        # runs made before the framing was recorded: every one of them is a BloodMNIST run
        framing, _ = stored_or_dataset_framing(None, meta.dataset.size or meta.input.size, meta.dataset.variant)
        return replace(meta, input=replace(meta.input, framing=framing, framing_recorded=False))

    def _check(self, where: str, path: str) -> None:
        if not self.classes:
            raise _bad(where, "classes", "a non-empty list of class names", [])
        if self.class_names_full is not None and len(self.class_names_full) != len(self.classes):
            raise _bad(where, "class_names_full", f"{len(self.classes)} names (one per class)", list(self.class_names_full))
        if not all(isinstance(v, dict) for v in self.metrics.values()):
            raise _bad(where, "metrics", "a mapping of split -> figures", self.metrics)

    # ------------------------------------------------------------------------------- read helpers
    @property
    def framing(self) -> Framing:
        return self.input.framing

    @property
    def class_names(self) -> list[str]:
        """The long class names (BloodMNIST's "immature granulocytes(myelocytes, ...)"), else the short ones."""
        return list(self.class_names_full or self.classes)

    @property
    def temperature(self) -> float:
        """The temperature folded into the head (1.0 when the run was never calibrated)."""
        t = self.calibration.temperature if self.calibration else None
        return 1.0 if t is None else float(t)

    @property
    def review_thresholds(self) -> tuple[ReviewThreshold, ...]:
        return self.calibration.review_thresholds if self.calibration else ()

    def metric(self, split: str, name: str) -> Any:
        """A headline figure of a split (``metric("test", "accuracy")``), None when not evaluated."""
        return (self.metrics.get(split) or {}).get(name)


def as_run_metadata(metadata: RunMetadata | Mapping[str, Any], where: str = "run metadata") -> RunMetadata:
    """The typed metadata of either form (callers still holding run.json as a dict pass it through here)."""
    return metadata if isinstance(metadata, RunMetadata) else RunMetadata.from_dict(metadata, where=where)
