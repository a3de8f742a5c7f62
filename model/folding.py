"""Inference form of a trained model: batch norm folded into the convolutions.

At inference BN is a per-channel affine map, so ``bn(conv(x)) == conv'(x)`` with
``w' = w * g / sqrt(var + eps)`` and ``b' = beta - mean * g / sqrt(var + eps)``.
Dropout is the identity. The result is the model's layer specifications
(:mod:`model.layers`) with plain weights, which both the offline folded forward and the
streaming lifter read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layers import LayerKind, LayerSpec
from .temporal import _TemporalBase


@dataclass
class FoldedConv:
    """One convolution with BN folded in: ``weight`` (C_out, C_in, W), ``bias`` (C_out,)."""

    spec: LayerSpec
    weight: torch.Tensor
    bias: torch.Tensor

    @property
    def width(self) -> int:
        return self.spec.width

    @property
    def dilation(self) -> int:
        return self.spec.dilation

    @property
    def relu(self) -> bool:
        return self.spec.relu

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "FoldedConv":
        return FoldedConv(self.spec, self.weight.to(device, dtype), self.bias.to(device, dtype))


@dataclass
class FoldedModel:
    """The folded layers, in the order of :func:`model.layers.layer_specs`."""

    layers: list[FoldedConv]
    config: ModelConfig

    @property
    def num_joints_out(self) -> int:
        return self.config.num_joints_out

    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field

    @property
    def causal(self) -> bool:
        return self.config.causal

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "FoldedModel":
        return FoldedModel([layer.to(device, dtype) for layer in self.layers], self.config)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Offline whole-sequence forward: (B, T, J, F) -> (B, T - RF + 1, J_out, 3)."""
        batch, frames = x.shape[:2]
        h = x.reshape(batch, frames, -1).transpose(1, 2).to(self.layers[0].weight.dtype)
        res = h
        for layer in self.layers:
            spec = layer.spec
            if spec.kind is LayerKind.BLOCK_CONV:
                res = h[:, :, spec.pad_left: h.shape[2] - spec.span + spec.pad_left]
            h = _conv(layer, h)
            if spec.kind is LayerKind.BLOCK_1X1:
                h = res + h
        return h.transpose(1, 2).reshape(batch, -1, self.num_joints_out, 3)

    __call__ = forward


def _conv(layer: FoldedConv, x: torch.Tensor) -> torch.Tensor:
    y = F.conv1d(x, layer.weight, layer.bias, dilation=layer.dilation)
    return torch.relu_(y) if layer.relu else y


def _fold(spec: LayerSpec, conv: nn.Conv1d, bn: nn.BatchNorm1d | None) -> FoldedConv:
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
    if bn is not None:
        scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = w * scale[:, None, None]
        b = (b - bn.running_mean.double()) * scale + bn.bias.detach().double()
    return FoldedConv(spec, w.float(), b.float())


def fold_model(model: _TemporalBase) -> FoldedModel:
    """Fold a (dilated or strided) temporal model's batch norms into its convolutions."""
    return FoldedModel([_fold(spec, conv, bn) for spec, conv, bn in model.layers()], model.config)
