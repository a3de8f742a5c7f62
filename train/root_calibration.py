"""Post-training calibration of the root-trajectory model (see :func:`calibrate`)."""

from __future__ import annotations

import torch

from poselift.model import TemporalModel

from .generators import WindowSampler


def depth_log_residuals(model: TemporalModel, sampler: WindowSampler, batches: int, batch_size: int,
                        gen: torch.Generator) -> torch.Tensor:
    """log(predicted q) - log(true q) over ``batches`` fresh batches, eval mode."""
    from .trajectory import depth_target

    net = model.strided_twin()
    model.eval()
    out = []
    with torch.no_grad():
        for _ in range(batches):
            b = sampler.sample(batch_size, gen)
            out.append(net(b.inputs[b.valid])[:, 0, 0, 2] - torch.log(depth_target(b)[b.valid][:, 0]))
    return torch.cat(out)


@torch.no_grad()
def calibrate(model: TemporalModel, sampler: WindowSampler, batches: int = 20, batch_size: int = 1024,
              seed: int = 12345) -> dict[str, float]:
    """Post-training calibration on *training* data, as the model will run (eval mode).

    Dropout shifts the statistics a layer sees between training and inference; the pose
    model's root-relative output barely notices, but an absolute scale does (we saw
    eval-mode depth 10-15% short on training windows). So: (1) the batch-norm running
    statistics are re-estimated with dropout off (cumulative average over ``batches``
    batches), then (2) the z-channel bias of the output layer is moved by the median
    log-depth residual over fresh batches. Returns the residual before and after.
    """
    gen = torch.Generator(device=sampler.device).manual_seed(seed)
    net = model.strided_twin()
    bns = [model.expand_bn, *model.layers_bn]

    def residuals() -> torch.Tensor:
        return depth_log_residuals(model, sampler, max(1, batches // 2), batch_size, gen)

    before = residuals()
    model.eval()
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
        bn.train()
    for _ in range(batches):
        net(sampler.sample(batch_size, gen).inputs)
    for bn, mom in zip(bns, momenta):
        bn.momentum = mom
    mid = residuals()
    shift = mid.median()
    model.shrink.bias[2::3] -= shift  # every output joint's z channel
    after = residuals()
    model.eval()
    return {"median_before": float(before.median()), "median_after_bn": float(mid.median()),
            "bias_shift": float(shift), "median_after": float(after.median()),
            "abs_before": float(before.abs().mean()), "abs_after": float(after.abs().mean())}

