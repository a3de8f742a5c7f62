"""The streaming step as an ONNX graph with external state (contract: docs/onnx.md).

:class:`StreamingStep` is a small torch module built from the folded layer specifications
(:mod:`model.layers`, :func:`model.fold_model`), the same description every other runner
of the network reads. Each wide layer k keeps a ring of its last ``(W_k - 1) d_k + 1``
inputs, ``state_k`` (B, (W_k - 1) d_k + 1, C_k): the input of a stream's frame n sits at
row ``n mod length``. The last state tensor, ``state_<L>`` (B,) int64, counts the frames
each stream has consumed; a step writes the newest input (one copy of each state tensor,
the least an ONNX graph with state passed in and out can do) and gathers the W_k taps
``n - (W_k - 1) d_k, ..., n``, clamped to the stream's first frame.

That clamp is the replicate padding of :class:`model.StreamingLifter` (whose outputs this
step reproduces): frames before a stream's start read its first frame. A row whose
``start`` is true or whose counter is 0 is at its frame 0, so its state is never read:
all-zero state is a valid initial state, and a restarted stream needs no clearing.

Inputs: ``keypoints`` (B, J_in, 2) float32, ``start`` (B,) bool, ``state_0 ..  state_L``.
Outputs: ``pose3d`` (B, J_out, 3) float32, ``state_0_out .. state_L_out``. B is dynamic.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .folding import fold_model
from .layers import LayerKind
from .temporal import _TemporalBase

OPSET = 17


@dataclass
class StepSpec:
    """Names, per-stream shapes and dtypes of the step's state tensors."""

    names: list[str]
    state_shapes: list[tuple[int, ...]]  # without the batch dimension
    state_dtypes: list[torch.dtype]
    num_joints_in: int
    num_joints_out: int
    latency_frames: int

    @property
    def state_bytes_per_stream(self) -> int:
        total = 0
        for shape, dtype in zip(self.state_shapes, self.state_dtypes):
            n = 1
            for s in shape:
                n *= s
            total += n * torch.empty((), dtype=dtype).element_size()
        return total

    def zero_state(self, batch: int) -> list[torch.Tensor]:
        return [torch.zeros(batch, *s, dtype=d) for s, d in zip(self.state_shapes, self.state_dtypes)]


class StreamingStep(nn.Module):
    """One frame for B streams: (keypoints, start, *state) -> (pose3d, *new_state)."""

    def __init__(self, model: _TemporalBase) -> None:
        super().__init__()
        net = fold_model(model)
        self.config = net.config
        self.wide: list[dict] = []
        self._weights = nn.ParameterList()
        for layer in net.layers:
            if layer.spec.buffered:
                w = layer.weight.permute(0, 2, 1).reshape(layer.weight.shape[0], -1)  # tap-major (C_out, W * C_in)
                self.wide.append({"spec": layer.spec, "w": len(self._weights), "pw": None, "pw_relu": False})
                self._weights.append(nn.Parameter(w.contiguous(), requires_grad=False))
                self._weights.append(nn.Parameter(layer.bias.clone(), requires_grad=False))
            elif layer.spec.kind is LayerKind.BLOCK_1X1:
                self.wide[-1].update(pw=len(self._weights), pw_relu=layer.relu)
                self._weights.append(nn.Parameter(layer.weight[:, :, 0].contiguous(), requires_grad=False))
                self._weights.append(nn.Parameter(layer.bias.clone(), requires_grad=False))
            else:
                self._shrink, self._shrink_relu = len(self._weights), layer.relu
                self._weights.append(nn.Parameter(layer.weight[:, :, 0].contiguous(), requires_grad=False))
                self._weights.append(nn.Parameter(layer.bias.clone(), requires_grad=False))
        self.spec = StepSpec(
            names=[f"state_{k}" for k in range(len(self.wide) + 1)],
            state_shapes=[(e["spec"].span + 1, e["spec"].in_channels) for e in self.wide] + [()],
            state_dtypes=[torch.float32] * len(self.wide) + [torch.int64],
            num_joints_in=self.config.num_joints_in,
            num_joints_out=self.config.num_joints_out,
            latency_frames=self.config.future_frames,
        )

    def _linear(self, x: torch.Tensor, k: int, relu: bool) -> torch.Tensor:
        y = torch.nn.functional.linear(x, self._weights[k], self._weights[k + 1])
        return torch.relu(y) if relu else y

    def forward(self, keypoints: torch.Tensor, start: torch.Tensor, *state: torch.Tensor):
        # n: the index of this frame in its stream (0 on a stream's first frame, so the
        # state of a starting row is never read, and all-zero state is a fresh stream).
        n = torch.where(start, torch.zeros_like(state[-1]), state[-1])
        h = keypoints.reshape(keypoints.shape[0], -1)
        streams = torch.cumsum(torch.ones_like(n), 0) - 1  # 0 .. B - 1 (traced with a dynamic B)
        out_state = []
        for k, e in enumerate(self.wide):
            spec = e["spec"]
            length = spec.span + 1
            # Write this frame's input at row n mod length (ScatterND: one copy of the state),
            # gather the W taps n - (W - 1) d, ..., n, clamped to the stream's first frame.
            buf = state[k].index_put((streams, torch.remainder(n, length)), h)
            out_state.append(buf)
            back = torch.arange(spec.width - 1, -1, -1, dtype=n.dtype) * spec.dilation
            times = torch.remainder(torch.clamp(n[:, None] - back[None, :], min=0), length)
            taps = buf[streams[:, None], times]  # (B, W, C)
            y = self._linear(taps.reshape(taps.shape[0], -1), e["w"], spec.relu)
            if e["pw"] is not None:
                y = self._linear(y, e["pw"], e["pw_relu"]) + taps[:, spec.current_tap]
            h = y
        pose = self._linear(h, self._shrink, self._shrink_relu)
        return (pose.reshape(pose.shape[0], self.config.num_joints_out, 3), *out_state, n + 1)


