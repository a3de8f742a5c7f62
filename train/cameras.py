"""Virtual cameras: seeded intrinsics and extrinsics, projection with lens distortion,
screen normalisation and detector-like corruption of the 2D keypoints.

Conventions: world frame Y up (as the mocap); camera frame x right, y down, z forward,
metres; pixels with the origin at the top-left image corner. The distortion model is
Brown-Conrady as in the paper (radial k1, k2, k3; tangential p1, p2), applied to the
normalised image-plane coordinates before the focal length.

Everything here is batched torch, so training can draw a fresh camera for every
window on the GPU; :func:`sample_cameras` takes a ``torch.Generator`` for seeding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from .corruption import DetectorNoise, detector_corrupt


def _gen_device(generator: torch.Generator | None, fallback: torch.device) -> torch.device:
    """Draw random numbers where the generator lives (a CUDA generator keeps them on the GPU)."""
    return generator.device if generator is not None else fallback


@dataclass
class Cameras:
    """A batch of N pinhole cameras with distortion. All tensors have leading dim N.

    ``rotation`` (N, 3, 3) and ``translation`` (N, 3) map world points to the camera
    frame: ``X_cam = R @ X_world + t``. ``focal`` and ``center`` are (N, 2) pixels,
    ``radial`` (N, 3), ``tangential`` (N, 2), ``size`` (N, 2) image width and height.
    """

    rotation: torch.Tensor
    translation: torch.Tensor
    focal: torch.Tensor
    center: torch.Tensor
    radial: torch.Tensor
    tangential: torch.Tensor
    size: torch.Tensor

    def __len__(self) -> int:
        return self.rotation.shape[0]

    def to(self, device: torch.device | str) -> "Cameras":
        return Cameras(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __getitem__(self, index) -> "Cameras":
        return Cameras(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def intrinsics_normalized(self) -> torch.Tensor:
        """(N, 9) intrinsics in normalised screen units, as the trajectory projection uses:
        focal (2), centre (2), k1 k2 k3, p1 p2."""
        w = self.size[:, :1]
        f = self.focal / w * 2.0
        c = torch.stack([self.center[:, 0] / w[:, 0] * 2 - 1, self.center[:, 1] / w[:, 0] * 2 - self.size[:, 1] / w[:, 0]], dim=1)
        return torch.cat([f, c, self.radial, self.tangential], dim=1)


def look_at(eye: torch.Tensor, target: torch.Tensor, roll: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """World->camera rotation and translation for cameras at ``eye`` looking at ``target``.

    World is Y up; the camera's y axis points down and z forward. ``roll`` (radians)
    rotates the camera about its viewing axis.
    """
    forward = target - eye
    forward = forward / forward.norm(dim=-1, keepdim=True)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype, device=eye.device).expand_as(forward)
    right = torch.linalg.cross(forward, up, dim=-1)  # z x up = camera x (right)
    right = right / right.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    down = torch.linalg.cross(forward, right, dim=-1)
    rot = torch.stack([right, down, forward], dim=-2)  # rows: camera axes in world coords
    if roll is not None:
        c, s = torch.cos(roll), torch.sin(roll)
        z, o = torch.zeros_like(c), torch.ones_like(c)
        rz = torch.stack([torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1), torch.stack([z, z, o], -1)], -2)
        rot = rz @ rot
    trans = -(rot @ eye[..., None])[..., 0]
    return rot, trans


@dataclass(frozen=True)
class CameraRanges:
    """Ranges the training cameras are drawn from (uniform unless stated)."""

    distance: tuple[float, float] = (3.0, 8.0)  # metres from the subject
    height: tuple[float, float] = (0.3, 2.6)  # camera height above the floor, metres
    target_height: tuple[float, float] = (0.7, 1.3)  # height of the aim point, metres
    fov_deg: tuple[float, float] = (40.0, 80.0)  # horizontal field of view
    roll_deg: float = 4.0  # std of the roll
    center_jitter: float = 0.03  # std of the principal point offset, fraction of width
    aim_jitter: float = 0.4  # std of the aim point offset from the subject, metres
    radial_std: tuple[float, float, float] = (0.08, 0.04, 0.01)
    tangential_std: float = 0.002
    sizes: tuple[tuple[int, int], ...] = ((640, 480), (1280, 720), (1920, 1080), (1000, 1000), (720, 1280))


def sample_cameras(
    subject_position: torch.Tensor,
    generator: torch.Generator | None = None,
    ranges: CameraRanges = CameraRanges(),
    distortion: bool = True,
) -> Cameras:
    """One random camera per row of ``subject_position`` (N, 3) world metres (floor at y=0).

    Cameras stand at a random yaw around the subject, at a random distance and height,
    and aim near the subject's body with a random field of view and image size.
    """
    n = subject_position.shape[0]
    dev = subject_position.device
    dtype = subject_position.dtype

    def uniform(lo: float, hi: float, shape=(n,)) -> torch.Tensor:
        return torch.rand(shape, generator=generator, dtype=dtype, device=_gen_device(generator, dev)).to(dev) * (hi - lo) + lo

    def normal(std: float, shape=(n,)) -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=dtype, device=_gen_device(generator, dev)).to(dev) * std

    yaw = uniform(0.0, 2 * math.pi)
    dist = uniform(*ranges.distance)
    target = subject_position.clone()
    target[:, 1] = uniform(*ranges.target_height)
    target = target + normal(ranges.aim_jitter, (n, 3)) * torch.tensor([1.0, 0.3, 1.0], device=dev, dtype=dtype)
    eye = torch.stack(
        [subject_position[:, 0] + dist * torch.sin(yaw), uniform(*ranges.height), subject_position[:, 2] + dist * torch.cos(yaw)],
        dim=1,
    )
    rot, trans = look_at(eye, target, torch.deg2rad(normal(ranges.roll_deg)))
    size_idx = torch.randint(len(ranges.sizes), (n,), generator=generator, device=_gen_device(generator, dev)).to(dev)
    size = torch.tensor(ranges.sizes, dtype=dtype, device=dev)[size_idx]
    fov = torch.deg2rad(uniform(*ranges.fov_deg))
    fx = size[:, 0] / 2 / torch.tan(fov / 2)
    focal = torch.stack([fx, fx * (1 + normal(0.01))], dim=1)
    center = size / 2 + normal(ranges.center_jitter, (n, 2)) * size[:, :1]
    if distortion:
        radial = normal(1.0, (n, 3)) * torch.tensor(ranges.radial_std, dtype=dtype, device=dev)
        tangential = normal(ranges.tangential_std, (n, 2))
    else:
        radial = torch.zeros(n, 3, dtype=dtype, device=dev)
        tangential = torch.zeros(n, 2, dtype=dtype, device=dev)
    return Cameras(rot, trans, focal, center, radial, tangential, size)


def fixed_cameras(subject_position: torch.Tensor, count: int = 4, distance: float = 6.0,
                  height: float = 1.6, size: tuple[int, int] = (1280, 720), fov_deg: float = 60.0) -> Cameras:
    """The evaluation protocol: ``count`` cameras evenly spaced in yaw (starting at 0)
    around ``subject_position`` (3,), at ``distance`` metres and ``height`` metres,
    aimed at 1.0 m above the floor there, 1280x720, 60 degrees horizontal field of view,
    no distortion. Deterministic: no randomness at all."""
    yaw = torch.arange(count, dtype=torch.float64) * (2 * math.pi / count)
    p = subject_position.double().reshape(1, 3).expand(count, 3)
    eye = torch.stack([p[:, 0] + distance * torch.sin(yaw), torch.full((count,), height, dtype=torch.float64),
                       p[:, 2] + distance * torch.cos(yaw)], dim=1)
    target = p.clone()
    target[:, 1] = 1.0
    rot, trans = look_at(eye, target)
    w, h = size
    fx = w / 2 / math.tan(math.radians(fov_deg) / 2)
    tensor = lambda v: torch.tensor(v, dtype=torch.float64).expand(count, len(v)).clone()  # noqa: E731
    return Cameras(rot, trans, tensor([fx, fx]), tensor([w / 2, h / 2]), tensor([0.0, 0.0, 0.0]),
                   tensor([0.0, 0.0]), tensor([float(w), float(h)]))


def world_to_camera(points: torch.Tensor, cameras: Cameras) -> torch.Tensor:
    """(N, ..., 3) world metres -> camera frame metres, one camera per leading index."""
    n = points.shape[0]
    flat = points.reshape(n, -1, 3)
    out = flat @ cameras.rotation.transpose(1, 2).to(points.dtype) + cameras.translation[:, None].to(points.dtype)
    return out.reshape(points.shape)


def distort(xy: torch.Tensor, radial: torch.Tensor, tangential: torch.Tensor) -> torch.Tensor:
    """Brown-Conrady distortion of normalised image-plane points (..., 2).

    ``radial`` (..., 3) and ``tangential`` (..., 2) broadcast against ``xy``'s leading dims.
    """
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    k1, k2, k3 = radial[..., 0], radial[..., 1], radial[..., 2]
    p1, p2 = tangential[..., 0], tangential[..., 1]
    radial_factor = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
    xd = x * radial_factor + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial_factor + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return torch.stack([xd, yd], dim=-1)


def project_to_pixels(points_cam: torch.Tensor, cameras: Cameras, min_depth: float = 0.1) -> torch.Tensor:
    """(N, ..., 3) camera-frame metres -> (N, ..., 2) pixels, with distortion.

    Depth is clamped at ``min_depth`` so points behind the camera stay finite.
    """
    n = points_cam.shape[0]
    flat = points_cam.reshape(n, -1, 3)
    xy = flat[..., :2] / flat[..., 2:].clamp_min(min_depth)
    c = cameras
    # Only the well-behaved core of the polynomial is used: clamp r^2 so extreme
    # distortion parameters cannot fold points back across the image.
    r = xy.norm(dim=-1, keepdim=True)
    xy = xy * (r.clamp(max=1.5) / r.clamp_min(1e-12))
    xy = distort(xy, c.radial[:, None].to(xy.dtype), c.tangential[:, None].to(xy.dtype))
    px = xy * c.focal[:, None].to(xy.dtype) + c.center[:, None].to(xy.dtype)
    return px.reshape(points_cam.shape[:-1] + (2,))


def normalize_pixels(px: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`model.normalization.normalize_screen` with per-row sizes.

    ``px`` (N, ..., 2), ``size`` (N, 2) width and height.
    """
    n = px.shape[0]
    shape = (n,) + (1,) * (px.dim() - 2)
    w = size[:, 0].reshape(shape).to(px.dtype)
    h = size[:, 1].reshape(shape).to(px.dtype)
    return torch.stack([px[..., 0] / w * 2 - 1, px[..., 1] / w * 2 - h / w], dim=-1)


