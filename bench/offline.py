"""Benchmark 3: offline throughput of the full-context model over long sequences.

* ``reference``: the plain model as the paper's code runs it: unfused batch norm (eval
  statistics), autograd on, fp32;
* ``folded_fp32``: batch norm folded into the convolutions, inference mode;
* ``folded_bf16`` (and ``folded_fp16`` on CUDA): the same in reduced precision. On the CPU
  bf16 uses Zen 4 / Sapphire Rapids bf16 dot products (twice the fp32 rate); on CUDA
  the tensor cores.

Each sequence of T frames is edge-padded by RF - 1 frames and lifted in one call (one
large temporal batch), as ``model.lift_sequence`` does; throughput is T / time.
"""

from __future__ import annotations

import torch

from poselift.model import TemporalModel, fold_model, get_precision

from .timing import interleave


def bench_offline(
    model: TemporalModel,
    lengths: tuple[int, ...] = (1000, 10000),
    device: str = "cpu",
    budget_s: float = 8.0,
    batch: int = 1,
    reference: bool = True,
) -> dict:
    rf = model.config.receptive_field
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # pick the fastest conv kernel per shape (warm-up call)
    net32 = fold_model(model).to(device, torch.float32)
    reduced = ["bf16"] if device == "cpu" else ["fp16", "bf16"]
    nets = {"folded_fp32": net32}
    for p in reduced:
        nets[f"folded_{p}"] = fold_model(model).to(device, get_precision(p).activation_dtype)
    ref_model = model.to(device).eval()
    out: dict = {}
    for t in lengths:
        x = torch.rand(batch, t + rf - 1, model.config.num_joints_in, model.config.in_features, device=device) - 0.5
        candidates = {}
        if reference:
            candidates["reference"] = lambda xx=x: ref_model(xx)  # autograd on, BN unfused
        for name, net in nets.items():
            def run(n=net, xx=x):
                with torch.inference_mode():
                    return n(xx)
            candidates[name] = run
        samples = interleave(candidates, budget_s=budget_s, warmup=1, min_samples=3, device=device)
        frames = t * batch
        row = {k: {"fps": frames / (s.quantile(0.5)), "p50_ms": s.p50_ms, "n": len(s.times_s)} for k, s in samples.items()}
        out[str(frames) if batch == 1 else f"{batch}x{t}"] = row
    model.to("cpu")
    return out


@torch.inference_mode()
def offline_accuracy(model: TemporalModel, device: str = "cpu", frames: int = 2000) -> dict:
    """Largest and mean per-joint deviation (mm) of the reduced-precision offline paths from fp32."""
    rf = model.config.receptive_field
    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(1, frames + rf - 1, model.config.num_joints_in, model.config.in_features, generator=gen) - 0.5).to(device)
    ref = fold_model(model).to(device, torch.float32)(x).float()
    out = {}
    for p in ("bf16", "fp16"):
        if not get_precision(p).runs_on(device):
            continue
        y = fold_model(model).to(device, get_precision(p).activation_dtype)(x).float()
        d = (y - ref).norm(dim=-1) * 1000
        out[p] = {"mean_mm": d.mean().item(), "max_mm": d.max().item()}
    return out
