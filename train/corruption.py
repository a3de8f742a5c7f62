"""2D corruption that errs the way a real keypoint detector does.

The older corruption (``train.cameras.Corruption``: white Gaussian pixel noise, missing
joints, rare one-frame left/right swaps) treats every frame and joint alike and the
mocap joint definitions as exact. A detector does neither: its errors drift slowly over
tens of frames (its tracker and smoothing carry them over), it places hips, shoulders,
neck and head at its own anatomical points, it errs most at wrists, ankles and the
head, and it fails now and then for a few frames (a jump, or left and right legs
swapped). A temporal model trained on white noise learns to average white noise away,
which buys nothing against correlated error; this module models the latter.

Everything is in body-relative units (torso lengths measured in the image, mid-hips to
mid-shoulders), so one parameter set fits every camera distance and image size.
Derived joints stay derived: the pelvis error is the mean of the hips' errors, spine and
thorax likewise, as a detector pipeline computes them (``model/skeleton.py``).

The model, its parameters and the evidence behind their defaults: docs/corruption.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from poselift.model.skeleton import H36M_JOINT_NAMES

_J = {name: i for i, name in enumerate(H36M_JOINT_NAMES)}

# Relative error scale of each joint's random noise (drift, white noise and jumps).
# Extremities and the face err most in detectors and in our MediaPipe measurements.
DEFAULT_JOINT_SCALE: tuple[float, ...] = (
    1.0,  # pelvis (derived: mean of the hips)
    1.0, 1.5, 2.0,  # right hip, knee, ankle
    1.0, 1.5, 2.0,  # left hip, knee, ankle
    1.0, 1.0,  # spine, thorax (derived)
    1.5, 1.5,  # nose, head (mid-eyes)
    1.0, 2.0, 3.0,  # left shoulder, elbow, wrist
    1.0, 2.0, 3.0,  # right shoulder, elbow, wrist
)

# Std of the per-sequence systematic offset of each joint along the torso axis, torso lengths.
DEFAULT_OFFSET_UP: tuple[float, ...] = (
    0.0, 0.06, 0.02, 0.02, 0.06, 0.02, 0.02, 0.0, 0.0, 0.10, 0.08, 0.05, 0.02, 0.02, 0.05, 0.02, 0.02)
# Std of the per-sequence systematic offset across the body (along the hip or shoulder
# line), as a fraction of that width; hips and shoulders move symmetrically (the width changes).
DEFAULT_OFFSET_ACROSS: tuple[float, ...] = (
    0.0, 0.15, 0.04, 0.04, 0.15, 0.04, 0.04, 0.0, 0.0, 0.05, 0.05, 0.20, 0.04, 0.04, 0.20, 0.04, 0.04)

_DERIVED = {"pelvis": ("left_hip", "right_hip"), "thorax": ("left_shoulder", "right_shoulder"),
            "spine": ("left_hip", "right_hip", "left_shoulder", "right_shoulder")}
_PAIRS = (("left_hip", "right_hip"), ("left_shoulder", "right_shoulder"))
# Each joint's "across" axis: the hip line for the legs, the shoulder line above.
_ACROSS_AXIS_HIPS = {"right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle"}


@dataclass(frozen=True)
class DetectorNoise:
    """Parameters of the detector-like corruption (units: torso lengths, frames).

    Per sequence (one training window, or one evaluation view) a strength ``s`` is drawn:
    ``s = strength`` with ``random_strength=False``, else 0 with chance ``clean_prob``
    and otherwise uniform in [0, ``strength``]. Every amplitude and rate below is
    multiplied by ``s``, so ``s = 1`` is the level measured on MediaPipe and ``s = 0``
    leaves the keypoints untouched.
    """

    strength: float = 1.0
    random_strength: bool = False
    clean_prob: float = 0.1
    drift_std: float = 0.02  # stationary std per axis of the slow error (x joint scale)
    drift_frames: float = 10.0  # correlation time of the slow error: autocorrelation exp(-k / drift_frames)
    white_std: float = 0.004  # std per axis of the frame-to-frame jitter (x joint scale)
    jump_prob: float = 0.001  # chance per joint and frame that a gross error starts
    jump_std: float = 0.3  # std per axis of a gross error's displacement (x joint scale)
    jump_frames: int = 6  # a gross error lasts 1..jump_frames frames
    swap_prob: float = 0.002  # chance per frame that a left/right swap starts
    swap_frames: int = 4  # a swap lasts 1..swap_frames frames
    legs_only_swap: float = 0.5  # share of swaps that swap only the legs (the common case)
    offset_scale: float = 1.0  # multiplies DEFAULT_OFFSET_UP / DEFAULT_OFFSET_ACROSS
    joint_scale: tuple[float, ...] = DEFAULT_JOINT_SCALE

    @property
    def active(self) -> bool:
        return self.strength > 0


def _rand(gen: torch.Generator | None, device: torch.device, *shape: int) -> torch.Tensor:
    dev = gen.device if gen is not None else device
    return torch.rand(shape, generator=gen, device=dev).to(device)


def _randn(gen: torch.Generator | None, device: torch.device, *shape: int) -> torch.Tensor:
    dev = gen.device if gen is not None else device
    return torch.randn(shape, generator=gen, device=dev).to(device)


def derive_matrix(device: torch.device | None = None) -> torch.Tensor:
    """(17, 17) map from per-joint errors to the errors the H36M joints show: identity,
    except that pelvis, spine and thorax take the mean of the joints they are made of."""
    m = torch.eye(len(H36M_JOINT_NAMES), device=device)
    for name, parts in _DERIVED.items():
        m[_J[name]] = 0.0
        for p in parts:
            m[_J[name], _J[p]] = 1.0 / len(parts)
    return m


def sample_strength(n: int, cfg: DetectorNoise, gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """(n,) per-sequence strength multipliers (see :class:`DetectorNoise`)."""
    if not cfg.random_strength:
        return torch.full((n,), float(cfg.strength), device=device)
    s = _rand(gen, device, n) * cfg.strength
    return torch.where(_rand(gen, device, n) < cfg.clean_prob, torch.zeros_like(s), s)


def body_axes(px: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Body axes of clean (N, T, 17, 2) keypoints, per frame.

    Returns ``up`` (N, T, 2) mid-hips to mid-shoulders (its length is the torso length),
    ``hips`` and ``shoulders`` (N, T, 2) left minus right joint (their lengths are the
    widths, foreshortened as the body turns), and ``size`` (N,) the median torso length,
    the unit of every random amplitude.
    """
    lh, rh, ls, rs = (px[..., _J[n], :] for n in ("left_hip", "right_hip", "left_shoulder", "right_shoulder"))
    up = (ls + rs) / 2 - (lh + rh) / 2
    size = up.norm(dim=-1).median(dim=1).values.clamp_min(1e-6)
    return up, lh - rh, ls - rs, size


