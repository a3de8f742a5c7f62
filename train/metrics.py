"""Pose metrics and losses in one place: pure, batched functions.

Conventions
-----------
* Poses are arrays of shape ``(..., J, 3)`` holding 3D joint positions in **metres**; every
  error returned is therefore in metres (velocity errors in metres per frame).
* The torch functions (:func:`mpjpe`, :func:`weighted_mpjpe`, :func:`n_mpjpe`,
  :func:`bone_length_loss`) are differentiable training losses and return 0-d tensors.
* The numpy functions (:func:`p_mpjpe`, :func:`mpjve`, :func:`mpjpe_np`, :func:`n_mpjpe_np`,
  :func:`evaluate_poses`) are evaluation metrics computed in float64 and return Python floats.

The protocols follow Pavllo et al., "3D human pose estimation in video with temporal
convolutions and semi-supervised training" (CVPR 2019):

* P1 / MPJPE: mean Euclidean distance between predicted and true joints.
* P2 / P-MPJPE: MPJPE after a per-pose similarity (Procrustes) alignment of the prediction
  to the target: translation, rotation and uniform scale. The rotation is constrained to be
  proper (det = +1): a mirrored prediction is *not* forgiven by a reflection.
* P3 / N-MPJPE: MPJPE after matching only the scale of the prediction to the target.
* MPJVE: MPJPE of the first derivative in time (per-frame differences).
"""

from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np
import torch

__all__ = [
    "bone_length_loss",
    "bone_lengths",
    "evaluate_poses",
    "mpjpe",
    "mpjpe_np",
    "mpjve",
    "n_mpjpe",
    "n_mpjpe_np",
    "p_mpjpe",
    "p_mpjpe_per_frame",
    "procrustes_align",
    "temporal_difference_loss",
    "weighted_mpjpe",
]

_EPS = 1e-12

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def _check_pair(pred, target, name: str) -> None:
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"{name}: pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if pred.ndim < 2:
        raise ValueError(f"{name}: expected poses of shape (..., J, D), got {tuple(pred.shape)}")


# --------------------------------------------------------------------------------------------
# torch losses
# --------------------------------------------------------------------------------------------


def mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """P1: mean per-joint position error (metres), a 0-d tensor.

    ``pred``, ``target``: ``(..., J, 3)`` in metres. The mean is over every leading dimension
    and every joint of the per-joint Euclidean distance.
    """
    _check_pair(pred, target, "mpjpe")
    return torch.linalg.vector_norm(pred - target, dim=-1).mean()


