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
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
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


# --------------------------------------------------------------------------------------
# Weight formats: the one swappable place that decides how a folded (C_out, C_in) matrix
# is stored and multiplied. Chosen by measurement on the project's 2-core AMD EPYC (Zen 4)
# machines, batch 1, the 16.95M weights of the 243-frame/1024-channel model, torch 2.13:
#
#   F.linear fp32 (MKL gemv)                 ~4.0 ms  (~17 GB/s: MKL's gemv reads slowly)
#   oneDNN prepacked fp32 (_linear_pointwise) ~2.2 ms  (~31 GB/s: at the read-bandwidth floor)
#   oneDNN prepacked bf16                     ~0.8 ms
#   fbgemm dynamic int8, per-channel weights  ~0.3 ms  (17 MB: the weights stay in L3)
#   _weight_int8pack_mm (bf16 activations)    ~0.5 ms
#   torchao 0.18 int8                         slower than fp32 (measured by the issue author)
#
# Each backend is probed once and the next one down is used when an op is missing, so a
# torch without oneDNN or fbgemm still runs (slower), with the same numerics contract.
# --------------------------------------------------------------------------------------

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# Below this many fp32 weights a oneDNN call's fixed cost (~15 us on these machines,
# against ~4 us for aten's addmm) outweighs its faster inner loop, so such layers (the
# expand and shrink convs of the 1024-channel models) run as plain addmm.
SMALL_LAYER = 256 * 1024
ACTIVATION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: ``weight ~= q * scale[:, None]``, q in [-127, 127].

    ``weight`` is (C_out, C_in) fp32; returns (int8 (C_out, C_in), fp32 scale (C_out,)).
    """
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


def _has_op(namespace: str, name: str) -> bool:
    try:
        return hasattr(getattr(torch.ops, namespace), name)
    except (AttributeError, RuntimeError):
        return False


def _onednn_ok() -> bool:
    return torch.backends.mkldnn.is_available() and _has_op("mkldnn", "_linear_pointwise") and _has_op(
        "mkldnn", "_reorder_linear_weight"
    )


def _fbgemm_ok() -> bool:
    return "fbgemm" in torch.backends.quantized.supported_engines and _has_op("quantized", "linear_dynamic")


def linear_backend(precision: str, device: torch.device) -> str:
    """Name of the kernel :func:`pack_linear` uses for ``precision`` on ``device``."""
    if device.type == "cuda":
        if precision == "int8":
            raise ValueError("precision 'int8' is a CPU mode; on CUDA use 'fp16' or 'bf16'")
        return f"cublas-{precision}"
    if precision == "fp16":
        raise ValueError("precision 'fp16' needs a CUDA device; on the CPU use 'bf16' or 'int8'")
    if precision in ("fp32", "bf16"):
        return f"onednn-{precision}" if _onednn_ok() else f"aten-{precision}"
    if precision == "int8":
        if _fbgemm_ok():
            return "fbgemm-int8-dynamic"
        if _has_op("aten", "_weight_int8pack_mm"):
            return "aten-int8-weight-only"
        return "dequantized-int8"
    raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")


def pack_linear(
    weight: torch.Tensor, bias: torch.Tensor, precision: str, device: torch.device, relu: bool, batch_hint: int = 1
):
    """Return ``f(x) -> relu?(x @ weight.T + bias)`` in the chosen weight format.

    ``weight`` (C_out, C_in) and ``bias`` (C_out,) are the fp32 folded parameters; ``x`` is
    (b, C_in) in ``ACTIVATION_DTYPES[precision]`` and so is the result. This is the single
    function to swap when a faster kernel appears.
    """
    device = torch.device(device)
    backend = linear_backend(precision, device)
    if device.type == "cpu" and precision == "fp32" and weight.numel() <= SMALL_LAYER:
        backend = "aten-fp32"  # e.g. the expand and shrink layers
    weight = weight.detach().float().to(device)
    bias = bias.detach().float().to(device)
    act = ACTIVATION_DTYPES[precision]
    if backend.startswith("onednn"):
        w = weight.to(act).contiguous()
        b = bias.to(act)
        packed = torch.ops.mkldnn._reorder_linear_weight(w, max(1, batch_hint))
        attr = "relu" if relu else "none"
        op = torch.ops.mkldnn._linear_pointwise

        def onednn(x: torch.Tensor) -> torch.Tensor:
            return op(x, packed, b, attr, [], "")

        return onednn
    if backend == "fbgemm-int8-dynamic":
        import warnings

        q, scale = quantize_per_channel(weight)
        with warnings.catch_warnings():  # quantized tensors are deprecated; the fbgemm kernels are not
            warnings.simplefilter("ignore")
            qt = torch._make_per_channel_quantized_tensor(q, scale.double(), torch.zeros(q.shape[0], dtype=torch.long), 0)
            packed = torch.ops.quantized.linear_prepack(qt, bias)
        op = torch.ops.quantized.linear_relu_dynamic if relu else torch.ops.quantized.linear_dynamic

        def fbgemm(x: torch.Tensor) -> torch.Tensor:
            # reduce_range=False: Zen 4 has VNNI (no int16 saturation in u8*s8 pairs)
            return op(x, packed, False)

        return fbgemm
    if backend == "aten-int8-weight-only":
        q, scale = quantize_per_channel(weight)
        s = scale.to(torch.bfloat16)
        bb = bias.to(torch.bfloat16)

        def weight_only(x: torch.Tensor) -> torch.Tensor:
            y = torch._weight_int8pack_mm(x.to(torch.bfloat16), q, s).add_(bb).float()
            return torch.relu_(y) if relu else y

        return weight_only
    if backend == "dequantized-int8":
        q, scale = quantize_per_channel(weight)
        weight = q.float() * scale[:, None]
    w_t = weight.to(device, act).contiguous().t()  # a view, made once: x @ W.T
    b = bias.to(device, act)
    if relu and hasattr(torch, "_addmm_activation"):
        fused = torch._addmm_activation  # addmm + ReLU (a cuBLASLt epilogue on CUDA)

        def plain_relu(x: torch.Tensor) -> torch.Tensor:
            return fused(b, x, w_t)

        return plain_relu
    addmm = torch.addmm

    def plain(x: torch.Tensor) -> torch.Tensor:
        y = addmm(b, x, w_t)
        return torch.relu_(y) if relu else y

    return plain
