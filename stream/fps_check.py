"""A :class:`stream.loop.PoseLoop` stage that says once when a feed's frame rate is not the
model's training frame rate (``serve``, where the rate is only known from the frames).

The temporal filters of a model trained at 50 fps (the VideoPose3D checkpoints) see the
motion of a 25 fps feed twice as fast; the poses are still produced, with one warning line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from poselift.model.checkpoint import fps_warning

from .engine import PoseOut


class FrameRateCheck:
    """Estimates each stream's rate from its frames' ``t`` (seconds) over its first
    ``frames`` poses and warns once (for the first stream whose rate is off)."""

    def __init__(self, model_fps: float, frames: int = 50, tolerance: float = 0.1,
                 warn: Callable[[str], None] | None = None) -> None:
        self.model_fps, self.frames, self.tolerance = float(model_fps), int(frames), tolerance
        self.warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
        self._seen: dict[str, tuple[float, int, int]] = {}  # stream -> (first t, first frame, poses)
        self.warned = False

    def __call__(self, poses: list[PoseOut]) -> list[PoseOut]:
        if self.warned:
            return poses
        for p in poses:
            t0, f0, n = self._seen.get(p.stream, (p.t, p.frame, 0))
            n += 1
            self._seen[p.stream] = (t0, f0, n)
            if n == self.frames and p.t > t0 and p.frame > f0:
                line = fps_warning(self.model_fps, (p.frame - f0) / (p.t - t0), self.tolerance)
                if line:
                    self.warn(f"stream {p.stream!r}: {line}")
                    self.warned = True
                    return poses
        return poses
