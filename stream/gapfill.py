"""Missing joints and dropped frames: the fill policy and the thresholds that reset a stream.

Works on one stream's H36M-17 keypoints in normalised screen coordinates (NaN = missing).
The policy, per incoming frame (thresholds are the fields of :class:`GapPolicy`):

* **Missing joint** (NaN/nil on the wire, or confidence below ``min_confidence``): held at
  its last filled value. A joint never seen since the stream (re)started, or held for more
  than ``max_hold_frames`` frames, is placed on its parent joint in the H36M tree (the
  pelvis, when missing, at the mean of the observed joints). Filled joints are listed in
  the output's ``filled``.
* **Too few joints** (fewer than ``min_observed_joints`` observed): the frame counts as
  empty. With history, the whole previous frame is held and the output has
  ``valid = false``; more than ``max_gap_frames`` empty frames in a row reset the stream.
  Without history nothing can be lifted (``valid = false``, no model step).
* **Dropped frames** (``frame`` jumps from n to n + 1 + g, 1 <= g <= ``max_gap_frames``):
  the g missing frames are linearly interpolated between the last frame and this one and
  stepped through the model silently (so its temporal context stays at the true frame
  rate); the next output carries ``gap = g``.
* **Gap too long** (g > ``max_gap_frames``): the stream state resets (reported as reason
  ``gap``) and this frame starts it afresh.
* **Non-increasing frame number**: a sender restart; the state resets (reason ``restart``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from poselift.model.skeleton import H36M_PARENTS

NUM_JOINTS = 17


@dataclass(frozen=True)
class GapPolicy:
    """Thresholds of the fill policy (frame counts are in input frames)."""

    min_confidence: float = 0.5   # below this a joint counts as missing (MediaPipe visibility)
    max_gap_frames: int = 15      # ~0.5 s at 30 fps: longer gaps (dropped or empty frames) reset
    max_hold_frames: int = 30     # ~1 s: a joint held longer falls back to its parent's position
    min_observed_joints: int = 6  # fewer observed joints make the frame count as empty

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError("min_confidence must be in [0, 1]")
        if self.max_gap_frames < 0 or self.max_hold_frames < 0:
            raise ValueError("max_gap_frames and max_hold_frames must be >= 0")
        if not 1 <= self.min_observed_joints <= NUM_JOINTS:
            raise ValueError(f"min_observed_joints must be in [1, {NUM_JOINTS}]")


@dataclass
class FillResult:
    """What to feed the model for one incoming frame.

    ``silent``: (g, 17, 2) interpolated dropped frames to step without publishing.
    ``x``: (17, 2) the filled frame, or None when nothing can be lifted.
    ``filled``: indices of joints not observed in this frame. ``reset``: None, "restart"
    or "gap" when the stream state must be reset *before* stepping.
    """

    x: np.ndarray | None
    filled: list[int]
    valid: bool
    gap: int = 0
    silent: np.ndarray = field(default_factory=lambda: np.zeros((0, NUM_JOINTS, 2), np.float32))
    reset: str | None = None


def structural_fill(x: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Put each unobserved joint on its parent (parents precede children in H36M order)."""
    out = x.copy()
    if not observed[0]:
        out[0] = x[observed].mean(axis=0) if observed.any() else 0.0
    for j in range(1, NUM_JOINTS):
        if not observed[j]:
            out[j] = out[H36M_PARENTS[j]]
    return out


class GapFiller:
    """The per-stream fill state. Call :meth:`process` once per received frame, in order."""

    def __init__(self, policy: GapPolicy | None = None) -> None:
        self.policy = policy or GapPolicy()
        self.last_frame: int | None = None
        self.clear()

    def clear(self) -> None:
        """Forget the history (the frame counter is kept for restart detection)."""
        self.last: np.ndarray | None = None  # last filled frame (17, 2)
        self.age = np.zeros(NUM_JOINTS, dtype=np.int64)  # frames since each joint was observed
        self.empty_run = 0

    def process(self, kp: np.ndarray, frame: int) -> FillResult:
        """``kp`` (17, 2) normalised, NaN where missing; ``frame`` the sender's frame number."""
        p = self.policy
        reset = None
        gap = 0
        if self.last_frame is not None:
            if frame <= self.last_frame:
                reset = "restart"
            else:
                gap = frame - self.last_frame - 1
                if gap > p.max_gap_frames:
                    reset = "gap"
        if reset is not None:
            self.clear()
            gap = 0
        self.last_frame = frame
        kp = np.asarray(kp, dtype=np.float32)
        observed = ~np.isnan(kp).any(axis=-1)
        filled = [int(j) for j in np.nonzero(~observed)[0]]
        n_obs = int(observed.sum())

        if self.last is None:
            if n_obs < p.min_observed_joints:
                return FillResult(None, filled, False, 0, reset=reset)
            x = structural_fill(np.where(observed[:, None], kp, 0.0), observed)
            self.age[:] = np.where(observed, 0, p.max_hold_frames + 1)
            self.last = x
            return FillResult(x, filled, True, 0, reset=reset)

        silent_count = gap
        if n_obs < p.min_observed_joints:  # empty frame: hold everything
            self.empty_run += 1 + gap
            if self.empty_run > p.max_gap_frames:
                self.clear()
                return FillResult(None, list(range(NUM_JOINTS)), False, 0, reset="gap")
            x = self.last.copy()
            valid = False
            filled = list(range(NUM_JOINTS))
            self.age += 1 + gap
        else:
            self.empty_run = 0
            self.age = np.where(observed, 0, self.age + 1 + gap)
            x = np.where(observed[:, None], kp, self.last)
            stale = self.age > p.max_hold_frames
            if stale.any():
                x = structural_fill(x, ~stale)
            valid = True
        silent = np.zeros((0, NUM_JOINTS, 2), np.float32)
        if silent_count:
            w = (np.arange(1, silent_count + 1, dtype=np.float32) / (silent_count + 1))[:, None, None]
            silent = (self.last[None] * (1 - w) + x[None] * w).astype(np.float32)
        self.last = x.astype(np.float32)
        return FillResult(self.last, filled, valid, gap, silent, reset)
