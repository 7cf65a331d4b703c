"""AutoClassifier: a convolutional autoencoder (latent 64 ch) whose frozen encoder feeds a small CNN.

The attention study's AutoClassifier is trained in two phases, and this module only provides the
pieces; the training loop drives them:

Phase 1 - reconstruction. Train ``model.autoencoder`` (an ``nn.Module`` over the encoder and the
decoder only, ``autoencoder(x) == model.reconstruct(x)``) with ``model.reconstruction_loss(x)``
(MSE against the *normalised* input batch), e.g.::

    ae = model.autoencoder                      # same parameters as the model, not a copy
    opt = torch.optim.AdamW(ae.parameters(), 1e-3)
    loss = model.reconstruction_loss(x); loss.backward(); opt.step()

Wrap ``model.autoencoder`` (not the whole model) in DDP for phase 1: the classifier head takes no
part in reconstruction, so DDP would otherwise complain about parameters without gradients.

Phase 2 - classification. ``model.freeze_encoder()`` sets ``requires_grad=False`` on the encoder
*and* the decoder (the decoder is unused from here on) and keeps the encoder's BatchNorm layers in
eval mode through later ``model.train()`` calls; then train the model as any classifier on
``model(x)`` logits, with an optimiser over ``model.classifier_parameters()`` (or over the
parameters that still require grad). ``model.unfreeze_encoder()`` undoes it (fine-tuning).

Layout: ``model.encoder`` (3 -> 32 -> 64 -> latent 64 ch, conv-BN-ReLU, stride-2 steps while the
map stays >= 7 px: 28 -> 7, 64 -> 8), ``model.decoder`` (mirror, nearest upsampling + conv,
linear 3-ch output resized to the input), ``model.features`` = encoder + the classifier's conv
layers (two conv-BN-ReLU 128 ch, the last one is the Grad-CAM layer), ``model.pool`` (GAP) and
``model.head`` (dropout, linear). The frozen flag is not part of the config: a checkpoint restores
weights, and a restored model is simply trainable again. ``forward`` never runs the decoder, so
exported graphs contain only the classifier.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeblood.models.blocks import FeaturesPoolHead, conv_bn_act, downsample_plan, dropout_linear, global_pool
from edgeblood.models.registry import register_model


class _AutoEncoderView(nn.Module):
    """Encoder + decoder as one module (for phase-1 optimisers and DDP); shares the model's layers."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.decoder(self.encoder(x))
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out


class AutoClassifier(FeaturesPoolHead):
    def __init__(
        self,
        num_classes: int = 8,
        in_size: int = 28,
        latent_channels: int = 64,
        widths: tuple[int, ...] | list[int] = (32, 64),
        head_width: int = 128,
        dropout: float = 0.3,
    ):
        super().__init__()
        chans = [3, *widths, latent_channels]
        n_down = downsample_plan(in_size, len(chans) - 1, min_final=7)
        strides = [1] * (len(chans) - 1 - n_down) + [2] * n_down
        encoder = nn.Sequential(*[conv_bn_act(chans[i], chans[i + 1], 3, strides[i]) for i in range(len(chans) - 1)])
        dec: list[nn.Module] = []
        for i in reversed(range(1, len(chans) - 1)):
            if strides[i] == 2:
                dec.append(nn.Upsample(scale_factor=2, mode="nearest"))
            dec.append(conv_bn_act(chans[i + 1], chans[i], 3))
        if strides[0] == 2:
            dec.append(nn.Upsample(scale_factor=2, mode="nearest"))
        dec.append(nn.Conv2d(chans[1], 3, 3, padding=1))
        self.decoder = nn.Sequential(*dec)
        neck = nn.Sequential(conv_bn_act(latent_channels, head_width, 3), conv_bn_act(head_width, head_width, 3))
        self.features = nn.Sequential()
        self.features.add_module("encoder", encoder)
        self.features.add_module("neck", neck)
        self.pool = global_pool()
        self.head = dropout_linear(head_width, num_classes, dropout)
        self.encoder_frozen = False
        # Not registered as a submodule (it would list the encoder twice in the state dict).
        object.__setattr__(self, "_autoencoder", _AutoEncoderView(encoder, self.decoder))

    @property
    def encoder(self) -> nn.Module:
        return self.features.encoder

    @property
    def autoencoder(self) -> nn.Module:
        return self._autoencoder

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The autoencoder's reconstruction of a (normalised) batch, same shape as ``x``."""
        return self._autoencoder(x)

    def reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.reconstruct(x), x)

    def freeze_encoder(self) -> None:
        """Phase 2: stop training the encoder (and the decoder); keep encoder BatchNorm statistics fixed."""
        for p in [*self.encoder.parameters(), *self.decoder.parameters()]:
            p.requires_grad_(False)
        self.encoder_frozen = True
        self.encoder.eval()
        self.decoder.eval()

    def unfreeze_encoder(self) -> None:
        for p in [*self.encoder.parameters(), *self.decoder.parameters()]:
            p.requires_grad_(True)
        self.encoder_frozen = False
        self.train(self.training)

    def classifier_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters trained in phase 2: the conv neck and the head."""
        yield from self.features.neck.parameters()
        yield from self.head.parameters()

    def train(self, mode: bool = True) -> AutoClassifier:
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
            self.decoder.eval()
        return self


@register_model(
    "autoclassifier",
    family="autoencoder",
    description="conv autoencoder (latent 64 ch); frozen encoder + small CNN head (two-phase training)",
    reference="attention study: AutoClassifier at 64 px",
    published={"in_size": 64},
)
def autoclassifier(num_classes: int = 8, in_size: int = 28, **cfg) -> nn.Module:
    return AutoClassifier(num_classes=num_classes, in_size=in_size, **cfg)
