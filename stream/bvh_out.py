"""BVH files of a stream's motion, written frame by frame (live recording) or all at once.

What the file holds (any BVH tool: Blender, MotionBuilder, Maya, bvhio, ``train.bvh``):

- the rig of :mod:`poselift.model.rig`: 19 joints (the 17 H36M joints with Unity
  ``HumanBodyBones`` names plus the zero-length branches ``LowerBack`` and ``Neck``), End Sites
  on the feet, hands and ``HeadEnd``;
- **y up**, right-handed, the person facing +z in the T-pose rest pose, **centimetres**;
- the stream's own bone lengths as the OFFSETs (one skeleton for the whole file: give the
  settled lengths of :class:`poselift.model.body.BodyEstimator`);
- the root (``Hips``) with ``Xposition Yposition Zposition Zrotation Xrotation Yrotation``,
  every other joint ``Zrotation Xrotation Yrotation``: the local rotation is
  ``Rz · Rx · Ry`` (intrinsic Z, X, Y), angles in degrees, each channel unwrapped to within
  180° of the previous frame so that interpolating readers do not spin;
- the source's frame time.

The header's ``Frames:`` count is written as a fixed-width field and filled in by
:meth:`BVHWriter.close`, so a recording can be appended to while it runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
from scipy.spatial.transform import Rotation

from poselift.model.rig import NUM_RIG, REST_DIRECTIONS, RIG_NAMES, RIG_PARENTS, rest_offsets

CM_PER_M = 100.0
_FRAMES_FIELD = 12  # digits reserved for the frame count
_END_SITES_CM = {3: (0.0, 0.0, 10.0), 6: (0.0, 0.0, 10.0), 13: (8.0, 0.0, 0.0), 16: (-8.0, 0.0, 0.0),
                 10: (0.0, 10.0, 0.0)}  # feet point forward, hands outward, the head up


def _children(joint: int) -> list[int]:
    return [c for c in range(NUM_RIG) if RIG_PARENTS[c] == joint]


def bvh_joint_order() -> list[int]:
    """Rig joints in the order their channels appear in the file (depth first)."""
    order: list[int] = []

    def visit(j: int) -> None:
        order.append(j)
        for c in _children(j):
            visit(c)

    visit(0)
    return order


def bvh_header(lengths: np.ndarray, frame_time: float, frames: int = 0) -> str:
    """The HIERARCHY and MOTION header for a body with ``lengths`` (16,) metres."""
    offsets = rest_offsets(np.asarray(lengths, dtype=np.float64)) * CM_PER_M
    lines = ["HIERARCHY"]

    def visit(j: int, depth: int) -> None:
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if j == 0 else 'JOINT'} {RIG_NAMES[j]}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {offsets[j, 0]:.6f} {offsets[j, 1]:.6f} {offsets[j, 2]:.6f}")
        if j == 0:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
        else:
            lines.append(f"{pad}  CHANNELS 3 Zrotation Xrotation Yrotation")
        children = _children(j)
        for c in children:
            visit(c, depth + 1)
        if not children:
            end = _END_SITES_CM.get(j, tuple(REST_DIRECTIONS[j] * 5.0))
            lines.extend([f"{pad}  End Site", pad + "  {",
                          f"{pad}    OFFSET {end[0]:.6f} {end[1]:.6f} {end[2]:.6f}", pad + "  }"])
        lines.append(pad + "}")

    visit(0, 0)
    lines += ["MOTION", f"Frames: {frames:<{_FRAMES_FIELD}d}", f"Frame Time: {frame_time:.8f}"]
    return "\n".join(lines) + "\n"


def unwrap_degrees(angles: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """Shift each angle by whole turns to within 180° of the previous one (first: as is)."""
    if previous is None:
        return angles
    return previous + (angles - previous + 180.0) % 360.0 - 180.0


class BVHWriter:
    """Write one stream's motion to ``path`` as it comes.

    Args:
        path: the ``.bvh`` file (overwritten).
        lengths: (16,) bone lengths in metres (the settled body of the stream).
        frame_time: seconds per frame of the source (``1 / fps``).
        flush: flush after every :meth:`write` so a crash leaves every frame written so far
            on disk (the ``Frames:`` count then still says 0; :meth:`close` fixes it).
    """

    def __init__(self, path: str | os.PathLike, lengths: np.ndarray, frame_time: float, *, flush: bool = False) -> None:
        if not frame_time > 0:
            raise ValueError("frame_time must be positive")
        lengths = np.asarray(lengths, dtype=np.float64)
        if lengths.shape != (16,) or not np.isfinite(lengths).all():
            raise ValueError("lengths must be 16 finite bone lengths in metres")
        self.path = Path(path)
        self.frames = 0
        self._flush = flush
        self._order = bvh_joint_order()
        self._previous: np.ndarray | None = None
        self._file: BinaryIO | None = open(self.path, "wb")
        header = bvh_header(lengths, frame_time)
        self._file.write(header.encode("ascii"))
        self._frames_at = header.index("Frames: ") + len("Frames: ")

    def write(self, rotations: np.ndarray, root: np.ndarray) -> None:
        """Append frames: local rotations (T, 19, 4) or (19, 4) quaternions [x, y, z, w] in rig
        order, and root (Hips) positions (T, 3) or (3,) in metres, rig frame (y up)."""
        if self._file is None:
            raise ValueError("the BVH writer is closed")
        q = np.asarray(rotations, dtype=np.float64).reshape(-1, NUM_RIG, 4)
        root = np.asarray(root, dtype=np.float64).reshape(-1, 3)
        if len(root) != len(q):
            raise ValueError(f"{len(q)} frames of rotations but {len(root)} root positions")
        euler = Rotation.from_quat(q[:, self._order].reshape(-1, 4)).as_euler("ZXY", degrees=True)
        euler = euler.reshape(len(q), len(self._order) * 3)
        rows = []
        for t in range(len(q)):
            self._previous = unwrap_degrees(euler[t], self._previous)
            values = np.concatenate([root[t] * CM_PER_M, self._previous])
            rows.append(" ".join(f"{v:.6f}" for v in values))
        self._file.write(("\n".join(rows) + "\n").encode("ascii"))
        self.frames += len(q)
        if self._flush:
            self._file.flush()

    def close(self) -> None:
        """Fill in the frame count and close the file (idempotent)."""
        if self._file is None:
            return
        self._file.seek(self._frames_at)
        self._file.write(f"{self.frames:<{_FRAMES_FIELD}d}".encode("ascii"))
        self._file.close()
        self._file = None

    def __enter__(self) -> "BVHWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_bvh(path: str | os.PathLike, rotations: np.ndarray, root: np.ndarray, lengths: np.ndarray,
              frame_time: float) -> Path:
    """Write a whole take at once (see :class:`BVHWriter`)."""
    with BVHWriter(path, lengths, frame_time) as writer:
        writer.write(rotations, root)
    return Path(path)
