"""Inference form of a trained model: batch norm folded into the convolutions.

At inference BN is a per-channel affine map, so ``bn(conv(x)) == conv'(x)`` with
``w' = w * g / sqrt(var + eps)`` and ``b' = beta - mean * g / sqrt(var + eps)``.
Dropout is the identity. The result is a plain list of layers that both the offline
folded forward and the streaming lifter read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .temporal import _TemporalBase


@dataclass
class FoldedConv:
    """One convolution with BN folded in.

    ``weight`` is (C_out, C_in, W); ``dilation`` the spacing of its taps in frames.
    ``residual_tap`` is the tap whose input is added to the *block* output (None for
    the expand conv). ``relu`` says whether ReLU follows.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    dilation: int
    relu: bool

    @property
    def width(self) -> int:
        return self.weight.shape[2]

    @property
    def history(self) -> int:
        """How many past inputs this layer must remember: (W - 1) * d."""
        return (self.width - 1) * self.dilation


@dataclass
class FoldedBlock:
    """A residual block: wide dilated conv, then 1x1 conv, plus the cropped input."""

    wide: FoldedConv
    pointwise: FoldedConv
    residual_tap: int  # index into the wide conv's W taps (W - 1 causal, W // 2 symmetric)


@dataclass
class FoldedModel:
    expand: FoldedConv
    blocks: list[FoldedBlock]
    shrink: FoldedConv
    num_joints_out: int
    receptive_field: int
    causal: bool

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "FoldedModel":
        def move(c: FoldedConv) -> FoldedConv:
            return FoldedConv(c.weight.to(device, dtype), c.bias.to(device, dtype), c.dilation, c.relu)

        return FoldedModel(
            move(self.expand),
            [FoldedBlock(move(b.wide), move(b.pointwise), b.residual_tap) for b in self.blocks],
            move(self.shrink), self.num_joints_out, self.receptive_field, self.causal,
        )

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Offline whole-sequence forward: (B, T, J, F) -> (B, T - RF + 1, J_out, 3)."""
        batch, frames = x.shape[:2]
        h = x.reshape(batch, frames, -1).transpose(1, 2).to(self.expand.weight.dtype)
        h = _conv(self.expand, h)
        for block in self.blocks:
            span = block.wide.history
            start = block.residual_tap * block.wide.dilation
            res = h[:, :, start: h.shape[2] - span + start]
            h = res + _conv(block.pointwise, _conv(block.wide, h))
        h = _conv(self.shrink, h)
        return h.transpose(1, 2).reshape(batch, -1, self.num_joints_out, 3)

    __call__ = forward


def _conv(layer: FoldedConv, x: torch.Tensor) -> torch.Tensor:
    y = F.conv1d(x, layer.weight, layer.bias, dilation=layer.dilation)
    return torch.relu_(y) if layer.relu else y


def _fold(conv: nn.Conv1d, bn: nn.BatchNorm1d | None, relu: bool) -> FoldedConv:
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if bn is not None:
        scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = w * scale[:, None, None]
        b = (b - bn.running_mean.double()) * scale + bn.bias.detach().double()
    return FoldedConv(w.float(), b.float(), conv.dilation[0], relu)


def fold_model(model: _TemporalBase) -> FoldedModel:
    """Fold a (dilated or strided) temporal model's batch norms into its convolutions."""
    cfg = model.config
    expand = _fold(model.expand_conv, model.expand_bn, relu=True)
    blocks = []
    for i, dilation in enumerate(model.block_dilations()):
        wide = _fold(model.layers_conv[2 * i], model.layers_bn[2 * i], relu=True)
        wide.dilation = dilation  # modules are stored plain; the dilated variant applies this
        pointwise = _fold(model.layers_conv[2 * i + 1], model.layers_bn[2 * i + 1], relu=True)
        width = wide.width
        blocks.append(FoldedBlock(wide, pointwise, width - 1 if cfg.causal else width // 2))
    shrink = _fold(model.shrink, None, relu=False)
    return FoldedModel(expand, blocks, shrink, cfg.num_joints_out, cfg.receptive_field, cfg.causal)
