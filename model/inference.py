"""Offline lifting of whole sequences, with the padding convention of the streamer."""

from __future__ import annotations

import torch

from .device import resolve_device
from .folding import fold_model
from .precision import Precision, get_precision
from .streaming import StreamingLifter
from .temporal import _TemporalBase


def edge_pad(keypoints: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """(B, T, ...) -> (B, before + T + after, ...): frame 0 and the last frame repeated."""
    first = keypoints[:, :1].expand(-1, before, *keypoints.shape[2:])
    last = keypoints[:, -1:].expand(-1, after, *keypoints.shape[2:])
    return torch.cat([first, keypoints, last], dim=1)


@torch.inference_mode()
def lift_sequence(model: _TemporalBase, keypoints: torch.Tensor, device: str | torch.device | None = "cpu",
                  precision: str | Precision = "fp32", flip_tta: bool = False) -> torch.Tensor:
    """Offline lifting of whole sequences with the padding convention of the streamer.

    ``keypoints`` (B, T, J, F) -> (B, T, J_out, 3): the sequence is edge-padded with
    ``past_frames`` copies of frame 0 before it and ``future_frames`` copies of its last
    frame after it (causal: ``RF - 1`` before, none after). In fp32 the BN-folded network
    runs as one convolution over the sequence without autograd. Other precisions
    (``bf16``, ``int8``, ``fp16`` on CUDA) stream the sequence through a
    :class:`StreamingLifter` of that precision, which gives the same poses as the live
    path would. ``flip_tta``: average with the un-mirrored poses of the mirror image
    (model/mirror.py; H36M-17 input), as ``MirrorAveragedLifter`` does live.
    """
    if flip_tta:
        from .mirror import average_with_mirror, mirror_keypoints, output_flip_permutation
        from .skeleton import flip_permutation

        both = _lift(model, torch.cat([keypoints, mirror_keypoints(keypoints, flip_permutation())]), device, precision)
        return average_with_mirror(both, output_flip_permutation(model.config.num_joints_out))
    return _lift(model, keypoints, device, precision)


def _lift(model: _TemporalBase, keypoints: torch.Tensor, device: str | torch.device | None,
          precision: str | Precision) -> torch.Tensor:
    if get_precision(precision).name != "fp32":
        batch, frames = keypoints.shape[:2]
        lifter = StreamingLifter(model, batch_size=batch, device=device, precision=precision)
        steps = [lifter.step(keypoints[:, t]).cpu() for t in range(frames)]
        tails = lifter.flush()
        lat = lifter.latency_frames
        outs = torch.stack(steps, dim=1)
        return torch.stack([torch.cat([outs[b, lat:], tails[b].cpu()]) for b in range(batch)])
    net = fold_model(model).to(resolve_device(device))
    x = keypoints.to(net.layers[0].weight.device, torch.float32)
    return net(edge_pad(x, model.config.past_frames, model.config.future_frames))
