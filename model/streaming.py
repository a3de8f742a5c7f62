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

from .folding import ACTIVATION_DTYPES, PRECISIONS, FoldedConv, FoldedModel, fold_model, linear_backend, pack_linear
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

    ``buffers[k]`` is (B, (W_k - 1) * d_k + 1, C_in_k): ring buffer of layer k's inputs,
    slot ``t % length`` holding the input of frame t (the current frame included, so that
    one gather reads all W taps). ``frames`` counts the frames each stream has consumed;
    a stream with ``frames == 0`` is fresh and gets replicate padding. ``last_input``
    holds each stream's latest input, repeated by :meth:`StreamingLifter.flush`.
    """

    buffers: list[torch.Tensor]
    frames: torch.Tensor  # (B,) int64, on the CPU
    last_input: torch.Tensor  # (B, J * F)

    def clone(self) -> "StreamState":
        return StreamState([b.clone() for b in self.buffers], self.frames.clone(), self.last_input.clone())


def resolve_precision(precision: str | torch.dtype | None, device: torch.device) -> str:
    """Normalise ``precision`` ("fp32", "bf16", "fp16", "int8" or a torch dtype)."""
    if precision is None:
        return "fp32"
    if isinstance(precision, torch.dtype):
        names = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
        if precision not in names:
            raise ValueError(f"unsupported dtype {precision}")
        precision = names[precision]
    precision = str(precision).lower()
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if device.type != "cuda" and precision == "fp16":
        raise ValueError("precision 'fp16' needs a CUDA device; on the CPU use 'bf16' or 'int8'")
    if device.type == "cuda" and precision == "int8":
        raise ValueError("precision 'int8' is a CPU mode; on CUDA use 'fp16' or 'bf16'")
    return precision


class StreamingLifter:
    """Lift one frame at a time for a batch of independent streams.

    Args:
        model: a trained :class:`model.TemporalModel` (or its strided twin); it is folded,
            so later changes to ``model`` do not affect the lifter.
        batch_size: number of stream slots.
        device: ``None``/``"auto"``, ``"cpu"`` or ``"cuda"``.
        precision: ``"fp32"`` (exact), ``"bf16"`` (bf16 weights and activations),
            ``"int8"`` (CPU: per-output-channel int8 weights, dynamically quantised
            activations) or ``"fp16"`` (CUDA). See ``model.folding.pack_linear``.
        dtype: older spelling of ``precision`` (``torch.float16`` etc.).
        cuda_graph: on CUDA, replay the whole-batch step as a CUDA graph (default on).

    Inputs are normalised screen coordinates (see ``model/normalization.py``); outputs are
    metres, root-relative, in the camera frame.

    In ``int8`` mode activations are quantised per step over the rows stepped together,
    so a stream's output can differ (within the int8 tolerance) with its batch mates.
    """

    def __init__(
        self,
        model: _TemporalBase,
        batch_size: int = 1,
        device: str | torch.device | None = None,
        precision: str | torch.dtype | None = "fp32",
        *,
        dtype: torch.dtype | None = None,
        cuda_graph: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.config = model.config
        self.device = resolve_device(device)
        if dtype is not None and dtype != torch.float32:
            if self.device.type != "cuda" and dtype == torch.float16:
                raise ValueError("float16 streaming needs a CUDA device (on the CPU use precision='bf16' or 'int8')")
            precision = dtype
        self.precision = resolve_precision(precision, self.device)
        self.backend = linear_backend(self.precision, self.device)
        self.dtype = ACTIVATION_DTYPES[self.precision]
        self.batch_size = batch_size
        self.net: FoldedModel = fold_model(model)  # fp32, CPU: the reference parameters
        self._layers: list[FoldedConv] = [self.net.expand] + [b.wide for b in self.net.blocks]
        self._residual_taps = [b.residual_tap for b in self.net.blocks]

        def pack(weight: torch.Tensor, bias: torch.Tensor, relu: bool):
            return pack_linear(weight, bias, self.precision, self.device, relu, batch_size)

        # Tap-major weight matrices: taps (b, W, C_in) flatten to (b, W * C_in).
        self._wide_ops = [
            pack(layer.weight.permute(0, 2, 1).reshape(layer.weight.shape[0], -1), layer.bias, True)
            for layer in self._layers
        ]
        self._pointwise_ops = [pack(b.pointwise.weight[:, :, 0], b.pointwise.bias, True) for b in self.net.blocks]
        self._shrink_op = pack(self.net.shrink.weight[:, :, 0], self.net.shrink.bias, False)

        # Gather tables: layer k's W taps of frame t sit in slots (t - OFF) % LEN of its ring.
        self._lengths = [layer.history + 1 for layer in self._layers]
        self._widths = [layer.width for layer in self._layers]
        offsets, lengths, self._cols = [], [], []
        col = 0
        for layer, length in zip(self._layers, self._lengths):
            offsets.append(torch.arange(layer.width - 1, -1, -1) * layer.dilation)
            lengths.append(torch.full((layer.width,), length))
            self._cols.append((col, col + layer.width))
            col += layer.width
        idx_device = self.device
        self._off = torch.cat(offsets).to(idx_device)
        self._len = torch.cat(lengths).to(idx_device)
        self._all_rows = torch.arange(batch_size, device=idx_device)
        self._taps = [
            torch.empty(batch_size * w, layer.weight.shape[1], device=self.device, dtype=self.dtype)
            for layer, w in zip(self._layers, self._widths)
        ]
        self._state = self._empty_state()
        self._graph = None
        self._use_graph = bool(cuda_graph) and self.device.type == "cuda"

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

    @property
    def weight_bytes(self) -> int:
        """Bytes of fp32 folded weights a batch-1 step has to read (the roofline input)."""
        convs = self._layers + [b.pointwise for b in self.net.blocks] + [self.net.shrink]
        return sum(c.weight.numel() * 4 for c in convs)

    @property
    def state(self) -> StreamState:
        return self._state

    @state.setter
    def state(self, value: StreamState) -> None:
        """Restore a state (e.g. from :meth:`StreamState.clone`) by copying into the live buffers."""
        if len(value.buffers) != len(self._state.buffers):
            raise ValueError("state does not belong to this model")
        for dst, src in zip(self._state.buffers, value.buffers):
            dst.copy_(src)
        self._state.frames.copy_(value.frames)
        self._state.last_input.copy_(value.last_input)

    def _empty_state(self) -> StreamState:
        buffers = [
            torch.zeros(self.batch_size, length, layer.weight.shape[1], device=self.device, dtype=self.dtype)
            for layer, length in zip(self._layers, self._lengths)
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
            self._state.frames.zero_()
        else:
            self._state.frames[list(indices)] = 0

    def frames_seen(self, indices: Sequence[int] | None = None) -> torch.Tensor:
        """Frames consumed per stream since its last reset."""
        return self._state.frames.clone() if indices is None else self._state.frames[list(indices)]

    # ----------------------------------------------------------------------- step
    @torch.inference_mode()
    def step(self, x: torch.Tensor, indices: Sequence[int] | None = None) -> torch.Tensor:
        """Consume one frame per stream and return one 3D pose per stream.

        Args:
            x: (b, J_in, F) keypoints of the newest frame, normalised screen coordinates.
            indices: the stream slots these rows belong to (all slots, in order, when None).
        Returns:
            (b, J_out, 3) metres, float32, on the lifter's device. For a symmetric model
            row i is the pose of frame ``frames_seen - 1 - latency_frames`` of its stream
            (negative while warming up).
        """
        cfg = self.config
        if indices is None:
            b = self.batch_size
            rows = self._all_rows
            frames = self._state.frames
        else:
            idx = list(indices)
            b = len(idx)
            if len(set(idx)) != b or (b and (min(idx) < 0 or max(idx) >= self.batch_size)):
                raise ValueError(f"stream indices must be distinct and in [0, {self.batch_size}), got {idx}")
            rows = torch.tensor(idx, device=self._all_rows.device)
            frames = self._state.frames[idx]
        if x.shape != (b, cfg.num_joints_in, cfg.in_features):
            raise ValueError(
                f"expected keypoints of shape ({b}, {cfg.num_joints_in}, {cfg.in_features}), got {tuple(x.shape)}"
            )
        if self._use_graph and indices is None:
            y = self._graph_step(x)
        else:
            h = x.reshape(b, -1).to(self.device, self.dtype)
            fresh = (frames == 0).nonzero()[:, 0]
            fresh = fresh if fresh.numel() else None
            y = self._forward(h, rows, frames.to(self._off.device), fresh)
        if indices is None:
            self._state.frames += 1
        else:
            self._state.frames[idx] += 1
        return y.reshape(b, cfg.num_joints_out, 3).float()

    def _forward(self, h: torch.Tensor, rows: torch.Tensor, times: torch.Tensor, fresh) -> torch.Tensor:
        """One frame through every layer. ``fresh``: positions (into rows) of fresh streams,
        None when there are none, or a (b,) bool mask (CUDA graph path)."""
        b = h.shape[0]
        state = self._state
        state.last_input.index_copy_(0, rows, h)
        # Every layer's tap slots in one shot: (b, sum W) flat row-major ring indices.
        idx = (times[:, None] - self._off) % self._len + rows[:, None] * self._len
        for k, op in enumerate(self._wide_ops):
            buf = state.buffers[k]
            length, channels = buf.shape[1], buf.shape[2]
            flat = buf.view(-1, channels)
            lo, hi = self._cols[k]
            if fresh is not None:
                if isinstance(fresh, torch.Tensor) and fresh.dtype == torch.bool:
                    sel = buf.index_select(0, rows)
                    filled = torch.where(fresh[:, None, None], h[:, None, :], sel)
                    buf.index_copy_(0, rows, filled)
                else:
                    buf.index_copy_(0, rows[fresh], h[fresh, None, :].expand(-1, length, -1).contiguous())
            flat.index_copy_(0, idx[:, hi - 1], h)  # the current frame: tap offset 0
            width = hi - lo
            taps = self._taps[k][: b * width]
            torch.index_select(flat, 0, idx[:, lo:hi].reshape(-1), out=taps)
            out = op(taps.view(b, width * channels))
            if k == 0:
                h = out
            else:
                residual = taps.view(b, width, channels)[:, self._residual_taps[k - 1]]
                h = self._pointwise_ops[k - 1](out).add_(residual)
        return self._shrink_op(h)

    # ------------------------------------------------------------------ CUDA graph
    def _graph_step(self, x: torch.Tensor) -> torch.Tensor:
        if self._graph is None:
            self._capture()
        g = self._graph
        g["x"].copy_(x.reshape(self.batch_size, -1), non_blocking=True)
        g["times"].copy_(self._state.frames, non_blocking=True)
        g["fresh"].copy_(self._state.frames == 0, non_blocking=True)
        g["graph"].replay()
        return g["y"]

    def _capture(self) -> None:
        b = self.batch_size
        x = torch.zeros(b, self.input_size, device=self.device, dtype=torch.float32)
        times = torch.zeros(b, dtype=torch.int64, device=self.device)
        fresh = torch.zeros(b, dtype=torch.bool, device=self.device)
        saved = self._state.clone()

        def run() -> torch.Tensor:
            return self._forward(x.to(self.dtype), self._all_rows, times, fresh)

        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm up kernels and cuBLAS workspaces outside the graph
                run()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            y = run()
        self.state = saved  # the warm-up and capture wrote into the rings
        self._graph = {"graph": graph, "x": x, "times": times, "fresh": fresh, "y": y}

    @torch.inference_mode()
    def flush(self, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
        """End the given streams: emit the poses still pending in a symmetric model.

        Repeats each stream's last frame (edge padding) and returns one tensor per
        stream, (min(frames_seen, latency_frames), J_out, 3): the poses of its last
        frames that :meth:`step` has not yet emitted. Causal models have none pending.
        The streams are reset afterwards.
        """
        idx = list(range(self.batch_size)) if indices is None else list(indices)
        seen = self._state.frames[idx].tolist()
        last = self._state.last_input[idx].float().clone()
        shape = (len(idx), self.config.num_joints_in, self.config.in_features)
        steps = [self.step(last.reshape(shape), indices) for _ in range(self.latency_frames)]
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
