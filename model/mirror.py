"""Test-time flip averaging: lift a sequence and its mirror image, and average the two.

The paper's test-time augmentation. The mirror image of a person is another plausible
person (left and right swapped, x negated in normalised screen coordinates, which are
centred on the image); the model errs differently on the two, so the mean of the pose
and the un-mirrored pose of the mirror image is more accurate and steadier than either
(measured in README, "Look-ahead or smoothing?"). It costs a second pass of the network.

Offline, :func:`mirror_keypoints` / :func:`unmirror_poses` wrap any lifting call. Live,
:class:`MirrorAveragedLifter` gives every stream slot of a :class:`StreamingLifter` a twin
slot that streams the mirror image, so the average is exact frame by frame, with the
same latency, and streams still start, flush and reset independently.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .skeleton import flip_permutation
from .streaming import StreamingLifter


def _as_perm(perm: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(perm, torch.Tensor):
        return perm
    return torch.as_tensor(np.asarray(perm, dtype=np.int64))


def mirror_keypoints(keypoints: torch.Tensor, perm: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
    """The mirror image of (..., J, 2) normalised screen keypoints: left and right joints
    swapped by ``perm``, x negated."""
    sign = torch.tensor([-1.0, 1.0], dtype=keypoints.dtype, device=keypoints.device)
    return keypoints[..., _as_perm(perm).to(keypoints.device), :] * sign


def unmirror_poses(poses: torch.Tensor, perm: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
    """Map (..., J, 3) camera-frame poses lifted from a mirror image back to the original
    image: left and right swapped by ``perm``, x negated."""
    sign = torch.tensor([-1.0, 1.0, 1.0], dtype=poses.dtype, device=poses.device)
    return poses[..., _as_perm(perm).to(poses.device), :] * sign


def average_with_mirror(both: torch.Tensor, output_perm: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
    """The flip average of ``both``: its first half lifted from the input, its second half
    (as many rows) from the mirror image, stacked along the first dimension."""
    rows = len(both) // 2
    return (both[:rows] + unmirror_poses(both[rows:], output_perm)) * 0.5


def output_flip_permutation(num_joints_out: int) -> np.ndarray:
    """The left/right permutation of a model's output: H36M-17 joints, or a trajectory's
    single joint (itself)."""
    if num_joints_out == 17:
        return flip_permutation()
    if num_joints_out == 1:
        return np.zeros(1, dtype=np.int64)
    raise ValueError(f"no left/right permutation known for {num_joints_out} output joints")


class MirrorAveragedLifter:
    """A :class:`StreamingLifter` of ``2 n`` slots presented as one of ``n`` slots whose
    poses are flip-averaged: slot ``s`` streams the input, slot ``s + n`` its mirror image.

    Args:
        inner: the lifter, built with twice the wanted number of stream slots.
        input_perm: the left/right permutation of the model's input joints (H36M-17 by
            default; see :func:`model.skeleton.model_flip_permutation` for other layouts).
    """

    def __init__(self, inner: StreamingLifter, input_perm: Sequence[int] | np.ndarray | None = None) -> None:
        if inner.batch_size % 2:
            raise ValueError("a mirror-averaged lifter needs an even number of inner slots (two per stream)")
        self.inner = inner
        self.batch_size = inner.batch_size // 2
        # on the lifter's device, so that a step copies nothing to it
        self.input_perm = _as_perm(flip_permutation() if input_perm is None else input_perm).to(inner.device)
        self.output_perm = _as_perm(output_flip_permutation(inner.config.num_joints_out)).to(inner.device)
        if len(self.input_perm) != inner.config.num_joints_in:
            raise ValueError(f"input_perm has {len(self.input_perm)} joints, the model takes "
                             f"{inner.config.num_joints_in}")

    # The properties the streaming engine reads, as the inner lifter has them.
    @property
    def config(self):
        return self.inner.config

    @property
    def device(self) -> torch.device:
        return self.inner.device

    @property
    def precision(self) -> str:
        return self.inner.precision

    @property
    def backend(self) -> str:
        return self.inner.backend

    @property
    def latency_frames(self) -> int:
        return self.inner.latency_frames

    @property
    def receptive_field(self) -> int:
        return self.inner.receptive_field

    def _pairs(self, indices: Sequence[int] | None) -> tuple[list[int], list[int]]:
        idx = list(range(self.batch_size)) if indices is None else [int(i) for i in indices]
        if any(not 0 <= i < self.batch_size for i in idx):
            raise ValueError(f"stream indices must be in [0, {self.batch_size}), got {idx}")
        return idx, idx + [i + self.batch_size for i in idx]

    def reset(self, indices: Sequence[int] | None = None) -> None:
        """Start the given streams (all when None) afresh, with their mirror twins."""
        self.inner.reset(None if indices is None else self._pairs(indices)[1])

    def frames_seen(self, indices: Sequence[int] | None = None) -> torch.Tensor:
        return self.inner.frames_seen(self._pairs(indices)[0])

    def step(self, x: torch.Tensor, indices: Sequence[int] | None = None) -> torch.Tensor:
        """:meth:`StreamingLifter.step`, flip-averaged: (b, J_in, F) -> (b, J_out, 3)."""
        _, both = self._pairs(indices)
        x = x.to(self.input_perm.device)
        inner_idx = None if indices is None else both  # all slots in order: the inner fast path
        y = self.inner.step(torch.cat([x, mirror_keypoints(x, self.input_perm)]), inner_idx)
        return average_with_mirror(y, self.output_perm)

    def flush(self, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
        """:meth:`StreamingLifter.flush`, flip-averaged; the streams are reset afterwards."""
        idx, both = self._pairs(indices)
        tails = self.inner.flush(both)
        return [average_with_mirror(torch.cat([tails[k], tails[k + len(idx)]]), self.output_perm)
                for k in range(len(idx))]
