"""How BVH skeletons become H36M-17: the shared CMU skeleton and common naming conventions.

Each H36M joint is the mean of named points of the skeleton. The constructions are the
ones 2D detectors use, defined once in ``model.skeleton.H36M_CONSTRUCTION`` (pelvis =
mid-hips, spine = mean of hips and shoulders, thorax = mid-shoulders, neck_nose = the nose,
head = mid-eyes); a rig only says which of its joints is each anatomical point. A skeleton
without eyes or a nose gets them as virtual points on the head, placed from the head
bone's length; units are recognised from the leg length.

To support another skeleton, add a :class:`SkeletonMapping` to ``MAPPINGS``; the
``"auto"`` resolver tries the registered mappings first, then the generic name tables
(``Hips/LeftUpLeg/LeftLeg/LeftFoot/LeftArm/LeftForeArm/LeftHand/Head`` as used by the
CMU ASF conversions, Mixamo (``mixamorig:`` prefixes), MotionBuilder and others).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from poselift.model.skeleton import H36M_JOINT_NAMES, h36m_construction

if TYPE_CHECKING:
    from .bvh import BVHMotion


@dataclass(frozen=True)
class SkeletonMapping:
    """How one BVH skeleton's joints become H36M-17.

    ``to_h36m`` maps each H36M joint name to the points it is the mean of;
    ``extra_points`` defines virtual points ``name -> (parent joint, offset in file units)``
    in the parent's frame; ``unit_scale`` converts file units to metres.
    """

    to_h36m: Mapping[str, tuple[str, ...]]
    extra_points: Mapping[str, tuple[str, Sequence[float]]] = field(default_factory=dict)
    unit_scale: float = 0.01
    drop_first_frame: bool = True  # frame 0 is a T-pose

    def joints_used(self) -> set[str]:
        names = {n for sources in self.to_h36m.values() for n in sources} - set(self.extra_points)
        return names | {parent for parent, _ in self.extra_points.values()}


# The shared CMU ("Daz-friendly" cgspeed) skeleton, in centimetres.
CMU_EXTRA_POINTS: dict[str, tuple[str, tuple[float, float, float]]] = {
    # the nose, in the head joint's frame (cm): between the eyes, lower and further forward
    "nose": ("head", (0.24, 4.5, 10.0)),
}
# Which CMU joint (or virtual point) is each anatomical point of the shared constructions.
CMU_POINTS: dict[str, str] = {
    "right_hip": "rThigh", "right_knee": "rShin", "right_ankle": "rFoot",
    "left_hip": "lThigh", "left_knee": "lShin", "left_ankle": "lFoot",
    "right_shoulder": "rShldr", "right_elbow": "rForeArm", "right_wrist": "rHand",
    "left_shoulder": "lShldr", "left_elbow": "lForeArm", "left_wrist": "lHand",
    "nose": "nose", "left_eye": "leftEye", "right_eye": "rightEye",
}
CMU_TO_H36M: dict[str, tuple[str, ...]] = h36m_construction(CMU_POINTS)

MAPPINGS: dict[str, SkeletonMapping] = {"cmu": SkeletonMapping(CMU_TO_H36M, CMU_EXTRA_POINTS)}

# Generic tables: candidate names (case-insensitive, namespace prefixes like "mixamorig:"
# ignored), first match wins. Note "LeftShoulder" is the clavicle in most of these rigs.
_CANDIDATES: dict[str, tuple[str, ...]] = {
    "left_hip": ("LeftUpLeg", "LeftThigh", "lThigh", "LThigh", "L_Hip", "LeftHip", "LHip", "Left_Hip"),
    "left_knee": ("LeftLeg", "LeftShin", "lShin", "LShin", "L_Knee", "LeftKnee", "LKnee", "LeftLowLeg", "Left_Knee"),
    "left_ankle": ("LeftFoot", "lFoot", "LFoot", "L_Ankle", "LeftAnkle", "LAnkle", "Left_Ankle"),
    "left_shoulder": ("LeftArm", "lShldr", "LShldr", "LeftUpArm", "LeftUpperArm", "L_Shoulder", "LShoulder", "Left_Shoulder"),
    "left_elbow": ("LeftForeArm", "lForeArm", "LForeArm", "LeftLowArm", "LeftLowerArm", "L_Elbow", "LeftElbow", "LElbow", "Left_Elbow"),
    "left_wrist": ("LeftHand", "lHand", "LHand", "L_Wrist", "LeftWrist", "LWrist", "Left_Wrist"),
    "head": ("Head", "head"),
    "left_eye": ("LeftEye", "leftEye", "L_Eye", "LEye"),
}


def _strip(name: str) -> str:
    return name.split(":")[-1].split("|")[-1].lower()


def _mirror(name: str) -> str:
    """The right-side twin of a left-side joint name (LeftArm, leftEye, L_Hip, lThigh, LHip)."""
    if "Left" in name:
        return name.replace("Left", "Right")
    if "left" in name:
        return name.replace("left", "right")
    if name.startswith("L_"):
        return "R_" + name[2:]
    if len(name) > 1 and name[0] in "lL" and name[1].isupper():
        return ("r" if name[0] == "l" else "R") + name[1:]
    return name


def _find(names: Sequence[str], candidates: Sequence[str]) -> str | None:
    by_key = {_strip(n): n for n in reversed(names)}
    for c in candidates:
        if c.lower() in by_key:
            return by_key[c.lower()]
    return None


_KNOWN_UNITS = (1.0, 0.01, 0.001, 0.0254, 0.056444)  # m, cm, mm, inch, CMU ASF-converted units


def _rest_distance(bvh: "BVHMotion", ancestor: int, joint: int) -> float:
    """Rest-pose length of the chain of offsets from ``ancestor`` down to ``joint``."""
    total, j = np.zeros(3), joint
    while j != ancestor and j >= 0:
        total += bvh.joints[j].offset
        j = bvh.joints[j].parent
    return float(np.linalg.norm(total))


def _guess_unit_scale(bvh: "BVHMotion", hip: int, ankle: int) -> float:
    """Metres per file unit, from the rest-pose hip-to-ankle length (~0.85 m for an adult)."""
    leg = _rest_distance(bvh, hip, ankle)
    if leg <= 0:
        return 0.01
    estimate = 0.85 / leg
    best = min(_KNOWN_UNITS, key=lambda u: abs(np.log(u / estimate)))
    return best if abs(np.log(best / estimate)) < np.log(1.6) else estimate


def generic_mapping(bvh: "BVHMotion") -> SkeletonMapping:
    """Recognise a skeleton by common joint names; raise ValueError naming what is missing."""
    names = bvh.joint_names
    found: dict[str, str] = {}
    missing = []
    for key, cands in _CANDIDATES.items():
        sides = [(key, cands)]
        if key.startswith("left_"):
            sides.append((key.replace("left_", "right_"), tuple(_mirror(c) for c in cands)))
        for side, options in sides:
            hit = _find(names, options)
            if hit is not None:
                found[side] = hit
            elif not side.endswith("_eye"):
                missing.append(side)
    if missing:
        raise ValueError(
            f"{bvh.path}: unrecognised skeleton: no joint found for {missing}; add a SkeletonMapping for "
            f"it to train.bvh_mapping.MAPPINGS (joints: {', '.join(names[:30])}{'...' if len(names) > 30 else ''})"
        )
    unit = _guess_unit_scale(bvh, bvh.index(found["left_hip"]), bvh.index(found["left_ankle"]))
    head = bvh.index(found["head"])
    end = bvh.end_sites.get(head)
    head_len = float(np.linalg.norm(end)) if end is not None and np.linalg.norm(end) > 0 else 0.2 / unit
    up = end / np.linalg.norm(end) if end is not None and np.linalg.norm(end) > 0 else np.array([0.0, 1.0, 0.0])
    forward = np.array([0.0, 0.0, 1.0])  # BVH rigs face +Z in their rest pose
    extra: dict[str, tuple[str, Sequence[float]]] = {
        "nose": (found["head"], tuple(up * 0.25 * head_len + forward * 0.55 * head_len)),
    }
    if "left_eye" not in found or "right_eye" not in found:  # one virtual mid-eyes point for both
        extra["mid_eyes"] = (found["head"], tuple(up * 0.45 * head_len + forward * 0.45 * head_len))
        found["left_eye"] = found["right_eye"] = "mid_eyes"
    found["nose"] = "nose"
    table = h36m_construction(found)
    rest = bvh.motion[0] if bvh.motion.shape[0] else np.zeros(0)
    rotations = [j.channel_start + k for j in bvh.joints for k, c in enumerate(j.channels) if c.endswith("rotation")]
    t_pose_first = bvh.motion.shape[0] > 1 and bool(np.all(np.abs(rest[rotations]) < 1e-3))
    return SkeletonMapping(table, extra, unit, drop_first_frame=t_pose_first)


def resolve_mapping(bvh: "BVHMotion", mapping: SkeletonMapping | str = "auto") -> SkeletonMapping:
    """The mapping to use: given, registered by name, or recognised (``"auto"``)."""
    if isinstance(mapping, SkeletonMapping):
        return mapping
    if mapping != "auto":
        try:
            return MAPPINGS[mapping]
        except KeyError:
            raise ValueError(f"unknown skeleton mapping {mapping!r}; known: {', '.join(MAPPINGS)}") from None
    names = set(bvh.joint_names)
    for registered in MAPPINGS.values():
        if registered.joints_used() <= names:
            return registered
    return generic_mapping(bvh)


def to_h36m(points: np.ndarray, names: Sequence[str], mapping: Mapping[str, tuple[str, ...]]) -> np.ndarray:
    """(T, N, 3) named points -> (T, 17, 3) H36M joints by the mapping's means."""
    index = {n: i for i, n in enumerate(names)}
    out = np.empty((points.shape[0], 17, 3))
    for j, name in enumerate(H36M_JOINT_NAMES):
        try:
            sources = [index[s] for s in mapping[name]]
        except KeyError as exc:
            raise KeyError(f"mapping for {name!r} names a joint the skeleton lacks: {exc}") from None
        out[:, j] = points[:, sources].mean(axis=1)
    return out
