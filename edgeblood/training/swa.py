"""Stochastic weight averaging (``--swa N``): the last N epochs' weights averaged, with BatchNorm statistics recomputed.

Why: an equal average of the weights visited along a constant-learning-rate tail lands in a flatter region than any
one of them (Izmailov et al., 2018), a lever issue #28 asks to be measured rather than assumed. The run's own schedule
is laid over the first ``epochs - N`` epochs; for the last N the learning rate anneals within one epoch to ``swa_lr``
and stays there (torch's SWALR), the weights are averaged at the end of each of those epochs (torch's AveragedModel),
and the average's BatchNorm statistics are measured again on the training batches (``measure_batchnorm``), because
averaged weights do not match any model's running statistics. From the first averaged epoch on, the average is what
is validated and saved, and the final average is the run's model (``TrainConfig.keeps_last``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.optim.swa_utils import SWALR, AveragedModel

from edgeblood.data.batches import BatchStream
from edgeblood.training.loop import Feed, Update


class WeightAveraging:
    """The averaged model and the constant-rate schedule of the last ``epochs`` epochs of a run of ``total`` epochs."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, epochs: int, total: int, lr: float,
                 steps_per_epoch: int) -> None:
        self.average = AveragedModel(model)
        self.first_epoch = total - epochs + 1
        self.optimizer, self.lr, self.steps_per_epoch = optimizer, lr, steps_per_epoch
        self.scheduler: SWALR | None = None  # made when the averaged epochs begin: making it sets the optimizer's rate

    def averaging(self, epoch: int) -> bool:
        """True for the epochs whose weights join the average."""
        return epoch >= self.first_epoch

    def begin_epoch(self, epoch: int, update: Update) -> None:
        """From the first averaged epoch on, the optimizer steps follow the constant SWA rate, not the run's schedule."""
        if self.averaging(epoch):
            update.scheduler = self._swa_scheduler()

    def end_epoch(self, model: nn.Module, stream: BatchStream, feed: Feed) -> nn.Module:
        """Add this epoch's weights to the average and measure its BatchNorm statistics; returns the model to validate."""
        self.average.update_parameters(model)
        with feed.autocast:
            measure_batchnorm(self.average.module, (feed.images(x) for x, _ in stream))
        return self.average.module

    def _swa_scheduler(self) -> SWALR:
        if self.scheduler is None:
            self.scheduler = SWALR(self.optimizer, swa_lr=self.lr, anneal_epochs=self.steps_per_epoch, anneal_strategy="cos")
        return self.scheduler

    def state_dict(self) -> dict:
        state = {"average": self.average.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """A resumed run's average and, once averaging had begun, its SWA schedule where it stood."""
        self.average.load_state_dict(state["average"])
        if "scheduler" in state:  # making SWALR keeps the optimizer's restored rate; its counters then say the anneal is done
            self._swa_scheduler().load_state_dict(state["scheduler"])


@torch.no_grad()
def measure_batchnorm(model: nn.Module, batches) -> None:
    """The running statistics of ``model``'s BatchNorm layers, measured again as one exact average over ``batches``.

    torch's ``update_bn`` does the same for every BatchNorm layer, frozen ones included: the autoclassifier keeps its
    pre-trained encoder in eval mode (its ``train()`` says so), and resetting that encoder's statistics would leave
    them at mean 0, variance 1. Only the layers that ``model.train()`` leaves training are measured here.
    """
    was_training = model.training
    model.train()
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    momenta = {m: m.momentum for m in layers}
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches, not an exponential one
    if layers:
        for x in batches:
            model(x)
    for m, momentum in momenta.items():
        m.momentum = momentum
    model.train(was_training)
