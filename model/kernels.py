"""Weight formats: how a folded (C_out, C_in) matrix is stored and multiplied.

:func:`pack_linear` is the one swappable place that decides it; the precisions and
their device rules come from :mod:`model.precision`.
"""

from __future__ import annotations

import torch

from .precision import Precision, get_precision

# Chosen by measurement on the project's 2-core AMD EPYC (Zen 4) machines, batch 1, the
# 16.95M weights of the 243-frame/1024-channel model, torch 2.13:
#
#   F.linear fp32 (MKL gemv)                 ~4.0 ms  (~17 GB/s: MKL's gemv reads slowly)
#   oneDNN prepacked fp32 (_linear_pointwise) ~2.2 ms  (~31 GB/s: at the read-bandwidth floor)
#   oneDNN prepacked bf16                     ~0.8 ms
#   fbgemm dynamic int8, per-channel weights  ~0.3 ms  (17 MB: the weights stay in L3)
#   _weight_int8pack_mm (bf16 activations)    ~0.5 ms
#   torchao 0.18 int8                         slower than fp32
#
# Each backend is probed once and the next one down is used when an op is missing, so a
# torch without oneDNN or fbgemm still runs (slower), with the same numerics contract.

# Below this many fp32 weights a oneDNN call's fixed cost (~15 us on these machines,
# against ~4 us for aten's addmm) outweighs its faster inner loop, so such layers (the
# expand and shrink convs of the 1024-channel models) run as plain addmm.
SMALL_LAYER = 256 * 1024

# Which fp32 CPU kernel is faster for the larger layers depends on the CPU: on the Zen 4
# machines above oneDNN's prepacked gemv read ~1.8x faster than MKL; on the 2-core Intel
# Xeon VM of a later session (2 MB L2 per core, a large L3) MKL's addmm stepped the shipped
# model faster at batch 1 (0.76 vs 1.05 ms for pose + trajectory network) and about as fast
# at 16-64 in isolation (and cheaper in serve's loop). So :func:`fp32_kernel` times both at
# batch 1 once per process and layer shape and keeps oneDNN unless addmm is clearly faster. ``POSELIFT_FP32_KERNEL`` = ``onednn`` or
# ``aten`` fixes the choice (no timing), e.g. to compare the two or pin a deployment.
FP32_KERNEL_ENV = "POSELIFT_FP32_KERNEL"
ATEN_MARGIN = 0.85  # addmm must take at most this share of oneDNN's time to be chosen
_fp32_choice: dict[tuple[int, int, int], str] = {}  # (out, in, torch threads) -> kernel


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


def linear_backend(precision: str | Precision, device: torch.device | str) -> str:
    """Name of the kernel :func:`pack_linear` uses for ``precision`` on ``device``."""
    device = torch.device(device)
    precision = get_precision(precision, device).name
    if device.type == "cuda":
        return f"cublas-{precision}"
    if precision == "int8":
        if _fbgemm_ok():
            return "fbgemm-int8-dynamic"
        if _has_op("aten", "_weight_int8pack_mm"):
            return "aten-int8-weight-only"
        return "dequantized-int8"
    return f"onednn-{precision}" if _onednn_ok() else f"aten-{precision}"


def layer_backend(out_features: int, in_features: int, precision: str | Precision, device: torch.device | str) -> str:
    """The kernel :func:`pack_linear` uses for an (out, in) layer: :func:`linear_backend`,
    except that fp32 CPU layers run as aten's addmm when small (:data:`SMALL_LAYER`) or
    where :func:`fp32_kernel` measured addmm faster on this CPU."""
    device = torch.device(device)
    backend = linear_backend(precision, device)
    if backend == "onednn-fp32" and (out_features * in_features <= SMALL_LAYER
                                     or fp32_kernel(out_features, in_features) == "aten"):
        return "aten-fp32"
    return backend