class _TritonStep(nn.Module):
    """The step with ``start`` and the frame counter as (B, 1), the shape Triton's sequence
    batcher gives control inputs and a [1]-dims state."""

    def __init__(self, step: StreamingStep) -> None:
        super().__init__()
        self.step = step
        self.spec = StepSpec(**{**step.spec.__dict__, "state_shapes": [*step.spec.state_shapes[:-1], (1,)]})

    def forward(self, keypoints: torch.Tensor, start: torch.Tensor, *state: torch.Tensor):
        out = self.step(keypoints, start[:, 0], *state[:-1], state[-1][:, 0])
        return (*out[:-1], out[-1][:, None])


def export_onnx(model: _TemporalBase, path: str | os.PathLike, *, opset: int = OPSET, triton: bool = False) -> StepSpec:
    """Write ``model``'s streaming step to ``path`` (TorchScript exporter, ``dynamo=False``).

    ``triton``: the variant for Triton's sequence batcher (``start`` and ``state_<L>`` (B, 1))."""
    step = StreamingStep(model).eval()
    if triton:
        step = _TritonStep(step)
    spec = step.spec
    batch = 2
    start = torch.ones(batch, 1, dtype=torch.bool) if triton else torch.ones(batch, dtype=torch.bool)
    args = (torch.zeros(batch, spec.num_joints_in, 2), start, *spec.zero_state(batch))
    inputs = ["keypoints", "start", *spec.names]
    outputs = ["pose3d", *[f"{n}_out" for n in spec.names]]
    dynamic = {name: {0: "batch"} for name in inputs + outputs}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy TorchScript exporter": chosen on purpose
        # "advanced indexing ... incorrect with negative indices": the tap indices are >= 0.
        warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
        torch.onnx.export(step, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    return spec


_TRITON_TYPES = {torch.float32: "TYPE_FP32", torch.int64: "TYPE_INT64", torch.bool: "TYPE_BOOL"}


def triton_config(spec: StepSpec, name: str, *, max_batch_size: int = 64, max_idle_us: int = 5_000_000) -> str:
    """``config.pbtxt`` for Triton's onnxruntime backend: sequence batcher, implicit state
    ``state_<k>`` -> ``state_<k>_out`` (zeros initially), ``start`` from CONTROL_SEQUENCE_START.

    Triton's batch dimension is implicit (``max_batch_size`` > 0), so dims omit it. Triton
    gives control inputs as (B, 1), so the repository's graph (``triton=True`` in
    :func:`export_onnx`) takes ``start`` and the frame counter as (B, 1)."""
    lines = [
        f'name: "{name}"',
        'backend: "onnxruntime"',
        f"max_batch_size: {max_batch_size}",
        "input [",
        f'  {{ name: "keypoints" data_type: TYPE_FP32 dims: [ {spec.num_joints_in}, 2 ] }}',
        "]",
        "output [",
        f'  {{ name: "pose3d" data_type: TYPE_FP32 dims: [ {spec.num_joints_out}, 3 ] }}',
        "]",
        "sequence_batching {",
        f"  max_sequence_idle_microseconds: {max_idle_us}",
        "  control_input [",
        '    { name: "start" control [ { kind: CONTROL_SEQUENCE_START bool_false_true: [ false, true ] } ] }',
        "  ]",
        "  state [",
    ]
    states = []
    for n, shape, dtype in zip(spec.names, spec.state_shapes, spec.state_dtypes):
        dims = ", ".join(map(str, shape or (1,)))
        states.append(f'    {{ input_name: "{n}" output_name: "{n}_out" data_type: {_TRITON_TYPES[dtype]} '
                      f'dims: [ {dims} ] initial_state {{ data_type: {_TRITON_TYPES[dtype]} dims: [ {dims} ] zero_data: true '
                      f'name: "zeros" }} }}')
    lines.append(",\n".join(states))
    lines += ["  ]", "}", 'instance_group [ { kind: KIND_CPU count: 1 } ]']
    return "\n".join(lines) + "\n"


def write_triton_repository(model: _TemporalBase, root: str | os.PathLike, *, name: str = "poselift_step") -> Path:
    """``root/name/config.pbtxt`` and ``root/name/1/model.onnx``; returns the model folder."""
    folder = Path(root) / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    spec = export_onnx(model, folder / "1" / "model.onnx", triton=True)
    (folder / "config.pbtxt").write_text(triton_config(spec, name))
    return folder
