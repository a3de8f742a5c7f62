"""Statistics that compare a 2D detector's keypoints with projected motion capture.

They are the evidence behind the defaults of :class:`train.corruption.DetectorNoise`
(see docs/corruption.md): how much a detector jitters per joint, relative to the body's
size, and where it places hips and shoulders relative to each other. Both work on
(T, 17, 2) H36M pixel sequences (NaN = missing), so MediaPipe output from
``poselift video`` and mocap seen through a virtual camera are measured alike.
"""

from __future__ import annotations

import numpy as np

from poselift.model.skeleton import H36M_JOINT_NAMES

J = {name: i for i, name in enumerate(H36M_JOINT_NAMES)}


def torso_length(kp: np.ndarray) -> np.ndarray:
    """(T,) 2D distance mid-hips to mid-shoulders, the body-relative unit (pixels)."""
    hips = (kp[:, J["left_hip"]] + kp[:, J["right_hip"]]) / 2
    shoulders = (kp[:, J["left_shoulder"]] + kp[:, J["right_shoulder"]]) / 2
    return np.linalg.norm(shoulders - hips, axis=-1)


def highpass_jitter(kp: np.ndarray) -> np.ndarray:
    """(17,) per-joint RMS of the second difference, in torso lengths.

    The second difference ``x[t+1] - 2 x[t] + x[t-1]`` removes position and velocity, so
    what is left is acceleration of the motion plus the detector's frame-to-frame noise;
    comparing a detector's figure with that of clean mocap of similar motion at the same
    frame rate separates the two (white noise of std s gives RMS ``sqrt(6) s`` per axis,
    ``sqrt(12) s`` as a 2D norm).
    """
    torso = np.nanmedian(torso_length(kp))
    acc = kp[2:] - 2 * kp[1:-1] + kp[:-2]
    norm = np.linalg.norm(acc, axis=-1)  # (T-2, 17)
    return np.sqrt(np.nanmean(norm ** 2, axis=0)) / torso


def second_difference_autocorr(kp: np.ndarray) -> np.ndarray:
    """(17,) lag-1 autocorrelation of each joint's second difference.

    White noise gives -2/3 (the (1, -2, 1) kernel), smooth motion a positive value, so
    where a detector's figure lies between the two tells how much of its high-pass
    residual is noise: with motion autocorrelation ``r_m`` (from mocap) and measured
    ``r``, the noise share of the residual power is ``(r_m - r) / (r_m + 2/3)``.
    """
    acc = kp[2:] - 2 * kp[1:-1] + kp[:-2]
    acc = acc - np.nanmean(acc, axis=0)
    num = np.nansum(acc[1:] * acc[:-1], axis=(0, 2))
    return num / np.nansum(acc * acc, axis=(0, 2))


def placement_ratios(kp: np.ndarray, frontal: float = 0.8) -> dict[str, float]:
    """Median hip-width / shoulder-width, hip-width / torso and nose-above-thorax / torso.

    Only frames where the shoulders look wide (shoulder width / torso above ``frontal``
    times its 90th percentile in the sequence, i.e. seen roughly from the front or
    back) count, so the ratios describe where the joints sit, not how the body turns.
    """
    torso = torso_length(kp)
    hip_w = np.linalg.norm(kp[:, J["left_hip"]] - kp[:, J["right_hip"]], axis=-1)
    sh_w = np.linalg.norm(kp[:, J["left_shoulder"]] - kp[:, J["right_shoulder"]], axis=-1)
    thorax = (kp[:, J["left_shoulder"]] + kp[:, J["right_shoulder"]]) / 2
    hips = (kp[:, J["left_hip"]] + kp[:, J["right_hip"]]) / 2
    up = (thorax - hips) / np.maximum(torso, 1e-9)[:, None]
    nose_up = ((kp[:, J["neck_nose"]] - thorax) * up).sum(-1) / np.maximum(torso, 1e-9)
    wide = sh_w / np.maximum(torso, 1e-9)
    keep = (wide > frontal * np.nanpercentile(wide, 90)) & np.isfinite(hip_w) & np.isfinite(sh_w)
    if not keep.any():
        return {"frames": 0}
    return {"frames": int(keep.sum()),
            "hip_over_shoulder": float(np.median(hip_w[keep] / sh_w[keep])),
            "hip_over_torso": float(np.median(hip_w[keep] / torso[keep])),
            "shoulder_over_torso": float(np.median(sh_w[keep] / torso[keep])),
            "nose_above_thorax_over_torso": float(np.median(nose_up[keep]))}