def pack_linear(
    weight: torch.Tensor, bias: torch.Tensor, precision: str | Precision, device: torch.device | str, relu: bool,
    batch_hint: int = 1,
):
    """Return ``f(x) -> relu?(x @ weight.T + bias)`` in the chosen weight format.

    ``weight`` (C_out, C_in) and ``bias`` (C_out,) are the fp32 folded parameters; ``x`` is
    (b, C_in) in the precision's activation dtype and so is the result. This is the single
    function to swap when a faster kernel appears.
    """
    device = torch.device(device)
    prec = get_precision(precision, device)
    backend = layer_backend(weight.shape[0], weight.shape[1], prec, device)
    weight = weight.detach().float().to(device)
    bias = bias.detach().float().to(device)
    act = prec.activation_dtype
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


def fp32_kernel(out_features: int, in_features: int) -> str:
    """"onednn" or "aten": the fp32 CPU kernel for an (out, in) layer (see :data:`FP32_KERNEL_ENV`).

    Chosen once per process, layer shape and torch thread count by timing both at batch 1,
    where they differ most and the margin is stable from one process to the next; the
    choice then holds for every batch size, so that all lifters of a process, and the
    workers of one ``serve --workers``, compute alike. On the Xeon VM addmm stepped the
    shipped model's two networks in 0.76 instead of 1.05 ms at batch 1 and cost 10-20 % less
    CPU per pose in ``serve``'s loop at 64 and 256 streams (bench/results/server_cpu.md); on
    Zen 4 oneDNN won at batch 1. (Timing at the batch hint instead was unstable: at 16-64 the two
    were within a few per cent in isolation and a start-up timing chose differently from one
    process to the next.)"""
    import os

    forced = os.environ.get(FP32_KERNEL_ENV, "").strip().lower()
    if forced in ("onednn", "aten"):
        return forced
    if forced:
        raise ValueError(f"{FP32_KERNEL_ENV} must be 'onednn' or 'aten', got {forced!r}")
    key = (int(out_features), int(in_features), torch.get_num_threads())
    if key not in _fp32_choice:
        _fp32_choice[key] = _time_fp32_kernels(out_features, in_features)
    return _fp32_choice[key]


PROBE_WEIGHT_BYTES = 8 * 2**20  # the probe steps enough copies of a layer to read this much, as a model does


def _time_fp32_kernels(out_features: int, in_features: int, calls: int = 20, rounds: int = 3) -> str:
    """The faster at batch 1 of oneDNN's linear (weights packed for batch 1) and aten's
    addmm (+ReLU) on random data:
    per kernel its best of ``rounds`` timings of ``calls`` passes, the kernels taking turns
    (tens of ms per shape, once per process). A pass runs several copies of the layer,
    ``PROBE_WEIGHT_BYTES`` of weights in all, one after the other, as a model step reads
    them: a lone layer would stay in the CPU's L2 cache, a model's layers together do not."""
    import time

    g = torch.Generator().manual_seed(0)
    copies = max(1, PROBE_WEIGHT_BYTES // (4 * out_features * in_features))
    weights = [torch.randn(out_features, in_features, generator=g) / in_features ** 0.5 for _ in range(copies)]
    b = torch.zeros(out_features)
    packed = [torch.ops.mkldnn._reorder_linear_weight(w, 1) for w in weights]
    transposed = [w.t() for w in weights]

    def onednn(x: torch.Tensor) -> None:
        for p in packed:
            torch.ops.mkldnn._linear_pointwise(x, p, b, "relu", [], "")

    def aten(x: torch.Tensor) -> None:
        for w_t in transposed:
            torch._addmm_activation(b, x, w_t)

    kernels = {"onednn": onednn, "aten": aten}
    best = dict.fromkeys(kernels, float("inf"))
    x = torch.randn(1, in_features, generator=g)
    with torch.inference_mode():
        for _ in range(rounds):
            for name, f in kernels.items():
                f(x)
                start = time.perf_counter()
                for _ in range(calls):
                    f(x)
                best[name] = min(best[name], time.perf_counter() - start)
    return "aten" if best["aten"] <= ATEN_MARGIN * best["onednn"] else "onednn"
