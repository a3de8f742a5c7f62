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
from .layers import LayerKind, LayerSpec, layer_specs


class _TemporalBase(nn.Module):
    def __init__(self, config: ModelConfig | None = None, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = ModelConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a ModelConfig or keyword arguments, not both")
        self.config = config
        # Convolutions are built plain (stride 1, dilation 1); each variant applies its
        # own stride or dilation in forward, so the twins can share the very same modules.
        convs: dict[str, nn.Conv1d] = {}
        bns: dict[str, nn.BatchNorm1d] = {}
        for spec in self.specs:
            convs[spec.conv] = nn.Conv1d(spec.in_channels, spec.out_channels, spec.width, bias=spec.bn is None)
            if spec.bn is not None:
                bns[spec.bn] = nn.BatchNorm1d(spec.out_channels, momentum=0.1)
        self.expand_conv = convs.pop("expand_conv")
        self.expand_bn = bns.pop("expand_bn")
        self.layers_conv = nn.ModuleList(convs[f"layers_conv.{i}"] for i in range(len(convs) - 1))
        self.layers_bn = nn.ModuleList(bns[f"layers_bn.{i}"] for i in range(len(bns)))
        self.shrink = convs["shrink"]
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(config.dropout)

    @property
    def specs(self) -> tuple[LayerSpec, ...]:
        """The network's layers, in order (see :mod:`model.layers`)."""
        return layer_specs(self.config)

    def layers(self) -> list[tuple[LayerSpec, nn.Conv1d, nn.BatchNorm1d | None]]:
        """Each layer's spec with its convolution and batch norm (None for the shrink conv)."""
        convs = [self.expand_conv, *self.layers_conv, self.shrink]
        bns = [self.expand_bn, *self.layers_bn, None]
        return list(zip(self.specs, convs, bns))

    # The two variants differ only in how the wide convolutions and residuals are applied.
    def _conv(self, x: torch.Tensor, conv: nn.Conv1d, spec: LayerSpec) -> torch.Tensor:
        raise NotImplementedError

    def _residual(self, x: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
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

    def with_future_frames(self, future_frames: int) -> "_TemporalBase":
        """A new model of this class with ``future_frames`` of look-ahead and a copy of
        these weights (every look-ahead has the same parameter shapes): e.g. the start of
        fine-tuning a look-ahead model from a trained causal one."""
        other = type(self)(self.config.with_future_frames(future_frames))
        other.load_state_dict(self.state_dict())
        return other.to(next(self.parameters()).device).train(self.training)

    def receptive_field(self) -> int:
        return self.config.receptive_field

    @property
    def causal(self) -> bool:
        return self.config.causal

    @property
    def future_frames(self) -> int:
        return self.config.future_frames

    def block_dilations(self) -> list[int]:
        """Dilation of the wide conv of each residual block."""
        return [s.dilation for s in self.specs if s.kind is LayerKind.BLOCK_CONV]

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
        res = x
        for spec, conv, bn in self.layers():
            if spec.kind is LayerKind.BLOCK_CONV:
                res = self._residual(x, spec)
            x = self._conv(x, conv, spec)
            if bn is not None:
                x = bn(x)
            if spec.relu:
                x = self.drop(self.relu(x))
            if spec.kind is LayerKind.BLOCK_1X1:
                x = res + x
        return x.transpose(1, 2).reshape(batch, -1, cfg.num_joints_out, 3)


class TemporalModel(_TemporalBase):
    """Dilated temporal model: valid convolutions, (B, T, J, F) -> (B, T - RF + 1, J_out, 3).

    Output frame i is the prediction for input frame ``i + past_frames``: it sees that
    frame, the ``past_frames`` before it and the ``future_frames`` after it (causal:
    ``past_frames = RF - 1``; symmetric: ``(RF - 1) / 2`` on each side).
    """

    def _conv(self, x: torch.Tensor, conv: nn.Conv1d, spec: LayerSpec) -> torch.Tensor:
        return F.conv1d(x, conv.weight, conv.bias, dilation=spec.dilation)

    def _residual(self, x: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
        return x[:, :, spec.pad_left: x.shape[2] - spec.span + spec.pad_left]

    def strided_twin(self) -> "StridedTemporalModel":
        """The training twin, sharing this model's parameters and batch-norm buffers."""
        return StridedTemporalModel.sharing_weights_with(self)


class StridedTemporalModel(_TemporalBase):
    """The "optimized" training twin: stride = width, no dilation.

    Takes windows of exactly RF frames, (B, RF, J, F) -> (B, 1, J_out, 3), computing only
    the activations that the single output needs; the output is the pose of window frame
    ``past_frames``. Same state_dict as :class:`TemporalModel`.
    """

    def _conv(self, x: torch.Tensor, conv: nn.Conv1d, spec: LayerSpec) -> torch.Tensor:
        return F.conv1d(x, conv.weight, conv.bias, stride=spec.width)

    def _residual(self, x: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
        return x[:, :, spec.current_tap::spec.width]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.shape[1] != self.receptive_field():
            raise ValueError(
                f"the strided model takes windows of {self.receptive_field()} frames, got {x.shape[1]}"
            )
        return super().forward(x)

    def dilated_twin(self) -> TemporalModel:
        """The inference model, sharing this model's parameters and batch-norm buffers."""
        return TemporalModel.sharing_weights_with(self)
