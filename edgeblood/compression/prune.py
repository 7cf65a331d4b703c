"""Pruning: structured channel pruning that makes the network smaller, and unstructured for comparison.

* Structured (torch-pruning's dependency graph + ``MetaPruner``): whole channels are removed from
  every coupled layer (conv -> BN -> SE gate -> next conv -> flattened head), so the result is an
  ordinary dense network with fewer params and MACs - the variant that can actually run faster.
  ``--prune 0.5 --prune-by macs`` searches (bisection) for the per-layer channel ratio whose pruned
  network has at most half the MACs of the original.
* Unstructured (``torch.nn.utils.prune``, global L1 magnitude): individual weights are zeroed. The
  tensors stay dense, so file size and latency do not change on these runtimes; what changes is how
  well the file compresses (gzip), which is reported as such.
"""

from __future__ import annotations

import copy
import gzip
import io
from dataclasses import dataclass

import torch
import torch.nn as nn

from edgeblood.errors import EdgebloodError, import_extra
from edgeblood.models import count_macs, count_params

PRUNE_BY = ("macs", "params")
IMPORTANCES = ("magnitude", "bn-scale", "lamp")
MAX_CHANNEL_RATIO = 0.8  # per-layer channel ratio cap: beyond it torch-pruning stops being monotone on narrow layers (and accuracy is gone anyway)
BISECTION_STEPS = 8  # resolution 0.8 / 2**8 = 0.3 % of a layer: under one channel up to ~300-channel layers


@dataclass
class StructuredResult:
    model: nn.Module
    channel_ratio: float  # fraction of channels removed in each prunable layer
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int

    def summary(self) -> dict:
        return {
            "channel_ratio": round(self.channel_ratio, 4),
            "params_before": self.params_before,
            "params_after": self.params_after,
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "params_kept": round(self.params_after / self.params_before, 4),
            "macs_kept": round(self.macs_after / self.macs_before, 4),
        }


def check_ratio(ratio: float, option: str = "--prune") -> float:
    if not 0.0 < float(ratio) < 1.0:
        raise EdgebloodError(f"{option} must be a fraction strictly between 0 and 1 (got {ratio}); e.g. {option} 0.5 removes half")
    return float(ratio)


def structured_prune(
    model: nn.Module,
    in_size: int,
    ratio: float,
    by: str = "macs",
    importance: str = "magnitude",
    round_to: int | None = None,
) -> StructuredResult:
    """Remove channels until the model keeps at most ``1 - ratio`` of its MACs (or params); ``model`` is not modified."""
    ratio = check_ratio(ratio)
    if by not in PRUNE_BY:
        raise EdgebloodError(f"--prune-by must be one of {', '.join(PRUNE_BY)} (got '{by}')")
    if importance not in IMPORTANCES:
        raise EdgebloodError(f"--importance must be one of {', '.join(IMPORTANCES)} (got '{importance}')")
    import_extra("torch_pruning", "torch-pruning", "prune")
    model = copy.deepcopy(model).cpu().eval()
    params0, macs0 = count_params(model), count_macs(model, in_size)
    budget = (1.0 - ratio) * (macs0 if by == "macs" else params0)

    def measure(m: nn.Module) -> int:
        return count_macs(m, in_size) if by == "macs" else count_params(m)

    best = _prune_at(model, in_size, MAX_CHANNEL_RATIO, importance, round_to)
    if measure(best) > budget:
        raise EdgebloodError(
            f"cannot remove {ratio:.0%} of the {by} of this model by channel pruning (at most "
            f"{1 - measure(best) / (macs0 if by == 'macs' else params0):.0%} is removable); ask for a smaller --prune"
        )
    lo, hi, best_r = 0.0, MAX_CHANNEL_RATIO, MAX_CHANNEL_RATIO
    for _ in range(BISECTION_STEPS):  # smallest channel ratio that meets the budget
        mid = (lo + hi) / 2
        candidate = _prune_at(model, in_size, mid, importance, round_to)
        if measure(candidate) <= budget:
            hi, best, best_r = mid, candidate, mid
        else:
            lo = mid
    return StructuredResult(best.eval(), best_r, params0, count_params(best), macs0, count_macs(best, in_size))


