"""Helpers for the stream tests: synthetic clips, random checkpoints, a server in a thread."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from poselift.model import save_checkpoint
from poselift.model.skeleton import H36M_PARENTS
from poselift.stream.sources import save_clip
from tests.helpers import random_model

WIDTH, HEIGHT = 640, 480

# A rough standing skeleton (metres, root-relative, camera frame: y down).
_OFFSETS = np.array([
    [0, 0, 0], [-0.13, 0, 0], [0, 0.45, 0], [0, 0.45, 0], [0.13, 0, 0], [0, 0.45, 0], [0, 0.45, 0],
    [0, -0.25, 0], [0, -0.25, 0], [0, -0.1, 0], [0, -0.12, 0], [0.18, 0.03, 0], [0, 0.28, 0], [0, 0.25, 0],
    [-0.18, 0.03, 0], [0, 0.28, 0], [0, 0.25, 0],
], dtype=np.float64)


def synthetic_poses(T: int, seed: int = 0) -> np.ndarray:
    """(T, 17, 3) metres, root-relative: a skeleton turning slowly with swinging limbs."""
    rng = np.random.default_rng(seed)
    out = np.zeros((T, 17, 3))
    phase = rng.uniform(0, 2 * np.pi)
    for t in range(T):
        off = _OFFSETS.copy()
        swing = 0.15 * np.sin(0.2 * t + phase)
        off[[2, 12, 15], 2] += [swing, -swing, swing]
        a = 0.02 * t + phase
        rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        for j, p in enumerate(H36M_PARENTS):
            out[t, j] = 0 if p < 0 else out[t, p] + rot @ off[j]
    return out


def project(poses: np.ndarray, root_depth: float = 4.0, focal: float = 500.0) -> np.ndarray:
    """Pinhole projection of root-relative poses placed ``root_depth`` metres in front."""
    p = poses + np.array([0.0, 0.0, root_depth])
    return np.stack([focal * p[..., 0] / p[..., 2] + WIDTH / 2, focal * p[..., 1] / p[..., 2] + HEIGHT / 2], -1)


def write_clip(path: Path, T: int = 60, seed: int = 0) -> Path:
    poses = synthetic_poses(T, seed)
    save_clip(path, project(poses), WIDTH, HEIGHT, 30.0, poses3d=poses, source="synthetic test clip")
    return path


def write_checkpoint(path: Path, causal: bool = True, widths=(3, 3, 3), channels: int = 32, seed: int = 0) -> Path:
    save_checkpoint(path, random_model(widths, causal=causal, channels=channels, seed=seed), fps=30.0)
    return path


class ServerThread:
    """Run a PoseServer's loop in a thread; ``stop()`` joins and closes it."""

    def __init__(self, server) -> None:
        self.server = server
        self.result = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.result = self.server.serve_forever()

    def stop(self):
        self.server.stop()
        self.thread.join(10)
        self.server.close()
        return self.result


def offline(model, kp_px: np.ndarray) -> np.ndarray:
    """The offline model's poses for a (T, 17, 2) pixel sequence in the test image size."""
    import torch

    from poselift.model import lift_sequence
    from poselift.model.normalization import normalize_screen

    x = torch.from_numpy(normalize_screen(kp_px, WIDTH, HEIGHT))[None]
    return lift_sequence(model, x)[0].numpy()
