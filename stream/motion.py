"""The per-batch motion stage: consistent bodies and joint rotations for many streams at once.

The live loop calls :meth:`MotionStage.process` once per batch of lifted poses (one pose per
stream). The stage keeps, per stream, its :class:`~poselift.model.body.BodyEstimator` slot
and the rotation-continuity state (previous twist directions and quaternions), and returns
per pose: the consistent joints (camera frame, root-relative, as the protocol's ``joints``),
the rig-frame joints and root, local rotations in rig order, the rest offsets of the
stream's body, and whether the stream's skeleton just settled or changed notably (the cue
for a ``skeleton`` status message). Every step is vectorised over the batch.

A pose that is not valid (the protocol's ``valid = false``) or not finite neither enters the
body estimate nor moves the rotation state: its joints are passed through and its rotations
are the stream's previous ones (identity before any). A valid pose with a bone out of range
(say a nose-to-head bone of 8 mm) stays out of the estimate but is still conformed.

**Cost.** At batch 1 the stage's cost is the number of numpy calls (each half a microsecond
to a few on arrays this small), not their size: about 120 per pose, ~0.1 ms on the 2-core
Xeon it was tuned on (``python -m poselift.bench.motion --time-only``, which times the
:class:`~stream.motion_wire.MotionWire` call the live loop makes). So the arrays are flat
rows (N, 3K) and every step is a gather, an elementwise operation on same-shaped rows or a
product with a small constant matrix (see model/rig.py); broadcasts across dimensions,
reductions over an axis, stacked 3x3 products and ``where=`` masks, which cost several
times more, are kept off the steady path. The maths is the step-by-step version's, kept in
tests/motion_reference.py and tested equal to 1e-12. In a live loop each call is about
twice as dear as in a benchmark loop: the model step between two calls evicts the stage's
code and data from the CPU caches (the bench's ``cold_*`` figures reproduce it by reading
4 MiB between calls). Run torch with one thread there (the apps' default): a second OpenMP
thread spin-waits after each model step and, on a busy 2-core machine, the stage then loses
whole scheduler slices (milliseconds) in some processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from poselift.model.body import NUM_BONES, BodyEstimator, measure, rebuild, usable_lengths
from poselift.model.rig import NUM_RIG, NUM_TWIST, camera_to_rig, rest_offsets_finite, solve_rotations_from


@dataclass
class MotionBatch:
    """The stage's output for one batch of N poses."""

    streams: list[str]
    joints: np.ndarray  # (N, 17, 3) consistent joints, camera frame, root-relative (metres)
    rig_joints: np.ndarray  # (N, 17, 3) the same in the rig frame (y up), root-relative
    root: np.ndarray  # (N, 3) Hips position, rig frame: the pose's pelvis plus the given root (if any)
    rotations: np.ndarray  # (N, 19, 4) local rotations [x, y, z, w], rig order
    lengths: np.ndarray  # (N, 16) the stream's bone lengths (NaN before its first valid pose); once
    # settled, the lengths last reported by skeleton_changed (the skeleton consumers were sent)
    offsets: np.ndarray  # (N, 19, 3) rest offsets of the stream's body (rig frame)
    valid: np.ndarray  # (N,) the pose was valid and has a body: joints and rotations are usable
    settled: np.ndarray  # (N,) the stream's body has finished its warm-up
    skeleton_changed: np.ndarray  # (N,) the body settled or changed notably in this batch