def _prune_at(model: nn.Module, in_size: int, channel_ratio: float, importance: str, round_to: int | None) -> nn.Module:
    """One-shot pruning of a copy of ``model`` at a uniform per-layer channel ratio."""
    import torch_pruning as tp

    m = copy.deepcopy(model)
    example = torch.zeros(1, 3, in_size, in_size)
    imp = {
        "magnitude": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "bn-scale": lambda: tp.importance.BNScaleImportance(),
        "lamp": lambda: tp.importance.LAMPImportance(p=2),
    }[importance]()
    try:
        pruner = tp.pruner.MetaPruner(m, example, importance=imp, pruning_ratio=channel_ratio,
                                      ignored_layers=[output_layer(m, example)], round_to=round_to)
        pruner.step()
        with torch.no_grad():
            out = m(torch.zeros(2, 3, in_size, in_size))
    except EdgebloodError:
        raise
    except Exception as exc:  # the dependency graph could not trace or prune this architecture
        name = getattr(model, "edgeblood_config", {}).get("name", type(model).__name__)
        raise EdgebloodError(
            f"torch-pruning cannot prune model '{name}' ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
            "use --unstructured instead, or another model"
        ) from None
    n_classes = getattr(model, "edgeblood_config", {}).get("num_classes")
    if out.ndim != 2 or (n_classes and out.shape[1] != n_classes):
        raise EdgebloodError(f"channel pruning broke the model's output (shape {tuple(out.shape)}); use --unstructured for this model")
    return m


def output_layer(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The last Linear/Conv executed in a forward pass: its outputs are the classes and must stay."""
    called: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: called.append(mod)) for m in model.modules()
             if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    if not called:
        raise EdgebloodError("the model has no Linear/Conv2d layer to prune; channel pruning does not apply")
    return called[-1]


# ----------------------------------------------------------------------------------- unstructured

def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def unstructured_prune(model: nn.Module, amount: float) -> nn.Module:
    """A copy of ``model`` with the smallest-|w| ``amount`` of all conv/linear weights masked (global L1).

    The masks stay attached (``torch.nn.utils.prune`` re-parametrisation) so that fine-tuning keeps
    the zeros; call ``make_permanent`` before saving.
    """
    import torch.nn.utils.prune as tprune

    amount = check_ratio(amount, "--unstructured")
    m = copy.deepcopy(model).cpu().eval()
    targets = prunable_weights(m)
    if not targets:
        raise EdgebloodError("the model has no Conv2d/Linear weights to prune; unstructured pruning does not apply")
    tprune.global_unstructured(targets, pruning_method=tprune.L1Unstructured, amount=amount)
    return m


def make_permanent(model: nn.Module) -> nn.Module:
    import torch.nn.utils.prune as tprune

    for module, name in prunable_weights(model):
        if tprune.is_pruned(module) and hasattr(module, name + "_orig"):
            tprune.remove(module, name)
    return model


def sparsity(model: nn.Module) -> dict:
    """Zero fraction of the prunable (conv/linear) weights and of all parameters."""
    weights = [getattr(m, n).detach() for m, n in prunable_weights(model)]
    w_total = sum(w.numel() for w in weights)
    w_zero = sum(int((w == 0).sum()) for w in weights)
    params = list(model.parameters())
    p_total = sum(p.numel() for p in params)
    p_zero = sum(int((p.detach() == 0).sum()) for p in params)
    return {"weight_sparsity": round(w_zero / max(w_total, 1), 4), "param_sparsity": round(p_zero / max(p_total, 1), 4),
            "zero_params": p_zero, "params": p_total}


def weights_bytes(model: nn.Module) -> tuple[int, int]:
    """(raw, gzip-9) bytes of the model's fp32 state dict as torch.save writes it."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    raw = buf.getvalue()
    return len(raw), len(gzip.compress(raw, compresslevel=9, mtime=0))
