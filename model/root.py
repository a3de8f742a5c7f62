"""The moving root: the pelvis in the camera frame, in metres, from one view.

One image fixes a body's *angular* size, not its distance: a body at depth ``Z`` seen
with focal length ``f`` looks as big as one at ``2 Z`` seen with ``2 f``. So the
trajectory model predicts what the image determines,

    q = Z / f_n,    f_n = 2 f_px / w    (the focal length in normalised screen units),

and the caller states the focal length (``focal_px``, or a horizontal field of view
through :func:`focal_from_fov`). :func:`root_from_depth` turns ``q`` plus the 2D pelvis
into metres with a pinhole whose principal point is the image centre:

    Z = q f_n,   X = (x_n - c_x) Z / f_n = (x_n - c_x) q,   Y = (y_n - c_y) q.

With the screen normalisation ``x_n = 2 x / w - 1``, ``y_n = 2 y / w - h / w`` the image
centre ``(w / 2, h / 2)`` maps to ``c = (0, 0)``. Note that X and Y do not depend on the
focal length: doubling ``f`` doubles ``Z`` and leaves X, Y alone, as a pinhole must.

The trajectory network (a causal :class:`TemporalModel` with ``num_joints_out=1``,
trained by ``train/trajectory.py``) writes ``log q`` in its z channel (the x, y
channels are trained to 0 and unused); the checkpoint's ``meta["trajectory"]`` says
so (:data:`TRAJECTORY_META`). :func:`root_from_output` decodes that output, and is what
a streaming engine calls per frame.

A second estimate needs no network: the pose model's root-relative joints ``P_j`` (metres,
camera frame) must project onto the 2D joints ``x_j`` once translated by the root ``T``,
``x_j = f_n (P_j + T)_xy / (P_j + T)_z + c``. Multiplied out, that is linear in ``T``:

    f_n T_x - (x_j - c_x) T_z = (x_j - c_x) P_jz - f_n P_jx     (and the same for y),

two equations per joint, 34 for three unknowns, solved by weighted least squares in
:func:`root_from_pose` (weights: 0 for joints the intake filled in). Its scale comes from
the pose model's body (the training body), as the trajectory model's does, but it sees the
whole body's 2D extent and the predicted 3D pose, so it errs less (validation, 4-8 m:
0.24 m against the trajectory model's 0.32 m) and it stays sane on poses the trajectory
model never saw (inverted break-dance poses: depth 1.9-4.6 m against 2.1-11.5 m).
:func:`fuse_roots` blends the two in log depth, :data:`ROOT_NET_WEIGHT` on the network;
the two err partly independently (correlation of log errors 0.58), so the blend is a
little better than either (0.237 m). Models without a trajectory model get the fitted root.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

#: Horizontal field of view assumed when the caller states none. 60 degrees is the
#: middle of the usual webcam range (laptop cameras about 55-65 degrees horizontal,
#: a Logitech C920 about 70 degrees horizontal / 78 diagonal), the centre of the range
#: the models are trained on (40-80 degrees) and the evaluation protocol's lens. Depth
#: scales with ``1 / tan(fov / 2)``: a 70 degree camera read as 60 is 21% too far.
DEFAULT_FOV_DEG = 60.0

#: What ``meta["trajectory"]`` of a checkpoint with a depth-over-focal root model says.
TRAJECTORY_META: dict[str, Any] = {
    "target": "depth_over_focal",
    "encoding": "log",  # output[..., 0, 2] = log(Z / f_n); output[..., 0, :2] unused (trained to 0)
    "focal_units": "f_n = 2 * focal_px / image_width",
    "xy": "back-projected from the 2D pelvis (input joint 0), principal point at the image centre",
    "default_fov_deg": DEFAULT_FOV_DEG,
    "decode": "poselift.model.root.root_from_output",
}


def focal_from_fov(fov_deg: float = DEFAULT_FOV_DEG, width: float = 1.0) -> float:
    """Focal length in pixels of a pinhole with horizontal field of view ``fov_deg``
    over an image ``width`` pixels wide: ``f = w / 2 / tan(fov / 2)``."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"horizontal field of view must be in (0, 180) degrees, got {fov_deg}")
    if width <= 0:
        raise ValueError(f"image width must be positive, got {width}")
    return width / 2.0 / math.tan(math.radians(fov_deg) / 2.0)


def fov_from_focal(focal_px: float, width: float) -> float:
    """Inverse of :func:`focal_from_fov`: horizontal field of view in degrees."""
    if focal_px <= 0 or width <= 0:
        raise ValueError(f"focal length and width must be positive, got {focal_px}, {width}")
    return math.degrees(2.0 * math.atan(width / 2.0 / focal_px))


