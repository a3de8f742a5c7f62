"""Poses for the motion tests: the bundled demo clip (real CMU motion seen by the lifter's camera)."""

from __future__ import annotations

from importlib import resources

import numpy as np

from poselift.model.body import bone_lengths, conform, symmetrize


def demo_poses() -> np.ndarray:
    """(300, 17, 3) camera-frame, root-relative poses with exact, symmetric bone lengths."""
    path = resources.files("poselift.stream") / "assets" / "demo_clip.npz"
    with resources.as_file(path) as p, np.load(p) as data:
        return data["poses3d"].astype(np.float64)


def demo_lengths() -> np.ndarray:
    return symmetrize(np.median(bone_lengths(demo_poses()), axis=0))


def scaled_noisy(poses: np.ndarray, scale: np.ndarray | float, noise: float, seed: int = 0) -> np.ndarray:
    """Poses of a body whose bones are ``scale`` times longer, each bone's length jittered by
    ``noise`` (relative, per frame), directions kept."""
    rng = np.random.default_rng(seed)
    lengths = bone_lengths(poses) * scale
    lengths = lengths * (1 + rng.normal(0, noise, lengths.shape))
    return conform(poses, lengths)
