"""The model's input contract: pixels <-> normalised screen coordinates.

The paper's convention: ``x_n = 2 x / w - 1`` and ``y_n = 2 y / w - h / w``. x maps to
[-1, 1] and y is scaled by the same factor, so the aspect ratio is kept. Every source
(camera, ZeroMQ feed, replay, training data) goes through these two functions.
"""

from __future__ import annotations

import numpy as np


def normalize_screen(points_px: np.ndarray, width: float, height: float) -> np.ndarray:
    """(..., 2) pixel coordinates -> normalised screen coordinates (float32)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    p = np.asarray(points_px, dtype=np.float64)
    out = np.empty(p.shape, dtype=np.float32)
    out[..., 0] = p[..., 0] / width * 2.0 - 1.0
    out[..., 1] = p[..., 1] / width * 2.0 - height / width
    return out


def denormalize_screen(points_n: np.ndarray, width: float, height: float) -> np.ndarray:
    """Inverse of :func:`normalize_screen`: normalised (..., 2) -> pixels (float64)."""
    p = np.asarray(points_n, dtype=np.float64)
    out = np.empty(p.shape)
    out[..., 0] = (p[..., 0] + 1.0) * width / 2.0
    out[..., 1] = (p[..., 1] + height / width) * width / 2.0
    return out
