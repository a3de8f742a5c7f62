"""Recording motion to BVH files: a whole offline take (``poselift video --bvh``) or live
streams received as protocol messages (``poselift listen --bvh``).

A BVH file has one skeleton, so a live recording buffers a stream's poses until its body
settles (the ``skeleton`` status message), then opens the file with those bone lengths and
writes as poses come (flushed per frame, so a crash loses nothing already received). A
stream that ends before any skeleton arrives (or a recording started after it was sent) is
written at close with the lengths of its latest valid pose (its joints are consistent, so
they carry the body). Dropped frames (gaps in ``frame``) repeat the previous frame, so the
file keeps the source's timing; the frame time is the source's (``t`` over ``frame``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from poselift.model.body import bone_lengths
from poselift.model.rig import RIG_BONE, camera_to_rig

from .bvh_out import BVHWriter, write_bvh

DEFAULT_FRAME_TIME = 1 / 30
MAX_FILL = 300  # most dropped frames repeated for one gap (10 s at 30 fps); longer gaps are cut


def lengths_from_offsets(offsets: Any) -> np.ndarray:
    """(16,) bone lengths from a ``skeleton`` message's (19, 3) rest offsets."""
    offsets = np.asarray(offsets, dtype=np.float64)
    lengths = np.zeros(16)
    for joint, bone in enumerate(RIG_BONE):
        if bone >= 0:
            lengths[bone] = np.linalg.norm(offsets[joint])
    return lengths


def hips_from_message(msg: dict[str, Any]) -> np.ndarray:
    """The Hips' position (rig frame) of a pose message: camera pelvis + root, y and z negated."""
    pelvis = np.asarray(msg["joints"][0], dtype=np.float64)
    if msg.get("root") is not None:
        pelvis = pelvis + np.asarray(msg["root"], dtype=np.float64)
    return camera_to_rig(pelvis)


def write_take(path: str | os.PathLike, rotations: np.ndarray, hips: np.ndarray, usable: np.ndarray,
               lengths: np.ndarray, frame_time: float) -> Path:
    """One offline take: (T, 19, 4) rotations, (T, 3) Hips, ``usable`` (T,) frames with a body;
    the others hold the previous usable frame (the first ones: the first usable frame)."""
    usable = np.asarray(usable, dtype=bool)
    if not usable.any():
        raise ValueError("no frame has a body: nothing to write")
    index = np.maximum.accumulate(np.where(usable, np.arange(len(usable)), -1))
    index = np.where(index < 0, int(np.argmax(usable)), index)
    return write_bvh(path, rotations[index], hips[index], lengths, frame_time)


def take_lengths(arrays: dict[str, Any]) -> np.ndarray:
    """The one skeleton of an offline take (``video_arrays``): the body as it settled (the
    lengths its poses use from then on, until a notable change), else the latest estimate."""
    lengths, usable = arrays["bone_lengths"], arrays["motion_valid"]
    settled = np.flatnonzero(arrays["settled"] & usable)
    at = settled[0] if len(settled) else np.flatnonzero(usable)[-1]
    return np.asarray(lengths[at], dtype=np.float64)