def ou_noise(n: int, t: int, j: int, frames: float, gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """(n, t, j, 2) stationary Ornstein-Uhlenbeck noise of unit variance whose
    autocorrelation at lag k is ``exp(-k / frames)`` (an AR(1) with a = exp(-1/frames))."""
    a = torch.exp(torch.tensor(-1.0 / max(frames, 1e-6)))
    innov = _randn(gen, device, n, t, j, 2)
    out = torch.empty_like(innov)
    out[:, 0] = innov[:, 0]
    b = torch.sqrt(1 - a * a)
    for k in range(1, t):
        out[:, k] = a * out[:, k - 1] + b * innov[:, k]
    return out


def episodes(starts: torch.Tensor, durations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Episodes that begin where ``starts`` (..., T) is true and last ``durations`` (..., T)
    frames. Returns ``active`` (..., T) bool and ``origin`` (..., T) the frame index of the
    episode's start (for carrying its values over the episode; 0 where inactive)."""
    t = starts.shape[-1]
    frame = torch.arange(t, device=starts.device).expand_as(starts)
    origin = torch.where(starts, frame, torch.full_like(frame, -1)).cummax(dim=-1).values
    safe = origin.clamp_min(0)
    active = (origin >= 0) & (frame - safe < torch.gather(durations, -1, safe))
    return active, safe


def systematic_offsets(px: torch.Tensor, strength: torch.Tensor, cfg: DetectorNoise,
                       gen: torch.Generator | None) -> torch.Tensor:
    """(N, T, 17, 2) pixel offsets: per sequence, each joint sits at a fixed place in the
    body frame (coefficients drawn once per sequence, along the torso axis and across the
    body), the way a detector's anatomical points differ from the mocap joint centres."""
    n, _, j, _ = px.shape
    dev = px.device
    up_std = torch.tensor(DEFAULT_OFFSET_UP, device=dev) * cfg.offset_scale
    across_std = torch.tensor(DEFAULT_OFFSET_ACROSS, device=dev) * cfg.offset_scale
    a = _randn(gen, dev, n, j) * up_std
    b = _randn(gen, dev, n, j) * across_std
    for left, right in _PAIRS:  # symmetric: both up by the same amount, width scaled by (1 + b)
        li, ri = _J[left], _J[right]
        a[:, ri] = a[:, li]
        b[:, li] = b[:, li] / 2
        b[:, ri] = -b[:, li]
    up, hips, shoulders, _ = body_axes(px)
    hip_axis = torch.tensor([name in _ACROSS_AXIS_HIPS for name in H36M_JOINT_NAMES], device=dev)
    across = torch.where(hip_axis[None, None, :, None], hips[:, :, None], shoulders[:, :, None])  # (N, T, J, 2)
    s = strength.reshape(n, 1, 1, 1)
    return s * (a[:, None, :, None] * up[:, :, None] + b[:, None, :, None] * across)


def random_errors(px: torch.Tensor, strength: torch.Tensor, cfg: DetectorNoise,
                  gen: torch.Generator | None) -> torch.Tensor:
    """(N, T, 17, 2) pixel errors: slow drift + white jitter + brief gross jumps, scaled
    per joint by ``cfg.joint_scale`` and per sequence by strength x torso length."""
    n, t, j, _ = px.shape
    dev = px.device
    _, _, _, size = body_axes(px)
    err = cfg.drift_std * ou_noise(n, t, j, cfg.drift_frames, gen, dev)
    err = err + cfg.white_std * _randn(gen, dev, n, t, j, 2)
    if cfg.jump_prob > 0:
        starts = _rand(gen, dev, n, j, t) < cfg.jump_prob * strength.reshape(n, 1, 1)
        dur = torch.randint(1, cfg.jump_frames + 1, (n, j, t), generator=gen,
                            device=gen.device if gen is not None else dev).to(dev)
        active, origin = episodes(starts, dur)
        vec = _randn(gen, dev, n, j, t, 2) * cfg.jump_std
        jump = torch.gather(vec, 2, origin[..., None].expand(n, j, t, 2)) * active[..., None]
        err = err + jump.transpose(1, 2)
    scale = torch.tensor(cfg.joint_scale, device=dev).reshape(1, 1, j, 1)
    return err * scale * (strength * size).reshape(n, 1, 1, 1)


def swap_left_right(px: torch.Tensor, strength: torch.Tensor, cfg: DetectorNoise, flip_perm: torch.Tensor,
                    gen: torch.Generator | None) -> torch.Tensor:
    """Brief left/right swaps (1..``swap_frames`` frames), of the legs only or of the whole body."""
    n, t, j, _ = px.shape
    dev = px.device
    starts = _rand(gen, dev, n, t) < cfg.swap_prob * strength.reshape(n, 1)
    dur = torch.randint(1, cfg.swap_frames + 1, (n, t), generator=gen,
                        device=gen.device if gen is not None else dev).to(dev)
    active, _ = episodes(starts, dur)
    legs = torch.arange(j, device=dev)
    for left, right in (("left_hip", "right_hip"), ("left_knee", "right_knee"), ("left_ankle", "right_ankle")):
        legs[_J[left]], legs[_J[right]] = _J[right], _J[left]
    legs_only = (_rand(gen, dev, n) < cfg.legs_only_swap).reshape(n, 1, 1)
    perm = torch.where(legs_only, legs.reshape(1, 1, j), flip_perm.to(dev).reshape(1, 1, j)).expand(n, t, j)
    swapped = torch.gather(px, 2, perm[..., None].expand(n, t, j, 2))
    return torch.where(active[..., None, None], swapped, px)


def detector_corrupt(px: torch.Tensor, cfg: DetectorNoise, flip_perm: torch.Tensor,
                     gen: torch.Generator | None = None) -> torch.Tensor:
    """Detector-like corruption of (N, T, 17, 2) pixel sequences (a new tensor).

    Offsets and errors are computed from the clean keypoints' body frame, pass through
    :func:`derive_matrix` (derived joints stay derived), and are added; brief swaps
    come last, as a detector mislabels what it has located.
    """
    if not cfg.active:
        return px
    n = px.shape[0]
    dev = px.device
    strength = sample_strength(n, cfg, gen, dev)
    clean = px.float()
    err = systematic_offsets(clean, strength, cfg, gen) + random_errors(clean, strength, cfg, gen)
    err = torch.einsum("ij,ntjc->ntic", derive_matrix(dev), err)
    out = px + err.to(px.dtype)
    if cfg.swap_prob > 0:
        out = swap_left_right(out, strength, cfg, flip_perm, gen)
    return out
