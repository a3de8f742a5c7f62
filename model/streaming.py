"""Exact frame-by-frame inference with explicit per-layer state.

Each wide convolution keeps a ring buffer of its recent inputs for every stream (see
:class:`StreamState` for the layout). A step writes the newest input, reads the W taps
the dilated conv needs and produces one output, so every incoming frame costs one output
position per layer: at batch 1 one read of every weight, which is why the weight format
(``precision``, chosen in :func:`model.kernels.pack_linear`) sets the speed. The layers,
their taps and residuals come from the model's layer specifications (:mod:`model.layers`).

Hot-path layout (the ``step`` bench measures it, ``poselift bench``):

* all streams at one frame count (or any contiguous run of slots at one count, e.g. one
  stream of many): the taps are read through views prepared at construction, with no
  index arithmetic and no gather;
* streams at different frame counts: one ``index_select`` per layer into a
  preallocated tap buffer;
* CUDA: the whole-batch step is captured once as a CUDA graph (two, with and without
  fresh streams) and replayed.

Equivalence with the offline model (tested in tests/test_streaming.py):

* the output of step t is the prediction for frame ``t - latency_frames``
  (``latency_frames`` = the model's ``future_frames`` F) of the offline model applied to
  the whole sequence edge-padded with ``RF - 1 - F`` copies of frame 0 before it and F
  copies of the last frame after it (:func:`model.lift_sequence`);
  :meth:`StreamingLifter.flush` emits the F pending poses at the end of a stream. F = 0
  is the causal model (no latency), F = (RF - 1) / 2 the symmetric one.

On a stream's first frame every buffer is filled as if that frame had been repeated
back through the receptive field (replicate padding): with a constant input every
layer's activation is constant, so filling each buffer with the layer's own first
input is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .device import resolve_device
from .folding import FoldedConv, FoldedModel, fold_model
from .kernels import layer_backend, linear_backend, pack_linear
from .layers import LayerKind
from .precision import Precision, get_precision
from .temporal import _TemporalBase


@dataclass
class StreamState:
    """The whole recurrent state of a batch of streams; tests reset, copy and compare it.

    ``buffers[k]`` is (B, d_k, 2 W_k, C_in_k): ring buffer of layer k's inputs. The input
    of frame t sits in phase row ``t % d_k`` at positions ``q`` and ``q + W_k`` with
    ``q = (t // d_k) % W_k``, so the W_k taps of frame t (t - (W_k - 1) d_k, ..., t) are
    the contiguous run ``q + 1 ... q + W_k``: the step reads them as one view, without a
    gather or a copy, at the price of twice the memory of a plain ring. ``frames`` counts the frames each stream has consumed;
    a stream with ``frames == 0`` is fresh and gets replicate padding. ``last_input``
    holds each stream's latest input, repeated by :meth:`StreamingLifter.flush`.
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
        precision: a name of :data:`model.precision.PRECISIONS` (``"fp32"``, exact;
            ``"bf16"``; ``"int8"`` on the CPU; ``"fp16"`` on CUDA) or a torch dtype.
            See :func:`model.kernels.pack_linear`.
        dtype: the same as ``precision`` given as a torch dtype (``torch.float16`` etc.).
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
        precision: str | torch.dtype | Precision | None = "fp32",
        *,
        dtype: torch.dtype | None = None,
        cuda_graph: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.config = model.config
        self.device = resolve_device(device)
        if dtype is not None and dtype != torch.float32:
            precision = dtype
        prec = get_precision(precision, self.device)
        self.precision: str = prec.name
        self.backend = linear_backend(prec, self.device)
        self.dtype = prec.activation_dtype  # activations between the layers
        self._in_dtype = torch.float32  # the expand layer's input (keypoints) stays fp32
        self.batch_size = batch_size
        self.net: FoldedModel = fold_model(model)  # fp32, CPU: the reference parameters
        # Ring-buffered layers (expand and block convs), each with the 1x1 conv that
        # follows it in its block (None for expand) and its residual tap (None for expand).
        self._layers: list[FoldedConv] = []
        pointwise: list[FoldedConv | None] = []
        for layer in self.net.layers:
            if layer.spec.buffered:
                self._layers.append(layer)
                pointwise.append(None)
            elif layer.spec.kind is LayerKind.BLOCK_1X1:
                pointwise[-1] = layer
            else:
                shrink = layer
        self._residual_taps = [None if p is None else layer.spec.current_tap for layer, p in zip(self._layers, pointwise)]

        kernels: dict[str, None] = {}  # the kernels the block layers use, in order (for self.backend)

        def pack(weight: torch.Tensor, bias: torch.Tensor, relu: bool, edge: bool = False):
            # Reduced precisions keep the first (expand) and last (shrink) layers in fp32:
            # 0.9 % of the weights at 243 frames and 1024 channels (2.4 % in the shipped
            # 384-channel model), and the keypoints are not rounded to bf16 (about 2 px at 1000 px) on the way in.
            precision = "fp32" if edge else self.precision
            if not edge:
                kernels[layer_backend(weight.shape[0], weight.shape[1], precision, self.device)] = None
            return pack_linear(weight, bias, precision, self.device, relu, batch_size)

        # Tap-major weight matrices: taps (b, W, C_in) flatten to (b, W * C_in).
        self._wide_ops = [
            pack(layer.weight.permute(0, 2, 1).reshape(layer.weight.shape[0], -1), layer.bias, layer.relu, edge=k == 0)
            for k, layer in enumerate(self._layers)
        ]
        self._pointwise_ops = [None if p is None else pack(p.weight[:, :, 0], p.bias, p.relu) for p in pointwise]
        self._shrink_op = pack(shrink.weight[:, :, 0], shrink.bias, shrink.relu, edge=True)
        self.backend = "+".join(kernels) or self.backend  # e.g. "onednn-fp32+aten-fp32" where the layers differ

        # Ring layout (see StreamState): layer k's input of frame t lives at
        # [phase = t % d, q = (t // d) % W] and again at q + W, so the W taps of frame t
        # (t - (W-1) d, ..., t) are the contiguous run q + 1 ... q + W of one phase row.
        self._widths = [layer.width for layer in self._layers]
        self._dilations = [layer.dilation for layer in self._layers]
        self._channels = [layer.weight.shape[1] for layer in self._layers]
        self._layer_dtypes = [self._in_dtype] + [self.dtype] * (len(self._layers) - 1)
        cols_d, cols_w, cols_j, self._cols = [], [], [], []
        col = 0
        for w, d in zip(self._widths, self._dilations):
            cols_d += [d] * w
            cols_w += [w] * w
            cols_j += list(range(w))
            self._cols.append((col, col + w))
            col += w
        idx_device = self.device
        self._col_d = torch.tensor(cols_d, device=idx_device)
        self._col_w = torch.tensor(cols_w, device=idx_device)
        self._col_j1 = torch.tensor(cols_j, device=idx_device) + 1
        self._all_rows = torch.arange(batch_size, device=idx_device)
        self._taps = [
            torch.empty(batch_size * w, c, device=self.device, dtype=dt)
            for w, c, dt in zip(self._widths, self._channels, self._layer_dtypes)
        ]
        self._state = self._empty_state()
        self._views = self._lockstep_views()
        self._graphs: dict[bool, dict] = {}
        self._use_graph = bool(cuda_graph) and self.device.type == "cuda"

    def _lockstep_views(self) -> list[list[tuple]]:
        """Per layer and per ring slot ``t % (d W)``: views (write_a, write_b, taps, residual)
        into the buffers for stepping all streams at the same frame count, so that the hot
        loop does no index arithmetic at all."""
        views = []
        for k, (buf, w, d) in enumerate(zip(self._state.buffers, self._widths, self._dilations)):
            b, c = buf.shape[0], buf.shape[3]
            res = self._residual_taps[k]
            per_slot = []
            for s in range(d * w):
                ph, q = s % d, s // d
                taps = buf[:, ph, q + 1: q + w + 1].reshape(b, w * c)  # a view: (W, C) is contiguous
                residual = None if res is None else buf[:, ph, q + 1 + res]
                per_slot.append((buf[:, ph, q], buf[:, ph, q + w], taps, residual))
            views.append(per_slot)
        return views

    # ----------------------------------------------------------------- properties
    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field

    @property
    def latency_frames(self) -> int:
        """Frames between an input and the output aligned with it: the model's future frames."""
        return self.config.future_frames

    @property
    def input_size(self) -> int:
        return self.config.num_joints_in * self.config.in_features

    @property
    def weight_bytes(self) -> int:
        """Bytes of fp32 folded weights a batch-1 step has to read (the roofline input)."""
        return sum(c.weight.numel() * 4 for c in self.net.layers)

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
            torch.zeros(self.batch_size, d, 2 * w, c, device=self.device, dtype=dt)
            for w, d, c, dt in zip(self._widths, self._dilations, self._channels, self._layer_dtypes)
        ]
        return StreamState(
            buffers,
            torch.zeros(self.batch_size, dtype=torch.int64),
            torch.zeros(self.batch_size, self.input_size, device=self.device, dtype=self._in_dtype),
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
            (b, J_out, 3) metres, float32, on the lifter's device. Row i is the pose of
            frame ``frames_seen - 1 - latency_frames`` of its stream (negative while a
            look-ahead model warms up).
        """
        cfg = self.config
        state = self._state
        if indices is None:
            b, first, run = self.batch_size, 0, True
            frames = state.frames
        else:
            idx = list(indices)
            b = len(idx)
            if len(set(idx)) != b or (b and (min(idx) < 0 or max(idx) >= self.batch_size)):
                raise ValueError(f"stream indices must be distinct and in [0, {self.batch_size}), got {idx}")
            # Rows that are one contiguous run of slots at one frame count take the fast path.
            first = idx[0] if b else 0
            run = b > 0 and idx[-1] - first == b - 1 and (b == 1 or idx == list(range(first, first + b)))
            frames = state.frames[first: first + b] if run else state.frames[idx]
        if x.shape != (b, cfg.num_joints_in, cfg.in_features):
            raise ValueError(
                f"expected keypoints of shape ({b}, {cfg.num_joints_in}, {cfg.in_features}), got {tuple(x.shape)}"
            )
        if indices is None and self._use_graph:
            y = self._graph_step(x)
        elif run and (b == 1 or bool((frames == frames[0]).all())):
            h = x.reshape(b, -1).to(self.device, self._in_dtype)
            y = self._lockstep_forward(h, int(frames[0]), first, b)
        else:
            rows = self._all_rows if indices is None else torch.tensor(idx, device=self._all_rows.device)
            h = x.reshape(b, -1).to(self.device, self._in_dtype)
            fresh = (frames == 0).nonzero()[:, 0]
            fresh = fresh.to(rows.device) if fresh.numel() else None
            y = self._gather_forward(h, rows, frames.to(self._col_d.device), fresh)
        if run:
            frames += 1  # a view of state.frames
        else:
            state.frames[idx] += 1
        return y.reshape(b, cfg.num_joints_out, 3).float()

    def _lockstep_forward(self, h: torch.Tensor, t: int, first: int, b: int) -> torch.Tensor:
        """Slots ``first .. first + b - 1``, all at frame count ``t``: precomputed views,
        no index arithmetic (only a slice when the run is not the whole batch)."""
        state = self._state
        whole = first == 0 and b == self.batch_size
        rows = slice(first, first + b)
        state.last_input[rows].copy_(h)
        for k, op in enumerate(self._wide_ops):
            views = self._views[k]
            write_a, write_b, taps, residual = views[t % len(views)]
            if not whole:
                write_a, write_b, taps = write_a[rows], write_b[rows], taps[rows]
                residual = None if residual is None else residual[rows]
            if t == 0:  # fresh streams: replicate padding, every slot holds this input
                buf = state.buffers[k][rows]
                buf.copy_(h[:, None, None, :].expand_as(buf))
            else:
                write_a.copy_(h)
                write_b.copy_(h)
            out = op(taps)
            pointwise = self._pointwise_ops[k]
            h = out.to(self.dtype) if pointwise is None else pointwise(out).add_(residual)
        return self._shrink_op(h.float())

    def _gather_forward(self, h: torch.Tensor, rows: torch.Tensor, times: torch.Tensor, fresh) -> torch.Tensor:
        """Streams at different frame counts (or a subset of them): gather the taps.

        ``fresh``: positions (into rows) of fresh streams, None when there are none, or a
        (b,) bool mask (CUDA graph path)."""
        b = h.shape[0]
        state = self._state
        state.last_input.index_copy_(0, rows, h)
        # Every layer's tap positions in one shot: (b, sum W) row-major indices into the
        # flattened (B * d * 2W, C) buffer of each layer.
        d, w = self._col_d, self._col_w
        idx = ((rows[:, None] * d + times[:, None] % d) * 2 + 1) * w - w + (times[:, None] // d) % w + self._col_j1
        for k, op in enumerate(self._wide_ops):
            buf = state.buffers[k]
            width, channels = self._widths[k], self._channels[k]
            flat = buf.view(-1, channels)
            lo, hi = self._cols[k]
            if fresh is not None:
                if fresh.dtype == torch.bool:
                    sel = buf.index_select(0, rows)
                    buf.index_copy_(0, rows, torch.where(fresh[:, None, None, None], h[:, None, None, :], sel))
                else:
                    filled = h[fresh, None, None, :].expand(-1, *buf.shape[1:]).contiguous()
                    buf.index_copy_(0, rows[fresh], filled)
            newest = idx[:, hi - 1]
            flat.index_copy_(0, newest, h)
            flat.index_copy_(0, newest - width, h)
            taps = self._taps[k][: b * width]
            torch.index_select(flat, 0, idx[:, lo:hi].reshape(-1), out=taps)
            out = op(taps.view(b, width * channels))
            pointwise = self._pointwise_ops[k]
            if pointwise is None:
                h = out.to(self.dtype)
            else:
                residual = taps.view(b, width, channels)[:, self._residual_taps[k]]
                h = pointwise(out).add_(residual)
        return self._shrink_op(h.float())

    # ------------------------------------------------------------------ CUDA graph
    def _graph_step(self, x: torch.Tensor) -> torch.Tensor:
        """Whole-batch step replayed as a CUDA graph (one per 'any fresh stream' case)."""
        frames = self._state.frames
        any_fresh = bool((frames == 0).any())
        g = self._graphs.get(any_fresh)
        if g is None:
            g = self._graphs[any_fresh] = self._capture(any_fresh)
        g["x"].copy_(x.reshape(self.batch_size, -1), non_blocking=True)
        g["times"].copy_(frames, non_blocking=True)
        if any_fresh:
            g["fresh"].copy_(frames == 0, non_blocking=True)
        g["graph"].replay()
        return g["y"].clone()  # the next replay overwrites the graph's output

    def _capture(self, any_fresh: bool) -> dict:
        b = self.batch_size
        x = torch.zeros(b, self.input_size, device=self.device, dtype=torch.float32)
        times = torch.zeros(b, dtype=torch.int64, device=self.device)
        fresh = torch.zeros(b, dtype=torch.bool, device=self.device)
        saved = self._state.clone()

        def run() -> torch.Tensor:
            return self._gather_forward(x.to(self._in_dtype), self._all_rows, times, fresh if any_fresh else None)

        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm up kernels and cuBLAS workspaces outside the graph
                run()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):  # capture on the warmed-up stream
            y = run()
        self.state = saved  # the warm-up and capture wrote into the rings
        return {"graph": graph, "x": x, "times": times, "fresh": fresh, "y": y}

    @torch.inference_mode()
    def flush(self, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
        """End the given streams: emit the poses still pending in a look-ahead model.

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
