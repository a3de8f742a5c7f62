"""The dilated temporal convolution lifter of Pavllo et al. (CVPR 2019) and its strided twin.

Both classes build the same modules with the same names, so they share one state_dict;
:meth:`TemporalModel.strided_twin` even shares the very same parameter tensors, so
training the twin trains the dilated model.

Shapes: input (B, T, J_in, F) normalised screen coordinates; output (B, T', J_out, 3)
in metres, root-relative, camera frame (x right, y down, z forward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


class _TemporalBase(nn.Module):
    def __init__(self, config: ModelConfig | None = None, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = ModelConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a ModelConfig or keyword arguments, not both")
        self.config = config
        c = config.channels
        widths = config.filter_widths
        # Convolutions are built plain (stride 1, dilation 1); each variant applies its
        # own stride or dilation in forward, so the twins can share the very same modules.
        self.expand_conv = nn.Conv1d(config.num_joints_in * config.in_features, c, widths[0], bias=False)
        self.expand_bn = nn.BatchNorm1d(c, momentum=0.1)
        convs, bns = [], []
        for w in widths[1:]:
            convs.append(nn.Conv1d(c, c, w, bias=False))
            bns.append(nn.BatchNorm1d(c, momentum=0.1))
            convs.append(nn.Conv1d(c, c, 1, bias=False))
            bns.append(nn.BatchNorm1d(c, momentum=0.1))
        self.layers_conv = nn.ModuleList(convs)
        self.layers_bn = nn.ModuleList(bns)
        self.shrink = nn.Conv1d(c, config.num_joints_out * 3, 1)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(config.dropout)

    # The two variants differ only in how the wide convolutions are applied.
    def _expand(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _wide(self, x: torch.Tensor, block: int) -> torch.Tensor:
        raise NotImplementedError

    def _residual(self, x: torch.Tensor, block: int) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def sharing_weights_with(cls, other: "_TemporalBase") -> "_TemporalBase":
        """A model of this class that uses `other`'s modules (parameters and BN buffers)."""
        twin = cls.__new__(cls)
        nn.Module.__init__(twin)
        twin.config = other.config
        for name, module in other.named_children():
            setattr(twin, name, module)
        twin.train(other.training)
        return twin

    def receptive_field(self) -> int:
        return self.config.receptive_field

    @property
    def causal(self) -> bool:
        return self.config.causal

    def block_dilations(self) -> list[int]:
        """Dilation of the wide conv of each residual block."""
        out, d = [], self.config.filter_widths[0]
        for w in self.config.filter_widths[1:]:
            out.append(d)
            d *= w
        return out

    def set_bn_momentum(self, momentum: float) -> None:
        self.expand_bn.momentum = momentum
        for bn in self.layers_bn:
            bn.momentum = momentum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if x.dim() != 4 or x.shape[2] != cfg.num_joints_in or x.shape[3] != cfg.in_features:
            raise ValueError(
                f"expected input (B, T, {cfg.num_joints_in}, {cfg.in_features}), got {tuple(x.shape)}"
            )
        batch, frames = x.shape[:2]
        x = x.reshape(batch, frames, -1).transpose(1, 2)
        x = self.drop(self.relu(self.expand_bn(self._expand(x))))
        for i in range(len(self.layers_conv) // 2):
            res = self._residual(x, i)
            x = self.drop(self.relu(self.layers_bn[2 * i](self._wide(x, i))))
            x = res + self.drop(self.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](x))))
        x = self.shrink(x)
        return x.transpose(1, 2).reshape(batch, -1, cfg.num_joints_out, 3)


class TemporalModel(_TemporalBase):
    """Dilated temporal model: valid convolutions, (B, T, J, F) -> (B, T - RF + 1, J_out, 3).

    In the causal variant output frame i is the prediction for input frame i + RF - 1
    (it sees only that frame and the RF - 1 before it); in the symmetric variant it is
    the prediction for input frame i + (RF - 1) / 2.
    """

    def _expand(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand_conv(x)

    def _wide(self, x: torch.Tensor, block: int) -> torch.Tensor:
        conv = self.layers_conv[2 * block]
        return F.conv1d(x, conv.weight, dilation=self.block_dilations()[block])

    def _residual(self, x: torch.Tensor, block: int) -> torch.Tensor:
        width = self.config.filter_widths[block + 1]
        span = (width - 1) * self.block_dilations()[block]
        start = span if self.causal else span // 2
        return x[:, :, start: x.shape[2] - span + start]

    def strided_twin(self) -> "StridedTemporalModel":
        """The training twin, sharing this model's parameters and batch-norm buffers."""
        return StridedTemporalModel.sharing_weights_with(self)


class StridedTemporalModel(_TemporalBase):
    """The "optimized" training twin: stride = width, no dilation.

    Takes windows of exactly RF frames, (B, RF, J, F) -> (B, 1, J_out, 3), computing only
    the activations that the single output needs. Same state_dict as :class:`TemporalModel`.
    """

    def _expand(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.expand_conv.weight, stride=self.config.filter_widths[0])

    def _wide(self, x: torch.Tensor, block: int) -> torch.Tensor:
        conv = self.layers_conv[2 * block]
        return F.conv1d(x, conv.weight, stride=conv.weight.shape[2])

    def _residual(self, x: torch.Tensor, block: int) -> torch.Tensor:
        width = self.config.filter_widths[block + 1]
        offset = width - 1 if self.causal else width // 2
        return x[:, :, offset::width]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.shape[1] != self.receptive_field():
            raise ValueError(
                f"the strided model takes windows of {self.receptive_field()} frames, got {x.shape[1]}"
            )
        return super().forward(x)

    def dilated_twin(self) -> TemporalModel:
        """The inference model, sharing this model's parameters and batch-norm buffers."""
        return TemporalModel.sharing_weights_with(self)