class StreamRecorder:
    """One stream's live BVH recording (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.writer: BVHWriter | None = None
        self._buffer: list[tuple[np.ndarray, np.ndarray]] = []
        self._times: list[tuple[int, float]] = []  # (frame, t) of the first poses, for the frame time
        self._last: tuple[np.ndarray, np.ndarray] | None = None
        self._last_frame: int | None = None
        self._lengths: np.ndarray | None = None  # of the latest valid pose
        self._skeleton: np.ndarray | None = None  # lengths of the first skeleton message
        self.frames = 0

    def pose(self, msg: dict[str, Any]) -> None:
        """A ``pose3d`` message of this stream."""
        frame = int(msg["frame"])
        if msg.get("valid") and msg.get("rotations") is not None:
            self._last = (np.asarray(msg["rotations"], dtype=np.float64), hips_from_message(msg))
            self._lengths = bone_lengths(np.asarray(msg["joints"], dtype=np.float64))
            if len(self._times) < 64:
                self._times.append((frame, float(msg["t"])))
        if self._last is None:
            return  # nothing to show yet: the file starts with the first usable pose
        repeat = 1
        if self._last_frame is not None and frame > self._last_frame:
            repeat = min(frame - self._last_frame, MAX_FILL)
        self._last_frame = frame
        for _ in range(repeat):
            self._append(*self._last)
        self._maybe_open()

    def skeleton(self, offsets: Any) -> None:
        """A ``skeleton`` status for this stream: the file opens with the first one (as soon
        as two poses give the frame time)."""
        if self._skeleton is None:
            self._skeleton = lengths_from_offsets(offsets)
            self._maybe_open()

    def _maybe_open(self) -> None:
        if self.writer is None and self._skeleton is not None and len(self._times) >= 2:
            self._open(self._skeleton)

    def close(self) -> bool:
        """Write what is buffered (opening the file if no skeleton came) and close; False if
        the stream never had a usable pose (no file)."""
        if self.writer is None:
            lengths = self._skeleton if self._skeleton is not None else self._lengths
            if lengths is None or not self._buffer:
                return False
            self._open(lengths)
        assert self.writer is not None
        self.writer.close()
        return True

    def frame_time(self) -> float:
        if len(self._times) < 2 or self._times[-1][0] <= self._times[0][0]:
            return DEFAULT_FRAME_TIME
        (f0, t0), (f1, t1) = self._times[0], self._times[-1]
        dt = (t1 - t0) / (f1 - f0)
        return dt if dt > 0 else DEFAULT_FRAME_TIME

    def _open(self, lengths: np.ndarray) -> None:
        self.writer = BVHWriter(self.path, lengths, self.frame_time(), flush=True)
        if self._buffer:
            rot, hips = zip(*self._buffer)
            self.writer.write(np.stack(rot), np.stack(hips))
            self._buffer.clear()

    def _append(self, rotations: np.ndarray, hips: np.ndarray) -> None:
        self.frames += 1
        if self.writer is None:
            self._buffer.append((rotations, hips))
        else:
            self.writer.write(rotations, hips)


class BVHRecording:
    """``listen --bvh OUT.bvh``: one file per stream (``OUT-<stream>.bvh``), or ``OUT.bvh``
    itself when ``single`` (one ``--stream`` picked). A stream that ends (``end`` status)
    closes its file; if it comes back, the next file is ``OUT-<stream>-2.bvh``, and so on."""

    def __init__(self, path: str | os.PathLike, single: bool = False) -> None:
        self.path = Path(path)
        self.single = single
        self.recorders: dict[str, StreamRecorder] = {}
        self.written: list[Path] = []
        self._takes: dict[str, int] = {}

    def _path(self, stream: str) -> Path:
        take = self._takes.get(stream, 0) + 1
        self._takes[stream] = take
        suffix = "" if take == 1 else f"-{take}"
        if self.single:
            return self.path.with_name(f"{self.path.stem}{suffix}{self.path.suffix}")
        return self.path.with_name(f"{self.path.stem}-{stream}{suffix}{self.path.suffix}")

    def message(self, msg: dict[str, Any]) -> None:
        """Feed any decoded output message (pose3d or status)."""
        stream = msg.get("stream")
        if not isinstance(stream, str):
            return
        if msg.get("type") == "pose3d":
            self._recorder(stream).pose(msg)
        elif msg.get("type") == "status":
            if msg.get("event") == "skeleton" and isinstance(msg.get("skeleton"), dict):
                self._recorder(stream).skeleton(msg["skeleton"]["offsets"])
            elif msg.get("event") == "end" and stream in self.recorders:
                self._close(stream)

    def _recorder(self, stream: str) -> StreamRecorder:
        rec = self.recorders.get(stream)
        if rec is None:
            rec = self.recorders[stream] = StreamRecorder(self._path(stream))
        return rec

    def _close(self, stream: str) -> None:
        rec = self.recorders.pop(stream)
        if rec.close():
            self.written.append(rec.path)

    def close(self) -> list[Path]:
        """Close every file (end of listening, Ctrl-C, SIGTERM); returns the files written."""
        for stream in list(self.recorders):
            self._close(stream)
        return self.written
