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


RESET_REASONS = (None, "restart", "gap")  # reset codes of GapBank.process


@dataclass
class BatchFill:
    """:meth:`GapBank.process` for M frames (one per stream): row i is the
    :class:`FillResult` of frame i (:meth:`result` builds it)."""

    x: np.ndarray  # (M, 17, 2) float32, the filled frames (rows where has_x is False: undefined)
    has_x: np.ndarray  # (M,) something could be lifted
    filled: np.ndarray  # (M, 17) joints not observed
    valid: np.ndarray  # (M,)
    gap: np.ndarray  # (M,) dropped frames before this one (silently stepped)
    reset: np.ndarray  # (M,) index into RESET_REASONS
    silent: dict[int, np.ndarray]  # row -> (g, 17, 2) interpolated dropped frames (rows with some)

    def result(self, i: int) -> FillResult:
        empty = np.zeros((0, NUM_JOINTS, 2), np.float32)
        return FillResult(self.x[i] if self.has_x[i] else None, np.flatnonzero(self.filled[i]).tolist(),
                          bool(self.valid[i]), int(self.gap[i]), self.silent.get(i, empty), RESET_REASONS[self.reset[i]])


class GapBank:
    """The fill state of many streams in arrays (one row per stream slot), stepped for a
    batch of frames at once: the numpy form of the policy in the module docstring.

    :meth:`process` takes at most one frame per slot; a stream's frames go in successive
    calls, in order. :class:`GapFiller` is this with one slot.
    """

    def __init__(self, slots: int, policy: GapPolicy | None = None) -> None:
        self.policy = policy or GapPolicy()
        self.last_frame = np.zeros(slots, np.uint64)
        self.has_frame = np.zeros(slots, bool)  # a frame number is known (restart detection)
        self.last = np.zeros((slots, NUM_JOINTS, 2), np.float32)  # last filled frame
        self.has_last = np.zeros(slots, bool)
        self.age = np.zeros((slots, NUM_JOINTS), np.int64)  # frames since each joint was observed
        self.empty_run = np.zeros(slots, np.int64)

    def clear(self, slots, forget_frame: bool = False) -> None:
        """Forget the history of ``slots`` (and, with ``forget_frame``, the frame counter:
        a new stream in that slot)."""
        self.has_last[slots] = False
        self.age[slots] = 0
        self.empty_run[slots] = 0
        if forget_frame:
            self.has_frame[slots] = False

    def process(self, slots: np.ndarray, kp: np.ndarray, frames: np.ndarray) -> BatchFill:
        """``kp`` (M, 17, 2) normalised, NaN where missing, for the distinct ``slots`` (M,);
        ``frames`` (M,) the senders' frame numbers."""
        p = self.policy
        slots = np.asarray(slots, np.int64)
        frames = np.asarray(frames, np.uint64)  # the protocol's frame numbers: 0 .. 2**64 - 1
        kp = np.asarray(kp, dtype=np.float32)
        m = len(slots)
        known = self.has_frame[slots]
        last = self.last_frame[slots]
        restart = known & (frames <= last)
        ahead = known & ~restart
        with np.errstate(over="ignore"):  # rows not ahead wrap around; they are masked out
            dropped = np.where(ahead, frames - last - np.uint64(1), np.uint64(0))
        too_long = ahead & (dropped > np.uint64(p.max_gap_frames))
        reset = np.where(restart, 1, np.where(too_long, 2, 0))
        self.clear(slots[reset > 0])
        gap = np.where(reset > 0, np.uint64(0), dropped).astype(np.int64)  # now at most max_gap_frames
        self.last_frame[slots] = frames
        self.has_frame[slots] = True
        observed = ~np.isnan(kp).any(axis=-1)
        enough = observed.sum(axis=1) >= p.min_observed_joints
        history = self.has_last[slots]
        x = np.empty((m, NUM_JOINTS, 2), np.float32)
        has_x = np.zeros(m, bool)
        valid = np.zeros(m, bool)
        filled = ~observed
        out_gap = np.zeros(m, np.int64)
        silent: dict[int, np.ndarray] = {}

        first = ~history & enough  # the stream (re)starts with this frame
        if first.any():
            rows = np.flatnonzero(first)
            x[rows] = np.where(observed[rows, :, None], kp[rows], 0.0)
            for r in rows[~observed[rows].all(axis=1)]:
                x[r] = structural_fill(x[r], observed[r])
            self.age[slots[rows]] = np.where(observed[rows], 0, p.max_hold_frames + 1)
            has_x[rows] = valid[rows] = True

        held = history & ~enough  # too few joints: hold the whole previous frame
        if held.any():
            rows = np.flatnonzero(held)
            run = self.empty_run[slots[rows]] + 1 + gap[rows]
            self.empty_run[slots[rows]] = run
            over = run > p.max_gap_frames
            gone = rows[over]  # empty for too long: the stream resets
            self.clear(slots[gone])
            reset[gone] = 2
            filled[held] = True
            keep = rows[~over]
            x[keep] = self.last[slots[keep]]
            self.age[slots[keep]] += (1 + gap[keep])[:, None]
            has_x[keep] = True
            out_gap[keep] = gap[keep]

        seen = history & enough
        if seen.any():
            rows = np.flatnonzero(seen)
            sl = slots[rows]
            self.empty_run[sl] = 0
            age = np.where(observed[rows], 0, self.age[sl] + (1 + gap[rows])[:, None])
            self.age[sl] = age
            x[rows] = np.where(observed[rows, :, None], kp[rows], self.last[sl])
            stale = age > p.max_hold_frames
            for k in np.flatnonzero(stale.any(axis=1)):
                x[rows[k]] = structural_fill(x[rows[k]], ~stale[k])
            has_x[rows] = valid[rows] = True
            out_gap[rows] = gap[rows]

        moved = has_x & history  # rows that continue a history: dropped frames in between
        for r in np.flatnonzero(moved & (out_gap > 0)):
            g = int(out_gap[r])
            w = (np.arange(1, g + 1, dtype=np.float32) / (g + 1))[:, None, None]
            silent[r] = (self.last[slots[r]][None] * (1 - w) + x[r][None] * w).astype(np.float32)
        done = np.flatnonzero(has_x)
        self.last[slots[done]] = x[done]
        self.has_last[slots[done]] = True
        return BatchFill(x, has_x, filled, valid, out_gap, reset, silent)


class GapFiller:
    """The per-stream fill state. Call :meth:`process` once per received frame, in order.
    (A :class:`GapBank` of one slot: the engine keeps one bank for all its streams.)"""

    def __init__(self, policy: GapPolicy | None = None) -> None:
        self.policy = policy or GapPolicy()
        self.bank = GapBank(1, self.policy)

    def clear(self) -> None:
        """Forget the history (the frame counter is kept for restart detection)."""
        self.bank.clear([0])

    def process(self, kp: np.ndarray, frame: int) -> FillResult:
        """``kp`` (17, 2) normalised, NaN where missing; ``frame`` the sender's frame number."""
        return self.bank.process(np.zeros(1, np.int64), np.asarray(kp, dtype=np.float32)[None],
                                 np.array([frame], np.uint64)).result(0)
