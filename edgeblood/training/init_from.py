"""Starting a training from a trained run (``edgeblood train --init RUN``): fine-tuning on a lab's cells.

Same classes -> every weight carries over. Other classes or another class count -> the classifier head
(the last Linear layer with one output per class) is re-initialised, except that the rows of classes
the parent also has are copied, so a lab that drops or adds a class keeps what the parent knew about
the others. Any other shape that does not fit (another model, another width, an input size the
family cannot take) is refused: loading half a network silently is the failure this guards against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from edgeblood.data.labelled_images import normalise_class_name
from edgeblood.errors import EdgebloodError
from edgeblood.models.head import classifier_head


@dataclass
class ParentInit:
    """What ``--init`` did, as run.json's ``training.parent`` records it."""

    run: str
    weights_sha256: str
    model: str
    in_size: int
    classes: list[str]
    loaded: str  # "all" or "backbone"
    head: str
    copied_head_classes: list[str]
    test_accuracy: float | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def message(self) -> str:
        if self.loaded == "all":
            return f"all weights from {self.run} (same {len(self.classes)} classes)"
        copied = f"; rows copied for {', '.join(self.copied_head_classes)}" if self.copied_head_classes else ""
        return f"backbone from {self.run}; head '{self.head}' re-initialised for the new classes{copied}"


def open_parent(path: str | Path):
    from edgeblood.runs import open_run

    parent = open_run(path)
    if parent.meta.model.structure:
        raise EdgebloodError(f"{parent.dir} is a pruned run; fine-tune the run it was pruned from, then compress the result")
    return parent


def init_from_parent(model: nn.Module, parent, classes: list[str]) -> ParentInit:
    """Load ``parent``'s weights into ``model`` (built for ``classes``) in place; returns the record."""
    from edgeblood.evaluation.evaluate import weights_fingerprint

    source = parent.model.state_dict()
    head = classifier_head(model, len(classes))
    same_classes = [normalise_class_name(c) for c in classes] == [normalise_class_name(c) for c in parent.classes]
    target = model.state_dict()
    misfits = [k for k, v in source.items() if k in target and target[k].shape != v.shape and not (k.startswith(head + ".") and not same_classes)]
    missing = [k for k in target if k not in source]
    if misfits or missing:
        what = misfits[0] if misfits else missing[0]
        detail = (f"{what}: {tuple(source[what].shape)} in the parent, {tuple(target[what].shape)} here" if misfits else f"{what} is not in the parent")
        raise EdgebloodError(f"{parent.dir} ({parent.model_name}, {parent.in_size} px) does not fit this model ({detail}); fine-tune with the "
                             f"parent's model and input size (--model {parent.model_name} --size {parent.in_size}) or train from scratch")
    copied: list[str] = []
    if same_classes:
        model.load_state_dict(source)
    else:
        body = {k: v for k, v in source.items() if not k.startswith(head + ".")}
        model.load_state_dict({**target, **body})
        copied = _copy_head_rows(model, head, source, parent.classes, classes)
    return ParentInit(run=str(Path(parent.dir).resolve()), weights_sha256=weights_fingerprint(parent.model), model=parent.model_name,
                      in_size=parent.in_size, classes=parent.classes, loaded="all" if same_classes else "backbone", head=head,
                      copied_head_classes=copied, test_accuracy=parent.meta.metric("test", "accuracy"))


def _copy_head_rows(model: nn.Module, head: str, source: dict, parent_classes: list[str], classes: list[str]) -> list[str]:
    layer = model.get_submodule(head)
    index = {normalise_class_name(c): i for i, c in enumerate(parent_classes)}
    copied = []
    with torch.no_grad():
        for row, name in enumerate(classes):
            j = index.get(normalise_class_name(name))
            if j is None or source[f"{head}.weight"].shape[1] != layer.weight.shape[1]:
                continue
            layer.weight[row] = source[f"{head}.weight"][j]
            if layer.bias is not None and f"{head}.bias" in source:
                layer.bias[row] = source[f"{head}.bias"][j]
            copied.append(name)
    return copied


def set_backbone_frozen(model: nn.Module, head: str | None, frozen: bool) -> None:
    """Freeze (or release) every parameter outside the head; frozen norm layers also stop updating their statistics.
    ``head=None`` (nothing to freeze) is a no-op, so the training loop calls this every epoch unconditionally."""
    if head is None:
        return
    for name, p in model.named_parameters():
        if not name.startswith(head + "."):
            p.requires_grad_(not frozen)
    if frozen:
        for name, m in model.named_modules():
            if not name.startswith(head) and isinstance(m, nn.modules.batchnorm._NormBase):
                m.eval()
