"""Batches for training and whole sequences for evaluation.

All takes are concatenated into one tensor on the training device; a batch is a set
of target frames drawn across takes. Window indices are clamped to each take's first
and last frame, which *is* edge (replicate) padding at sequence boundaries, the same
convention the streaming lifter uses. The shift is explicit: a window has
``receptive_field - 1 - future_frames`` frames before its target frame and
``future_frames`` after it (a causal window ends at its target, a symmetric one is
centred on it).

Each window is seen through a freshly drawn virtual camera (see train/cameras.py), so
the model sees the motion from every direction, distance, lens and image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from poselift.model.skeleton import flip_permutation

from .cameras import (_gen_device, CameraRanges, Cameras, Corruption, corrupt_keypoints, normalize_pixels, project_to_pixels,
                      sample_cameras, world_to_camera)
from .dataset import Take


@dataclass
class Batch:
    """One training batch. ``inputs`` (B, L, 17, 2) normalised screen coordinates;
    ``targets`` (B, K, 17, 3) root-relative camera-frame metres for the K output frames;
    ``trajectory`` (B, K, 1, 3) the root in camera metres; ``inputs_at_targets``
    (B, K, 17, 2) the 2D input at the output frames (what back-projection compares to);
    ``intrinsics`` (B, 9) normalised; ``valid`` (B,) bool: all points in front of the camera."""

    inputs: torch.Tensor
    targets: torch.Tensor
    trajectory: torch.Tensor
    inputs_at_targets: torch.Tensor
    intrinsics: torch.Tensor
    valid: torch.Tensor


class WindowSampler:
    """Draws training batches from a list of takes.

    Args:
        receptive_field: input frames per output frame.
        causal: causal windows end at the target frame; symmetric ones are centred on it.
        future_frames: frames after the target frame (the model's ``future_frames``);
            overrides ``causal`` when given.
        chunk: consecutive output frames per sample (1 for the strided twin; more for
            training the dilated model on chunks, which costs less per output frame).
        flip: mirror half of the samples (image x, left/right joints and camera).
        corruption: detector-like 2D corruption during training.
    """

    def __init__(self, takes: list[Take], receptive_field: int, causal: bool, chunk: int = 1,
                 device: str | torch.device = "cpu", flip: bool = True, corruption: Corruption = Corruption(),
                 camera_ranges: CameraRanges = CameraRanges(), distortion: bool = True,
                 future_frames: int | None = None) -> None:
        if not takes:
            raise ValueError("no takes to sample from")
        self.device = torch.device(device)
        self.data = torch.cat([torch.from_numpy(t.positions) for t in takes]).to(self.device)
        lengths = torch.tensor([t.num_frames for t in takes])
        starts = torch.cumsum(lengths, 0) - lengths
        take_of_frame = torch.repeat_interleave(torch.arange(len(takes)), lengths)
        self.frame_start = starts[take_of_frame].to(self.device)  # first global frame of each frame's take
        self.frame_end = (starts + lengths - 1)[take_of_frame].to(self.device)
        self.num_frames = int(lengths.sum())
        self.rf = receptive_field
        self.causal = causal
        self.chunk = chunk
        self.flip = flip
        self.corruption = corruption
        self.camera_ranges = camera_ranges
        self.distortion = distortion
        self.flip_perm = torch.from_numpy(flip_permutation()).to(self.device)
        if future_frames is None:
            future_frames = 0 if causal else (receptive_field - 1) // 2
        self.left_pad = receptive_field - 1 - future_frames

    def batches_per_epoch(self, batch_size: int) -> int:
        """An epoch sees every training frame once as an output frame (in expectation)."""
        return max(1, self.num_frames // (batch_size * self.chunk))

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        first = torch.randint(self.num_frames, (batch_size,), generator=generator, device=_gen_device(generator, self.device)).to(self.device)
        return self.make_batch(first, generator)

    def make_batch(self, first_target: torch.Tensor, generator: torch.Generator | None) -> Batch:
        """Batch whose sample i has output frames first_target[i] .. + chunk - 1 (global frame ids)."""
        lo, hi = self.frame_start[first_target], self.frame_end[first_target]
        length = self.rf - 1 + self.chunk
        offsets = torch.arange(length, device=self.device) - self.left_pad
        window = (first_target[:, None] + offsets[None]).clamp(min=lo[:, None], max=hi[:, None])
        target_idx = torch.arange(self.chunk, device=self.device) + self.left_pad
        world = self.data[window]  # (B, L, 17, 3)
        b = world.shape[0]
        subject = world[:, self.left_pad, 0].clone()
        subject[:, 1] = 0.0
        cams: Cameras = sample_cameras(subject, generator, self.camera_ranges, self.distortion)
        cam = world_to_camera(world, cams)
        valid = (cam[..., 2] > 0.5).flatten(1).all(dim=1)
        px = project_to_pixels(cam, cams)
        px = corrupt_keypoints(px, cams.size, self.corruption, self.flip_perm, generator)
        inputs = normalize_pixels(px, cams.size).float()
        cam_t = cam[:, target_idx]
        trajectory = cam_t[:, :, :1].clone()
        targets = cam_t - trajectory
        intrinsics = cams.intrinsics_normalized().float()
        if self.flip:
            flip = torch.rand(b, generator=generator, device=_gen_device(generator, self.device)).to(self.device) < 0.5
            inputs[flip] = inputs[flip][:, :, self.flip_perm] * torch.tensor([-1.0, 1.0], device=self.device)
            targets[flip] = targets[flip][:, :, self.flip_perm] * torch.tensor([-1.0, 1.0, 1.0], device=self.device)
            trajectory[flip] = trajectory[flip] * torch.tensor([-1.0, 1.0, 1.0], device=self.device)
            # mirrored camera: the centre's x and the tangential p2 change sign (x -> -x)
            sign = torch.tensor([1.0, 1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0], device=self.device)
            intrinsics[flip] = intrinsics[flip] * sign
        return Batch(inputs, targets.float(), trajectory.float(), inputs[:, target_idx], intrinsics, valid)


def protocol_views(positions: np.ndarray, cameras: int = 4, distance: float = 6.0,
                   corruption: Corruption = Corruption(), seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A take (T, 17, 3) world metres seen by the fixed protocol cameras.

    ``cameras`` cameras (yaw 0, 90, 180, 270 degrees for four) at ``distance`` metres from
    the take's mean root position, 1.6 m high, aimed at 1.0 m, 1280x720, 60 degree field
    of view, no distortion; optional corruption is seeded. Returns per camera
    ``(keypoints (T, 17, 2) pixels, poses (T, 17, 3) root-relative camera metres)``.
    """
    from .cameras import fixed_cameras

    world = torch.from_numpy(positions).double()
    centre = world[:, 0].mean(dim=0)
    centre[1] = 0.0
    cams = fixed_cameras(centre, count=cameras, distance=distance)
    views = []
    g = torch.Generator().manual_seed(seed)
    perm = torch.from_numpy(flip_permutation())
    for c in range(cameras):
        cam = world_to_camera(world[None], cams[c:c + 1])
        px = corrupt_keypoints(project_to_pixels(cam, cams[c:c + 1]), cams.size[c:c + 1], corruption, perm, g)
        views.append((px[0], (cam - cam[:, :, :1])[0]))
    return views


def evaluation_views(take: Take, cameras_per_take: int = 4, distance: float = 6.0,
                     corruption: Corruption = Corruption(), seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The fixed evaluation protocol for one take (see :func:`protocol_views`). Returns per
    camera ``(keypoints (T, 17, 2) normalised, poses (T, 17, 3) root-relative camera metres)``."""
    size = torch.tensor([[1280.0, 720.0]], dtype=torch.float64)
    return [(normalize_pixels(px[None], size)[0].float(), pose.float())
            for px, pose in protocol_views(take.positions, cameras_per_take, distance, corruption, seed)]
