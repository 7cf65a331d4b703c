"""Rebuilding a structurally pruned network from JSON metadata (no pickled modules).

Channel pruning changes layer widths, so ``create(name, **config)`` alone builds the unpruned shape.
A pruned run therefore stores, next to the model config, the width attributes that differ from the
freshly built model (run.json's ``model.structure``, ``RunMetadata.model.structure``); ``apply_structure`` sets them back and
resizes parameters/buffers to the checkpoint's shapes before ``load_state_dict``. Checkpoints stay
``torch.load(weights_only=True)``-safe and the model code stays the registry's.

It is part of the model layer, not of ``edgeblood.compression``: opening any run
(``edgeblood.runs.build_model``) applies the stored structure, while only compress describes it.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from edgeblood.errors import EdgebloodError

# The attributes torch-pruning rewrites when it removes channels of the standard layers.
WIDTH_ATTRS = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
               "normalized_shape", "embed_dim", "num_heads", "hidden_size")


def describe_structure(pruned: nn.Module, reference: nn.Module) -> dict[str, dict]:
    """Width attributes of ``pruned`` that differ from the unpruned ``reference`` ({module name: {attr: value}})."""
    ref_modules = dict(reference.named_modules())
    out: dict[str, dict] = {}
    for name, module in pruned.named_modules():
        ref = ref_modules.get(name)
        if ref is None or type(ref) is not type(module):
            raise EdgebloodError(f"pruning changed the module tree at '{name}'; only width changes can be stored - use another pruning method")
        diff = {}
        for attr in WIDTH_ATTRS:
            if hasattr(module, attr) and getattr(module, attr) != getattr(ref, attr, None):
                value = getattr(module, attr)
                diff[attr] = list(value) if isinstance(value, tuple) else value
        if diff:
            out[name] = diff
    return out


def apply_structure(model: nn.Module, structure: dict[str, dict], state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Give a freshly built ``model`` the pruned widths of ``structure`` and the shapes of ``state_dict``."""
    modules = dict(model.named_modules())
    for name, attrs in structure.items():
        if name not in modules:
            raise EdgebloodError(f"the pruned structure names a layer '{name}' the model does not have; the run metadata does not match this edgeblood version")
        for attr, value in attrs.items():
            setattr(modules[name], attr, tuple(value) if isinstance(value, list) else value)
    for name, module in modules.items():
        prefix = f"{name}." if name else ""
        for pname, param in list(module.named_parameters(recurse=False)):
            saved = state_dict.get(prefix + pname)
            if saved is not None and saved.shape != param.shape:
                setattr(module, pname, nn.Parameter(torch.empty(saved.shape, dtype=param.dtype), requires_grad=param.requires_grad))
        for bname, buf in list(module.named_buffers(recurse=False)):
            saved = state_dict.get(prefix + bname)
            if buf is not None and saved is not None and saved.shape != buf.shape:
                module.register_buffer(bname, torch.empty(saved.shape, dtype=buf.dtype), persistent=bname not in module._non_persistent_buffers_set)
    return model