def project_normalized(points_cam: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Projection in normalised screen units, differentiable, for back-projection training.

    ``points_cam`` (N, ..., 3) camera-frame metres, ``intrinsics`` (N, 9) from
    :meth:`Cameras.intrinsics_normalized`. Returns (N, ..., 2) normalised coordinates.
    """
    n = points_cam.shape[0]
    flat = points_cam.reshape(n, -1, 3)
    xy = flat[..., :2] / flat[..., 2:].clamp_min(0.1)
    r = xy.norm(dim=-1, keepdim=True)
    xy = xy * (r.clamp(max=1.5) / r.clamp_min(1e-12))
    f, c = intrinsics[:, None, 0:2], intrinsics[:, None, 2:4]
    xy = distort(xy, intrinsics[:, None, 4:7], intrinsics[:, None, 7:9])
    return (xy * f + c).reshape(points_cam.shape[:-1] + (2,))


@dataclass(frozen=True)
class Corruption:
    """Detector-like corruption of 2D keypoints; everything off by default.

    ``noise_px``: std of Gaussian pixel noise (per image of width 1000 px; scaled with
    the image; with ``random_strength`` each sequence gets a std drawn uniformly from
    [0, noise_px], so a model sees clean and noisy input alike). ``missing_prob``: chance that a joint is missing in a frame; a missing
    joint is filled as the stream fills it (holding its last good value).
    ``swap_prob``: chance per frame that left and right are swapped.
    ``detector``: the time-correlated, body-relative detector model of
    :mod:`train.corruption` (applied first, to the clean keypoints; see docs/corruption.md).
    """

    noise_px: float = 0.0
    missing_prob: float = 0.0
    swap_prob: float = 0.0
    random_strength: bool = False  # training: each sample's noise std drawn from [0, noise_px]
    detector: DetectorNoise | None = None

    @property
    def active(self) -> bool:
        return (self.noise_px > 0 or self.missing_prob > 0 or self.swap_prob > 0
                or (self.detector is not None and self.detector.active))


def corrupt_keypoints(px: torch.Tensor, size: torch.Tensor, corruption: Corruption, flip_perm: torch.Tensor,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply :class:`Corruption` to (N, T, J, 2) pixel sequences (returns a new tensor)."""
    if not corruption.active:
        return px
    out = px.clone()
    n, t, j, _ = px.shape
    dev = px.device

    def rand(*shape):
        return torch.rand(shape, generator=generator, device=_gen_device(generator, dev)).to(dev)

    if corruption.detector is not None:
        out = detector_corrupt(out, corruption.detector, flip_perm, generator)
    if corruption.swap_prob > 0:
        swap = rand(n, t) < corruption.swap_prob
        out[swap] = out[swap][:, flip_perm]
    if corruption.noise_px > 0:
        scale = (size[:, 0] / 1000.0 * corruption.noise_px).to(px.dtype).reshape(n, 1, 1, 1)
        if corruption.random_strength:
            scale = scale * rand(n).to(px.dtype).reshape(n, 1, 1, 1)
        out = out + torch.randn((n, t, j, 2), generator=generator, device=_gen_device(generator, dev)).to(dev).to(px.dtype) * scale
    if corruption.missing_prob > 0:
        missing = rand(n, t, j) < corruption.missing_prob
        missing[:, 0] = False  # the first frame of a window is always observed
        # hold the last good value, as the live stream does: index of the last observed frame
        frame = torch.arange(t, device=dev).reshape(1, t, 1).expand(n, t, j)
        last_seen = torch.where(missing, torch.zeros_like(frame), frame).cummax(dim=1).values
        out = torch.gather(out, 1, last_seen[..., None].expand(n, t, j, 2))
    return out
