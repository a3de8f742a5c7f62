"""Causal One-Euro smoothing of the 3D output (Casiez, Roussel, Vogel, CHI 2012).

A low-pass filter whose cut-off rises with speed: at rest it removes jitter strongly
(cut-off ``min_cutoff``), in fast motion it opens up (``min_cutoff + beta * speed``) so
the lag stays small where lag would show. It is causal and costs a few array operations
per frame, so it fits the live path; it trades a little lag for less jitter, which the
lifter's own temporal context does not remove from time-correlated 2D error.

Vectorised over streams and joints: one :class:`OneEuroFilter` holds the state of S
streams of (J, 3) poses; a call filters one batch of frames, each row belonging to a
stream slot, so wiring it after the lifter is one call per batch. Speed is the 3D speed
of each joint (metres per second), so all three coordinates of a joint share one cut-off.

Defaults (``min_cutoff=1.0`` Hz, ``beta=0.5`` Hz per m/s, ``d_cutoff=1.0`` Hz) come from
a jitter/lag grid on real video output (``train/results/smoothing_tradeoff.py``): on the
causal model's output for the two 25 fps videos in shared/data/video they cut the mean
second difference by 59% (rooftop dance) and 50% (break dance) at a lag of about 1.9 and
0.9 frames. ``min_cutoff`` sets the smoothing at rest, ``beta`` how quickly it opens up.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def smoothing_factor(cutoff: np.ndarray | float, dt: np.ndarray | float) -> np.ndarray:
    """Exponential smoothing factor of a first-order low-pass with ``cutoff`` Hz at step ``dt`` s."""
    tau = 1.0 / (2.0 * np.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / np.asarray(dt, dtype=np.float64))


class OneEuroFilter:
    """One-Euro filter state for ``num_streams`` streams of ``(num_joints, 3)`` poses.

    Args:
        min_cutoff: cut-off (Hz) at rest; lower = smoother and more lag.
        beta: how fast the cut-off rises with joint speed (Hz per m/s); higher = less lag
            in fast motion, more jitter left.
        d_cutoff: cut-off (Hz) of the speed estimate itself.
        fps: frame rate used when a call gives no timestamps.
    """

    def __init__(self, num_streams: int, num_joints: int = 17, *, min_cutoff: float = 1.0, beta: float = 0.5,
                 d_cutoff: float = 1.0, fps: float | None = None) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("min_cutoff and d_cutoff must be > 0 and beta >= 0")
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.min_cutoff, self.beta, self.d_cutoff, self.fps = float(min_cutoff), float(beta), float(d_cutoff), fps
        self.x = np.zeros((num_streams, num_joints, 3))  # last filtered pose
        self.dx = np.zeros((num_streams, num_joints, 3))  # last filtered velocity (per second)
        self.t = np.zeros(num_streams)  # time of the last update
        self.started = np.zeros(num_streams, dtype=bool)

    def reset(self, streams: int | Sequence[int] | np.ndarray | None = None) -> None:
        """Forget the history of some stream slots (all with ``None``): their next valid
        frame passes unchanged and starts afresh."""
        idx = slice(None) if streams is None else np.atleast_1d(np.asarray(streams, dtype=np.int64))
        self.started[idx] = False
        self.dx[idx] = 0.0

    def __call__(self, poses: np.ndarray, t: np.ndarray | Sequence[float] | None = None,
                 valid: np.ndarray | Sequence[bool] | None = None,
                 streams: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
        """Filter one frame per row: ``poses`` (B, J, 3), ``t`` (B,) seconds (or None: the
        slot's last time + 1/fps), ``valid`` (B,) bool (False or any non-finite joint:
        no update, the slot's last output is held), ``streams`` (B,) slot indices
        (default: rows are slots 0..B-1). Returns (B, J, 3), float64."""
        x = np.asarray(poses, dtype=np.float64)
        b = x.shape[0]
        slots = np.arange(b) if streams is None else np.asarray(streams, dtype=np.int64)
        ok = np.isfinite(x).all(axis=(1, 2))
        if valid is not None:
            ok &= np.asarray(valid, dtype=bool)
        if t is None:
            if self.fps is None:
                raise ValueError("give frame timestamps or construct the filter with fps")
            now = np.where(self.started[slots], self.t[slots] + 1.0 / self.fps, 0.0)
        else:
            now = np.asarray(t, dtype=np.float64).reshape(b)
        out = x.copy()
        held = ~ok & self.started[slots]
        out[held] = self.x[slots[held]]
        first = ok & ~self.started[slots]
        upd = ok & self.started[slots]
        if upd.any():
            s = slots[upd]
            dt = np.maximum(now[upd] - self.t[s], 1e-6)[:, None, None]
            dx = (x[upd] - self.x[s]) / dt
            dx_hat = self.dx[s] + smoothing_factor(self.d_cutoff, dt) * (dx - self.dx[s])
            speed = np.linalg.norm(dx_hat, axis=-1, keepdims=True)
            a = smoothing_factor(self.min_cutoff + self.beta * speed, dt)
            out[upd] = self.x[s] + a * (x[upd] - self.x[s])
            self.dx[s] = dx_hat
        if first.any():
            self.dx[slots[first]] = 0.0
        wrote = ok
        self.x[slots[wrote]] = out[wrote]
        self.t[slots[wrote]] = now[wrote]
        self.started[slots[wrote]] = True
        return out


def smooth_sequence(poses: np.ndarray, fps: float, *, min_cutoff: float = 1.0, beta: float = 0.5,
                    d_cutoff: float = 1.0, valid: np.ndarray | None = None) -> np.ndarray:
    """Offline convenience: filter a (T, J, 3) sequence frame by frame, causally, as the
    live path would. ``valid`` (T,) marks frames to use (others hold the last output)."""
    poses = np.asarray(poses, dtype=np.float64)
    f = OneEuroFilter(1, poses.shape[1], min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff, fps=fps)
    out = np.empty_like(poses)
    for i in range(poses.shape[0]):
        out[i] = f(poses[i:i + 1], valid=None if valid is None else valid[i:i + 1])[0]
    return out


class SmoothingStage:
    """:class:`stream.loop.PoseLoop` stage: causal One-Euro smoothing of each stream's joints.

    Each stream has its own filter state, forgotten whenever the engine starts the stream
    over (``PoseOut.epoch`` changes: reset, restart, gap, eviction, end then a new stream of
    the same id) and dropped once the engine (if given) no longer holds the stream. Invalid
    poses pass through unchanged and do not touch the state. Time is ``frame / fps`` (frame
    numbers are monotonic within an epoch; gaps lengthen the step). It changes
    ``PoseOut.joints`` in place (the unsmoothed joints go to ``extras["joints_unsmoothed"]``)
    and must run before the motion stage, which should see the smoothed joints.

    Args:
        fps: frame rate of the streams (the model's).
        min_cutoff, beta, d_cutoff: the filter's parameters (:class:`OneEuroFilter`).
        engine: the loop's :class:`stream.engine.LiftEngine`, to drop ended streams (None: an
            LRU of ``max_streams`` streams bounds the state instead).
    """

    def __init__(self, fps: float, *, min_cutoff: float = 1.0, beta: float = 0.5, d_cutoff: float = 1.0,
                 engine: object | None = None, max_streams: int = 1024) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        OneEuroFilter(1, min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff)  # validates the parameters
        self.fps, self.min_cutoff, self.beta, self.d_cutoff = float(fps), min_cutoff, beta, d_cutoff
        self.engine = engine
        self.max_streams = max_streams
        self._state: dict[str, tuple[object, OneEuroFilter]] = {}  # stream -> (epoch, filter), LRU order

    def _filter(self, stream: str, epoch: object) -> OneEuroFilter:
        entry = self._state.pop(stream, None)
        if entry is None or entry[0] != epoch:
            entry = (epoch, OneEuroFilter(1, min_cutoff=self.min_cutoff, beta=self.beta, d_cutoff=self.d_cutoff))
        self._state[stream] = entry  # most recently used last
        if len(self._state) > self.max_streams:
            del self._state[next(iter(self._state))]
        return entry[1]

    def forget(self, stream: str) -> None:
        """Drop a stream's filter state."""
        self._state.pop(stream, None)

    def __call__(self, poses: list) -> list:
        for p in poses:
            if not p.valid:
                continue
            f = self._filter(p.stream, getattr(p, "epoch", 0))
            raw = np.asarray(p.joints)
            p.extras["joints_unsmoothed"] = raw
            p.joints = f(raw[None], t=[p.frame / self.fps])[0].astype(raw.dtype)
        if self.engine is not None and len(self._state) > len(self.engine.streams):
            for name in [s for s in self._state if s not in self.engine.streams]:
                self.forget(name)
        return poses