def weighted_mpjpe(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted MPJPE: ``mean(weights * ||pred - target||)`` over all leading dims and joints.

    ``pred``, ``target``: ``(..., J, 3)`` metres. ``weights``: any shape that broadcasts to the
    per-joint error shape ``(..., J)`` without enlarging it, e.g. ``(..., J)``, ``(..., 1)`` or a
    scalar. The paper's trajectory model uses ``w = 1 / z`` of the target depth (so far-away
    subjects, whose 2D is less informative, count less).

    As in the paper the result is the plain mean of the weighted errors (it is *not* divided by
    the sum of the weights), so all-ones weights give exactly :func:`mpjpe`.
    """
    _check_pair(pred, target, "weighted_mpjpe")
    err = torch.linalg.vector_norm(pred - target, dim=-1)
    weights = torch.as_tensor(weights, dtype=err.dtype, device=err.device)
    try:
        shape = torch.broadcast_shapes(weights.shape, err.shape)
    except RuntimeError as exc:
        raise ValueError(f"weighted_mpjpe: weights shape {tuple(weights.shape)} does not broadcast to "
                         f"the per-joint error shape {tuple(err.shape)}") from exc
    if tuple(shape) != tuple(err.shape):
        raise ValueError(f"weighted_mpjpe: weights shape {tuple(weights.shape)} would enlarge the per-joint "
                         f"error shape {tuple(err.shape)}")
    return (weights * err).mean()


def n_mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """P3: MPJPE after per-pose scale alignment (metres), a 0-d tensor.

    For each pose (the last two dims ``(J, 3)``) the prediction is multiplied by the
    least-squares optimal scale ``s = <pred, target> / <pred, pred>`` before :func:`mpjpe`.
    Differentiable (the scale is not detached). A zero pose gets scale 0.
    """
    _check_pair(pred, target, "n_mpjpe")
    num = (pred * target).sum(dim=(-2, -1), keepdim=True)
    den = (pred * pred).sum(dim=(-2, -1), keepdim=True).clamp_min(_EPS)
    return mpjpe(num / den * pred, target)


def temporal_difference_loss(pred: torch.Tensor, target: torch.Tensor, order: int = 1) -> torch.Tensor:
    """Coherence loss: MPJPE of the ``order``-th time differences (metres per frame^order), 0-d.

    ``pred``, ``target``: ``(B, K, J, 3)`` with K consecutive output frames (time is axis
    ``-3``, as in :func:`mpjve`). ``order=1`` is the velocity error (the training twin of
    MPJVE), ``order=2`` the acceleration error. MPJPE alone scores each frame on its own,
    so a model can trade frame-to-frame jitter for nothing; these terms charge for it. A
    prediction that is off by a constant over the chunk costs nothing here (MPJPE charges
    for that). Needs ``K > order``.
    """
    _check_pair(pred, target, "temporal_difference_loss")
    if pred.ndim < 3 or pred.shape[-3] <= order:
        raise ValueError(f"temporal_difference_loss: order {order} needs (..., K, J, 3) with K > {order} "
                         f"consecutive frames, got {tuple(pred.shape)} (train with --chunk > {order})")
    dp, dt = pred, target
    for _ in range(order):
        dp, dt = torch.diff(dp, dim=-3), torch.diff(dt, dim=-3)
    return torch.linalg.vector_norm(dp - dt, dim=-1).mean()


def bone_lengths(poses: ArrayT, parents: Sequence[int]) -> ArrayT:
    """Length of every bone: ``(..., J, 3)`` -> ``(..., J-1)`` (metres), torch or numpy in, same out.

    ``parents[j]`` is the parent of joint ``j`` (``-1`` for the root, which has no bone). Bone
    ``k`` of the output is the ``k``-th non-root joint in index order, measured to its parent.
    """
    parents = [int(p) for p in parents]
    if poses.shape[-2] != len(parents):
        raise ValueError(f"bone_lengths: poses have {poses.shape[-2]} joints but parents has {len(parents)}")
    children = [j for j, p in enumerate(parents) if p >= 0]
    fathers = [parents[j] for j in children]
    if isinstance(poses, torch.Tensor):
        vec = poses[..., children, :] - poses[..., fathers, :]
        return torch.linalg.vector_norm(vec, dim=-1)
    arr = np.asarray(poses)
    return np.linalg.norm(arr[..., children, :] - arr[..., fathers, :], axis=-1)


def bone_length_loss(pred_labeled: torch.Tensor, pred_unlabeled: torch.Tensor,
                     parents: Sequence[int]) -> torch.Tensor:
    """The paper's semi-supervised bone-length term, a 0-d tensor (metres squared).

    The mean length of each bone is taken over all leading dims of the labelled batch
    ``(..., J, 3)`` and, separately, of the unlabelled batch ``(..., J, 3)`` (the batches may
    differ in size); the loss is the mean over bones of the squared difference. It is zero
    when both batches share the same skeleton and keeps the unlabelled predictions from
    drifting to a shrunk or stretched body.
    """
    a = bone_lengths(pred_labeled, parents)
    b = bone_lengths(pred_unlabeled, parents)
    mean_a = a.reshape(-1, a.shape[-1]).mean(dim=0)
    mean_b = b.reshape(-1, b.shape[-1]).mean(dim=0)
    return ((mean_a - mean_b) ** 2).mean()


# --------------------------------------------------------------------------------------------
# numpy evaluation metrics
# --------------------------------------------------------------------------------------------


def _as_np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def mpjpe_np(pred: np.ndarray, target: np.ndarray) -> float:
    """P1 in numpy: mean per-joint Euclidean error (metres) over ``(..., J, 3)`` arrays."""
    p, t = _as_np(pred), _as_np(target)
    _check_pair(p, t, "mpjpe_np")
    return float(np.linalg.norm(p - t, axis=-1).mean())


def n_mpjpe_np(pred: np.ndarray, target: np.ndarray) -> float:
    """P3 in numpy: MPJPE (metres) after per-pose optimal scaling, see :func:`n_mpjpe`."""
    p, t = _as_np(pred), _as_np(target)
    _check_pair(p, t, "n_mpjpe_np")
    num = (p * t).sum(axis=(-2, -1), keepdims=True)
    den = np.maximum((p * p).sum(axis=(-2, -1), keepdims=True), _EPS)
    return mpjpe_np(num / den * p, t)


def procrustes_align(pred: np.ndarray, target: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-pose similarity alignment of ``pred`` onto ``target`` (least squares).

    ``pred``, ``target``: ``(N, J, 3)`` (or ``(J, 3)``, or any ``(..., J, D)``), metres.
    Finds, per pose, scale ``s``, proper rotation ``R`` (det = +1) and translation ``t``
    minimising ``sum_j || s * pred_j @ R + t - target_j ||^2`` (row-vector convention).
    If the unconstrained optimum is a reflection, the axis of the smallest singular value is
    flipped (Umeyama's correction), so a mirrored prediction keeps a non-zero error.

    Returns ``(aligned, R, s, t)`` with shapes ``(..., J, D)``, ``(..., D, D)``, ``(...,)``
    and ``(..., D)``; ``aligned = s[..., None, None] * pred @ R + t[..., None, :]``.
    A degenerate (all joints coincident) prediction gets ``s = 0``: it aligns to the
    target's centroid.
    """
    p, x = _as_np(pred), _as_np(target)
    _check_pair(p, x, "procrustes_align")
    mu_p = p.mean(axis=-2, keepdims=True)
    mu_x = x.mean(axis=-2, keepdims=True)
    p0, x0 = p - mu_p, x - mu_x
    h = np.swapaxes(p0, -1, -2) @ x0  # (..., D, D) cross-covariance
    u, sing, vt = np.linalg.svd(h)
    sign = np.sign(np.linalg.det(u @ vt))
    sign = np.where(sign == 0, 1.0, sign)
    d = np.ones(sing.shape)
    d[..., -1] = sign
    rot = (u * d[..., None, :]) @ vt  # U diag(d) V^T
    norm_p = (p0 * p0).sum(axis=(-2, -1))
    scale = np.where(norm_p > _EPS, (sing * d).sum(axis=-1) / np.maximum(norm_p, _EPS), 0.0)
    trans = mu_x[..., 0, :] - scale[..., None] * (mu_p @ rot)[..., 0, :]
    aligned = scale[..., None, None] * (p @ rot) + trans[..., None, :]
    return aligned, rot, scale, trans


