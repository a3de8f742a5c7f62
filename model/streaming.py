"""Exact frame-by-frame inference with explicit per-layer state.

Each wide convolution keeps a ring buffer of its last ``(W - 1) * d`` inputs for every
stream. A step writes the newest input, reads the W taps the dilated conv needs and
produces one output, so every incoming frame costs one output position per layer.

Equivalence with the offline model (tested in tests/test_streaming.py):

* causal model: the output of step t equals the offline causal model applied to the
  whole sequence left-padded by replicating frame 0 ``RF - 1`` times;
* symmetric model: the output of step t is the prediction for frame
  ``t - latency_frames`` (``latency_frames = (RF - 1) / 2``) of the offline model with
  edge padding on both sides; :meth:`StreamingLifter.flush` emits the pending tail.

On a stream's first frame every buffer is filled as if that frame had been repeated
back through the receptive field (replicate padding): with a constant input every
layer's activation is constant, so filling each buffer with the layer's own first
input is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .folding import FoldedConv, FoldedModel, fold_model
from .temporal import _TemporalBase


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"`` picks CUDA when it is available, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA was requested but torch.cuda.is_available() is False")
    return device


@dataclass
class StreamState:
    """The whole recurrent state of a batch of streams; tests reset, copy and compare it.

    ``buffers[k]`` is (B, (W_k - 1) * d_k, C_in_k): ring buffer of layer k's past inputs,
    slot ``t % length`` holding the input of frame t. ``frames`` counts the frames each
    stream has consumed; a stream with ``frames == 0`` is fresh and gets replicate padding.
    ``last_input`` holds each stream's latest input, repeated by :meth:`StreamingLifter.flush`.
    """

    buffers: list[torch.Tensor]
    frames: torch.Tensor  # (B,) int64, on the CPU
    last_input: torch.Tensor  # (B, J * F)

    def clone(self) -> "StreamState":
        return StreamState([b.clone() for b in self.buffers], self.frames.clone(), self.last_input.clone())


class StreamingLifter:
    """Lift one frame at a time for a batch of independent streams.

    Args:
        model: a trained :class:`model.TemporalModel` (or its strided twin); it is folded,
            so later changes to ``model`` do not affect the lifter.
        batch_size: number of stream slots.
        device: ``None``/``"auto"``, ``"cpu"`` or ``"cuda"``.
        dtype: ``torch.float32`` or, on CUDA, ``torch.float16``/``torch.bfloat16``.

    Inputs are normalised screen coordinates (see ``train/cameras.py``); outputs are
    metres, root-relative, in the camera frame.
    """

    def __init__(
        self,
        model: _TemporalBase,
        batch_size: int = 1,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.config = model.config
        self.device = resolve_device(device)
        if dtype != torch.float32 and self.device.type != "cuda":
            raise ValueError("reduced precision streaming needs a CUDA device")
        self.dtype = dtype
        self.batch_size = batch_size
        self.net: FoldedModel = fold_model(model).to(self.device, dtype)
        self._layers: list[FoldedConv] = [self.net.expand] + [b.wide for b in self.net.blocks]
        # Tap-major weight matrices: taps (b, W, C_in) flatten to (b, W * C_in).
        self._matrices = [
            layer.weight.permute(0, 2, 1).reshape(layer.weight.shape[0], -1).contiguous()
            for layer in self._layers
        ]
        self._pointwise = [b.pointwise.weight[:, :, 0].contiguous() for b in self.net.blocks]
        self._shrink = self.net.shrink.weight[:, :, 0].contiguous()
        self._tap_offsets = [
            torch.arange(layer.width - 1, 0, -1, device=self.device) * layer.dilation
            for layer in self._layers
        ]
        self.state = self._empty_state()

    # ----------------------------------------------------------------- properties
    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field

    @property
    def latency_frames(self) -> int:
        """Frames between an input and the output that is centred on it (0 if causal)."""
        return 0 if self.config.causal else (self.receptive_field - 1) // 2

    @property
    def input_size(self) -> int:
        return self.config.num_joints_in * self.config.in_features

    def _empty_state(self) -> StreamState:
        buffers = [
            torch.zeros(self.batch_size, layer.history, layer.weight.shape[1], device=self.device, dtype=self.dtype)
            for layer in self._layers
        ]
        return StreamState(
            buffers,
            torch.zeros(self.batch_size, dtype=torch.int64),
            torch.zeros(self.batch_size, self.input_size, device=self.device, dtype=self.dtype),
        )

    # -------------------------------------------------------------------- control
    def reset(self, indices: Sequence[int] | None = None) -> None:
        """Start the given streams (all when None) afresh; other streams are untouched."""
        if indices is None:
            self.state.frames.zero_()
        else:
            self.state.frames[list(indices)] = 0

    def frames_seen(self, indices: Sequence[int] | None = None) -> torch.Tensor:
        """Frames consumed per stream since its last reset."""
        return self.state.frames.clone() if indices is None else self.state.frames[list(indices)]

    # ----------------------------------------------------------------------- step
    @torch.inference_mode()
    def step(self, x: torch.Tensor, indices: Sequence[int] | None = None) -> torch.Tensor:
        """Consume one frame per stream and return one 3D pose per stream.

        Args:
            x: (b, J_in, F) keypoints of the newest frame, normalised screen coordinates.
            indices: the stream slots these rows belong to (all slots, in order, when None).
        Returns:
            (b, J_out, 3) metres. For a symmetric model row i is the pose of frame
            ``frames_seen - 1 - latency_frames`` of its stream (negative while warming up).
        """
        idx = list(range(self.batch_size)) if indices is None else list(indices)
        b = len(idx)
        if x.shape != (b, self.config.num_joints_in, self.config.in_features):
            raise ValueError(
                f"expected keypoints of shape ({b}, {self.config.num_joints_in}, "
                f"{self.config.in_features}), got {tuple(x.shape)}"
            )
        if len(set(idx)) != b or (b and (min(idx) < 0 or max(idx) >= self.batch_size)):
            raise ValueError(f"stream indices must be distinct and in [0, {self.batch_size}), got {idx}")
        state = self.state
        frames = state.frames[idx]
        fresh = [i for i, n in zip(idx, frames.tolist()) if n == 0]
        rows = torch.tensor(idx, device=self.device)
        times = frames.to(self.device)
        h = x.reshape(b, -1).to(self.device, self.dtype)
        state.last_input[rows] = h

        h = self._wide_step(0, h, rows, times, fresh)[0]
        for k, block in enumerate(self.net.blocks, start=1):
            out, taps = self._wide_step(k, h, rows, times, fresh)
            residual = taps[:, block.residual_tap]
            h = residual + torch.relu_(torch.addmm(block.pointwise.bias, out, self._pointwise[k - 1].t()))
        y = torch.addmm(self.net.shrink.bias, h, self._shrink.t())
        state.frames[idx] += 1
        return y.reshape(b, self.config.num_joints_out, 3).float()

    def _wide_step(
        self, k: int, h: torch.Tensor, rows: torch.Tensor, times: torch.Tensor, fresh: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self._layers[k]
        buf = self.state.buffers[k]
        length = layer.history
        if length == 0:
            taps = h[:, None, :]
        else:
            if fresh:
                fresh_rows = [i for i, r in enumerate(rows.tolist()) if r in fresh]
                buf[rows[fresh_rows]] = h[fresh_rows, None, :].expand(-1, length, -1)
            slots = (times[:, None] - self._tap_offsets[k][None, :]) % length
            past = buf[rows[:, None], slots]  # (b, W - 1, C)
            taps = torch.cat([past, h[:, None, :]], dim=1)
            buf[rows, times % length] = h
        out = torch.addmm(layer.bias, taps.reshape(taps.shape[0], -1), self._matrices[k].t())
        return torch.relu_(out), taps

    @torch.inference_mode()
    def flush(self, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
        """End the given streams: emit the poses still pending in a symmetric model.

        Repeats each stream's last frame (edge padding) and returns one tensor per
        stream, (min(frames_seen, latency_frames), J_out, 3): the poses of its last
        frames that :meth:`step` has not yet emitted. Causal models have none pending.
        The streams are reset afterwards.
        """
        idx = list(range(self.batch_size)) if indices is None else list(indices)
        seen = self.state.frames[idx].tolist()
        last = self.state.last_input[idx].clone()
        shape = (len(idx), self.config.num_joints_in, self.config.in_features)
        steps = [self.step(last.reshape(shape), idx) for _ in range(self.latency_frames)]
        self.reset(idx)
        empty = torch.zeros(0, self.config.num_joints_out, 3)
        if not steps:
            return [empty.clone() for _ in idx]
        tail = torch.stack(steps, dim=1)  # (b, latency, J, 3); step k is frame n - latency + k
        return [tail[row, max(0, self.latency_frames - n):] for row, n in enumerate(seen)]


@torch.inference_mode()
def lift_sequence(model: _TemporalBase, keypoints: torch.Tensor, device: str | torch.device | None = "cpu") -> torch.Tensor:
    """Offline lifting of whole sequences with the padding convention of the streamer.

    ``keypoints`` (B, T, J, F) -> (B, T, J_out, 3): causal models are left-padded by
    replicating frame 0 (``RF - 1`` frames), symmetric ones edge-padded on both sides.
    The BN-folded network runs without autograd.
    """
    net = fold_model(model).to(resolve_device(device))
    rf = model.config.receptive_field
    x = keypoints.to(net.expand.weight.device, torch.float32)
    left = rf - 1 if model.config.causal else (rf - 1) // 2
    right = rf - 1 - left
    x = torch.cat([x[:, :1].expand(-1, left, -1, -1), x, x[:, -1:].expand(-1, right, -1, -1)], dim=1)
    return net(x)