class MotionStage:
    """Per-stream bodies and rotations; ``**body_options`` go to :class:`BodyEstimator`.

    At batch 1 the stage's cost is the number of numpy calls, not their size, so
    :meth:`process` is written for few of them: one matrix product measures the bones for
    both the estimate and the conform step, the steady state (every stream settled, every pose
    valid) takes no masks, and the rotation state is kept finite (zeros and identity
    quaternions for "none") so that nothing needs cleaning before the solver."""

    def __init__(self, **body_options: object) -> None:
        self.body = BodyEstimator(0, **body_options)  # type: ignore[arg-type]
        self._slots: dict[str, int] = {}
        self._free: list[int] = []
        self._twist = np.empty((0, NUM_TWIST, 3))  # previous twist directions; zeros: none
        self._local = np.empty((0, NUM_RIG, 4))  # previous quaternions; identity: none

    @property
    def streams(self) -> list[str]:
        return list(self._slots)

    def _slot(self, stream: str) -> int:
        slot = self._slots.get(stream)
        if slot is not None:
            return slot
        if self._free:
            slot = self._free.pop()
        else:
            slot = self.body.num_streams
            self.body.grow(slot + 1)
            self._twist = np.concatenate([self._twist, np.zeros((1, NUM_TWIST, 3))])
            self._local = np.concatenate([self._local, _IDENTITY[None]])
        self._slots[stream] = slot
        return slot

    def reset(self, stream: str) -> None:
        """Forget a stream's body and rotation history (after a stream reset or eviction)."""
        slot = self._slots.pop(stream, None)
        if slot is None:
            return
        self.body.reset(slot)
        self._twist[slot] = 0.0
        self._local[slot] = _IDENTITY
        self._free.append(slot)

    def process(self, streams: Sequence[str], joints: np.ndarray, valid: np.ndarray | None = None,
                root: np.ndarray | None = None) -> MotionBatch:
        """One pose per stream: ``joints`` (N, 17, 3) camera frame, root-relative; ``valid`` (N,);
        ``root`` (N, 3) optional absolute pelvis positions, camera frame (a trajectory model)."""
        joints = np.asarray(joints, dtype=np.float64)
        n = len(streams)
        if joints.shape != (n, 17, 3):
            raise ValueError(f"expected joints of shape ({n}, 17, 3), got {joints.shape}")
        if n > 1 and len(set(streams)) != n:
            raise ValueError("a batch holds at most one pose per stream")
        slots = np.array([self._slot(s) for s in streams], dtype=np.intp)

        rows = joints.reshape(n, 51)  # flat rows: see model/rig.py, the solver
        finite = np.isfinite(rows)
        if np.count_nonzero(finite) == finite.size:
            clean = rows
            if valid is None:
                candidates = np.empty(n, bool)
                candidates.fill(True)  # np.ones: three times slower at this size
            else:
                candidates = np.array(valid, dtype=bool)  # a copy: it is returned as the batch's valid
        else:
            finite = finite.all(axis=1)
            clean = np.where(finite[:, None], rows, 0.0)  # inf - inf would warn
            candidates = finite if valid is None else finite & np.asarray(valid, dtype=bool)
        observed, vectors, norms = measure(clean)
        update = self.body.update_lengths(observed, usable_lengths(observed, candidates), slots)
        # Once settled, poses take the lengths last reported (skeleton_changed), not the live
        # estimate: then the skeleton a consumer was told, the rotations and the joints agree
        # exactly (forward kinematics gives the joints back), until the next notable change.
        if np.count_nonzero(update.settled) == n:
            lengths = update.reported
            has_body = candidates  # a settled body's lengths are finite
        else:
            lengths = np.where(update.settled[:, None], update.reported, update.lengths)
            has_body = candidates & np.isfinite(lengths).all(axis=1)
        # Conform every valid, finite pose of a stream that has a body, also one that was kept
        # out of the estimate (a bone out of range): its other bones are still worth keeping.
        consistent, bones = rebuild(clean, vectors, norms, lengths)
        solved_all = n > 0 and np.count_nonzero(has_body) == n
        if not solved_all:
            consistent = np.where(has_body[:, None], consistent, rows)
        rig = consistent * _CAMERA_TO_RIG_JOINTS
        # The Hips' position: the pose's own pelvis (the lifter's is near, not at, the origin)
        # plus the trajectory's root, so forward kinematics from it gives rig + root back.
        rig_root = rig[:, :3] if root is None else rig[:, :3] + camera_to_rig(root)

        offsets = None
        if solved_all:
            solved = solve_rotations_from(rig, self._twist.take(slots, axis=0), self._local.take(slots, axis=0),
                                          None if bones is None else bones * _CAMERA_TO_RIG_BONES)
            self._twist[slots] = solved.twist
            self._local[slots] = rotations = solved.local
        else:
            # A pose that is not solved keeps its stream's previous rotations (identity before any).
            rotations = self._local.take(slots, axis=0)
            if np.count_nonzero(has_body):
                use = slots[has_body]
                solved = solve_rotations_from(rig[has_body], self._twist[use], rotations[has_body],
                                              None if bones is None else bones[has_body] * _CAMERA_TO_RIG_BONES)
                rotations[has_body] = solved.local
                self._twist[use] = solved.twist
                self._local[use] = solved.local
            offsets = rest_offsets_finite(np.where(np.isfinite(lengths), lengths, 0.0))
        return MotionBatch(list(streams), consistent.reshape(n, 17, 3), rig.reshape(n, 17, 3), rig_root, rotations,
                           lengths, rest_offsets_finite(lengths) if offsets is None else offsets, has_body,
                           update.settled, update.changed)


_IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])[None].repeat(NUM_RIG, axis=0)  # (19, 4)
_CAMERA_TO_RIG_JOINTS = np.tile(camera_to_rig(np.ones(3)), (1, 17))  # flat rows of joints (N, 51)
_CAMERA_TO_RIG_BONES = _CAMERA_TO_RIG_JOINTS[:, :3 * NUM_BONES]  # ... and of bones (N, 48)
assert NUM_BONES == 16
