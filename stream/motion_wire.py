"""The motion stage in the live loop: a consistent body, joint rotations and the moving root
for every published pose, per stream (issue 13).

:class:`MotionWire` is a :class:`stream.loop.PoseLoop` stage. Each round of poses goes
through one vectorised :meth:`stream.motion.MotionStage.process` call per "layer" (the first
pose of every stream in the round, then the second, ...: a round may hold several poses of
one stream, e.g. a reset's flushed tail and the next frame). Per pose it

* replaces ``PoseOut.joints`` by the consistent joints (the raw model output is kept in
  ``extras["joints_raw"]``),
* puts a :class:`MotionFrame` in ``extras["motion"]`` (rotations, the Hips' position,
  rest offsets and lengths of the stream's body, and whether its skeleton just settled or
  changed: the cue for a ``skeleton`` status message).

A stream's body is forgotten whenever the engine starts the stream over (``PoseOut.epoch``
changes: reset, restart, gap, size change, eviction, end then a new stream of the same id),
and the slot is freed as soon as the engine no longer holds the stream (end, eviction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine import LiftEngine, PoseOut
from .motion import MotionStage


@dataclass
class MotionFrame:
    """The motion outputs of one pose (rig frame: y up, see ``poselift.model.rig``)."""

    rotations: np.ndarray  # (19, 4) local rotations [x, y, z, w], rig order
    hips: np.ndarray  # (3,) Hips position, rig frame: the pelvis plus the root (if any)
    offsets: np.ndarray  # (19, 3) rest offsets of the stream's body, metres
    lengths: np.ndarray  # (16,) its bone lengths (NaN before the first valid pose)
    valid: bool  # the pose was valid and the stream has a body: rotations are usable
    settled: bool  # the body has finished its warm-up
    skeleton_changed: bool  # the body settled or changed notably with this pose
    skeleton_reason: str | None = None  # "settled" (first time since the stream (re)started), "changed"


class MotionWire:
    """``PoseLoop`` stage running :class:`MotionStage` over every round of poses.

    Args:
        engine: the loop's engine; streams it no longer holds are forgotten (None: never).
        body_options: passed to :class:`poselift.model.body.BodyEstimator`.
    """

    def __init__(self, engine: LiftEngine | None = None, **body_options: object) -> None:
        self.engine = engine
        self.stage = MotionStage(**body_options)
        self._epoch: dict[str, int] = {}
        self._announced: set[str] = set()  # streams whose body settled in their current epoch

    def __call__(self, poses: list[PoseOut]) -> list[PoseOut]:
        layer: dict[str, PoseOut] = {}
        for p in poses:  # per-stream order is kept: a stream's k-th pose goes in the k-th call
            if p.stream in layer:
                self._process(list(layer.values()))
                layer = {}
            layer[p.stream] = p
        if layer:
            self._process(list(layer.values()))
        if self.engine is not None and len(self._epoch) > len(self.engine.streams):
            for name in [s for s in self._epoch if s not in self.engine.streams]:
                self.forget(name)
        return poses

    def forget(self, stream: str) -> None:
        """Drop a stream's body and rotation state."""
        self._epoch.pop(stream, None)
        self._announced.discard(stream)
        self.stage.reset(stream)

    def _process(self, poses: list[PoseOut]) -> None:
        epoch = self._epoch
        for p in poses:
            if epoch.get(p.stream, p.epoch) != p.epoch:
                self.forget(p.stream)
            epoch[p.stream] = p.epoch
        # One pose (a single stream): a view, not a stack (which costs more than the view's use).
        joints = poses[0].joints[None] if len(poses) == 1 else np.stack([p.joints for p in poses])
        roots = None
        if any(p.root is not None for p in poses):
            roots = np.stack([np.zeros(3) if p.root is None or not np.isfinite(p.root).all() else p.root
                              for p in poses])
        out = self.stage.process([p.stream for p in poses], joints, [p.valid for p in poses], roots)
        consistent = out.joints.astype(np.float32)
        changed = out.skeleton_changed.tolist()
        valid, settled = out.valid.tolist(), out.settled.tolist()
        for i, p in enumerate(poses):
            reason = None
            if changed[i]:
                reason = "changed" if p.stream in self._announced else "settled"
                self._announced.add(p.stream)
            p.extras["joints_raw"] = p.joints
            p.joints = consistent[i]
            p.extras["motion"] = MotionFrame(out.rotations[i], out.root[i], out.offsets[i], out.lengths[i],
                                             valid[i], settled[i], changed[i], reason)