def p_mpjpe_per_frame(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """P2 per pose: ``(N, J, 3)`` -> ``(N,)`` mean joint error (metres) after Procrustes alignment."""
    aligned, _, _, _ = procrustes_align(pred, target)
    return np.linalg.norm(aligned - _as_np(target), axis=-1).mean(axis=-1)


def p_mpjpe(pred: np.ndarray, target: np.ndarray) -> float:
    """P2 / P-MPJPE (metres): mean over poses of :func:`p_mpjpe_per_frame`, ``(N, J, 3)`` inputs."""
    return float(p_mpjpe_per_frame(pred, target).mean())


def mpjve(pred: np.ndarray, target: np.ndarray) -> float:
    """MPJVE (metres per frame): MPJPE of the first time-differences.

    ``pred``, ``target``: ``(T, J, 3)`` (or ``(..., T, J, 3)``; time is axis ``-3``) in metres,
    consecutive frames. Divide by the frame interval for metres per second. A constant offset
    between prediction and target gives 0. Needs at least two frames.
    """
    p, t = _as_np(pred), _as_np(target)
    _check_pair(p, t, "mpjve")
    if p.ndim < 3 or p.shape[-3] < 2:
        raise ValueError(f"mpjve: need (..., T, J, 3) with T >= 2 frames, got {p.shape}")
    return mpjpe_np(np.diff(p, axis=-3), np.diff(t, axis=-3))


def evaluate_poses(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """All evaluation metrics for one take: ``(T, J, 3)`` prediction and ground truth (metres).

    Returns ``{"mpjpe", "p_mpjpe", "n_mpjpe", "mpjve", "frames"}``: errors as floats in
    metres (``mpjve`` in metres per frame; ``nan`` for a single-frame take) and ``frames``
    the number of frames ``T`` (an int, for frame-weighted averaging across takes).
    """
    p, t = _as_np(pred), _as_np(target)
    _check_pair(p, t, "evaluate_poses")
    if p.ndim != 3:
        raise ValueError(f"evaluate_poses: expected (T, J, 3) arrays, got {p.shape}")
    return {
        "mpjpe": mpjpe_np(p, t),
        "p_mpjpe": p_mpjpe(p, t),
        "n_mpjpe": n_mpjpe_np(p, t),
        "mpjve": mpjve(p, t) if p.shape[0] >= 2 else float("nan"),
        "frames": int(p.shape[0]),
    }
