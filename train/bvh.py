"""BVH motion capture: parsing, forward kinematics and mapping to H36M-17.

Forward kinematics follows each joint's own rotation channel order (in the shared CMU
data the root is ``Z Y X`` and the other joints ``Z X Y``): a joint's local rotation is
the product of its elementary rotations in the listed order. Offsets are scaled by an
optional per-joint factor, which is how :mod:`train.dataset` makes bodies of other
proportions from the same motion. Positions come out in metres, world frame, Y up.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bvh_mapping import SkeletonMapping, resolve_mapping, to_h36m


class BVHError(ValueError):
    """A BVH file cannot be read; the message names the file and the line."""


@dataclass
class BVHJoint:
    name: str
    parent: int
    offset: np.ndarray  # (3,) in file units
    channels: list[str]
    channel_start: int


@dataclass
class BVHMotion:
    """A parsed BVH take: hierarchy plus per-frame channel values."""

    path: str
    joints: list[BVHJoint]
    frame_time: float
    motion: np.ndarray  # (T, num_channels) file units, degrees
    end_sites: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    @property
    def joint_names(self) -> list[str]:
        return [j.name for j in self.joints]

    def index(self, name: str) -> int:
        for i, j in enumerate(self.joints):
            if j.name == name:
                return i
        raise KeyError(f"{self.path}: no joint named {name!r}")


def _open_text(path: str | os.PathLike):
    path = str(path)
    return gzip.open(path, "rt") if path.endswith(".gz") else open(path)


def read_bvh(path: str | os.PathLike) -> BVHMotion:
    """Parse a ``.bvh`` or ``.bvh.gz`` file. Errors name the file and line."""
    path = str(path)
    try:
        with _open_text(path) as f:
            lines = f.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise BVHError(f"{path}: cannot read: {exc}") from None
    joints: list[BVHJoint] = []
    end_sites: dict[int, np.ndarray] = {}
    stack: list[int] = []
    pending: tuple[str, int] | None = None  # (name, parent) of a joint whose '{' comes next
    in_end_site = False
    channel_count = 0
    i = 0

    def fail(msg: str) -> BVHError:
        return BVHError(f"{path}:{i + 1}: {msg}")

    if not lines or lines[0].strip() != "HIERARCHY":
        i = 0
        raise fail("expected 'HIERARCHY' on the first line")
    i = 1
    while i < len(lines):
        tokens = lines[i].split()
        if not tokens:
            i += 1
            continue
        key = tokens[0]
        if key in ("ROOT", "JOINT"):
            if len(tokens) < 2:
                raise fail(f"{key} without a name")
            if key == "ROOT" and joints:
                raise fail("more than one ROOT is not supported")
            pending = (tokens[1], stack[-1] if stack else -1)
        elif key == "End":
            in_end_site = True
        elif key == "{":
            if pending is not None:
                name, parent = pending
                joints.append(BVHJoint(name, parent, np.zeros(3), [], channel_count))
                stack.append(len(joints) - 1)
                pending = None
            elif in_end_site:
                stack.append(-2)  # marker for an end site block
            else:
                raise fail("unexpected '{'")
        elif key == "}":
            if not stack:
                raise fail("unbalanced '}'")
            top = stack.pop()
            if top == -2:
                in_end_site = False
        elif key == "OFFSET":
            try:
                offset = np.array([float(v) for v in tokens[1:4]])
            except ValueError:
                raise fail("OFFSET needs three numbers") from None
            if offset.shape != (3,):
                raise fail("OFFSET needs three numbers")
            if not np.isfinite(offset).all():  # NaN bones only surfaced as a NaN training loss
                raise fail("NaN or inf in OFFSET")
            if in_end_site and stack and stack[-1] == -2:
                end_sites[stack[-2]] = offset
            elif stack:
                joints[stack[-1]].offset = offset
            else:
                raise fail("OFFSET outside a joint")
        elif key == "CHANNELS":
            if not stack or stack[-1] < 0:
                raise fail("CHANNELS outside a joint")
            try:
                n = int(tokens[1])
            except (IndexError, ValueError):
                raise fail("CHANNELS needs a count") from None
            names = tokens[2:]
            if len(names) != n:
                raise fail(f"CHANNELS says {n} channels but lists {len(names)}")
            valid = {f"{a}{k}" for a in "XYZ" for k in ("position", "rotation")}
            bad = [c for c in names if c not in valid]
            if bad:
                raise fail(f"unknown channel(s) {bad}")
            joint = joints[stack[-1]]
            joint.channels = names
            joint.channel_start = channel_count
            channel_count += n
        elif key == "MOTION":
            break
        else:
            raise fail(f"unexpected token {key!r} in HIERARCHY")
        i += 1
    else:
        raise BVHError(f"{path}: no MOTION section (file truncated?)")
    if stack:
        raise fail("HIERARCHY has unclosed '{'")
    if not joints:
        raise fail("no joints in HIERARCHY")
    try:
        i += 1
        frames = int(lines[i].split(":")[1])
        i += 1
        frame_time = float(lines[i].split(":")[1])
    except (IndexError, ValueError):
        raise fail("expected 'Frames: N' and 'Frame Time: S' after MOTION") from None
    if frame_time <= 0 or not np.isfinite(frame_time):
        raise fail(f"invalid frame time {frame_time}")
    if frames < 1:  # a negative count crashed in numpy without naming the file
        raise BVHError(f"{path}:{i}: 'Frames: {frames}': a take needs at least one frame")
    data_lines = [ln for ln in lines[i + 1:] if ln.strip()]
    if len(data_lines) < frames:
        raise BVHError(
            f"{path}: header says {frames} frames but only {len(data_lines)} are present (file truncated?)"
        )
    motion = np.empty((frames, channel_count))
    for k in range(frames):
        line_no = i + 2 + k
        try:
            values = np.array(data_lines[k].split(), dtype=np.float64)
        except ValueError:
            raise BVHError(f"{path}:{line_no}: non-numeric value in motion data") from None
        if values.shape != (channel_count,):
            raise BVHError(f"{path}:{line_no}: expected {channel_count} channel values, got {values.size}")
        if not np.isfinite(values).all():
            raise BVHError(f"{path}:{line_no}: NaN or inf in motion data")
        motion[k] = values
    return BVHMotion(path, joints, frame_time, motion, end_sites)


def _axis_rotations(axis: str, degrees: np.ndarray) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    r = np.zeros(a.shape + (3, 3))
    i = "XYZ".index(axis)
    j, k = (i + 1) % 3, (i + 2) % 3
    r[..., i, i] = 1.0
    r[..., j, j] = c
    r[..., k, k] = c
    r[..., j, k] = -s
    r[..., k, j] = s
    return r


def forward_kinematics(
    bvh: BVHMotion,
    frames: np.ndarray | slice | None = None,
    offset_scale: np.ndarray | None = None,
    extra_points: Mapping[str, tuple[str, Sequence[float]]] | None = None,
    unit_scale: float = 0.01,
    root_translation_scale: float = 1.0,
) -> tuple[np.ndarray, list[str]]:
    """World positions of every joint: returns ((T, J + E, 3) metres, names).

    Args:
        frames: which motion frames to evaluate (all by default).
        offset_scale: (J,) factor for each joint's offset from its parent (body proportions).
        extra_points: virtual points ``name -> (parent joint, offset in file units)`` placed
            in the parent's frame (e.g. a nose on the head); scaled like their parent's offset.
        unit_scale: file units to metres (BVH from CMU is in centimetres).
        root_translation_scale: factor on the root's translation channels (a taller body
            travels further and stands higher).
    """
    motion = bvh.motion if frames is None else bvh.motion[frames]
    t = motion.shape[0]
    n = len(bvh.joints)
    scale = np.ones(n) if offset_scale is None else np.asarray(offset_scale, dtype=np.float64)
    rot = np.empty((n, t, 3, 3))
    pos = np.empty((n, t, 3))
    for j, joint in enumerate(bvh.joints):
        local = np.broadcast_to(np.eye(3), (t, 3, 3)).copy()
        translation = np.zeros((t, 3))
        for c, name in enumerate(joint.channels):
            values = motion[:, joint.channel_start + c]
            if name.endswith("rotation"):
                local = local @ _axis_rotations(name[0], values)
            else:
                translation[:, "XYZ".index(name[0])] = values
        offset = joint.offset * scale[j]
        if joint.parent < 0:
            rot[j] = local
            pos[j] = translation * root_translation_scale + offset
        else:
            p = joint.parent
            rot[j] = rot[p] @ local
            pos[j] = pos[p] + np.einsum("tij,j->ti", rot[p], offset) + translation
    names = bvh.joint_names
    points = [pos]
    for name, (parent_name, offset) in (extra_points or {}).items():
        p = bvh.index(parent_name)
        off = np.asarray(offset, dtype=np.float64) * scale[p]
        points.append((pos[p] + np.einsum("tij,j->ti", rot[p], off))[None])
        names = names + [name]
    return np.concatenate(points, axis=0).transpose(1, 0, 2) * unit_scale, names


def resample_indices(num_frames: int, source_fps: float, target_fps: float, phase: float = 0.0) -> np.ndarray:
    """Fractional source-frame positions of a resampled take (phase in source frames).

    Tolerates the rounding in BVH frame times (0.0333333 s is not exactly 1/30 s), so a
    30 fps file resampled to 30 fps keeps every frame.
    """
    if target_fps <= 0:
        raise ValueError("target fps must be positive")
    step = source_fps / target_fps
    count = int(np.floor((num_frames - 1 - phase) / step + 1e-4)) + 1
    return np.minimum(phase + np.arange(max(count, 0)) * step, num_frames - 1)


def load_h36m_positions(
    bvh: BVHMotion | str | os.PathLike,
    fps: float = 30.0,
    mapping: SkeletonMapping | str = "auto",
    offset_scale: np.ndarray | None = None,
    phase: float = 0.0,
    root_translation_scale: float = 1.0,
) -> np.ndarray:
    """A take as (T, 17, 3) H36M joints in metres (world frame, Y up) at ``fps``.

    ``mapping`` is a :class:`train.bvh_mapping.SkeletonMapping`, the name of one in
    ``MAPPINGS``, or ``"auto"`` to recognise the skeleton from its joint names.
    Drops the leading T-pose frame when the mapping says so. When the source rate is an
    integer multiple of ``fps`` the frames are subsampled exactly (FK only on those);
    otherwise joint positions are linearly interpolated.
    """
    if not isinstance(bvh, BVHMotion):
        bvh = read_bvh(bvh)
    mapping = resolve_mapping(bvh, mapping)
    start = 1 if mapping.drop_first_frame and bvh.motion.shape[0] > 1 else 0
    usable = bvh.motion.shape[0] - start
    positions = resample_indices(usable, bvh.fps, fps, phase) + start
    ratio = bvh.fps / fps
    if abs(ratio - round(ratio)) < 1e-4 and abs(phase - round(phase)) < 1e-9:
        frames = np.round(positions).astype(int)
        pts, names = forward_kinematics(bvh, frames, offset_scale, mapping.extra_points, mapping.unit_scale,
                                        root_translation_scale)
        return to_h36m(pts, names, mapping.to_h36m)
    lo = np.floor(positions).astype(int)
    hi = np.minimum(lo + 1, bvh.motion.shape[0] - 1)
    needed = np.unique(np.concatenate([lo, hi]))
    pts, names = forward_kinematics(bvh, needed, offset_scale, mapping.extra_points, mapping.unit_scale,
                                    root_translation_scale)
    joints = to_h36m(pts, names, mapping.to_h36m)
    where = {f: k for k, f in enumerate(needed)}
    w = (positions - lo)[:, None, None]
    return joints[[where[f] for f in lo]] * (1 - w) + joints[[where[f] for f in hi]] * w


def find_bvh_files(root: str | os.PathLike) -> list[Path]:
    """All ``.bvh``/``.bvh.gz`` files under ``root`` (or ``root`` itself), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or folder")
    return sorted(p for p in root.rglob("*") if p.name.endswith((".bvh", ".bvh.gz")))
