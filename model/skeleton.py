"""Joint layouts in one place: Human3.6M-17 (the model's layout), COCO-17 and MediaPipe-33.

Every other layout is converted to H36M-17 with a linear map: each H36M joint is a
weighted mean of source joints (for example the pelvis is the mean of the two hips).
Conversions act on the last-but-one axis, so they work for 2D and 3D, single frames
and whole sequences alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

H36M_JOINT_NAMES: tuple[str, ...] = (
    "pelvis",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "spine",
    "thorax",
    "neck_nose",
    "head",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
)
H36M_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
H36M_LEFT: tuple[int, ...] = (4, 5, 6, 11, 12, 13)
H36M_RIGHT: tuple[int, ...] = (1, 2, 3, 14, 15, 16)

COCO17_JOINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)

MEDIAPIPE33_JOINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)

# How each H36M joint is made from anatomical points (equal-weight means), ONCE for every
# source: detector layouts (COCO-17, MediaPipe-33, below) and mocap rigs (train/bvh_mapping.py,
# which names each point with the rig's own joint or a virtual point) use this table, so what
# a detector reports at inference and what the model learnt in training cannot drift apart:
# pelvis = mid-hips, spine = mean of hips and shoulders, thorax = mid-shoulders,
# neck_nose = the nose, head = mid-eyes. The point names are the detectors' own.
H36M_CONSTRUCTION: dict[str, tuple[str, ...]] = {
    "pelvis": ("right_hip", "left_hip"),
    "right_hip": ("right_hip",),
    "right_knee": ("right_knee",),
    "right_ankle": ("right_ankle",),
    "left_hip": ("left_hip",),
    "left_knee": ("left_knee",),
    "left_ankle": ("left_ankle",),
    "spine": ("right_hip", "left_hip", "right_shoulder", "left_shoulder"),
    "thorax": ("right_shoulder", "left_shoulder"),
    "neck_nose": ("nose",),
    "head": ("left_eye", "right_eye"),
    "left_shoulder": ("left_shoulder",),
    "left_elbow": ("left_elbow",),
    "left_wrist": ("left_wrist",),
    "right_shoulder": ("right_shoulder",),
    "right_elbow": ("right_elbow",),
    "right_wrist": ("right_wrist",),
}
# The anatomical points the constructions use.
H36M_SOURCE_POINTS: tuple[str, ...] = tuple(dict.fromkeys(p for ps in H36M_CONSTRUCTION.values() for p in ps))


def h36m_construction(points: dict[str, str] | None = None) -> dict[str, tuple[str, ...]]:
    """Each H36M joint name -> the source joint names it is the mean of.

    ``points`` names each anatomical point (:data:`H36M_SOURCE_POINTS`) in the source's own
    terms (e.g. ``{"right_hip": "rThigh", ...}`` for the CMU rig); None uses the point names
    themselves (the detector layouts). Several points may name the same source joint (a
    rig without eyes uses one virtual mid-eyes point for both eyes)."""
    if points is not None:
        missing = [p for p in H36M_SOURCE_POINTS if p not in points]
        if missing:
            raise KeyError(f"no source joint given for {', '.join(missing)}")
    name = (lambda p: p) if points is None else points.__getitem__
    return {j: tuple(name(p) for p in H36M_CONSTRUCTION[j]) for j in H36M_JOINT_NAMES}


@dataclass(frozen=True)
class Layout:
    """A named joint layout and its linear map to H36M-17."""

    name: str
    joint_names: tuple[str, ...]
    to_h36m_matrix: np.ndarray = field(repr=False)  # (17, num_joints), rows sum to 1

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def to_h36m(self, points: np.ndarray) -> np.ndarray:
        """Map (..., num_joints, D) points to (..., 17, D).

        NaN in a source joint propagates only to the H36M joints built from it, so
        missing detections stay visibly missing.
        """
        points = np.asarray(points, dtype=np.float64)
        if points.shape[-2] != self.num_joints:
            raise ValueError(
                f"layout {self.name!r} has {self.num_joints} joints, got {points.shape[-2]}"
            )
        out = np.empty(points.shape[:-2] + (17, points.shape[-1]))
        for joints, sources, weights in self._gather_plan:
            # (..., n, k, D) source points of n H36M joints built from k sources each
            out[..., joints, :] = np.einsum("nk,...nkd->...nd", weights, points[..., sources, :])
        return out

    @cached_property
    def _gather_plan(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]:
        """The H36M joints grouped by how many source joints they are built from: per group,
        (joint indices (n,), source indices (n, k), weights (n, k)). One gather and one
        weighted sum per group (three at most for the shipped layouts) instead of one per
        joint; only the sources a joint is built from enter its sum, so NaN stays local
        (a matrix product would spread it through the zero weights)."""
        by_count: dict[int, list[int]] = {}
        for j in range(17):
            by_count.setdefault(int(np.count_nonzero(self.to_h36m_matrix[j])), []).append(j)
        plan = []
        for joints in by_count.values():
            sources = np.array([np.nonzero(self.to_h36m_matrix[j])[0] for j in joints])
            plan.append((np.array(joints), sources, self.to_h36m_matrix[np.array(joints)[:, None], sources]))
        return tuple(plan)

    def source_joints(self, h36m_joint: int) -> np.ndarray:
        """Indices of the source joints that H36M joint `h36m_joint` is built from."""
        return np.nonzero(self.to_h36m_matrix[h36m_joint])[0]


def _matrix_from_names(joint_names: tuple[str, ...]) -> np.ndarray:
    index = {name: i for i, name in enumerate(joint_names)}
    m = np.zeros((17, len(joint_names)))
    for j, h36m_name in enumerate(H36M_JOINT_NAMES):
        sources = H36M_CONSTRUCTION[h36m_name]
        for s in sources:
            m[j, index[s]] = 1.0 / len(sources)
    return m


H36M17 = Layout("h36m17", H36M_JOINT_NAMES, np.eye(17))
COCO17 = Layout("coco17", COCO17_JOINT_NAMES, _matrix_from_names(COCO17_JOINT_NAMES))
MEDIAPIPE33 = Layout(
    "mediapipe33", MEDIAPIPE33_JOINT_NAMES, _matrix_from_names(MEDIAPIPE33_JOINT_NAMES)
)

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (H36M17, COCO17, MEDIAPIPE33)}


# A model trained on COCO-17 input (VideoPose3D's Detectron models, ``input_layout`` in the
# checkpoint) is fed from the H36M-17 intake: each COCO joint is the H36M joint built from
# it (nose = neck_nose), and eyes and ears, which H36M-17 lacks, are the head (mid-eyes).
H36M_TO_COCO17_INDEX: tuple[int, ...] = tuple(
    H36M_JOINT_NAMES.index({"nose": "neck_nose", "left_eye": "head", "right_eye": "head", "left_ear": "head",
                            "right_ear": "head"}.get(n, n)) for n in COCO17_JOINT_NAMES
)


def model_input_index(input_layout: str) -> list[int] | None:
    """H36M-17 joints to gather as a model's input in ``input_layout`` (None: H36M itself)."""
    if input_layout == "h36m17":
        return None
    if input_layout == "coco17":
        return list(H36M_TO_COCO17_INDEX)
    raise ValueError(f"no mapping from H36M-17 to a model input layout {input_layout!r}")


def get_layout(name: str) -> Layout:
    """Look a layout up by its wire name (``h36m17``, ``coco17``, ``mediapipe33``)."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown layout {name!r}; known: {', '.join(LAYOUTS)}") from None


def flip_permutation(left: tuple[int, ...] = H36M_LEFT, right: tuple[int, ...] = H36M_RIGHT,
                     num_joints: int = 17) -> np.ndarray:
    """Joint permutation that swaps left and right (used by flip augmentation)."""
    perm = np.arange(num_joints)
    perm[list(left)] = right
    perm[list(right)] = left
    return perm


def model_flip_permutation(input_layout: str) -> np.ndarray:
    """The left/right permutation of a model's input joints in ``input_layout``, for input
    fed from the H36M-17 intake (:func:`model_input_index`): joint ``j`` of the mirrored
    input is joint ``perm[j]`` of the input. Joints the intake builds from one H36M joint
    (a COCO model's eyes and ears, all the head point) are interchangeable."""
    index = model_input_index(input_layout)
    perm = flip_permutation()
    if index is None:
        return perm
    return np.array([index.index(int(perm[h])) for h in index], dtype=np.int64)