def normalized_focal(focal_px, width):
    """Focal length in normalised screen units: ``f_n = 2 f_px / w``."""
    return 2.0 * focal_px / width


def principal_point_normalized(width: float, height: float) -> tuple[float, float]:
    """The image centre in normalised screen units (it is (0, 0) for any image size)."""
    return (2.0 * (width / 2.0) / width - 1.0, 2.0 * (height / 2.0) / width - height / width)


def root_from_depth(q, pelvis_xy_norm, focal_px, width: float, height: float):
    """The root (pelvis) in camera metres, ``(..., 3)``, from ``q = Z / f_n``.

    Args:
        q: ``(...)`` depth over normalised focal length (what the trajectory model predicts).
        pelvis_xy_norm: ``(..., 2)`` the 2D pelvis in normalised screen units.
        focal_px: focal length in pixels (a number, or an array broadcasting with ``q``).
        width, height: the image size in pixels (for the normalisation and the centre).

    Works on numpy arrays (float64 out) and torch tensors (dtype kept, differentiable).
    """
    cx, cy = principal_point_normalized(width, height)
    f_n = normalized_focal(focal_px, width)
    if isinstance(q, torch.Tensor) or isinstance(pelvis_xy_norm, torch.Tensor):
        q = torch.as_tensor(q)
        xy = torch.as_tensor(pelvis_xy_norm, dtype=q.dtype, device=q.device)
        z = q * torch.as_tensor(f_n, dtype=q.dtype, device=q.device)
        return torch.stack([(xy[..., 0] - cx) * z / f_n, (xy[..., 1] - cy) * z / f_n, z], dim=-1)
    q = np.asarray(q, dtype=np.float64)
    xy = np.asarray(pelvis_xy_norm, dtype=np.float64)
    z = q * np.asarray(f_n, dtype=np.float64)
    return np.stack([(xy[..., 0] - cx) * z / f_n, (xy[..., 1] - cy) * z / f_n, z], axis=-1)


def depth_over_focal_from_output(output):
    """``q`` ``(...)`` from the trajectory network's output ``(..., 1, 3)``: exp of the z channel."""
    z = output[..., 0, 2]
    return torch.exp(z) if isinstance(z, torch.Tensor) else np.exp(np.asarray(z, dtype=np.float64))


def root_from_output(output, pelvis_xy_norm, focal_px, width: float, height: float):
    """The root in camera metres ``(..., 3)`` from the trajectory network's raw output.

    ``output`` is what the network (or a ``StreamingLifter`` of it) returns for a frame,
    ``(..., 1, 3)``; ``pelvis_xy_norm`` ``(..., 2)`` is the same frame's model input at
    joint 0 (the pelvis, after gap filling); ``focal_px`` the stated focal length (or
    ``focal_from_fov(DEFAULT_FOV_DEG, width)`` when none is stated).
    """
    return root_from_depth(depth_over_focal_from_output(output), pelvis_xy_norm, focal_px, width, height)


#: The trajectory network's share of the log depth in :func:`fuse_roots`, chosen on the
#: validation takes (train/results/root_eval_clean.md: 0 -> 0.241 m, 0.3 -> 0.237 m,
#: 0.5 -> 0.249 m, 1 -> 0.321 m at 4-8 m).
ROOT_NET_WEIGHT = 0.3

#: Fewest observed joints for a fitted root (fewer: NaN). Three unknowns need two joints;
#: six is the intake's own floor for a liftable frame.
MIN_FIT_JOINTS = 6


def root_from_pose(pose: np.ndarray, keypoints_norm: np.ndarray, focal_px: Any, width: Any, height: Any,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """The pelvis in camera metres, ``(..., 3)``, that makes ``pose`` project onto ``keypoints_norm``.

    Args:
        pose: ``(..., J, 3)`` root-relative joints, camera frame, metres (the pose model's output).
        keypoints_norm: ``(..., J, 2)`` the same frames' 2D joints, normalised screen units.
        focal_px: focal length in pixels (a number, or an array broadcasting with ``pose[..., 0, 0]``).
        width, height: the image size in pixels (numbers, or arrays like ``focal_px``).
        weights: ``(..., J)`` per-joint weights (0 leaves a joint out, e.g. one the intake
            filled in); default all 1.

    Returns ``T + pose[..., 0, :]`` (the pelvis, as :func:`root_from_depth` gives it), NaN for
    frames with fewer than :data:`MIN_FIT_JOINTS` usable joints or a fit behind the camera.
    """
    pose = np.asarray(pose, dtype=np.float64)
    x = np.asarray(keypoints_norm, dtype=np.float64)
    cx, cy = (np.asarray(c, dtype=np.float64)[..., None] for c in principal_point_normalized(width, height))
    f_n = np.asarray(normalized_focal(focal_px, width), dtype=np.float64)[..., None]
    w = np.ones(pose.shape[:-1]) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), pose.shape[:-1])
    usable = np.isfinite(pose).all(axis=-1) & np.isfinite(x).all(axis=-1) & (w > 0)
    if usable.all():  # the common case: no masking (each numpy call costs ~1 us at batch 1)
        p, u, v = pose, x[..., 0] - cx, x[..., 1] - cy
    else:
        w = np.where(usable, w, 0.0)
        p = np.where(usable[..., None], pose, 0.0)
        u = np.where(usable, x[..., 0] - cx, 0.0)
        v = np.where(usable, x[..., 1] - cy, 0.0)
    # Normal equations of the 2J rows [f_n, 0, -u] . T = u P_z - f_n P_x and [0, f_n, -v] . T = v P_z - f_n P_y:
    #   [[a, 0, -b], [0, a, -c], [-b, -c, d]] T = r,  a = f^2 sum w, b = f sum w u, c = f sum w v,
    #   d = sum w (u^2 + v^2). Eliminating T_x, T_y leaves T_z over the Schur complement
    #   d - (b^2 + c^2) / a = sum w * (the weighted spread of the 2D joints around their mean),
    #   zero only when every joint projects to one point: a closed form, no matrix solve.
    f = f_n[..., 0]
    sw, su, sv = w.sum(-1), (w * u).sum(-1), (w * v).sum(-1)
    bx = u * p[..., 2] - f_n * p[..., 0]
    by = v * p[..., 2] - f_n * p[..., 1]
    r0, r1 = f * (w * bx).sum(-1), f * (w * by).sum(-1)
    r2 = -(w * (u * bx + v * by)).sum(-1)
    with np.errstate(all="ignore"):  # degenerate or overflowing input is caught below, not warned about
        a, b, c = f * f * sw, f * su, f * sv
        spread = (w * (u * u + v * v)).sum(-1) - (b * b + c * c) / a
        tz = (r2 + (b * r0 + c * r1) / a) / spread
        root = np.stack([(r0 + b * tz) / a, (r1 + c * tz) / a, tz], axis=-1) + p[..., 0, :]
        bad = ((usable.sum(-1) < MIN_FIT_JOINTS) | ~(spread > 1e-12 * np.maximum(a, 1e-300))
               | ~(root[..., 2] > 0) | ~np.isfinite(root).all(axis=-1))
    return np.where(bad[..., None], np.nan, root)


def fuse_roots(network: np.ndarray, fitted: np.ndarray, network_weight: float = ROOT_NET_WEIGHT) -> np.ndarray:
    """Blend two root estimates ``(..., 3)``: depth as a weighted geometric mean (depth errors
    are relative), then both points moved along their rays to that depth and averaged with
    the same weights. Where one is not finite, the other is returned."""
    network = np.asarray(network, dtype=np.float64)
    fitted = np.asarray(fitted, dtype=np.float64)
    ok_n = np.isfinite(network).all(axis=-1) & (network[..., 2] > 0)
    ok_f = np.isfinite(fitted).all(axis=-1) & (fitted[..., 2] > 0)
    both = ok_n & ok_f
    every = bool(both.all())  # the common case: no masking
    nz = network if every else np.where(both[..., None], network, np.array([0.0, 0.0, 1.0]))
    fz = fitted if every else np.where(both[..., None], fitted, np.array([0.0, 0.0, 1.0]))
    zn, zf = nz[..., 2:], fz[..., 2:]
    z = zn ** network_weight * zf ** (1.0 - network_weight)
    blend = (network_weight / zn) * nz * z + ((1.0 - network_weight) / zf) * fz * z
    if every:
        return blend
    return np.where(both[..., None], blend, np.where(ok_f[..., None], fitted, network))


def is_depth_over_focal(meta: dict[str, Any] | None) -> bool:
    """Whether a checkpoint's ``meta`` says its trajectory model predicts ``log(Z / f_n)``
    (older checkpoints' trajectory models predict the root in metres directly)."""
    traj = (meta or {}).get("trajectory")
    return isinstance(traj, dict) and traj.get("target") == "depth_over_focal"
